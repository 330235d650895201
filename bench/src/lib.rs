//! Pieces of the benchmark harness that need no DPDK: reading packet counters out of
//! `dpdk-testpmd`'s and `palisade-dp`'s periodic statistics, turning counter samples into
//! rates, the JSON report, and network namespaces for scenarios that move real traffic.
//!
//! Rates are computed the same way for the reference and for Palisade: counter samples
//! timestamped by the harness as the lines arrive, differenced over the measurement window.

use std::time::{Duration, Instant};

use serde::Serialize;

pub mod charts;
pub mod netns;
pub mod pktgen;
pub mod policy_gen;

/// Reads `dpdk-testpmd --stats-period` output: a block per port that starts with
/// `NIC statistics for port N` and holds `TX-packets: N`.
#[derive(Debug, Default)]
pub struct TestpmdStats {
    port: Option<u16>,
}

impl TestpmdStats {
    /// Feeds one output line; returns (port, transmitted packets) when the line completes one.
    pub fn feed(&mut self, line: &str) -> Option<(u16, u64)> {
        if let Some(rest) = line.split("NIC statistics for port").nth(1) {
            self.port = rest.split_whitespace().next().and_then(|p| p.parse().ok());
            return None;
        }
        let port = self.port?;
        let rest = line.trim_start().strip_prefix("TX-packets:")?;
        let tx = rest.split_whitespace().next()?.parse().ok()?;
        self.port = None;
        Some((port, tx))
    }
}

/// Reads `palisade-dp`'s `port counters` log line for port `name`; returns its `tx`.
pub fn dp_port_tx(line: &str, name: &str) -> Option<u64> {
    if !line.contains("port counters") {
        return None;
    }
    let mut fields = line.split_whitespace();
    if !fields.any(|f| f == format!("port={name}")) {
        return None;
    }
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("tx="))
        .and_then(|v| v.parse().ok())
}

/// Reads testpmd's `CPU cycles/packet=43.82 (...)` summary (`--record-core-cycles`).
pub fn testpmd_cycles_per_packet(line: &str) -> Option<f64> {
    line.split("CPU cycles/packet=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Reads the TSC frequency from testpmd's `... at 2450 MHz Clock` summary, in Hz.
pub fn testpmd_tsc_hz(line: &str) -> Option<u64> {
    let mhz: u64 = line
        .split(" at ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    line.contains("MHz Clock").then_some(mhz * 1_000_000)
}

/// A criterion result: the mean time per iteration in nanoseconds, from
/// `<dir>/<group>/<id>/new/estimates.json`.
pub fn criterion_mean_ns(dir: &std::path::Path, group: &str, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(group).join(id).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("mean")?.get("point_estimate")?.as_f64()
}

/// One step of the pipeline micro-benchmarks, in time and cycles.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `parse`, `conntrack_hit`, `conntrack_insert`, `dpi_first_packet`, `established`.
    pub name: String,
    /// Table size or payload the step ran at.
    pub at: String,
    /// Mean nanoseconds per packet (criterion).
    pub ns: f64,
    /// The same in TSC cycles.
    pub cycles: f64,
}

/// The pipeline micro-benchmarks next to testpmd's cost per packet, measured in one run.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    /// TSC frequency the cycles are computed with (as testpmd reported it).
    pub tsc_hz: u64,
    /// The reference.
    pub reference: String,
    /// testpmd io-forward's busy cycles per packet, null -> null, best round of this run.
    pub reference_cycles_per_packet: f64,
    /// Every step.
    pub steps: Vec<Step>,
    /// The goal for `established`: cycles per packet.
    pub established_goal_cycles: f64,
}

/// Reads `cycles_per_packet="…"` from palisade-dp's `worker counters` line.
pub fn dp_cycles_per_packet(line: &str) -> Option<f64> {
    if !line.contains("worker counters") {
        return None;
    }
    let v: f64 = line
        .split("cycles_per_packet=")
        .nth(1)?
        .trim_start_matches('"')
        .split(['"', ' '])
        .next()?
        .parse()
        .ok()?;
    (v > 0.0).then_some(v)
}

/// Reads `eal_init_ms="…"` from palisade-dp's `dataplane running` line.
pub fn dp_eal_init_ms(line: &str) -> Option<f64> {
    let rest = line.split("eal_init_ms=").nth(1)?;
    rest.trim_start_matches('"')
        .split(['"', ' '])
        .next()?
        .parse()
        .ok()
}

/// A counter value at a moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When the harness read it.
    pub at: Instant,
    /// The counter.
    pub value: u64,
}

