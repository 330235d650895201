//! A hashed timing wheel (Varghese & Lauck, 1987) over slab indices, with lazy re-filing.
//!
//! Time is cut into ticks of `tick` nanoseconds. A session whose deadline is `d` is filed in the
//! list of tick `ceil(d / tick)`, stored in slot `tick % slots`; a slot thus holds sessions of
//! several rotations. The wheel remembers the last tick it processed; advancing to `now`
//! processes every later tick up to `floor(now / tick)` (at most one full rotation), and each
//! session found there is either due (its deadline has passed) or is filed again under its
//! current deadline, which packets have moved later meanwhile. So a packet never touches the
//! wheel, and each session costs O(1) per visit: once at its deadline, plus once per rotation
//! it outlives and once per tick at which it was found refreshed.
//!
//! The wheel only stores the lists; the deadlines live in the sessions, which the table reads
//! while it walks a detached slot.

use super::ConfigError;

/// End of a list, and "no slab index".
pub(crate) const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
    /// The tick the entry is filed under.
    tick: u64,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
    tick: 0,
};

#[derive(Debug)]
pub(crate) struct Wheel {
    heads: Vec<u32>,
    links: Vec<Link>,
    mask: u64,
    tick_ns: u64,
    /// Every tick up to this one has been processed.
    processed: u64,
    /// First instant at which `advance` has work: the start of tick `processed + 1`.
    next_at: u64,
}

/// Ticks to process, as returned by [`Wheel::advance`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) first: u64,
    pub(crate) count: u64,
    pub(crate) last: u64,
}

impl Wheel {
    pub(crate) fn new(slots: usize, tick_ns: u64, capacity: usize) -> Result<Wheel, ConfigError> {
        if tick_ns == 0 {
            return Err(ConfigError::ZeroTick);
        }
        if !slots.is_power_of_two() || slots > super::MAX_WHEEL_SLOTS {
            return Err(ConfigError::WheelSlots(slots));
        }
        let mut heads = Vec::new();
        heads
            .try_reserve_exact(slots)
            .map_err(|_| ConfigError::OutOfMemory)?;
        heads.resize(slots, NIL);
        let mut links = Vec::new();
        links
            .try_reserve_exact(capacity)
            .map_err(|_| ConfigError::OutOfMemory)?;
        links.resize(capacity, UNLINKED);
        Ok(Wheel {
            heads,
            links,
            mask: slots as u64 - 1,
            tick_ns,
            processed: 0,
            next_at: tick_ns,
        })
    }

    #[inline]
    fn slot(&self, tick: u64) -> usize {
        (tick & self.mask) as usize
    }

    /// Number of slots.
    pub(crate) fn slots(&self) -> u64 {
        self.mask + 1
    }

    /// The last tick processed.
    pub(crate) fn processed(&self) -> u64 {
        self.processed
    }

    /// Files `idx` (which must not be in a list) under the first tick boundary at or after
    /// `deadline_ns`, and never under a tick already processed (a caller's clock that went
    /// backwards only makes the session wait for the next tick).
    pub(crate) fn insert(&mut self, idx: u32, deadline_ns: u64) {
        let ceil = deadline_ns.div_ceil(self.tick_ns);
        let tick = ceil.max(self.processed.saturating_add(1));
        let slot = self.slot(tick);
        let head = self.heads[slot];
        if head != NIL {
            self.links[head as usize].prev = idx;
        }
        self.links[idx as usize] = Link {
            prev: NIL,
            next: head,
            tick,
        };
        self.heads[slot] = idx;
    }

    /// Takes `idx` out of its list.
    pub(crate) fn remove(&mut self, idx: u32) {
        let Link { prev, next, tick } = self.links[idx as usize];
        if prev == NIL {
            let slot = self.slot(tick);
            if self.heads[slot] == idx {
                self.heads[slot] = next;
            }
        } else {
            self.links[prev as usize].next = next;
        }
        if next != NIL {
            self.links[next as usize].prev = prev;
        }
        self.links[idx as usize] = UNLINKED;
    }

    /// Files `idx` (which is in a list) again, under `deadline_ns`: for a deadline that moved
    /// earlier than the tick it is filed under.
    pub(crate) fn refile(&mut self, idx: u32, deadline_ns: u64) {
        self.remove(idx);
        self.insert(idx, deadline_ns);
    }

