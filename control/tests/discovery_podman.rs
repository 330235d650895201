//! Discovery against a real podman container (needs root and podman; CI is root).
//!
//! Installs nothing: `scripts/setup.sh` installs podman, runc and busybox-static and builds
//! the `palisade-busybox:test` image. The container and its network are removed by a guard,
//! also when an assertion fails.

#![allow(clippy::panic)]

use control::workload::{self, Runtime};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use palisade_tests::podman::{
    Cleanup, IMAGE, Service, create_network, json, must, require_podman, run_sleeper,
};

const SUBNET: &str = "198.18.100.0/24";

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
    let (container, host_container, network) =
        (unique.clone(), format!("{unique}-host"), unique.clone());
    let guard = Cleanup {
        containers: vec![container.clone(), host_container.clone()],
        networks: vec![network.clone()],
    };
    create_network(&network, SUBNET);
    let id = run_sleeper(&container, &["--network", &network]);
    let host_id = run_sleeper(&host_container, &["--network", "host"]);

    // What podman says, to compare with.
    let inspect = json(&must(&["inspect", &container]));
    let c = &inspect[0];
    assert_eq!(c["Id"].as_str(), Some(id.as_str()));
    let pid = c["State"]["Pid"].as_u64().unwrap_or(0);
    let net = &c["NetworkSettings"]["Networks"][&network];
    let ip: IpAddr = net["IPAddress"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no IP in {net}"));
    let mac = net["MacAddress"].as_str().unwrap_or_default().to_owned();
    let netinfo = json(&must(&["network", "inspect", &network]));
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

#[tokio::test]
async fn the_runtime_api_of_podman_names_the_container() {
    require_podman();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let service = Service::start(&dir.path().join("podman.sock"));
    let socket = service.socket.clone();
    let name = format!("pal-rt-{}", std::process::id());
    let guard = Cleanup {
        containers: vec![name.clone()],
        networks: vec![],
    };
    let id = run_sleeper(&name, &["--network", "none", "--label", "app=paltest"]);

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
    drop(service);
}
