//! The process engine's decisions and its loop in `palisade up`.
//!
//! ```text
//!  [observer thread] connector -> exec: attribute (from /proc, at once) -> judge against the
//!        |                          snapshot (ArcSwap) -> protect without an exec mark: SIGKILL
//!        |                          through a pidfd, right there
//!        |            fork/exit/uid -> caches, root-gain check;  ENOBUFS -> rescan /proc
//!        v bounded channel (overflow counted)
//!  [engine task] learn (batched into the group's profile) / record process_violation events
//!                rebuild the snapshot on policy or profile changes (within milliseconds)
//! ```
//!
//! **Matching** ([`judge`]): an entry matches a program when its `name` is `*` or the
//! program name and its `path` is `*` or the executable path; any matching `deny` entry
//! denies, else any matching `allow` allows, else the program is not listed.
//!
//! **Modes** ([`outcome`]): discover learns what is not listed (deny entries still alert),
//! monitor alerts on what is not allowed, protect blocks it (exempt workloads only alert).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::attribution::{Attributor, ProcInfo};
use super::connector::{Batch, Connector, ProcEvent};
use crate::model::{Action, EventKind, Mode, NewEvent, ProcessEntry, Severity};
use crate::service::Core;

/// A profile's verdict on a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// An allow entry matches (and no deny entry).
    Allowed,
    /// A deny entry matches.
    Denied,
    /// No entry matches.
    NotListed,
}

fn matches(pattern: &str, value: &str) -> bool {
    pattern == "*" || pattern == value
}

/// `profile`'s verdict on program `name` at `path` (see the module documentation).
pub fn judge(profile: &[ProcessEntry], name: &str, path: &str) -> Listed {
    judge_at(profile, name, Some(path))
}

/// `profile`'s verdict on a program known by name only (its executable could not be read):
/// an entry matches by name whatever its path, a deny only when it is for any path.
pub fn judge_name(profile: &[ProcessEntry], name: &str) -> Listed {
    judge_at(profile, name, None)
}

fn judge_at(profile: &[ProcessEntry], name: &str, path: Option<&str>) -> Listed {
    let mut allowed = false;
    for e in profile.iter().filter(|e| matches(&e.name, name)) {
        let path_matches = path.map_or(e.path == "*", |p| matches(&e.path, p));
        match e.action {
            Action::Deny if path_matches => return Listed::Denied,
            Action::Deny => {}
            Action::Allow if path.is_none() || path_matches => allowed = true,
            Action::Allow => {}
        }
    }
    if allowed {
        Listed::Allowed
    } else {
        Listed::NotListed
    }
}

/// What the engine does about one program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing: allowed.
    Pass,
    /// Add it to the profile (discover).
    Learn,
    /// Raise a `process_violation` and let it run.
    Alert,
    /// Stop it and raise a `process_violation`.
    Block,
}

/// The outcome for a program of `listed` status in a workload of `mode`.
pub fn outcome(mode: Mode, exempt: bool, listed: Listed) -> Outcome {
    match (mode, listed) {
        (_, Listed::Allowed) => Outcome::Pass,
        (Mode::Discover, Listed::NotListed) => Outcome::Learn,
        (Mode::Discover | Mode::Monitor, _) => Outcome::Alert,
        (Mode::Protect, _) if exempt => Outcome::Alert,
        (Mode::Protect, _) => Outcome::Block,
    }
}

/// Where a container belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its workload's group.
    pub group: String,
    /// The group's process mode.
    pub mode: Mode,
    /// Alert only.
    pub exempt: bool,
}

/// What the observer judges with: rebuilt from the store on every change.
#[derive(Debug, Default)]
pub struct ProcessPolicy {
    /// Container id -> membership (workload ids of discovered workloads are container ids).
    pub containers: HashMap<String, Member>,
    /// Group -> process profile.
    pub profiles: BTreeMap<String, Vec<ProcessEntry>>,
}

