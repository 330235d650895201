//! The benchmark harness (`scripts/bench.sh`) in CI: `palisade-bench --quick` runs each
//! scenario for a few seconds and must write a well-formed report: `null` (testpmd io vs
//! palisade-dp, null -> null), `forward` (the zero-loss search of `palisade-pktgen` through
//! testpmd io and palisade-dp over memif, with latency), `protect-10k`, `rule-scaling` and
//! `hitless-update`. Needs root, hugepages, `dpdk-testpmd` and the workspace's binaries
//! (`palisade-dp` and `palisade-pktgen` next to `palisade-bench`). No speed is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::Value;

/// Runs `palisade-bench --quick` with `scenarios`; returns the report.
fn run(scenarios: &[&str]) -> Value {
    run_with(&[], scenarios)
}

/// [`run`] with more options before the scenarios.
fn run_with(options: &[&str], scenarios: &[&str]) -> Value {
    let args: Vec<&str> = ["--quick", "--rounds", "1", "--seconds", "1"]
        .iter()
        .chain(options)
        .chain(scenarios)
        .copied()
        .collect();
    let r = common::bench(&["palisade-pktgen"], &args).report;
    let names: Vec<&str> = r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, scenarios, "{r}");
    for s in r["scenarios"].as_array().unwrap() {
        assert!(
            s["reference"].as_str().is_some_and(|x| !x.is_empty()),
            "{s}"
        );
        for k in ["reference_mpps", "palisade_mpps", "ratio"] {
            assert!(s[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {s}");
        }
        assert_eq!(s["packet_bytes"], 64, "{s}");
    }
    r
}

fn latency_ok(l: &Value) -> bool {
    l["p50_ns"].as_u64().is_some_and(|v| v > 0)
        && l["p999_ns"].as_u64() >= l["p50_ns"].as_u64()
        && l["histogram"].as_array().is_some_and(|h| !h.is_empty())
}

#[test]
fn null_and_forward_write_a_well_formed_report() {
    let r = run(&["null", "forward"]);
    let fw = &r["scenarios"][1];
    assert!(latency_ok(&fw["reference_latency"]), "{fw}");
    assert!(latency_ok(&fw["palisade_latency"]), "{fw}");
    // And both at one equal load.
    assert!(
        fw["equal_load_pps"].as_f64().is_some_and(|r| r > 0.0),
        "{fw}"
    );
    assert!(latency_ok(&fw["reference_latency_equal_load"]), "{fw}");
    assert!(latency_ok(&fw["palisade_latency_equal_load"]), "{fw}");
}

#[test]
fn protect_scenarios_write_a_well_formed_report() {
    let r = run(&["protect-10k", "rule-scaling", "hitless-update"]);
    let p = &r["scenarios"][0];
    assert!(p["rules"].as_u64().is_some_and(|n| n >= 10_000), "{p}");
    // Every flow is allowed: a drop would be a wrong verdict.
    assert_eq!(p["palisade_policy_drops"], 0, "{p}");
    assert!(
        p["palisade_evaluations"].as_u64().is_some_and(|n| n > 0),
        "{p}"
    );
    let s = &r["scenarios"][1];
    let rules: Vec<u64> = s["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["rules"].as_u64().unwrap())
        .collect();
    assert_eq!(rules, [10, 1_000, 10_000, 100_000], "{s}");
    for x in s["sizes"].as_array().unwrap() {
        assert!(
            x["established_mpps"].as_f64().is_some_and(|v| v > 0.0),
            "{x}"
        );
        assert!(
            x["new_flows_per_s"].as_f64().is_some_and(|v| v > 0.0),
            "{x}"
        );
    }
    let h = &r["scenarios"][2];
    // Denied frames that passed while the policy was swapped: a verdict neither version gives.
    assert_eq!(h["mixed_verdicts"], 0, "{h}");
    assert!(h["swap_us_max"].as_f64().is_some(), "{h}");
    let done = h["rounds"][0]["with_swaps"]["swaps"]["done"]
        .as_u64()
        .unwrap();
    assert!(done > 0, "{h}");
}

#[test]
fn two_workers_on_two_queues_write_a_well_formed_report() {
    // Both workers on CPU 1 here; on a real box `--worker-cpus` gives each its own.
    let r = run_with(&["--workers", "2", "--worker-cpus", "1"], &["protect-10k"]);
    let p = &r["scenarios"][0];
    assert_eq!(p["workers"], 2, "{p}");
    assert_eq!(p["dut_lcores"], "0@0,1@1,2@1", "{p}");
    assert_eq!(p["palisade_policy_drops"], 0, "{p}");
    // The generator spreads its 10k flows over both queues: both workers carry traffic.
    let rx: Vec<u64> = p["palisade_worker_rx"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(rx.len(), 2, "{p}");
    assert!(rx.iter().all(|&n| n > 0), "{p}");
}
