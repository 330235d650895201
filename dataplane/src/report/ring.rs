//! Per-worker report rings: one bounded single-producer single-consumer queue per worker.
//!
//! The worker owns the [`RecordProducer`]; [`RecordProducer::push`] never blocks, locks or
//! allocates: when the ring is full the record is dropped and counted in
//! [`RingCounters::overflow`] (a single-writer [`Counter`]: the worker is its only writer). The
//! aggregator thread owns every worker's [`RecordConsumer`] and drains them; it learns of
//! drops through [`RecordConsumer::take_overflow`] and reports them as
//! [`super::Event::Overflow`].
//!
//! # Why `rtrb`
//!
//! Each ring has exactly one producer and one consumer, which `rtrb` encodes in its types
//! (`Producer` and `Consumer` are `Send` but not `Clone`, so a second producer cannot exist):
//! a push is a relaxed load of the cached head, a slot write and one release store, with no
//! compare-and-swap, and head and tail sit on separate cache lines. `crossbeam`'s
//! `ArrayQueue` is multi-producer multi-consumer, paying a CAS per push and per pop for
//! sharing no ring here needs. `rtrb` (a descendant of crossbeam's SPSC queue) has no
//! dependencies, allocates once in `RingBuffer::new`, and documents itself as wait-free and
//! real-time safe.

use std::sync::Arc;

use crate::stats::Counter;

use super::record::WorkerRecord;

/// Largest ring, in records.
pub const MAX_CAPACITY: usize = 1 << 24;

/// Default ring size: at 88 bytes a record, 5.5 MiB per worker; at one record per session
/// end, enough for a burst of 64 Ki sessions between two drains.
pub const DEFAULT_CAPACITY: usize = 1 << 16;

/// A ring size outside `1..=MAX_CAPACITY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("report ring capacity {0} is outside 1..={MAX_CAPACITY}")]
pub struct CapacityError(pub usize);

/// Counters of one ring, written by its producer only; any thread may read them.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct RingCounters {
    /// Records pushed.
    pub pushed: Counter,
    /// Records dropped because the ring was full.
    pub overflow: Counter,
}

/// The worker's end of a ring.
#[derive(Debug)]
pub struct RecordProducer {
    ring: rtrb::Producer<WorkerRecord>,
    counters: Arc<RingCounters>,
}

/// The aggregator's end of a ring.
#[derive(Debug)]
pub struct RecordConsumer {
    ring: rtrb::Consumer<WorkerRecord>,
    counters: Arc<RingCounters>,
    /// `counters.overflow` when last reported.
    overflow_seen: u64,
}

/// A ring of `capacity` records: allocated here, once.
pub fn ring(capacity: usize) -> Result<(RecordProducer, RecordConsumer), CapacityError> {
    if !(1..=MAX_CAPACITY).contains(&capacity) {
        return Err(CapacityError(capacity));
    }
    let (p, c) = rtrb::RingBuffer::new(capacity);
    let counters = Arc::new(RingCounters::default());
    Ok((
        RecordProducer {
            ring: p,
            counters: Arc::clone(&counters),
        },
        RecordConsumer {
            ring: c,
            counters,
            overflow_seen: 0,
        },
    ))
}

impl RecordProducer {
    /// Queues `record`; when the ring is full, drops it, counts it in
    /// [`RingCounters::overflow`] and returns `false`. Never blocks.
    #[inline]
    pub fn push(&mut self, record: WorkerRecord) -> bool {
        match self.ring.push(record) {
            Ok(()) => {
                self.counters.pushed.add(1);
                true
            }
            Err(rtrb::PushError::Full(_)) => {
                self.counters.overflow.add(1);
                false
            }
        }
    }

    /// The ring's counters.
    pub fn counters(&self) -> &Arc<RingCounters> {
        &self.counters
    }

    /// Free slots right now.
    pub fn free(&self) -> usize {
        self.ring.slots()
    }
}

