//! Reports from the dataplane to control.
//!
//! - [`event`]: the event model (plain serde data the control socket carries as is).
//! - [`record`]: the compact `Copy` records a worker emits ([`WorkerRecord`]), with no
//!   `String` and no heap, so that reporting costs the packet path a slot write.
//! - [`mod@ring`]: one bounded single-producer single-consumer ring per worker; a full ring drops
//!   the record and counts it, never blocks.
//! - [`aggregate`]: the [`Aggregator`] on a non-worker thread drains every ring, sums
//!   connection records per conversation, rate-limits, resolves addresses through the
//!   caller's [`Resolve`] and produces [`Event`]s.
//!
//! ```text
//! worker 0 --push--> [ring 0] --+
//! worker 1 --push--> [ring 1] --+--> Aggregator::poll(now) --> Vec<Event> --> control
//! worker n --push--> [ring n] --+
//! ```

pub mod aggregate;
pub mod event;
pub mod record;
pub mod ring;

pub use aggregate::{Aggregator, AggregatorStats, Config as AggregatorConfig, Now, Resolve};
pub use event::{ConnectionRecord, Endpoint, Event, Threat, ThreatKind, Verdict, Violation};
pub use record::{
    ConnectionDelta, DnsReason, Flow, SplitHandshake, ThreatDetail, ThreatRecord, ViolationRecord,
    WorkerRecord,
};
pub use ring::{RecordConsumer, RecordProducer, RingCounters, ring};
