//! IP fragment tracking: the first fragment's verdict applies to the rest.
//!
//! Only the first fragment carries the transport header, so only it can be classified. This
//! table remembers, per datagram (source, destination, protocol, identification), the verdict
//! the caller reached for the first fragment and hands it to every later fragment. Fragments
//! that arrive before their first fragment are held (up to [`MAX_HELD`] per datagram, as
//! opaque handles of type `H`, e.g. mbufs) and released with the verdict once it is known, or
//! handed back for dropping when the datagram times out or is evicted.
//!
//! Every fragment's byte range is recorded (up to [`MAX_RANGES`] disjoint ranges, merged when
//! adjacent); one that overlaps a range already seen is flagged (teardrop, RFC 1858).
//!
//! Bounded: a fixed number of slots, looked up in a window of [`WINDOW`] slots from the key's
//! hash (no probe chains, so removal needs no tombstones); when a window is full of live
//! datagrams the one closest to its deadline is evicted. Time is supplied by the caller
//! (`now`, nanoseconds on any monotonic clock).

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use crate::stats::Counter;

/// Fragments held per datagram while its first fragment is missing.
pub const MAX_HELD: usize = 8;
/// Byte ranges remembered per datagram for overlap detection.
pub const MAX_RANGES: usize = 8;
/// Slots searched per lookup.
pub const WINDOW: usize = 8;

/// Identifies one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Upper-layer protocol.
    pub proto: u8,
    /// Identification field.
    pub id: u32,
}

/// Where a later fragment's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Offset in the datagram, bytes.
    pub offset: u32,
    /// Bytes in this fragment.
    pub len: u32,
    /// No fragments follow (more-fragments clear).
    pub last: bool,
}

/// What happened to a fragment that is not the first.
#[derive(Debug, PartialEq, Eq)]
pub enum Later<V, H> {
    /// The datagram's verdict is known: apply it (the handle comes back).
    Verdict(V, H),
    /// The first fragment has not been seen: the table holds the handle.
    Held,
    /// The first fragment has not been seen and nothing more can be held for this datagram:
    /// the handle comes back for the caller to drop.
    Unheld(H),
}

/// Fragment counters (single writer: the owning worker).
#[derive(Debug, Default)]
pub struct FragCounters {
    /// Datagrams tracked.
    pub datagrams: Counter,
    /// Later fragments that found their verdict.
    pub followed: Counter,
    /// Fragments held for a late first fragment.
    pub held: Counter,
    /// Held fragments released when their first fragment arrived.
    pub released: Counter,
    /// Held fragments given back for dropping (timeout, eviction, or no room).
    pub dropped: Counter,
    /// Fragments that overlapped an earlier one of the same datagram.
    pub overlaps: Counter,
    /// Datagrams evicted to make room.
    pub evicted: Counter,
    /// Datagrams expired.
    pub expired: Counter,
}

#[derive(Debug)]
struct Slot<V, H> {
    key: FragKey,
    deadline: u64,
    verdict: Option<V>,
    ranges: [(u32, u32); MAX_RANGES],
    nranges: usize,
    /// End of the datagram, once the last fragment (more = false) was seen.
    end: Option<u32>,
    held: [Option<(H, u32, u32)>; MAX_HELD],
}

/// The fragment table of one worker.
#[derive(Debug)]
pub struct FragTable<V, H> {
    slots: Vec<Option<Slot<V, H>>>,
    mask: usize,
    timeout_ns: u64,
    sweep: usize,
    /// Counters (shared so that a stats reader can see them; written only by the owner).
    pub counters: Arc<FragCounters>,
}

fn overlaps(ranges: &[(u32, u32)], (s, e): (u32, u32)) -> bool {
    ranges.iter().any(|&(a, b)| s < b && a < e)
}

