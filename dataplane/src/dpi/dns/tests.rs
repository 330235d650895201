//! DNS, mDNS and NetBIOS tests.

use super::*;
use crate::dpi::Transport;
use crate::dpi::fixtures::*;
use crate::dpi::testutil::*;

#[test]
fn queries_and_responses() {
    assert_eq!(detect_udp(&udp_c2s(DNS_QUERY)), strong(App::Dns));
    assert_eq!(detect_udp(&udp_s2c(DNS_RESPONSE)), strong(App::Dns));
    assert_eq!(
        classify(Transport::Udp, 53, &[(C2S, DNS_QUERY)]).0,
        App::Dns
    );
}

#[test]
fn dns_over_tcp_has_a_length_prefix() {
    let mut framed = (DNS_QUERY.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(DNS_QUERY);
    assert_eq!(detect_tcp(&tcp_c2s(&framed)), strong(App::Dns));
    // Without the prefix it is not DNS over TCP.
    assert_eq!(detect_tcp(&tcp_c2s(DNS_QUERY)), Hit::Miss);
    assert_eq!(classify(Transport::Tcp, 53, &[(C2S, &framed)]).0, App::Dns);
}

#[test]
fn damaged_messages_count_only_on_the_dns_port() {
    // fuzz-2006-06-26-2594.pcap: a query whose counts and name were overwritten.
    let damaged = b"\x70\xcc\x01\x00\x00\x01\x00\x00\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa";
    assert_eq!(classify(Transport::Udp, 53, &[(C2S, damaged)]).0, App::Dns);
    assert_eq!(
        classify(Transport::Udp, NEUTRAL_PORT, &[(C2S, damaged)]).0,
        App::Unknown
    );
    assert_eq!(
        classify(
            Transport::Udp,
            NEUTRAL_PORT,
            &[(C2S, damaged), (C2S, damaged)]
        )
        .0,
        App::Unknown
    );
}

#[test]
fn look_alikes() {
    // Too short; a query with a response code; a reserved opcode; a label over 63 bytes.
    assert_eq!(detect_udp(&udp_c2s(&DNS_QUERY[..11])), Hit::Miss);
    let mut rcode = DNS_QUERY.to_vec();
    rcode[3] |= 0x03;
    assert_eq!(detect_udp(&udp_c2s(&rcode)), Hit::Miss);
    let mut opcode = DNS_QUERY.to_vec();
    opcode[2] = 0x78; // opcode 15
    assert_eq!(detect_udp(&udp_c2s(&opcode)), Hit::Miss);
    let mut label = DNS_QUERY.to_vec();
    label[12] = 64;
    assert_eq!(detect_udp(&udp_c2s(&label)), Hit::Miss);
    assert_eq!(detect_udp(&udp_c2s(&[0u8; 40])), Hit::Miss);
}

#[test]
fn mdns_is_dns_on_5353() {
    assert_eq!(
        detect_udp(&pkt(Transport::Udp, C2S, 0, 5353, DNS_QUERY)),
        strong(App::Mdns)
    );
}

#[test]
fn netbios_name_and_datagram_service() {
    assert_eq!(detect_netbios(&udp_c2s(NBNS_QUERY)), strong(App::Netbios));
    assert_eq!(
        detect_netbios(&udp_c2s(DNS_NBNS_NAME)),
        strong(App::Netbios)
    );
    assert_eq!(detect_netbios(&udp_c2s(DNS_QUERY)), Hit::Miss);
    // Datagram service: DIRECT_GROUP, id, 192.168.1.2:138, length 4 past the header.
    let dgm = b"\x11\x0e\x84\xec\xc0\xa8\x01\x02\x00\x8a\x00\x04\x00\x00abcd";
    assert_eq!(detect_netbios(&udp_c2s(dgm)), strong(App::Netbios));
    assert_eq!(detect_netbios(&udp_c2s(&dgm[..17])), Hit::Miss);
}

#[test]
fn never_panics() {
    for seed in [DNS_QUERY, DNS_RESPONSE, NBNS_QUERY, DNS_NBNS_NAME] {
        for detect in [detect_udp, detect_tcp, detect_netbios] {
            assert!(no_panic(detect, seed) > 0);
        }
    }
}
