//! Scenario `control` (alias `mode-change`): how fast the control process's decisions reach the
//! traffic. `palisade up` supervises a `palisade-dp` (one adaptive worker) whose two
//! `af_packet` ports are the host ends of two veth pairs, each leading into a namespace of its
//! own: a client (198.18.0.1, declared through the API as workload `client`, group
//! `auto.client`) and a server (198.18.0.2, `auto.server`) running line-echo servers. Plumbing
//! is off: the dataplane's ports are the only path between the two.
//!
//! 1. **Connection -> learned rule in the API.** Both groups in discover mode (the default).
//!    Each time, a new TCP connection from the client to a port of the server never used
//!    before (connect, a line echoed, close), then `GET /v1/rules?learned=true&from=
//!    auto.client&to=auto.server` until a rule for that port is listed: the time from the
//!    connect. Then every learned rule of the pair is deleted (so they never reach the
//!    20 ports that collapse into one `any` rule), and a random pause of up to a second
//!    follows, so the connections fall at random points of control's one-second learning
//!    batch instead of at a fixed phase of it. The goal is 1.1 s: one batch interval (a
//!    connection record waits for the next batch) plus the 100 ms a store write and policy
//!    push get in the mode-change goal.
//! 2. **Mode change -> enforcement.** The client group in monitor; the server group flipped
//!    between monitor and protect through `PATCH /v1/groups/auto.server`. A flow no rule
//!    allows (client -> server port 5002) is probed from the client namespace, a new
//!    connection every 2 ms (without waiting for the previous one to end), from just before the
//!    PATCH is sent: the time until a probe ended blocked (after a change to protect; with
//!    `tcp_reset`, the default, a RST answers its SYN) or echoing again (after a change to
//!    monitor). Beside it, the time until the dataplane's running
//!    policy generation (polled through `GET /v1/stats`, which asks the dataplane) is newer
//!    than before the change, as scenario `mode-change` measured it before. The goal is
//!    100 ms for both.
//!
//! Needs root, hugepages and `palisade` next to `palisade-dp`. Namespaces and veths are named
//! after this process and removed on every way out, including SIGINT/SIGTERM (a second signal
//! terminates at once).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bench::median;
use bench::netns::{Exchange, NetError, Netns, Veth, echo_servers, exchange};
use serde::Serialize;
use serde_json::{Value, json};

use super::Probe;

const CLIENT: &str = "198.18.0.1";
const SERVER: &str = "198.18.0.2";
/// The flow no rule allows, probed across mode changes.
const DENIED_PORT: u16 = 5002;
/// Learning warms up on this port; measured connections use the ones after it.
const FIRST_LEARN_PORT: u16 = 5100;
/// control's learning batch interval (`intake` in control/src/up.rs).
const LEARN_BATCH_MS: f64 = 1000.0;
/// A probe's connect and echo timeout: a dataplane that drops without a RST shows as a
/// timeout this much after the probe started.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// Time between the starts of two probes.
const PROBE_GAP: Duration = Duration::from_millis(2);
/// Longest wait for any one measurement.
const LIMIT: Duration = Duration::from_secs(10);

/// One mode change.
#[derive(Debug, Clone, Serialize)]
pub struct ModeChange {
    /// The server group's new network mode (`protect` or `monitor`).
    pub to: String,
    /// From sending the PATCH until the dataplane's running generation advanced, ms.
    pub generation_ms: f64,
    /// From sending the PATCH until a probe showed the new mode (blocked, or echoed again), ms.
    pub enforced_ms: f64,
    /// The probe that showed it: `refused` (a RST), `timed_out`, `failed` or `echoed`.
    pub seen_as: Exchange,
    /// Probes sent until then.
    pub probes: u32,
}

/// Part 2: mode change -> enforcement.
#[derive(Debug, Clone, Serialize)]
pub struct ModeChangeReport {
    /// Every change, in order (alternately to protect and to monitor).
    pub changes: Vec<ModeChange>,
    /// Generation seen: median, ms.
    pub generation_median_ms: f64,
    /// Generation seen: largest, ms.
    pub generation_max_ms: f64,
    /// Enforcement seen: median, ms.
    pub enforced_median_ms: f64,
    /// Enforcement seen: largest, ms.
    pub enforced_max_ms: f64,
    /// Goal for both, ms.
    pub goal_ms: f64,
}