impl ProcessPolicy {
    /// The membership and outcome for `info`, when it runs in a known container.
    pub fn decide(&self, info: &ProcInfo) -> Option<(&Member, Outcome)> {
        let m = self.containers.get(info.container.as_deref()?)?;
        let name = info.program().unwrap_or("");
        let path = info.exe.as_deref().unwrap_or("");
        let profile = self.profiles.get(&m.group).map_or(&[][..], Vec::as_slice);
        let listed = match (name.is_empty(), info.exe.is_some()) {
            (true, false) => Listed::NotListed,
            // Gone before its executable could be read: judged by name (the exec gate, where
            // it is on, has checked the path already; a program that is gone cannot be
            // stopped anyway).
            (false, false) => judge_name(profile, name),
            _ => judge(profile, name, path),
        };
        Some((m, outcome(m.mode, m.exempt, listed)))
    }
}

/// Builds the judging snapshot from the store.
pub async fn load(core: &Core) -> Result<ProcessPolicy, String> {
    let (snap, workloads) = core
        .db(|s| Ok((s.policy_snapshot()?, s.workloads()?)))
        .await
        .map_err(|e| e.message)?;
    let modes: HashMap<&str, Mode> = snap
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.process_mode))
        .collect();
    let containers = workloads
        .iter()
        .filter_map(|w| {
            Some((
                w.id.clone(),
                Member {
                    group: w.group.clone(),
                    mode: *modes.get(w.group.as_str())?,
                    exempt: w.exempt,
                },
            ))
        })
        .collect();
    Ok(ProcessPolicy {
        containers,
        profiles: snap.process_profiles,
    })
}

/// Counters of the engine.
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// Execs observed in containers.
    pub execs: AtomicU64,
    /// Processes killed (the SIGKILL path).
    pub killed: AtomicU64,
    /// Kills that failed (the process was gone, or the pidfd could not be had).
    pub kill_failed: AtomicU64,
    /// Loss reports from the kernel (each followed by a rescan).
    pub lost: AtomicU64,
    /// Rescans of /proc.
    pub rescans: AtomicU64,
    /// Observations dropped because the engine task was behind.
    pub dropped: AtomicU64,
    /// Programs not learned in discover because they were gone before /proc showed their
    /// executable (they are learned the next time they run long enough).
    pub unlearnable: AtomicU64,
    /// Processes gone before anything (name, executable) could be read: counted only.
    pub unidentified: AtomicU64,
    /// The exec gate's counters, refreshed twice a second while it runs.
    pub gate: std::sync::Mutex<Option<crate::fanotify::Stats>>,
}

/// One judged program, for the engine task.
#[derive(Debug, Clone)]
pub struct Observation {
    /// What /proc said.
    pub info: ProcInfo,
    /// Its group.
    pub group: String,
    /// The group's process mode.
    pub mode: Mode,
    /// What was done.
    pub outcome: Outcome,
    /// The SIGKILL path stopped it.
    pub killed: bool,
    /// Found by a rescan, not an exec event.
    pub rescan: bool,
    /// A special finding (root gained, reverse shell), alerted on whatever the profile says.
    pub finding: Option<&'static str>,
}

