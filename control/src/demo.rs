//! `palisade up --demo`: a small topology on this host for trying Palisade out.
//!
//! Three network namespaces stand in for containers, joined only through `palisade-dp`:
//!
//! ```text
//!  pal-demo-client            pal-demo-web                    pal-demo-db
//!  eth0 198.18.1.1 --pair-- eth0 198.18.1.2   eth1 198.18.2.2 --pair-- eth0 198.18.2.3
//!   (host: pal-demo-c0)      (pal-demo-w0)     (pal-demo-w1)           (pal-demo-d0)
//! ```
//!
//! The host ends of the veths are the dataplane's af_packet ports, two pairs, written to a
//! generated dataplane configuration in the data directory (`dataplane-demo.toml`: the
//! `[dataplane]` section of the configuration in use, with the demo's ports and pairs instead
//! of its own). `web` serves HTTP on 8080 and `db` a line echo on 5432, both from threads of
//! this process that entered the namespaces; the client fetches a page every 2 s and the web
//! server talks to the database every 5 s, so learning has something to show. The workloads
//! are declared in the store (`source: config`) with their auto groups `auto.client`,
//! `auto.web` and `auto.db`.
//!
//! Everything is created under these exact names; leftovers of a demo that did not stop
//! cleanly are removed before it starts, and [`Demo::teardown`] (also on drop) removes it all.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::model::{Workload, WorkloadSource};

/// The demo's "containers": namespace, workload id and image, addresses.
pub const CONTAINERS: [(&str, &str, &[&str]); 3] = [
    ("pal-demo-client", "client", &["198.18.1.1"]),
    ("pal-demo-web", "web", &["198.18.1.2", "198.18.2.2"]),
    ("pal-demo-db", "db", &["198.18.2.3"]),
];

/// One veth: host end (a dataplane port), namespace, interface inside, address.
struct Link {
    host: &'static str,
    ns: &'static str,
    inner: &'static str,
    addr: &'static str,
}

const LINKS: [Link; 4] = [
    Link {
        host: "pal-demo-c0",
        ns: "pal-demo-client",
        inner: "eth0",
        addr: "198.18.1.1/24",
    },
    Link {
        host: "pal-demo-w0",
        ns: "pal-demo-web",
        inner: "eth0",
        addr: "198.18.1.2/24",
    },
    Link {
        host: "pal-demo-w1",
        ns: "pal-demo-web",
        inner: "eth1",
        addr: "198.18.2.2/24",
    },
    Link {
        host: "pal-demo-d0",
        ns: "pal-demo-db",
        inner: "eth0",
        addr: "198.18.2.3/24",
    },
];

/// Dataplane port pairs, by host interface.
const PAIRS: [(&str, &str); 2] = [
    ("pal-demo-c0", "pal-demo-w0"),
    ("pal-demo-w1", "pal-demo-d0"),
];

const WEB: &str = "198.18.1.2:8080";
const DB: &str = "198.18.2.3:5432";

/// Why the demo could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A command failed.
    #[error("{command}: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr or why it did not start.
        reason: String,
    },
    /// The generated dataplane configuration.
    #[error("dataplane configuration {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The running demo topology; removed by [`Demo::teardown`] or on drop.
#[derive(Debug)]
pub struct Demo {
    config_path: PathBuf,
    stop: Arc<AtomicBool>,
    torn_down: bool,
}

