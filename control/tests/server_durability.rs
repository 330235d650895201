//! An acknowledged API write survives `kill -9` of the real server, and no write is ever half
//! done. `store_durability.rs` proves this for the store alone; this test proves it end to end:
//! HTTP, handlers, the blocking store pool and SQLite, with the real `palisade up` binary.
//!
//! For [`ROUNDS`] rounds, on the same data directory: start `palisade up --no-dataplane`, wait
//! for `/healthz`, log in, check everything acknowledged so far (see [`verify`]), then create
//! groups (and every third write a rule) from a writer thread as fast as the server answers,
//! recording each write whose `201` response was fully received. After a random 50-500 ms
//! (counted from the first acknowledged write, so each round kills a server at work) the
//! server gets SIGKILL and is reaped. After the last round the server is started once more,
//! checked, stopped with SIGTERM, and `PRAGMA integrity_check` runs on the database.
//!
//! What it proves, after every kill:
//! - every acknowledged group and rule is there (rules with the `from`/`to` they were
//!   acknowledged with);
//! - no group name and no rule id is listed twice;
//! - never half a write: every group and rule has exactly one `audit` event (`group <name>
//!   created`, `rule <id> created`), and every such event names a group or rule that exists;
//! - the restarted server answers normally: logging in, listing, and a new write (`201`);
//! - the database passes `integrity_check` at the end.
//!
//! Writes in flight at the kill may or may not be there; both are fine. No timing assertions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use control::store::{Store, StoreSettings};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const ROUNDS: u32 = 20;
const PASSWORD: &str = "durability-password-1";

/// A running `palisade up`; SIGKILLed and reaped when dropped (also when the test fails).
struct Server {
    child: Option<Child>,
}

impl Server {
    fn start(dir: &Path, config: &Path, round: u32) -> Self {
        let log = dir.join(format!("server-{round}.log"));
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["up", "--no-dataplane", "--config"])
            .arg(config)
            .env("PALISADE_ADMIN_PASSWORD", PASSWORD)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Self { child: Some(child) }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.as_ref().unwrap().id()).unwrap())
    }

    /// SIGKILL and reap.
    fn kill9(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        kill(
            Pid::from_raw(i32::try_from(child.id()).unwrap()),
            Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap()
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    fn stop(mut self) {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the server exited with {status} on SIGTERM"
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// A small deterministic PRNG (splitmix64), seeded per round.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (at most 30 s) until `/healthz` answers 200.
fn wait_healthy(a: &ureq::Agent, base: &str, log: &Path, server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = a.get(format!("{base}/healthz")).call()
            && r.status() == 200
        {
            return;
        }
        if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "the server exited with {status} before answering:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "/healthz did not answer within 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn login(a: &ureq::Agent, base: &str) -> String {
    let mut r = a
        .post(format!("{base}/v1/auth"))
        .send_json(json!({"username": "admin", "password": PASSWORD}))
        .unwrap();
    let v: Value = r.body_mut().read_json().unwrap();
    assert_eq!(r.status(), 200, "login: {v}");
    v["token"].as_str().unwrap().to_owned()
}

/// Every item of a paged list; `after` of the next page is the previous page's `next`.
fn all(a: &ureq::Agent, base: &str, token: &str, path: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}{path}{sep}limit=1000");
        if let Some(c) = &after {
            url.push_str(&format!("&after={c}"));
        }
        let mut r = a
            .get(&url)
            .header("authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        assert_eq!(r.status(), 200, "GET {url}: {v}");
        items.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return items,
        }
    }
}

fn create_group(a: &ureq::Agent, base: &str, token: &str, name: &str) -> Result<u16, String> {
    let mut r = a
        .post(format!("{base}/v1/groups"))
        .header("authorization", format!("Bearer {token}"))
        .send_json(json!({"name": name, "criteria": [{"key": "name", "op": "=", "value": name}]}))
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    // Acknowledged only once the whole response is in.
    let v: Value = r.body_mut().read_json().map_err(|e| e.to_string())?;
    if status == 201 && v["name"] != name {
        return Err(format!("201 for group {name} with body {v}"));
    }
    Ok(status)
}

fn create_rule(
    a: &ureq::Agent,
    base: &str,
    token: &str,
    from: &str,
    port: u32,
) -> Result<(u16, Value), String> {
    let mut r = a
        .post(format!("{base}/v1/rules"))
        .header("authorization", format!("Bearer {token}"))
        .send_json(json!({"from": from, "to": from, "ports": [format!("tcp/{port}")]}))
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let v: Value = r.body_mut().read_json().map_err(|e| e.to_string())?;
    Ok((status, v))
}

enum Ack {
    Group(String),
    Rule(u32, String),
}

/// Writes until a request fails. A transport error after `killed` is set is the expected end;
/// anything else (a non-201 answer, an error before the kill) is returned as a failure.
fn writer(
    base: String,
    token: String,
    round: u32,
    killed: Arc<AtomicBool>,
    acks: mpsc::Sender<Ack>,
) -> Result<(), String> {
    let a = agent();
    let mut last_group: Option<String> = None;
    for i in 0u32.. {
        let res = match (&last_group, i % 3) {
            (Some(g), 2) => create_rule(&a, &base, &token, g, 1000 + i).map(|(s, v)| {
                if s == 201 {
                    let id = u32::try_from(v["id"].as_u64().unwrap_or(0)).unwrap_or(0);
                    let _ = acks.send(Ack::Rule(id, g.clone()));
                }
                (s, format!("rule from {g}: {v}"))
            }),
            _ => {
                let name = format!("r{round:02}-g{i:05}");
                create_group(&a, &base, &token, &name).map(|s| {
                    if s == 201 {
                        let _ = acks.send(Ack::Group(name.clone()));
                        last_group = Some(name.clone());
                    }
                    (s, format!("group {name}"))
                })
            }
        };
        match res {
            Ok((201, _)) => {}
            Ok((s, what)) => return Err(format!("round {round}: {what}: status {s}")),
            Err(_) if killed.load(Ordering::SeqCst) => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "round {round}: write {i} failed before the kill: {e}"
                ));
            }
        }
    }
    Ok(())
}

