//! The exec gate of protect mode: the [`ExecPolicy`] the fanotify responder asks before a
//! program runs in a marked container.
//!
//! At the gate only the file is known (the process's new name is not set yet), so it judges
//! by **path**: an exec is allowed when an `allow` entry of the group's profile names that
//! path (or `*`) and no `deny` entry names it for any program (`name = "*"`); the dynamic
//! loader is always allowed (a dynamic program opens it for exec as well). What passes the
//! gate is judged by name and path by the observer right after, which kills a program whose
//! name is not allowed (the SIGKILL path). Every denial is reported to the engine, once per
//! file and policy (later ones are answered from the responder's cache).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::attribution::ProcInfo;
use super::engine::{Observation, Outcome, ProcessPolicy};
use super::fanotify::{ExecPolicy, ExecRequest, PolicyKey, Verdict};
use crate::model::{Action, Mode, ProcessEntry};

/// The container of `pid`, from its cgroup.
fn container_of(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    crate::workload::cgroup::container_id(&text).map(|c| c.id)
}

/// The dynamic loaders (glibc's and musl's), allowed for every program.
pub fn is_loader(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or("");
    let dir = path.strip_suffix(file).unwrap_or("");
    (file.starts_with("ld-linux") || file.starts_with("ld-musl") || file.starts_with("ld64.so"))
        && (dir.starts_with("/lib") || dir.starts_with("/usr/lib"))
}

/// Whether the gate lets the program at `path` run under `profile`.
pub fn gate_allows(profile: &[ProcessEntry], path: &str) -> bool {
    let named = |e: &ProcessEntry| e.path == "*" || e.path == path;
    if profile
        .iter()
        .any(|e| e.action == Action::Deny && e.name == "*" && named(e))
    {
        return false;
    }
    profile
        .iter()
        .any(|e| e.action == Action::Allow && named(e))
}

/// The gate; cheap to clone through its `Arc`s.
#[derive(Debug, Clone)]
pub struct ExecGate {
    /// The engine's snapshot.
    pub policy: Arc<ArcSwap<ProcessPolicy>>,
    /// Bumped on every snapshot change (part of the cache key).
    pub epoch: Arc<AtomicU64>,
    /// Denials go to the engine as observations.
    pub tx: mpsc::Sender<Observation>,
}

impl ExecPolicy for ExecGate {
    fn cache_key(&self, req: &ExecRequest) -> Option<PolicyKey> {
        let c = container_of(req.pid)?;
        let p = self.policy.load();
        let m = p.containers.get(&c)?;
        let mut h = DefaultHasher::new();
        m.group.hash(&mut h);
        self.epoch.load(Ordering::Acquire).hash(&mut h);
        Some(h.finish())
    }

    fn decide(&self, req: &ExecRequest) -> Verdict {
        let Some(container) = container_of(req.pid) else {
            return Verdict::Allow;
        };
        let p = self.policy.load();
        let Some(m) = p.containers.get(&container) else {
            return Verdict::Allow;
        };
        if m.mode != Mode::Protect || m.exempt {
            return Verdict::Allow;
        }
        let path = req.path.to_string_lossy();
        if is_loader(&path) {
            return Verdict::Allow;
        }
        let profile = p.profiles.get(&m.group).map_or(&[][..], Vec::as_slice);
        if gate_allows(profile, &path) {
            return Verdict::Allow;
        }
        let info = ProcInfo {
            pid: u32::try_from(req.pid).unwrap_or(0),
            name: path.rsplit('/').next().map(str::to_owned),
            exe: Some(path.clone().into_owned()),
            container: Some(container),
            ..ProcInfo::default()
        };
        let _ = self.tx.try_send(Observation {
            info,
            group: m.group.clone(),
            mode: m.mode,
            outcome: Outcome::Block,
            killed: false,
            rescan: false,
            finding: None,
        });
        Verdict::Deny
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, path: &str, action: Action) -> ProcessEntry {
        ProcessEntry {
            name: name.into(),
            path: path.into(),
            action,
            learned: true,
        }
    }

    #[test]
    fn by_path_with_deny_for_any_name() {
        let p = vec![
            e("ls", "/bin/busybox", Action::Allow),
            e("*", "/tmp/evil", Action::Deny),
            e("sh", "*", Action::Allow),
        ];
        assert!(gate_allows(&p[..1], "/bin/busybox"));
        assert!(!gate_allows(&p[..1], "/tmp/x"));
        // A name-only allow lets any path through the gate (the name is checked after).
        assert!(gate_allows(&p, "/tmp/x"));
        assert!(!gate_allows(&p, "/tmp/evil"), "deny for any name wins");
        assert!(!gate_allows(&[], "/bin/busybox"));
        // A deny of one name is the observer's business, not the gate's.
        assert!(gate_allows(
            &[
                e("ls", "/bin/busybox", Action::Allow),
                e("id", "/bin/busybox", Action::Deny)
            ],
            "/bin/busybox"
        ));
    }

    #[test]
    fn loaders() {
        for p in [
            "/lib64/ld-linux-x86-64.so.2",
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/lib/ld-musl-x86_64.so.1",
            "/usr/lib/ld-linux-aarch64.so.1",
        ] {
            assert!(is_loader(p), "{p}");
        }
        for p in ["/tmp/ld-linux-x86-64.so.2", "/bin/busybox", "ld-linux", ""] {
            assert!(!is_loader(p), "{p}");
        }
    }
}
