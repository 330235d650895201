//! The dataplane's counters as plain serde data for `GetStats`: what `dpdk::runtime` reports
//! (pairs, ports, workers with their pipeline, connection-table and fragment counters), built
//! from the pure-Rust snapshot types so that control can read it without the `dpdk` feature.
//!
//! Drop and malformed counters are maps keyed by the stable names of [`DropReason::name`] and
//! [`Malformed::name`]: drops list every reason, malformed lists only reasons seen (there are
//! 23 of them), with `malformed_total` alongside.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::conntrack::ConntrackSnapshot;
use crate::pipeline::PipelineSnapshot;
use crate::stats::{DropReason, PortSnapshot, WorkerSnapshot};
use crate::wire::Malformed;

/// Every counter the dataplane reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Generation of the policy running now.
    pub generation: u64,
    /// Port pairs.
    #[serde(default)]
    pub pairs: Vec<PairStats>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<PortStats>,
    /// Workers.
    #[serde(default)]
    pub workers: Vec<WorkerStats>,
    /// How long the last policy took to compile, microseconds (absent before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_compile_us: Option<u64>,
    /// How long the last policy took from publication until every worker ran it,
    /// microseconds (absent before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_swap_us: Option<u64>,
}

impl Stats {
    /// Live sessions over all workers.
    pub fn sessions(&self) -> u64 {
        self.workers.iter().map(|w| w.sessions.active).sum()
    }

    /// Malformed frames over all workers.
    pub fn malformed(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.pipeline.malformed_total)
            .sum()
    }
}

/// One pair and where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairStats {
    /// Pair id.
    pub id: u64,
    /// Its two port names.
    pub ports: [String; 2],
    /// Worker lcore serving its queue 0.
    pub lcore: u32,
    /// Worker lcore serving each of its queues (one per queue).
    #[serde(default)]
    pub lcores: Vec<u32>,
}

/// One port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    /// Port name.
    pub name: String,
    /// DPDK port id.
    pub port_id: u16,
    /// Its pair.
    pub pair: u64,
    /// Worker lcore serving its queue 0.
    pub lcore: u32,
    /// Worker lcore serving each of its queues (one per queue).
    #[serde(default)]
    pub lcores: Vec<u32>,
    /// Flows are spread over its queues by symmetric RSS (else, with several queues, by the
    /// PMD's own way: the kernel's fanout hash, or the queue a peer sent on).
    #[serde(default)]
    pub rss: bool,
    /// The dataplane's own counters.
    pub counters: PortCounterStats,
    /// The PMD's counters, when it reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pmd: Option<PmdStats>,
    /// Link state.
    pub link: LinkStats,
}

/// A port's dataplane counters ([`PortSnapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounterStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Extra transmit calls after partial bursts.
    pub tx_retries: u64,
    /// Drops by [`DropReason::name`] (every reason listed).
    pub drops: BTreeMap<String, u64>,
}

impl From<&PortSnapshot> for PortCounterStats {
    fn from(s: &PortSnapshot) -> Self {
        Self {
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            tx_retries: s.tx_retries,
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name().to_owned(), s.dropped(*r)))
                .collect(),
        }
    }
}

/// The PMD's own counters of a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PmdStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Missed for want of a descriptor.
    pub imissed: u64,
    /// Erroneous received packets.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receive failures for want of an mbuf.
    pub rx_nombuf: u64,
}

/// Link state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStats {
    /// Up.
    pub up: bool,
    /// Mbit/s, 0 when unknown.
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// One worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Its lcore.
    pub lcore: u32,
    /// Pairs it serves.
    pub pairs: u64,
    /// Whether its loop runs.
    pub running: bool,
    /// Loop counters.
    pub counters: WorkerCounterStats,
    /// Pipeline counters.
    pub pipeline: PipelineStats,
    /// Connection-table counters.
    pub sessions: SessionStats,
    /// IP fragment counters.
    pub fragments: FragmentStats,
    /// Records pushed into its report ring.
    #[serde(default)]
    pub reports_pushed: u64,
    /// Records lost because its report ring was full.
    #[serde(default)]
    pub reports_lost: u64,
}

/// A worker loop's counters ([`WorkerSnapshot`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCounterStats {
    /// Loop iterations.
    pub loops: u64,
    /// Idle iterations.
    pub idle_loops: u64,
    /// Adaptive sleeps.
    pub sleeps: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// TSC cycles spent on non-empty bursts.
    pub busy_cycles: u64,
}

impl From<&WorkerSnapshot> for WorkerCounterStats {
    fn from(s: &WorkerSnapshot) -> Self {
        Self {
            loops: s.loops,
            idle_loops: s.idle_loops,
            sleeps: s.sleeps,
            rx_packets: s.rx_packets,
            tx_packets: s.tx_packets,
            dropped: s.dropped,
            busy_cycles: s.busy_cycles,
        }
    }
}

/// A worker pipeline's counters ([`PipelineSnapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineStats {
    /// Frames processed.
    pub frames: u64,
    /// Malformed frames of every reason.
    pub malformed_total: u64,
    /// Malformed frames by [`Malformed::name`], reasons seen only.
    #[serde(default)]
    pub malformed: BTreeMap<String, u64>,
    /// ARP frames.
    pub arp: u64,
    /// Frames of other ethertypes.
    pub other_ethertype: u64,
    /// IP packets of other protocols.
    pub other_ip_proto: u64,
    /// Packets conntrack would not track.
    pub untracked: u64,
    /// Packets handed to DPI.
    pub inspected: u64,
    /// Policy evaluations (new sessions, policy changes, decided applications).
    #[serde(default)]
    pub evaluations: u64,
    /// Packets dropped by policy.
    #[serde(default)]
    pub policy_drops: u64,
    /// Packets dropped for a threat.
    #[serde(default)]
    pub threat_drops: u64,
    /// Violations raised.
    #[serde(default)]
    pub violations: u64,
    /// Threats detected.
    #[serde(default)]
    pub threats: u64,
    /// TCP resets sent for dropped segments.
    #[serde(default)]
    pub resets: u64,
}