impl<V: Copy, H> FragTable<V, H> {
    /// A table of `capacity` datagrams (rounded up to a power of two, at least [`WINDOW`]),
    /// forgetting a datagram `timeout_ns` after its last fragment.
    pub fn new(capacity: usize, timeout_ns: u64) -> Self {
        let n = capacity.max(WINDOW).next_power_of_two();
        Self {
            slots: std::iter::repeat_with(|| None).take(n).collect(),
            mask: n - 1,
            timeout_ns,
            sweep: 0,
            counters: Arc::default(),
        }
    }

    fn home(&self, key: &FragKey) -> usize {
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        // Truncation is fine: only the low bits select a slot.
        h.finish() as usize & self.mask
    }

    fn find(&self, key: &FragKey, now: u64) -> Option<usize> {
        let home = self.home(key);
        (0..WINDOW)
            .map(|i| (home + i) & self.mask)
            .find(|&i| matches!(&self.slots[i], Some(s) if s.key == *key && s.deadline > now))
    }

    /// A slot for a new datagram: a free or expired one in the window, else the live one
    /// closest to its deadline, evicted (its held handles go to `drop`).
    fn claim(&mut self, key: FragKey, now: u64, drop: &mut impl FnMut(H)) -> usize {
        let home = self.home(&key);
        let window = (0..WINDOW).map(|i| (home + i) & self.mask);
        let free = window.clone().find(|&i| match &self.slots[i] {
            None => true,
            Some(s) => s.deadline <= now,
        });
        let i = match free {
            Some(i) => {
                if self.slots[i].is_some() {
                    self.counters.expired.add(1);
                }
                i
            }
            None => {
                self.counters.evicted.add(1);
                window
                    .min_by_key(|&i| self.slots[i].as_ref().map_or(0, |s| s.deadline))
                    .unwrap_or(home)
            }
        };
        if let Some(old) = self.slots[i].take() {
            self.release_held(old, drop);
        }
        self.counters.datagrams.add(1);
        self.slots[i] = Some(Slot {
            key,
            deadline: now + self.timeout_ns,
            verdict: None,
            ranges: [(0, 0); MAX_RANGES],
            nranges: 0,
            end: None,
            held: std::array::from_fn(|_| None),
        });
        i
    }

    fn release_held(&mut self, slot: Slot<V, H>, drop: &mut impl FnMut(H)) {
        for (h, _, _) in slot.held.into_iter().flatten() {
            self.counters.dropped.add(1);
            drop(h);
        }
    }

