//! Palisade's dataplane.
//!
//! The pure-Rust core builds and tests without DPDK: [`config`] (the `[dataplane]` section),
//! [`preflight`] (host checks before the EAL starts), [`stats`] (counters), [`wire`] (frame
//! parsing and IP fragments), [`conntrack`] (the per-worker connection table), [`dpi`]
//! (application identification), [`pipeline`] (all of them per packet), and the offline
//! [`capture`] reader and [`classify`] tool. The `dpdk` feature adds [`dpdk`], the EAL, pools,
//! ports and poll-mode workers, and the `palisade-dp` binary. [`policy`] (the model shared with
//! control, compiled into lock-free lookup tables), [`report`] (records from workers to
//! control: per-worker rings and the aggregator), [`threat`] (the threat checks the pipeline
//! runs at moments it already has in hand) and [`ctl`] (the control-socket protocol, server and
//! client) complete the core.

mod bytes;
pub mod capture;
pub mod classify;
pub mod config;
pub mod conntrack;
pub mod ctl;
pub mod dpi;
mod hugemem;
pub mod pipeline;
pub mod policy;
pub mod preflight;
pub mod report;
pub mod stats;
pub mod threat;
pub mod wire;

#[cfg(feature = "dpdk")]
pub mod dpdk;
