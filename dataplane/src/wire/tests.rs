//! One test per accepted shape and per malformed case, on annotated byte arrays, plus a
//! differential test against etherparse.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

const MACS: [u8; 12] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];

/// Ethernet header + `ethertype` + `rest`.
fn eth(ethertype: u16, rest: &[u8]) -> Vec<u8> {
    let mut f = MACS.to_vec();
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(rest);
    f
}

/// An IPv4 header (no options unless given) around `payload`.
fn ipv4(proto: u8, flags_frag: u16, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let hlen = 20 + opts.len();
    let total = (hlen + payload.len()) as u16;
    let mut h = vec![
        0x40 | (hlen / 4) as u8, // version 4, IHL
        0,                       // DSCP/ECN
    ];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&0x1234u16.to_be_bytes()); // identification
    h.extend_from_slice(&flags_frag.to_be_bytes());
    h.push(64); // TTL
    h.push(proto);
    h.extend_from_slice(&[0, 0]); // checksum (not verified)
    h.extend_from_slice(&[198, 18, 0, 1]);
    h.extend_from_slice(&[198, 18, 0, 2]);
    h.extend_from_slice(opts);
    h.extend_from_slice(payload);
    h
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(63); // hop limit
    h.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
    h.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).octets());
    h.extend_from_slice(payload);
    h
}

/// A TCP header with `flags`, `opts` (padded by the caller to 4-byte multiples) and payload.
fn tcp(flags: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let hlen = 20 + opts.len();
    let mut h = Vec::new();
    h.extend_from_slice(&40000u16.to_be_bytes()); // source port
    h.extend_from_slice(&80u16.to_be_bytes()); // destination port
    h.extend_from_slice(&1000u32.to_be_bytes()); // sequence
    h.extend_from_slice(&2000u32.to_be_bytes()); // acknowledgment
    h.push(((hlen / 4) as u8) << 4); // data offset
    h.push(flags);
    h.extend_from_slice(&65535u16.to_be_bytes()); // window
    h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    h.extend_from_slice(opts);
    h.extend_from_slice(payload);
    h
}

fn udp(payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&5353u16.to_be_bytes());
    h.extend_from_slice(&53u16.to_be_bytes());
    h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

fn ip_of<'a>(p: &Packet<'a>) -> Ip<'a> {
    match p.net {
        Net::Ip(ip) => ip,
        other => panic!("not IP: {other:?}"),
    }
}

#[test]
fn ipv4_tcp_syn_with_options() {
    // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    let opts = [
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    let f = eth(0x0800, &ipv4(6, 0x4000, &[], &tcp(0x02, &opts, b"")));
    let p = parse(&f).unwrap();
    assert_eq!(p.ethertype, 0x0800);
    assert_eq!(*p.src_mac, [2, 0, 0, 0, 0, 1]);
    let Net::Ip(ip) = p.net else { panic!() };
    assert_eq!(ip.src.ip(), IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)));
    assert_eq!(
        (ip.proto, ip.ttl, ip.frag),
        (6, 64, None),
        "DF alone is no fragment"
    );
    let L4::Tcp(t) = ip.l4 else { panic!() };
    assert_eq!(
        (t.src_port, t.dst_port, t.seq, t.ack),
        (40000, 80, 1000, 2000)
    );
    assert!(t.flags.contains(TcpFlags::SYN) && !t.flags.intersects(TcpFlags::ACK | TcpFlags::RST));
    assert_eq!(
        t.options,
        TcpOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_permitted: true,
            sack_blocks: 0,
            timestamp: true
        }
    );
    assert!(t.payload.is_empty());
}

#[test]
fn ethernet_padding_is_not_payload() {
    // A 1-byte UDP payload padded to the 60-byte minimum frame.
    let mut f = eth(0x0800, &ipv4(17, 0, &[], &udp(b"x")));
    f.resize(60, 0);
    let p = parse(&f).unwrap();
    let Net::Ip(ip) = p.net else { panic!() };
    assert_eq!(ip.l4.payload(), b"x");
    assert_eq!(ip.len, 29);
}

