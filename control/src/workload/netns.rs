//! Interfaces inside a container's network namespace, and their host-side veth peers.
//!
//! **Inside the namespace** ([`IpInNetns`]): a short-lived thread enters the namespace with
//! `setns(CLONE_NEWNET)` on `/proc/<pid>/ns/net` and runs `ip -j addr show` there (a child
//! inherits the namespaces of the thread that spawns it). Why this route:
//! - no netlink crate is in the lockfile, and one `setns` plus iproute2's JSON (installed
//!   everywhere Palisade runs; `scripts/setup.sh` installs it) is less code to trust than a
//!   hand-written rtnetlink parser;
//! - `/sys/class/net` cannot be used from inside: sysfs shows the namespace of whoever
//!   mounted it, not the reader's;
//! - it is a thread, never the main or a tokio worker thread, so no other code ever runs in
//!   the container's namespace; the thread ends right after and takes the namespace with it.
//!
//! **On the host** ([`host_links`]): `/sys/class/net/<if>/{ifindex,iflink}` and the `master`
//! symlink (the bridge). A container veth's `link_index` is its peer's ifindex in the peer's
//! namespace; ifindexes are only unique per namespace, so a host interface is its peer only
//! when its ifindex is that `link_index` **and** its own `iflink` is the container
//! interface's ifindex. (Two unrelated veth pairs could still cross-match when their peers
//! sit in other namespaces; telling them apart needs `link_netnsid` resolved through
//! `RTM_GETNSID`, which is left for a netlink-based reader.)

use super::DiscoveryError;
use crate::model::Mac;
use serde::Deserialize;
use std::fs;
use std::net::IpAddr;
use std::path::Path;

/// An interface as seen inside a network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsLink {
    /// Its name (`eth0`).
    pub name: String,
    /// Its ifindex in that namespace.
    pub ifindex: u32,
    /// The peer's ifindex (veth: in the peer's namespace), when it has one (`IFLA_LINK`).
    pub link_index: Option<u32>,
    /// Its MAC, when it has one.
    pub mac: Option<Mac>,
    /// Its addresses, without loopback and IPv6 link-local ones.
    pub ips: Vec<IpAddr>,
    /// A loopback interface.
    pub loopback: bool,
}

/// Reads the interfaces of the network namespace `pid` is in: the OS choke point that tests
/// replace.
pub trait NetnsLinks: std::fmt::Debug + Send + Sync {
    /// Interfaces of the network namespace of `pid` (`<proc>/<pid>/ns/net`).
    fn links(&self, proc_root: &Path, pid: u32) -> Result<Vec<NsLink>, DiscoveryError>;
}

/// The real reader: `setns` in a thread, then `ip -j addr show` (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct IpInNetns;

impl NetnsLinks for IpInNetns {
    fn links(&self, proc_root: &Path, pid: u32) -> Result<Vec<NsLink>, DiscoveryError> {
        let ns_path = proc_root.join(pid.to_string()).join("ns/net");
        let ns = fs::File::open(&ns_path).map_err(|source| DiscoveryError::Netns {
            pid,
            what: "open the namespace",
            source,
        })?;
        let out = std::thread::Builder::new()
            .name(format!("netns-{pid}"))
            .spawn(move || -> Result<std::process::Output, DiscoveryError> {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    DiscoveryError::Netns {
                        pid,
                        what: "enter the namespace",
                        source: e.into(),
                    }
                })?;
                std::process::Command::new("ip")
                    .args(["-j", "addr", "show"])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .map_err(|source| DiscoveryError::Netns {
                        pid,
                        what: "run `ip -j addr show` (iproute2)",
                        source,
                    })
            })
            .map_err(|source| DiscoveryError::Netns {
                pid,
                what: "start the namespace thread",
                source,
            })?
            .join()
            .map_err(|_| DiscoveryError::Netns {
                pid,
                what: "join the namespace thread",
                source: std::io::Error::other("the thread panicked"),
            })??;
        if !out.status.success() {
            return Err(DiscoveryError::Netns {
                pid,
                what: "run `ip -j addr show` (iproute2)",
                source: std::io::Error::other(format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            });
        }
        parse_ip_addr_json(&out.stdout).map_err(|source| DiscoveryError::IpJson { pid, source })
    }
}

#[derive(Deserialize)]
struct IpLink {
    ifindex: u32,
    ifname: String,
    #[serde(default)]
    link_index: Option<u32>,
    #[serde(default)]
    link_type: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    #[serde(default)]
    local: Option<String>,
}

