//! QUIC tests.

use super::*;
use crate::dpi::fixtures::DNS_QUERY;
use crate::dpi::testutil::*;

/// os_detected.pcapng: the first bytes of a draft-29 client Initial (long header 0xc4,
/// version 0xff00001d, 8-byte DCID, empty SCID, no token); the datagram is 1252 bytes.
const DRAFT29_INITIAL: &[u8] =
    b"\xc4\xff\x00\x00\x1d\x08\x9f\x0f\xc9\x3b\x4e\xde\x36\x32\x00\x00\x44\xca\x99\xf1";

/// quic_q43.pcap: Google QUIC Q043 public header (flags 0x0d, 8-byte connection id,
/// version, packet number) and the start of the CHLO.
const Q043: &[u8] =
    b"\x0d\x3c\x77\xbd\x8f\x89\x15\xf9\x51\x51\x30\x34\x33\x01\xd4\xa6\xcc\x79\xcf\x57CHLO";

#[test]
fn ietf_initial_padded_to_1200_is_strong() {
    let mut d = DRAFT29_INITIAL.to_vec();
    d.resize(1252, 0);
    assert_eq!(detect(&udp_c2s(&d)), strong(App::Quic));
    // v1 and v2 (whose Initial type is 1).
    d[1..5].copy_from_slice(&1u32.to_be_bytes());
    assert_eq!(detect(&udp_c2s(&d)), strong(App::Quic));
    d[1..5].copy_from_slice(&0x6b33_43cfu32.to_be_bytes());
    assert_eq!(detect(&udp_c2s(&d)), Hit::Weak(App::Quic));
    d[0] = 0xd4;
    assert_eq!(detect(&udp_c2s(&d)), strong(App::Quic));
    // Unpadded: weak.
    assert_eq!(detect(&udp_c2s(DRAFT29_INITIAL)), Hit::Weak(App::Quic));
}

#[test]
fn google_quic() {
    let mut d = Q043.to_vec();
    d.resize(1350, 0);
    assert_eq!(detect(&udp_c2s(&d)), strong(App::Quic));
    let mut bad = d.clone();
    bad[9] = b'X';
    assert_eq!(detect(&udp_c2s(&bad)), Hit::Miss);
}

#[test]
fn look_alikes() {
    let mut d = DRAFT29_INITIAL.to_vec();
    d.resize(1252, 0);
    // Unknown version; fixed bit clear; a connection id longer than 20.
    let mut v = d.clone();
    v[1..5].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    assert_eq!(detect(&udp_c2s(&v)), Hit::Miss);
    let mut fixed = d.clone();
    fixed[0] = 0x84;
    assert_eq!(detect(&udp_c2s(&fixed)), Hit::Miss);
    let mut cid = d.clone();
    cid[5] = 21;
    assert_eq!(detect(&udp_c2s(&cid)), Hit::Miss);
    assert_eq!(detect(&udp_c2s(DNS_QUERY)), Hit::Miss);
}

#[test]
fn never_panics() {
    assert!(no_panic(detect, DRAFT29_INITIAL) > 0);
    assert!(no_panic(detect, Q043) > 0);
}
