//! Shared by the podman tests: the test bed's podman invocation, the image check, networks on a
//! fixed subnet, and `podman system service` on a private socket. Installs nothing:
//! `scripts/setup.sh` installs podman, runc and busybox-static and builds [`IMAGE`].

#![allow(dead_code, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// The image `scripts/setup.sh` builds.
pub const IMAGE: &str = "palisade-busybox:test";

/// `podman <args>` with the test bed's facts (runc: crun fails on hybrid cgroups; the
/// cgroupfs manager); stdout, trimmed, or the error with stderr.
pub fn podman(args: &[&str]) -> Result<String, String> {
    let out = Command::new("podman")
        .args(["--runtime", "runc", "--cgroup-manager=cgroupfs"])
        .args(args)
        .output()
        .map_err(|e| format!("podman {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "podman {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// [`podman`], panicking on failure.
pub fn must(args: &[&str]) -> String {
    podman(args).unwrap_or_else(|e| panic!("{e}"))
}

/// `podman run --detach` of [`IMAGE`] running `sleep 600`, with the ulimits the test bed
/// needs and `extra` options before the image; the container id.
pub fn run_sleeper(name: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "run",
        "--detach",
        "--name",
        name,
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, "sleep", "600"]);
    let id = must(&args);
    assert_eq!(id.len(), 64, "podman run printed {id:?}");
    id
}

/// Parses JSON, panicking with the text.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Fails (not skips) with what to run when podman or the image is missing.
pub fn require_podman() {
    let ok = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "podman is not installed: run scripts/setup.sh (as root), it installs podman, runc and \
         busybox-static and builds the {IMAGE} image"
    );
    assert!(
        Command::new("podman")
            .args(["image", "exists", IMAGE])
            .status()
            .is_ok_and(|s| s.success()),
        "the image {IMAGE} is missing: run scripts/setup.sh (as root), it builds it"
    );
}

/// Creates network `name` on `subnet`; another network (a concurrent test) may hold the
/// subnet for a while.
pub fn create_network(name: &str, subnet: &str) {
    let mut last = String::new();
    for _ in 0..60 {
        match podman(&["network", "create", "--subnet", subnet, name]) {
            Ok(_) => return,
            Err(e) if e.contains("already") && !e.contains(name) => {
                last = e;
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{subnet} stayed in use for 60 s: {last}");
}

/// Removes the containers and networks it names, whatever happened (also when the test
/// fails).
#[derive(Debug, Default)]
pub struct Cleanup {
    /// Container names.
    pub containers: Vec<String>,
    /// Network names.
    pub networks: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = podman(&["rm", "--force", "--time", "0", c]);
        }
        for n in &self.networks {
            let _ = podman(&["network", "rm", "--force", n]);
        }
    }
}

/// `podman system service` on a private socket; killed (by its pid) and reaped on drop.
#[derive(Debug)]
pub struct Service {
    child: Child,
    /// Its socket.
    pub socket: PathBuf,
}

impl Service {
    /// Starts the service on `socket` and waits (at most 10 s) for the socket to appear.
    pub fn start(socket: &Path) -> Self {
        let child = Command::new("podman")
            .args(["--runtime", "runc", "--cgroup-manager=cgroupfs"])
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .spawn()
            .unwrap_or_else(|e| panic!("podman system service: {e}"));
        let mut s = Self {
            child,
            socket: socket.to_path_buf(),
        };
        for _ in 0..100 {
            if socket.exists() {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("podman system service exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no socket at {} after 10 s", socket.display());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