impl From<&PipelineSnapshot> for PipelineStats {
    fn from(s: &PipelineSnapshot) -> Self {
        Self {
            frames: s.frames,
            malformed_total: s.malformed_total(),
            malformed: Malformed::ALL
                .iter()
                .filter_map(|m| {
                    let n = s.malformed[m.index()];
                    (n > 0).then(|| (m.name().to_owned(), n))
                })
                .collect(),
            arp: s.arp,
            other_ethertype: s.other_ethertype,
            other_ip_proto: s.other_ip_proto,
            untracked: s.untracked,
            inspected: s.inspected,
            evaluations: s.evaluations,
            policy_drops: s.policy_drops,
            threat_drops: s.threat_drops,
            violations: s.violations,
            threats: s.threats,
            resets: s.resets,
        }
    }
}

/// A worker's connection-table counters ([`ConntrackSnapshot`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStats {
    /// Live sessions.
    pub active: u64,
    /// Lookups that found a live session.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Sessions created.
    pub created: u64,
    /// Sessions picked up mid-stream.
    pub picked_up: u64,
    /// Sessions reopened by a SYN.
    pub reopened: u64,
    /// Sessions expired.
    pub expired: u64,
    /// Sessions evicted.
    pub evicted: u64,
    /// Sessions removed.
    pub removed: u64,
    /// New flows refused (table full).
    pub refused: u64,
    /// Stray TCP segments not tracked.
    pub stray: u64,
}

impl From<&ConntrackSnapshot> for SessionStats {
    fn from(s: &ConntrackSnapshot) -> Self {
        Self {
            active: s.active,
            hits: s.hits,
            misses: s.misses,
            created: s.created,
            picked_up: s.picked_up,
            reopened: s.reopened,
            expired: s.expired,
            evicted: s.evicted,
            removed: s.removed,
            refused: s.refused,
            stray: s.stray,
        }
    }
}

/// A worker's IP fragment counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentStats {
    /// Later fragments that followed their first fragment's verdict.
    pub followed: u64,
    /// Fragments held for a late first fragment.
    pub held: u64,
    /// Held fragments released.
    pub released: u64,
    /// Held fragments dropped.
    pub dropped: u64,
    /// Overlapping fragments (teardrop).
    pub overlaps: u64,
}

#[cfg(feature = "dpdk")]
mod from_runtime {
    //! Conversions from the runtime's reports (built only with the `dpdk` feature).

    use super::*;
    use crate::dpdk::{Dataplane, PairReport, PortReport, WorkerReport};

    impl From<&PairReport> for PairStats {
        fn from(r: &PairReport) -> Self {
            Self {
                id: r.id.0,
                ports: r.ports.clone(),
                lcore: r.lcores.first().map_or(0, |l| l.0),
                lcores: r.lcores.iter().map(|l| l.0).collect(),
            }
        }
    }

    impl From<&PortReport> for PortStats {
        fn from(r: &PortReport) -> Self {
            Self {
                name: r.name.clone(),
                port_id: r.port_id,
                pair: r.pair.0,
                lcore: r.lcores.first().map_or(0, |l| l.0),
                lcores: r.lcores.iter().map(|l| l.0).collect(),
                rss: r.rss,
                counters: PortCounterStats::from(&r.counters),
                pmd: r.pmd.map(|p| PmdStats {
                    ipackets: p.ipackets,
                    opackets: p.opackets,
                    ibytes: p.ibytes,
                    obytes: p.obytes,
                    imissed: p.imissed,
                    ierrors: p.ierrors,
                    oerrors: p.oerrors,
                    rx_nombuf: p.rx_nombuf,
                }),
                link: LinkStats {
                    up: r.link.up,
                    speed_mbps: r.link.speed_mbps,
                    full_duplex: r.link.full_duplex,
                },
            }
        }
    }

    impl From<&WorkerReport> for WorkerStats {
        fn from(r: &WorkerReport) -> Self {
            Self {
                lcore: r.lcore.0,
                pairs: r.pairs as u64,
                running: r.running,
                counters: WorkerCounterStats::from(&r.counters),
                pipeline: PipelineStats::from(&r.pipeline),
                sessions: SessionStats::from(&r.conntrack),
                fragments: FragmentStats {
                    followed: r.fragments.followed,
                    held: r.fragments.held,
                    released: r.fragments.released,
                    dropped: r.fragments.dropped,
                    overlaps: r.fragments.overlaps,
                },
                reports_pushed: r.reports_pushed,
                reports_lost: r.reports_lost,
            }
        }
    }

    impl Stats {
        /// Everything `dp` reports, under policy `generation`.
        pub fn from_dataplane(dp: &Dataplane, generation: u64) -> Self {
            Self {
                generation,
                pairs: dp.pairs().iter().map(PairStats::from).collect(),
                ports: dp.port_reports().iter().map(PortStats::from).collect(),
                workers: dp.worker_reports().iter().map(WorkerStats::from).collect(),
                policy_compile_us: None,
                policy_swap_us: None,
            }
        }
    }
}
