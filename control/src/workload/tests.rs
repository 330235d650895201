//! Discovery against a fake `/proc` and `/sys/class/net` in a tempdir.

use super::netns::{NetnsLinks, NsLink};
use super::*;
use std::collections::HashMap;
use std::fs;
use std::path::Path;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const HOST_NS: u64 = 4026531840;

/// The interfaces the fake namespace reader returns, by pid; a missing pid is an error.
#[derive(Debug, Default)]
struct FakeLinks(HashMap<u32, Vec<NsLink>>);

impl NetnsLinks for FakeLinks {
    fn links(&self, _proc: &Path, pid: u32) -> Result<Vec<NsLink>, DiscoveryError> {
        self.0.get(&pid).cloned().ok_or(DiscoveryError::Netns {
            pid,
            what: "enter the namespace",
            source: std::io::Error::from_raw_os_error(1),
        })
    }
}

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Self {
        let f = Self {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
        };
        fs::create_dir_all(f.proc()).unwrap();
        fs::create_dir_all(f.sys()).unwrap();
        // pid 1 on the host, and some non-pid entries /proc always has.
        f.process(1, "systemd", 0, 5, "0::/init.scope\n", HOST_NS);
        fs::create_dir_all(f.proc().join("self")).unwrap();
        fs::write(f.proc().join("uptime"), "1.0 1.0\n").unwrap();
        f
    }
    fn proc(&self) -> PathBuf {
        self.dir.path().join("proc")
    }
    fn sys(&self) -> PathBuf {
        self.dir.path().join("sys/class/net")
    }
    fn process(&self, pid: u32, comm: &str, ppid: u32, start: u64, cgroup: &str, netns: u64) {
        let d = self.proc().join(pid.to_string());
        fs::create_dir_all(d.join("ns")).unwrap();
        fs::write(d.join("cgroup"), cgroup).unwrap();
        let stat = format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1145 0 1 0 2 1 0 0 20 0 1 0 {start} \
             2322432 324 18446744073709551615 4198400 5785993 0 0 0 0 0 0 1 0 0 17 1 0 0 0 0 0\n"
        );
        fs::write(d.join("stat"), stat).unwrap();
        std::os::unix::fs::symlink(format!("net:[{netns}]"), d.join("ns/net")).unwrap();
    }
    fn host_if(&self, name: &str, ifindex: u32, iflink: u32, master: Option<&str>) {
        let d = self.sys().join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("ifindex"), format!("{ifindex}\n")).unwrap();
        fs::write(d.join("iflink"), format!("{iflink}\n")).unwrap();
        if let Some(m) = master {
            std::os::unix::fs::symlink(format!("../../devices/virtual/net/{m}"), d.join("master"))
                .unwrap();
        }
    }
    fn discovery(&self, links: FakeLinks, own_pid: Option<u32>) -> Discovery {
        Discovery {
            proc_root: self.proc(),
            sys_class_net: self.sys(),
            links: Box::new(links),
            own_pid,
        }
    }
}

fn podman_v1(id: &str) -> String {
    let p = format!("/libpod_parent/libpod-{id}");
    format!("9:name=systemd:{p}\n8:pids:{p}\n4:memory:{p}\n1:cpu:{p}\n0::{p}\n")
}

fn eth0(ifindex: u32, peer: u32, mac: &str, ip: &str) -> NsLink {
    NsLink {
        name: "eth0".into(),
        ifindex,
        link_index: Some(peer),
        mac: mac.parse().ok(),
        ips: ip.parse().into_iter().collect(),
        loopback: false,
    }
}

fn lo() -> NsLink {
    NsLink {
        name: "lo".into(),
        ifindex: 1,
        link_index: None,
        mac: None,
        ips: vec![],
        loopback: true,
    }
}

fn discover(d: &Discovery) -> Vec<Discovered> {
    d.discover()
        .unwrap_or_else(|e| panic!("{}", crate::error_chain(&e)))
}

#[test]
fn podman_v1_container_with_veth_on_a_bridge() {
    let f = Fake::new();
    // conmon (host, its own cgroup) -> sleep (container root) -> sh (child).
    f.process(
        100,
        "conmon",
        1,
        10,
        "8:pids:/libpod_parent/conmon\n0::/\n",
        HOST_NS,
    );
    f.process(101, "sleep", 100, 11, &podman_v1(A), 7001);
    f.process(102, "sh", 101, 12, &podman_v1(A), 7001);
    f.host_if("lo", 1, 1, None);
    f.host_if("podman1", 5, 5, None);
    f.host_if("other-veth", 6, 2, None);
    f.host_if("veth1234", 7, 2, Some("podman1"));
    let links = FakeLinks(
        [(
            101,
            vec![lo(), eth0(2, 7, "96:67:3c:0d:47:4c", "198.18.100.2")],
        )]
        .into(),
    );
    let found = discover(&f.discovery(links, Some(999)));
    assert_eq!(
        found,
        vec![Discovered {
            container_id: A.into(),
            runtime: Runtime::Podman,
            root_pid: 101,
            start_time: 11,
            netns_inode: 7001,
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "96:67:3c:0d:47:4c".parse().ok(),
                ips: "198.18.100.2".parse().into_iter().collect(),
                host_veth: Some("veth1234".into()),
                bridge: Some("podman1".into()),
            }],
            exempt: false,
        }]
    );
    let w = found[0].to_workload();
    assert_eq!(w.id, A);
    assert_eq!(w.source, WorkloadSource::Discovered);
    assert_eq!(w.veth.as_deref(), Some("veth1234"));
    assert_eq!(w.netns.as_deref(), Some("net:[7001]"));
    assert_eq!(w.ips, found[0].interfaces[0].ips);
    assert_eq!(w.macs.len(), 1);
    assert_eq!(w.group, "auto.unknown");
    assert!(!w.exempt);
    assert_eq!(w.validate().map_err(|e| e.reason), Ok(()));
}

