//! `palisade-pktgen` end to end on a ring looped back to itself (needs root and hugepages:
//! a real EAL, in memory, with its own file prefix): every frame sent comes back with its
//! stamp, so the report must show exact counts, no loss, and latencies; the zero-loss search
//! must converge and report a rate. No speed is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use serde_json::Value;

fn pktgen(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_palisade-pktgen"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "palisade-pktgen {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

#[test]
fn a_looped_back_run_counts_every_frame_by_class_with_latency() {
    let r = pktgen(&[
        "--port",
        "loop",
        "--flows",
        "count=64,allowed=75%",
        "--size",
        "imix",
        "--rate",
        "20kpps",
        "--seconds",
        "1",
        "--warmup",
        "0.2",
        "--file-prefix",
        &format!("pgsmoke{}", std::process::id()),
    ]);
    let sent = r["total"]["sent"].as_u64().unwrap();
    assert!(sent > 0, "{r}");
    assert_eq!(r["total"]["received"], sent, "{r}");
    assert_eq!(r["total"]["lost"], 0, "{r}");
    let (a, d) = (
        r["allowed"]["sent"].as_u64().unwrap(),
        r["denied"]["sent"].as_u64().unwrap(),
    );
    assert_eq!(a + d, sent, "{r}");
    // 48 of the 64 slots are allowed, sent in turn: a 3:1 split give or take one round.
    assert!(a.abs_diff(3 * d) <= 64, "{r}");
    assert!(
        r["latency"]["p50_ns"].as_u64().is_some() || r["latency"].is_object(),
        "{r}"
    );
    assert_eq!(r["rate"], "20000pps", "{r}");
}

#[test]
fn the_zero_loss_search_converges_on_a_lossless_loop() {
    let r = pktgen(&[
        "--port",
        "loop",
        "--flows",
        "count=16",
        "--ndr",
        "--seconds",
        "0.3",
        "--warmup",
        "0",
        "--resolution",
        "0.1",
        "--file-prefix",
        &format!("pgndr{}", std::process::id()),
    ]);
    let ndr = &r["ndr"];
    let trials = ndr["trials"].as_array().unwrap();
    assert!(!trials.is_empty(), "{r}");
    assert!(
        trials.iter().all(|t| t["passed"] == true),
        "a loop loses nothing: {r}"
    );
    assert!(ndr["rate_pps"].as_f64().unwrap() > 0.0, "{r}");
}