#[test]
fn vlan_and_qinq() {
    let inner = ipv4(17, 0, &[], &udp(b"q"));
    // 802.1ad outer tag id 100, 802.1Q inner tag id 200 (priority bits set, masked off).
    let mut tagged = vec![0x00, 100, 0x81, 0x00, 0xe0, 200, 0x08, 0x00];
    tagged.extend_from_slice(&inner);
    let frame = eth(0x88a8, &tagged);
    let p = parse(&frame).unwrap();
    assert_eq!(
        (p.vlan_count, p.vlans, p.ethertype),
        (2, [100, 200], 0x0800)
    );
    assert_eq!(ip_of(&p).proto, 17);
    // Three tags are refused.
    let mut three = vec![0, 1, 0x81, 0x00, 0, 2, 0x81, 0x00, 0, 3, 0x08, 0x00];
    three.extend_from_slice(&inner);
    assert_eq!(parse(&eth(0x8100, &three)), Err(Malformed::TooManyVlanTags));
    assert_eq!(parse(&eth(0x8100, &[0, 1])), Err(Malformed::VlanTruncated));
}

#[test]
fn pppoe_session_carrying_ipv4() {
    // version/type 0x11, code 0, session 0x0042, length, PPP protocol 0x0021 (IPv4).
    let inner = ipv4(17, 0, &[], &udp(b"p"));
    let mut s = vec![0x11, 0, 0, 0x42];
    s.extend_from_slice(&((inner.len() + 2) as u16).to_be_bytes());
    s.extend_from_slice(&[0x00, 0x21]);
    s.extend_from_slice(&inner);
    let frame = eth(0x8864, &s);
    let p = parse(&frame).unwrap();
    assert_eq!(p.ethertype, 0x0800);
    assert_eq!(ip_of(&p).proto, 17);
    assert_eq!(
        parse(&eth(0x8864, &[0x11, 0, 0, 0x42, 0, 2])),
        Err(Malformed::PppoeTruncated)
    );
}

#[test]
fn arp_is_recognised() {
    // Ethernet/IPv4 request: htype 1, ptype 0x0800, hlen 6, plen 4, op 1, 20 address bytes.
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&[0; 20]);
    assert_eq!(parse(&eth(0x0806, &a)).unwrap().net, Net::Arp { op: 1 });
    assert_eq!(parse(&eth(0x0806, &a[..20])), Err(Malformed::ArpTruncated));
}

#[test]
fn other_ethertypes_pass_unparsed() {
    let frame = eth(0x88cc, b"lldp");
    let p = parse(&frame).unwrap();
    assert_eq!(p.net, Net::Other(b"lldp"));
}

#[test]
fn ipv4_fragments() {
    let body = udp(&[7; 32]);
    // First fragment: MF set, offset 0: transport parsed.
    let frame = eth(0x0800, &ipv4(17, 0x2000, &[], &body));
    let p = parse(&frame).unwrap();
    let Net::Ip(ip) = p.net else { panic!() };
    assert_eq!(
        ip.frag,
        Some(Fragment {
            id: 0x1234,
            offset: 0,
            more: true
        })
    );
    assert!(matches!(ip.l4, L4::Udp { dst_port: 53, .. }));
    // Later fragment: offset 185 * 8 = 1480, no transport header.
    let frame = eth(0x0800, &ipv4(17, 185, &[], &[1, 2, 3]));
    let p = parse(&frame).unwrap();
    let Net::Ip(ip) = p.net else { panic!() };
    assert_eq!(
        ip.frag,
        Some(Fragment {
            id: 0x1234,
            offset: 1480,
            more: false
        })
    );
    assert_eq!(ip.l4, L4::Fragment(&[1, 2, 3]));
    // Ping of death: the last fragment ends beyond 65535.
    let frame = eth(0x0800, &ipv4(1, 8190, &[], &[0; 16])); // 65520 + 16 > 65535
    let p = parse(&frame);
    assert_eq!(p, Err(Malformed::FragmentTooLarge));
}

#[test]
fn ipv4_options_are_length_checked() {
    // Router alert (kind 148, len 4) is fine.
    let frame = eth(0x0800, &ipv4(17, 0, &[148, 4, 0, 0], &udp(b"")));
    let ok = parse(&frame).unwrap();
    assert!(ip_of(&ok).has_options);
    // A length running past the header.
    let bad = eth(0x0800, &ipv4(17, 0, &[7, 9, 0, 0], &udp(b"")));
    assert_eq!(parse(&bad), Err(Malformed::Ipv4BadOption));
    // A length below 2.
    let bad = eth(0x0800, &ipv4(17, 0, &[130, 1, 0, 0], &udp(b"")));
    assert_eq!(parse(&bad), Err(Malformed::Ipv4BadOption));
}

