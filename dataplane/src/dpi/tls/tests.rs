//! TLS detector and ClientHello walker tests.

use super::*;
use crate::dpi::Transport;
use crate::dpi::fixtures::{HTTP_GET, TLS_ALERT, TLS_CLIENT_HELLO};
use crate::dpi::testutil::*;

/// A TLS 1.2 ServerHello (RFC 5246 section 7.4.1.3): version 3.3, random, empty session
/// id, cipher 0xc02f, null compression, renegotiation_info.
const SERVER_HELLO: &[u8] = b"\x16\x03\x03\x00\x31\x02\x00\x00\x2d\x03\x03\
\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\
\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x20\
\x00\xc0\x2f\x00\x00\x05\xff\x01\x00\x01\x00";

#[test]
fn client_hello_is_strong_from_the_client() {
    assert_eq!(detect(&tcp_c2s(TLS_CLIENT_HELLO)), strong(App::Tls));
    // From the server side it is odd: weak only.
    assert_eq!(detect(&tcp_s2c(TLS_CLIENT_HELLO)), Hit::Weak(App::Tls));
}

#[test]
fn a_client_hello_cut_by_the_segment_is_still_strong() {
    assert_eq!(detect(&tcp_c2s(&TLS_CLIENT_HELLO[..40])), strong(App::Tls));
}

#[test]
fn server_hello_is_strong_from_the_server() {
    assert_eq!(detect(&tcp_s2c(SERVER_HELLO)), strong(App::Tls));
}

#[test]
fn other_records_are_weak_and_confirm_on_443() {
    assert_eq!(detect(&tcp_s2c(TLS_ALERT)), Hit::Weak(App::Tls));
    let app_data = b"\x17\x03\x03\x00\x20abcdefghabcdefghabcdefghabcdefgh";
    assert_eq!(detect(&tcp_c2s(app_data)), Hit::Weak(App::Tls));
    assert_eq!(
        classify(Transport::Tcp, 443, &[(C2S, app_data)]).0,
        App::Tls
    );
    assert_eq!(
        classify(Transport::Tcp, NEUTRAL_PORT, &[(C2S, app_data)]).0,
        App::Unknown
    );
    assert_eq!(
        classify(
            Transport::Tcp,
            NEUTRAL_PORT,
            &[(C2S, app_data), (S2C, app_data)]
        )
        .0,
        App::Tls
    );
}

#[test]
fn look_alikes_are_not_tls() {
    // Wrong major version, zero length, too long a record, not a record at all.
    assert_eq!(detect(&tcp_c2s(b"\x16\x02\x01\x00\x10\x01")), Hit::Miss);
    assert_eq!(detect(&tcp_c2s(b"\x16\x03\x01\x00\x00\x01")), Hit::Miss);
    assert_eq!(detect(&tcp_c2s(b"\x16\x03\x01\x50\x00\x01")), Hit::Miss);
    assert_eq!(detect(&tcp_c2s(HTTP_GET)), Hit::Miss);
    assert_eq!(detect(&tcp_c2s(b"\x16")), Hit::Miss);
}

#[test]
fn sslv2_client_hello() {
    // SSLv2 record (length 0x32), CLIENT-HELLO, version 3.1, 3 cipher specs (9 bytes),
    // no session id, 32-byte challenge.
    let mut v = b"\x80\x32\x01\x03\x01\x00\x09\x00\x00\x00\x20".to_vec();
    v.extend_from_slice(&[0x00, 0x00, 0x04, 0x00, 0x00, 0x05, 0x00, 0x00, 0x2f]);
    v.extend_from_slice(&[0x11; 32]);
    assert_eq!(v.len(), 0x32 + 2);
    assert_eq!(detect(&tcp_c2s(&v)), strong(App::Tls));
    v.push(0);
    assert_eq!(detect(&tcp_c2s(&v)), Hit::Miss);
}

