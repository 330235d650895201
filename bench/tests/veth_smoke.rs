//! Scenario `veth` in CI: `palisade-bench --quick --rounds 1 veth` runs palisade-pktgen
//! through testpmd io and palisade-dp over veth pairs between two network namespaces of its
//! own, with af_packet and then af_xdp, and must write one well-formed entry for each (an
//! af_xdp entry may instead carry the reason it could not run) and leave no namespace behind.
//! Needs root, hugepages, `ip`, `ethtool`, `dpdk-testpmd` and the workspace's binaries
//! (`palisade-dp` and `palisade-pktgen` next to `palisade-bench`). No speed is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

#[test]
fn veth_scenario_writes_an_entry_per_pmd_and_removes_its_namespace() {
    let run = common::bench(&["palisade-pktgen"], &["--quick", "--rounds", "1", "veth"]);
    let namespace = format!("pb{}-veth-", run.pid);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(!left.contains(&namespace), "left behind: {left}");

    let r = &run.report;
    let scenarios = r["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["veth-af_packet", "veth-af_xdp"], "{r}");
    for s in scenarios {
        assert!(
            s["reference"].as_str().is_some_and(|x| !x.is_empty()),
            "{s}"
        );
        assert_eq!(s["packet_bytes"], 64, "{s}");
        // af_packet must run; af_xdp may instead say why it could not.
        if s["name"] == "veth-af_xdp" && s["error"].is_string() {
            assert!(!s["error"].as_str().unwrap().is_empty(), "{s}");
            assert_eq!(s["ratio"], 0.0, "{s}");
            continue;
        }
        for k in ["reference_mpps", "palisade_mpps", "ratio", "offered_mpps"] {
            assert!(s[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {s}");
        }
        for k in [
            "reference_offered_mpps_rounds",
            "reference_received_at_max_mpps_rounds",
            "palisade_offered_mpps_rounds",
            "palisade_received_at_max_mpps_rounds",
        ] {
            let v = s[k].as_array().unwrap_or_else(|| panic!("{k}: {s}"));
            assert_eq!(v.len(), 1, "{k}: {s}");
            assert!(v[0].as_f64().is_some_and(|x| x > 0.0), "{k}: {s}");
        }
    }
}
