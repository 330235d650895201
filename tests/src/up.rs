//! `palisade up` as a child process and a minimal client for its REST API (HTTP/1.0, one
//! request per connection), shared by the end-to-end tests that drive the whole appliance.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::bin;

/// The admin password every `palisade up` of the tests is started with.
pub const PASSWORD: &str = "e2e-Secret-pw-1";

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.0 client: one request per connection, the body read to the end (HTTP/1.0
// answers are never chunked, and a streamed body is plain text until the server closes).

/// Status and JSON body (`Null` when empty, a string when not JSON).
pub fn http(
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
#[derive(Debug)]
pub struct Api {
    /// The API address.
    pub addr: SocketAddr,
    /// The bearer token.
    pub token: String,
}

impl Api {
    pub fn login(addr: SocketAddr, password: &str) -> Self {
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

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (st, v) = http(self.addr, method, path, Some(&self.token), body);
        assert!((200..300).contains(&st), "{method} {path}: {st} {v}");
        v
    }

    pub fn items(&self, path: &str) -> Vec<Value> {
        self.call("GET", path, None)["items"]
            .as_array()
            .expect("items")
            .clone()
    }

    /// The newest event id (0 when there is none).
    pub fn last_event_id(&self) -> i64 {
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
    pub fn wait_dataplane_up(&self, after: i64, timeout: Duration) {
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
pub fn sse(addr: SocketAddr, token: &str) -> mpsc::Receiver<(String, Value)> {
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
#[derive(Debug)]
pub struct Up {
    child: Option<Child>,
    log: PathBuf,
    addr: SocketAddr,
}

impl Up {
    pub fn start(dir: &Path, addr: SocketAddr, run: usize) -> Self {
        Self::start_with(dir, addr, run, &bin("palisade-dp"))
    }

    /// [`Up::start`] with another `palisade-dp` executable (a wrapper).
    pub fn start_with(dir: &Path, addr: SocketAddr, run: usize, dp: &Path) -> Self {
        Self::spawn(dir, addr, run, &["--dp".as_ref(), dp.as_os_str()])
    }

    /// `palisade up --no-dataplane` (the API and the engines, nothing enforced on the network).
    pub fn start_no_dataplane(dir: &Path, addr: SocketAddr) -> Self {
        Self::spawn(dir, addr, 1, &["--no-dataplane".as_ref()])
    }

    fn spawn(dir: &Path, addr: SocketAddr, run: usize, up_args: &[&std::ffi::OsStr]) -> Self {
        let log = dir.join(format!("up-{run}.log"));
        let child = Command::new(bin("palisade"))
            .arg("--config")
            .arg(dir.join("palisade.toml"))
            .arg("up")
            .args(up_args)
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

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.as_ref().expect("running").id()).unwrap())
    }

    pub fn wait_healthy(&mut self, timeout: Duration) {
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
    pub fn children(&self) -> Vec<Pid> {
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

    /// Waits for a child killed by the test (so that its pid is not reaped by nobody).
    pub fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; panics when it takes longer than `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
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

pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