#[test]
fn v2_containers_root_pid_and_odd_comm() {
    let f = Fake::new();
    // Docker (v2, systemd): containerd-shim on the host, a root with a nasty comm name, and an
    // `exec`ed process whose parent is also outside (the shim): the earlier start is root.
    f.process(
        200,
        "containerd-shim",
        1,
        20,
        "0::/system.slice/containerd.service\n",
        HOST_NS,
    );
    let docker = format!("0::/system.slice/docker-{B}.scope\n");
    f.process(230, "sh", 200, 90, &docker, 7002);
    f.process(210, "my (weird) app) S 1", 200, 21, &docker, 7002);
    f.process(211, "worker", 210, 22, &docker, 7002);
    // A k8s container whose pids are not in start order: the root has the higher pid.
    let k8s = format!("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{C}.scope\n");
    f.process(300, "child", 301, 31, &k8s, 7003);
    f.process(301, "pause", 200, 30, &k8s, 7003);
    let links = FakeLinks([(210, vec![lo()]), (301, vec![lo()])].into());
    let found = discover(&f.discovery(links, None));
    let summary: Vec<_> = found
        .iter()
        .map(|d| {
            (
                d.container_id.as_str(),
                d.runtime,
                d.root_pid,
                d.start_time,
                d.netns_inode,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (B, Runtime::Docker, 210, 21, 7002),
            (C, Runtime::Containerd, 301, 30, 7003)
        ]
    );
    assert!(found.iter().all(|d| d.interfaces.is_empty() && !d.exempt));
}

#[test]
fn host_network_and_own_container_are_exempt() {
    let f = Fake::new();
    f.process(400, "nginx", 1, 40, &podman_v1(A), HOST_NS);
    f.process(500, "palisade", 1, 50, &podman_v1(B), 7005);
    f.process(600, "app", 1, 60, &podman_v1(C), 7006);
    // The host-network container's namespace is never entered (no links given for 400).
    let links = FakeLinks([(500, vec![lo()]), (600, vec![lo()])].into());
    let found = discover(&f.discovery(links, Some(500)));
    let exempt: Vec<_> = found
        .iter()
        .map(|d| (d.container_id.as_str(), d.exempt))
        .collect();
    assert_eq!(exempt, vec![(A, true), (B, true), (C, false)]);
    assert!(found[0].to_workload().exempt);
}

#[test]
fn host_network_is_our_namespace_when_pid_1_is_unreadable() {
    let f = Fake::new();
    // pid 1's namespace link is unreadable (sandboxes deny ptrace access to it).
    fs::remove_file(f.proc().join("1/ns/net")).unwrap();
    f.process(
        900,
        "palisade",
        1,
        90,
        "0::/system.slice/palisade.service\n",
        7100,
    );
    f.process(901, "nginx", 1, 91, &podman_v1(A), 7100);
    f.process(902, "app", 1, 92, &podman_v1(B), 7101);
    let links = FakeLinks([(902, vec![lo()])].into());
    let exempt: Vec<_> = discover(&f.discovery(links, Some(900)))
        .iter()
        .map(|d| (d.container_id.clone(), d.exempt, d.interfaces.len()))
        .collect();
    assert_eq!(
        exempt,
        vec![(A.to_owned(), true, 0), (B.to_owned(), false, 0)]
    );
}

#[test]
fn unreadable_namespace_keeps_the_container_without_interfaces() {
    let f = Fake::new();
    f.process(700, "app", 1, 70, &podman_v1(A), 7007);
    let found = discover(&f.discovery(FakeLinks::default(), None));
    assert_eq!(found.len(), 1);
    assert!(found[0].interfaces.is_empty());
}

#[test]
fn vanished_and_malformed_processes_are_skipped() {
    let f = Fake::new();
    f.process(800, "app", 1, 80, &podman_v1(A), 7008);
    // A process whose stat is garbage and one without a netns link.
    f.process(801, "bad", 1, 81, &podman_v1(B), 7009);
    fs::write(f.proc().join("801/stat"), "801 (bad").unwrap();
    f.process(802, "gone", 1, 82, &podman_v1(C), 7010);
    fs::remove_file(f.proc().join("802/ns/net")).unwrap();
    let links = FakeLinks([(800, vec![lo()])].into());
    let ids: Vec<_> = discover(&f.discovery(links, None))
        .into_iter()
        .map(|d| d.container_id)
        .collect();
    assert_eq!(ids, vec![A.to_owned()]);
}

#[test]
fn no_containers_needs_no_sysfs() {
    let f = Fake::new();
    fs::remove_dir_all(f.sys()).unwrap();
    assert_eq!(discover(&f.discovery(FakeLinks::default(), None)), vec![]);
    let d = Discovery {
        proc_root: f.dir.path().join("nope"),
        ..f.discovery(FakeLinks::default(), None)
    };
    assert!(matches!(d.discover(), Err(DiscoveryError::Proc { .. })));
}
