//! Frames: Ethernet II, IPv4 or IPv6, TCP or UDP, a payload stamp, written into a caller's
//! buffer (an mbuf's data) without allocation, and the stamp found again on the way back.
//!
//! # Layout
//!
//! `size` counts the FCS ([`FCS_LEN`]) that the NIC appends: [`build`] writes `size - 4`
//! bytes. IPv4: no options, DF set, identification 0, TTL 64. IPv6: no extension headers,
//! hop limit 64. TCP: no options, ACK|PSH (a segment of an established connection), sequence
//! and acknowledgment numbers 1, window 65535. The payload starts with the [`Stamp`] and is
//! zero after it. Every checksum is valid (IPv4 header, TCP/UDP over the pseudo-header; a
//! UDP checksum that computes to 0 is sent as 0xffff, RFC 768).
//!
//! # Stamp
//!
//! [`STAMP_LEN`] = 16 bytes, big-endian, at the start of the L4 payload: magic `0x5047` ("PG",
//! 2 bytes), transmit time (low 48 bits, 6 bytes), flow slot (4 bytes), sequence number
//! (4 bytes). Sixteen bytes is what a 64-byte IPv4/UDP frame has room for; 48 bits of
//! nanoseconds wrap after 78 hours, of a 3 GHz TSC after 26 hours, so a latency is the
//! difference modulo 2^48 ([`Stamp::latency`]).
//!
//! # Fast path
//!
//! Building a frame sums its whole payload for the L4 checksum. A tx loop can instead build a
//! template per flow and size once, copy it into each mbuf and [`restamp`] it: 16 bytes
//! written and the checksum updated incrementally (RFC 1624, eqn. 3).

use dataplane::wire::checksum::{finish, sum_words};
use dataplane::wire::{self, L4, Net, ethertype};

use super::flows::{Flow, Proto};

/// The frame check sequence the NIC appends; counted in a frame's size, not written.
pub const FCS_LEN: usize = 4;
/// Bytes of the payload stamp.
pub const STAMP_LEN: usize = 16;
/// First two bytes of a stamp.
pub const STAMP_MAGIC: u16 = 0x5047;
/// The transmit time bits a stamp carries.
pub const TIME_MASK: u64 = (1 << 48) - 1;

const ETH_LEN: usize = 14;
const TCP_LEN: usize = 20;
const UDP_LEN: usize = 8;

/// The payload stamp: who sent the frame and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    /// Flow slot ([`Flow::slot`]).
    pub flow: u32,
    /// Per-flow sequence number.
    pub seq: u32,
    /// Transmit time in the caller's clock (ns or TSC ticks); only the low 48 bits travel.
    pub tx_time: u64,
}

impl Stamp {
    /// The 16 wire bytes.
    pub fn to_bytes(&self) -> [u8; STAMP_LEN] {
        let mut b = [0u8; STAMP_LEN];
        b[0..2].copy_from_slice(&STAMP_MAGIC.to_be_bytes());
        b[2..8].copy_from_slice(&(self.tx_time & TIME_MASK).to_be_bytes()[2..8]);
        b[8..12].copy_from_slice(&self.flow.to_be_bytes());
        b[12..16].copy_from_slice(&self.seq.to_be_bytes());
        b
    }

    /// Reads a stamp from the start of `payload`; `None` when it is too short or the magic
    /// does not match. `tx_time` comes back with only its low 48 bits.
    pub fn from_bytes(payload: &[u8]) -> Option<Stamp> {
        let b: &[u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
        if u16::from_be_bytes([b[0], b[1]]) != STAMP_MAGIC {
            return None;
        }
        let mut t = [0u8; 8];
        t[2..8].copy_from_slice(&b[2..8]);
        Some(Stamp {
            tx_time: u64::from_be_bytes(t),
            flow: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            seq: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
        })
    }

    /// Time from transmit to `rx_time` (same clock), modulo 2^48: correct for latencies below
    /// 2^48 ticks even when the clock's low bits wrapped in between.
    pub fn latency(&self, rx_time: u64) -> u64 {
        rx_time.wrapping_sub(self.tx_time) & TIME_MASK
    }
}

/// Source and destination MAC addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Macs {
    /// Source (the generator's port).
    pub src: [u8; 6],
    /// Destination (the device under test's port).
    pub dst: [u8; 6],
}

