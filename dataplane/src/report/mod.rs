//! Reports from the dataplane to control: the event model ([`event`]); per-worker rings and
//! the aggregator join here.

pub mod event;

pub use event::{ConnectionRecord, Endpoint, Event, Threat, ThreatKind, Verdict, Violation};
