//! Open-addressing index from flow-key hash to slab index: linear probing, at most half full,
//! deletion by backward shift (no tombstones, so probe lengths never degrade).
//!
//! A bucket is 8 bytes, the top 32 bits of the hash (`tag`) and the slab index, so one cache
//! line holds eight and a lookup usually reads one line of the index and then the session.
//! A bucket's home is the top bits of its tag; the rest of the tag filters out most other keys
//! before the session's key is compared.

use super::ConfigError;
use super::wheel::NIL;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tag: u32,
    idx: u32,
}

const EMPTY: Bucket = Bucket { tag: 0, idx: NIL };

#[derive(Debug)]
pub(crate) struct Index {
    buckets: Vec<Bucket>,
    mask: usize,
    /// `32 - log2(buckets)`: shifts a tag down to its home bucket.
    shift: u32,
}

impl Index {
    /// An index for up to `capacity` entries: the next power of two at or above twice that,
    /// at least 8 buckets.
    pub(crate) fn new(capacity: usize) -> Result<Index, ConfigError> {
        let n = capacity
            .checked_mul(2)
            .and_then(usize::checked_next_power_of_two)
            .filter(|&n| n as u64 <= 1 << 32)
            .ok_or(ConfigError::Capacity(capacity))?
            .max(8);
        let mut buckets = Vec::new();
        buckets
            .try_reserve_exact(n)
            .map_err(|_| ConfigError::OutOfMemory)?;
        crate::hugemem::advise(&buckets);
        buckets.resize(n, EMPTY);
        Ok(Index {
            buckets,
            mask: n - 1,
            shift: 32 - n.trailing_zeros(),
        })
    }

    #[inline]
    fn tag(hash: u64) -> u32 {
        (hash >> 32) as u32
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        // `shift` is at most 29 (8 buckets), so this never overflows; a shift of 32 would
        // mean a single bucket, which `new` never builds.
        (tag.checked_shr(self.shift).unwrap_or(0) as usize) & self.mask
    }

