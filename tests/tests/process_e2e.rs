//! The process engine with a real container (needs root in the host network namespace,
//! podman + runc and the `palisade-busybox:test` image): `palisade up --no-dataplane` with the
//! runtime API of a `podman system service`, driven through the REST API.
//!
//! - discover learns exactly the programs run in the container (each `podman exec` is one
//!   exec in it; busybox applets share `/bin/busybox` and differ by name);
//! - monitor raises a `process_violation` for an unlisted program and none for a learned one,
//!   and a critical one for a shell whose standard input is a socket (a reverse shell);
//! - protect kills an unlisted long-running program (the SIGKILL path) and reports the escape
//!   rate of a short one (the race the SIGKILL path cannot close; exec marks will);
//! - a setuid-root program executed by a non-root user is a critical "root gained" finding
//!   (with the real and effective uids) at exec time, whatever the profile says; the same
//!   program executed by root is an ordinary unlisted program;
//! - with `[process] zero_drift`, protect refuses a listed program written after the
//!   container started (EPERM, reported as drift), while a listed program from the image runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use palisade_tests::podman::{self, Bed};
use palisade_tests::up::Api;
use palisade_tests::wait_for;
use serde_json::{Value, json};

const SUBNET: &str = "198.18.106.0/24";

fn profile(api: &Api, group: &str) -> BTreeSet<(String, String, bool)> {
    api.call("GET", &format!("/v1/process-profiles/{group}"), None)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["path"].as_str().unwrap_or_default().to_owned(),
                e["learned"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

fn violations(api: &Api, after: i64) -> Vec<Value> {
    api.items(&format!(
        "/v1/events?kind=process_violation&after={after}&limit=1000"
    ))
}

#[test]
fn process_profiles_are_learned_monitored_and_protected_in_a_container() {
    // /tmp/x/true: a binary no profile will list (a copy of busybox, made before Palisade;
    // named `true` so that busybox runs its `true` applet).
    let bed = Bed::start(
        SUBNET,
        "198.18.106.10",
        "procapp",
        "mkdir -p /tmp/x && cp /bin/busybox /tmp/x/true && sleep 3600",
        "",
        "",
    );
    let (api, name, id) = (&bed.api, bed.name.as_str(), bed.id.as_str());
    let group = bed.group.as_str();
    let g = api.call("GET", &format!("/v1/groups/{group}"), None);
    assert_eq!(g["process_mode"], "discover", "{g}");
    // The engine reloads its snapshot on changes; give the new workload a moment to be in it.
    std::thread::sleep(Duration::from_millis(500));

    // ---- discover: exactly what ran -------------------------------------------------------
    // Programs that live long enough for /proc to show their executable (one gone before it
    // is read cannot be learned with its path; that is counted, see /v1/stats).
    for cmd in [
        &["sleep", "0.5"][..],
        &["usleep", "500000"],
        &["sh", "-c", "sleep 0.5; sleep 0.1"],
    ] {
        let mut args = vec!["exec", name];
        args.extend_from_slice(cmd);
        let _ = podman::podman(&args);
    }
    let want: BTreeSet<(String, String, bool)> = ["sh", "sleep", "usleep"]
        .iter()
        .map(|n| ((*n).to_owned(), "/bin/busybox".to_owned(), true))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        let p = profile(api, group);
        if p.len() >= want.len() {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "programs learned in 10 s: {p:?}; stats {}",
            api.call("GET", "/v1/stats", None)["process"]
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(profile(api, group), got, "nothing more is learned");
    assert_eq!(got, want, "exactly the programs run");

    // ---- monitor: an unlisted program is a violation, a learned one is not ---------------
    let before = api.last_event_id();
    api.call(
        "PATCH",
        &format!("/v1/groups/{group}"),
        Some(&json!({"process_mode": "monitor"})),
    );
    std::thread::sleep(Duration::from_millis(300));
    podman::must(&["exec", name, "sleep", "0.3"]);
    podman::must(&["exec", name, "id"]);
    let v = wait_for(Duration::from_secs(10), "violation for id", || {
        violations(api, before)
            .into_iter()
            .find(|e| e["details"]["name"] == "id")
    });
    assert_eq!(v["group"], group, "{v}");
    assert_eq!(v["workload"], id, "{v}");
    // `id` may be gone (or exiting) before /proc shows its executable: recorded without it.
    assert!(
        v["details"]["path"] == "/bin/busybox" || v["details"]["path"] == "?",
        "{v}"
    );
    assert_eq!(v["details"]["mode"], "monitor", "{v}");
    assert_eq!(v["details"]["killed"], false, "{v}");
    assert!(
        !violations(api, before)
            .iter()
            .any(|e| e["details"]["name"] == "sleep"),
        "sleep is learned"
    );
    assert_eq!(profile(api, group).len(), 3, "monitor learns nothing");

    // A shell on a socket (a reverse shell) is a finding whatever the profile says.
    podman::must(&[
        "exec", "--detach", name, "nc", "-l", "-p", "5555", "-e", "/bin/sh",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = podman::podman(&[
        "exec",
        name,
        "sh",
        "-c",
        "printf 'sleep 1\\nexit\\n' | nc 127.0.0.1 5555",
    ]);
    let rs = wait_for(Duration::from_secs(10), "reverse shell finding", || {
        violations(api, before).into_iter().find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("reverse shell"))
        })
    });
    assert_eq!(rs["severity"], "critical", "{rs}");
    assert_eq!(rs["details"]["name"], "sh", "{rs}");

    // ---- protect: the SIGKILL path -------------------------------------------------------
    api.call(
        "PATCH",
        &format!("/v1/groups/{group}"),
        Some(&json!({"process_mode": "protect"})),
    );
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    // Bounded (30 s) so that a kill that never comes fails the test instead of hanging it.
    let r = podman::podman(&["exec", name, "top", "-b", "-n", "60", "-d", "0.5"]);
    let took = t.elapsed();
    assert!(r.is_err(), "an unlisted top must be killed: {r:?}");
    assert!(
        took < Duration::from_secs(25),
        "killed, not finished: {took:?}"
    );
    eprintln!("protect: an unlisted `top` was killed {took:?} after podman exec started");
    assert_eq!(
        podman::podman(&["exec", name, "sleep", "0.2"]),
        Ok(String::new()),
        "a learned program keeps working"
    );
    // Short programs race the kill: report how many got to print their output.
    let attempts = 40;
    let mut escaped = 0;
    for _ in 0..attempts {
        if podman::podman(&["exec", name, "id"]).is_ok_and(|s| s.contains("uid=")) {
            escaped += 1;
        }
    }
    eprintln!("protect (SIGKILL path): {escaped}/{attempts} runs of an unlisted `id` completed");
    // The exec gate: an unlisted binary fails with EPERM inside the container...
    let out = podman::must(&["exec", name, "sh", "-c", "/tmp/x/true 2>&1; echo rc=$?"]);
    assert!(
        out.contains("Operation not permitted") && out.ends_with("rc=126"),
        "EPERM from execve inside the container: {out}"
    );
    // ... and never runs, however often it is tried.
    let t = Instant::now();
    let out = podman::must(&[
        "exec",
        name,
        "sh",
        "-c",
        "n=0; i=0; while [ $i -lt 10000 ]; do /tmp/x/true 2>/dev/null && n=$((n+1)); i=$((i+1)); done; echo $n",
    ]);
    eprintln!(
        "protect (exec gate): {out} of 10000 runs of an unlisted binary escaped, in {:?}",
        t.elapsed()
    );
    assert_eq!(out, "0", "escapes through the exec gate");
    let denied = wait_for(Duration::from_secs(10), "gate denial reported", || {
        violations(api, before)
            .into_iter()
            .find(|e| e["details"]["path"] == "/tmp/x/true")
    });
    assert_eq!(denied["details"]["mode"], "protect", "{denied}");
    // A profile edit takes effect at once: list /tmp/x/true (any name) and it runs (which
    // also proves the 0 above was the gate's doing). Measured without `podman exec`: a loop
    // in the container tries it every millisecond and creates /tmp/ran once it ran; that
    // file's mtime (read from the host through /proc/<pid>/root) against the moment before
    // the PATCH was sent.
    podman::must(&[
        "exec",
        "--detach",
        name,
        "sh",
        "-c",
        "touch /tmp/trying; until /tmp/x/true 2>/dev/null; do usleep 1000; done; touch /tmp/ran",
    ]);
    let pid = podman::must(&["inspect", "--format", "{{.State.Pid}}", name]);
    let tmp = std::path::PathBuf::from(format!("/proc/{pid}/root/tmp"));
    wait_for(Duration::from_secs(10), "the loop started", || {
        tmp.join("trying").exists().then_some(())
    });
    let sent = std::time::SystemTime::now();
    api.call(
        "PATCH",
        &format!("/v1/process-profiles/{group}"),
        Some(&json!({"add": [{"name": "*", "path": "/tmp/x/true", "action": "allow"}]})),
    );
    let ran = wait_for(Duration::from_secs(10), "the listed binary ran", || {
        std::fs::metadata(tmp.join("ran"))
            .and_then(|m| m.modified())
            .ok()
    });
    eprintln!(
        "profile edit: /tmp/x/true ran {:?} after the PATCH was sent",
        ran.duration_since(sent).unwrap_or_default()
    );
    assert_eq!(
        podman::podman(&["exec", name, "/tmp/x/true"]),
        Ok(String::new())
    );
    let stats = api.call("GET", "/v1/stats", None);
    let p = &stats["process"];
    assert!(p["killed"].as_u64().unwrap_or(0) >= 1, "{stats}");
    assert!(p["execs"].as_u64().unwrap_or(0) >= 8, "{stats}");
    // The gate's counters (refreshed twice a second): it refused and it ignored.
    let gate = wait_for(Duration::from_secs(5), "gate counters", || {
        let s = api.call("GET", "/v1/stats", None);
        let g = s["process"]["gate"].clone();
        (g["denied"].as_u64().unwrap_or(0) >= 1 && g["ignored"].as_u64().unwrap_or(0) >= 1)
            .then_some(g)
    });
    eprintln!("exec gate counters: {gate}");
    eprintln!("process engine counters: {p}");
}

#[test]
fn lost_process_events_are_counted_and_a_rescan_repairs_what_was_missed() {
    // The smallest event buffer the kernel allows: a burst of execs must overflow it.
    let bed = Bed::start(
        "198.18.107.0/24",
        "198.18.107.10",
        "stormapp",
        "sleep 3600",
        "default_mode = \"monitor\"\n",
        "[process]\nevents_buffer = 0\n",
    );
    let (api, id) = (&bed.api, bed.id.as_str());
    // The group was created in monitor (default_mode): nothing is ever learned, so the
    // container's program is a violation whenever a rescan first sees it (an early loss may
    // have rescanned before the storm already).
    let before = 0;
    std::thread::sleep(Duration::from_millis(500));
    // The container's `sleep` started before Palisade: no exec event will ever name it. A
    // storm of execs on the host overflows the event socket; the rescan that follows finds it.
    let storm: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new("/bin/sh")
                .args([
                    "-c",
                    "i=0; while [ $i -lt 3000 ]; do /bin/true; i=$((i+1)); done",
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in storm {
        c.wait().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let s = api.call("GET", "/v1/stats", None)["process"].clone();
        if s["lost"].as_u64().unwrap_or(0) >= 1 && s["rescans"].as_u64().unwrap_or(0) >= 1 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no loss counted after the storm: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("after the storm: {stats}");
    let v = wait_for(Duration::from_secs(10), "the rescan's violation", || {
        violations(api, before)
            .into_iter()
            .find(|e| e["details"]["rescan"] == true && e["details"]["name"] == "sleep")
    });
    assert_eq!(v["workload"], id, "{v}");
    assert_eq!(v["details"]["mode"], "monitor", "{v}");
}

/// The `process_violation` events of the bed's container after event `after`.
fn bed_violations(b: &Bed, after: i64) -> Vec<Value> {
    violations(&b.api, after)
        .into_iter()
        .filter(|e| e["workload"] == b.id.as_str())
        .collect()
}

/// The engine's root-gain finding (control/src/process/engine.rs), in the event's message.
const ROOT_GAINED: &str = "root gained: effective uid 0 for a non-root user";

/// A setuid-root copy of busybox named `passwd`, executed by user 1000. Busybox drops its
/// privileges at once for applets that do not need them (a setuid copy named `sleep` already
/// shows `Uid: 1000 1000 ...` when looked at), but `passwd` keeps effective uid 0 while it
/// waits for a password on its standard input, here a pipe from `sleep 30`: the process is
/// there with uids (1000, 0) for as long as the engine might take to look, no timing luck
/// involved. The engine sees it twice: the kernel sends a uid-change event (1000, 0) during
/// the exec itself, then the exec event, at which the observer reads the uids of every
/// process whose effective uid is 0; it reports once.
/// User 1000 (`app`) is added to /etc/passwd, which `passwd` needs. The group is in monitor
/// with an empty profile, so every program is reported, and root's run of the same `passwd`
/// shows what the engine read for it.
#[test]
fn a_setuid_root_program_run_by_a_non_root_user_is_a_root_gain_finding() {
    let b = Bed::start(
        "198.18.108.0/24",
        "198.18.108.10",
        "rootapp",
        "mkdir -p /tmp/x && cp /bin/busybox /tmp/x/passwd && chmod 4755 /tmp/x/passwd && \
         echo app:x:1000:1000:app:/:/bin/sh >> /etc/passwd && sleep 3600",
        "default_mode = \"monitor\"\n",
        "",
    );
    let g = b.api.call("GET", &format!("/v1/groups/{}", b.group), None);
    assert_eq!(g["process_mode"], "monitor", "{g}");
    // The engine judges the container once its snapshot has the new workload: run a probe
    // until it is reported.
    wait_for(Duration::from_secs(20), "the probe reported", || {
        let _ = b.exec(&["usleep", "300000"]);
        bed_violations(&b, 0)
            .into_iter()
            .find(|e| e["details"]["name"] == "usleep")
    });
    let passwd = |uid: u64| {
        move |e: &Value| e["details"]["name"] == "passwd" && e["details"]["uid"]["real"] == uid
    };

    // Root runs it: an unlisted program like any other, no finding.
    podman::must(&[
        "exec",
        "--detach",
        &b.name,
        "sh",
        "-c",
        "sleep 30 | /tmp/x/passwd",
    ]);
    let by_root = wait_for(Duration::from_secs(20), "root's passwd reported", || {
        bed_violations(&b, 0).into_iter().find(passwd(0))
    });
    assert_eq!(
        by_root["details"]["uid"],
        json!({"real": 0, "effective": 0}),
        "{by_root}"
    );
    assert_eq!(by_root["details"]["path"], "/tmp/x/passwd", "{by_root}");
    assert_eq!(by_root["severity"], "warning", "{by_root}");
    let msg = by_root["message"].as_str().unwrap_or_default();
    assert!(
        msg.ends_with(": not in the profile") && !msg.contains("root gained"),
        "{by_root}"
    );

    // User 1000 runs it: root gained.
    podman::must(&[
        "exec",
        "--detach",
        "--user",
        "1000",
        &b.name,
        "sh",
        "-c",
        "sleep 30 | /tmp/x/passwd",
    ]);
    let gained = wait_for(
        Duration::from_secs(20),
        "user 1000's passwd reported",
        || bed_violations(&b, 0).into_iter().find(passwd(1000)),
    );
    eprintln!("root gain: {gained}");
    assert_eq!(
        gained["message"],
        format!(
            "passwd (/tmp/x/passwd) in {} [monitor mode]: {ROOT_GAINED}",
            b.group
        ),
        "{gained}"
    );
    assert_eq!(gained["severity"], "critical", "{gained}");
    assert_eq!(gained["group"], b.group.as_str(), "{gained}");
    let d = &gained["details"];
    assert_eq!(d["uid"], json!({"real": 1000, "effective": 0}), "{gained}");
    assert_eq!(d["path"], "/tmp/x/passwd", "{gained}");
    assert_eq!(d["cmdline"], json!(["/tmp/x/passwd"]), "{gained}");
    assert_eq!(d["mode"], "monitor", "{gained}");
    assert_eq!(d["killed"], false, "{gained}");
    // Exactly one finding, for this one process: the rest of user 1000's pipeline (its `sh`
    // and `sleep`) and everything root ran gained nothing, and the uid-change event the
    // kernel sends during a setuid exec is not a second report. A later program's violation
    // is the sentinel: the engine reports in order, so everything before it is in.
    let after = b.api.last_event_id();
    podman::must(&["exec", &b.name, "usleep", "300000"]);
    wait_for(Duration::from_secs(10), "the sentinel's violation", || {
        bed_violations(&b, after)
            .into_iter()
            .find(|e| e["details"]["name"] == "usleep")
    });
    let findings: Vec<Value> = bed_violations(&b, 0)
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("root gained"))
        })
        .collect();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["details"]["pid"], d["pid"], "{findings:#?}");
}

/// `[process] zero_drift = true` (the exec gate is on by default): in protect, a program whose
/// file changed at or after its container started is refused at exec even though its path is
/// in the profile. The container copies busybox to /tmp/x/sleep when it starts (named `sleep`
/// so that the copy runs long enough to be learned with its path in discover).
#[test]
fn zero_drift_refuses_a_listed_program_written_after_the_container_started() {
    let b = Bed::start(
        "198.18.109.0/24",
        "198.18.109.10",
        "driftapp",
        "mkdir -p /tmp/x && cp /bin/busybox /tmp/x/sleep && sleep 3600",
        "",
        "[process]\nzero_drift = true\n",
    );
    let g = b.api.call("GET", &format!("/v1/groups/{}", b.group), None);
    assert_eq!(g["process_mode"], "discover", "{g}");

    // ---- discover: the copy and the image's programs are learned --------------------------
    let want: BTreeSet<(String, String, bool)> = [
        ("sh", "/bin/busybox"),
        ("sleep", "/bin/busybox"),
        ("sleep", "/tmp/x/sleep"),
    ]
    .iter()
    .map(|(n, p)| ((*n).to_owned(), (*p).to_owned(), true))
    .collect();
    // Run until learned (the engine learns only once its snapshot has the new workload).
    let learned = wait_for(Duration::from_secs(30), "the programs learned", || {
        for cmd in [
            &["sleep", "0.5"][..],
            &["/tmp/x/sleep", "0.5"],
            &["sh", "-c", "sleep 0.5; sleep 0.1"],
        ] {
            let _ = b.exec(cmd);
        }
        let p = profile(&b.api, &b.group);
        p.is_superset(&want).then_some(p)
    });
    assert_eq!(learned, want, "exactly the programs run");

    // ---- protect: the listed copy is refused as drift -------------------------------------
    let before = b.api.last_event_id();
    b.api.call(
        "PATCH",
        &format!("/v1/groups/{}", b.group),
        Some(&json!({"process_mode": "protect"})),
    );
    // Until the exec gate has marked the container the copy runs (it is listed, so the
    // SIGKILL path lets it be); once marked, execve fails with EPERM inside the container.
    let t = Instant::now();
    let out = wait_for(Duration::from_secs(15), "the copy refused", || {
        let out = b
            .exec(&["sh", "-c", "/tmp/x/sleep 0.1 2>&1; echo rc=$?"])
            .unwrap_or_else(|e| panic!("{e}"));
        (out != "rc=0").then_some(out)
    });
    eprintln!(
        "zero drift: the copy refused {:?} after the PATCH",
        t.elapsed()
    );
    assert!(
        out.contains("Operation not permitted") && out.ends_with("rc=126"),
        "EPERM from execve inside the container: {out}"
    );
    let direct = b.exec(&["/tmp/x/sleep", "0.1"]);
    assert!(direct.is_err(), "the copy refused again: {direct:?}");
    assert_eq!(
        b.exec(&["sleep", "0.1"]),
        Ok(String::new()),
        "a listed program from the image runs"
    );
    assert_eq!(
        profile(&b.api, &b.group),
        want,
        "the profile still lists the copy"
    );
    let v = wait_for(Duration::from_secs(10), "the drift reported", || {
        bed_violations(&b, before)
            .into_iter()
            .find(|e| e["details"]["path"] == "/tmp/x/sleep")
    });
    eprintln!("drift: {v}");
    assert_eq!(
        v["message"],
        format!(
            "sleep (/tmp/x/sleep) in {} [protect mode]: drift: a program written after the \
             container started",
            b.group
        ),
        "{v}"
    );
    assert_eq!(v["severity"], "critical", "{v}");
    assert_eq!(v["group"], b.group.as_str(), "{v}");
    assert_eq!(v["details"]["mode"], "protect", "{v}");
    assert_eq!(v["details"]["killed"], false, "{v}");
    // Nothing from the image was refused or killed: every violation is the copy's.
    let all = bed_violations(&b, before);
    assert!(
        all.iter().all(|e| e["details"]["path"] == "/tmp/x/sleep"),
        "{all:#?}"
    );
    let gate = b.api.call("GET", "/v1/stats", None)["process"]["gate"].clone();
    eprintln!("exec gate counters: {gate}");
}
