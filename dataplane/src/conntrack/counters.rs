//! The table's counters: one block per worker, written only by that worker.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::stats::Counter;

/// A value with a single writer that goes up and down (the live-session count).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value. Only the block's one writer may call this.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one connection table. At every moment between two calls on the table,
/// `active == created - expired - evicted - removed`.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct ConntrackCounters {
    /// Packets that found a live session.
    pub hits: Counter,
    /// Packets that found none (then a session was created, or the packet was stray or
    /// refused).
    pub misses: Counter,
    /// Sessions created (including after mid-stream pickup; not counting reopens).
    pub created: Counter,
    /// Of `created`, sessions picked up mid-stream (TCP without SYN).
    pub picked_up: Counter,
    /// SYNs that started a new connection on a session in TIME-WAIT or closed by RST; the
    /// session was reset in place and stays one entry (not counted in `created`).
    pub reopened: Counter,
    /// Sessions freed because their deadline passed (by `expire`, by a packet that found them
    /// dead, or to make room).
    pub expired: Counter,
    /// Live sessions freed early to make room for a new one.
    pub evicted: Counter,
    /// Sessions removed by the caller.
    pub removed: Counter,
    /// New flows not tracked because the table was full and nothing could be evicted.
    pub refused: Counter,
    /// TCP segments of unknown flows that cannot open one (lone RST, FIN, SYN+ACK, invalid
    /// flags), not tracked.
    pub stray: Counter,
    /// Sessions in the table now.
    pub active: Gauge,
}

impl ConntrackCounters {
    /// A plain copy of the counters.
    pub fn snapshot(&self) -> ConntrackSnapshot {
        ConntrackSnapshot {
            hits: self.hits.get(),
            misses: self.misses.get(),
            created: self.created.get(),
            picked_up: self.picked_up.get(),
            reopened: self.reopened.get(),
            expired: self.expired.get(),
            evicted: self.evicted.get(),
            removed: self.removed.get(),
            refused: self.refused.get(),
            stray: self.stray.get(),
            active: self.active.get(),
        }
    }
}

/// A copy of [`ConntrackCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConntrackSnapshot {
    /// Packets that found a live session.
    pub hits: u64,
    /// Packets that found none.
    pub misses: u64,
    /// Sessions created.
    pub created: u64,
    /// Sessions picked up mid-stream.
    pub picked_up: u64,
    /// Sessions reopened by a SYN.
    pub reopened: u64,
    /// Sessions expired.
    pub expired: u64,
    /// Sessions evicted.
    pub evicted: u64,
    /// Sessions removed by the caller.
    pub removed: u64,
    /// New flows refused (table full).
    pub refused: u64,
    /// Stray TCP segments not tracked.
    pub stray: u64,
    /// Live sessions.
    pub active: u64,
}

impl ConntrackSnapshot {
    /// Packets looked up.
    pub fn lookups(&self) -> u64 {
        self.hits.wrapping_add(self.misses)
    }
}
