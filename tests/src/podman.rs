//! Real containers for the end-to-end tests: podman with runc and cgroupfs (the test bed's
//! facts, see ENVIRONMENT.md), the `palisade-busybox:test` image `scripts/setup.sh` builds,
//! networks on 198.18.0.0/15, and a `podman system service` for the runtime API. Every
//! object is removed by a guard, also when the test fails; the service is stopped by pid.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::up::{Api, PASSWORD, Up, free_port};
use crate::{unique, wait_for};

/// The image `scripts/setup.sh` builds from busybox-static.
pub const IMAGE: &str = "palisade-busybox:test";

/// Runs `podman` with the test bed's flags; stdout on success, the error text otherwise.
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

/// JSON printed by podman.
pub fn json(text: &str) -> Value {
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
        podman(&["image", "exists", IMAGE]).is_ok(),
        "the image {IMAGE} is missing: run scripts/setup.sh (as root), it builds it"
    );
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

/// Creates network `name` on `subnet`, waiting up to a minute while another network (a
/// concurrent test) still holds the subnet.
pub fn create_network(name: &str, subnet: &str) {
    let mut last;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match podman(&["network", "create", "--subnet", subnet, name]) {
            Ok(_) => return,
            Err(e) if e.contains("already") && !e.contains(name) => last = e,
            Err(e) => panic!("{e}"),
        }
        assert!(
            Instant::now() < deadline,
            "{subnet} stayed in use for 60 s: {last}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
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

/// A podman network and the containers run on it; all removed on drop.
#[derive(Debug)]
pub struct Network {
    /// Its name.
    pub name: String,
    /// Its bridge on the host.
    pub bridge: String,
    containers: Vec<String>,
}

impl Network {
    /// Creates network `name` on `subnet` (waiting up to a minute while a concurrent test
    /// still holds the subnet).
    pub fn new(name: &str, subnet: &str) -> Self {
        create_network(name, subnet);
        let mut net = Self {
            name: name.to_owned(),
            bridge: String::new(),
            containers: Vec::new(),
        };
        let info = json(&must(&["network", "inspect", name]));
        net.bridge = info[0]["network_interface"]
            .as_str()
            .unwrap_or_else(|| panic!("no bridge in {info}"))
            .to_owned();
        net
    }

    /// Runs a detached container `name` on this network with address `ip`, `labels` and
    /// the busybox shell command `script`; returns its id. Its MAC is derived from `ip` and
    /// fixed, so a restarted container keeps it (CNI would give it a new one and announce
    /// nothing, leaving its peers with a stale ARP entry for tens of seconds).
    pub fn run(&mut self, name: &str, ip: &str, labels: &[&str], script: &str) -> String {
        self.containers.push(name.to_owned());
        let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
        let mac = format!(
            "02:50:{}",
            octets
                .iter()
                .map(|o| format!("{o:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        );
        let mut args = vec![
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            &self.name,
            "--ip",
            ip,
            "--mac-address",
            &mac,
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ];
        for l in labels {
            args.extend(["--label", l]);
        }
        args.extend([IMAGE, "sh", "-c", script]);
        let id = must(&args);
        assert_eq!(id.len(), 64, "podman run printed {id:?}");
        id
    }

    /// `podman exec name sh -c script`: its status and output.
    pub fn exec(&self, name: &str, script: &str) -> Result<String, String> {
        podman(&["exec", name, "sh", "-c", script])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = podman(&["rm", "--force", "--time", "0", c]);
        }
        let _ = podman(&["network", "rm", "--force", &self.name]);
    }
}

/// `podman system service` on a socket of its own, killed by pid on drop.
#[derive(Debug)]
pub struct Service {
    child: Child,
    /// The socket.
    pub socket: PathBuf,
}

impl Service {
    /// Starts the service on `socket` and waits (at most 20 s) for the socket to appear.
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
        let deadline = Instant::now() + Duration::from_secs(20);
        while !s.socket.exists() {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("podman system service exited: {st}");
            }
            assert!(
                Instant::now() < deadline,
                "no socket at {} after 20 s",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One container on a network of its own, watched by `palisade up --no-dataplane` with the
/// runtime API of a `podman system service`: the setup of the tests below. The fields drop
/// in order: Palisade, the container and its network, the service, the directory.
#[derive(Debug)]
pub struct Bed {
    /// Logged in as admin.
    pub api: Api,
    /// Palisade.
    pub up: Up,
    /// The network (more containers may be run on it).
    pub net: Network,
    _svc: Service,
    _dir: tempfile::TempDir,
    /// The container's name.
    pub name: String,
    /// The container's id (its workload id).
    pub id: String,
    /// Its group, `auto.<app label>`.
    pub group: String,
}

impl Bed {
    /// Runs `script` in a container labelled `app=<app>` at `ip` on a new network on
    /// `subnet`, starts Palisade with `discovery` lines added to `[discovery]` and `tail`
    /// appended to its config, and waits until the container is a workload of its group.
    pub fn start(
        subnet: &str,
        ip: &str,
        app: &str,
        script: &str,
        discovery: &str,
        tail: &str,
    ) -> Self {
        require_podman();
        let u = unique("q");
        let dir = tempfile::Builder::new()
            .prefix("palisade-bed-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let svc = Service::start(&dir.path().join("podman.sock"));
        let mut net = Network::new(&format!("pal-{u}"), subnet);
        let name = format!("{u}-{app}");
        let id = net.run(&name, ip, &[&format!("app={app}")], script);
        let addr = free_port();
        std::fs::write(
            dir.path().join("palisade.toml"),
            format!(
                "[api]\nlisten = \"{addr}\"\n[store]\ndata_dir = \"{data}\"\n\
                 [discovery]\nruntime_socket = \"{sock}\"\ninterval_ms = 500\n{discovery}\
                 [plumb]\nenabled = false\n{tail}",
                data = dir.path().join("data").display(),
                sock = svc.socket.display(),
            ),
        )
        .unwrap();
        let up = Up::start_no_dataplane(dir.path(), addr);
        let api = Api::login(addr, PASSWORD);
        let group = format!("auto.{app}");
        wait_for(Duration::from_secs(20), "container discovered", || {
            api.items("/v1/workloads?limit=1000")
                .iter()
                .any(|w| w["id"] == id.as_str() && w["group"] == group.as_str())
                .then_some(())
        });
        Self {
            api,
            up,
            net,
            _svc: svc,
            _dir: dir,
            name,
            id,
            group,
        }
    }

    /// `podman exec` of `cmd` in the container; its output, or the error text.
    pub fn exec(&self, cmd: &[&str]) -> Result<String, String> {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend_from_slice(cmd);
        podman(&args)
    }
}
