//! Discovery against a real podman container (needs root and podman; CI is root).
//!
//! Installs nothing: `scripts/setup.sh` installs podman, runc and busybox-static and builds
//! the `palisade-busybox:test` image. The container and its network are removed by a guard,
//! also when an assertion fails.

#![allow(clippy::panic)]

use control::workload::{self, Runtime};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

const IMAGE: &str = "palisade-busybox:test";
const SUBNET: &str = "198.18.100.0/24";

fn podman(args: &[&str]) -> Result<String, String> {
    // The test bed's podman facts: runc (crun fails on hybrid cgroups), the cgroupfs manager.
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

fn must(args: &[&str]) -> String {
    podman(args).unwrap_or_else(|e| panic!("{e}"))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Removes the containers and the network, whatever happened.
struct Cleanup {
    container: String,
    host_container: String,
    network: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.container]);
        let _ = podman(&["rm", "--force", "--time", "0", &self.host_container]);
        let _ = podman(&["network", "rm", "--force", &self.network]);
    }
}

fn require_podman() {
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

/// The subnet is fixed; another network (a concurrent test) may hold it for a while.
fn create_network(name: &str) {
    let mut last = String::new();
    for _ in 0..60 {
        match podman(&["network", "create", "--subnet", SUBNET, name]) {
            Ok(_) => return,
            Err(e) if e.contains("already") && !e.contains(name) => {
                last = e;
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{SUBNET} stayed in use for 60 s: {last}");
}

#[test]
fn discovers_a_podman_container_as_root() {
    require_podman();
    let unique = format!(
        "pal-disc-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let guard = Cleanup {
        container: unique.clone(),
        host_container: format!("{unique}-host"),
        network: unique.clone(),
    };
    create_network(&guard.network);
    let id = must(&[
        "run",
        "--detach",
        "--name",
        &guard.container,
        "--network",
        &guard.network,
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        IMAGE,
        "sleep",
        "600",
    ]);
    assert_eq!(id.len(), 64, "podman run printed {id:?}");
    let host_id = must(&[
        "run",
        "--detach",
        "--name",
        &guard.host_container,
        "--network",
        "host",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        IMAGE,
        "sleep",
        "600",
    ]);

    // What podman says, to compare with.
    let inspect = json(&must(&["inspect", &guard.container]));
    let c = &inspect[0];
    assert_eq!(c["Id"].as_str(), Some(id.as_str()));
    let pid = c["State"]["Pid"].as_u64().unwrap_or(0);
    let net = &c["NetworkSettings"]["Networks"][&guard.network];
    let ip: IpAddr = net["IPAddress"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no IP in {net}"));
    let mac = net["MacAddress"].as_str().unwrap_or_default().to_owned();
    let netinfo = json(&must(&["network", "inspect", &guard.network]));
    let bridge = netinfo[0]["network_interface"]
        .as_str()
        .unwrap_or_else(|| panic!("no bridge in {netinfo}"))
        .to_owned();
    // The one veth on the fresh bridge is the container's.
    let out = Command::new("ip")
        .args(["-j", "link", "show", "master", &bridge])
        .output()
        .unwrap_or_else(|e| panic!("ip: {e}"));
    let ports = json(&String::from_utf8_lossy(&out.stdout));
    let ports = ports.as_array().cloned().unwrap_or_default();
    assert_eq!(ports.len(), 1, "ports of {bridge}: {ports:?}");
    let veth = ports[0]["ifname"].as_str().unwrap_or_default().to_owned();

    let found = workload::discover().unwrap_or_else(|e| panic!("{}", control::error_chain(&e)));
    let d = found
        .iter()
        .find(|d| d.container_id == id)
        .unwrap_or_else(|| panic!("{id} not discovered; found {found:#?}"));
    assert_eq!(d.runtime, Runtime::Podman);
    assert_eq!(u64::from(d.root_pid), pid);
    assert!(!d.exempt);
    assert_eq!(d.interfaces.len(), 1, "{:#?}", d.interfaces);
    let i = &d.interfaces[0];
    assert_eq!(i.name, "eth0");
    assert_eq!(i.ips, vec![ip]);
    let IpAddr::V4(v4) = ip else {
        panic!("{ip} is not IPv4")
    };
    assert_eq!(
        u32::from(v4) & 0xffff_ff00,
        u32::from(Ipv4Addr::new(198, 18, 100, 0)),
        "{ip} is not in {SUBNET}"
    );
    assert_eq!(i.mac.map(|m| m.to_string()), Some(mac.to_lowercase()));
    assert_eq!(i.host_veth.as_deref(), Some(veth.as_str()));
    assert_eq!(i.bridge.as_deref(), Some(bridge.as_str()));

    // The host-network container is exempt and its (host) interfaces are not its own.
    let h = found
        .iter()
        .find(|d| d.container_id == host_id)
        .unwrap_or_else(|| panic!("{host_id} not discovered; found {found:#?}"));
    assert!(h.exempt);
    assert!(h.interfaces.is_empty());
    assert!(h.to_workload().exempt);

    let w = d.to_workload();
    assert_eq!(w.id, id);
    assert_eq!(w.ips, vec![ip]);
    assert_eq!(w.veth.as_deref(), Some(veth.as_str()));
    assert_eq!(w.validate().map_err(|e| e.to_string()), Ok(()));
    drop(guard);
}

/// Kills `podman system service` (by its pid) and removes the container, whatever happened.
struct Service {
    child: std::process::Child,
    container: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.container]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_runtime_api_of_podman_names_the_container() {
    require_podman();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let socket = dir.path().join("podman.sock");
    let child = Command::new("podman")
        .args(["--runtime", "runc", "--cgroup-manager=cgroupfs"])
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .spawn()
        .unwrap_or_else(|e| panic!("podman system service: {e}"));
    let name = format!("pal-rt-{}", std::process::id());
    let mut guard = Service {
        child,
        container: name.clone(),
    };
    let id = must(&[
        "run",
        "--detach",
        "--name",
        &name,
        "--network",
        "none",
        "--label",
        "app=paltest",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        IMAGE,
        "sleep",
        "600",
    ]);
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        if let Ok(Some(status)) = guard.child.try_wait() {
            panic!("podman system service exited: {status}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(socket.exists(), "no socket at {}", socket.display());

    let meta = workload::runtime::inspect(&socket, &id)
        .await
        .unwrap_or_else(|e| panic!("{}", control::error_chain(&e)))
        .unwrap_or_else(|| panic!("{id} unknown to the API"));
    assert_eq!(meta.name, name);
    assert!(meta.image.ends_with(IMAGE), "image {:?}", meta.image);
    assert_eq!(meta.labels.get("app").map(String::as_str), Some("paltest"));
    assert_eq!(
        workload::runtime::inspect(&socket, &"0".repeat(64))
            .await
            .unwrap_or_else(|e| panic!("{}", control::error_chain(&e))),
        None
    );
    drop(guard);
}