#[test]
fn ipv4_malformed() {
    let good = ipv4(17, 0, &[], &udp(b"abc"));
    assert_eq!(
        parse(&eth(0x0800, &good[..19])),
        Err(Malformed::Ipv4Truncated)
    );
    let mut v = good.clone();
    v[0] = 0x65; // version 6 in an IPv4 ethertype
    assert_eq!(parse(&eth(0x0800, &v)), Err(Malformed::Ipv4BadVersion));
    let mut v = good.clone();
    v[0] = 0x44; // IHL 4 (16 bytes)
    assert_eq!(parse(&eth(0x0800, &v)), Err(Malformed::Ipv4BadHeaderLength));
    let mut v = good.clone();
    v[0] = 0x4f; // IHL 15 (60 bytes) > the 31 bytes present
    assert_eq!(parse(&eth(0x0800, &v)), Err(Malformed::Ipv4BadHeaderLength));
    let mut v = good.clone();
    v[2..4].copy_from_slice(&200u16.to_be_bytes()); // total length beyond the frame
    assert_eq!(parse(&eth(0x0800, &v)), Err(Malformed::Ipv4BadTotalLength));
    let mut v = good.clone();
    v[2..4].copy_from_slice(&10u16.to_be_bytes()); // total length below the header
    assert_eq!(parse(&eth(0x0800, &v)), Err(Malformed::Ipv4BadTotalLength));
}

#[test]
fn transport_malformed() {
    let t = tcp(0x10, &[], b"");
    assert_eq!(
        parse(&eth(0x0800, &ipv4(6, 0, &[], &t[..19]))),
        Err(Malformed::TcpTruncated)
    );
    let mut bad = t.clone();
    bad[12] = 4 << 4; // data offset 4
    assert_eq!(
        parse(&eth(0x0800, &ipv4(6, 0, &[], &bad))),
        Err(Malformed::TcpBadDataOffset)
    );
    let mut bad = t.clone();
    bad[12] = 15 << 4; // 60-byte header in a 20-byte segment
    assert_eq!(
        parse(&eth(0x0800, &ipv4(6, 0, &[], &bad))),
        Err(Malformed::TcpBadDataOffset)
    );
    // MSS with length 3; an option running past the header.
    let bad = tcp(0x02, &[2, 3, 5, 0], b"");
    assert_eq!(
        parse(&eth(0x0800, &ipv4(6, 0, &[], &bad))),
        Err(Malformed::TcpBadOption)
    );
    let bad = tcp(0x02, &[1, 1, 30, 8], b"");
    assert_eq!(
        parse(&eth(0x0800, &ipv4(6, 0, &[], &bad))),
        Err(Malformed::TcpBadOption)
    );
    let u = udp(b"hello");
    assert_eq!(
        parse(&eth(0x0800, &ipv4(17, 0, &[], &u[..7]))),
        Err(Malformed::UdpTruncated)
    );
    let mut bad = u.clone();
    bad[4..6].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(
        parse(&eth(0x0800, &ipv4(17, 0, &[], &bad))),
        Err(Malformed::UdpBadLength)
    );
    bad[4..6].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(
        parse(&eth(0x0800, &ipv4(17, 0, &[], &bad))),
        Err(Malformed::UdpBadLength)
    );
    assert_eq!(
        parse(&eth(0x0800, &ipv4(1, 0, &[], &[8, 0, 0]))),
        Err(Malformed::IcmpTruncated)
    );
    assert_eq!(
        parse(&eth(0x86dd, &ipv6(58, &[128]))),
        Err(Malformed::Icmpv6Truncated)
    );
}

#[test]
fn icmp_echo_carries_its_identifier() {
    // Echo request: type 8, code 0, checksum, identifier 0x0102, sequence 1, data.
    let frame = eth(0x0800, &ipv4(1, 0, &[], &[8, 0, 0, 0, 1, 2, 0, 1, 0xaa]));
    let p = parse(&frame).unwrap();
    let Net::Ip(ip) = p.net else { panic!() };
    assert_eq!(
        ip.l4,
        L4::Icmp {
            v6: false,
            ty: 8,
            code: 0,
            ident: 0x0102,
            payload: &[0xaa]
        }
    );
    assert_eq!(ip.l4.ports(), (0x0102, 0x0102));
    // Destination unreachable: no identifier.
    let frame = eth(0x0800, &ipv4(1, 0, &[], &[3, 1, 0, 0, 0, 0, 0, 0]));
    let p = parse(&frame).unwrap();
    let Net::Ip(ip) = p.net else { panic!() };
    assert!(matches!(
        ip.l4,
        L4::Icmp {
            ty: 3,
            code: 1,
            ident: 0,
            ..
        }
    ));
}

