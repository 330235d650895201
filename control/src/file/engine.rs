//! The file engine's loop: a fanotify responder (the same code as the exec gate's,
//! [`crate::fanotify`]) with one filesystem mark per container, reached through
//! `/proc/<root pid>/root` — never a mark per file.
//!
//! Each container's mark asks for `FAN_CLOSE_WRITE` (changes, for monitor rules and the
//! defaults) and, when its group has block rules, for opens: `FAN_OPEN_PERM` in protect (the
//! open waits for the verdict and fails with `EPERM` when denied), `FAN_OPEN` otherwise
//! (reported or learned, never delayed). A file no rule watches gets an ignore mark after its
//! first event (surviving writes: rules are about paths), so the kernel stops reporting it
//! until the rules or the containers change; a file only monitor rules watch stops reporting
//! opens. Rule and mode changes flush the ignore marks and the marks follow within one
//! reload.
//!
//! Reports go to the engine task: discover adds the program to the rule's `apps` (a default
//! becomes a learned group rule), monitor and protect record a `file_violation` event.
//!
//! Known limits: a change made by renaming another file over a watched one (`sed -i`, editors)
//! is a write to the other file's path and is not seen; files bind-mounted into the container
//! from elsewhere (podman's `/etc/hosts`, `/etc/resolv.conf`; volumes) are on other
//! filesystems than the marked root and are not watched.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use nix::sys::fanotify::MaskFlags;
use tokio::sync::mpsc;

use super::rules::{Judgement, RuleSet, Watch};
use crate::fanotify::{Access, MarkScope, Policy, PolicyKey, Request, Responder, Verdict};
use crate::model::{EventKind, FileBehavior, FileRule, Mode, NewEvent, Severity};
use crate::process::attribution::program_of;
use crate::process::gate::container_of;
use crate::service::Core;

/// Where a container belongs, for files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its group.
    pub group: String,
    /// The group's file mode.
    pub mode: Mode,
    /// Alert only.
    pub exempt: bool,
}

/// What the policy judges with: rebuilt from the store on every change.
#[derive(Debug, Default)]
pub struct FileSnapshot {
    /// Container id -> membership.
    pub containers: HashMap<String, Member>,
    /// Group -> its rules (with the defaults), for groups that have rules.
    pub rules: HashMap<String, RuleSet>,
    /// The defaults alone, for every other group.
    pub defaults: RuleSet,
    /// What it was built from, to tell a real change from a reload.
    source: (Containers, BTreeMap<String, Vec<FileRule>>),
}

/// Container id -> (group, file mode, exempt).
pub type Containers = BTreeMap<String, (String, Mode, bool)>;

impl FileSnapshot {
    /// Builds the snapshot.
    pub fn new(containers: Containers, rules: BTreeMap<String, Vec<FileRule>>) -> Self {
        Self {
            containers: containers
                .iter()
                .map(|(id, (group, mode, exempt))| {
                    (
                        id.clone(),
                        Member {
                            group: group.clone(),
                            mode: *mode,
                            exempt: *exempt,
                        },
                    )
                })
                .collect(),
            rules: rules
                .iter()
                .map(|(g, r)| (g.clone(), RuleSet::new(r)))
                .collect(),
            defaults: RuleSet::new(&[]),
            source: (containers, rules),
        }
    }

    /// The rules of `group`.
    pub fn rules_of(&self, group: &str) -> &RuleSet {
        self.rules.get(group).unwrap_or(&self.defaults)
    }

    /// The group's rules as stored.
    fn stored(&self, group: &str) -> &[FileRule] {
        self.source.1.get(group).map_or(&[][..], Vec::as_slice)
    }

    /// What a container's mark asks for.
    fn mask(&self, m: &Member) -> MaskFlags {
        let mut mask = MaskFlags::FAN_CLOSE_WRITE;
        if self.rules_of(&m.group).blocks() {
            mask |= if m.mode == Mode::Protect && !m.exempt {
                MaskFlags::FAN_OPEN_PERM
            } else {
                MaskFlags::FAN_OPEN
            };
        }
        mask
    }
}

