//! Per-packet checks: O(1), no state.
//!
//! # TCP flags
//!
//! RFC 9293 gives each flag a meaning but no list of legal combinations; the one firewalls use
//! is Linux conntrack's `tcp_valid_flags` (`net/netfilter/nf_conntrack_proto_tcp.c`, inherited
//! from `ipt_unclean`): over FIN, SYN, RST, ACK and URG (PSH, ECE and CWR are always
//! allowed), only SYN, SYN+URG, SYN+ACK, RST, RST+ACK, FIN+ACK, FIN+ACK+URG, ACK and ACK+URG
//! are valid. Everything else is what scanners and evasion tools send, and what IDS rule sets
//! flag: no flags (nmap's null scan), FIN alone (FIN scan), FIN+PSH+URG (Xmas scan), SYN+FIN
//! (Snort's "SYN FIN scan"), SYN+RST, FIN+RST. Conntrack already refuses to *track* such a
//! segment; this check names it as a threat.
//!
//! # Ping of death and teardrop
//!
//! The parser refuses a fragment that would end past 65 535 bytes
//! ([`Malformed::FragmentTooLarge`]): the ping of death (CVE-1999-0128). The fragment table
//! flags a fragment overlapping one seen before it in the same datagram (RFC 1858, the
//! teardrop family; RFC 5722 forbids overlaps in IPv6 outright). These two functions map
//! those facts, already computed, to threats.

use crate::report::{ThreatDetail, ThreatKind};
use crate::wire::{Malformed, TcpFlags};

use super::Detection;

/// FIN, SYN, RST, ACK, URG: the flags whose combination matters.
const MASK: u8 = 0x37;

/// Bit `f` of `VALID` is set when the flags `f` (masked by [`MASK`]) are a valid combination;
/// the table of Linux's `tcp_valid_flags`, as one 64-bit word.
const VALID: u64 = {
    const FIN: u8 = TcpFlags::FIN.0;
    const SYN: u8 = TcpFlags::SYN.0;
    const RST: u8 = TcpFlags::RST.0;
    const ACK: u8 = TcpFlags::ACK.0;
    const URG: u8 = TcpFlags::URG.0;
    let valid = [
        SYN,
        SYN | URG,
        SYN | ACK,
        RST,
        RST | ACK,
        FIN | ACK,
        FIN | ACK | URG,
        ACK,
        ACK | URG,
    ];
    let mut bits = 0u64;
    let mut i = 0;
    while i < valid.len() {
        bits |= 1 << valid[i];
        i += 1;
    }
    bits
};

/// An impossible flag combination on a TCP segment (see the module documentation).
#[inline]
pub fn tcp_flags(flags: TcpFlags) -> Option<Detection> {
    if VALID & (1u64 << (flags.0 & MASK)) != 0 {
        return None;
    }
    Some(Detection::new(
        ThreatKind::InvalidTcpFlags,
        ThreatDetail::TcpFlags(flags.0),
    ))
}

/// The threat a parse error stands for, if any: [`Malformed::FragmentTooLarge`] is a ping of
/// death.
#[inline]
pub fn malformed(m: Malformed) -> Option<Detection> {
    (m == Malformed::FragmentTooLarge)
        .then_some(Detection::new(ThreatKind::PingOfDeath, ThreatDetail::None))
}