#[test]
fn ipv6_with_extension_headers() {
    // Hop-by-hop (8 bytes: next = routing, len 0, PadN) -> routing (8 bytes: next = dest opts)
    // -> destination options (8 bytes: next = UDP) -> UDP.
    let mut ext = vec![43, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
    ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    ext.extend_from_slice(&udp(b"v6"));
    let frame = eth(0x86dd, &ipv6(0, &ext));
    let p = parse(&frame).unwrap();
    let Net::Ip(ip) = p.net else { panic!() };
    assert!(!ip.is_v4());
    assert_eq!((ip.proto, ip.ttl), (17, 63));
    assert_eq!(ip.l4.payload(), b"v6");
    // An extension header longer than the payload.
    let frame = eth(0x86dd, &ipv6(0, &[17, 9, 0, 0, 0, 0, 0, 0]));
    let bad = parse(&frame);
    assert_eq!(bad, Err(Malformed::Ipv6BadExtension));
    // Nine chained destination-options headers.
    let mut many = Vec::new();
    for _ in 0..9 {
        many.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    }
    assert_eq!(
        parse(&eth(0x86dd, &ipv6(60, &many))),
        Err(Malformed::Ipv6TooManyExtensions)
    );
}

#[test]
fn ipv6_fragments_and_neighbour_discovery() {
    // Fragment header: next UDP, offset 0, M set, id 0xdeadbeef; then UDP.
    let mut first = vec![17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
    first.extend_from_slice(&udp(b"first"));
    let frame = eth(0x86dd, &ipv6(44, &first));
    let p = parse(&frame).unwrap();
    let Net::Ip(ip) = p.net else { panic!() };
    assert_eq!(
        ip.frag,
        Some(Fragment {
            id: 0xdead_beef,
            offset: 0,
            more: true
        })
    );
    assert!(matches!(ip.l4, L4::Udp { .. }));
    // Offset 1448 (181 << 3), no more fragments: data, not a UDP header.
    let later = [17, 0, 0x05, 0xa8, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3];
    let frame = eth(0x86dd, &ipv6(44, &later));
    let p = parse(&frame).unwrap();
    let Net::Ip(ip) = p.net else { panic!() };
    assert_eq!(
        ip.frag,
        Some(Fragment {
            id: 0xdead_beef,
            offset: 1448,
            more: false
        })
    );
    assert_eq!(ip.l4, L4::Fragment(&[1, 2, 3]));
    // Neighbour solicitation (type 135).
    let frame = eth(0x86dd, &ipv6(58, &[135, 0, 0, 0, 0, 0, 0, 0]));
    let p = parse(&frame).unwrap();
    let Net::Ip(ip) = p.net else { panic!() };
    let L4::Icmp { v6: true, ty, .. } = ip.l4 else {
        panic!()
    };
    assert!(is_neighbour_discovery(ty));
}

#[test]
fn ipv6_malformed() {
    let good = ipv6(17, &udp(b"x"));
    assert_eq!(
        parse(&eth(0x86dd, &good[..39])),
        Err(Malformed::Ipv6Truncated)
    );
    let mut v = good.clone();
    v[0] = 0x40;
    assert_eq!(parse(&eth(0x86dd, &v)), Err(Malformed::Ipv6BadVersion));
    let mut v = good.clone();
    v[4..6].copy_from_slice(&500u16.to_be_bytes());
    assert_eq!(
        parse(&eth(0x86dd, &v)),
        Err(Malformed::Ipv6BadPayloadLength)
    );
}

#[test]
fn ah_and_esp() {
    // IPv4 AH: next TCP, payload length 4 (24 bytes), then TCP.
    let mut ah = vec![6, 4, 0, 0];
    ah.extend_from_slice(&[0; 20]);
    ah.extend_from_slice(&tcp(0x10, &[], b"ah"));
    let frame = eth(0x0800, &ipv4(51, 0, &[], &ah));
    let p = parse(&frame).unwrap();
    let Net::Ip(ip) = p.net else { panic!() };
    assert!(ip.has_ah);
    assert_eq!(ip.proto, 6);
    assert_eq!(ip.l4.payload(), b"ah");
    // ESP: recognised, not decrypted.
    let frame = eth(0x0800, &ipv4(50, 0, &[], &[0, 0, 0, 1, 0, 0, 0, 1]));
    let p = parse(&frame).unwrap();
    let Net::Ip(ip) = p.net else { panic!() };
    assert_eq!(
        (ip.proto, ip.l4),
        (50, L4::Other(&[0, 0, 0, 1, 0, 0, 0, 1]))
    );
}

#[test]
fn truncated_ethernet() {
    assert_eq!(parse(&[]), Err(Malformed::EthernetTruncated));
    assert_eq!(parse(&[0; 13]), Err(Malformed::EthernetTruncated));
}

#[test]
fn malformed_names_are_unique_and_indexed() {
    for (i, m) in Malformed::ALL.iter().enumerate() {
        assert_eq!(m.index(), i);
    }
    let mut names: Vec<&str> = Malformed::ALL.iter().map(|m| m.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Malformed::COUNT);
}

#[test]
fn every_prefix_of_valid_frames_parses_or_is_malformed_never_panics() {
    let frames = [
        eth(
            0x0800,
            &ipv4(6, 0, &[148, 4, 0, 0], &tcp(0x12, &[2, 4, 5, 180], b"data")),
        ),
        eth(
            0x86dd,
            &ipv6(
                0,
                &[
                    44, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0, 1, 0, 0, 0, 9, 0, 53, 0, 53, 0, 9, 0, 0, 1,
                ],
            ),
        ),
        eth(0x8100, &[0, 5, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]),
    ];
    for f in &frames {
        for n in 0..=f.len() {
            let _ = parse(&f[..n]);
        }
        for i in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                g[i] ^= 1 << bit;
                let _ = parse(&g);
            }
        }
    }
}

