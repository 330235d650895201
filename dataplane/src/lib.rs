//! Palisade's dataplane.
//!
//! The pure-Rust core builds and tests without DPDK: [`config`] (the `[dataplane]` section),
//! [`preflight`] (host checks before the EAL starts), [`stats`] (counters) and [`conntrack`]
//! (the per-worker connection table). The `dpdk` feature adds [`dpdk`], the EAL, pools, ports
//! and poll-mode workers, and the `palisade-dp` binary. Later layers (`wire`, `dpi`, `policy`,
//! `report`, `ctl`) join the core.

pub mod capture;
pub mod config;
pub mod conntrack;
pub mod preflight;
pub mod stats;
pub mod wire;

#[cfg(feature = "dpdk")]
pub mod dpdk;