/// Part 1: connection -> learned rule in the API.
#[derive(Debug, Clone, Serialize)]
pub struct LearnReport {
    /// Connections measured.
    pub connections: usize,
    /// From each connect until its rule was listed, ms, in order.
    pub ms: Vec<f64>,
    /// Median, ms.
    pub median_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// control's learning batch interval, ms.
    pub batch_ms: f64,
    /// Goal, ms.
    pub goal_ms: f64,
}

/// The scenario's result (`control` in the JSON report).
#[derive(Debug, Clone, Serialize)]
pub struct ControlReport {
    /// What ran.
    pub setup: String,
    /// Mode change -> enforcement.
    pub mode_change: ModeChangeReport,
    /// Connection -> learned rule.
    pub learn: LearnReport,
}

/// Prints the scenario's table.
#[allow(clippy::print_stdout)]
pub fn print(r: &ControlReport) {
    println!();
    println!(
        "{:<31} {:>4} {:>10} {:>10} {:>8}",
        "control", "n", "median ms", "max ms", "goal ms"
    );
    let m = &r.mode_change;
    let l = &r.learn;
    for (name, n, median, max, goal) in [
        (
            "mode change -> generation",
            m.changes.len(),
            m.generation_median_ms,
            m.generation_max_ms,
            m.goal_ms,
        ),
        (
            "mode change -> enforcement",
            m.changes.len(),
            m.enforced_median_ms,
            m.enforced_max_ms,
            m.goal_ms,
        ),
        (
            "connection -> learned rule",
            l.connections,
            l.median_ms,
            l.max_ms,
            l.goal_ms,
        ),
    ] {
        println!("{name:<31} {n:>4} {median:>10.1} {max:>10.1} {goal:>8.0}");
    }
}

/// Set by SIGINT or SIGTERM while the scenario runs, so that its loops end and everything it
/// created is removed on the way out; set between runs, so that a signal then terminates as
/// by default (`register_conditional_default` sees it set). Registered once per process.
fn stop_flag() -> Result<&'static Arc<AtomicBool>, String> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    if let Some(s) = STOP.get() {
        return Ok(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // In this order: a signal first terminates if the flag is already set, then sets it.
        signal_hook::flag::register_conditional_default(sig, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    Ok(STOP.get_or_init(|| stop))
}

fn check(stop: &AtomicBool) -> Result<(), String> {
    if stop.load(Ordering::Relaxed) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

struct Http {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Http {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let r = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("authorization", &auth)
                .call(),
            ("PATCH", Some(b)) => self
                .agent
                .patch(&url)
                .header("authorization", &auth)
                .send_json(b),
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("authorization", &auth)
                .send_json(b),
            _ => return Err(format!("{method} {path}: unsupported")),
        };
        let mut r = r.map_err(|e| format!("{method} {path}: {e}"))?;
        if method == "DELETE" {
            return Ok(Value::Null); // 204, no body
        }
        r.body_mut()
            .read_json::<Value>()
            .map_err(|e| format!("{method} {path}: {e}"))
    }

    fn generation(&self) -> Option<u64> {
        self.call("GET", "/v1/stats", None)
            .ok()?
            .get("dataplane")?
            .get("generation")?
            .as_u64()
    }

    /// The learned rules from the client's group to the server's.
    fn learned(&self) -> Result<Vec<Value>, String> {
        let v = self.call(
            "GET",
            "/v1/rules?learned=true&from=auto.client&to=auto.server&limit=1000",
            None,
        )?;
        v.get("items")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| format!("GET /v1/rules: no items in {v}"))
    }

    fn delete_learned(&self) -> Result<(), String> {
        for r in self.learned()? {
            let id = r
                .get("id")
                .and_then(Value::as_u64)
                .ok_or("rule without id")?;
            self.call("DELETE", &format!("/v1/rules/{id}"), None)?;
        }
        Ok(())
    }
}