    /// Records `range` in slot `i`; returns whether it overlapped an earlier one. Removes the
    /// datagram once it is complete.
    fn record(&mut self, i: usize, (s, e): (u32, u32), last: bool) -> bool {
        let Some(slot) = self.slots[i].as_mut() else {
            return false;
        };
        if last {
            slot.end = Some(e);
        }
        let overlap = overlaps(&slot.ranges[..slot.nranges], (s, e));
        if overlap {
            self.counters.overlaps.add(1);
        } else if let Some(r) = slot.ranges[..slot.nranges]
            .iter_mut()
            .find(|r| r.1 == s || r.0 == e)
        {
            *r = (r.0.min(s), r.1.max(e));
        } else if slot.nranges < MAX_RANGES {
            slot.ranges[slot.nranges] = (s, e);
            slot.nranges += 1;
        }
        // Merge ranges that now touch (at most MAX_RANGES of them).
        'merge: loop {
            for a in 0..slot.nranges {
                for b in 0..slot.nranges {
                    if a != b && slot.ranges[a].1 == slot.ranges[b].0 {
                        slot.ranges[a].1 = slot.ranges[b].1;
                        slot.nranges -= 1;
                        slot.ranges[b] = slot.ranges[slot.nranges];
                        continue 'merge;
                    }
                }
            }
            break;
        }
        // Complete: one range from 0 to the known end, and the verdict is known.
        let complete = slot.verdict.is_some()
            && slot.nranges == 1
            && slot.ranges[0].0 == 0
            && Some(slot.ranges[0].1) == slot.end;
        if complete && slot.held.iter().all(Option::is_none) {
            self.slots[i] = None;
        }
        overlap
    }

    /// The first fragment of `key` (bytes `0..len`, `more` set) was judged `verdict`: remember
    /// it and release any held fragments with it through `release`. Returns whether the first
    /// fragment overlapped one seen before it.
    pub fn first(
        &mut self,
        key: FragKey,
        now: u64,
        len: u32,
        verdict: V,
        mut release: impl FnMut(H, V),
        mut drop: impl FnMut(H),
    ) -> bool {
        let i = match self.find(&key, now) {
            Some(i) => i,
            None => self.claim(key, now, &mut drop),
        };
        let mut held: [Option<(H, u32, u32)>; MAX_HELD] = std::array::from_fn(|_| None);
        if let Some(slot) = self.slots[i].as_mut() {
            slot.verdict = Some(verdict);
            slot.deadline = now + self.timeout_ns;
            std::mem::swap(&mut held, &mut slot.held);
        }
        for (h, _, _) in held.into_iter().flatten() {
            self.counters.released.add(1);
            release(h, verdict);
        }
        self.record(i, (0, len), false)
    }

    /// A later fragment of `key` (`piece`: where its bytes go and whether fragments follow).
    /// Returns what to do with it and whether it overlapped.
    pub fn later(
        &mut self,
        key: FragKey,
        now: u64,
        piece: Piece,
        handle: H,
        mut drop: impl FnMut(H),
    ) -> (Later<V, H>, bool) {
        let Piece { offset, len, last } = piece;
        let i = match self.find(&key, now) {
            Some(i) => i,
            None => self.claim(key, now, &mut drop),
        };
        let Some(slot) = self.slots[i].as_mut() else {
            return (Later::Unheld(handle), false);
        };
        slot.deadline = now + self.timeout_ns;
        let outcome = match slot.verdict {
            Some(v) => {
                self.counters.followed.add(1);
                Later::Verdict(v, handle)
            }
            None => match slot.held.iter_mut().find(|h| h.is_none()) {
                Some(free) => {
                    *free = Some((handle, offset, len));
                    self.counters.held.add(1);
                    Later::Held
                }
                None => {
                    self.counters.dropped.add(1);
                    Later::Unheld(handle)
                }
            },
        };
        let overlap = self.record(i, (offset, offset.saturating_add(len)), last);
        (outcome, overlap)
    }

    /// Expires up to `budget` slots' worth of datagrams whose deadline passed, handing their
    /// held fragments to `drop`. Call it regularly (e.g. once per burst with a small budget):
    /// it walks the table incrementally.
    pub fn expire(&mut self, now: u64, budget: usize, mut drop: impl FnMut(H)) {
        for _ in 0..budget.min(self.slots.len()) {
            let i = self.sweep;
            self.sweep = (self.sweep + 1) & self.mask;
            if matches!(&self.slots[i], Some(s) if s.deadline <= now)
                && let Some(old) = self.slots[i].take()
            {
                self.counters.expired.add(1);
                self.release_held(old, &mut drop);
            }
        }
    }

    /// Datagrams currently tracked (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const S: u64 = 1_000_000_000;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
            proto: 17,
            id,
        }
    }

    #[test]
    fn later_fragments_follow_the_first_verdict() {
        let mut t: FragTable<bool, u32> = FragTable::new(64, 30 * S);
        let mut released = Vec::new();
        let overlap = t.first(key(1), 0, 1480, true, |h, v| released.push((h, v)), |_| {});
        assert!(!overlap);
        assert!(released.is_empty());
        let (o, ov) = t.later(
            key(1),
            1,
            Piece {
                offset: 1480,
                len: 1480,
                last: true,
            },
            7,
            |_| {},
        );
        assert_eq!(o, Later::Verdict(true, 7));
        assert!(!ov);
        assert_eq!(t.counters.followed.get(), 1);
        // The datagram is complete: forgotten.
        assert!(t.is_empty());
    }

    #[test]
    fn late_first_fragment_releases_what_was_held() {
        let mut t: FragTable<u8, u32> = FragTable::new(64, 30 * S);
        assert_eq!(
            t.later(
                key(2),
                0,
                Piece {
                    offset: 2960,
                    len: 100,
                    last: true
                },
                11,
                |_| {}
            ),
            (Later::Held, false)
        );
        assert_eq!(
            t.later(
                key(2),
                0,
                Piece {
                    offset: 1480,
                    len: 1480,
                    last: false
                },
                10,
                |_| {}
            ),
            (Later::Held, false)
        );
        let mut released = Vec::new();
        t.first(key(2), 1, 1480, 9u8, |h, v| released.push((h, v)), |_| {});
        assert_eq!(released, vec![(11, 9), (10, 9)]);
        assert_eq!((t.counters.held.get(), t.counters.released.get()), (2, 2));
        // 0..1480, 1480..2960, 2960..3060 with the end known: complete.
        assert!(t.is_empty());
    }

    #[test]
    fn held_fragments_are_dropped_on_timeout_and_overflow() {
        let mut t: FragTable<u8, u32> = FragTable::new(64, 30 * S);
        for h in 0..MAX_HELD as u32 {
            assert_eq!(
                t.later(
                    key(3),
                    0,
                    Piece {
                        offset: 8 * (h + 1),
                        len: 8,
                        last: false
                    },
                    h,
                    |_| {}
                )
                .0,
                Later::Held
            );
        }
        assert_eq!(
            t.later(
                key(3),
                0,
                Piece {
                    offset: 1000,
                    len: 8,
                    last: false
                },
                99,
                |_| {}
            )
            .0,
            Later::Unheld(99)
        );
        let mut dropped = Vec::new();
        t.expire(30 * S - 1, 1024, |h| dropped.push(h));
        assert!(dropped.is_empty(), "not yet due");
        t.expire(30 * S, 1024, |h| dropped.push(h));
        assert_eq!(dropped.len(), MAX_HELD);
        assert_eq!(t.counters.dropped.get(), MAX_HELD as u64 + 1);
        assert_eq!(t.counters.expired.get(), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn overlapping_fragments_are_flagged() {
        let mut t: FragTable<u8, u32> = FragTable::new(64, 30 * S);
        t.first(key(4), 0, 24, 1, |_, _| {}, |_| {});
        // Teardrop: the second fragment starts inside the first.
        let (o, overlap) = t.later(
            key(4),
            0,
            Piece {
                offset: 16,
                len: 24,
                last: true,
            },
            5,
            |_| {},
        );
        assert_eq!(o, Later::Verdict(1, 5));
        assert!(overlap);
        assert_eq!(t.counters.overlaps.get(), 1);
        // Disjoint fragments of another datagram are not.
        t.first(key(5), 0, 24, 1, |_, _| {}, |_| {});
        assert!(
            !t.later(
                key(5),
                0,
                Piece {
                    offset: 24,
                    len: 24,
                    last: false
                },
                6,
                |_| {}
            )
            .1
        );
    }

    #[test]
    fn a_full_window_evicts_the_datagram_closest_to_its_deadline() {
        let mut t: FragTable<u8, u32> = FragTable::new(WINDOW, 30 * S);
        // The table is exactly one window: every datagram competes for it.
        for id in 0..WINDOW as u32 {
            t.later(
                key(id),
                u64::from(id),
                Piece {
                    offset: 8,
                    len: 8,
                    last: false,
                },
                id,
                |_| {},
            );
        }
        let mut dropped = Vec::new();
        t.later(
            key(100),
            100,
            Piece {
                offset: 8,
                len: 8,
                last: false,
            },
            100,
            |h| dropped.push(h),
        );
        assert_eq!(
            dropped,
            vec![0],
            "the oldest datagram's held fragment was dropped"
        );
        assert_eq!(t.counters.evicted.get(), 1);
        assert_eq!(t.len(), WINDOW);
    }
}
