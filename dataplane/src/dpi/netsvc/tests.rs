//! DHCP, NTP, Syslog, TFTP, RADIUS and CoAP tests.

use super::*;
use crate::dpi::Transport;
use crate::dpi::fixtures::*;
use crate::dpi::testutil::*;

/// A DHCPDISCOVER (RFC 2131): BOOTREQUEST, Ethernet, 236 bytes of BOOTP, the magic cookie,
/// option 53 = 1, end.
fn dhcp_discover() -> Vec<u8> {
    let mut v = vec![0u8; 236];
    v[0] = 1;
    v[1] = 1;
    v[2] = 6;
    v[4..8].copy_from_slice(&[0x39, 0x03, 0xf3, 0x26]);
    v[28..34].copy_from_slice(&[0x00, 0x0c, 0x29, 0x12, 0x34, 0x56]);
    v.extend_from_slice(&[0x63, 0x82, 0x53, 0x63, 53, 1, 1, 0xff]);
    v
}

#[test]
fn dhcp() {
    let d = dhcp_discover();
    assert_eq!(detect_dhcp(&udp_c2s(&d)), strong(App::Dhcp));
    let mut no_cookie = d.clone();
    no_cookie[236] = 0;
    assert_eq!(detect_dhcp(&udp_c2s(&no_cookie)), Hit::Miss);
    assert_eq!(detect_dhcp(&udp_c2s(&d[..200])), Hit::Miss);
}

#[test]
fn ntp_modes() {
    assert_eq!(detect_ntp(&udp_s2c(NTP_V3_SERVER)), strong(App::Ntp));
    // A v4 client request: mode 3, zeros but for the transmit timestamp.
    let mut client = [0u8; 48];
    client[0] = 0x23;
    client[40] = 0xe9;
    assert_eq!(detect_ntp(&udp_c2s(&client)), strong(App::Ntp));
    // NTPv2.pcap: mode 7 monlist reply header (the 8-byte header and 5 items of 72).
    let mut monlist = b"\x97\x0e\x03*\x00\x05\x00H".to_vec();
    monlist.resize(8 + 5 * 72, 0);
    assert_eq!(detect_ntp(&udp_s2c(&monlist)), strong(App::Ntp));
    monlist.push(0);
    assert_eq!(detect_ntp(&udp_s2c(&monlist)), Hit::Miss);
    // Mode 6 read-variables request: 12 bytes, count 0.
    assert_eq!(
        detect_ntp(&udp_c2s(
            b"\x16\x02\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00"
        )),
        strong(App::Ntp)
    );
    // Version 0, wrong sizes, stratum out of range.
    let mut v0 = client;
    v0[0] = 0x03;
    assert_eq!(detect_ntp(&udp_c2s(&v0)), Hit::Miss);
    assert_eq!(detect_ntp(&udp_c2s(&client[..47])), Hit::Miss);
    let mut stratum = client;
    stratum[1] = 99;
    assert_eq!(detect_ntp(&udp_c2s(&stratum)), Hit::Miss);
    // A DNS query with a mode-6-looking first byte is not NTP (fuzz capture, port 53).
    let dnsish = b"\xd6\xd6\x01\x00\x00\x01\x00\x00\x76\x00\x00\x00\x04_sip\x04_udp\x03%s\x00\x09cybercity\x02dk\x00\x00\x21\x00\x01";
    assert_eq!(detect_ntp(&udp_c2s(dnsish)), Hit::Miss);
}

#[test]
fn syslog() {
    assert_eq!(detect_syslog(&udp_c2s(SYSLOG_MSG)), strong(App::Syslog));
    let rfc5424 = b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 - msg";
    assert_eq!(detect_syslog(&udp_c2s(rfc5424)), strong(App::Syslog));
    // Octet-counted over TCP (RFC 6587).
    let framed = b"77 <165>1 2003-10-11T22:14:15.003Z host app - - - msg";
    assert_eq!(detect_syslog(&tcp_c2s(framed)), strong(App::Syslog));
    // PRI over 191, leading zero, no digits, binary after the PRI.
    assert_eq!(
        detect_syslog(&udp_c2s(b"<192>Oct 11 22:14:15 host")),
        Hit::Miss
    );
    assert_eq!(
        detect_syslog(&udp_c2s(b"<013>Oct 11 22:14:15 host")),
        Hit::Miss
    );
    assert_eq!(
        detect_syslog(&udp_c2s(b"<>Oct 11 22:14:15 host")),
        Hit::Miss
    );
    assert_eq!(
        detect_syslog(&udp_c2s(b"<13>\x00\x01\x02\x03\x04")),
        Hit::Miss
    );
    assert_eq!(detect_syslog(&tcp_c2s(b"<html><body>")), Hit::Miss);
}

