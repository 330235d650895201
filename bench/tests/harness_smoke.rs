//! The benchmark harness (`scripts/bench.sh`) in CI: `palisade-bench --quick` runs the `null`
//! scenario (testpmd io vs palisade-dp, null -> null) and the `ndr` scenario (the zero-loss
//! search of `palisade-pktgen` through testpmd io and palisade-dp over memif) and must write a
//! well-formed report. Needs root, hugepages, `dpdk-testpmd` and the workspace's binaries
//! (`palisade-dp` next to `palisade-bench`). No speed is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use serde_json::Value;

#[test]
fn null_and_ndr_scenarios_write_a_well_formed_report() {
    let bench = std::path::PathBuf::from(env!("CARGO_BIN_EXE_palisade-bench"));
    let dp = bench.with_file_name("palisade-dp");
    assert!(
        dp.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        dp.display()
    );
    assert!(
        bench.with_file_name("palisade-pktgen").exists(),
        "palisade-pktgen is missing next to palisade-bench"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.json");
    let run = Command::new(&bench)
        .args(["--quick", "--rounds", "1", "--seconds", "1", "--dp"])
        .arg(&dp)
        .arg("--out")
        .arg(&out)
        .args(["null", "ndr"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "palisade-bench: {}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(r["commit"].as_str().is_some_and(|c| !c.is_empty()), "{r}");
    assert!(r["machine"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    let names: Vec<&str> = r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["null", "ndr"], "{r}");
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
}
