//! `palisade up` end to end (needs root, network namespaces, hugepages, DPDK): the real control
//! process on its own config and data directory supervises a real palisade-dp whose two
//! af_packet ports join two namespaces, and the test drives it through the REST API only.
//!
//! discover: declared workloads, one connection, exactly one learned rule; protect: the
//! learned port works, another is refused and reported (events list and SSE stream); restart
//! on the same data directory: login, groups, rules and workloads are kept and the policy is
//! enforced again once the new dataplane runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use palisade_tests::{Netns, Veth, bin, echo_servers, talk, unique};
use serde_json::{Value, json};

const CLIENT: &str = "198.18.0.1";
const SERVER: &str = "198.18.0.2";
const PASSWORD: &str = "e2e-Secret-pw-1";

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.0 client: one request per connection, the body read to the end (HTTP/1.0
// answers are never chunked, and a streamed body is plain text until the server closes).

/// Status and JSON body (`Null` when empty, a string when not JSON).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut req =
        format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let v = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
    };
    (status, v)
}

/// An API session.
struct Api {
    addr: SocketAddr,
    token: String,
}

impl Api {
    fn login(addr: SocketAddr, password: &str) -> Self {
        let (st, v) = http(
            addr,
            "POST",
            "/v1/auth",
            None,
            Some(&json!({"username": "admin", "password": password})),
        );
        assert_eq!(st, 200, "login: {v}");
        Self {
            addr,
            token: v["token"].as_str().expect("token").to_owned(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (st, v) = http(self.addr, method, path, Some(&self.token), body);
        assert!((200..300).contains(&st), "{method} {path}: {st} {v}");
        v
    }

    fn items(&self, path: &str) -> Vec<Value> {
        self.call("GET", path, None)["items"]
            .as_array()
            .expect("items")
            .clone()
    }

    /// The newest event id (0 when there is none).
    fn last_event_id(&self) -> i64 {
        let mut after = 0;
        loop {
            let v = self.call("GET", &format!("/v1/events?limit=1000&after={after}"), None);
            if let Some(id) = v["items"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(|e| e["id"].as_i64())
            {
                after = id;
            }
            if v["next"].is_null() {
                return after;
            }
        }
    }

    /// Waits for the system event saying the dataplane came up after event `after`.
    fn wait_dataplane_up(&self, after: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let evs = self.items(&format!("/v1/events?kind=system&after={after}&limit=1000"));
            if evs.iter().any(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("dataplane up"))
            }) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("no `dataplane up` event in {timeout:?}");
    }
}

/// `GET /v1/events/stream` on a thread: every `(event, data)` pair goes to the channel.
fn sse(addr: SocketAddr, token: &str) -> mpsc::Receiver<(String, Value)> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let token = token.to_owned();
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /v1/events/stream HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        // Status line and headers.
        r.read_line(&mut line).unwrap();
        assert!(line.contains(" 200 "), "event stream: {line}");
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
        }
        let _ = ready_tx.send(());
        let mut event = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if let Some(e) = l.strip_prefix("event:") {
                event = e.trim().to_owned();
            } else if let Some(d) = l.strip_prefix("data:") {
                let v = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                if tx.send((std::mem::take(&mut event), v)).is_err() {
                    return;
                }
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("event stream never opened");
    rx
}

// ---------------------------------------------------------------------------------------
// `palisade up` as a child process.

/// A running `palisade up`. Dropped while it runs: SIGTERM, then SIGKILL for it and the
/// dataplane it started (found as its child processes), all by pid.
struct Up {
    child: Option<Child>,
    log: PathBuf,
    addr: SocketAddr,
}

