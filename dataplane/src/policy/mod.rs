//! Network policy: the model shared with `palisade` ([`model`]), compiled into per-workload
//! lookup tables the workers read without locks.

pub mod model;

pub use model::{Action, Group, Mac, Mode, Policy, PolicyError, PortSpec, Rule, Workload};
