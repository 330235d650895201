//! Threat checks that cost the fast path nothing: each runs at a moment the pipeline already
//! has in hand, on facts it already computed.
//!
//! | when | check | cost | module |
//! |---|---|---|---|
//! | every TCP segment | impossible flag combinations ([`tcp_flags`]) | one table load | [`packet`] |
//! | a parse error | ping of death ([`malformed`]: the parser's [`Malformed::FragmentTooLarge`]) | a compare | [`packet`] |
//! | a fragment recorded | teardrop ([`fragment_overlap`]: the fragment table's overlap flag) | a compare | [`packet`] |
//! | a session is created | SYN flood and session rate per workload ([`RateTable`]) | a hash and a probe of at most 8 slots | [`rate`] |
//! | a TCP segment of a session still opening | split handshake ([`split_handshake`]) | a few compares; none once established | [`handshake`] |
//! | a payload DPI inspects (first packets only) | DNS tunnelling ([`dns_tunnel`]), TLS below 1.2, SSLv2/SSLv3 ([`weak_tls`]) | a walk of the question name / the hello's header | [`dns`], [`tls`] |
//!
//! Every check returns `Option<`[`Detection`]`>`: a [`ThreatKind`] and a fixed-size
//! [`ThreatDetail`]. The pipeline turns one into a [`WorkerRecord`] ([`Detection::record`])
//! for its report ring and, in protect mode, drops the packet ([`Detection::verdict`]).
//! Nothing here allocates after construction, reads a clock (time is passed in), or panics
//! on any input.

pub mod dns;
pub mod handshake;
pub mod packet;
pub mod rate;
pub mod tls;

use std::time::Duration;

use crate::conntrack::Timestamp;
use crate::policy::Mode;
use crate::report::{Flow, ThreatDetail, ThreatKind, ThreatRecord, Verdict, WorkerRecord};
#[cfg(doc)]
use crate::wire::Malformed;

pub use dns::dns_tunnel;
pub use handshake::split_handshake;
pub use packet::{fragment_overlap, malformed, tcp_flags};
pub use rate::{RateCounters, RateTable};
pub use tls::weak_tls;

/// A threat found by one of the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    /// What.
    pub kind: ThreatKind,
    /// Detail for the report.
    pub detail: ThreatDetail,
}

impl Detection {
    /// A detection of `kind` with `detail`.
    pub const fn new(kind: ThreatKind, detail: ThreatDetail) -> Detection {
        Detection { kind, detail }
    }

    /// What the dataplane does about it under `mode`: drops in protect mode, else forwards
    /// and alerts (threats are reported in every mode, discover included).
    pub fn verdict(self, mode: Mode) -> Verdict {
        match mode {
            Mode::Protect => Verdict::Denied,
            Mode::Discover | Mode::Monitor => Verdict::Alerted,
        }
    }

    /// The ring record reporting it.
    pub fn record(self, flow: Flow, at: Timestamp, verdict: Verdict) -> WorkerRecord {
        WorkerRecord::Threat(ThreatRecord {
            flow,
            at,
            kind: self.kind,
            detail: self.detail,
            verdict,
        })
    }
}

/// Thresholds. Every field has a documented default ([`Config::default`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Length of the rate windows (fixed windows, each starting at the first session after
    /// the previous one ended). Default 1 s.
    pub window: Duration,
    /// SYN flood: more than this many half-open TCP sessions (opened by a SYN, handshake
    /// not completed) to one workload within one window, per worker. 0 disables. Default
    /// 1 000.
    pub syn_flood: u32,
    /// Session rate: more than this many new sessions from, or to, one workload within one
    /// window, per worker. 0 disables. Default 5 000.
    pub session_rate: u32,
    /// Workload addresses whose rates one worker tracks at once (rounded up to a power of
    /// two; the least recently active is forgotten first). Default 4 096 (160 KiB).
    pub rate_slots: usize,
    /// DNS tunnelling: a label longer than this many characters. Default 50 (RFC 1035 allows
    /// 63; ordinary names rarely exceed 30, tunnels fill the label).
    pub dns_max_label: usize,
    /// DNS tunnelling: a name longer than this many characters (dots included). Default 150
    /// (RFC 1035 allows 253).
    pub dns_max_name: usize,
    /// DNS tunnelling: Shannon entropy, bits per character, at or above which the labels
    /// below the registered domain look like encoded data. Default 4.0 (base32 data scores
    /// about 4.5 over 60 characters, English-like host names below 3.5).
    pub dns_entropy_bits: f64,
    /// DNS tunnelling: characters needed before the entropy is judged. Default 20.
    pub dns_entropy_min_chars: usize,
    /// Weak TLS: the lowest acceptable highest-offered version. Default 0x0303 (TLS 1.2;
    /// RFC 8996 deprecates TLS 1.0 and 1.1, RFC 7568 SSL 3.0, RFC 6176 SSL 2.0).
    pub tls_min_version: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: Duration::from_secs(1),
            syn_flood: 1_000,
            session_rate: 5_000,
            rate_slots: 4_096,
            dns_max_label: 50,
            dns_max_name: 150,
            dns_entropy_bits: 4.0,
            dns_entropy_min_chars: 20,
            tls_min_version: 0x0303,
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    // The same deterministic generator as DPI's no-panic loops.
    use crate::dpi::testutil::Rng;

    /// Every prefix of `seed`, 300 copies with a few bytes changed and cut at random, and 300
    /// random buffers: each handed to `f`, which must not panic.
    pub(crate) fn mutations(seed: &[u8], mut f: impl FnMut(&[u8])) {
        let mut rng = Rng::new(seed.len() as u64 ^ 0x9e37_79b9_7f4a_7c15);
        for n in 0..=seed.len() {
            f(&seed[..n]);
        }
        let mut buf = seed.to_vec();
        for _ in 0..300 {
            buf.copy_from_slice(seed);
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(buf.len());
                if let Some(b) = buf.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
            let cut = rng.below(buf.len() + 1);
            f(&buf[..cut]);
        }
        let mut junk = [0u8; 300];
        for _ in 0..300 {
            rng.fill(&mut junk);
            let n = rng.below(junk.len() + 1);
            f(&junk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpi::App;

    #[test]
    fn a_detection_becomes_a_record_and_a_verdict() {
        let d = Detection::new(ThreatKind::Teardrop, ThreatDetail::None);
        assert_eq!(d.verdict(Mode::Protect), Verdict::Denied);
        assert_eq!(d.verdict(Mode::Monitor), Verdict::Alerted);
        assert_eq!(d.verdict(Mode::Discover), Verdict::Alerted);
        let flow = Flow {
            client: [10, 0, 0, 1].into(),
            server: [10, 0, 0, 2].into(),
            client_port: 0,
            server_port: 0,
            proto: 17,
            app: App::Unknown,
        };
        let r = d.record(flow, Timestamp::from_secs(1), Verdict::Denied);
        assert_eq!(
            r,
            WorkerRecord::Threat(ThreatRecord {
                flow,
                at: Timestamp::from_secs(1),
                kind: ThreatKind::Teardrop,
                detail: ThreatDetail::None,
                verdict: Verdict::Denied,
            })
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.window, Duration::from_secs(1));
        assert_eq!(
            (c.syn_flood, c.session_rate, c.rate_slots),
            (1_000, 5_000, 4_096)
        );
        assert_eq!((c.dns_max_label, c.dns_max_name), (50, 150));
        assert_eq!((c.dns_entropy_bits, c.dns_entropy_min_chars), (4.0, 20));
        assert_eq!(c.tls_min_version, 0x0303);
    }
}
