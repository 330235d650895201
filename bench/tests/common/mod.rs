//! What the harness smoke tests share: one run of `palisade-bench` with the workspace's
//! binaries beside it, and the report it wrote.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// What one `palisade-bench` run left.
pub struct Run {
    /// Its process id (names what it created: `pb<pid>...`).
    pub pid: u32,
    /// What it printed.
    pub stdout: String,
    /// The report it wrote.
    pub report: Value,
}

/// Runs `palisade-bench --dp <palisade-dp> --out <a temporary file> ARGS`; `beside` names the
/// other binaries the scenarios need next to it. Fails with its output unless it succeeds, and
/// unless the report names the commit and the machine.
pub fn bench(beside: &[&str], args: &[&str]) -> Run {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_palisade-bench"));
    let dp = bench.with_file_name("palisade-dp");
    for name in ["palisade-dp"].iter().chain(beside) {
        let p = bench.with_file_name(name);
        assert!(
            p.exists(),
            "{} is missing next to palisade-bench: build the workspace first (cargo build --workspace)",
            p.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.json");
    let child = Command::new(&bench)
        .arg("--dp")
        .arg(&dp)
        .arg("--out")
        .arg(&out)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let run = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "palisade-bench {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(
        report["commit"].as_str().is_some_and(|c| !c.is_empty()),
        "{report}"
    );
    assert!(
        report["machine"].as_str().is_some_and(|m| !m.is_empty()),
        "{report}"
    );
    Run {
        pid,
        stdout,
        report,
    }
}
