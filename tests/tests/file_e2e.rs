//! The file engine with real containers (needs root, podman + runc and the
//! `palisade-busybox:test` image): `palisade up --no-dataplane` with the runtime API of a
//! `podman system service`, driven through the REST API.
//!
//! - monitor: `echo x >> /etc/passwd` raises a `file_violation` naming the path, the
//!   program and the container, and the write succeeds; a recursive rule on a directory
//!   reports a write deep below it; a container started after the rules is covered; a removed
//!   rule stops its events;
//! - discover learns which program changes a default-watched file (a learned group rule), and
//!   its later changes are not reported;
//! - protect with a block rule: the write fails with EPERM inside the container, the allowed
//!   app still reads, the event says denied; rule edits take effect at once (measured).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::time::{Duration, Instant};

use palisade_tests::podman::{self, Bed};
use palisade_tests::up::Api;
use palisade_tests::wait_for;
use serde_json::{Value, json};

const SUBNET: &str = "198.18.110.0/24";

fn violations(api: &Api, after: i64) -> Vec<Value> {
    api.items(&format!(
        "/v1/events?kind=file_violation&after={after}&limit=1000"
    ))
}

/// The first violation after `after` about `path` (waiting up to 10 s).
fn violation_for(api: &Api, after: i64, path: &str) -> Value {
    wait_for(
        Duration::from_secs(10),
        &format!("violation for {path}"),
        || {
            violations(api, after)
                .into_iter()
                .find(|e| e["details"]["path"] == path)
        },
    )
}