/// Everything acknowledged is there, nothing twice, no write half done, and a new write works.
fn verify(
    a: &ureq::Agent,
    base: &str,
    token: &str,
    label: &str,
    groups: &mut BTreeSet<String>,
    rules: &mut BTreeMap<u32, String>,
) {
    let listed = all(a, base, token, "/v1/groups");
    let mut names = BTreeSet::new();
    for g in &listed {
        let n = g["name"].as_str().unwrap().to_owned();
        assert!(names.insert(n.clone()), "{label}: group {n} listed twice");
    }
    for g in groups.iter() {
        assert!(
            names.contains(g),
            "{label}: acknowledged group {g} is missing"
        );
    }

    let listed = all(a, base, token, "/v1/rules");
    let mut ids = BTreeMap::new();
    for r in &listed {
        let id = u32::try_from(r["id"].as_u64().unwrap()).unwrap();
        let prev = ids.insert(id, r.clone());
        assert!(prev.is_none(), "{label}: rule {id} listed twice");
        assert!(
            names.contains(r["from"].as_str().unwrap())
                && names.contains(r["to"].as_str().unwrap()),
            "{label}: rule {r} names a missing group"
        );
    }
    for (id, from) in rules.iter() {
        let r = ids
            .get(id)
            .unwrap_or_else(|| panic!("{label}: acknowledged rule {id} ({from}) is missing"));
        assert!(
            r["from"] == from.as_str() && r["to"] == from.as_str(),
            "{label}: acknowledged rule {id} from {from} is now {r}"
        );
    }

    let events = all(a, base, token, "/v1/events?kind=audit");
    let mut group_created: HashMap<String, usize> = HashMap::new();
    let mut rule_created: HashMap<u32, usize> = HashMap::new();
    for e in &events {
        let m = e["message"].as_str().unwrap();
        let Some(what) = m.strip_suffix(" created") else {
            continue;
        };
        if let Some(g) = what.strip_prefix("group ") {
            assert_eq!(e["group"], g, "{label}: audit event {e}");
            *group_created.entry(g.to_owned()).or_default() += 1;
        } else if let Some(id) = what.strip_prefix("rule ") {
            *rule_created.entry(id.parse().unwrap()).or_default() += 1;
        }
    }
    for n in &names {
        assert_eq!(
            group_created.get(n).copied().unwrap_or(0),
            1,
            "{label}: group {n} must have exactly one `group {n} created` audit event"
        );
    }
    for g in group_created.keys() {
        assert!(
            names.contains(g),
            "{label}: `group {g} created` audited, but there is no group {g}"
        );
    }
    for id in ids.keys() {
        assert_eq!(
            rule_created.get(id).copied().unwrap_or(0),
            1,
            "{label}: rule {id} must have exactly one `rule {id} created` audit event"
        );
    }
    for id in rule_created.keys() {
        assert!(
            ids.contains_key(id),
            "{label}: `rule {id} created` audited, but there is no rule {id}"
        );
    }

    // The restarted server takes a new write.
    let name = format!("check-{label}").replace(' ', "-");
    assert_eq!(
        create_group(a, base, token, &name),
        Ok(201),
        "{label}: a new write"
    );
    groups.insert(name);
}