/// Whether `rule` lists exactly the port `tcp/port`.
fn names_port(rule: &Value, port: u16) -> bool {
    let want = format!("tcp/{port}");
    rule.get("ports")
        .and_then(Value::as_array)
        .is_some_and(|p| p.iter().any(|x| x.as_str() == Some(want.as_str())))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn server(port: u16) -> Result<SocketAddr, String> {
    format!("{SERVER}:{port}")
        .parse()
        .map_err(|e| format!("{SERVER}:{port}: {e}"))
}

/// One exchange from the client namespace.
fn talk(ns: &Netns, to: SocketAddr, timeout: Duration) -> Result<Exchange, String> {
    ns.spawn(move || exchange(to, timeout))
        .join()
        .map_err(|_| "the client thread panicked".to_owned())?
        .map_err(|e| error_chain(&e))
}

/// A pause of 0 to 1 s, different each call (xorshift seeded from the clock; no need for a
/// better generator).
fn random_pause(state: &mut u64) -> Duration {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    Duration::from_millis(*state % 1000)
}

/// Runs the scenario: `connections` learned rules, then `changes` mode changes.
pub fn run(
    palisade: &Path,
    dp: &Path,
    tag: &str,
    changes: usize,
    connections: usize,
) -> Result<ControlReport, String> {
    let stop: &'static AtomicBool = stop_flag()?;
    stop.store(false, Ordering::Relaxed);
    let result = run_in_namespaces(palisade, dp, tag, changes, connections, stop);
    // From here on, a signal terminates as it would without this scenario.
    stop.store(true, Ordering::Relaxed);
    result
}

fn run_in_namespaces(
    palisade: &Path,
    dp: &Path,
    tag: &str,
    changes: usize,
    connections: usize,
    stop: &'static AtomicBool,
) -> Result<ControlReport, String> {
    let net = |e: NetError| error_chain(&e);
    let ns_c = Netns::new(&format!("{tag}-ctl-c")).map_err(net)?;
    let ns_s = Netns::new(&format!("{tag}-ctl-s")).map_err(net)?;
    let vc = Veth::new(&ns_c, &format!("{tag}cc"), &format!("{CLIENT}/24")).map_err(net)?;
    let vs = Veth::new(&ns_s, &format!("{tag}cs"), &format!("{SERVER}/24")).map_err(net)?;
    let ports: Vec<u16> = std::iter::once(DENIED_PORT)
        .chain((0..=connections).map(|i| FIRST_LEARN_PORT + i as u16))
        .collect();
    let addrs = ports
        .iter()
        .map(|&p| server(p))
        .collect::<Result<Vec<_>, _>>()?;
    echo_servers(&ns_s, &addrs).map_err(net)?;

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let cfg = dir.path().join("palisade.toml");
    let text = format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\n[store]\ndata_dir = \"{data}\"\n[plumb]\nenabled = false\n\
         [dataplane]\nlcores = \"0-1\"\nmemory = \"in-memory\"\nfile_prefix = \"{tag}ctl\"\nidle = \"adaptive\"\n\
         sessions = 4096\nstats_interval_s = 0\nsocket = \"{socket}\"\n\
         [[dataplane.port]]\nname = \"c\"\nkind = \"af_packet\"\niface = \"{c}\"\n\
         [[dataplane.port]]\nname = \"s\"\nkind = \"af_packet\"\niface = \"{s}\"\n\
         [[dataplane.pair]]\nports = [\"c\", \"s\"]\n",
        data = dir.path().join("data").display(),
        socket = dir.path().join("dp.sock").display(),
        c = vc.host(),
        s = vs.host(),
    );
    std::fs::write(&cfg, text).map_err(|e| format!("write {}: {e}", cfg.display()))?;
    let password = "bench-admin-password";
    let mut cmd = Command::new(palisade);
    cmd.arg("up")
        .arg("--config")
        .arg(&cfg)
        .arg("--dp")
        .arg(dp)
        .env("PALISADE_ADMIN_PASSWORD", password)
        .env("RUST_LOG", "warn");
    let mut up = Probe::spawn("palisade up", cmd, true, |_| None)?;
    let result = (|| {
        let http = login(&mut up, port, password, stop)?;
        let learn = learn(&http, &mut up, &ns_c, connections, stop)?;
        let mode_change = mode_changes(&http, &mut up, &ns_c, changes, stop)?;
        Ok(ControlReport {
            setup: format!(
                "palisade up; palisade-dp (one adaptive worker, lcores 0-1) forwarding between \
                 two af_packet ports on veths into two namespaces: client {CLIENT} (auto.client), \
                 server {SERVER} (auto.server); plumbing off"
            ),
            mode_change,
            learn,
        })
    })();
    let lines = up.stop();
    drop((vc, vs, ns_c, ns_s));
    result.map_err(|e: String| format!("{e}\npalisade up said:\n{}", lines.join("\n")))
}