impl Up {
    fn start(dir: &Path, addr: SocketAddr, run: usize) -> Self {
        let log = dir.join(format!("up-{run}.log"));
        let child = Command::new(bin("palisade"))
            .arg("--config")
            .arg(dir.join("palisade.toml"))
            .arg("up")
            .arg("--dp")
            .arg(bin("palisade-dp"))
            .env("PALISADE_ADMIN_PASSWORD", PASSWORD)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(File::create(dir.join(format!("up-{run}.out"))).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn palisade up");
        let mut up = Self {
            child: Some(child),
            log,
            addr,
        };
        up.wait_healthy(Duration::from_secs(30));
        up
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.as_ref().expect("running").id()).unwrap())
    }

    fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
                && http(self.addr, "GET", "/healthz", None, None).0 == 200
            {
                return;
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("palisade up exited early ({st}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "palisade up not serving in {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Child processes (the dataplane), from /proc.
    fn children(&self) -> Vec<Pid> {
        let Some(c) = &self.child else { return vec![] };
        let mut out = Vec::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", c.id())) {
            for t in tasks.flatten() {
                if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                    out.extend(
                        s.split_whitespace()
                            .filter_map(|p| p.parse().ok())
                            .map(Pid::from_raw),
                    );
                }
            }
        }
        out
    }

    /// SIGTERM and wait; panics when it takes longer than `timeout`.
    fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid();
        kill(pid, Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "palisade up ignored SIGTERM for {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let kids = self.children();
        if let Some(c) = &mut self.child {
            let pid = Pid::from_raw(i32::try_from(c.id()).unwrap_or(0));
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && c.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            for k in kids {
                let _ = kill(k, Signal::SIGKILL);
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- palisade up log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------
// Traffic.

/// Repeats `talk` until it gives `want` (the policy reaches the dataplane asynchronously).
fn talk_until(ns: &Netns, port: u16, want: Result<(), ErrorKind>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let r = talk(ns, SERVER, port);
        if r == want {
            return;
        }
        got.push(r);
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("port {port}: wanted {want:?} within {timeout:?}, got {got:?}");
}

/// The rules without their ids, sorted, for comparisons.
fn learned_rules(api: &Api) -> Vec<Value> {
    api.items("/v1/rules?limit=1000")
}

#[test]
fn netns_palisade_up_learns_protects_and_keeps_everything_across_a_restart() {
    let ns_c = Netns::new("ctl-c");
    let ns_s = Netns::new("ctl-s");
    let vc = Veth::new(&ns_c, "pcc", &format!("{CLIENT}/24"));
    let vs = Veth::new(&ns_s, "pcs", &format!("{SERVER}/24"));
    let dir = tempfile::Builder::new()
        .prefix("palisade-up-")
        .tempdir()
        .unwrap();
    let addr = free_port();
    std::fs::write(
        dir.path().join("palisade.toml"),
        format!(
            "[api]\nlisten = \"{addr}\"\n\
             [store]\ndata_dir = \"{data}\"\n\
             [dataplane]\nlcores = \"0-1\"\nmemory = \"in-memory\"\nidle = \"adaptive\"\nfile_prefix = \"{prefix}\"\n\
             sessions = 4096\nstats_interval_s = 0\nsocket = \"{socket}\"\n\
             [[dataplane.port]]\nname = \"c\"\nkind = \"af_packet\"\niface = \"{c}\"\n\
             [[dataplane.port]]\nname = \"s\"\nkind = \"af_packet\"\niface = \"{s}\"\n\
             [[dataplane.pair]]\nports = [\"c\", \"s\"]\n",
            data = dir.path().join("data").display(),
            prefix = unique("ctl"),
            socket = dir.path().join("dp.sock").display(),
            c = vc.host(),
            s = vs.host(),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    echo_servers(&ns_s, SERVER, &[5001, 5002]);

    // ---- discover ------------------------------------------------------------------------
    let started = Instant::now();
    let mut up = Up::start(dir.path(), addr, 1);
    let api = Api::login(addr, PASSWORD);
    api.wait_dataplane_up(0, Duration::from_secs(60));
    eprintln!("palisade up with its dataplane in {:?}", started.elapsed());
    for (id, ip) in [("client", CLIENT), ("server", SERVER)] {
        let w = api.call(
            "POST",
            "/v1/workloads",
            Some(&json!({"id": id, "name": id, "image": id, "ips": [ip]})),
        );
        assert_eq!(w["group"], format!("auto.{id}"));
    }
    for g in ["auto.client", "auto.server"] {
        let v = api.call("GET", &format!("/v1/groups/{g}"), None);
        assert_eq!(v["network_mode"], "discover", "{v}");
    }
    assert_eq!(learned_rules(&api), Vec::<Value>::new());

    // The workloads reach the dataplane asynchronously: connect until a rule is learned.
    let deadline = Instant::now() + Duration::from_secs(20);
    let rules = loop {
        assert_eq!(talk(&ns_c, SERVER, 5001), Ok(()));
        let until = Instant::now() + Duration::from_secs(3);
        let mut rules = learned_rules(&api);
        while rules.is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200));
            rules = learned_rules(&api);
        }
        if !rules.is_empty() {
            break rules;
        }
        assert!(Instant::now() < deadline, "nothing learned in 20 s");
    };
    // Later records of the same conversation learn nothing more.
    std::thread::sleep(Duration::from_millis(2500));
    let rules_now = learned_rules(&api);
    assert_eq!(rules_now, rules);
    assert_eq!(rules.len(), 1, "{rules:#?}");
    let r = &rules[0];
    assert!(r["id"].as_u64().unwrap() >= 10_000, "{r}");
    assert_eq!(
        (
            &r["from"],
            &r["to"],
            &r["ports"],
            &r["action"],
            &r["learned"],
            &r["disabled"],
            &r["priority"]
        ),
        (
            &json!("auto.client"),
            &json!("auto.server"),
            &json!(["tcp/5001"]),
            &json!("allow"),
            &json!(true),
            &json!(false),
            &json!(0)
        ),
        "{r}"
    );
    assert!(
        r["apps"].as_array().is_none_or(Vec::is_empty),
        "an unidentified echo names no application: {r}"
    );

    // ---- protect -------------------------------------------------------------------------
    let stream = sse(addr, &api.token);
    for g in ["auto.server", "auto.client"] {
        let v = api.call(
            "PATCH",
            &format!("/v1/groups/{g}"),
            Some(&json!({"network_mode": "protect"})),
        );
        assert_eq!(v["network_mode"], "protect", "{v}");
    }
    talk_until(
        &ns_c,
        5002,
        Err(ErrorKind::ConnectionRefused),
        Duration::from_secs(20),
    );
    assert_eq!(
        talk(&ns_c, SERVER, 5001),
        Ok(()),
        "the learned rule allows 5001"
    );
    let is_5002 = |e: &Value| {
        e["details"]["server"]["addr"]
            .as_str()
            .or_else(|| e["message"].as_str())
            .is_some_and(|s| s.contains(":5002"))
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let evs = api.items("/v1/events?kind=network_violation&limit=1000");
        if let Some(e) = evs.iter().find(|e| is_5002(e)) {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "no violation listed: {evs:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(listed["kind"], "network_violation");
    assert_eq!(listed["details"]["verdict"], "denied", "{listed}");
    assert_eq!(listed["details"]["mode"], "protect", "{listed}");
    assert!(
        listed["message"]
            .as_str()
            .unwrap()
            .contains("[auto.client] -> 198.18.0.2:5002 [auto.server]"),
        "{listed}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut streamed = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (kind, data) = stream
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no violation on the stream; got {streamed:#?}"));
        if kind == "network_violation" && is_5002(&data) {
            assert_eq!(data["details"]["verdict"], "denied");
            break;
        }
        streamed.push((kind, data));
    }
    assert!(
        api.items("/v1/events?kind=network_violation&limit=1000")
            .iter()
            .all(|e| !e["message"].as_str().unwrap_or("").contains(":5001 ")),
        "the allowed port is no violation"
    );
    assert_eq!(learned_rules(&api), rules, "protect learns nothing");
    let workloads = api.items("/v1/workloads");
    let groups = api.items("/v1/groups?limit=1000");

    // ---- restart on the same data directory ----------------------------------------------
    let before = api.last_event_id();
    let st = up.terminate(Duration::from_secs(30));
    assert!(st.success(), "palisade up exit {st}:\n{}", up.log_text());
    assert!(
        up.log_text().contains("palisade-dp"),
        "the log names the dataplane it supervised"
    );
    drop(stream);
    let started = Instant::now();
    let up2 = Up::start(dir.path(), addr, 2);
    let api = Api::login(addr, PASSWORD);
    api.wait_dataplane_up(before, Duration::from_secs(60));
    eprintln!("restarted with its dataplane in {:?}", started.elapsed());
    let groups2 = api.items("/v1/groups?limit=1000");
    for g in ["auto.client", "auto.server"] {
        let v = api.call("GET", &format!("/v1/groups/{g}"), None);
        assert_eq!(v["network_mode"], "protect", "{v}");
    }
    assert_eq!(groups2, groups);
    assert_eq!(learned_rules(&api), rules);
    assert_eq!(api.items("/v1/workloads"), workloads);
    talk_until(
        &ns_c,
        5002,
        Err(ErrorKind::ConnectionRefused),
        Duration::from_secs(30),
    );
    assert_eq!(
        talk(&ns_c, SERVER, 5001),
        Ok(()),
        "the learned rule still allows 5001"
    );
    assert_eq!(talk(&ns_c, SERVER, 5002), Err(ErrorKind::ConnectionRefused));

    drop(up2);
    drop((vc, vs, ns_c, ns_s));
}