#[test]
fn acknowledged_api_writes_survive_sigkill_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("data");
    let config = dir.path().join("c.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\n\n[store]\ndata_dir = {:?}\n",
            data_dir.to_str().unwrap()
        ),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let a = agent();
    let started = Instant::now();

    let mut groups = BTreeSet::new();
    let mut rules = BTreeMap::new();
    let mut acked_per_round = Vec::new();
    for round in 0..=ROUNDS {
        let mut server = Server::start(dir.path(), &config, round);
        let log = dir.path().join(format!("server-{round}.log"));
        wait_healthy(&a, &base, &log, &mut server);
        let token = login(&a, &base);
        let label = if round == 0 {
            "start".to_owned()
        } else {
            format!("after kill {round}")
        };
        verify(&a, &base, &token, &label, &mut groups, &mut rules);
        if round == ROUNDS {
            server.stop();
            break;
        }

        let killed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let w = {
            let (base, token, killed) = (base.clone(), token.clone(), Arc::clone(&killed));
            std::thread::spawn(move || writer(base, token, round, killed, tx))
        };
        // Kill a server at work: after the first acknowledged write, then a random delay.
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("round {round}: no write acknowledged: {e}"));
        let delay_ms = 50 + splitmix(u64::from(round) ^ 0x5eed) % 451;
        std::thread::sleep(Duration::from_millis(delay_ms));
        killed.store(true, Ordering::SeqCst);
        let status = server.kill9();
        assert!(
            !status.success(),
            "round {round}: the server was not killed"
        );
        w.join().unwrap().unwrap_or_else(|e| panic!("writer: {e}"));
        let mut n = 0;
        for ack in std::iter::once(first).chain(rx.try_iter()) {
            n += 1;
            match ack {
                Ack::Group(g) => {
                    groups.insert(g);
                }
                Ack::Rule(id, from) => {
                    assert!(
                        rules.insert(id, from).is_none(),
                        "round {round}: rule id {id} acknowledged twice"
                    );
                }
            }
        }
        acked_per_round.push((delay_ms, n));
    }

    let store = Store::open(&data_dir, StoreSettings::default()).unwrap();
    store.check_integrity().unwrap();
    drop(store);
    println!(
        "{ROUNDS} kills in {:.1} s; (delay ms, acknowledged writes) per round: {acked_per_round:?}; \
         {} groups, {} rules acknowledged",
        started.elapsed().as_secs_f64(),
        groups.len(),
        rules.len()
    );
}
