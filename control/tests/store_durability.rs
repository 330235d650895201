//! An acknowledged store write survives `kill -9`: a child process writes in a loop and
//! prints each write once the store returned `Ok`; the test SIGKILLs it at a random moment,
//! reopens the database and finds every acknowledged write, with `integrity_check` ok.
//!
//! The child is this test executable itself, run with `--exact durability_writer` and
//! `PALISADE_DURABILITY_WRITER=<data dir>`; without that variable the helper test returns
//! at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use control::model::{
    Criterion, CriterionKey, CriterionOp, EventKind, Group, Mode, NewEvent, Severity,
};
use control::store::{EventQuery, Store, StoreSettings};

const WRITER_ENV: &str = "PALISADE_DURABILITY_WRITER";
const ROUNDS: u32 = 20;
/// Retention must not remove what the test looks for.
const KEEP_ALL: StoreSettings = StoreSettings {
    event_max_count: u64::MAX,
    event_max_age_days: 3650,
};

fn group(name: &str) -> Group {
    Group {
        name: name.into(),
        criteria: vec![Criterion {
            key: CriterionKey::Name,
            op: CriterionOp::Prefix,
            value: name.into(),
        }],
        network_mode: Mode::Monitor,
        process_mode: Mode::Monitor,
        file_mode: Mode::Monitor,
        learned: false,
        comment: String::new(),
    }
}

/// The child: appends events (alone and in bursts) and creates groups until killed,
/// printing `ack event <message>` / `ack group <name>` after each returned write.
#[test]
fn durability_writer() {
    let Ok(dir) = std::env::var(WRITER_ENV) else {
        return;
    };
    let round = std::env::var("PALISADE_DURABILITY_ROUND").unwrap();
    let store = Store::open(Path::new(&dir), KEEP_ALL).unwrap();
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    let mut i: u64 = 0;
    // Bounded, so an orphan (the parent died) stops on its own.
    while started.elapsed() < Duration::from_secs(30) {
        // Real timestamps: retention (run every 1000 appends) drops events older than 30 days.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let ev = |n: u64| NewEvent {
            at_ms: now_ms,
            kind: EventKind::System,
            severity: Severity::Info,
            group: None,
            workload: Some(format!("r{round}")),
            actor: None,
            message: format!("r{round}-e{n}"),
            details: serde_json::json!({ "n": n }),
        };
        match i % 3 {
            0 => {
                let e = store.append_event(ev(i)).unwrap();
                writeln!(out, "ack event {}", e.message).unwrap();
            }
            1 => {
                let burst = store
                    .append_events((0..8).map(|k| ev(i * 100 + k)).collect())
                    .unwrap();
                // One line per burst: a pipe write this small is atomic.
                let msgs: Vec<&str> = burst.iter().map(|e| e.message.as_str()).collect();
                writeln!(out, "ack event {}", msgs.join(" ")).unwrap();
            }
            _ => {
                let name = format!("r{round}-g{i}");
                store.create_group(group(&name), "writer").unwrap();
                writeln!(out, "ack group {name}").unwrap();
            }
        }
        out.flush().unwrap();
        i += 1;
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut total_acked = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "durability_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, dir.path())
            .env("PALISADE_DURABILITY_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the first acknowledged write (so every round kills a writer at work, not
        // one still starting), then kill at a random moment.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut text = String::new();
        while !text.starts_with("ack ") {
            text.clear();
            assert!(
                stdout.read_line(&mut text).unwrap() > 0,
                "round {round}: the writer exited without writing"
            );
        }
        let wait_ms = rand::random_range(20..=300u64);
        std::thread::sleep(Duration::from_millis(wait_ms));
        // `Child::kill` is SIGKILL on Unix.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        stdout.read_to_string(&mut text).unwrap();
        assert!(
            !status.success(),
            "round {round}: the writer finished before it was killed"
        );

        // Only complete lines were acknowledged.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..i],
            None => "",
        };
        let mut events = Vec::new();
        let mut groups = Vec::new();
        for line in complete.lines() {
            if let Some(rest) = line.strip_prefix("ack event ") {
                events.extend(rest.split(' ').map(str::to_owned));
            } else if let Some(name) = line.strip_prefix("ack group ") {
                groups.push(name.to_owned());
            }
        }

        let store = Store::open(dir.path(), KEEP_ALL).unwrap();
        store.check_integrity().unwrap();
        let mut stored = std::collections::HashSet::new();
        let mut cursor = None;
        loop {
            let (page, next) = store
                .events(&EventQuery {
                    kinds: vec![EventKind::System],
                    workload: Some(format!("r{round}")),
                    after_id: cursor,
                    limit: 1000,
                    ..Default::default()
                })
                .unwrap();
            stored.extend(page.into_iter().map(|e| e.message));
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        for e in &events {
            assert!(
                stored.contains(e),
                "round {round} (killed after {wait_ms} ms): acknowledged event {e} is missing"
            );
        }
        for g in &groups {
            assert!(
                store.group(g).unwrap().is_some(),
                "round {round} (killed after {wait_ms} ms): acknowledged group {g} is missing"
            );
        }
        total_acked += events.len() + groups.len();
    }
    assert!(total_acked >= ROUNDS as usize);
}
