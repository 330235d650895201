//! Workload discovery, the runtime-agnostic part: containers found from `/proc` and their
//! network namespaces, without asking any container runtime.
//!
//! - [`cgroup`]: the container id (and runtime) from `/proc/<pid>/cgroup`;
//! - [`procfs`]: pids grouped by container, the root pid, start time, netns inode;
//! - [`netns`]: interfaces, MACs and IPs inside the namespace, the host-side veth and bridge.
//!
//! [`Discovery`] ties them together over configurable roots (`/proc`, `/sys/class/net`) and
//! a replaceable in-namespace reader ([`netns::NetnsLinks`]), so every step but `setns` runs
//! in tests against a fake tree. What a container is called comes from elsewhere, in
//! [`sync`]: names, images and labels from a Docker-compatible runtime API ([`runtime`]),
//! Kubernetes pod metadata from the OCI bundle's annotations ([`oci`]) for runtimes without
//! one (containerd, CRI-O), and the runtime's start/stop events ([`events`]) to scan at once.
//!
//! Exempt (alert only): containers sharing pid 1's network namespace or Palisade's own (pid
//! 1's link is unreadable in some sandboxes, and what shares Palisade's namespace cannot be
//! put inline either), and the container Palisade itself runs in; [`sync`] adds pods of the
//! configured system namespaces.

pub mod cgroup;
pub mod events;
mod http;
pub mod netns;
pub mod oci;
pub mod procfs;
pub mod runtime;
pub mod sync;

pub use cgroup::{ContainerId, Runtime};

