//! The `control` scenario of the benchmark harness in CI: `palisade-bench --quick control`
//! (`palisade up` and its `palisade-dp` between two network namespaces; mode changes until the
//! traffic shows them, connections until their learned rules are listed) must write a
//! well-formed report. Needs root, network namespaces, hugepages and the workspace's binaries
//! (`palisade-dp` and `palisade` next to `palisade-bench`); runs in nextest's `e2e` group. No
//! speed is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[test]
fn netns_dpdk_control_scenario_writes_a_well_formed_report() {
    let run = common::bench(&["palisade"], &["--quick", "control"]);
    let r = &run.report;
    let c = &r["control"];
    assert!(c["setup"].as_str().is_some_and(|s| !s.is_empty()), "{c}");

    let m = &c["mode_change"];
    let changes = m["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 4, "{m}");
    for (i, ch) in changes.iter().enumerate() {
        let (to, seen) = if i % 2 == 0 {
            ("protect", ["refused", "timed_out", "failed"].as_slice())
        } else {
            ("monitor", ["echoed"].as_slice())
        };
        assert_eq!(ch["to"], to, "{ch}");
        assert!(
            seen.contains(&ch["seen_as"].as_str().unwrap()),
            "change {i}: {ch}"
        );
        assert!(ch["probes"].as_u64().is_some_and(|n| n >= 1), "{ch}");
        for k in ["generation_ms", "enforced_ms"] {
            assert!(ch[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {ch}");
        }
    }
    for k in [
        "generation_median_ms",
        "generation_max_ms",
        "enforced_median_ms",
        "enforced_max_ms",
    ] {
        assert!(m[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {m}");
    }
    assert_eq!(m["goal_ms"], 100.0, "{m}");

    let l = &c["learn"];
    assert_eq!(l["connections"], 3, "{l}");
    let ms = l["ms"].as_array().unwrap();
    assert_eq!(ms.len(), 3, "{l}");
    assert!(
        ms.iter().all(|v| v.as_f64().is_some_and(|v| v > 0.0)),
        "{l}"
    );
    for k in ["median_ms", "max_ms", "batch_ms", "goal_ms"] {
        assert!(l[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {l}");
    }
    let stdout = &run.stdout;
    for line in [
        "mode change -> generation",
        "mode change -> enforcement",
        "connection -> learned rule",
    ] {
        assert!(stdout.contains(line), "no `{line}` line in:\n{stdout}");
    }
}