#[test]
fn client_hello_facts() {
    let h = tls_client_hello(TLS_CLIENT_HELLO).expect("a ClientHello");
    assert_eq!(h.record_version, 0x0301);
    assert_eq!(h.client_version, 0x0301);
    assert_eq!(h.version(), 0x0301);
    assert_eq!(h.sni, Some("www.google-analytics.com"));
    assert!(h.complete);
    let alpn: Vec<&[u8]> = h.alpn().collect();
    assert_eq!(
        alpn,
        [
            &b"h2"[..],
            b"h2-16",
            b"h2-15",
            b"h2-14",
            b"spdy/3.1",
            b"spdy/3",
            b"http/1.1"
        ]
    );
    assert!(h.offers_alpn(b"h2"));
    assert!(!h.offers_alpn(b"h3"));
}

#[test]
fn client_hello_facts_agree_with_tls_parser() {
    use tls_parser::{SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_plaintext};
    let (_, rec) = parse_tls_plaintext(TLS_CLIENT_HELLO).expect("tls-parser parses it");
    let Some(TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch))) = rec.msg.first() else {
        panic!("not a ClientHello");
    };
    let (_, exts) =
        tls_parser::parse_tls_client_hello_extensions(ch.ext.unwrap_or_default()).expect("exts");
    let mut sni = None;
    let mut alpn = Vec::new();
    for e in exts {
        match e {
            TlsExtension::SNI(names) => {
                sni = names
                    .iter()
                    .find(|(t, _)| *t == SNIType::HostName)
                    .and_then(|(_, n)| std::str::from_utf8(n).ok());
            }
            TlsExtension::ALPN(list) => alpn = list,
            _ => {}
        }
    }
    let ours = tls_client_hello(TLS_CLIENT_HELLO).expect("ours parses it");
    assert_eq!(ours.client_version, ch.version.0);
    assert_eq!(ours.sni, sni);
    assert_eq!(ours.alpn().collect::<Vec<_>>(), alpn);
}

#[test]
fn a_cut_hello_yields_what_precedes_the_cut() {
    // The SNI extension ends at byte 113 of the payload; ALPN comes later.
    let cut = &TLS_CLIENT_HELLO[..120];
    let h = tls_client_hello(cut).expect("a ClientHello");
    assert!(!h.complete);
    assert_eq!(h.sni, Some("www.google-analytics.com"));
    assert_eq!(h.alpn().count(), 0);
    // Cut inside the random: still a hello, with nothing but versions.
    let h = tls_client_hello(&TLS_CLIENT_HELLO[..20]).expect("a ClientHello");
    assert!(!h.complete);
    assert_eq!(h.sni, None);
}

#[test]
fn tls13_version_comes_from_supported_versions() {
    // A minimal TLS 1.3-style hello: legacy version 3.3, supported_versions with GREASE,
    // 1.3 and 1.2.
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0u8; 32]); // random
    body.extend_from_slice(&[0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]); // sid, ciphers, comp
    let ext = [
        0x00, 0x2b, 0x00, 0x07, 0x06, 0x5a, 0x5a, 0x03, 0x04, 0x03, 0x03,
    ];
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut msg = vec![0x01, 0x00, 0x00, body.len() as u8];
    msg.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01, 0x00, msg.len() as u8];
    rec.extend_from_slice(&msg);
    let h = tls_client_hello(&rec).expect("a ClientHello");
    assert!(h.complete);
    assert_eq!(h.client_version, 0x0303);
    assert_eq!(h.version(), 0x0304);
    assert_eq!(h.sni, None);
}

#[test]
fn not_a_client_hello() {
    assert_eq!(tls_client_hello(SERVER_HELLO), None);
    assert_eq!(tls_client_hello(TLS_ALERT), None);
    assert_eq!(tls_client_hello(HTTP_GET), None);
    assert_eq!(tls_client_hello(b""), None);
}

#[test]
fn walker_never_panics() {
    let mut rng = Rng::new(3);
    let mut buf = TLS_CLIENT_HELLO.to_vec();
    for _ in 0..3000 {
        buf.copy_from_slice(TLS_CLIENT_HELLO);
        let i = rng.below(buf.len());
        buf[i] = rng.next() as u8;
        let cut = rng.below(buf.len() + 1);
        if let Some(h) = tls_client_hello(&buf[..cut]) {
            let _ = (h.version(), h.alpn().count(), h.sni);
        }
    }
    assert!(no_panic(detect, TLS_CLIENT_HELLO) > 0);
}
