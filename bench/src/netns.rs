//! Network namespaces, veth pairs and a line-echo client and server, for scenarios that move
//! real traffic through the kernel and the dataplane (scenario `control`).
//!
//! A lean, fallible counterpart of `palisade_tests::{Netns, Veth, echo_servers, talk}` (the
//! end-to-end tests' harness in `tests/`): that one panics on every failure, as a test should,
//! and a benchmark binary should not. Everything created here is removed on drop; test
//! addresses belong in 198.18.0.0/15, inside namespaces the caller created.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

/// A namespace, interface or socket operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A command could not be started.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// A thread could not enter the namespace.
    #[error("cannot enter network namespace {name}")]
    Enter {
        /// Namespace name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn run(args: &[&str]) -> Result<(), NetError> {
    let command = args.join(" ");
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetError::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Failed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// A network namespace with its loopback up, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name`.
    pub fn new(name: &str) -> Result<Self, NetError> {
        run(&["ip", "netns", "add", name])?;
        let ns = Self { name: name.into() };
        run(&["ip", "-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a new thread that first enters this namespace (`setns` moves only the
    /// calling thread); the thread's result is `f`'s, or why it could not enter.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<Result<T, NetError>> {
        let name = self.name.clone();
        std::thread::spawn(move || {
            let fd =
                File::open(format!("/var/run/netns/{name}")).map_err(|source| NetError::Enter {
                    name: name.clone(),
                    source,
                })?;
            setns(&fd, CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Enter {
                name,
                source: e.into(),
            })?;
            Ok(f())
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// A veth pair: `host` in the root namespace (up, no address, IPv6 off) and `eth0` inside a
/// namespace with an address. Checksum and segmentation offloads are off on both ends: an
/// AF_PACKET port sees frames as the kernel left them, and a partial checksum would reach the
/// far side unfinished. Deleting the host end on drop removes both.
#[derive(Debug)]
pub struct Veth {
    host: String,
}

impl Veth {
    /// Creates the pair; `addr` is `eth0`'s address with its prefix (`198.18.0.1/24`).
    pub fn new(ns: &Netns, host: &str, addr: &str) -> Result<Self, NetError> {
        let n = ns.name();
        run(&[
            "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", n,
        ])?;
        let v = Self { host: host.into() };
        run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{host}.disable_ipv6=1"),
        ])?;
        let offloads = ["tx", "off", "tso", "off", "gso", "off", "gro", "off"];
        run(&[&["ethtool", "-K", host][..], &offloads].concat())?;
        run(&["ip", "link", "set", host, "up"])?;
        run(&[
            &["ip", "netns", "exec", n, "ethtool", "-K", "eth0"][..],
            &offloads,
        ]
        .concat())?;
        run(&["ip", "-n", n, "addr", "add", addr, "dev", "eth0"])?;
        run(&["ip", "-n", n, "link", "set", "eth0", "up"])?;
        Ok(v)
    }

    /// The host end's name.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.host]);
    }
}

/// Starts a line-echo server on each of `addrs` inside `ns` (a thread per listener and per
/// connection) and returns once all listen. They serve until the process exits; deleting the
/// namespace's interfaces leaves them nothing to receive.
pub fn echo_servers(ns: &Netns, addrs: &[SocketAddr]) -> Result<(), NetError> {
    for &addr in addrs {
        let (tx, rx) = std::sync::mpsc::channel();
        let serving = ns.spawn(move || {
            let l = match TcpListener::bind(addr) {
                Ok(l) => l,
                Err(source) => {
                    let _ = tx.send(Err(NetError::Listen { addr, source }));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            for s in l.incoming().flatten() {
                std::thread::spawn(move || echo(s));
            }
        });
        match rx.recv() {
            Ok(r) => r?,
            // The sender went away unused: the thread never entered the namespace.
            Err(_) => {
                return Err(match serving.join() {
                    Ok(Err(e)) => e,
                    _ => NetError::Listen {
                        addr,
                        source: std::io::Error::other("the server thread ended"),
                    },
                });
            }
        }
    }
    Ok(())
}

fn echo(mut s: TcpStream) {
    // A client cut off by the firewall in mid-connection must not hold the thread forever.
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 64];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// How one connection to an echo server went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exchange {
    /// Connected, sent a line, got it back.
    Echoed,
    /// Refused (a TCP RST answered the SYN).
    Refused,
    /// No answer within the timeout (to the SYN or to the line).
    TimedOut,
    /// Anything else.
    Failed,
}

/// Connects to `to` (from the calling thread's namespace), sends `ping\n` and reads it back,
/// each step within `timeout`; then closes.
pub fn exchange(to: SocketAddr, timeout: Duration) -> Exchange {
    let kind = |e: std::io::Error| match e.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => Exchange::Refused,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Exchange::TimedOut,
        _ => Exchange::Failed,
    };
    let step = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&to, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(b"ping\n")?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf)?;
        Ok(&buf == b"ping\n")
    };
    match step() {
        Ok(true) => Exchange::Echoed,
        Ok(false) => Exchange::Failed,
        Err(e) => kind(e),
    }
}