fn run(args: &[&str]) -> Result<(), DemoError> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| DemoError::Command {
            command: args.join(" "),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DemoError::Command {
            command: args.join(" "),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Removes every link and namespace of the demo that exists (by their exact names).
fn remove_all() {
    for l in &LINKS {
        if Path::new("/sys/class/net").join(l.host).exists() {
            run_quiet(&["ip", "link", "del", l.host]);
        }
    }
    for (ns, _, _) in &CONTAINERS {
        if Path::new("/var/run/netns").join(ns).exists() {
            run_quiet(&["ip", "netns", "del", ns]);
        }
    }
}

/// The generated dataplane configuration: `[dataplane]` of `base` (a configuration file, or
/// the embedded defaults) with the demo's ports and pairs.
fn dataplane_config(base: Option<&Path>, out: &Path) -> Result<(), DemoError> {
    let err = |path: &Path, reason: String| DemoError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let mut dp = match base {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| err(p, e.to_string()))?;
            let mut doc: toml::Table = text.parse().map_err(|e| err(p, format!("{e}")))?;
            match doc.remove("dataplane") {
                Some(toml::Value::Table(t)) => t,
                _ => toml::Table::new(),
            }
        }
        None => toml::Table::new(),
    };
    let port = |name: &str| {
        let mut t = toml::Table::new();
        t.insert("name".into(), name.into());
        t.insert("kind".into(), "af_packet".into());
        t.insert("iface".into(), name.into());
        toml::Value::Table(t)
    };
    dp.insert(
        "port".into(),
        toml::Value::Array(LINKS.iter().map(|l| port(l.host)).collect()),
    );
    let pairs = PAIRS
        .iter()
        .map(|(a, b)| {
            let mut t = toml::Table::new();
            t.insert(
                "ports".into(),
                toml::Value::Array(vec![(*a).into(), (*b).into()]),
            );
            toml::Value::Table(t)
        })
        .collect();
    dp.insert("pair".into(), toml::Value::Array(pairs));
    let mut doc = toml::Table::new();
    doc.insert("dataplane".into(), toml::Value::Table(dp));
    let text = format!(
        "# written by `palisade up --demo`: the demo topology's ports (rewritten at every start)\n{}",
        toml::to_string(&doc).map_err(|e| err(out, e.to_string()))?
    );
    std::fs::write(out, text).map_err(|e| err(out, e.to_string()))
}

impl Demo {
    /// Cleans leftovers, creates the namespaces and veths, writes the dataplane configuration
    /// into `data_dir` and starts the servers and the background traffic.
    pub fn start(data_dir: &Path, base_config: Option<&Path>) -> Result<Self, DemoError> {
        remove_all();
        let demo = Self {
            config_path: data_dir.join("dataplane-demo.toml"),
            stop: Arc::new(AtomicBool::new(false)),
            torn_down: false,
        };
        // From here on, a failure removes what was made (drop).
        for (ns, _, _) in &CONTAINERS {
            run(&["ip", "netns", "add", ns])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        for l in &LINKS {
            run(&[
                "ip", "link", "add", l.host, "type", "veth", "peer", "name", l.inner, "netns", l.ns,
            ])?;
            run(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", l.host),
            ])?;
            // AF_PACKET sees frames as the kernel left them: no partial checksums, no
            // super-frames.
            run(&[
                "ethtool", "-K", l.host, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
            ])?;
            run(&[
                "ip", "netns", "exec", l.ns, "ethtool", "-K", l.inner, "tx", "off", "tso", "off",
                "gso", "off", "gro", "off",
            ])?;
            run(&["ip", "link", "set", l.host, "up"])?;
            run(&["ip", "-n", l.ns, "addr", "add", l.addr, "dev", l.inner])?;
            run(&["ip", "-n", l.ns, "link", "set", l.inner, "up"])?;
        }
        dataplane_config(base_config, &demo.config_path)?;
        demo.spawn_traffic();
        Ok(demo)
    }

    /// The generated dataplane configuration.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The demo's workloads, to declare in the store.
    pub fn workloads() -> Vec<Workload> {
        CONTAINERS
            .iter()
            .map(|(ns, image, ips)| Workload {
                id: (*ns).to_owned(),
                name: (*image).to_owned(),
                image: (*image).to_owned(),
                labels: Default::default(),
                group: crate::model::auto_group(image, &Default::default()),
                ips: ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
                macs: vec![],
                netns: Some(format!("/var/run/netns/{ns}")),
                veth: LINKS
                    .iter()
                    .find(|l| l.ns == *ns)
                    .map(|l| l.host.to_owned()),
                mode: Default::default(),
                plumbing: Default::default(),
                exempt: false,
                source: WorkloadSource::Config,
            })
            .collect()
    }

    /// Lines describing the topology for the operator.
    pub fn describe() -> Vec<String> {
        let mut v: Vec<String> = CONTAINERS
            .iter()
            .map(|(ns, image, ips)| {
                format!("namespace {ns} ({}), group auto.{image}", ips.join(", "))
            })
            .collect();
        v.push(format!(
            "traffic: client -> http://{WEB}/ every 2 s, web -> db {DB} every 5 s"
        ));
        v.push(format!(
            "try: ip netns exec pal-demo-client curl -s http://{WEB}/"
        ));
        v
    }

