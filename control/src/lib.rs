//! `palisade`, the control process and CLI.
//!
//! Today it loads and validates the whole configuration file ([`config`]), reads and diffs
//! policy documents ([`policy_code`]) and drives a running server over its REST API
//! ([`cli`]); the API, store, discovery, plumbing and engines join in later issues.

pub mod cli;
pub mod config;
pub mod dataplane;
pub mod learn;
pub mod model;
pub mod policy;
pub mod policy_code;
pub mod store;