/// Builds the snapshot from the store.
pub async fn load(core: &Core) -> Result<FileSnapshot, String> {
    let (snap, workloads) = core
        .db(|s| Ok((s.policy_snapshot()?, s.workloads()?)))
        .await
        .map_err(|e| e.message)?;
    let modes: HashMap<&str, Mode> = snap
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.file_mode))
        .collect();
    let containers = workloads
        .iter()
        .filter_map(|w| {
            let mode = *modes.get(w.group.as_str())?;
            Some((w.id.clone(), (w.group.clone(), mode, w.exempt)))
        })
        .collect();
    Ok(FileSnapshot::new(containers, snap.file_rules))
}

/// One access worth learning or reporting.
#[derive(Debug, Clone)]
pub struct Report {
    /// The process.
    pub pid: i32,
    /// Its program name, when known.
    pub name: Option<String>,
    /// Its executable, when known.
    pub exe: Option<String>,
    /// The file, as the container names it.
    pub path: String,
    /// Open or write.
    pub access: Access,
    /// The container.
    pub container: String,
    /// Its group.
    pub group: String,
    /// The group's file mode.
    pub mode: Mode,
    /// The rule: filter, recursive, behavior, whether a default.
    pub filter: String,
    /// The rule is recursive.
    pub recursive: bool,
    /// The rule's behavior.
    pub behavior: FileBehavior,
    /// The rule is one of the defaults.
    pub default: bool,
    /// The open was denied.
    pub denied: bool,
}

/// Counters of the engine.
#[derive(Debug, Default)]
pub struct FileCounters {
    /// Accesses reported to the engine task (violations and learning).
    pub reports: AtomicU64,
    /// Reports dropped because the engine task was behind.
    pub dropped: AtomicU64,
    /// Opens denied.
    pub denied: AtomicU64,
    /// Containers whose filesystem is marked now.
    pub marked: AtomicU64,
    /// The responder's counters, refreshed twice a second.
    pub responder: Mutex<Option<crate::fanotify::Stats>>,
}

/// What an ignore mark may silence for a file so watched.
fn silence(watch: Watch) -> MaskFlags {
    match watch {
        Watch::Nothing => MaskFlags::all(),
        Watch::Changes => MaskFlags::FAN_OPEN | MaskFlags::FAN_OPEN_PERM,
        Watch::Everything => MaskFlags::empty(),
    }
}

/// Filesystem (`st_dev` of its root) -> container: a file's container from the event's fd,
/// whether or not the process is still there to ask.
type Devices = HashMap<u64, String>;

/// The policy the responder asks.
#[derive(Debug)]
pub struct FilePolicy {
    snap: Arc<ArcSwap<FileSnapshot>>,
    devices: Arc<ArcSwap<Devices>>,
    tx: mpsc::Sender<Report>,
    counters: Arc<FileCounters>,
}

impl FilePolicy {
    /// The container of the file (by its filesystem), else of the process.
    fn container(&self, req: &Request) -> Option<String> {
        self.devices
            .load()
            .get(&req.file.dev)
            .cloned()
            .or_else(|| container_of(req.pid))
    }

    /// Judges `req` and reports a violation: whether to deny it, and what the kernel may stop
    /// reporting for the file.
    fn judge(&self, req: &Request) -> (bool, MaskFlags) {
        let snap = self.snap.load();
        // Unknown: nothing to judge by, and nothing to silence either (the answer may be
        // known next time).
        let Some(container) = self.container(req) else {
            return (false, MaskFlags::empty());
        };
        let Some(m) = snap.containers.get(&container) else {
            return (false, MaskFlags::empty());
        };
        let path = req.path.to_string_lossy();
        let rules = snap.rules_of(&m.group);
        let watch = rules.watch(&path);
        if watch == Watch::Nothing {
            return (false, silence(watch));
        }
        let (name, exe) = program_of(req.pid);
        let Judgement::Violation {
            filter,
            recursive,
            behavior,
            default,
        } = rules.judge(&path, req.access, name.as_deref(), exe.as_deref())
        else {
            return (false, silence(watch));
        };
        let deny = behavior == FileBehavior::Block
            && m.mode == Mode::Protect
            && !m.exempt
            && req.access != Access::Write;
        let report = Report {
            pid: req.pid,
            name,
            exe,
            path: path.into_owned(),
            access: req.access,
            container,
            group: m.group.clone(),
            mode: m.mode,
            filter,
            recursive,
            behavior,
            default,
            denied: deny,
        };
        if deny {
            self.counters.denied.fetch_add(1, Ordering::Relaxed);
        }
        let c = if self.tx.try_send(report).is_ok() {
            &self.counters.reports
        } else {
            &self.counters.dropped
        };
        c.fetch_add(1, Ordering::Relaxed);
        (deny, silence(watch))
    }
}

