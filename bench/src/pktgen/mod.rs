//! The pure-Rust core of `palisade-pktgen`, the DPDK traffic generator: everything that does
//! not touch DPDK, so the tx/rx loop on top of it only moves mbufs.
//!
//! - [`flows`]: flow sets (5-tuple ranges, allowed vs denied classes, new-flow rotation);
//! - [`sizes`]: frame sizes, fixed or IMIX;
//! - [`packet`]: frames built into a caller's buffer, with a payload stamp found again on rx;
//! - [`latency`]: a bounded, mergeable latency histogram;
//! - [`pacer`]: a token bucket on an injected clock;
//! - [`ndr`]: the RFC 2544 zero-loss (NDR) / partial-drop (PDR) rate search;
//! - [`report`]: per-class counters and the run summary (JSON and a table).
//!
//! Sizes are Ethernet frame sizes as RFC 2544 section 9.1 counts them: including the 4-byte
//! FCS the NIC appends, so a "64-byte" frame puts 60 bytes in the mbuf ([`packet::FCS_LEN`]).
//!
//! # What the tx/rx loop on top must do
//!
//! - One clock for everything: the TSC (`rte_rdtsc`) with `rte_get_tsc_hz` as ticks per
//!   second, for the [`pacer::Pacer`], the [`flows::Rotation`] and the stamps. Take the tx
//!   time once per burst just before `rte_eth_tx_burst` and the rx time once per burst just
//!   after `rte_eth_rx_burst`; convert [`packet::Stamp::latency`] from ticks to ns before
//!   [`latency::Histogram::record`]. Stamps carry 48 bits of the clock.
//! - Build a template per slot and size with [`packet::build`] when the slot's generation
//!   changes, copy it into each mbuf and [`packet::restamp`] it: no per-packet checksum over
//!   the payload, no allocation.
//! - Pass to [`pacer::Pacer::consume`] what `tx_burst` really took, and count only that as
//!   sent ([`report::ClassCounters`], class from [`flows::FlowSet::class`] of the slot).
//! - Keep a histogram and counters per core and merge them at the end.

pub mod flows;
pub mod latency;
pub mod ndr;
pub mod pacer;
pub mod packet;
pub mod report;
pub mod sizes;
