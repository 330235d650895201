//! DNS tunnelling: data smuggled out in query names (iodine, dnscat2, DNSExfiltrator...).
//!
//! Runs on payloads DPI inspects (the first packets of a flow), for DNS queries only
//! (QR = 0, opcode QUERY): a tunnel's upstream data is in the names it asks for. The first
//! question's name (RFC 1035 section 4.1.2; over TCP after the 2-byte length, section 4.2.2)
//! is walked label by label, and flagged when
//!
//! 1. a label is longer than [`Config::dns_max_label`] (tunnels fill labels towards the
//!    63-character limit; ordinary labels are words and host names);
//! 2. the name is longer than [`Config::dns_max_name`];
//! 3. the labels below the registered domain (all but the last two; none for names of one or
//!    two labels) hold at least [`Config::dns_entropy_min_chars`] characters whose Shannon
//!    entropy is at least [`Config::dns_entropy_bits`] bits per character (case folded:
//!    resolvers randomise letter case, RFC draft "0x20"). Base32 and base64 data score 4.5 and
//!    more over 60 characters; words and host names score below 3.5. Hex-encoded data scores
//!    at most 4 bits, so hex tunnels are caught by their length rather than their entropy.
//!
//! The walk stops at the end of the payload (a name cut short is judged on what is present),
//! at a compression pointer, at a reserved label type or after 255 bytes. No allocation: the
//! symbol counts live on the stack.
//!
//! `dpi::dns` has the detector's own walk (which only checks that a question parses); this
//! one measures the labels.

use crate::bytes::{be16, u8_at};
use crate::dpi::Transport;
use crate::report::{DnsReason, ThreatDetail, ThreatKind};

use super::{Config, Detection};

/// Longest name walked, bytes in wire form (RFC 1035 section 2.3.4).
const MAX_NAME: usize = 255;

/// Labels of a name in wire form from offset `at`: each label's bytes, stopping at the root
/// label, a pointer, a reserved type, the end of the message or [`MAX_NAME`] bytes. A label cut
/// by the end of the message yields the bytes present.
fn labels(msg: &[u8], mut at: usize) -> impl Iterator<Item = &[u8]> {
    let start = at;
    std::iter::from_fn(move || {
        let len = usize::from(u8_at(msg, at)?);
        // 0: the root; 0xc0: a compression pointer; 0x40, 0x80: reserved (RFC 6891).
        if len == 0 || len > 63 || at - start >= MAX_NAME {
            return None;
        }
        let from = at + 1;
        let to = (from + len).min(msg.len());
        at = from + len;
        msg.get(from..to).filter(|l| !l.is_empty())
    })
}

/// Shannon entropy of the bytes of `labels`, case folded, in bits per byte; and the byte
/// count.
fn entropy<'a>(labels: impl Iterator<Item = &'a [u8]>) -> (f64, usize) {
    let mut counts = [0u16; 256];
    let mut n = 0usize;
    for b in labels.flatten() {
        counts[usize::from(b.to_ascii_lowercase())] += 1;
        n += 1;
    }
    if n == 0 {
        return (0.0, 0);
    }
    let total = n as f64;
    // H = log2(n) - (1/n) * sum(c * log2(c))
    let sum: f64 = counts
        .iter()
        .filter(|&&c| c > 1)
        .map(|&c| {
            let c = f64::from(c);
            c * c.log2()
        })
        .sum();
    (total.log2() - sum / total, n)
}