/// Packets per second over the samples taken in `[start + warmup, start + warmup + window]`:
/// the difference between the last and first sample in that span over the time between them.
/// `None` with fewer than two samples in the span.
pub fn rate(samples: &[Sample], start: Instant, warmup: Duration, window: Duration) -> Option<f64> {
    let from = start + warmup;
    let to = from + window;
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .collect();
    let (first, last) = (inside.first()?, inside.last()?);
    let dt = last.at.duration_since(first.at).as_secs_f64();
    if dt <= 0.0 || last.value < first.value {
        return None;
    }
    Some((last.value - first.value) as f64 / dt)
}

/// Median of the values (the mean of the middle two for an even count); `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// `target/bench/report.json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Commit measured.
    pub commit: String,
    /// CPU, cores, kernel.
    pub machine: String,
    /// One entry per scenario.
    pub scenarios: Vec<ScenarioReport>,
    /// The pipeline micro-benchmarks, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineReport>,
    /// The policy engine at several policy sizes, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyReport>,
}

/// Scenario `policy`: the policy engine at 10, 1k, 10k and 100k rules.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// Rounds run (every size once per round, interleaved).
    pub rounds: u32,
    /// Established connections the established-flow packets cycle through.
    pub established_flows: usize,
    /// New flows per timed batch.
    pub new_flow_batch: usize,
    /// `none` (no policy) and then every size.
    pub sizes: Vec<PolicySize>,
    /// Goals: established within this ratio of the 10-rule cost (1.05), compile times (ms)
    /// for 10k and 100k rules, swap latency (µs).
    pub goal_established_ratio: f64,
    /// Compile goal at 10k rules, ms.
    pub goal_compile_10k_ms: f64,
    /// Compile goal at 100k rules, ms.
    pub goal_compile_100k_ms: f64,
    /// Swap goal, µs.
    pub goal_swap_us: f64,
    /// How the swap was measured.
    pub swap_setup: String,
}