use crate::model::{Mac, Workload, WorkloadSource};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// `/proc` (or the configured root) could not be listed.
    #[error("cannot list processes in {}", path.display())]
    Proc {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `/sys/class/net` could not be listed.
    #[error("cannot list host interfaces in {}", path.display())]
    HostLinks {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading a container's network namespace failed.
    #[error("network namespace of pid {pid}: cannot {what}")]
    Netns {
        /// The container's root pid.
        pid: u32,
        /// The step that failed.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `ip -j` printed something that is not its JSON.
    #[error("network namespace of pid {pid}: unexpected `ip -j addr` output")]
    IpJson {
        /// The container's root pid.
        pid: u32,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// One interface of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name inside the container (`eth0`).
    pub name: String,
    /// Its MAC.
    pub mac: Option<Mac>,
    /// Its addresses (no loopback, no IPv6 link-local).
    pub ips: Vec<IpAddr>,
    /// The host-side veth peer, when it is a veth whose peer is in the host namespace.
    pub host_veth: Option<String>,
    /// The device the host veth is enslaved to (a bridge), if any.
    pub bridge: Option<String>,
}

/// A container found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Full container id (64 hex digits).
    pub container_id: String,
    /// The runtime whose cgroup naming matched.
    pub runtime: Runtime,
    /// The process whose parent is outside the container.
    pub root_pid: u32,
    /// The root process's start time, clock ticks after boot (`/proc/<pid>/stat` field 22):
    /// with `root_pid`, it tells a restarted container from the old one.
    pub start_time: u64,
    /// Inode of its network namespace.
    pub netns_inode: u64,
    /// Its interfaces, loopback excluded; empty when exempt for the host network.
    pub interfaces: Vec<Interface>,
    /// Host network or Palisade itself: alert only, never inline.
    pub exempt: bool,
}

impl Discovered {
    /// As a [`Workload`] for the store: name, image and labels unknown (empty) until the
    /// runtime API fills them; the group is the auto group of what is known.
    pub fn to_workload(&self) -> Workload {
        let labels = BTreeMap::new();
        let ips: Vec<IpAddr> = self
            .interfaces
            .iter()
            .flat_map(|i| i.ips.iter().copied())
            .collect();
        let macs: Vec<Mac> = self.interfaces.iter().filter_map(|i| i.mac).collect();
        Workload {
            id: self.container_id.clone(),
            name: String::new(),
            image: String::new(),
            group: crate::model::auto_group("", &labels),
            labels,
            ips,
            macs,
            netns: Some(format!("net:[{}]", self.netns_inode)),
            veth: self.interfaces.iter().find_map(|i| i.host_veth.clone()),
            mode: Default::default(),
            plumbing: Default::default(),
            exempt: self.exempt,
            source: WorkloadSource::Discovered,
        }
    }
}

/// Discovery over a filesystem view of the host; [`Discovery::host`] is the real one.
#[derive(Debug)]
pub struct Discovery {
    /// `/proc`.
    pub proc_root: PathBuf,
    /// `/sys/class/net`.
    pub sys_class_net: PathBuf,
    /// Reads interfaces inside a namespace.
    pub links: Box<dyn netns::NetnsLinks>,
    /// Our own pid: its container, if any, is exempt, and so is any container sharing its
    /// network namespace; `None` to skip both checks.
    pub own_pid: Option<u32>,
}

impl Discovery {
    /// The real host: `/proc`, `/sys/class/net`, `setns` + `ip`.
    pub fn host() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            sys_class_net: PathBuf::from("/sys/class/net"),
            links: Box::new(netns::IpInNetns),
            own_pid: Some(std::process::id()),
        }
    }

    fn gone(&self, pid: u32) -> bool {
        !self.proc_root.join(pid.to_string()).exists()
    }

    /// Every container running now, ordered by id. A container whose processes exit while it
    /// is read is left out; one whose namespace cannot be read is kept without interfaces
    /// (and logged).
    pub fn discover(&self) -> Result<Vec<Discovered>, DiscoveryError> {
        let containers = procfs::scan(&self.proc_root).map_err(|source| DiscoveryError::Proc {
            path: self.proc_root.clone(),
            source,
        })?;
        if containers.is_empty() {
            return Ok(Vec::new());
        }
        // The host network: pid 1's namespace, and ours (where the bridges and host veths
        // are seen). pid 1's link is unreadable in some sandboxes (ptrace access mode), so
        // ours alone must do.
        let host_netns: Vec<u64> = [Some(1), self.own_pid]
            .into_iter()
            .flatten()
            .filter_map(|pid| procfs::netns_inode(&self.proc_root, pid))
            .collect();
        let host =
            netns::host_links(&self.sys_class_net).map_err(|source| DiscoveryError::HostLinks {
                path: self.sys_class_net.clone(),
                source,
            })?;
        let mut out = Vec::with_capacity(containers.len());
        for c in containers {
            let Some(netns_inode) = procfs::netns_inode(&self.proc_root, c.root_pid) else {
                tracing::debug!(container = %c.id.id, pid = c.root_pid, "exited while discovered");
                continue;
            };
            let host_network = host_netns.contains(&netns_inode);
            let ourselves = self
                .own_pid
                .is_some_and(|p| c.pids.binary_search(&p).is_ok());
            let interfaces = if host_network {
                Vec::new()
            } else {
                match self.links.links(&self.proc_root, c.root_pid) {
                    Ok(links) => interfaces(links, &host),
                    Err(_) if self.gone(c.root_pid) => continue,
                    Err(e) => {
                        tracing::warn!(
                            container = %c.id.id,
                            error = %crate::error_chain(&e),
                            "cannot read the container's interfaces"
                        );
                        Vec::new()
                    }
                }
            };
            out.push(Discovered {
                container_id: c.id.id,
                runtime: c.id.runtime,
                root_pid: c.root_pid,
                start_time: c.start_time,
                netns_inode,
                interfaces,
                exempt: host_network || ourselves,
            });
        }
        Ok(out)
    }
}

fn interfaces(links: Vec<netns::NsLink>, host: &[netns::HostLink]) -> Vec<Interface> {
    links
        .into_iter()
        .filter(|l| !l.loopback)
        .map(|l| {
            let peer = netns::host_peer(&l, host);
            Interface {
                host_veth: peer.map(|p| p.name.clone()),
                bridge: peer.and_then(|p| p.master.clone()),
                name: l.name,
                mac: l.mac,
                ips: l.ips,
            }
        })
        .collect()
}

/// [`Discovery::host`]`.discover()`: every container on this host. Blocking (reads `/proc`,
/// spawns `ip`); from async code call it in `spawn_blocking`.
pub fn discover() -> Result<Vec<Discovered>, DiscoveryError> {
    Discovery::host().discover()
}

#[cfg(test)]
mod tests;