    /// Clears the links of `idx`, an entry of a list detached by [`Self::take`] that is not
    /// filed again.
    pub(crate) fn forget(&mut self, idx: u32) {
        self.links[idx as usize] = UNLINKED;
    }

    /// The ticks that `now` has completed since the last advance, capped at one rotation (the
    /// same slot twice would find nothing new), or `None` when there are none. Process each
    /// with [`Self::take`], then call [`Self::finish`] with `span.last`.
    #[inline]
    pub(crate) fn advance(&self, now_ns: u64) -> Option<Span> {
        if now_ns < self.next_at {
            return None;
        }
        let last = now_ns / self.tick_ns;
        let behind = last.checked_sub(self.processed).filter(|&n| n > 0)?;
        Some(Span {
            first: self.processed.saturating_add(1),
            count: behind.min(self.slots()),
            last,
        })
    }

    /// Marks every tick up to `last` processed.
    pub(crate) fn finish(&mut self, last: u64) {
        self.processed = self.processed.max(last);
        self.next_at = self
            .processed
            .saturating_add(1)
            .saturating_mul(self.tick_ns);
    }

    /// Detaches the whole list of the slot of `tick` and returns its first index; walk it with
    /// [`Self::next`] *before* filing any of its entries again.
    pub(crate) fn take(&mut self, tick: u64) -> u32 {
        let slot = self.slot(tick);
        std::mem::replace(&mut self.heads[slot], NIL)
    }

    /// First index in the list of the slot of `tick`, without detaching it.
    pub(crate) fn head(&self, tick: u64) -> u32 {
        self.heads[self.slot(tick)]
    }

    /// The entry after `idx` in its list.
    #[inline]
    pub(crate) fn next(&self, idx: u32) -> u32 {
        self.links[idx as usize].next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(w: &Wheel, tick: u64) -> Vec<u32> {
        let mut out = Vec::new();
        let mut i = w.head(tick);
        while i != NIL {
            out.push(i);
            i = w.next(i);
        }
        out
    }

    #[test]
    fn files_under_the_ceiling_tick_and_unlinks_anywhere() {
        let mut w = Wheel::new(8, 10, 4).unwrap();
        w.insert(0, 20); // tick 2
        w.insert(1, 21); // tick 3
        w.insert(2, 29); // tick 3
        w.insert(3, 101); // tick 11, slot 3
        assert_eq!(list(&w, 2), vec![0]);
        assert_eq!(list(&w, 3), vec![3, 2, 1]);
        w.remove(2);
        assert_eq!(list(&w, 3), vec![3, 1]);
        w.remove(3);
        assert_eq!(list(&w, 3), vec![1]);
        w.remove(1);
        assert_eq!(list(&w, 3), Vec::<u32>::new());
    }

    #[test]
    fn advance_covers_completed_ticks_once_and_caps_at_a_rotation() {
        let mut w = Wheel::new(8, 10, 1).unwrap();
        assert!(w.advance(9).is_none());
        let s = w.advance(10).unwrap();
        assert_eq!((s.first, s.count, s.last), (1, 1, 1));
        w.finish(s.last);
        assert!(w.advance(19).is_none());
        let s = w.advance(1_000).unwrap();
        assert_eq!((s.first, s.count, s.last), (2, 8, 100));
        w.finish(s.last);
        assert!(w.advance(1_009).is_none());
        // A deadline in a processed tick is filed in the next one.
        w.insert(0, 5);
        assert_eq!(list(&w, 101), vec![0]);
    }

    #[test]
    fn extreme_clock_values_do_not_overflow() {
        let mut w = Wheel::new(4, 1, 1).unwrap();
        let s = w.advance(u64::MAX).unwrap();
        assert_eq!(s.count, 4);
        w.finish(s.last);
        assert!(w.advance(u64::MAX).is_none());
        w.insert(0, u64::MAX);
        w.remove(0);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(matches!(Wheel::new(8, 0, 1), Err(ConfigError::ZeroTick)));
        assert!(matches!(
            Wheel::new(6, 1, 1),
            Err(ConfigError::WheelSlots(6))
        ));
        assert!(matches!(
            Wheel::new(0, 1, 1),
            Err(ConfigError::WheelSlots(0))
        ));
    }
}
