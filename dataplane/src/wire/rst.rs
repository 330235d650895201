//! TCP resets for dropped segments (RFC 9293 section 3.10.7.1): in protect mode the dataplane
//! answers a dropped TCP segment with a RST, so the sender fails fast instead of retrying
//! into a black hole.
//!
//! [`build_rst`] writes the whole frame (Ethernet with the original VLAN tags, IPv4 or IPv6,
//! TCP with valid checksums) into a caller-supplied buffer: no allocation, so a worker can
//! build it straight into an mbuf.

use super::checksum::{finish, sum_words};
use super::{Addr, L4, Net, Packet, TcpFlags, ethertype};

/// Largest frame [`build_rst`] writes: Ethernet + 2 VLAN tags + IPv6 + TCP.
pub const MAX_RST_FRAME: usize = 14 + 8 + 40 + 20;

/// The RST answering `pkt` (a TCP segment, not itself a RST), addressed back to its sender,
/// written into `out`; returns the frame length, or `None` when `pkt` is not TCP, is a RST, or
/// `out` is shorter than the frame.
///
/// Per RFC 9293: if the segment carried an ACK, the RST's sequence number is that ACK and it
/// carries no ACK; otherwise its sequence number is zero and it acknowledges everything the
/// segment occupied (payload, plus one for SYN and for FIN).
pub fn build_rst(pkt: &Packet<'_>, out: &mut [u8]) -> Option<usize> {
    let Net::Ip(ip) = pkt.net else { return None };
    let L4::Tcp(t) = ip.l4 else { return None };
    if t.flags.contains(TcpFlags::RST) {
        return None;
    }
    let vlan_len = 4 * usize::from(pkt.vlan_count);
    let ip_len = if ip.is_v4() { 20 } else { 40 };
    let len = 14 + vlan_len + ip_len + 20;
    let frame = out.get_mut(..len)?;
    // Ethernet: back to the sender.
    frame[0..6].copy_from_slice(pkt.src_mac);
    frame[6..12].copy_from_slice(pkt.dst_mac);
    let mut at = 12;
    // VLAN tags as they were (outer first): QinQ's outer tag type is not kept, 802.1ad is used.
    for i in 0..usize::from(pkt.vlan_count) {
        let tpid = if pkt.vlan_count == 2 && i == 0 {
            ethertype::QINQ
        } else {
            ethertype::VLAN
        };
        frame[at..at + 2].copy_from_slice(&tpid.to_be_bytes());
        frame[at + 2..at + 4].copy_from_slice(&pkt.vlans[i].to_be_bytes());
        at += 4;
    }
    let (seq, ack, flags) = if t.flags.contains(TcpFlags::ACK) {
        (t.ack, 0, TcpFlags::RST)
    } else {
        let occupied = t.payload.len() as u32
            + u32::from(t.flags.contains(TcpFlags::SYN))
            + u32::from(t.flags.contains(TcpFlags::FIN));
        (
            0,
            t.seq.wrapping_add(occupied),
            TcpFlags::RST | TcpFlags::ACK,
        )
    };
    let tcp_len: u16 = 20;
    let mut pseudo = 0u32;
    match (ip.src, ip.dst) {
        (Addr::V4(s), Addr::V4(d)) => {
            frame[at..at + 2].copy_from_slice(&ethertype::IPV4.to_be_bytes());
            at += 2;
            let h = &mut frame[at..at + 20];
            h[0] = 0x45;
            h[1] = 0;
            h[2..4].copy_from_slice(&(20 + tcp_len).to_be_bytes());
            h[4..8].copy_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
            h[8] = 64;
            h[9] = 6;
            h[10..12].copy_from_slice(&[0, 0]);
            h[12..16].copy_from_slice(d);
            h[16..20].copy_from_slice(s);
            let c = finish(sum_words(0, h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            pseudo = sum_words(pseudo, d);
            pseudo = sum_words(pseudo, s);
            at += 20;
        }
        (Addr::V6(s), Addr::V6(d)) => {
            frame[at..at + 2].copy_from_slice(&ethertype::IPV6.to_be_bytes());
            at += 2;
            let h = &mut frame[at..at + 40];
            h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            h[4..6].copy_from_slice(&tcp_len.to_be_bytes());
            h[6] = 6;
            h[7] = 64;
            h[8..24].copy_from_slice(d);
            h[24..40].copy_from_slice(s);
            pseudo = sum_words(pseudo, d);
            pseudo = sum_words(pseudo, s);
            at += 40;
        }
        _ => return None,
    }
    pseudo = pseudo.wrapping_add(6).wrapping_add(u32::from(tcp_len));
    let h = &mut frame[at..at + 20];
    h[0..2].copy_from_slice(&t.dst_port.to_be_bytes());
    h[2..4].copy_from_slice(&t.src_port.to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[8..12].copy_from_slice(&ack.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags.0;
    h[14..20].copy_from_slice(&[0, 0, 0, 0, 0, 0]); // window, checksum, urgent
    let c = finish(sum_words(pseudo, h));
    h[16..18].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse;

    fn syn_frame(v6: bool, vlan: bool, flags: u8, payload: &[u8]) -> Vec<u8> {
        use etherparse::PacketBuilder;
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let b = if vlan {
            b.single_vlan(etherparse::VlanId::try_new(42).unwrap())
        } else {
            b.single_vlan(etherparse::VlanId::try_new(0).unwrap())
        };
        let b = if v6 {
            b.ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
        } else {
            b.ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        };
        let mut b = b.tcp(40000, 80, 1000, 64240);
        if flags & 0x02 != 0 {
            b = b.syn();
        }
        if flags & 0x10 != 0 {
            b = b.ack(5555);
        }
        if flags & 0x01 != 0 {
            b = b.fin();
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        if !vlan {
            // Remove the zero tag the builder always adds when asked for one.
            out.drain(12..16);
        }
        out
    }

    fn check(orig: &[u8]) -> etherparse::TcpHeader {
        let p = parse(orig).unwrap();
        let mut buf = [0u8; MAX_RST_FRAME];
        let n = build_rst(&p, &mut buf).unwrap();
        let rst = &buf[..n];
        let sliced = etherparse::SlicedPacket::from_ethernet(rst).unwrap();
        let Some(etherparse::TransportSlice::Tcp(t)) = sliced.transport else {
            panic!("no TCP")
        };
        // Checksums verified against etherparse's own computation.
        let h = t.to_header();
        match sliced.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                assert_eq!(
                    ip.header().header_checksum(),
                    ip.header().to_header().calc_header_checksum()
                );
                assert_eq!(
                    h.checksum,
                    h.calc_checksum_ipv4(&ip.header().to_header(), &[]).unwrap()
                );
                assert_eq!(ip.header().source(), [198, 18, 0, 2]);
            }
            Some(etherparse::NetSlice::Ipv6(ip)) => {
                assert_eq!(
                    h.checksum,
                    h.calc_checksum_ipv6(&ip.header().to_header(), &[]).unwrap()
                );
            }
            _ => panic!("no IP"),
        }
        assert_eq!((h.source_port, h.destination_port), (80, 40000));
        assert!(h.rst);
        // Back to the sender.
        assert_eq!(&rst[0..6], &orig[6..12]);
        h
    }

    #[test]
    fn rst_for_a_syn_acknowledges_it() {
        for v6 in [false, true] {
            let h = check(&syn_frame(v6, false, 0x02, b""));
            assert!(h.ack);
            assert_eq!((h.sequence_number, h.acknowledgment_number), (0, 1001));
        }
    }

    #[test]
    fn rst_for_an_ack_takes_its_sequence_from_the_ack() {
        let h = check(&syn_frame(false, true, 0x10, b"hello"));
        assert!(!h.ack);
        assert_eq!(h.sequence_number, 5555);
    }

    #[test]
    fn rst_keeps_the_vlan_tag() {
        let orig = syn_frame(true, true, 0x02, b"");
        let p = parse(&orig).unwrap();
        let mut buf = [0u8; MAX_RST_FRAME];
        let n = build_rst(&p, &mut buf).unwrap();
        let back = parse(&buf[..n]).unwrap();
        assert_eq!((back.vlan_count, back.vlans[0]), (1, 42));
    }

    #[test]
    fn no_rst_for_a_rst_or_non_tcp_or_short_buffer() {
        let mut orig = syn_frame(false, false, 0x10, b"");
        orig[14 + 20 + 13] = 0x14; // RST+ACK
        let p = parse(&orig).unwrap();
        assert_eq!(build_rst(&p, &mut [0u8; MAX_RST_FRAME]), None);
        let orig = syn_frame(false, false, 0x02, b"");
        let p = parse(&orig).unwrap();
        assert_eq!(build_rst(&p, &mut [0u8; 40]), None);
    }
}