impl Policy for FilePolicy {
    fn cache_key(&self, _req: &Request) -> Option<PolicyKey> {
        // Verdicts depend on the program, and every denial is reported: decided each time.
        // Files no block rule watches stop raising open events through ignore marks.
        None
    }

    fn decide(&self, req: &Request) -> Verdict {
        if self.judge(req).0 {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    }

    fn ignorable(&self, req: &Request) -> MaskFlags {
        let snap = self.snap.load();
        let Some(m) = self
            .container(req)
            .and_then(|c| snap.containers.get(&c).cloned())
        else {
            return MaskFlags::empty();
        };
        silence(snap.rules_of(&m.group).watch(&req.path.to_string_lossy()))
    }

    fn observe(&self, req: &Request) -> MaskFlags {
        self.judge(req).1
    }
}

/// The marks on container filesystems.
#[derive(Debug, Default)]
struct Marks {
    /// Container id -> (its root, the mask asked for).
    marked: HashMap<String, (PathBuf, MaskFlags)>,
    /// The filesystems of the marked containers.
    devices: Devices,
}

impl Marks {
    /// Marks every known container's filesystem with the mask its group and mode need.
    fn sync(&mut self, r: &Responder, snap: &FileSnapshot, found: &[crate::workload::Discovered]) {
        let want: HashMap<&str, (u32, MaskFlags)> = found
            .iter()
            .filter_map(|d| {
                let m = snap.containers.get(&d.container_id)?;
                Some((d.container_id.as_str(), (d.root_pid, snap.mask(m))))
            })
            .collect();
        self.devices.retain(|_, id| want.contains_key(id.as_str()));
        self.marked.retain(|id, (path, mask)| {
            if want.contains_key(id.as_str()) {
                return true;
            }
            // Gone (its filesystem with it) or no longer known.
            let _ = r.unmark_mask(path, MarkScope::Filesystem, *mask);
            false
        });
        for (id, (pid, mask)) in want {
            let path = PathBuf::from(format!("/proc/{pid}/root"));
            let old = match self.marked.get(id) {
                Some((p, m)) if *p == path && *m == mask => continue,
                Some((p, m)) => Some((p.clone(), *m)),
                None => None,
            };
            if let Some((p, m)) = &old {
                let _ = r.unmark_mask(p, MarkScope::Filesystem, *m & !mask);
            }
            match r.mark_mask(&path, MarkScope::Filesystem, mask) {
                Ok(()) => {
                    if let Ok(st) = nix::sys::stat::stat(&path) {
                        self.devices.insert(st.st_dev, id.to_owned());
                    }
                    tracing::info!(container = %id, ?mask, "file engine watching");
                    self.marked.insert(id.to_owned(), (path, mask));
                }
                Err(e) => {
                    tracing::warn!(container = %id, error = %crate::error_chain(&e), "cannot mark the container's filesystem");
                    self.marked.remove(id);
                }
            }
        }
    }
}

fn violation(r: &Report) -> NewEvent {
    let name = r.name.as_deref().unwrap_or("?");
    let exe = r.exe.as_deref().unwrap_or("?");
    let (verb, access) = match r.access {
        Access::Write => ("wrote", "write"),
        Access::Open | Access::Exec => ("opened", "open"),
    };
    let what = if r.denied {
        format!("denied by the rule `{}`", r.filter)
    } else if r.default {
        format!(
            "a change to a file Palisade watches by default (`{}`)",
            r.filter
        )
    } else {
        format!("not allowed by the rule `{}`", r.filter)
    };
    NewEvent {
        kind: EventKind::FileViolation,
        group: Some(r.group.clone()),
        workload: Some(r.container.clone()),
        details: serde_json::json!({
            "pid": r.pid,
            "name": r.name,
            "exe": r.exe,
            "path": r.path,
            "access": access,
            "filter": r.filter,
            "recursive": r.recursive,
            "behavior": r.behavior,
            "default": r.default,
            "mode": r.mode,
            "action": if r.denied { "denied" } else { "alert" },
        }),
        ..NewEvent::system(
            if r.denied {
                Severity::Critical
            } else {
                Severity::Warning
            },
            format!(
                "{name} ({exe}) {verb} {} in {} [{} mode]: {what}",
                r.path,
                r.group,
                crate::process::engine::mode_name(r.mode)
            ),
        )
    }
}

/// Programs learned per group and rule, until the next flush.
type Learned = BTreeMap<String, BTreeMap<(String, bool), BTreeSet<String>>>;

/// The rules to store for what was learned: the group's rule with the new apps added, or a
/// new learned monitor rule for a default.
fn learned_rules(
    stored: &[FileRule],
    learned: BTreeMap<(String, bool), BTreeSet<String>>,
) -> Vec<FileRule> {
    let mut add = Vec::new();
    for ((filter, recursive), apps) in learned {
        match stored.iter().find(|r| r.filter == filter) {
            Some(r) => {
                let mut rule = r.clone();
                let before = rule.apps.len();
                for a in apps {
                    if !rule.apps.contains(&a) {
                        rule.apps.push(a);
                    }
                }
                if rule.apps.len() > before {
                    add.push(rule);
                }
            }
            None => add.push(FileRule {
                filter,
                recursive,
                behavior: FileBehavior::Monitor,
                apps: apps.into_iter().collect(),
                learned: true,
            }),
        }
    }
    add
}

/// Runs the engine until `stop` turns true.
pub async fn run(
    core: Arc<Core>,
    cfg: crate::config::FileConfig,
    counters: Arc<FileCounters>,
    mut found: tokio::sync::watch::Receiver<Arc<Vec<crate::workload::Discovered>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let snap = Arc::new(ArcSwap::from_pointee(load(&core).await.unwrap_or_default()));
    let (tx, mut rx) = mpsc::channel::<Report>(4096);
    let mut rcfg = crate::fanotify::Config::answering(
        cfg.queue,
        Duration::from_millis(cfg.deadline_ms),
        cfg.overflow_allows,
        cfg.stall_allows,
    );
    rcfg.mask = MaskFlags::FAN_CLOSE_WRITE | MaskFlags::FAN_OPEN | MaskFlags::FAN_OPEN_PERM;
    rcfg.ignore_survives_modify = true;
    let devices = Arc::new(ArcSwap::from_pointee(Devices::new()));
    let policy = FilePolicy {
        snap: Arc::clone(&snap),
        devices: Arc::clone(&devices),
        tx,
        counters: Arc::clone(&counters),
    };
    let responder = match Responder::start(rcfg, policy) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("file engine off: {}", crate::error_chain(&e));
            tracing::error!("{msg}");
            let _ = core.record(NewEvent::system(Severity::Critical, msg)).await;
            return;
        }
    };
    let _ = core.file.set(Arc::clone(&counters));
    let mut marks = Marks::default();
    let sync =
        |marks: &mut Marks,
         found: &tokio::sync::watch::Receiver<Arc<Vec<crate::workload::Discovered>>>| {
            let containers = found.borrow().clone();
            marks.sync(&responder, &snap.load(), &containers);
            devices.store(Arc::new(marks.devices.clone()));
            counters
                .marked
                .store(marks.marked.len() as u64, Ordering::Relaxed);
        };
    sync(&mut marks, &found);
    tracing::info!("file engine running");
    let mut revs = core.policy_watch();
    let mut profile_revs = core.profiles_watch();
    let mut learned: Learned = BTreeMap::new();
    let mut flush = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = revs.changed() => {}
            _ = profile_revs.changed() => {}
            _ = found.changed() => {}
            r = rx.recv() => {
                let Some(r) = r else { break };
                if r.mode == Mode::Discover && !r.denied {
                    if let Some(app) = r.name.clone().or(r.exe.clone()) {
                        learned
                            .entry(r.group.clone())
                            .or_default()
                            .entry((r.filter.clone(), r.recursive))
                            .or_default()
                            .insert(app);
                    }
                } else {
                    let _ = core.record(violation(&r)).await;
                }
                continue;
            }
            _ = flush.tick() => {
                if let Ok(mut g) = counters.responder.lock() {
                    *g = Some(responder.stats());
                }
                if learned.is_empty() {
                    continue;
                }
                for (group, rules) in std::mem::take(&mut learned) {
                    let add = learned_rules(snap.load().stored(&group), rules);
                    if add.is_empty() {
                        continue;
                    }
                    match core.db(move |s| s.patch_file_rules(&group, add, Vec::new(), "learning")).await {
                        Ok((_, ev)) => core.publish([ev]),
                        Err(e) => tracing::warn!(error = %e.message, "cannot store learned file rules"),
                    }
                }
            }
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
        // A policy, rule or container change (or our own learning).
        match load(&core).await {
            Ok(next) => {
                if next.source != snap.load().source {
                    snap.store(Arc::new(next));
                    responder.clear_cache();
                }
                sync(&mut marks, &found);
            }
            Err(e) => tracing::warn!(error = %e, "cannot reload the file rules"),
        }
    }
    let stats = responder.shutdown();
    tracing::info!(?stats, "file engine stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(filter: &str, behavior: FileBehavior, apps: &[&str]) -> FileRule {
        FileRule {
            filter: filter.into(),
            recursive: false,
            behavior,
            apps: apps.iter().map(|a| (*a).to_owned()).collect(),
            learned: false,
        }
    }

    #[test]
    fn learning_adds_apps_or_makes_a_rule_from_a_default() {
        let stored = vec![rule("/etc/app.conf", FileBehavior::Block, &["app"])];
        let mut l = BTreeMap::new();
        l.insert(
            ("/etc/app.conf".to_owned(), false),
            BTreeSet::from(["app".to_owned(), "cat".to_owned()]),
        );
        l.insert(
            ("/etc/passwd".to_owned(), false),
            BTreeSet::from(["sh".to_owned()]),
        );
        let add = learned_rules(&stored, l);
        assert_eq!(
            add,
            vec![
                rule("/etc/app.conf", FileBehavior::Block, &["app", "cat"]),
                FileRule {
                    learned: true,
                    ..rule("/etc/passwd", FileBehavior::Monitor, &["sh"])
                }
            ]
        );
        // Nothing new: nothing stored.
        let mut l = BTreeMap::new();
        l.insert(
            ("/etc/app.conf".to_owned(), false),
            BTreeSet::from(["app".to_owned()]),
        );
        assert!(learned_rules(&stored, l).is_empty());
    }

    #[test]
    fn marks_ask_for_opens_only_where_block_rules_are() {
        let mut containers = BTreeMap::new();
        containers.insert("a".to_owned(), ("web".to_owned(), Mode::Protect, false));
        containers.insert("b".to_owned(), ("web".to_owned(), Mode::Protect, true));
        containers.insert("c".to_owned(), ("db".to_owned(), Mode::Protect, false));
        let mut rules = BTreeMap::new();
        rules.insert(
            "web".to_owned(),
            vec![rule("/etc/secret", FileBehavior::Block, &[])],
        );
        let s = FileSnapshot::new(containers, rules);
        let m = |id: &str| s.mask(&s.containers[id]);
        assert_eq!(
            m("a"),
            MaskFlags::FAN_CLOSE_WRITE | MaskFlags::FAN_OPEN_PERM
        );
        assert_eq!(
            m("b"),
            MaskFlags::FAN_CLOSE_WRITE | MaskFlags::FAN_OPEN,
            "exempt: alert only"
        );
        assert_eq!(m("c"), MaskFlags::FAN_CLOSE_WRITE, "no block rules");
        assert_eq!(
            silence(Watch::Changes),
            MaskFlags::FAN_OPEN | MaskFlags::FAN_OPEN_PERM
        );
    }
}
