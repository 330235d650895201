//! Weak TLS: a ClientHello whose best offer is below TLS 1.2, or one in SSLv2 format.
//!
//! Runs on the client's payloads while DPI inspects them (a ClientHello is the first). Two
//! shapes:
//!
//! - A TLS record carrying a ClientHello, read by [`dpi::tls_client_hello`]: the highest
//!   version offered ([`TlsHello::version`]: the `supported_versions` extension when present,
//!   as every TLS 1.3 client sends, else `client_version`) below [`Config::tls_min_version`]
//!   is flagged: SSL 3.0 (RFC 7568), TLS 1.0 and 1.1 (RFC 8996). The record layer's own
//!   version is reported but not judged: RFC 5246 appendix E.1 lets a client that offers
//!   TLS 1.2 write its hello in a 3.0 or 3.1 record for old servers' sake, and TLS 1.3
//!   clients write 3.1 (RFC 8446 section 5.1).
//! - An SSLv2-format ClientHello (RFC 5246 appendix E.2: 2-byte length with the high bit
//!   set, message type 1, version, cipher-spec, session-id and challenge lengths that add up
//!   to the record): always flagged, whatever version it offers: RFC 6176 forbids sending it.
//!
//! [`dpi::tls_client_hello`]: crate::dpi::tls_client_hello
//! [`TlsHello::version`]: crate::dpi::TlsHello::version

use crate::bytes::{be16, u8_at};
use crate::dpi::tls_client_hello;
use crate::report::{ThreatDetail, ThreatKind};

#[cfg(doc)]
use super::Config;
use super::Detection;

/// The version an SSLv2-format ClientHello offers, if `payload` starts with one.
fn sslv2_client_hello(payload: &[u8]) -> Option<u16> {
    let (b0, b1, kind) = (u8_at(payload, 0)?, u8_at(payload, 1)?, u8_at(payload, 2)?);
    let version = be16(payload, 3)?;
    let (ciphers, session, challenge) = (be16(payload, 5)?, be16(payload, 7)?, be16(payload, 9)?);
    let len = usize::from(b0 & 0x7f) << 8 | usize::from(b1);
    let sane = b0 & 0x80 != 0
        && kind == 1
        && matches!(version, 0x0002 | 0x0300..=0x0304)
        && ciphers > 0
        && ciphers % 3 == 0
        && matches!(session, 0 | 16)
        && (16..=32).contains(&challenge)
        && len == 9 + usize::from(ciphers) + usize::from(session) + usize::from(challenge);
    sane.then_some(version)
}

