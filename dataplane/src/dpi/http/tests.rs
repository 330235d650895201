//! HTTP family tests: HTTP/1.x, h2c and gRPC, RTSP, SIP, SSDP.

use super::*;
use crate::dpi::fixtures::*;
use crate::dpi::testutil::*;
use crate::dpi::{Dir, Transport};

#[test]
fn http_request_and_response() {
    assert_eq!(detect_http(&tcp_c2s(HTTP_GET)), strong(App::Http));
    assert_eq!(detect_http(&tcp_s2c(HTTP_200)), strong(App::Http));
    // A capture that starts with the response: the "client" is the server.
    assert_eq!(detect_http(&tcp_c2s(HTTP_200)), strong(App::Http));
    assert_eq!(
        detect_http(&tcp_c2s(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")),
        strong(App::Http)
    );
}

#[test]
fn a_request_line_cut_by_the_segment() {
    // The path continues in the next segment.
    assert_eq!(
        detect_http(&tcp_c2s(b"GET /a/very/long/path?with=query")),
        strong(App::Http)
    );
    assert_eq!(
        detect_http(&tcp_c2s(b"POST http://proxy.example/")),
        strong(App::Http)
    );
    assert_eq!(detect_http(&tcp_c2s(b"GET ")), Hit::Weak(App::Http));
    assert_eq!(detect_http(&tcp_s2c(b"HTTP/1.1 20")), strong(App::Http));
}

#[test]
fn http_look_alikes() {
    // An unknown method cut short, another protocol's version, binary.
    assert_eq!(detect_http(&tcp_c2s(b"FETCH /x")), Hit::Miss);
    assert_eq!(detect_http(&tcp_c2s(RTSP_GET_PARAMETER)), Hit::Miss);
    assert_eq!(detect_http(&tcp_c2s(SIP_REGISTER)), Hit::Miss);
    assert_eq!(detect_http(&tcp_c2s(H2_PREFACE)), Hit::Miss);
    assert_eq!(detect_http(&tcp_c2s(b"GET\x00/ HTTP/1.1\r\n")), Hit::Miss);
    assert_eq!(detect_http(&tcp_c2s(MYSQL_GREETING)), Hit::Miss);
}

#[test]
fn h2c_preface_then_headers() {
    // The preface alone is weak; the HEADERS frame in the next packet decides.
    assert_eq!(detect_h2(&tcp_c2s(H2_PREFACE)), Hit::Weak(App::Http2));
    let (app, _) = classify(Transport::Tcp, NEUTRAL_PORT, &[(C2S, H2_PREFACE)]);
    assert_eq!(app, App::Unknown);
    let (app, _) = classify(
        Transport::Tcp,
        NEUTRAL_PORT,
        &[(C2S, H2_PREFACE), (C2S, H2_HEADERS_JSON)],
    );
    assert_eq!(app, App::Http2);
    // Preface and HEADERS in one segment.
    let mut both = H2_PREFACE.to_vec();
    both.extend_from_slice(H2_HEADERS_JSON);
    assert_eq!(detect_h2(&tcp_c2s(&both)), strong(App::Http2));
    // HEADERS without a preface seen earlier is nothing.
    assert_eq!(detect_h2(&tcp_c2s(H2_HEADERS_JSON)), Hit::Miss);
}

/// Builds a HEADERS frame (stream 1, END_HEADERS) around an HPACK block.
fn headers_frame(block: &[u8], flags: u8) -> Vec<u8> {
    let len = block.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[FRAME_HEADERS, flags, 0, 0, 0, 1]);
    f.extend_from_slice(block);
    f
}

#[test]
fn grpc_content_type_raw_and_huffman() {
    // :method POST (indexed 3), :path literal, content-type as literal with incremental
    // indexing (0x5f) and a raw value.
    let raw = [
        &[0x83u8, 0x44, 0x04][..],
        b"/a.B",
        &[0x5f, 0x16],
        b"application/grpc+proto",
    ]
    .concat();
    let mut flow = H2_PREFACE.to_vec();
    flow.extend_from_slice(&headers_frame(&raw, 0x04));
    assert_eq!(detect_h2(&tcp_c2s(&flow)), strong(App::Grpc));
    // The same with a Huffman-coded value, without indexing (0x0f 0x10), padded and with
    // priority.
    let mut huff = vec![0x83, 0x0f, 0x10, 0x80 | GRPC_HUFFMAN.len() as u8];
    huff.extend_from_slice(&GRPC_HUFFMAN);
    let mut padded = vec![2u8]; // pad length
    padded.extend_from_slice(&[0, 0, 0, 0, 16]); // priority
    padded.extend_from_slice(&huff);
    padded.extend_from_slice(&[0, 0]);
    let frame = headers_frame(&padded, 0x04 | FLAG_PADDED | FLAG_PRIORITY);
    let mut st = crate::dpi::State::default();
    let flow_info = crate::dpi::Flow {
        transport: Transport::Tcp,
        client_port: CLIENT_PORT,
        server_port: 50051,
    };
    st.inspect(&flow_info, Dir::ClientToServer, H2_PREFACE);
    assert_eq!(
        st.inspect(&flow_info, Dir::ClientToServer, &frame),
        crate::dpi::Progress::Decided(App::Grpc)
    );
    // application/json is plain HTTP/2 (the corpus flow).
    assert!(!hpack_has_grpc_content_type(&H2_HEADERS_JSON[9..]));
}

#[test]
fn huffman_constants_match_the_rfc_table() {
    // "application/json" as a real client encoded it (http2.pcapng, after 0x5f 0x8b): the
    // first 64 bits encode "application" and the start of "/", all in our table.
    let json: [u8; 8] = huffman(b"application/");
    let at = H2_HEADERS_JSON
        .windows(2)
        .position(|w| w == [0x5f, 0x8b])
        .expect("content-type");
    assert_eq!(json, H2_HEADERS_JSON[at + 2..at + 10]);
    assert_eq!(GRPC_HUFFMAN[..8], json);
    // "content-type" is 66 bits: 8 bytes and 2 bits, padded with ones.
    assert_eq!(CONTENT_TYPE_HUFFMAN[8] & 0x3f, 0x3f);
    assert_eq!(GRPC_HUFFMAN.len(), 11);
}

#[test]
fn rtsp_request_and_response() {
    assert_eq!(detect_rtsp(&tcp_c2s(RTSP_GET_PARAMETER)), strong(App::Rtsp));
    assert_eq!(
        detect_rtsp(&tcp_s2c(b"RTSP/1.0 200 OK\r\nCSeq: 7\r\n\r\n")),
        strong(App::Rtsp)
    );
    assert_eq!(
        detect_rtsp(&tcp_c2s(b"SETUP rtsp://cam/track1")),
        strong(App::Rtsp)
    );
    assert_eq!(detect_rtsp(&tcp_c2s(HTTP_GET)), Hit::Miss);
    assert_eq!(
        detect_rtsp(&tcp_c2s(b"OPTIONS * HTTP/1.1\r\n\r\n")),
        Hit::Miss
    );
}

#[test]
fn sip_over_udp_and_tcp() {
    assert_eq!(detect_sip(&udp_c2s(SIP_REGISTER)), strong(App::Sip));
    assert_eq!(detect_sip(&udp_s2c(SIP_401)), strong(App::Sip));
    assert_eq!(detect_sip(&tcp_c2s(SIP_REGISTER)), strong(App::Sip));
    // A damaged version after a sip: URI still counts.
    assert_eq!(
        detect_sip(&udp_c2s(b"INVITE sip:1@x.net SIP/a.0\x84\nVia: x\r\n")),
        strong(App::Sip)
    );
    // A "hello" keep-alive is weak: SIP on 5060 only.
    assert_eq!(
        classify(Transport::Udp, 5060, &[(C2S, b"hello")]).0,
        App::Sip
    );
    assert_eq!(
        classify(Transport::Udp, NEUTRAL_PORT, &[(C2S, b"hello")]).0,
        App::Unknown
    );
    assert_eq!(detect_sip(&udp_c2s(b"OPTIONS * HTTP/1.1\r\n")), Hit::Miss);
}

#[test]
fn ssdp_is_http_shaped_udp() {
    let search =
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\r\n";
    assert_eq!(detect_ssdp(&udp_c2s(search)), strong(App::Ssdp));
    assert_eq!(
        classify(Transport::Udp, 1900, &[(C2S, search)]).0,
        App::Ssdp
    );
    // HTTP over TCP is never SSDP: the detector is not in the TCP table.
    assert_eq!(
        classify(Transport::Tcp, 1900, &[(S2C, HTTP_200)]).0,
        App::Http
    );
}

#[test]
fn http_family_never_panics() {
    for seed in [
        HTTP_GET,
        HTTP_200,
        H2_PREFACE,
        H2_HEADERS_JSON,
        RTSP_GET_PARAMETER,
        SIP_REGISTER,
    ] {
        for detect in [detect_http, detect_h2, detect_rtsp, detect_sip, detect_ssdp] {
            assert!(no_panic(detect, seed) > 0);
        }
    }
    let mut rng = Rng::new(5);
    let mut buf = [0u8; 64];
    for _ in 0..2000 {
        rng.fill(&mut buf);
        let n = rng.below(buf.len());
        let _ = hpack_has_grpc_content_type(&buf[..n]);
        let _ = first_headers_grpc(&buf[..n]);
    }
}