/// A teardrop when the fragment table reported an overlap
/// ([`crate::wire::frag::FragTable::first`] and `later` return it).
#[inline]
pub fn fragment_overlap(overlapped: bool) -> Option<Detection> {
    overlapped.then_some(Detection::new(ThreatKind::Teardrop, ThreatDetail::None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frag::{FragKey, FragTable, Later, Piece};

    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const PSH: u8 = 0x08;
    const ACK: u8 = 0x10;
    const URG: u8 = 0x20;
    const ECE: u8 = 0x40;
    const CWR: u8 = 0x80;

    fn flagged(f: u8) -> bool {
        tcp_flags(TcpFlags(f)).is_some()
    }

    #[test]
    fn ordinary_segments_pass() {
        for f in [
            SYN,
            SYN | ECE | CWR, // ECN setup SYN (RFC 3168)
            SYN | ACK,
            SYN | ACK | ECE,
            ACK,
            ACK | PSH,
            ACK | PSH | URG,
            FIN | ACK,
            FIN | ACK | PSH,
            RST,
            RST | ACK,
            RST | ACK | PSH,
            SYN | URG,
        ] {
            assert!(!flagged(f), "0x{f:02x}");
        }
    }

    #[test]
    fn scans_and_impossible_combinations_are_flagged() {
        for (f, name) in [
            (0, "null scan"),
            (FIN, "FIN scan"),
            (FIN | PSH | URG, "Xmas scan"),
            (FIN | SYN | RST | PSH | ACK | URG, "everything"),
            (SYN | FIN, "SYN+FIN"),
            (SYN | FIN | ACK, "SYN+FIN+ACK"),
            (SYN | RST, "SYN+RST"),
            (SYN | RST | ACK, "SYN+RST+ACK"),
            (FIN | RST, "FIN+RST"),
            (FIN | RST | ACK, "FIN+RST+ACK"),
            (PSH, "PSH alone"),
            (URG, "URG alone"),
            (ECE | CWR, "ECN bits alone"),
            (RST | URG, "RST+URG"),
        ] {
            let d = tcp_flags(TcpFlags(f));
            assert_eq!(
                d,
                Some(Detection::new(
                    ThreatKind::InvalidTcpFlags,
                    ThreatDetail::TcpFlags(f)
                )),
                "{name}"
            );
        }
    }

    #[test]
    fn exactly_nine_of_the_32_combinations_are_valid_whatever_psh_ece_cwr() {
        for extra in [0, PSH, ECE, CWR, PSH | ECE | CWR] {
            let valid = (0..=MASK)
                .filter(|f| f & !MASK == 0)
                .filter(|&f| !flagged(f | extra))
                .count();
            assert_eq!(valid, 9, "with 0x{extra:02x}");
        }
        // Every byte gives an answer (no shift overflows).
        for f in 0..=255u8 {
            let _ = tcp_flags(TcpFlags(f));
        }
    }

    #[test]
    fn ping_of_death_is_the_parsers_fragment_too_large() {
        assert_eq!(
            malformed(Malformed::FragmentTooLarge).map(|d| d.kind),
            Some(ThreatKind::PingOfDeath)
        );
        for m in Malformed::ALL {
            if m != Malformed::FragmentTooLarge {
                assert_eq!(malformed(m), None, "{m}");
            }
        }
        // An ICMP echo fragment at offset 65528 carrying 16 bytes: the classic ping of death.
        let mut f = vec![0u8; 14 + 20 + 16];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&36u16.to_be_bytes());
        ip[6..8].copy_from_slice(&(65528u16 / 8).to_be_bytes());
        ip[8] = 64;
        ip[9] = 1;
        let err = crate::wire::parse(&f).err();
        assert_eq!(err, Some(Malformed::FragmentTooLarge));
        assert_eq!(
            err.and_then(malformed).map(|d| d.kind),
            Some(ThreatKind::PingOfDeath)
        );
    }

    #[test]
    fn teardrop_is_the_fragment_tables_overlap() {
        assert_eq!(fragment_overlap(false), None);
        assert_eq!(
            fragment_overlap(true),
            Some(Detection::new(ThreatKind::Teardrop, ThreatDetail::None))
        );
        // The classic teardrop: a first fragment of 36 bytes, then one at offset 24.
        let mut t: FragTable<u8, u32> = FragTable::new(8, 1_000_000_000);
        let key = FragKey {
            src: [10, 0, 0, 1].into(),
            dst: [10, 0, 0, 2].into(),
            proto: 17,
            id: 7,
        };
        let overlap = t.first(key, 0, 36, 1, |_, _| {}, |_| {});
        assert_eq!(fragment_overlap(overlap), None);
        let piece = Piece {
            offset: 24,
            len: 4,
            last: true,
        };
        let (outcome, overlap) = t.later(key, 1, piece, 2, |_| {});
        assert_eq!(outcome, Later::Verdict(1, 2));
        assert_eq!(
            fragment_overlap(overlap).map(|d| d.kind),
            Some(ThreatKind::Teardrop)
        );
    }
}