/// Checks a client's payload for a weak ClientHello (see the module documentation); versions
/// below `min_version` (0x0303 by default, [`Config::tls_min_version`]) are weak.
pub fn weak_tls(payload: &[u8], min_version: u16) -> Option<Detection> {
    let detail = if let Some(offered) = sslv2_client_hello(payload) {
        ThreatDetail::Tls {
            offered,
            record: 0,
            sslv2_format: true,
        }
    } else {
        let hello = tls_client_hello(payload)?;
        let offered = hello.version();
        if offered >= min_version {
            return None;
        }
        ThreatDetail::Tls {
            offered,
            record: hello.record_version,
            sslv2_format: false,
        }
    };
    Some(Detection::new(ThreatKind::WeakTls, detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threat::testutil::mutations;

    const MIN: u16 = 0x0303;

    fn ext(v: &mut Vec<u8>, ty: u16, body: &[u8]) {
        v.extend_from_slice(&ty.to_be_bytes());
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
    }

    /// A ClientHello as browsers and OpenSSL write it: random, a 32-byte session id, a
    /// cipher list, null compression, then SNI, supported groups, signature algorithms and,
    /// when `supported` is not empty, `supported_versions`.
    fn client_hello(record: u16, client: u16, supported: &[u16]) -> Vec<u8> {
        let mut body = client.to_be_bytes().to_vec();
        body.extend((0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11))); // random
        body.push(32);
        body.extend((0..32u8).map(|i| i.wrapping_mul(91))); // session id
        let ciphers: &[u16] = &[
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0x009c, 0x002f, 0x0035,
        ];
        body.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
        for c in ciphers {
            body.extend_from_slice(&c.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]); // null compression
        let mut exts = Vec::new();
        let host = b"www.example.com";
        let mut sni = ((host.len() + 3) as u16).to_be_bytes().to_vec();
        sni.push(0);
        sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
        sni.extend_from_slice(host);
        ext(&mut exts, 0x0000, &sni);
        ext(&mut exts, 0x000a, &[0, 6, 0, 0x1d, 0, 0x17, 0, 0x18]);
        ext(&mut exts, 0x000d, &[0, 4, 0x04, 0x03, 0x08, 0x04]);
        if !supported.is_empty() {
            let mut sv = vec![(supported.len() * 2) as u8];
            for v in supported {
                sv.extend_from_slice(&v.to_be_bytes());
            }
            ext(&mut exts, 0x002b, &sv);
        }
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut msg = vec![1];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        let mut rec = vec![22];
        rec.extend_from_slice(&record.to_be_bytes());
        rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        rec.extend_from_slice(&msg);
        rec
    }

    /// An SSLv2-format CLIENT-HELLO (RFC 6101 appendix E / RFC 5246 appendix E.2) offering
    /// `version`, with three cipher specs, no session id and a 16-byte challenge.
    fn sslv2_hello(version: u16) -> Vec<u8> {
        let specs = [0x01, 0x00, 0x80, 0x00, 0x00, 0x04, 0x00, 0x00, 0x2f];
        let challenge = [0x5a; 16];
        let len = 9 + specs.len() + challenge.len();
        let mut v = vec![0x80 | (len >> 8) as u8, len as u8, 1];
        v.extend_from_slice(&version.to_be_bytes());
        v.extend_from_slice(&(specs.len() as u16).to_be_bytes());
        v.extend_from_slice(&0u16.to_be_bytes());
        v.extend_from_slice(&(challenge.len() as u16).to_be_bytes());
        v.extend_from_slice(&specs);
        v.extend_from_slice(&challenge);
        v
    }

    fn detail(payload: &[u8]) -> Option<ThreatDetail> {
        weak_tls(payload, MIN).map(|d| {
            assert_eq!(d.kind, ThreatKind::WeakTls);
            d.detail
        })
    }

    fn tls(offered: u16, record: u16) -> Option<ThreatDetail> {
        Some(ThreatDetail::Tls {
            offered,
            record,
            sslv2_format: false,
        })
    }

    #[test]
    fn the_builder_writes_what_the_dpi_walker_reads() {
        let h = client_hello(0x0301, 0x0303, &[0x0a0a, 0x0304, 0x0303]);
        let hello = tls_client_hello(&h).expect("a ClientHello");
        assert!(hello.complete);
        assert_eq!(hello.sni, Some("www.example.com"));
        assert_eq!(hello.version(), 0x0304);
    }

    #[test]
    fn tls_1_0_and_1_1_are_weak() {
        assert_eq!(
            detail(&client_hello(0x0301, 0x0301, &[])),
            tls(0x0301, 0x0301)
        );
        assert_eq!(
            detail(&client_hello(0x0301, 0x0302, &[])),
            tls(0x0302, 0x0301)
        );
    }

    #[test]
    fn tls_1_2_and_1_3_are_not() {
        assert_eq!(detail(&client_hello(0x0301, 0x0303, &[])), None);
        // TLS 1.3 (with GREASE first, as Chrome sends it).
        assert_eq!(
            detail(&client_hello(0x0301, 0x0303, &[0x3a3a, 0x0304, 0x0303])),
            None
        );
        // A TLS 1.2 hello in a 3.0 record (RFC 5246 appendix E.1): the offer counts.
        assert_eq!(detail(&client_hello(0x0300, 0x0303, &[])), None);
    }

    #[test]
    fn supported_versions_decide_over_the_legacy_version() {
        // legacy_version 1.2 but supported_versions offering 1.1 and 1.0 only.
        assert_eq!(
            detail(&client_hello(0x0301, 0x0303, &[0x0302, 0x0301])),
            tls(0x0302, 0x0301)
        );
    }

    #[test]
    fn sslv3_is_weak() {
        assert_eq!(
            detail(&client_hello(0x0300, 0x0300, &[])),
            tls(0x0300, 0x0300)
        );
    }

    #[test]
    fn sslv2_format_hellos_are_weak_whatever_they_offer() {
        for v in [0x0002, 0x0300, 0x0301, 0x0303] {
            assert_eq!(
                detail(&sslv2_hello(v)),
                Some(ThreatDetail::Tls {
                    offered: v,
                    record: 0,
                    sslv2_format: true
                }),
                "0x{v:04x}"
            );
        }
        // Lengths that do not add up, another message type: not a hello.
        let mut bad = sslv2_hello(0x0002);
        bad[1] += 1;
        assert_eq!(detail(&bad), None);
        let mut bad = sslv2_hello(0x0002);
        bad[2] = 2;
        assert_eq!(detail(&bad), None);
        let mut bad = sslv2_hello(0x0002);
        bad[6] = 8; // 8 bytes of cipher specs: not a multiple of 3
        assert_eq!(detail(&bad), None);
    }

    #[test]
    fn the_minimum_is_configurable() {
        let h = client_hello(0x0301, 0x0303, &[]);
        assert!(
            weak_tls(&h, 0x0304).is_some(),
            "TLS 1.2 below a 1.3 minimum"
        );
        let h = client_hello(0x0301, 0x0301, &[]);
        assert!(weak_tls(&h, 0x0301).is_none());
    }

    #[test]
    fn other_payloads_are_not_judged() {
        for p in [
            &b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
            b"\x15\x03\x01\x00\x02\x02\x28",         // an alert
            b"\x16\x03\x03\x00\x04\x02\x00\x00\x00", // a ServerHello header
            b"",
            b"\x80",
        ] {
            assert_eq!(detail(p), None);
        }
    }

    #[test]
    fn never_panics() {
        for seed in [
            client_hello(0x0301, 0x0301, &[]),
            client_hello(0x0301, 0x0303, &[0x0304, 0x0303]),
            sslv2_hello(0x0002),
        ] {
            mutations(&seed, |d| {
                let _ = weak_tls(d, MIN);
            });
        }
    }
}