/// Why a frame was not built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// `size` below what headers, stamp and FCS need.
    #[error("a {size}-byte frame cannot hold the headers and stamp: at least {min} bytes")]
    TooSmall {
        /// Size asked for.
        size: u16,
        /// Smallest that fits.
        min: u16,
    },
    /// The buffer is shorter than the frame.
    #[error("a {need}-byte frame does not fit a {have}-byte buffer")]
    BufferTooShort {
        /// Bytes the frame needs.
        need: usize,
        /// Bytes the buffer has.
        have: usize,
    },
}

/// Where things are in a built frame, for [`restamp`] (the default: nothing built yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// Bytes written (size minus FCS).
    pub len: usize,
    /// Offset of the stamp.
    pub stamp_at: usize,
    /// Offset of the L4 checksum.
    pub l4_checksum_at: usize,
    /// UDP (whose zero checksum is written as 0xffff).
    pub udp: bool,
}

/// Ethernet, IP and L4 header bytes.
pub fn header_len(v6: bool, proto: Proto) -> usize {
    ETH_LEN
        + if v6 { 40 } else { 20 }
        + match proto {
            Proto::Tcp => TCP_LEN,
            Proto::Udp => UDP_LEN,
        }
}

/// The smallest frame size (FCS included) that holds the headers and the stamp: 64 for
/// IPv4/UDP (62 rounded up to the Ethernet minimum), 74 for IPv4/TCP, 82 for IPv6/UDP, 94
/// for IPv6/TCP.
pub fn min_size(v6: bool, proto: Proto) -> u16 {
    ((header_len(v6, proto) + STAMP_LEN + FCS_LEN) as u16).max(super::sizes::MIN_SIZE)
}

/// `ipv4/udp`, `ipv6/tcp`...: the frame kind, for messages.
pub fn kind(v6: bool, proto: Proto) -> String {
    format!("{}/{proto}", if v6 { "ipv6" } else { "ipv4" })
}

