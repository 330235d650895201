//! SYN flood and session rate per workload: checked only when a session is created.
//!
//! A [`RateTable`] belongs to one worker (no sharing, no locks) and counts, per workload
//! address, in fixed windows of [`Config::window`]:
//!
//! - half-open TCP sessions *to* it: sessions opened by a SYN, minus those whose handshake
//!   completed within the window ([`RateTable::handshake_completed`], called once per session
//!   on its `SynReceived` -> `Established` transition; a pipeline that does not call it counts
//!   SYNs, a stricter measure);
//! - new sessions *to* it and *from* it.
//!
//! A count above its limit ([`Config::syn_flood`], [`Config::session_rate`]) makes
//! [`RateTable::new_session`] return a [`Detection`] for that session, with the count and the
//! limit in its detail; in protect mode the pipeline drops the session's first packet. Every
//! session above the limit gets one (so every excess SYN can be dropped); to report a window
//! once, report when [`Detection::first_excess`] is true.
//!
//! Fixed windows rather than token buckets: a window's count is what an operator reads as
//! "N per second", and the test of a threshold is exact under an injected clock. A window
//! starts with the first session after the previous one ended, per address.
//!
//! Bounded: [`Config::rate_slots`] entries, found by a keyed hash (std's SipHash with a
//! per-table random key, so that a flood of spoofed addresses cannot aim at one bucket) and
//! a probe of at most [`PROBE`] slots; when all are taken, the entry whose window started
//! longest ago is replaced (counted in [`RateCounters::evicted`]). Sessions are per worker:
//! with RSS spreading a workload's flows over `n` workers, each sees about `1/n` of them, so
//! set the limits per worker.
//!
//! Only workloads are counted: the caller passes `None` for an address that is not one (an
//! external client of a flood is usually spoofed, and counting it would fill the table).

use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::conntrack::Timestamp;
use crate::report::{ThreatDetail, ThreatKind};
use crate::stats::Counter;

use super::{Config, Detection};

/// Slots probed per lookup.
pub const PROBE: usize = 8;

/// Largest table.
pub const MAX_SLOTS: usize = 1 << 20;

/// Rate table counters (single writer: the owning worker).
#[derive(Debug, Default)]
pub struct RateCounters {
    /// Addresses that started being tracked.
    pub tracked: Counter,
    /// Tracked addresses replaced to make room.
    pub evicted: Counter,
    /// Sessions found over a limit.
    pub detections: Counter,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    ip: IpAddr,
    live: bool,
    /// Start of the current window, nanoseconds.
    start: u64,
    half_open_to: u32,
    sessions_to: u32,
    sessions_from: u32,
}

const EMPTY: Slot = Slot {
    ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    live: false,
    start: 0,
    half_open_to: 0,
    sessions_to: 0,
    sessions_from: 0,
};

/// Per-workload session counters of one worker; see the module documentation.
#[derive(Debug)]
pub struct RateTable {
    slots: Box<[Slot]>,
    mask: usize,
    hasher: RandomState,
    window_ns: u64,
    window_ms: u32,
    syn_flood: u32,
    session_rate: u32,
    /// Counters (shared so that a stats reader can see them; written only by the owner).
    pub counters: Arc<RateCounters>,
}

impl Detection {
    /// For a rate detection, whether this is the first session over the limit in its window
    /// (report it; drop the rest without reporting). `true` for every other detection.
    pub fn first_excess(&self) -> bool {
        match self.detail {
            ThreatDetail::Rate {
                observed, limit, ..
            } => observed == limit.saturating_add(1),
            _ => true,
        }
    }
}

