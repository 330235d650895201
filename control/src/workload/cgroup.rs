//! Container ids from `/proc/<pid>/cgroup`.
//!
//! A line is `hierarchy-id:controllers:path`. Under cgroup v2 there is one line, `0::/path`;
//! under v1 (or hybrid) there is one line per hierarchy, and not every hierarchy places the
//! process in its container's cgroup (on a hybrid host the unified `0::` line is often `/`,
//! and `name=systemd` may be `/` when the runtime uses the cgroupfs manager). So every line is
//! looked at and the first that names a container wins, in the order `0::` (v2), `pids`,
//! `memory`, `cpu`/`cpuacct`, `name=systemd`, then any other.
//!
//! Within a path the innermost component that names a container wins (`docker-in-docker`
//! nests, crun may add a `container` leaf below the scope). Recognised shapes:
//!
//! | runtime | path component |
//! |---|---|
//! | docker | `/docker/<id>`, `docker-<id>.scope`, `…:docker:<id>` |
//! | containerd (Kubernetes) | `cri-containerd-<id>.scope`, `…:cri-containerd:<id>`, a bare `<id>` below a `kubepods…` component |
//! | cri-o | `crio-<id>.scope`, `…:crio:<id>` |
//! | podman | `libpod-<id>.scope`, `libpod-<id>` (cgroupfs, below `/libpod_parent`) |
//!
//! `<id>` is 64 lowercase hex digits. The runtimes' monitor processes (`libpod-conmon-<id>`,
//! `crio-conmon-<id>`) are not the container: a process in one of them has no container id,
//! whatever its other hierarchies say.

use serde::Serialize;

/// The runtime a cgroup path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Docker (dockerd, or Kubernetes through cri-dockerd with the systemd driver).
    Docker,
    /// containerd through its CRI plugin; also a bare id below `kubepods`, which the cgroupfs
    /// driver produces for any CRI runtime (the runtime API tells them apart).
    Containerd,
    /// CRI-O.
    Crio,
    /// Podman (libpod).
    Podman,
}

impl Runtime {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Containerd => "containerd",
            Self::Crio => "crio",
            Self::Podman => "podman",
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container as its cgroup names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId {
    /// Which runtime's naming scheme matched.
    pub runtime: Runtime,
    /// The full id, 64 lowercase hex digits.
    pub id: String,
}

/// What one path component says.
#[derive(Debug, PartialEq, Eq)]
enum Component {
    Container(ContainerId),
    /// A runtime's monitor (conmon): not the container.
    Monitor,
    Other,
}

fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn container(runtime: Runtime, id: &str) -> Component {
    if is_id(id) {
        Component::Container(ContainerId {
            runtime,
            id: id.to_owned(),
        })
    } else {
        Component::Other
    }
}

/// `parent` is the component above, for bare ids; `below_kubepods` whether any ancestor is a
/// `kubepods…` component.
fn component(c: &str, parent: Option<&str>, below_kubepods: bool) -> Component {
    // systemd cgroup driver with cgroup v2 under some kubelets: `<slice>:<prefix>:<id>`.
    if let Some((head, id)) = c.rsplit_once(':') {
        let prefix = head.rsplit(':').next().unwrap_or(head);
        return match prefix {
            "docker" => container(Runtime::Docker, id),
            "cri-containerd" => container(Runtime::Containerd, id),
            "crio" => container(Runtime::Crio, id),
            "libpod" => container(Runtime::Podman, id),
            _ => Component::Other,
        };
    }
    let name = c.strip_suffix(".scope").unwrap_or(c);
    if name.starts_with("libpod-conmon-") || name.starts_with("crio-conmon-") {
        return Component::Monitor;
    }
    for (prefix, runtime) in [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::Crio),
        ("libpod-", Runtime::Podman),
    ] {
        if let Some(id) = name.strip_prefix(prefix) {
            return container(runtime, id);
        }
    }
    if is_id(c) {
        if parent == Some("docker") {
            return container(Runtime::Docker, c);
        }
        if below_kubepods {
            return container(Runtime::Containerd, c);
        }
    }
    Component::Other
}