    fn spawn_traffic(&self) {
        let web: SocketAddr = WEB
            .parse()
            .unwrap_or_else(|_| ([198, 18, 1, 2], 8080).into());
        let db: SocketAddr = DB
            .parse()
            .unwrap_or_else(|_| ([198, 18, 2, 3], 5432).into());
        in_netns("pal-demo-web", Arc::clone(&self.stop), move |stop| {
            serve(web, &stop, http_reply)
        });
        in_netns("pal-demo-db", Arc::clone(&self.stop), move |stop| {
            serve(db, &stop, echo_line)
        });
        in_netns("pal-demo-client", Arc::clone(&self.stop), move |stop| {
            every(&stop, Duration::from_secs(2), || {
                talk(web, b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
            })
        });
        in_netns("pal-demo-web", Arc::clone(&self.stop), move |stop| {
            every(&stop, Duration::from_secs(5), || talk(db, b"SELECT 1;\n"))
        });
    }

    /// Stops the traffic and removes the namespaces and veths (after the dataplane stopped).
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        self.stop.store(true, Ordering::Relaxed);
        remove_all();
        tracing::info!("demo topology removed");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Runs `f` on a thread that entered namespace `ns`.
fn in_netns(
    ns: &'static str,
    stop: Arc<AtomicBool>,
    f: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name(format!("demo-{ns}"))
        .spawn(move || {
            let path = format!("/var/run/netns/{ns}");
            let entered = std::fs::File::open(&path)
                .map_err(|e| e.to_string())
                .and_then(|fd| {
                    nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| e.to_string())
                });
            match entered {
                Ok(()) => f(stop),
                Err(e) => tracing::warn!(namespace = ns, error = %e, "demo: cannot enter"),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "demo: cannot start a thread");
    }
}

/// Accepts connections on `addr` until `stop`, answering each with `reply` on its own thread.
fn serve(addr: SocketAddr, stop: &AtomicBool, reply: fn(TcpStream)) {
    let l = match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "demo: cannot listen");
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, _)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                std::thread::spawn(move || reply(s));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn http_reply(s: TcpStream) {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    // Request line and headers.
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let body = "hello from pal-demo-web, through palisade-dp\n";
    let mut s = r.into_inner();
    let _ = write!(
        s,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn echo_line(s: TcpStream) {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).is_ok() {
        let mut s = r.into_inner();
        let _ = s.write_all(line.as_bytes());
    }
}

/// One short exchange; failures are expected while the dataplane starts or when a group in
/// protect mode refuses it.
fn talk(addr: SocketAddr, req: &[u8]) {
    if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(req).is_ok() {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
        }
    }
}

/// Calls `f` every `period` until `stop`.
fn every(stop: &AtomicBool, period: Duration, mut f: impl FnMut()) {
    while !stop.load(Ordering::Relaxed) {
        f();
        let mut slept = Duration::ZERO;
        while slept < period && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            slept += Duration::from_millis(100);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_dataplane_config_keeps_the_base_section_and_has_the_demo_ports() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("palisade.toml");
        std::fs::write(
            &base,
            "[api]\nlisten = \"127.0.0.1:1\"\n[dataplane]\nfile_prefix = \"demo-x\"\nsessions = 4096\n\
             [[dataplane.port]]\nname = \"mine\"\nkind = \"null\"\n\
             [[dataplane.port]]\nname = \"mine2\"\nkind = \"null\"\n\
             [[dataplane.pair]]\nports = [\"mine\", \"mine2\"]\n",
        )
        .unwrap();
        let out = dir.path().join("dataplane-demo.toml");
        dataplane_config(Some(&base), &out).unwrap();
        let c = crate::config::load(&out).unwrap();
        assert_eq!(c.dataplane.file_prefix, "demo-x");
        assert_eq!(c.dataplane.sessions, 4096);
        let names: Vec<&str> = c.dataplane.ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["pal-demo-c0", "pal-demo-w0", "pal-demo-w1", "pal-demo-d0"]
        );
        assert_eq!(c.dataplane.pairs, [[0, 1], [2, 3]]);
        // The API section is not the dataplane's business.
        assert!(!std::fs::read_to_string(&out).unwrap().contains("[api]"));

        // Embedded defaults: only the demo's ports.
        dataplane_config(None, &out).unwrap();
        let c = crate::config::load(&out).unwrap();
        assert_eq!(c.dataplane.ports.len(), 4);
        assert_eq!(c.dataplane.file_prefix, "palisade");
    }

    #[test]
    fn the_demo_workloads_are_valid_and_named_after_their_namespaces() {
        let ws = Demo::workloads();
        let groups: Vec<&str> = ws.iter().map(|w| w.group.as_str()).collect();
        assert_eq!(groups, ["auto.client", "auto.web", "auto.db"]);
        for w in &ws {
            w.validate().unwrap();
            assert!(w.id.starts_with("pal-demo-"));
        }
        assert_eq!(ws[1].ips.len(), 2);
    }
}