/// SIGKILL to `pid` through a pidfd (no pid-reuse race once the pidfd is open).
fn kill_pid(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let Ok(fd) = libc::c_int::try_from(fd) else {
        return false;
    };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` is the pidfd just opened; a null siginfo is allowed; flags 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    // SAFETY: we own `fd` and close it once.
    unsafe { libc::close(fd) };
    rc == 0
}

/// The observer thread's state.
struct Observer {
    connector: Connector,
    attributor: Attributor,
    policy: Arc<ArcSwap<ProcessPolicy>>,
    tx: mpsc::Sender<Observation>,
    counters: Arc<EngineCounters>,
    /// Kill blocked programs (no exec marks protect the container).
    kill: bool,
    /// Our own pid: never judged.
    own: u32,
    /// child -> parent from fork events (until exit): a child gone before it could be read
    /// is attributed through its parent.
    parents: HashMap<u32, u32>,
    /// Container processes judged since their exec (pid, start time): a rescan judges only
    /// the others, so it reports what was missed, not everything again.
    judged: HashMap<u32, u64>,
    /// Processes (pid, start time) already reported for gaining root: a setuid exec raises a
    /// uid-change event (the kernel's, while it executes) and then its exec, one finding.
    root_gained: HashMap<u32, u64>,
    /// Root gains seen as uid-change events, held back for [`UID_GAIN_WAIT`] (oldest first).
    uid_gains: Vec<(std::time::Instant, ProcInfo)>,
    /// Events were lost and a rescan is due (at most one per [`RESCAN_EVERY`]).
    rescan_due: bool,
    last_rescan: Option<std::time::Instant>,
}

/// The finding for a process whose effective uid is 0 while its real uid is not.
const ROOT_GAINED: &str = "root gained: effective uid 0 for a non-root user";

/// How long a uid-change root gain waits for the exec that may explain it.
const UID_GAIN_WAIT: Duration = Duration::from_millis(20);

/// Rescans of /proc at most this often, however often the kernel reports loss.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// Bound on `parents` (a fork storm without exits must not grow it without limit).
const MAX_PARENTS: usize = 1 << 16;

impl Observer {
    fn send(&self, o: Observation) {
        if self.tx.try_send(o).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn judge(&mut self, mut info: ProcInfo, rescan: bool) {
        let policy = self.policy.load();
        let Some((m, outcome)) = policy.decide(&info) else {
            return;
        };
        if let Some(st) = info.start_time {
            if self.judged.len() >= MAX_PARENTS {
                self.judged.clear();
            }
            self.judged.insert(info.pid, st);
        }
        self.counters.execs.fetch_add(1, Ordering::Relaxed);
        if info.program().is_none() && info.exe.is_none() {
            // Gone before anything could be read: neither learnable nor judgeable (in protect
            // the exec gate saw its path). Counted, not guessed at.
            self.counters.unidentified.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if outcome == Outcome::Learn && info.exe.is_none() {
            self.counters.unlearnable.fetch_add(1, Ordering::Relaxed);
        }
        let shell = info
            .program()
            .is_some_and(|p| super::attribution::SHELLS.contains(&p));
        // A setuid exec by a non-root user (read() has the uids of every euid-0 process).
        let root_gain = info.uid.is_some_and(|(real, eff)| real != 0 && eff == 0)
            && self.first_root_gain(&info);
        if outcome == Outcome::Pass && !shell && !root_gain {
            // Listed and not a shell (nothing to find): the engine task has nothing to do
            // with it, and nothing more needs reading.
            return;
        }
        let mut killed = false;
        if outcome == Outcome::Block && self.kill && info.pid != self.own {
            killed = kill_pid(info.pid);
            let c = if killed {
                &self.counters.killed
            } else {
                &self.counters.kill_failed
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
        // Kill first, read the rest after: what a report needs must not delay the kill. A
        // program learned needs no more.
        if outcome != Outcome::Learn || shell {
            self.attributor.details(&mut info);
        }
        let finding = if root_gain {
            Some(ROOT_GAINED)
        } else {
            (shell && info.stdio_socket)
                .then_some("reverse shell: a shell with its standard input or output on a socket")
        };
        if outcome == Outcome::Pass && finding.is_none() {
            return;
        }
        let (group, mode) = (m.group.clone(), m.mode);
        drop(policy);
        self.send(Observation {
            info,
            group,
            mode,
            outcome,
            killed,
            rescan,
            finding,
        });
    }

    /// Whether `info`'s root gain is news (and remembers it).
    fn first_root_gain(&mut self, info: &ProcInfo) -> bool {
        let Some(st) = info.start_time else {
            return true;
        };
        if self.root_gained.len() >= MAX_PARENTS {
            self.root_gained.clear();
        }
        self.root_gained.insert(info.pid, st) != Some(st)
    }

    fn rescan(&mut self) {
        self.rescan_due = false;
        self.last_rescan = Some(std::time::Instant::now());
        self.counters.rescans.fetch_add(1, Ordering::Relaxed);
        self.attributor.clear();
        let Ok(containers) = crate::workload::procfs::scan(std::path::Path::new("/proc")) else {
            return;
        };
        for c in containers {
            for pid in c.pids {
                let info = self.attributor.read(pid);
                if info.start_time.is_some() && self.judged.get(&pid) == info.start_time.as_ref() {
                    continue;
                }
                self.judge(info, true);
            }
        }
    }

    /// Reports the uid-change root gains no exec followed within [`UID_GAIN_WAIT`].
    fn flush_uid_gains(&mut self) {
        let due = self
            .uid_gains
            .iter()
            .position(|(at, _)| at.elapsed() < UID_GAIN_WAIT)
            .unwrap_or(self.uid_gains.len());
        let gains: Vec<ProcInfo> = self.uid_gains.drain(..due).map(|(_, i)| i).collect();
        for info in gains {
            if !self.first_root_gain(&info) {
                continue;
            }
            let policy = self.policy.load();
            if let Some((m, _)) = policy.decide(&info) {
                let (group, mode) = (m.group.clone(), m.mode);
                drop(policy);
                self.send(Observation {
                    info,
                    group,
                    mode,
                    outcome: Outcome::Alert,
                    killed: false,
                    rescan: false,
                    finding: Some(ROOT_GAINED),
                });
            }
        }
    }

    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            self.flush_uid_gains();
            if self.rescan_due && self.last_rescan.is_none_or(|t| t.elapsed() >= RESCAN_EVERY) {
                self.rescan();
            }
            let wait = if self.uid_gains.is_empty() {
                Duration::from_millis(200)
            } else {
                UID_GAIN_WAIT
            };
            let batch = match self.connector.next(wait) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %crate::error_chain(&e), "process events stopped");
                    return;
                }
            };
            match batch {
                Batch::Lost => {
                    self.counters.lost.fetch_add(1, Ordering::Relaxed);
                    if !self.rescan_due {
                        tracing::warn!("process events lost (ENOBUFS): rescanning /proc");
                    }
                    self.rescan_due = true;
                }
                Batch::Events(evs) => {
                    for e in evs {
                        match e {
                            ProcEvent::Exec { pid } => {
                                self.uid_gains.retain(|(_, i)| i.pid != pid);
                                let mut info = self.attributor.read(pid);
                                if info.container.is_none()
                                    && info.gone
                                    && let Some(&parent) = self.parents.get(&pid)
                                {
                                    info.ppid = Some(parent);
                                    info.container = self.attributor.read(parent).container;
                                }
                                self.judge(info, false);
                            }
                            ProcEvent::Fork { parent, child } => {
                                if self.parents.len() >= MAX_PARENTS {
                                    self.parents.clear();
                                }
                                self.parents.insert(child, parent);
                            }
                            ProcEvent::Exit { pid, .. } => {
                                self.attributor.exited(pid);
                                self.parents.remove(&pid);
                                self.judged.remove(&pid);
                                self.root_gained.remove(&pid);
                            }
                            ProcEvent::Uid { pid, ruid, euid } if euid == 0 && ruid != 0 => {
                                // Root gained by a non-root process (setuid binary, exploit).
                                // A setuid exec raises this while it executes, right before
                                // its exec event, which reports it with what the new program
                                // shows: held back a moment, dropped if that exec comes.
                                let mut info = self.attributor.read(pid);
                                if info.container.is_some() {
                                    info.uid = Some((ruid, euid));
                                    self.uid_gains.push((std::time::Instant::now(), info));
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
}

fn violation(o: &Observation) -> NewEvent {
    let name = o.info.program().unwrap_or("?");
    let path = o.info.exe.as_deref().unwrap_or("?");
    let (severity, what) = match (o.finding, o.outcome) {
        (Some(f), _) => (Severity::Critical, f.to_owned()),
        (None, Outcome::Block) if o.killed => (Severity::Critical, "killed".to_owned()),
        (None, Outcome::Block) => (Severity::Critical, "blocked".to_owned()),
        (None, _) => (Severity::Warning, "not in the profile".to_owned()),
    };
    NewEvent {
        kind: EventKind::ProcessViolation,
        group: Some(o.group.clone()),
        workload: o.info.container.clone(),
        details: serde_json::json!({
            "pid": o.info.pid,
            "ppid": o.info.ppid,
            "name": name,
            "path": path,
            "cmdline": o.info.cmdline,
            "uid": o.info.uid.map(|(r, e)| serde_json::json!({"real": r, "effective": e})),
            "mode": o.mode,
            "killed": o.killed,
            "rescan": o.rescan,
            "gone": o.info.gone,
        }),
        ..NewEvent::system(
            severity,
            format!(
                "{name} ({path}) in {} [{} mode]: {what}",
                o.group,
                mode_name(o.mode)
            ),
        )
    }
}

/// A mode as events name it.
pub(crate) fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Discover => "discover",
        Mode::Monitor => "monitor",
        Mode::Protect => "protect",
    }
}

/// The containers whose filesystem carries an exec mark: container id -> the path marked.
#[derive(Debug, Default)]
struct Marks {
    marked: HashMap<String, PathBuf>,
}

impl Marks {
    /// Marks the filesystem of every protected (not exempt) container and unmarks the rest.
    fn sync(
        &mut self,
        r: &crate::fanotify::Responder,
        policy: &ProcessPolicy,
        found: &[crate::workload::Discovered],
    ) {
        use crate::fanotify::MarkScope;
        let want: HashMap<&str, u32> = found
            .iter()
            .filter(|d| {
                policy
                    .containers
                    .get(&d.container_id)
                    .is_some_and(|m| m.mode == Mode::Protect && !m.exempt)
            })
            .map(|d| (d.container_id.as_str(), d.root_pid))
            .collect();
        self.marked.retain(|id, path| {
            if want.contains_key(id.as_str()) {
                return true;
            }
            // Gone or no longer protected; a gone container's filesystem is gone too.
            let _ = r.unmark(path, MarkScope::Filesystem);
            false
        });
        for (id, pid) in want {
            if self.marked.contains_key(id) {
                continue;
            }
            let path = PathBuf::from(format!("/proc/{pid}/root"));
            match r.mark(&path, MarkScope::Filesystem) {
                Ok(()) => {
                    tracing::info!(container = %id, "exec gate on");
                    self.marked.insert(id.to_owned(), path);
                }
                Err(e) => {
                    tracing::warn!(container = %id, error = %crate::error_chain(&e), "cannot mark the container's filesystem; protect kills after the start")
                }
            }
        }
    }
}

/// Runs the engine until `stop` turns true.
pub async fn run(
    core: Arc<Core>,
    cfg: crate::config::ProcessConfig,
    counters: Arc<EngineCounters>,
    mut found: tokio::sync::watch::Receiver<Arc<Vec<crate::workload::Discovered>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let events_buffer = cfg.events_buffer;
    let connector = match tokio::task::spawn_blocking(move || {
        Connector::self_test(Duration::from_secs(5), events_buffer)
    })
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let msg = format!("process engine off: {}", crate::error_chain(&e));
            tracing::error!("{msg}");
            let _ = core.record(NewEvent::system(Severity::Critical, msg)).await;
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "process engine self-test failed");
            return;
        }
    };
    let policy = Arc::new(ArcSwap::from_pointee(load(&core).await.unwrap_or_default()));
    let (tx, mut rx) = mpsc::channel::<Observation>(4096);
    let halt = Arc::new(AtomicBool::new(false));
    // The exec gate for protect: marks on the filesystems of protected containers.
    let kill = true;
    let epoch = Arc::new(AtomicU64::new(0));
    let started = Arc::new(ArcSwap::from_pointee(super::gate::Started::new()));
    let gate = super::gate::ExecGate {
        policy: Arc::clone(&policy),
        epoch: Arc::clone(&epoch),
        tx: tx.clone(),
        zero_drift: cfg.zero_drift,
        started: Arc::clone(&started),
    };
    let responder_cfg = crate::fanotify::Config {
        // An ignore mark outlives a write through a shared mmap (only write(2) drops it), so
        // a file changed that way would run unasked; with zero drift every exec is asked and
        // the cache (keyed by mtime and ctime) sees the change.
        ignore_allowed: !cfg.zero_drift,
        ..crate::fanotify::Config::answering(
            cfg.queue,
            Duration::from_millis(cfg.deadline_ms),
            cfg.overflow_allows,
            cfg.stall_allows,
        )
    };
    let responder = match cfg
        .exec_gate
        .then(|| crate::fanotify::Responder::start(responder_cfg, gate))
    {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            let msg = format!(
                "process engine: no exec gate ({}); protect mode kills unlisted programs after they start",
                crate::error_chain(&e)
            );
            tracing::warn!("{msg}");
            let _ = core.record(NewEvent::system(Severity::Warning, msg)).await;
            None
        }
    };
    let mut marks = Marks::default();
    let observer = std::thread::Builder::new()
        .name("proc-events".into())
        .spawn({
            let (policy, counters, halt) = (
                Arc::clone(&policy),
                Arc::clone(&counters),
                Arc::clone(&halt),
            );
            move || {
                let mut o = Observer {
                    connector,
                    attributor: Attributor::new(PathBuf::from("/proc")),
                    policy,
                    tx,
                    counters,
                    kill,
                    own: std::process::id(),
                    parents: HashMap::new(),
                    judged: HashMap::new(),
                    root_gained: HashMap::new(),
                    uid_gains: Vec::new(),
                    rescan_due: false,
                    last_rescan: None,
                };
                o.run(&halt);
            }
        });
    if let Err(e) = observer {
        tracing::error!(error = %e, "cannot start the process observer");
        return;
    }
    tracing::info!(kill, "process engine running");
    let _ = core.process.set(Arc::clone(&counters));
    let mut revs = core.policy_watch();
    let mut profile_revs = core.profiles_watch();
    let mut learned: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut flush = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = revs.changed() => {}
            _ = profile_revs.changed() => {}
            _ = found.changed() => {}
            o = rx.recv() => {
                let Some(o) = o else { break };
                if o.outcome == Outcome::Learn && o.finding.is_none() {
                    if let (Some(name), Some(path)) = (o.info.program(), o.info.exe.as_deref()) {
                        learned.entry(o.group.clone()).or_default().insert((name.to_owned(), path.to_owned()));
                    }
                } else if o.outcome != Outcome::Pass || o.finding.is_some() {
                    let _ = core.record(violation(&o)).await;
                }
                continue;
            }
            _ = flush.tick() => {
                if let (Some(r), Ok(mut g)) = (&responder, counters.gate.lock()) {
                    *g = Some(r.stats());
                }
                if learned.is_empty() {
                    continue;
                }
                for (group, entries) in std::mem::take(&mut learned) {
                    let add: Vec<ProcessEntry> = entries
                        .into_iter()
                        .map(|(name, path)| ProcessEntry { name, path, action: Action::Allow, learned: true })
                        .collect();
                    match core.db(move |s| s.patch_process_profile(&group, add, Vec::new(), "learning")).await {
                        Ok((_, ev)) => core.publish([ev]),
                        Err(e) => tracing::warn!(error = %e.message, "cannot store learned programs"),
                    }
                }
            }
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
        // A policy or profile change (or our own learning): the observer judges with the new one.
        match load(&core).await {
            Ok(p) => {
                policy.store(Arc::new(p));
                epoch.fetch_add(1, Ordering::AcqRel);
                if let Some(r) = &responder {
                    r.clear_cache();
                    let containers = found.borrow().clone();
                    marks.sync(r, &policy.load(), &containers);
                    started.store(Arc::new(
                        containers
                            .iter()
                            .filter(|d| marks.marked.contains_key(&d.container_id))
                            .filter_map(|d| {
                                Some((
                                    d.container_id.clone(),
                                    super::gate::started_at(d.start_time)?,
                                ))
                            })
                            .collect(),
                    ));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot reload the process policy"),
        }
    }
    halt.store(true, Ordering::Release);
    if let Some(r) = responder {
        let stats = r.shutdown();
        tracing::info!(?stats, "exec gate stopped");
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
            learned: false,
        }
    }

    #[test]
    fn deny_wins_then_allow_then_not_listed() {
        let p = vec![
            e("sh", "/bin/sh", Action::Allow),
            e("*", "/usr/bin/curl", Action::Deny),
            e("ls", "*", Action::Allow),
        ];
        assert_eq!(judge(&p, "sh", "/bin/sh"), Listed::Allowed);
        assert_eq!(judge(&p, "sh", "/tmp/sh"), Listed::NotListed);
        assert_eq!(judge(&p, "curl", "/usr/bin/curl"), Listed::Denied);
        assert_eq!(judge(&p, "ls", "/anything/ls"), Listed::Allowed);
        let mut both = p.clone();
        both.push(e("curl", "/usr/bin/curl", Action::Allow));
        assert_eq!(judge(&both, "curl", "/usr/bin/curl"), Listed::Denied);
        assert_eq!(judge(&[], "x", "/x"), Listed::NotListed);
    }

    #[test]
    fn modes() {
        use Listed::*;
        use Outcome::*;
        for (mode, exempt, listed, want) in [
            (Mode::Discover, false, Allowed, Pass),
            (Mode::Discover, false, NotListed, Learn),
            (Mode::Discover, false, Denied, Alert),
            (Mode::Monitor, false, NotListed, Alert),
            (Mode::Monitor, false, Denied, Alert),
            (Mode::Monitor, false, Allowed, Pass),
            (Mode::Protect, false, NotListed, Block),
            (Mode::Protect, false, Denied, Block),
            (Mode::Protect, false, Allowed, Pass),
            (Mode::Protect, true, NotListed, Alert),
        ] {
            assert_eq!(
                outcome(mode, exempt, listed),
                want,
                "{mode:?} {exempt} {listed:?}"
            );
        }
    }

    #[test]
    fn only_container_processes_are_judged() {
        let mut p = ProcessPolicy::default();
        p.containers.insert(
            "c1".into(),
            Member {
                group: "g".into(),
                mode: Mode::Monitor,
                exempt: false,
            },
        );
        p.profiles
            .insert("g".into(), vec![e("sh", "/bin/sh", Action::Allow)]);
        let mut info = ProcInfo {
            pid: 1,
            name: Some("sh".into()),
            exe: Some("/bin/sh".into()),
            ..ProcInfo::default()
        };
        assert!(p.decide(&info).is_none(), "a host process");
        info.container = Some("c1".into());
        assert_eq!(p.decide(&info).map(|(_, o)| o), Some(Outcome::Pass));
        info.exe = Some("/tmp/sh".into());
        assert_eq!(p.decide(&info).map(|(_, o)| o), Some(Outcome::Alert));
        // Gone before its executable was read: judged by name.
        let by_name = ProcInfo {
            pid: 3,
            container: Some("c1".into()),
            name: Some("sh".into()),
            gone: true,
            ..ProcInfo::default()
        };
        assert_eq!(p.decide(&by_name).map(|(_, o)| o), Some(Outcome::Pass));
        // Gone before anything was read: still judged (and alerted on), never dropped.
        let gone = ProcInfo {
            pid: 2,
            container: Some("c1".into()),
            gone: true,
            ..ProcInfo::default()
        };
        assert_eq!(p.decide(&gone).map(|(_, o)| o), Some(Outcome::Alert));
    }
}