#[test]
fn tftp() {
    assert_eq!(detect_tftp(&udp_c2s(TFTP_RRQ)), strong(App::Tftp));
    assert_eq!(detect_tftp(&udp_c2s(TFTP_WRQ_OPTIONS)), strong(App::Tftp));
    assert_eq!(detect_tftp(&udp_s2c(TFTP_OACK)), strong(App::Tftp));
    // A transfer on fresh ports: DATA block 1, then ACK 1, decide together.
    let mut data = b"\x00\x03\x00\x01".to_vec();
    data.resize(516, 0x41);
    let ack = b"\x00\x04\x00\x01";
    assert_eq!(detect_tftp(&udp_c2s(&data)), Hit::Weak(App::Tftp));
    assert_eq!(
        classify(Transport::Udp, NEUTRAL_PORT, &[(C2S, &data)]).0,
        App::Unknown
    );
    assert_eq!(
        classify(Transport::Udp, NEUTRAL_PORT, &[(C2S, &data), (S2C, ack)]).0,
        App::Tftp
    );
    // An unknown mode; a request without its terminator.
    assert_eq!(
        detect_tftp(&udp_c2s(b"\x00\x01file\x00binary\x00")),
        Hit::Miss
    );
    assert_eq!(detect_tftp(&udp_c2s(b"\x00\x01file")), Hit::Miss);
}

#[test]
fn radius() {
    assert_eq!(
        detect_radius(&udp_c2s(RADIUS_ACCESS_REQUEST)),
        strong(App::Radius)
    );
    // The length must be the datagram's; code 0 does not exist.
    assert_eq!(
        detect_radius(&udp_c2s(&RADIUS_ACCESS_REQUEST[..50])),
        Hit::Miss
    );
    let mut code = RADIUS_ACCESS_REQUEST.to_vec();
    code[0] = 0;
    assert_eq!(detect_radius(&udp_c2s(&code)), Hit::Miss);
}

#[test]
fn coap() {
    assert_eq!(detect_coap(&udp_c2s(COAP_GET)), Hit::Weak(App::Coap));
    assert_eq!(
        classify(Transport::Udp, 5683, &[(C2S, COAP_GET)]).0,
        App::Coap
    );
    // 2.05 Content with a payload.
    let content = b"\x61\x45\x7d\x34\x71\xc0\xff22.3 C";
    assert_eq!(detect_coap(&udp_s2c(content)), Hit::Weak(App::Coap));
    assert_eq!(
        classify(
            Transport::Udp,
            NEUTRAL_PORT,
            &[(C2S, COAP_GET), (S2C, content)]
        )
        .0,
        App::Coap
    );
    // Version 2; token length 9; an option running past the end.
    assert_eq!(detect_coap(&udp_c2s(b"\x81\x01\x7d\x34")), Hit::Miss);
    assert_eq!(
        detect_coap(&udp_c2s(b"\x49\x01\x7d\x34123456789")),
        Hit::Miss
    );
    assert_eq!(
        detect_coap(&udp_c2s(b"\x41\x01\x7d\x34\x71\xbb\x74")),
        Hit::Miss
    );
}

#[test]
fn never_panics() {
    let d = dhcp_discover();
    let seeds = [
        &d[..],
        NTP_V3_SERVER,
        SYSLOG_MSG,
        TFTP_RRQ,
        TFTP_OACK,
        RADIUS_ACCESS_REQUEST,
        COAP_GET,
    ];
    for seed in seeds {
        for detect in [
            detect_dhcp,
            detect_ntp,
            detect_syslog,
            detect_tftp,
            detect_radius,
            detect_coap,
        ] {
            assert!(no_panic(detect, seed) > 0);
        }
    }
}