impl RateTable {
    /// A table sized and limited by `cfg` (allocated here, once).
    pub fn new(cfg: &Config) -> RateTable {
        let n = cfg.rate_slots.clamp(PROBE, MAX_SLOTS).next_power_of_two();
        let window_ns = u64::try_from(cfg.window.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        RateTable {
            slots: vec![EMPTY; n].into_boxed_slice(),
            mask: n - 1,
            hasher: RandomState::new(),
            window_ns,
            window_ms: u32::try_from(cfg.window.as_millis()).unwrap_or(u32::MAX),
            syn_flood: cfg.syn_flood,
            session_rate: cfg.session_rate,
            counters: Arc::default(),
        }
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.live).count()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot of `ip`, its window current at `now`: found, or claimed (an empty slot, else
    /// the one whose window is oldest).
    fn slot(&mut self, ip: IpAddr, now: u64) -> &mut Slot {
        let home = (self.hasher.hash_one(ip) as usize) & self.mask;
        let mut pick = home;
        let mut found = false;
        for k in 0..PROBE {
            let i = (home + k) & self.mask;
            let s = &self.slots[i];
            if s.live && s.ip == ip {
                pick = i;
                found = true;
                break;
            }
            let p = &self.slots[pick];
            // Prefer an empty slot, then the oldest window.
            if p.live && (!s.live || s.start < p.start) {
                pick = i;
            }
        }
        let window = self.window_ns;
        let counters = &self.counters;
        let s = &mut self.slots[pick];
        if !found {
            if s.live {
                counters.evicted.add(1);
            }
            counters.tracked.add(1);
            *s = Slot {
                ip,
                live: true,
                start: now,
                ..EMPTY
            };
        } else if now.saturating_sub(s.start) >= window {
            *s = Slot { start: now, ..*s };
            s.half_open_to = 0;
            s.sessions_to = 0;
            s.sessions_from = 0;
        }
        s
    }

    fn over(&self, kind: ThreatKind, observed: u32, limit: u32) -> Option<Detection> {
        (limit > 0 && observed > limit).then(|| {
            self.counters.detections.add(1);
            Detection::new(
                kind,
                ThreatDetail::Rate {
                    observed,
                    limit,
                    window_ms: self.window_ms,
                },
            )
        })
    }

    /// A session was created at `now` from `client` to `server` (each `Some` only when it is
    /// a workload's address); `syn` when a TCP SYN opened it. Returns the first limit it
    /// exceeds: SYN flood to the server, then session rate to the server, then from the
    /// client.
    pub fn new_session(
        &mut self,
        client: Option<IpAddr>,
        server: Option<IpAddr>,
        syn: bool,
        now: Timestamp,
    ) -> Option<Detection> {
        let now = now.as_nanos();
        let mut found = None;
        if let Some(ip) = server {
            let s = self.slot(ip, now);
            if syn {
                s.half_open_to = s.half_open_to.saturating_add(1);
            }
            s.sessions_to = s.sessions_to.saturating_add(1);
            let (half_open, to) = (s.half_open_to, s.sessions_to);
            found = self
                .over(ThreatKind::SynFlood, half_open, self.syn_flood)
                .filter(|_| syn)
                .or_else(|| self.over(ThreatKind::SessionRate, to, self.session_rate));
        }
        if let Some(ip) = client {
            let s = self.slot(ip, now);
            s.sessions_from = s.sessions_from.saturating_add(1);
            let from = s.sessions_from;
            if found.is_none() {
                found = self.over(ThreatKind::SessionRate, from, self.session_rate);
            }
        }
        found
    }

    /// The handshake of a SYN-opened session to `server` completed at `now`: it is no longer
    /// half-open. Only counts within the current window (a session opened in an earlier one
    /// is not in this window's count).
    pub fn handshake_completed(&mut self, server: IpAddr, opened: Timestamp, now: Timestamp) {
        let home = (self.hasher.hash_one(server) as usize) & self.mask;
        let window = self.window_ns;
        for k in 0..PROBE {
            let s = &mut self.slots[(home + k) & self.mask];
            if s.live && s.ip == server {
                let now = now.as_nanos();
                if opened.as_nanos() >= s.start && now.saturating_sub(s.start) < window {
                    s.half_open_to = s.half_open_to.saturating_sub(1);
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn ms(n: u64) -> Timestamp {
        Timestamp::from_millis(n)
    }

    fn table(syn: u32, sessions: u32) -> RateTable {
        RateTable::new(&Config {
            syn_flood: syn,
            session_rate: sessions,
            ..Config::default()
        })
    }

    fn rate(d: Option<Detection>) -> Option<(ThreatKind, u32, u32)> {
        d.map(|d| match d.detail {
            ThreatDetail::Rate {
                observed, limit, ..
            } => (d.kind, observed, limit),
            _ => (d.kind, 0, 0),
        })
    }

    #[test]
    fn syn_flood_fires_above_the_limit_exactly_and_resets_with_the_window() {
        let mut t = table(10, 0);
        let victim = Some(ip(2));
        for i in 0..10 {
            assert_eq!(
                t.new_session(None, victim, true, ms(i * 10)),
                None,
                "SYN {i}"
            );
        }
        let d = t.new_session(None, victim, true, ms(999));
        assert_eq!(rate(d), Some((ThreatKind::SynFlood, 11, 10)));
        assert!(d.is_some_and(|d| d.first_excess()));
        let d = t.new_session(None, victim, true, ms(999));
        assert_eq!(rate(d), Some((ThreatKind::SynFlood, 12, 10)));
        assert!(d.is_some_and(|d| !d.first_excess()));
        // Another workload has its own count.
        assert_eq!(t.new_session(None, Some(ip(3)), true, ms(999)), None);
        // The window started at 0 ms: at 1000 ms a new one starts.
        assert_eq!(t.new_session(None, victim, true, ms(1_000)), None);
        assert_eq!(t.counters.detections.get(), 2);
        assert_eq!(
            d.map(|d| d.detail),
            Some(ThreatDetail::Rate {
                observed: 12,
                limit: 10,
                window_ms: 1000
            })
        );
    }

    #[test]
    fn completed_handshakes_are_not_half_open() {
        let mut t = table(3, 0);
        let victim = ip(2);
        for i in 0..3 {
            assert_eq!(t.new_session(None, Some(victim), true, ms(i)), None);
        }
        // Two of the three complete; four more SYNs: 1 + 4 = 5 half-open > 3 at the 3rd.
        t.handshake_completed(victim, ms(0), ms(5));
        t.handshake_completed(victim, ms(1), ms(5));
        assert_eq!(t.new_session(None, Some(victim), true, ms(6)), None);
        assert_eq!(t.new_session(None, Some(victim), true, ms(7)), None);
        assert_eq!(
            rate(t.new_session(None, Some(victim), true, ms(8))),
            Some((ThreatKind::SynFlood, 4, 3))
        );
        // A session from the previous window completing does not lower this window's count.
        assert_eq!(t.new_session(None, Some(victim), true, ms(1_000)), None);
        t.handshake_completed(victim, ms(8), ms(1_001));
        assert_eq!(
            t.slots.iter().find(|s| s.live).map(|s| s.half_open_to),
            Some(1)
        );
        // Unknown addresses are ignored.
        t.handshake_completed(ip(99), ms(0), ms(1_001));
    }

    #[test]
    fn session_rate_counts_to_and_from_each_workload() {
        let mut t = table(0, 5);
        let (a, b, c) = (Some(ip(1)), Some(ip(2)), Some(ip(3)));
        // a opens 5 sessions to b (UDP, no SYN): at the limit, not over.
        for i in 0..5 {
            assert_eq!(t.new_session(a, b, false, ms(i)), None);
        }
        // The 6th from a, to c: a is over as a client.
        assert_eq!(
            rate(t.new_session(a, c, false, ms(10))),
            Some((ThreatKind::SessionRate, 6, 5))
        );
        // The 6th to b, from an external client: b is over as a server.
        assert_eq!(
            rate(t.new_session(None, b, false, ms(20))),
            Some((ThreatKind::SessionRate, 6, 5))
        );
        // SYN flood disabled (0): TCP SYNs count as sessions only.
        assert_eq!(
            rate(t.new_session(None, b, true, ms(30))),
            Some((ThreatKind::SessionRate, 7, 5))
        );
        assert_eq!(t.len(), 3);
        assert_eq!(t.counters.tracked.get(), 3);
    }

    #[test]
    fn syn_flood_is_reported_before_session_rate() {
        let mut t = table(2, 2);
        let v = Some(ip(9));
        t.new_session(None, v, true, ms(0));
        t.new_session(None, v, true, ms(0));
        assert_eq!(
            rate(t.new_session(None, v, true, ms(0))).map(|r| r.0),
            Some(ThreatKind::SynFlood)
        );
        // A UDP session to the same workload: over the session rate only.
        assert_eq!(
            rate(t.new_session(None, v, false, ms(0))),
            Some((ThreatKind::SessionRate, 4, 2))
        );
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest_window() {
        let mut t = RateTable::new(&Config {
            rate_slots: 8,
            session_rate: 1,
            window: Duration::from_secs(10),
            ..Config::default()
        });
        assert_eq!(t.slots.len(), 8);
        // 8 addresses fill the 8 slots (one probe window covers the whole table).
        for n in 0..8u8 {
            t.new_session(None, Some(ip(n)), false, ms(u64::from(n)));
        }
        assert_eq!(t.len(), 8);
        assert_eq!(t.counters.evicted.get(), 0);
        // A 9th replaces the one whose window is oldest: ip(0).
        t.new_session(None, Some(ip(100)), false, ms(100));
        assert_eq!(t.len(), 8);
        assert_eq!(t.counters.evicted.get(), 1);
        assert!(!t.slots.iter().any(|s| s.live && s.ip == ip(0)));
        // ip(1) kept its count: its second session is over the limit of 1.
        assert!(t.new_session(None, Some(ip(1)), false, ms(200)).is_some());
        assert_eq!(t.counters.tracked.get(), 9);
    }

    #[test]
    fn window_boundaries_are_exact() {
        let mut t = RateTable::new(&Config {
            session_rate: 1,
            window: Duration::from_millis(100),
            ..Config::default()
        });
        let v = Some(ip(1));
        assert_eq!(
            t.new_session(None, v, false, Timestamp::from_nanos(1_000)),
            None
        );
        assert!(
            t.new_session(None, v, false, Timestamp::from_nanos(100_000_999))
                .is_some(),
            "1 ns before the window ends"
        );
        assert_eq!(
            t.new_session(None, v, false, Timestamp::from_nanos(100_001_000)),
            None,
            "a new window"
        );
    }
}
