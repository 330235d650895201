//! Palisade's dataplane.
//!
//! The pure-Rust core builds and tests without DPDK: [`config`] (the `[dataplane]` section),
//! [`preflight`] (host checks before the EAL starts), [`stats`] (counters) and [`dpi`]
//! (application identification from the first payloads of a session). The `dpdk`
//! feature adds [`dpdk`], the EAL, pools, ports and poll-mode workers, and the `palisade-dp`
//! binary. Later layers (`wire`, `conntrack`, `policy`, `report`, `ctl`) join the core.

pub mod config;
pub mod dpi;
pub mod preflight;
pub mod stats;
pub mod wire;

#[cfg(feature = "dpdk")]
pub mod dpdk;