/// etherparse as the oracle: packets it builds must parse here to the same fields.
#[test]
fn agrees_with_etherparse_on_built_packets() {
    use etherparse::PacketBuilder;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let r = next();
        let sport = (r & 0xffff) as u16;
        let dport = ((r >> 16) & 0xffff) as u16;
        let len = ((r >> 32) % 200) as usize;
        let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ (r as u8)).collect();
        let v6 = r & (1 << 40) != 0;
        let is_tcp = r & (1 << 41) != 0;
        let vlan = r & (1 << 42) != 0;
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let b = if vlan {
            b.single_vlan(etherparse::VlanId::try_new(((r >> 44) & 0xfff) as u16).unwrap())
        } else {
            b.single_vlan(etherparse::VlanId::try_new(0).unwrap())
        };
        let b = if v6 {
            b.ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                33,
            )
        } else {
            b.ipv4([198, 18, 1, 1], [198, 18, 2, 2], 17)
        };
        let mut out = Vec::new();
        if is_tcp {
            let b = b
                .tcp(sport, dport, r as u32, 4000)
                .syn()
                .ack((r >> 8) as u32);
            b.write(&mut out, &payload).unwrap();
        } else {
            b.udp(sport, dport).write(&mut out, &payload).unwrap();
        }
        let theirs = etherparse::SlicedPacket::from_ethernet(&out).unwrap();
        let mine = parse(&out).unwrap_or_else(|e| panic!("{e} on {out:02x?}"));
        assert_eq!(mine.vlan_count, 1);
        let Net::Ip(ip) = mine.net else { panic!() };
        match theirs.transport {
            Some(etherparse::TransportSlice::Tcp(t)) => {
                let L4::Tcp(m) = ip.l4 else { panic!() };
                assert_eq!(
                    (m.src_port, m.dst_port, m.seq, m.ack),
                    (
                        t.source_port(),
                        t.destination_port(),
                        t.sequence_number(),
                        t.acknowledgment_number()
                    )
                );
                assert_eq!(m.flags.contains(TcpFlags::SYN), t.syn());
                assert_eq!(m.payload, t.payload());
            }
            Some(etherparse::TransportSlice::Udp(u)) => {
                let L4::Udp {
                    src_port,
                    dst_port,
                    payload,
                } = ip.l4
                else {
                    panic!()
                };
                assert_eq!(
                    (src_port, dst_port, payload),
                    (u.source_port(), u.destination_port(), u.payload())
                );
            }
            other => panic!("etherparse saw {other:?}"),
        }
        assert_eq!(ip.ttl, if v6 { 33 } else { 17 });
    }
}
