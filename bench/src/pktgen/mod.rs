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

pub mod flows;
pub mod latency;
pub mod ndr;
pub mod pacer;
pub mod packet;
pub mod report;
pub mod sizes;