    /// Prefetches the cache line of `hash`'s home bucket.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        if let Some(b) = self.buckets.get(self.home(Self::tag(hash))) {
            crate::hugemem::prefetch(b);
        }
    }

    /// The slab index of the first entry at `hash`'s home with `hash`'s tag, without comparing
    /// keys (a guess for prefetching: usually the session [`Index::find`] will return).
    #[inline]
    pub(crate) fn guess(&self, hash: u64) -> Option<u32> {
        let tag = Self::tag(hash);
        let mut pos = self.home(tag);
        // Looks along the probe's first few buckets only: past them a prefetch is not worth it.
        for _ in 0..4 {
            let b = self.buckets.get(pos)?;
            if b.idx == NIL {
                return None;
            }
            if b.tag == tag {
                return Some(b.idx);
            }
            pos = (pos + 1) & self.mask;
        }
        None
    }

    /// Position and slab index of the entry with `hash` whose session `is_key` accepts.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = Self::tag(hash);
        let mut pos = self.home(tag);
        // Bounded for robustness; the table is at most half full, so an empty bucket ends the
        // probe long before.
        for _ in 0..self.buckets.len() {
            let b = self.buckets[pos];
            if b.idx == NIL {
                return None;
            }
            if b.tag == tag && is_key(b.idx) {
                return Some(b.idx);
            }
            pos = (pos + 1) & self.mask;
        }
        None
    }

    /// Adds `idx` under `hash`. The caller guarantees the key is absent and that there are
    /// fewer entries than the capacity (so an empty bucket exists).
    pub(crate) fn insert(&mut self, hash: u64, idx: u32) {
        let tag = Self::tag(hash);
        let mut pos = self.home(tag);
        for _ in 0..self.buckets.len() {
            if self.buckets[pos].idx == NIL {
                self.buckets[pos] = Bucket { tag, idx };
                return;
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Removes the entry for slab index `idx`, filed under `hash`. Returns whether it was there.
    pub(crate) fn remove(&mut self, hash: u64, idx: u32) -> bool {
        let tag = Self::tag(hash);
        let mut pos = self.home(tag);
        for _ in 0..self.buckets.len() {
            let b = self.buckets[pos];
            if b.idx == NIL {
                return false;
            }
            if b.idx == idx {
                self.shift_back(pos);
                return true;
            }
            pos = (pos + 1) & self.mask;
        }
        false
    }

    /// Empties bucket `hole`, moving back each later entry of the cluster that may live there
    /// (its home is not cyclically between the hole and its bucket), Knuth's algorithm R.
    fn shift_back(&mut self, mut hole: usize) {
        let mut pos = (hole + 1) & self.mask;
        for _ in 0..self.buckets.len() {
            let b = self.buckets[pos];
            if b.idx == NIL {
                break;
            }
            let home = self.home(b.tag);
            let from_home = pos.wrapping_sub(home) & self.mask;
            let from_hole = pos.wrapping_sub(hole) & self.mask;
            if from_home >= from_hole {
                self.buckets[hole] = b;
                hole = pos;
            }
            pos = (pos + 1) & self.mask;
        }
        self.buckets[hole] = EMPTY;
    }

    /// Buckets a lookup of the entry `idx` filed under `hash` reads.
    #[cfg(test)]
    pub(crate) fn probes(&self, hash: u64, idx: u32) -> usize {
        let mut pos = self.home(Self::tag(hash));
        let mut n = 1;
        while self.buckets[pos].idx != idx {
            pos = (pos + 1) & self.mask;
            n += 1;
        }
        n
    }

    /// Number of buckets.
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash whose home bucket (of 8) is `home` and whose tag is otherwise `low`.
    fn h(home: u64, low: u64) -> u64 {
        (home << 61) | (low << 32)
    }

    #[test]
    fn sizes_to_at_most_half_full() {
        assert_eq!(Index::new(1).unwrap().buckets(), 8);
        assert_eq!(Index::new(5).unwrap().buckets(), 16);
        assert_eq!(Index::new(1 << 20).unwrap().buckets(), 1 << 21);
        assert!(matches!(
            Index::new(usize::MAX),
            Err(ConfigError::Capacity(_))
        ));
    }

    #[test]
    fn colliding_entries_survive_removals_in_any_order() {
        // Eight entries (capacity 4 means 8 buckets; the index itself does not enforce the
        // capacity) homed so that clusters wrap around the end of the array.
        let homes = [6u64, 6, 7, 6, 0, 7, 1, 6];
        for first in 0..homes.len() {
            let mut ix = Index::new(4).unwrap();
            for (i, &home) in homes.iter().enumerate().take(7) {
                ix.insert(h(home, i as u64), i as u32);
            }
            let victim = first % 7;
            assert!(ix.remove(h(homes[victim], victim as u64), victim as u32));
            assert!(!ix.remove(h(homes[victim], victim as u64), victim as u32));
            for (i, &home) in homes.iter().enumerate().take(7) {
                let found = ix.find(h(home, i as u64), |idx| idx == i as u32);
                assert_eq!(
                    found.is_some(),
                    i != victim,
                    "entry {i} after removing {victim}"
                );
            }
        }
    }

    #[test]
    fn flow_hash_keeps_probes_short_for_regular_key_sets() {
        use super::super::key::{FlowKey, Seed};
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        // The structured keys a host really sees: few servers, sequential client addresses
        // and ephemeral ports; v4 and v6. Linear probing at load 1/2 expects 1.5 probes.
        for seed in [0, 1, 0xdead_beef] {
            let seed = Seed::new(seed);
            let n = 100_000u32;
            let mut ix = Index::new(n as usize).unwrap();
            let key = |i: u32| {
                let client = if i.is_multiple_of(2) {
                    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i / 64))
                } else {
                    IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(i / 64)))
                };
                let server = if client.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::new(10, 1, 0, (i % 4) as u8))
                } else {
                    IpAddr::V6(Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, (i % 4) as u16))
                };
                FlowKey::new(6, client, 32_768 + (i % 64) as u16, server, 443).0
            };
            for i in 0..n {
                ix.insert(key(i).hash(&seed), i);
            }
            let mut total = 0;
            let mut worst = 0;
            for i in 0..n {
                let p = ix.probes(key(i).hash(&seed), i);
                total += p;
                worst = worst.max(p);
            }
            let mean = total as f64 / f64::from(n);
            assert!(mean < 2.0, "mean probes {mean}");
            assert!(worst < 64, "worst probes {worst}");
        }
    }

    #[test]
    fn tag_mismatch_skips_the_key_comparison() {
        let mut ix = Index::new(4).unwrap();
        ix.insert(h(3, 1), 0);
        let mut compared = 0;
        assert_eq!(
            ix.find(h(3, 2), |_| {
                compared += 1;
                true
            }),
            None
        );
        assert_eq!(compared, 0);
    }
}