/// What one cgroup path says: the innermost container component.
fn path(p: &str) -> Component {
    let comps: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
    let mut found = Component::Other;
    let mut below_kubepods = false;
    for (i, c) in comps.iter().enumerate() {
        let parent = i.checked_sub(1).map(|j| comps[j]);
        match component(c, parent, below_kubepods) {
            Component::Other => {}
            hit => found = hit,
        }
        below_kubepods |= c.starts_with("kubepods");
    }
    found
}

/// Rank of a hierarchy's controller list: lower is looked at first.
fn rank(controllers: &str, hierarchy: &str) -> u8 {
    if hierarchy == "0" && controllers.is_empty() {
        return 0;
    }
    let has = |c: &str| controllers.split(',').any(|x| x == c);
    if has("pids") {
        1
    } else if has("memory") {
        2
    } else if has("cpu") || has("cpuacct") {
        3
    } else if has("name=systemd") {
        4
    } else {
        5
    }
}

/// The container a process belongs to, from the text of its `/proc/<pid>/cgroup`; `None` for
/// host processes, runtime monitors and anything unrecognised. Never fails: malformed lines
/// are skipped.
pub fn container_id(cgroup: &str) -> Option<ContainerId> {
    let mut best: Option<(u8, ContainerId)> = None;
    for line in cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(hierarchy), Some(controllers), Some(p)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        match path(p) {
            Component::Monitor => return None,
            Component::Container(id) => {
                let r = rank(controllers, hierarchy);
                if best.as_ref().is_none_or(|(b, _)| r < *b) {
                    best = Some((r, id));
                }
            }
            Component::Other => {}
        }
    }
    best.map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "c10c30dfeae41ba7146144b1e1bcdb508b956f4aa38ec8f688f77e6619cf1ce7";
    const ID2: &str = "3f1ab6b2f0c5e1d2a4b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4";

    fn id(runtime: Runtime, id: &str) -> Option<ContainerId> {
        Some(ContainerId {
            runtime,
            id: id.to_owned(),
        })
    }

    fn v2(path: &str) -> String {
        format!("0::{path}\n")
    }

    #[test]
    fn docker_cgroupfs_v1() {
        let text = format!(
            "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n10:cpu,cpuacct:/docker/{ID}\n\
             1:name=systemd:/docker/{ID}\n0::/system.slice/containerd.service\n"
        );
        assert_eq!(container_id(&text), id(Runtime::Docker, ID));
    }

    #[test]
    fn docker_systemd_v2() {
        assert_eq!(
            container_id(&v2(&format!("/system.slice/docker-{ID}.scope"))),
            id(Runtime::Docker, ID)
        );
    }

    #[test]
    fn docker_in_docker_takes_the_innermost() {
        assert_eq!(
            container_id(&v2(&format!("/docker/{ID}/docker/{ID2}"))),
            id(Runtime::Docker, ID2)
        );
    }

    #[test]
    fn kubernetes_cgroupfs_bare_id() {
        let p = format!("/kubepods/burstable/pod7a1e1c4b-1e1b-4f1a-9f0e-0b3c1d2e3f40/{ID}");
        let text = format!("11:pids:{p}\n4:memory:{p}\n1:name=systemd:{p}\n");
        assert_eq!(container_id(&text), id(Runtime::Containerd, ID));
        // The pod's own cgroup (the pause sandbox lives in a child) is no container.
        assert_eq!(
            container_id(&v2(
                "/kubepods/burstable/pod7a1e1c4b-1e1b-4f1a-9f0e-0b3c1d2e3f40"
            )),
            None
        );
    }

    #[test]
    fn kubernetes_systemd_containerd() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/\
             kubepods-burstable-pod7a1e1c4b_1e1b_4f1a_9f0e_0b3c1d2e3f40.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(container_id(&v2(&p)), id(Runtime::Containerd, ID));
    }

    #[test]
    fn kubernetes_systemd_colon_form() {
        let p = format!(
            "/system.slice/containerd.service/\
             kubepods-besteffort-pod7a1e1c4b_1e1b.slice:cri-containerd:{ID}"
        );
        assert_eq!(container_id(&v2(&p)), id(Runtime::Containerd, ID));
        let p = format!("/kubepods-pod1.slice:docker:{ID}");
        assert_eq!(container_id(&v2(&p)), id(Runtime::Docker, ID));
    }

    #[test]
    fn crio() {
        let p = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podab.slice/crio-{ID}.scope"
        );
        assert_eq!(container_id(&v2(&p)), id(Runtime::Crio, ID));
        let p = format!("/kubepods.slice/kubepods-podab.slice/crio-conmon-{ID}.scope");
        assert_eq!(container_id(&v2(&p)), None);
    }

    #[test]
    fn podman_systemd_and_crun_leaf() {
        let p = format!("/machine.slice/libpod-{ID}.scope");
        assert_eq!(container_id(&v2(&p)), id(Runtime::Podman, ID));
        let p = format!("/machine.slice/libpod-{ID}.scope/container");
        assert_eq!(container_id(&v2(&p)), id(Runtime::Podman, ID));
        let p =
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope");
        assert_eq!(container_id(&v2(&p)), id(Runtime::Podman, ID));
    }

    /// Captured on this test bed: podman + runc, cgroupfs manager, hybrid cgroups.
    #[test]
    fn podman_cgroupfs_hybrid() {
        let text = format!(
            "9:name=systemd:/libpod_parent/libpod-{ID}\n8:pids:/libpod_parent/libpod-{ID}\n\
             7:blkio:/libpod_parent/libpod-{ID}\n6:freezer:/libpod_parent/libpod-{ID}\n\
             5:devices:/libpod_parent/libpod-{ID}\n4:memory:/libpod_parent/libpod-{ID}\n\
             3:cpuset:/libpod_parent/libpod-{ID}\n2:cpuacct:/libpod_parent/libpod-{ID}\n\
             1:cpu:/libpod_parent/libpod-{ID}\n0::/libpod_parent/libpod-{ID}\n"
        );
        assert_eq!(container_id(&text), id(Runtime::Podman, ID));
    }

    /// conmon on the same host: `/libpod_parent/conmon` names no container.
    #[test]
    fn podman_conmon_cgroupfs_is_not_a_container() {
        let text = "9:name=systemd:/\n8:pids:/libpod_parent/conmon\n4:memory:/libpod_parent/conmon\n\
                    1:cpu:/libpod_parent/conmon\n0::/\n";
        assert_eq!(container_id(text), None);
    }

    #[test]
    fn podman_conmon_scope_vetoes_other_hierarchies() {
        let text = format!(
            "1:name=systemd:/machine.slice/libpod-conmon-{ID}.scope\n4:memory:/libpod_parent/libpod-{ID}\n"
        );
        assert_eq!(container_id(&text), None);
    }

    #[test]
    fn v1_picks_the_controller_that_names_the_container() {
        // name=systemd left at the root by the cgroupfs manager; pids names the container.
        let text = format!(
            "12:hugetlb:/\n11:pids:/docker/{ID}\n3:net_cls,net_prio:/\n1:name=systemd:/\n0::/\n"
        );
        assert_eq!(container_id(&text), id(Runtime::Docker, ID));
        // Hierarchies that disagree: the unified one wins, then pids.
        let text = format!("11:pids:/docker/{ID2}\n0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(container_id(&text), id(Runtime::Docker, ID));
        let text = format!("1:name=systemd:/docker/{ID2}\n5:pids:/docker/{ID}\n");
        assert_eq!(container_id(&text), id(Runtime::Docker, ID));
    }

    #[test]
    fn host_processes_and_junk() {
        assert_eq!(container_id("0::/init.scope\n"), None);
        assert_eq!(container_id("0::/system.slice/sshd.service\n"), None);
        assert_eq!(
            container_id("1:name=systemd:/user.slice/user-0.slice/session-1.scope\n0::/\n"),
            None
        );
        assert_eq!(container_id(""), None);
        assert_eq!(container_id("garbage\n::\n0:\n"), None);
        // Not 64 hex: short ids, upper case, a bare id outside docker/kubepods.
        assert_eq!(container_id("0::/docker/c10c30dfeae4\n"), None);
        assert_eq!(
            container_id(&v2(&format!("/docker/{}", ID.to_uppercase()))),
            None
        );
        assert_eq!(container_id(&v2(&format!("/system.slice/{ID}"))), None);
        assert_eq!(container_id(&v2("/system.slice/docker.service")), None);
        assert_eq!(container_id(&v2("/system.slice/docker-.scope")), None);
    }
}