fn wanted(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_loopback(),
        // fe80::/10: every interface has one; it names no workload.
        IpAddr::V6(a) => !a.is_loopback() && (a.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// Parses `ip -j addr show`. Unknown fields are ignored; a MAC or address that does not parse
/// is left out rather than failing the interface.
pub fn parse_ip_addr_json(json: &[u8]) -> Result<Vec<NsLink>, serde_json::Error> {
    let links: Vec<IpLink> = serde_json::from_slice(json)?;
    Ok(links
        .into_iter()
        .map(|l| {
            let loopback = l.link_type == "loopback";
            NsLink {
                mac: if loopback {
                    None
                } else {
                    l.address.as_deref().and_then(|a| a.parse().ok())
                },
                ips: l
                    .addr_info
                    .iter()
                    .filter_map(|a| a.local.as_deref()?.parse().ok())
                    .filter(wanted)
                    .collect(),
                name: l.ifname,
                ifindex: l.ifindex,
                // `ip` prints link_index only when it differs from ifindex.
                link_index: l.link_index.filter(|&i| i != l.ifindex),
                loopback,
            }
        })
        .collect())
}

/// A host interface, from `/sys/class/net`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLink {
    /// Its name.
    pub name: String,
    /// Its ifindex.
    pub ifindex: u32,
    /// Its `iflink` (a veth: the peer's ifindex in the peer's namespace).
    pub iflink: u32,
    /// The device it is enslaved to (a bridge), if any.
    pub master: Option<String>,
}

fn read_u32(p: &Path) -> Option<u32> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Every interface under `sys_class_net` (normally `/sys/class/net`); interfaces that vanish
/// while reading are skipped.
pub fn host_links(sys_class_net: &Path) -> std::io::Result<Vec<HostLink>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(sys_class_net)? {
        let Ok(entry) = entry else { continue };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let dir = sys_class_net.join(&name);
        let (Some(ifindex), Some(iflink)) = (
            read_u32(&dir.join("ifindex")),
            read_u32(&dir.join("iflink")),
        ) else {
            continue;
        };
        let master = fs::read_link(dir.join("master"))
            .ok()
            .and_then(|t| t.file_name()?.to_str().map(str::to_owned));
        out.push(HostLink {
            name,
            ifindex,
            iflink,
            master,
        });
    }
    out.sort_by_key(|l| l.ifindex);
    Ok(out)
}

/// The host-side peer of a container interface (see the module doc for the matching rule).
pub fn host_peer<'a>(link: &NsLink, host: &'a [HostLink]) -> Option<&'a HostLink> {
    let peer = link.link_index?;
    host.iter()
        .find(|h| h.ifindex == peer && h.iflink == link.ifindex)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on this test bed: `ip -j addr show` inside a podman container.
    const PODMAN: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"qdisc":"noqueue","operstate":"UNKNOWN","group":"default","txqlen":1000,"link_type":"loopback","address":"00:00:00:00:00:00","broadcast":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"::1","prefixlen":128,"scope":"host","valid_life_time":4294967295,"preferred_life_time":4294967295}]},{"ifindex":2,"link_index":173,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UP","group":"default","link_type":"ether","address":"96:67:3c:0d:47:4c","broadcast":"ff:ff:ff:ff:ff:ff","link_netnsid":0,"addr_info":[{"family":"inet","local":"198.18.100.2","prefixlen":24,"broadcast":"198.18.100.255","scope":"global","label":"eth0","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"fe80::9467:3cff:fe0d:474c","prefixlen":64,"scope":"link","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;

    #[test]
    fn parses_ip_json() {
        let links = parse_ip_addr_json(PODMAN.as_bytes()).unwrap();
        assert_eq!(links.len(), 2);
        assert!(links[0].loopback);
        assert_eq!(links[0].ips, Vec::<IpAddr>::new());
        assert_eq!(links[0].mac, None);
        assert_eq!(
            links[1],
            NsLink {
                name: "eth0".into(),
                ifindex: 2,
                link_index: Some(173),
                mac: "96:67:3c:0d:47:4c".parse().ok(),
                ips: vec!["198.18.100.2".parse().unwrap()],
                loopback: false,
            }
        );
    }

    #[test]
    fn ip_json_tolerates_odd_values() {
        // A bad MAC and a bad address are left out; link-local IPv6 is dropped; a link_index
        // equal to the ifindex is no peer.
        let j = br#"[{"ifindex":3,"link_index":3,"ifname":"x","address":"zz","addr_info":[{"local":"nope"},{"family":"inet6","local":"fe80::1"},{"family":"inet6","local":"2001:db8::1"}]}]"#;
        let links = parse_ip_addr_json(j).unwrap();
        assert_eq!(links[0].mac, None);
        assert_eq!(links[0].link_index, None);
        assert_eq!(links[0].ips, vec!["2001:db8::1".parse::<IpAddr>().unwrap()]);
        assert!(parse_ip_addr_json(b"{").is_err());
    }

    #[test]
    fn peer_needs_both_indexes() {
        let host = [
            // Same ifindex pairing seen on this host: three host veths point at ifindex 2 in
            // their own peers' namespaces; only one has ifindex 173.
            HostLink {
                name: "pal-demo-c0".into(),
                ifindex: 168,
                iflink: 2,
                master: None,
            },
            HostLink {
                name: "vethbc7271a4".into(),
                ifindex: 173,
                iflink: 2,
                master: Some("podman1".into()),
            },
            HostLink {
                name: "other".into(),
                ifindex: 174,
                iflink: 7,
                master: None,
            },
        ];
        let mut l = NsLink {
            name: "eth0".into(),
            ifindex: 2,
            link_index: Some(173),
            mac: None,
            ips: vec![],
            loopback: false,
        };
        assert_eq!(
            host_peer(&l, &host).map(|h| h.name.as_str()),
            Some("vethbc7271a4")
        );
        l.ifindex = 3;
        assert_eq!(host_peer(&l, &host), None);
        l.link_index = None;
        assert_eq!(host_peer(&l, &host), None);
    }
}
