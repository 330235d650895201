//! The exec gate of protect mode: the [`Policy`] the fanotify responder asks before a
//! program runs in a marked container.
//!
//! At the gate only the file is known (the process's new name is not set yet), so it judges
//! by **path**: an exec is allowed when an `allow` entry of the group's profile names that
//! path (or `*`) and no `deny` entry names it for any program (`name = "*"`); the dynamic
//! loader is always allowed (a dynamic program opens it for exec as well). What passes the
//! gate is judged by name and path by the observer right after, which kills a program whose
//! name is not allowed (the SIGKILL path). Every denial is reported to the engine, once per
//! file and policy (later ones are answered from the responder's cache).
//!
//! **Zero drift** (`[process] zero_drift`): in protect, a file changed (mtime or ctime) at or
//! after its container started is refused even when its path is listed: only what came with
//! the image runs.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::attribution::ProcInfo;
use super::engine::{Observation, Outcome, ProcessPolicy};
use crate::fanotify::{Policy, PolicyKey, Request, Verdict};
use crate::model::{Action, Mode, ProcessEntry};

/// The container of `pid`, from its cgroup.
pub(crate) fn container_of(pid: i32) -> Option<String> {
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

/// Unix seconds at which each protected container started (zero drift: a file changed at or
/// after that is not from the image).
pub type Started = HashMap<String, i64>;

/// When the process with start time `ticks` (clock ticks after boot) started, Unix seconds.
pub fn started_at(ticks: u64) -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(btime + i64::try_from(ticks / hz).ok()?)
}

/// Whether a file with these times was written after `since` (Unix seconds): the later of
/// mtime and ctime (ctime cannot be set back) counts.
pub fn drifted(mtime: (i64, i64), ctime: (i64, i64), since: i64) -> bool {
    mtime.0.max(ctime.0) >= since
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
    /// Zero drift: refuse files written after their container started.
    pub zero_drift: bool,
    /// Start times of the protected containers.
    pub started: Arc<ArcSwap<Started>>,
}

impl Policy for ExecGate {
    fn cache_key(&self, req: &Request) -> Option<PolicyKey> {
        let c = container_of(req.pid)?;
        let p = self.policy.load();
        let m = p.containers.get(&c)?;
        let mut h = DefaultHasher::new();
        m.group.hash(&mut h);
        self.epoch.load(Ordering::Acquire).hash(&mut h);
        Some(h.finish())
    }

    fn decide(&self, req: &Request) -> Verdict {
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
        let drift = self.zero_drift
            && self
                .started
                .load()
                .get(&container)
                .is_some_and(|since| drifted(req.file.mtime, req.file.ctime, *since));
        if !drift && gate_allows(profile, &path) {
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
            finding: drift.then_some("drift: a program written after the container started"),
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
    fn drift_is_any_change_at_or_after_the_start() {
        assert!(!drifted((99, 0), (99, 5), 100));
        assert!(drifted((100, 0), (50, 0), 100));
        assert!(
            drifted((10, 0), (150, 0), 100),
            "an mtime set back does not hide it"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let me = crate::workload::procfs::parse_stat(
            &std::fs::read_to_string("/proc/self/stat").unwrap(),
        )
        .unwrap();
        let t = started_at(me.start_time).unwrap();
        assert!(t <= now && t > now - 3600, "{t} vs {now}");
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