/// Checks a DNS payload (see the module documentation). `transport` says whether it starts
/// with TCP's 2-byte length.
pub fn dns_tunnel(payload: &[u8], transport: Transport, cfg: &Config) -> Option<Detection> {
    let msg = match transport {
        Transport::Udp => payload,
        Transport::Tcp => payload.get(2..)?,
    };
    let (flags, qdcount) = (be16(msg, 2)?, be16(msg, 4)?);
    // Queries (QR clear) with opcode QUERY and at least one question.
    if flags & 0xf800 != 0 || qdcount == 0 {
        return None;
    }
    let (mut count, mut longest, mut chars) = (0usize, 0usize, 0usize);
    for l in labels(msg, 12) {
        count += 1;
        longest = longest.max(l.len());
        chars += l.len();
    }
    if count == 0 {
        return None;
    }
    let name_len = chars + count - 1;
    let (bits, judged) = entropy(labels(msg, 12).take(count.saturating_sub(2)));
    let high = judged >= cfg.dns_entropy_min_chars && bits >= cfg.dns_entropy_bits;
    let reason = if longest > cfg.dns_max_label {
        DnsReason::LongLabel
    } else if name_len > cfg.dns_max_name {
        DnsReason::LongName
    } else if high {
        DnsReason::HighEntropy
    } else {
        return None;
    };
    let millibits = if judged >= cfg.dns_entropy_min_chars {
        (bits * 1000.0).round() as u16
    } else {
        0
    };
    Some(Detection::new(
        ThreatKind::DnsTunneling,
        ThreatDetail::Dns {
            reason,
            longest_label: u8::try_from(longest).unwrap_or(u8::MAX),
            name_len: u8::try_from(name_len).unwrap_or(u8::MAX),
            entropy_millibits: millibits,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threat::testutil::mutations;

    /// A query for `name` (A, IN), recursion desired, as `dig` sends it (no EDNS).
    fn query(name: &str) -> Vec<u8> {
        let mut m = vec![0x1f, 0x2e, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.').filter(|l| !l.is_empty()) {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    fn over_tcp(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    fn check(name: &str) -> Option<ThreatDetail> {
        dns_tunnel(&query(name), Transport::Udp, &Config::default()).map(|d| {
            assert_eq!(d.kind, ThreatKind::DnsTunneling);
            d.detail
        })
    }

    fn reason(name: &str) -> Option<DnsReason> {
        check(name).and_then(|d| match d {
            ThreatDetail::Dns { reason, .. } => Some(reason),
            _ => None,
        })
    }

    /// iodine's upstream: base32 data in one long label under the tunnel's domain.
    const IODINE: &str = "paaaaaaaaaaaaaaa2kqzh6ljz9q4wpgjruhwx3a7mfkcenyhn5twb.t.example.com";
    /// base32 data spread over three labels of 30, each under the label limit.
    const SPLIT_BASE32: &str = "mzxw6ytboi2gk3tpmfzgszlbnvqxg3\
        .lfqwg4tfmjsxi3dbnrzgk3lfon2xg2\
        .nb2gs43jonqxi3dpnbsw4ztpmfxgk3.t.example.com";

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "www.example.com",
            "example.com",
            "localhost",
            "ec2-203-0-113-25.compute-1.amazonaws.com",
            "_ldap._tcp.dc._msdcs.corp.example.com",
            "my-service.my-namespace.svc.cluster.local",
            "d1234abcd5678.cloudfront.net",
            "accounts.google.com",
            "prod-eu-west-1-starport-layer-bucket.s3.eu-west-1.amazonaws.com",
        ] {
            assert_eq!(check(name), None, "{name}");
        }
    }

    #[test]
    fn a_long_base32_label_is_tunnelling() {
        let Some(ThreatDetail::Dns {
            reason,
            longest_label,
            name_len,
            entropy_millibits,
        }) = check(IODINE)
        else {
            panic!("not flagged");
        };
        assert_eq!(reason, DnsReason::LongLabel);
        assert_eq!(longest_label, 53);
        assert_eq!(usize::from(name_len), IODINE.len());
        assert!(entropy_millibits > 4_000, "{entropy_millibits}");
        // Over TCP, after the length prefix: the same.
        let tcp = dns_tunnel(
            &over_tcp(&query(IODINE)),
            Transport::Tcp,
            &Config::default(),
        );
        assert_eq!(tcp.map(|d| d.detail), check(IODINE));
    }

    #[test]
    fn high_entropy_labels_are_tunnelling_even_when_short() {
        let Some(ThreatDetail::Dns {
            reason,
            longest_label,
            entropy_millibits,
            ..
        }) = check(SPLIT_BASE32)
        else {
            panic!("not flagged");
        };
        assert_eq!(reason, DnsReason::HighEntropy);
        assert_eq!(longest_label, 30);
        assert!(
            (4_000..5_000).contains(&entropy_millibits),
            "{entropy_millibits}"
        );
    }

    #[test]
    fn a_long_name_of_plain_labels_is_tunnelling() {
        let label = "a".repeat(40);
        let name = format!("{label}.{label}.{label}.{label}.example.com");
        assert_eq!(reason(&name), Some(DnsReason::LongName));
        // 150 characters is the limit: at it, nothing.
        let (b, c) = ("b".repeat(45), "c".repeat(45));
        let at_limit = format!("{b}.{c}.{}.example.com", "d".repeat(46));
        assert_eq!(at_limit.len(), 150);
        assert_eq!(check(&at_limit), None);
        let over = format!("{b}.{c}.{}.example.com", "d".repeat(47));
        assert_eq!(reason(&over), Some(DnsReason::LongName));
    }

    #[test]
    fn thresholds_are_exact() {
        // Label length: 50 passes, 51 does not.
        assert_eq!(check(&format!("{}.example.com", "a".repeat(50))), None);
        assert_eq!(
            reason(&format!("{}.example.com", "a".repeat(51))),
            Some(DnsReason::LongLabel)
        );
        // Entropy: 16 symbols, each twice, is exactly 4.0 bits over 32 characters: flagged.
        let sixteen = "0123456789abcdef";
        let even = format!("{sixteen}{sixteen}.example.com");
        assert_eq!(
            check(&even),
            Some(ThreatDetail::Dns {
                reason: DnsReason::HighEntropy,
                longest_label: 32,
                name_len: 44,
                entropy_millibits: 4_000
            })
        );
        // One symbol repeated instead: below 4.0.
        let uneven = format!("{sixteen}{}0.example.com", &sixteen[..15]);
        assert_eq!(check(&uneven), None);
        // Enough characters: 20 distinct ones (4.32 bits) are judged, 19 (4.25) are not.
        let abc = "abcdefghijklmnopqrst";
        assert_eq!(
            reason(&format!("{abc}.example.com")),
            Some(DnsReason::HighEntropy)
        );
        assert_eq!(check(&format!("{}.example.com", &abc[..19])), None);
        // Letter case does not add entropy: 10 letters twice each (3.32 bits), not 20
        // distinct ones (4.32).
        assert_eq!(check("abcdefghijABCDEFGHIJ.example.com"), None);
        // The registered domain is not judged: a two-label name never is.
        assert_eq!(check(&format!("{abc}.com")), None);
    }

    #[test]
    fn limits_come_from_the_config() {
        let cfg = Config {
            dns_max_label: 60,
            dns_entropy_bits: 5.0,
            ..Config::default()
        };
        assert_eq!(dns_tunnel(&query(IODINE), Transport::Udp, &cfg), None);
    }

    #[test]
    fn responses_and_other_opcodes_are_not_judged() {
        let mut m = query(IODINE);
        m[2] |= 0x80; // QR: a response
        assert_eq!(dns_tunnel(&m, Transport::Udp, &Config::default()), None);
        let mut m = query(IODINE);
        m[2] = 0x28; // opcode 5, UPDATE
        assert_eq!(dns_tunnel(&m, Transport::Udp, &Config::default()), None);
        let mut m = query(IODINE);
        m[5] = 0; // no question
        assert_eq!(dns_tunnel(&m, Transport::Udp, &Config::default()), None);
    }

    #[test]
    fn a_name_cut_by_the_payload_is_judged_on_what_is_there() {
        let m = query(IODINE);
        // Cut inside the long label, after 52 of its 53 characters.
        let cut = &m[..12 + 1 + 52];
        assert_eq!(
            dns_tunnel(cut, Transport::Udp, &Config::default()).map(|d| d.kind),
            Some(ThreatKind::DnsTunneling)
        );
        // A compression pointer ends the walk.
        let mut p = vec![
            0x1f, 0x2e, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w',
        ];
        p.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        assert_eq!(dns_tunnel(&p, Transport::Udp, &Config::default()), None);
    }

    #[test]
    fn never_panics() {
        let cfg = Config::default();
        for seed in [query(IODINE), query(SPLIT_BASE32), query("www.example.com")] {
            mutations(&seed, |d| {
                let _ = dns_tunnel(d, Transport::Udp, &cfg);
                let _ = dns_tunnel(d, Transport::Tcp, &cfg);
            });
        }
        // Labels packed to the limits: 255 bytes of 63-byte labels, no terminator.
        let mut m = vec![0u8; 12];
        m[5] = 1;
        for _ in 0..10 {
            m.push(63);
            m.extend_from_slice(&[b'z'; 63]);
        }
        let d = dns_tunnel(&m, Transport::Udp, &cfg);
        assert!(matches!(
            d.map(|d| d.detail),
            Some(ThreatDetail::Dns {
                reason: DnsReason::LongLabel,
                longest_label: 63,
                ..
            })
        ));
    }
}