fn rules(api: &Api, group: &str) -> Vec<Value> {
    api.call("GET", &format!("/v1/file-rules/{group}"), None)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn set_mode(api: &Api, group: &str, mode: &str) {
    api.call(
        "PATCH",
        &format!("/v1/groups/{group}"),
        Some(&json!({ "file_mode": mode })),
    );
}

#[test]
fn file_rules_are_learned_monitored_and_protected_in_containers() {
    let mut bed = Bed::start(
        SUBNET,
        "198.18.110.10",
        "fileapp",
        "mkdir -p /data/sub && echo secret > /etc/app.conf && sleep 3600",
        "default_mode = \"monitor\"\n",
        "",
    );
    let (name, id, group) = (bed.name.clone(), bed.id.clone(), bed.group.clone());
    let group = group.as_str();
    let api = &bed.api;
    let g = api.call("GET", &format!("/v1/groups/{group}"), None);
    assert_eq!(g["file_mode"], "monitor", "{g}");

    // ---- monitor (the default mode here) -------------------------------------------------
    // Written until the engine watches the container (other containers on the host may be
    // watched before it, so the `marked` counter cannot tell).
    let before = api.last_event_id();
    let v = wait_for(Duration::from_secs(20), "the container watched", || {
        // The shell stays a moment after its write (`sleep` not last: the shell would exec it
        // and take its name): its name and executable are there to read.
        podman::must(&[
            "exec",
            &name,
            "sh",
            "-c",
            "echo x >> /etc/passwd; sleep 0.5; true",
        ]);
        violations(api, before)
            .into_iter()
            .find(|e| e["details"]["path"] == "/etc/passwd")
    });
    assert_eq!(v["details"]["name"], "sh", "{v}");
    assert_eq!(v["details"]["exe"], "/bin/busybox", "{v}");
    assert_eq!(v["details"]["access"], "write", "{v}");
    assert_eq!(v["details"]["action"], "alert", "{v}");
    assert_eq!(v["details"]["default"], true, "{v}");
    assert_eq!(v["details"]["mode"], "monitor", "{v}");
    assert_eq!(v["workload"], id.as_str(), "{v}");
    assert_eq!(v["group"], group, "{v}");
    let passwd = podman::must(&["exec", &name, "cat", "/etc/passwd"]);
    assert!(
        passwd.contains("\nx\n") || passwd.ends_with("\nx"),
        "the write went through: {passwd}"
    );

    // A recursive rule on a directory: a write deep below it (written until the new rule is
    // in force; writes before that are not watched).
    api.call(
        "PATCH",
        &format!("/v1/file-rules/{group}"),
        Some(&json!({"add": [{"filter": "/data", "recursive": true, "behavior": "monitor"}]})),
    );
    let before = api.last_event_id();
    let t = Instant::now();
    let v = wait_for(Duration::from_secs(10), "recursive rule in force", || {
        podman::must(&[
            "exec",
            &name,
            "sh",
            "-c",
            "echo 1 > /data/sub/deep; sleep 0.5; true",
        ]);
        violations(api, before)
            .into_iter()
            .find(|e| e["details"]["path"] == "/data/sub/deep")
    });
    eprintln!(
        "rule edit: first violation {:?} after the PATCH (podman exec included)",
        t.elapsed()
    );
    assert_eq!(v["details"]["filter"], "/data", "{v}");
    assert_eq!(v["details"]["recursive"], true, "{v}");
    assert_eq!(v["details"]["default"], false, "{v}");
    assert_eq!(v["details"]["name"], "sh", "{v}");

    // A container started after the rules is covered.
    let late = format!("{name}-late");
    let late_id = bed.net.run(
        &late,
        "198.18.110.11",
        &["app=fileapp"],
        "mkdir -p /data && sleep 3600",
    );
    let before = api.last_event_id();
    let v = wait_for(
        Duration::from_secs(20),
        "the late container watched",
        || {
            podman::must(&["exec", &late, "sh", "-c", "echo 2 > /data/late"]);
            violations(api, before)
                .into_iter()
                .find(|e| e["details"]["path"] == "/data/late")
        },
    );
    assert_eq!(v["workload"], late_id.as_str(), "{v}");

    // A removed rule stops its events. Each round writes under /data, then /etc/shadow (a
    // default): the engine sees them in that order, so once the /etc/shadow report is in
    // and no /data one came before it, the deleted rule is out of force.
    api.call(
        "PATCH",
        &format!("/v1/file-rules/{group}"),
        Some(&json!({"delete": [{"filter": "/data", "recursive": true, "behavior": "monitor"}]})),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    for round in 0.. {
        let before = api.last_event_id();
        podman::must(&[
            "exec",
            &name,
            "sh",
            "-c",
            &format!("echo 3 > /data/sub/after{round}; echo z | tee -a /etc/shadow >/dev/null"),
        ]);
        violation_for(api, before, "/etc/shadow");
        let data = violations(api, before).into_iter().any(|e| {
            e["details"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/data/"))
        });
        if !data {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted rule still reports after 10 s"
        );
    }

    // ---- discover: the program that changes /etc/passwd is learned -----------------------
    set_mode(api, group, "discover");
    let learned = wait_for(Duration::from_secs(10), "a learned rule", || {
        podman::must(&[
            "exec",
            &name,
            "sh",
            "-c",
            "echo learned >> /etc/passwd; sleep 0.5; true",
        ]);
        std::thread::sleep(Duration::from_millis(200));
        rules(api, group)
            .into_iter()
            .find(|r| r["filter"] == "/etc/passwd")
    });
    assert_eq!(learned["apps"], json!(["sh"]), "{learned}");
    assert_eq!(learned["learned"], true, "{learned}");
    assert_eq!(learned["behavior"], "monitor", "{learned}");

    // ---- protect: a block rule -----------------------------------------------------------
    set_mode(api, group, "protect");
    // How soon a rule edit is in force, without `podman exec` in the measurement: a writer in
    // the container appends every millisecond until refused, then creates /tmp/refused; its
    // mtime (the kernel's clock, read from the host through /proc/<pid>/root) against the
    // moment before the PATCH was sent.
    podman::must(&[
        "exec",
        "--detach",
        &name,
        "sh",
        "-c",
        "touch /tmp/writing; while echo w >> /etc/app.conf 2>/dev/null; do usleep 1000; done; \
         touch /tmp/refused",
    ]);
    let pid = podman::must(&["inspect", "--format", "{{.State.Pid}}", &name]);
    let root = std::path::PathBuf::from(format!("/proc/{pid}/root/tmp"));
    wait_for(Duration::from_secs(10), "the writer started", || {
        root.join("writing").exists().then_some(())
    });
    let before = api.last_event_id();
    let sent = std::time::SystemTime::now();
    api.call(
        "PATCH",
        &format!("/v1/file-rules/{group}"),
        Some(&json!({"add": [{"filter": "/etc/app.conf", "behavior": "block", "apps": ["cat"]}]})),
    );
    let refused = wait_for(Duration::from_secs(10), "the writer refused", || {
        std::fs::metadata(root.join("refused"))
            .and_then(|m| m.modified())
            .ok()
    });
    eprintln!(
        "protect: a new block rule refused the writer {:?} after the PATCH was sent",
        refused.duration_since(sent).unwrap_or_default()
    );
    let out = podman::must(&[
        "exec",
        &name,
        "sh",
        "-c",
        "{ echo w >> /etc/app.conf; } 2>&1; echo rc=$?",
    ]);
    assert!(
        out.contains("Operation not permitted") && out.ends_with("rc=1"),
        "EPERM inside the container: {out}"
    );
    // The writer's appends before the rule was in force are reported too (as changes the
    // block rule saw, `alert`): the denial is the one to look at.
    let v = wait_for(Duration::from_secs(10), "the denial", || {
        violations(api, before)
            .into_iter()
            .find(|e| e["details"]["path"] == "/etc/app.conf" && e["details"]["action"] == "denied")
    });
    assert_eq!(v["details"]["action"], "denied", "{v}");
    assert_eq!(v["details"]["name"], "sh", "{v}");
    assert_eq!(v["details"]["access"], "open", "{v}");
    assert_eq!(v["severity"], "critical", "{v}");
    // The allowed app still reads it; another program may not.
    let content = podman::must(&["exec", &name, "cat", "/etc/app.conf"]);
    assert!(content.starts_with("secret"), "{content}");
    let other = podman::podman(&["exec", &name, "head", "-n1", "/etc/app.conf"]);
    assert!(other.is_err(), "head is not among the apps: {other:?}");
    // The learned program changes /etc/passwd unreported; another one's change to a default
    // is still reported (alert: monitor rules never block). In this order, so that the
    // second report proves the first write was judged.
    let before = api.last_event_id();
    podman::must(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo by-sh >> /etc/passwd; sleep 0.5; true",
    ]);
    podman::must(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo y | tee -a /etc/shadow >/dev/null",
    ]);
    let v = violation_for(api, before, "/etc/shadow");
    assert_eq!(v["details"]["action"], "alert", "{v}");
    assert!(
        !violations(api, before)
            .iter()
            .any(|e| e["details"]["path"] == "/etc/passwd"),
        "sh is learned for /etc/passwd"
    );
    let stats = api.call("GET", "/v1/stats", None);
    assert!(stats["file"]["denied"].as_u64() >= Some(2), "{stats}");
    eprintln!("file engine counters: {}", stats["file"]);
}