/// One policy size (`rules` is `None` for the run without a policy).
#[derive(Debug, Clone, Serialize)]
pub struct PolicySize {
    /// Rules in the generated policy.
    pub rules: Option<usize>,
    /// Pipeline cost of an established connection's data packet, ns: median of rounds, best.
    pub established_ns_median: f64,
    /// Best round.
    pub established_ns_best: f64,
    /// Median over the 10-rule policy's median.
    pub established_ratio: Option<f64>,
    /// Pipeline cost of a new flow's first packet (parse, session insert, policy lookup), ns:
    /// median of rounds.
    pub new_flow_ns_median: f64,
    /// Best round.
    pub new_flow_ns_best: f64,
    /// New flows classified per second on one core, millions (from the median).
    pub new_flow_mfps: f64,
    /// `Compiled::compile` in this process, ms: median of rounds.
    pub compile_ms_median: Option<f64>,
    /// Best round.
    pub compile_ms_best: Option<f64>,
    /// In the running dataplane: compile time it reported (`policy_compile_us`), median, ms.
    pub dp_compile_ms_median: Option<f64>,
    /// Publish to every worker running it (`policy_swap_us`), µs: median over the swaps.
    pub swap_us_median: Option<f64>,
    /// Largest.
    pub swap_us_max: Option<f64>,
    /// Every swap, µs.
    pub swap_us: Vec<f64>,
    /// `set_policy` round trip as the client sees it (encode, send, decode, compile, swap,
    /// acknowledge), median, ms.
    pub set_policy_ms_median: Option<f64>,
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub name: String,
    /// The reference command.
    pub reference: String,
    /// Reference forwarding rate, best round, Mpps.
    pub reference_mpps: f64,
    /// Palisade forwarding rate, best round, Mpps.
    pub palisade_mpps: f64,
    /// palisade_mpps / reference_mpps.
    pub ratio: f64,
    /// Reference busy TSC cycles per packet (testpmd `--record-core-cycles`), best round.
    pub reference_cycles_per_packet: f64,
    /// Palisade busy TSC cycles per packet, best round.
    pub palisade_cycles_per_packet: f64,
    /// reference_cycles_per_packet / palisade_cycles_per_packet: Palisade's per-core capacity
    /// relative to the reference, meaningful even when the generator limits the rate.
    pub cycle_ratio: f64,
    /// Generator's offered rate while measuring, median, Mpps.
    pub offered_mpps: f64,
    /// Reference rate, median of rounds, Mpps.
    pub reference_median_mpps: f64,
    /// Palisade rate, median of rounds, Mpps.
    pub palisade_median_mpps: f64,
    /// Reference cycles per packet, median of rounds.
    pub reference_median_cycles_per_packet: f64,
    /// Palisade cycles per packet, median of rounds.
    pub palisade_median_cycles_per_packet: f64,
    /// Packet size, bytes.
    pub packet_bytes: u32,
    /// Every round's rates in run order, Mpps.
    pub reference_rounds: Vec<f64>,
    /// Every round's rates in run order, Mpps.
    pub palisade_rounds: Vec<f64>,
    /// Every round's cycles per packet, in run order.
    pub reference_rounds_cycles_per_packet: Vec<f64>,
    /// Every round's cycles per packet, in run order.
    pub palisade_rounds_cycles_per_packet: Vec<f64>,
    /// TSC frequency as testpmd reported it, Hz.
    pub tsc_hz: Option<u64>,
    /// palisade-dp's EAL initialisation time per round, ms.
    pub palisade_eal_init_ms: Vec<f64>,
    /// Scenario-specific fields (rule counts, latency, loss, swap times), written beside the
    /// common ones.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testpmd_blocks_give_per_port_tx() {
        let out = "\
  ######################## NIC statistics for port 0  ########################
  RX-packets: 5          RX-missed: 0          RX-bytes:  320
  RX-errors: 0
  RX-nombuf:  0
  TX-packets: 0          TX-errors: 0          TX-bytes:  0

  ######################## NIC statistics for port 1  ########################
  RX-packets: 0          RX-missed: 0          RX-bytes:  0
  TX-packets: 74108992   TX-errors: 0          TX-bytes:  0
  ---------------------- Forward statistics for port 1  ----------------------
  TX-packets: 91813248       TX-dropped: 0             TX-total: 91813248
";
        let mut p = TestpmdStats::default();
        let got: Vec<_> = out.lines().filter_map(|l| p.feed(l)).collect();
        assert_eq!(got, vec![(0, 0), (1, 74_108_992)]);
    }

    #[test]
    fn dp_lines() {
        let l = "2026-11-29T08:23:41.296459Z  INFO palisade_dp: port counters port=sink rx=0 rx_bytes=0 tx=25790208 tx_bytes=1 tx_retries=0";
        assert_eq!(dp_port_tx(l, "sink"), Some(25_790_208));
        assert_eq!(dp_port_tx(l, "sin"), None);
        assert_eq!(dp_port_tx("worker counters tx=5", "sink"), None);
        let w = "INFO palisade_dp: worker counters lcore=1 rx=5 busy_cycles=9 cycles_per_packet=\"48.6\"";
        assert_eq!(dp_cycles_per_packet(w), Some(48.6));
        assert_eq!(
            testpmd_cycles_per_packet(
                "  CPU cycles/packet=43.82 (total cycles=9305480014 / total io packets=212359072) at 2450 MHz Clock"
            ),
            Some(43.82)
        );
        let r =
            "INFO palisade_dp: dataplane running eal_init_ms=\"201.5\" ready_ms=\"291.9\" ports=2";
        assert_eq!(dp_eal_init_ms(r), Some(201.5));
    }

    #[test]
    fn rate_over_window() {
        let t0 = Instant::now();
        let s: Vec<Sample> = (0..10)
            .map(|i| Sample {
                at: t0 + Duration::from_secs(i),
                value: i * 1_000_000,
            })
            .collect();
        let r = rate(&s, t0, Duration::from_secs(2), Duration::from_secs(5)).unwrap();
        assert!((r - 1e6).abs() < 1.0, "{r}");
        assert!(rate(&s, t0, Duration::from_secs(20), Duration::from_secs(5)).is_none());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
