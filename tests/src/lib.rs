//! Harness for Palisade's end-to-end tests: network namespaces, veth pairs, the real
//! `palisade-dp` and `palisade` binaries, and clients and servers running inside namespaces.
//!
//! Everything a test creates has a name unique to its process and is removed on drop, also
//! when the test fails; processes are stopped by pid, never by name. Test traffic stays in
//! 198.18.0.0/15 inside namespaces the test created.
#![allow(
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stderr
)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

pub mod podman;

/// Polls `f` every 200 ms until it returns `Some`, or panics naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
pub mod up;

/// A name unique to this process and call, at most `prefix.len() + 9` characters (interface
/// names may not exceed 15).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}{n:x}", std::process::id() & 0xff_ffff)
}

/// Runs a command and returns its output; panics with the command line and stderr when it
/// fails to start or exits non-zero.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command, ignoring failure (cleanup paths).
fn sh_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Names of every interface in the root namespace.
pub fn links() -> Vec<String> {
    let out = sh(&["ip", "-o", "link", "show"]);
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        .collect();
    v.sort();
    v
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with a unique name and its loopback up.
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        sh(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        Command::new(full[0])
            .args(&full[1..])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {full:?}: {e}"))
    }

    /// Runs `f` on a thread that has entered this namespace, and returns its result.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // setns changes only the calling thread's namespace.
            setns(&fd, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        sh_quiet(&["ip", "netns", "del", &self.name]);
    }
}

/// A veth pair: `host` in the root namespace (up, no addresses, IPv6 off) and `eth0` inside
/// `ns` with `addr`. Checksum and segmentation offloads are off on both ends, because an
/// AF_PACKET port sees frames exactly as the kernel left them (a partial checksum would reach
/// the far side unfinished). The host end is deleted on drop, which removes both ends.
#[derive(Debug)]
pub struct Veth {
    host: String,
}

impl Veth {
    /// Creates the pair and configures both ends.
    pub fn new(ns: &Netns, prefix: &str, addr: &str) -> Self {
        let host = unique(prefix);
        sh(&[
            "ip",
            "link",
            "add",
            &host,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ]);
        let v = Self { host };
        sh(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{}.disable_ipv6=1", v.host),
        ]);
        sh(&[
            "ethtool", "-K", &v.host, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
        ]);
        sh(&["ip", "link", "set", &v.host, "up"]);
        let n = ns.name();
        sh(&[
            "ip", "netns", "exec", n, "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso",
            "off", "gro", "off",
        ]);
        sh(&["ip", "-n", n, "addr", "add", addr, "dev", "eth0"]);
        sh(&["ip", "-n", n, "link", "set", "eth0", "up"]);
        v
    }

    /// Host-side interface name.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        sh_quiet(&["ip", "link", "del", &self.host]);
    }
}

/// Path of a workspace binary, next to the test executable's `deps` directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        p.display()
    );
    p
}

/// A running `palisade-dp` with its own config and log. On drop, if it still runs, it is
/// killed and the DPDK runtime directory of its file prefix is removed (a killed process
/// cannot clean up; hugepage files need nothing, they are unlinked once mapped).
#[derive(Debug)]
pub struct DpProcess {
    child: Option<Child>,
    file_prefix: Option<String>,
    /// Directory holding the config and the log.
    pub dir: tempfile::TempDir,
    /// stderr of the process.
    pub log: PathBuf,
}

impl DpProcess {
    /// Writes `config` and starts `palisade-dp --config` on it.
    pub fn spawn(config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("palisade-dp-")
            .tempdir()
            .expect("tempdir");
        let cfg = dir.path().join("palisade.toml");
        std::fs::write(&cfg, config).expect("write config");
        let log = dir.path().join("dp.log");
        let err = File::create(&log).expect("create log");
        let child = Command::new(bin("palisade-dp"))
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn palisade-dp");
        let file_prefix = config.lines().find_map(|l| {
            let v = l
                .trim()
                .strip_prefix("file_prefix")?
                .trim()
                .strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_owned())
        });
        Self {
            child: Some(child),
            file_prefix,
            dir,
            log,
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log says the dataplane runs; panics with the log if it exits first.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_text().contains("dataplane running") {
                return;
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("palisade-dp exited early ({st}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "palisade-dp not ready in {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        kill(pid, Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "palisade-dp ignored SIGTERM for {timeout:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for DpProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            if let Some(p) = self
                .file_prefix
                .as_deref()
                .filter(|p| !p.is_empty() && !p.contains('/'))
            {
                let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{p}"));
            }
        }
        if std::thread::panicking() {
            eprintln!("--- palisade-dp log ---\n{}", self.log_text());
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a transfer's content is known on both ends.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Sends `len` pattern bytes over TCP from namespace `client` to a listener at `server_addr`
/// in namespace `server`. Returns (bytes sent, sha256 sent, bytes received, sha256 received).
pub fn tcp_transfer(
    client: &Netns,
    server: &Netns,
    server_addr: SocketAddr,
    len: usize,
) -> (usize, String, usize, String) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let srv = server.run(move || {
        let l =
            TcpListener::bind(server_addr).unwrap_or_else(|e| panic!("bind {server_addr}: {e}"));
        ready_tx.send(()).expect("ready");
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut h = Sha256::new();
        let mut n = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    h.update(&buf[..k]);
                    n += k;
                }
                Err(e) => panic!("server read after {n} bytes: {e}"),
            }
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        (n, hex)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server never listened");
    let cli = client.run(move || {
        let data = pattern(len, 0x5eed);
        let mut s =
            TcpStream::connect_timeout(&server_addr, Duration::from_secs(10)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        s.write_all(&data).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        (data.len(), sha256_hex(&data))
    });
    let (sent, sent_hash) = cli.join().expect("client thread");
    let (got, got_hash) = srv.join().expect("server thread");
    (sent, sent_hash, got, got_hash)
}

/// Line echo servers on `ports` of `addr` inside `ns`, for the rest of the test process;
/// returns once every one is listening.
pub fn echo_servers(ns: &Netns, addr: &'static str, ports: &[u16]) {
    for &port in ports {
        let (tx, rx) = std::sync::mpsc::channel();
        ns.run(move || {
            let l = TcpListener::bind((addr, port)).unwrap_or_else(|e| panic!("bind {port}: {e}"));
            let _ = tx.send(());
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("echo server on {port}: {e}"));
    }
}

/// Connects from `ns` to `addr:port` and exchanges a line with an echo server; the error kind
/// when it fails.
pub fn talk(ns: &Netns, addr: &'static str, port: u16) -> Result<(), std::io::ErrorKind> {
    ns.run(move || {
        let to: SocketAddr = format!("{addr}:{port}")
            .parse()
            .unwrap_or_else(|e| panic!("{addr}:{port}: {e}"));
        let mut s =
            TcpStream::connect_timeout(&to, Duration::from_secs(3)).map_err(|e| e.kind())?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.kind())?;
        s.write_all(b"ping\n").map_err(|e| e.kind())?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).map_err(|e| e.kind())?;
        assert_eq!(&buf, b"ping\n");
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| panic!("the client thread panicked"))
}

/// A tmpfs mounted on a fresh temporary directory (for the fanotify tests: a filesystem of
/// their own to mark); lazily unmounted on drop, the directory removed after.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a 16 MiB tmpfs; `name` names the directory and the mount's source.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .expect("temporary directory");
        let target = dir.path().to_str().expect("UTF-8 temporary path");
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=16m,mode=0755",
            name,
            target,
        ]);
        Self { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .stderr(Stdio::null())
            .status();
    }
}
