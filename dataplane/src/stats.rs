//! Per-port and per-worker counters.
//!
//! Each counter block has exactly one writer, the worker that owns the port's queue (each queue
//! of a port pair, a lane, is served by one worker and has its own blocks) or the worker itself, so an increment is a plain load and
//! store, never a locked read-modify-write; any thread may read a snapshot at any time. Blocks
//! are cache-line aligned so two workers never share a line.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the block's one writer may call this: two concurrent writers would lose
    /// updates (they are not atomic read-modify-writes, to keep the hot path free of locks).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why the dataplane freed a packet instead of sending it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(usize)]
pub enum DropReason {
    /// The transmit queue stayed full through every retry.
    TxFull = 0,
    /// The frame was malformed (counted by reason in the pipeline's counters).
    Malformed = 1,
    /// A later IP fragment whose first fragment never came and that could not be held.
    Fragment = 2,
    /// The policy denies it (protect mode).
    Policy = 3,
    /// A threat check flagged it.
    Threat = 4,
}

impl DropReason {
    /// Number of reasons (the length of the per-port drop array).
    pub const COUNT: usize = 5;
    /// Every reason, in index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        Self::TxFull,
        Self::Malformed,
        Self::Fragment,
        Self::Policy,
        Self::Threat,
    ];

    /// Stable snake_case name, used in logs and exported metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::TxFull => "tx_full",
            Self::Malformed => "malformed",
            Self::Fragment => "fragment",
            Self::Policy => "policy",
            Self::Threat => "threat",
        }
    }
}

/// Counters of one port (one queue of it), written by the worker that serves it.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct PortCounters {
    /// Packets received.
    pub rx_packets: Counter,
    /// Bytes received (whole frames).
    pub rx_bytes: Counter,
    /// Packets handed to the PMD for transmission.
    pub tx_packets: Counter,
    /// Bytes handed to the PMD for transmission.
    pub tx_bytes: Counter,
    /// Extra transmit calls made because a burst went out only in part.
    pub tx_retries: Counter,
    /// Packets dropped, by [`DropReason`] index.
    pub drops: [Counter; DropReason::COUNT],
}

impl PortCounters {
    /// Counts `n` packets dropped for `reason`.
    #[inline]
    pub fn count_drop(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
    }

    /// A plain copy of the counters.
    pub fn snapshot(&self) -> PortSnapshot {
        PortSnapshot {
            rx_packets: self.rx_packets.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_packets: self.tx_packets.get(),
            tx_bytes: self.tx_bytes.get(),
            tx_retries: self.tx_retries.get(),
            drops: std::array::from_fn(|i| self.drops[i].get()),
        }
    }
}

/// A copy of [`PortCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortSnapshot {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Extra transmit calls.
    pub tx_retries: u64,
    /// Drops by [`DropReason`] index.
    pub drops: [u64; DropReason::COUNT],
}

impl PortSnapshot {
    /// The sum of two snapshots (a port's queues, each counted by its own worker).
    pub fn plus(&self, o: &PortSnapshot) -> PortSnapshot {
        PortSnapshot {
            rx_packets: self.rx_packets + o.rx_packets,
            rx_bytes: self.rx_bytes + o.rx_bytes,
            tx_packets: self.tx_packets + o.tx_packets,
            tx_bytes: self.tx_bytes + o.tx_bytes,
            tx_retries: self.tx_retries + o.tx_retries,
            drops: std::array::from_fn(|i| self.drops[i] + o.drops[i]),
        }
    }

    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Drops for every reason together.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// Counters of one worker loop, written by that worker.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct WorkerCounters {
    /// Loop iterations (each polls every assigned rx queue once).
    pub loops: Counter,
    /// Iterations in which no queue had a packet.
    pub idle_loops: Counter,
    /// Sleeps taken by the adaptive idle policy.
    pub sleeps: Counter,
    /// Packets received over all assigned queues.
    pub rx_packets: Counter,
    /// Packets transmitted over all assigned queues.
    pub tx_packets: Counter,
    /// Packets dropped, for any reason.
    pub dropped: Counter,
    /// TSC cycles of the loop iterations that carried packets (every leg's poll in them
    /// included), the measure `dpdk-testpmd --record-core-cycles` reports per stream: divided
    /// by `rx_packets` it is the cost of a packet, whatever the offered load.
    pub busy_cycles: Counter,
}

impl WorkerCounters {
    /// A plain copy of the counters.
    pub fn snapshot(&self) -> WorkerSnapshot {
        WorkerSnapshot {
            loops: self.loops.get(),
            idle_loops: self.idle_loops.get(),
            sleeps: self.sleeps.get(),
            rx_packets: self.rx_packets.get(),
            tx_packets: self.tx_packets.get(),
            dropped: self.dropped.get(),
            busy_cycles: self.busy_cycles.get(),
        }
    }
}

/// A copy of [`WorkerCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// Loop iterations.
    pub loops: u64,
    /// Idle iterations.
    pub idle_loops: u64,
    /// Adaptive sleeps.
    pub sleeps: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// TSC cycles spent on non-empty bursts.
    pub busy_cycles: u64,
}

impl WorkerSnapshot {
    /// Busy cycles per received packet; `None` before the first packet.
    pub fn cycles_per_packet(&self) -> Option<f64> {
        (self.rx_packets > 0).then(|| self.busy_cycles as f64 / self.rx_packets as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_snapshot() {
        let c = PortCounters::default();
        c.rx_packets.add(3);
        c.rx_packets.add(4);
        c.count_drop(DropReason::TxFull, 2);
        let s = c.snapshot();
        assert_eq!(s.rx_packets, 7);
        assert_eq!(s.dropped(DropReason::TxFull), 2);
        assert_eq!(s.dropped_total(), 2);
    }

    #[test]
    fn blocks_do_not_share_cache_lines() {
        assert_eq!(align_of::<PortCounters>(), 64);
        assert_eq!(align_of::<WorkerCounters>(), 64);
    }

    #[test]
    fn drop_reason_names_are_unique_and_indexed() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