impl RecordConsumer {
    /// The oldest record, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<WorkerRecord> {
        self.ring.pop().ok()
    }

    /// Hands up to `max` records, oldest first, to `f`; returns how many.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(WorkerRecord)) -> usize {
        let n = self.ring.slots().min(max);
        match self.ring.read_chunk(n) {
            Ok(chunk) => {
                for r in chunk {
                    f(r);
                }
                n
            }
            // `slots` said there were `n`; the producer only ever adds.
            Err(_) => 0,
        }
    }

    /// Records dropped by the producer since the previous call.
    pub fn take_overflow(&mut self) -> u64 {
        let now = self.counters.overflow.get();
        let lost = now.wrapping_sub(self.overflow_seen);
        self.overflow_seen = now;
        lost
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.ring.slots()
    }

    /// Whether no record is waiting.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Whether the producer is gone (its worker stopped): what is left can still be drained.
    pub fn is_abandoned(&self) -> bool {
        self.ring.is_abandoned()
    }

    /// The ring's counters.
    pub fn counters(&self) -> &Arc<RingCounters> {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::Timestamp;
    use crate::dpi::App;
    use crate::policy::Mode;
    use crate::report::Verdict;
    use crate::report::record::{ConnectionDelta, Flow};

    fn rec(i: u64) -> WorkerRecord {
        WorkerRecord::Connection(ConnectionDelta {
            flow: Flow {
                client: [10, 0, 0, 1].into(),
                server: [10, 0, 0, 2].into(),
                client_port: 40000,
                server_port: 80,
                proto: 6,
                app: App::Http,
            },
            new_session: true,
            packets: i,
            bytes: 0,
            first: Timestamp::ZERO,
            last: Timestamp::ZERO,
            verdict: Verdict::Allowed,
            rule: None,
            mode: Mode::Discover,
            answered: true,
        })
    }

    fn packets(r: WorkerRecord) -> u64 {
        match r {
            WorkerRecord::Connection(c) => c.packets,
            _ => u64::MAX,
        }
    }

    #[test]
    fn capacity_is_checked() {
        assert_eq!(ring(0).err(), Some(CapacityError(0)));
        assert_eq!(
            ring(MAX_CAPACITY + 1).err(),
            Some(CapacityError(MAX_CAPACITY + 1))
        );
        assert!(ring(1).is_ok());
    }

    #[test]
    fn a_full_ring_drops_and_counts_exactly_without_blocking() {
        let (mut p, mut c) = ring(4).expect("ring");
        // 10 pushes into 4 slots with nobody draining: the call returns every time (a
        // blocking push would hang this test), 4 go in, 6 are counted lost.
        let accepted: Vec<bool> = (0..10).map(|i| p.push(rec(i))).collect();
        assert_eq!(
            accepted,
            [
                true, true, true, true, false, false, false, false, false, false
            ]
        );
        assert_eq!(p.counters().pushed.get(), 4);
        assert_eq!(p.counters().overflow.get(), 6);
        assert_eq!(p.free(), 0);
        assert_eq!(c.take_overflow(), 6);
        assert_eq!(c.take_overflow(), 0, "reported once");
        // The oldest four survive, in order.
        let mut got = Vec::new();
        assert_eq!(c.drain(usize::MAX, |r| got.push(packets(r))), 4);
        assert_eq!(got, [0, 1, 2, 3]);
        assert!(c.is_empty());
        // Room again: the next push goes in, and one more overflow is counted after.
        for i in 10..15 {
            p.push(rec(i));
        }
        assert_eq!(p.counters().overflow.get(), 7);
        assert_eq!(c.take_overflow(), 1);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn drain_takes_at_most_max_in_order() {
        let (mut p, mut c) = ring(8).expect("ring");
        for i in 0..6 {
            assert!(p.push(rec(i)));
        }
        let mut got = Vec::new();
        assert_eq!(c.drain(4, |r| got.push(packets(r))), 4);
        assert_eq!(c.drain(4, |r| got.push(packets(r))), 2);
        assert_eq!(c.drain(4, |r| got.push(packets(r))), 0);
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
        assert!(p.push(rec(6)));
        assert_eq!(c.pop().map(packets), Some(6));
        assert_eq!(c.pop(), None);
        assert!(!c.is_abandoned());
        drop(p);
        assert!(c.is_abandoned());
    }
}