/// The error and its causes, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut s = e.source();
    while let Some(c) = s {
        out.push_str(&format!(": {c}"));
        s = c.source();
    }
    out
}

fn login(up: &mut Probe, port: u16, password: &str, stop: &AtomicBool) -> Result<Http, String> {
    let base = format!("http://127.0.0.1:{port}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        up.check_alive()?;
        check(stop)?;
        let r = agent
            .post(format!("{base}/v1/auth"))
            .send_json(json!({"username": "admin", "password": password}));
        if let Ok(mut r) = r
            && let Ok(v) = r.body_mut().read_json::<Value>()
            && let Some(t) = v.get("token").and_then(Value::as_str)
        {
            break t.to_owned();
        }
        if Instant::now() > deadline {
            return Err("palisade up did not answer a login within 30 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    Ok(Http { base, token, agent })
}

/// Part 1. Declares the workloads, warms up until a first rule is learned, then measures.
fn learn(
    http: &Http,
    up: &mut Probe,
    ns_c: &Netns,
    connections: usize,
    stop: &AtomicBool,
) -> Result<LearnReport, String> {
    for (id, ip) in [("client", CLIENT), ("server", SERVER)] {
        http.call(
            "POST",
            "/v1/workloads",
            Some(json!({"id": id, "name": id, "image": id, "ips": [ip]})),
        )?;
    }
    // The workloads reach the dataplane asynchronously (and it may still be starting): connect
    // until a rule is learned.
    let warm = FIRST_LEARN_PORT;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    'warm: loop {
        up.check_alive()?;
        check(stop)?;
        if Instant::now() > deadline {
            return Err(format!(
                "no rule learned for tcp/{warm} within 60 s (last exchange: {last:?})"
            ));
        }
        let x = talk(ns_c, server(warm)?, Duration::from_secs(1))?;
        last = Some(x);
        if x == Exchange::Echoed {
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                if http.learned()?.iter().any(|r| names_port(r, warm)) {
                    break 'warm;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        } else {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    http.delete_learned()?;

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64)
        | 1;
    let mut out = Vec::with_capacity(connections);
    for i in 0..connections {
        std::thread::sleep(Duration::from_millis(200) + random_pause(&mut seed));
        let port = FIRST_LEARN_PORT + 1 + i as u16;
        let to = server(port)?;
        let t = Instant::now();
        let x = talk(ns_c, to, Duration::from_secs(2))?;
        if x != Exchange::Echoed {
            return Err(format!("connection {i} to {to} in discover mode: {x:?}"));
        }
        let took = loop {
            up.check_alive()?;
            check(stop)?;
            if http.learned()?.iter().any(|r| names_port(r, port)) {
                break ms(t.elapsed());
            }
            if t.elapsed() > LIMIT {
                return Err(format!("no rule learned for tcp/{port} within {LIMIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        eprintln!(
            "connection -> learned rule {}/{connections}: {took:.1} ms",
            i + 1
        );
        out.push(took);
        http.delete_learned()?;
    }
    Ok(LearnReport {
        connections: out.len(),
        median_ms: median(&out).unwrap_or(0.0),
        max_ms: out.iter().copied().fold(0.0, f64::max),
        ms: out,
        batch_ms: LEARN_BATCH_MS,
        goal_ms: LEARN_BATCH_MS + 100.0,
    })
}

/// The probe that showed a mode change.
struct Seen {
    /// When it ended, ms after the change was sent.
    at_ms: f64,
    /// What it saw.
    exchange: Exchange,
    /// Probes started by then.
    probes: u32,
}

/// Probes `to` from `ns` until an exchange echoes (`want_echo`) or does not: a new probe every
/// [`PROBE_GAP`], each on a thread of its own (threads inherit the namespace of the thread
/// that starts them), so that a probe cut off in mid-exchange by the change, which only its
/// timeout reveals, does not hold back the probes started after it. The first probe to end
/// with the wanted outcome is the one seen. `None` after [`LIMIT`] or when stopped.
fn probe_until(
    ns: &Netns,
    to: SocketAddr,
    want_echo: bool,
    t0: Instant,
    stop: &'static AtomicBool,
) -> std::thread::JoinHandle<Result<Option<Seen>, NetError>> {
    ns.spawn(move || {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut probes = 0;
        loop {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let x = exchange(to, PROBE_TIMEOUT);
                let _ = tx.send((ms(t0.elapsed()), x));
            });
            probes += 1;
            let next = Instant::now() + PROBE_GAP;
            while let Ok((at_ms, x)) =
                rx.recv_timeout(next.saturating_duration_since(Instant::now()))
            {
                if (x == Exchange::Echoed) == want_echo {
                    return Some(Seen {
                        at_ms,
                        exchange: x,
                        probes,
                    });
                }
            }
            if t0.elapsed() > LIMIT || stop.load(Ordering::Relaxed) {
                return None;
            }
        }
    })
}

/// Part 2.
fn mode_changes(
    http: &Http,
    up: &mut Probe,
    ns_c: &Netns,
    changes: usize,
    stop: &'static AtomicBool,
) -> Result<ModeChangeReport, String> {
    for g in ["auto.client", "auto.server"] {
        http.call(
            "PATCH",
            &format!("/v1/groups/{g}"),
            Some(json!({"network_mode": "monitor"})),
        )?;
    }
    let denied = server(DENIED_PORT)?;
    // In monitor, the denied flow passes (with an alert).
    let t = Instant::now();
    let passes = probe_until(ns_c, denied, true, t, stop)
        .join()
        .map_err(|_| "the probe thread panicked")?
        .map_err(|e| error_chain(&e))?;
    if passes.is_none() {
        return Err(format!("{denied} does not pass in monitor mode"));
    }
    let mut out = Vec::with_capacity(changes);
    for i in 0..changes {
        up.check_alive()?;
        check(stop)?;
        // Let any earlier push settle so the generation read is the running one.
        std::thread::sleep(Duration::from_millis(200));
        let before = http.generation().ok_or("no dataplane stats")?;
        let to = if i % 2 == 0 { "protect" } else { "monitor" };
        let t0 = Instant::now();
        let probes = probe_until(ns_c, denied, to == "monitor", t0, stop);
        http.call(
            "PATCH",
            "/v1/groups/auto.server",
            Some(json!({"network_mode": to})),
        )?;
        let generation_ms = loop {
            if http.generation().is_some_and(|g| g > before) {
                break ms(t0.elapsed());
            }
            if t0.elapsed() > LIMIT {
                return Err(format!(
                    "mode change {i} did not reach the dataplane in {LIMIT:?}"
                ));
            }
            check(stop)?;
            std::thread::sleep(Duration::from_millis(1));
        };
        let seen = probes
            .join()
            .map_err(|_| "the probe thread panicked")?
            .map_err(|e| error_chain(&e))?;
        let Some(Seen {
            at_ms: enforced_ms,
            exchange: seen_as,
            probes,
        }) = seen
        else {
            check(stop)?;
            return Err(format!(
                "mode change {i} to {to}: the traffic on {denied} did not change within {LIMIT:?}"
            ));
        };
        eprintln!(
            "mode change {}/{changes} to {to}: generation {generation_ms:.1} ms, enforced {enforced_ms:.1} ms ({seen_as:?}, probe {probes})",
            i + 1
        );
        out.push(ModeChange {
            to: to.into(),
            generation_ms,
            enforced_ms,
            seen_as,
            probes,
        });
    }
    let generation: Vec<f64> = out.iter().map(|c| c.generation_ms).collect();
    let enforced: Vec<f64> = out.iter().map(|c| c.enforced_ms).collect();
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    Ok(ModeChangeReport {
        generation_median_ms: median(&generation).unwrap_or(0.0),
        generation_max_ms: max(&generation),
        enforced_median_ms: median(&enforced).unwrap_or(0.0),
        enforced_max_ms: max(&enforced),
        changes: out,
        goal_ms: 100.0,
    })
}