/// Writes the frame of `flow` with `size` bytes (FCS included) and `stamp` into the start of
/// `buf`; returns its layout. Nothing is written on error.
pub fn build(
    buf: &mut [u8],
    flow: &Flow,
    macs: &Macs,
    size: u16,
    stamp: &Stamp,
) -> Result<Layout, BuildError> {
    let v6 = flow.src.is_ipv6();
    let min = min_size(v6, flow.proto);
    if size < min || flow.src.is_ipv6() != flow.dst.is_ipv6() {
        return Err(BuildError::TooSmall { size, min });
    }
    let len = usize::from(size) - FCS_LEN;
    let have = buf.len();
    let frame = buf
        .get_mut(..len)
        .ok_or(BuildError::BufferTooShort { need: len, have })?;
    frame[0..6].copy_from_slice(&macs.dst);
    frame[6..12].copy_from_slice(&macs.src);
    let ip_at = ETH_LEN;
    let ip_len = len - ETH_LEN;
    let mut pseudo = 0u32;
    let l4_at = match (flow.src, flow.dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            frame[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
            let h = &mut frame[ip_at..ip_at + 20];
            h[0] = 0x45;
            h[1] = 0;
            h[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            h[4..8].copy_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
            h[8] = 64;
            h[9] = flow.proto.number();
            h[10..12].copy_from_slice(&[0, 0]);
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = finish(sum_words(0, h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            pseudo = sum_words(sum_words(pseudo, &s.octets()), &d.octets());
            ip_at + 20
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            frame[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
            let h = &mut frame[ip_at..ip_at + 40];
            h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            h[4..6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
            h[6] = flow.proto.number();
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            pseudo = sum_words(sum_words(pseudo, &s.octets()), &d.octets());
            ip_at + 40
        }
        // Mixed versions were refused above.
        _ => return Err(BuildError::TooSmall { size, min }),
    };
    let l4_len = len - l4_at;
    pseudo = pseudo
        .wrapping_add(u32::from(flow.proto.number()))
        .wrapping_add(l4_len as u32);
    let (hdr, udp) = match flow.proto {
        Proto::Udp => (UDP_LEN, true),
        Proto::Tcp => (TCP_LEN, false),
    };
    let stamp_at = l4_at + hdr;
    let l4 = &mut frame[l4_at..];
    l4[0..2].copy_from_slice(&flow.sport.to_be_bytes());
    l4[2..4].copy_from_slice(&flow.dport.to_be_bytes());
    let csum_in_l4 = if udp {
        l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        l4[6..8].copy_from_slice(&[0, 0]);
        6
    } else {
        l4[4..8].copy_from_slice(&1u32.to_be_bytes());
        l4[8..12].copy_from_slice(&1u32.to_be_bytes());
        l4[12] = 5 << 4;
        l4[13] = (wire::TcpFlags::ACK | wire::TcpFlags::PSH).0;
        l4[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
        l4[16..20].copy_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        16
    };
    l4[hdr..hdr + STAMP_LEN].copy_from_slice(&stamp.to_bytes());
    l4[hdr + STAMP_LEN..].fill(0);
    let mut c = finish(sum_words(pseudo, l4));
    if udp && c == 0 {
        c = 0xffff;
    }
    l4[csum_in_l4..csum_in_l4 + 2].copy_from_slice(&c.to_be_bytes());
    Ok(Layout {
        len,
        stamp_at,
        l4_checksum_at: l4_at + csum_in_l4,
        udp,
    })
}

/// Replaces the stamp of a frame [`build`] wrote with `layout`, fixing the L4 checksum
/// incrementally (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`). The frame is the same, byte for
/// byte, as [`build`] with the new stamp would write.
pub fn restamp(frame: &mut [u8], layout: &Layout, stamp: &Stamp) -> Result<(), BuildError> {
    let short = BuildError::BufferTooShort {
        need: layout.len,
        have: frame.len(),
    };
    if frame.len() < layout.len
        || layout.stamp_at + STAMP_LEN > layout.len
        || layout.l4_checksum_at + 2 > layout.len
    {
        return Err(short);
    }
    let new = stamp.to_bytes();
    let old = &mut frame[layout.stamp_at..layout.stamp_at + STAMP_LEN];
    let at = layout.l4_checksum_at;
    let mut sum = 0u32;
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum = sum
            .wrapping_add(u32::from(!u16::from_be_bytes([o[0], o[1]])))
            .wrapping_add(u32::from(u16::from_be_bytes([n[0], n[1]])));
    }
    old.copy_from_slice(&new);
    let hc = u16::from_be_bytes([frame[at], frame[at + 1]]);
    let mut c = finish(sum.wrapping_add(u32::from(!hc)));
    if layout.udp && c == 0 {
        c = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// The stamp of a received frame: parsed with [`dataplane::wire::parse`] (VLAN tags and IPv6
/// extension headers allowed), read from the start of the TCP or UDP payload. `None` for
/// anything else; never panics.
pub fn parse_stamp(frame: &[u8]) -> Option<Stamp> {
    let pkt = wire::parse(frame).ok()?;
    let Net::Ip(ip) = pkt.net else { return None };
    match ip.l4 {
        L4::Tcp(_) | L4::Udp { .. } => Stamp::from_bytes(ip.l4.payload()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
    use proptest::prelude::*;

    use super::*;
    use crate::pktgen::flows::{FlowSet, FlowSpec};

    const MACS: Macs = Macs {
        src: [2, 0, 0, 0, 0, 1],
        dst: [2, 0, 0, 0, 0, 2],
    };

    fn flow(spec: &str) -> Flow {
        let spec: FlowSpec = spec.parse().unwrap();
        FlowSet::new(spec).unwrap().flow(3, 1).unwrap()
    }

    /// Builds, parses with etherparse, checks every field and checksum; returns the frame.
    fn round_trip(f: &Flow, size: u16, stamp: &Stamp) -> Vec<u8> {
        let mut buf = vec![0xaau8; 9100];
        let layout = build(&mut buf, f, &MACS, size, stamp).unwrap();
        assert_eq!(layout.len, usize::from(size) - FCS_LEN);
        assert!(
            buf[layout.len..].iter().all(|&b| b == 0xaa),
            "wrote past the frame"
        );
        let frame = &buf[..layout.len];
        let h = PacketHeaders::from_ethernet_slice(frame).unwrap();
        let eth = h.link.clone().unwrap().ethernet2().unwrap();
        assert_eq!((eth.source, eth.destination), (MACS.src, MACS.dst));
        let payload = h.payload.slice();
        assert_eq!(
            payload.len(),
            layout.len - header_len(f.src.is_ipv6(), f.proto)
        );
        let (src, dst, l4_sum) = match h.net.as_ref().unwrap() {
            NetHeaders::Ipv4(ip, _) => {
                assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                assert_eq!(usize::from(ip.total_len), layout.len - ETH_LEN);
                assert!(ip.dont_fragment);
                let sum = match h.transport.as_ref().unwrap() {
                    TransportHeader::Udp(u) => (
                        u.checksum,
                        u.calc_checksum_ipv4_raw(ip.source, ip.destination, payload)
                            .unwrap(),
                    ),
                    TransportHeader::Tcp(t) => (
                        t.checksum,
                        t.calc_checksum_ipv4_raw(ip.source, ip.destination, payload)
                            .unwrap(),
                    ),
                    other => panic!("{other:?}"),
                };
                (
                    std::net::IpAddr::from(ip.source),
                    std::net::IpAddr::from(ip.destination),
                    sum,
                )
            }
            NetHeaders::Ipv6(ip, _) => {
                assert_eq!(usize::from(ip.payload_length), layout.len - ETH_LEN - 40);
                let sum = match h.transport.as_ref().unwrap() {
                    TransportHeader::Udp(u) => (
                        u.checksum,
                        u.calc_checksum_ipv6_raw(ip.source, ip.destination, payload)
                            .unwrap(),
                    ),
                    TransportHeader::Tcp(t) => (
                        t.checksum,
                        t.calc_checksum_ipv6_raw(ip.source, ip.destination, payload)
                            .unwrap(),
                    ),
                    other => panic!("{other:?}"),
                };
                (
                    std::net::IpAddr::from(ip.source),
                    std::net::IpAddr::from(ip.destination),
                    sum,
                )
            }
            other => panic!("{other:?}"),
        };
        assert_eq!((src, dst), (f.src, f.dst));
        assert_eq!(l4_sum.0, l4_sum.1, "L4 checksum");
        let (sport, dport) = match h.transport.as_ref().unwrap() {
            TransportHeader::Udp(u) => {
                assert_eq!(f.proto, Proto::Udp);
                assert_eq!(usize::from(u.length), payload.len() + UDP_LEN);
                (u.source_port, u.destination_port)
            }
            TransportHeader::Tcp(t) => {
                assert_eq!(f.proto, Proto::Tcp);
                assert!(t.ack && t.psh && !t.syn);
                (t.source_port, t.destination_port)
            }
            other => panic!("{other:?}"),
        };
        assert_eq!((sport, dport), (f.sport, f.dport));
        assert_eq!(&payload[..STAMP_LEN], &stamp.to_bytes());
        // The dataplane's own parser agrees on the 5-tuple, and the stamp is found again.
        let p = wire::parse(frame).unwrap();
        let Net::Ip(ip) = p.net else { panic!() };
        assert_eq!((ip.src.ip(), ip.dst.ip()), (f.src, f.dst));
        assert_eq!(ip.l4.ports(), (f.sport, f.dport));
        let sent = Stamp {
            tx_time: stamp.tx_time & TIME_MASK,
            ..*stamp
        };
        assert_eq!(parse_stamp(frame), Some(sent));
        frame.to_vec()
    }

    const SPECS: [&str; 4] = [
        "count=10,src=198.18.0.0/24,dst=198.19.0.0/24",
        "count=10,proto=tcp,src=198.18.0.0/24,dst=198.19.0.0/24,allowed=50%",
        "count=10,src=2001:2::/64,dst=2001:2:0:1::/64",
        "count=10,proto=tcp,src=2001:2::/64,dst=2001:2:0:1::/64,allowed=50%",
    ];

    #[test]
    fn round_trips_every_kind_at_its_minimum_and_larger_sizes() {
        let stamp = Stamp {
            flow: 3,
            seq: 0xdead_beef,
            tx_time: 0x1234_5678_9abc,
        };
        for spec in SPECS {
            let f = flow(spec);
            let min = min_size(f.src.is_ipv6(), f.proto);
            for size in [min, min + 1, 570, 1518, 9000] {
                round_trip(&f, size, &stamp);
            }
        }
    }

    #[test]
    fn minimum_sizes() {
        assert_eq!(min_size(false, Proto::Udp), 64);
        assert_eq!(min_size(false, Proto::Tcp), 74);
        assert_eq!(min_size(true, Proto::Udp), 82);
        assert_eq!(min_size(true, Proto::Tcp), 94);
        let f = flow(SPECS[3]);
        let mut buf = [0u8; 128];
        assert_eq!(
            build(&mut buf, &f, &MACS, 64, &Stamp::default()),
            Err(BuildError::TooSmall { size: 64, min: 94 })
        );
        assert_eq!(
            build(&mut buf[..80], &f, &MACS, 100, &Stamp::default()),
            Err(BuildError::BufferTooShort { need: 96, have: 80 })
        );
    }

    #[test]
    fn sixty_four_bytes_fill_sixty() {
        let f = flow(SPECS[0]);
        let frame = round_trip(&f, 64, &Stamp::default());
        assert_eq!(frame.len(), 60);
    }

    #[test]
    fn latency_wraps_at_48_bits() {
        let s = Stamp {
            tx_time: TIME_MASK - 5,
            ..Stamp::default()
        };
        let back = Stamp::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back.latency(TIME_MASK + 1 + 10), 16);
        assert_eq!(s.latency(TIME_MASK + 11), 16);
        let high = Stamp {
            tx_time: (7 << 48) | 100,
            ..Stamp::default()
        };
        assert_eq!(Stamp::from_bytes(&high.to_bytes()).unwrap().tx_time, 100);
        assert_eq!(high.latency((9 << 48) | 150), 50);
    }

    #[test]
    fn no_stamp_in_foreign_frames() {
        let f = flow(SPECS[0]);
        let mut frame = round_trip(&f, 128, &Stamp::default());
        let at = header_len(false, Proto::Udp);
        frame[at] ^= 0xff; // magic broken
        assert_eq!(parse_stamp(&frame), None);
        assert_eq!(parse_stamp(&[]), None);
        assert_eq!(Stamp::from_bytes(&[0x50, 0x47, 0, 0]), None);
    }

    proptest! {
        #[test]
        fn parse_stamp_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_stamp(&bytes);
        }

        #[test]
        fn parse_stamp_survives_corrupted_frames(
            kind in 0usize..4, size in 94u16..300, at in 0usize..296, byte: u8, cut in 0usize..300,
        ) {
            let f = flow(SPECS[kind]);
            let mut buf = vec![0u8; 300];
            let l = build(&mut buf, &f, &MACS, size, &Stamp::default()).unwrap();
            buf.truncate(l.len);
            if let Some(b) = buf.get_mut(at) {
                *b = byte;
            }
            buf.truncate(cut.min(buf.len()));
            let _ = parse_stamp(&buf);
        }

        #[test]
        fn restamp_equals_a_fresh_build(
            kind in 0usize..4, size in 94u16..1600, flow_id: u32, seq: u32, t: u64,
            seq2: u32, t2: u64,
        ) {
            let f = flow(SPECS[kind]);
            let first = Stamp { flow: flow_id, seq, tx_time: t };
            let second = Stamp { flow: flow_id, seq: seq2, tx_time: t2 };
            let mut a = vec![0u8; 1600];
            let mut b = vec![0u8; 1600];
            let l = build(&mut a, &f, &MACS, size, &first).unwrap();
            restamp(&mut a, &l, &second).unwrap();
            build(&mut b, &f, &MACS, size, &second).unwrap();
            prop_assert_eq!(&a[..l.len], &b[..l.len]);
        }
    }

    #[test]
    fn restamp_round_trips_with_etherparse() {
        for spec in SPECS {
            let f = flow(spec);
            let mut buf = vec![0u8; 200];
            let l = build(&mut buf, &f, &MACS, 150, &Stamp::default()).unwrap();
            for seq in 0..300u32 {
                let s = Stamp {
                    flow: 3,
                    seq,
                    tx_time: u64::from(seq) * 0x0101_0101_0101,
                };
                restamp(&mut buf, &l, &s).unwrap();
                let frame = round_trip(&f, 150, &s);
                assert_eq!(&buf[..l.len], &frame[..]);
            }
            assert!(restamp(&mut buf[..100], &l, &Stamp::default()).is_err());
        }
    }
}
