//! The discovery loop of `palisade up`: the containers on this host (from `/proc`, in
//! `spawn_blocking`), what they are called, upserted as workloads of source
//! [`WorkloadSource::Discovered`] (each group created in the default mode when missing), and
//! the discovered workloads that are gone removed. The policy is pushed only when a scan
//! changed something.
//!
//! **When it scans**: every `interval`, and at once when the runtime's event stream
//! ([`super::events`], when a Docker-compatible socket exists) reports a container started or
//! stopped, or (re)connects (events missed while it was away); an event-driven scan is
//! followed by one more after [`SETTLE`], for a container whose processes were still
//! starting or exiting. Each start and stop is recorded as a `system` event (info, "container
//! <name> started/stopped"; Docker's `die` + `stop` of one stop count once), and so are the
//! stream's loss (warning) and return (info).
//!
//! **What a container is called**: name, image and labels from the runtime API; then, for
//! the label keys the runtime did not give, the Kubernetes labels its OCI bundle's
//! annotations map to ([`super::oci`]: containerd and CRI-O, which have no such API), the
//! image from the annotations when the runtime gave none, and the name
//! `<namespace>/<pod>/<container>` when the runtime gave none. Both are asked once per
//! container: they do not change while it lives.
//!
//! **Exempt** (alert only, besides what [`super::Discovery`] exempts): a container whose
//! `io.kubernetes.pod.namespace` label is one of the configured system namespaces. The
//! published [`Discovered`] list carries the same `exempt`, so the plumbing leaves them alone.
//!
//! **Pod sandboxes** (the pause container of a Kubernetes pod: annotation
//! `io.kubernetes.cri.container-type` or `io.kubernetes.cri-o.ContainerType` = `sandbox`, or
//! label `io.kubernetes.docker.type` = `podsandbox`) are skipped: no workload, not published.
//! A sandbox runs nothing but `pause` and only holds the pod's network namespace, which the
//! pod's containers share and are discovered with (same addresses, same host veth); a
//! workload of its own would claim the pod's addresses a second time, in a `pause` group.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Discovered;
use super::events::{self, Change, ContainerEvent, Notice};
use super::oci::{self, PodInfo, label};
use super::runtime::{self, Meta};
use crate::model::{NewEvent, Severity, Workload, WorkloadSource};
use crate::service::Core;

/// The second scan after an event-driven one.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Runtime notices queued for the loop.
const NOTICE_QUEUE: usize = 256;

/// Containers remembered as stopped (to count Docker's `die` + `stop` once).
const MAX_STOPPED: usize = 4096;

/// What the discovery loop takes from the configuration (`[discovery]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The runtime API socket; `None`: the first of [`runtime::DEFAULT_SOCKETS`] that
    /// exists, looked for again at every scan (and every events reconnect).
    pub runtime_socket: Option<PathBuf>,
    /// Time between two scans when no event comes.
    pub interval: Duration,
    /// Kubernetes namespaces whose pods are exempt.
    pub system_namespaces: Vec<String>,
}

/// What a scan changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    /// New or changed workloads.
    pub upserts: Vec<Workload>,
    /// Ids of workloads that are gone.
    pub removals: Vec<String>,
}

impl Diff {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}

/// Equal as far as discovery is concerned: the mode in force is the group's, set by the
/// store, not by discovery.
fn same(a: &Workload, b: &Workload) -> bool {
    let mut b = b.clone();
    b.mode = a.mode;
    *a == b
}

/// `previous` (by id) against what a scan found: the workloads new or changed, and the ids
/// no longer found. Pure.
pub fn diff(previous: &BTreeMap<String, Workload>, current: &[Workload]) -> Diff {
    let upserts = current
        .iter()
        .filter(|w| previous.get(&w.id).is_none_or(|p| !same(p, w)))
        .cloned()
        .collect();
    let removals = previous
        .keys()
        .filter(|id| !current.iter().any(|w| &w.id == *id))
        .cloned()
        .collect();
    Diff { upserts, removals }
}

/// A discovered container as a workload, with what the runtime (`meta`) and its OCI bundle
/// (`pod`) say of it (module documentation: the runtime wins); exempt also when its pod's
/// namespace is one of `system_namespaces`; its group is the auto group of its image and
/// labels.
pub fn workload(
    d: &Discovered,
    meta: Option<&Meta>,
    pod: Option<&PodInfo>,
    system_namespaces: &[String],
) -> Workload {
    let mut w = d.to_workload();
    if let Some(m) = meta {
        w.name.clone_from(&m.name);
        w.image.clone_from(&m.image);
        w.labels.clone_from(&m.labels);
    }
    if let Some(p) = pod {
        for (k, v) in p.labels() {
            w.labels.entry(k).or_insert(v);
        }
        if w.image.is_empty()
            && let Some(image) = &p.image
        {
            w.image.clone_from(image);
        }
        if w.name.is_empty()
            && let Some(name) = p.name()
        {
            w.name = name;
        }
    }
    w.exempt |= w
        .labels
        .get(label::NAMESPACE)
        .is_some_and(|ns| system_namespaces.iter().any(|s| s == ns));
    w.group = crate::model::auto_group(&w.image, &w.labels);
    w
}

/// Whether a container is a Kubernetes pod's sandbox (module documentation).
pub fn is_sandbox(meta: Option<&Meta>, pod: Option<&PodInfo>) -> bool {
    pod.is_some_and(|p| p.sandbox)
        || meta.is_some_and(|m| {
            m.labels
                .get(label::DOCKER_TYPE)
                .is_some_and(|t| t == "podsandbox")
        })
}

/// Runs the discovery loop until the process ends. Every scan's containers (sandboxes left
/// out, `exempt` as their workloads) are published on `found_tx` (for the plumbing, which
/// needs their pids, veths and bridges).
pub async fn run(
    core: Arc<Core>,
    opts: Options,
    found_tx: tokio::sync::watch::Sender<Arc<Vec<Discovered>>>,
) {
    let (tx, rx) = mpsc::channel(NOTICE_QUEUE);
    let follower = events::follow(opts.runtime_socket.clone(), tx);
    let scanner = scan_loop(core, opts, rx, found_tx);
    // The follower ends when the scanner does (its queue closes); the scanner never does.
    tokio::join!(follower, scanner);
}

/// What the loop remembers between scans.
struct State {
    core: Arc<Core>,
    opts: Options,
    roots: oci::Roots,
    /// The discovered workloads as last stored.
    previous: BTreeMap<String, Workload>,
    /// Runtime API answers, by container id.
    metas: HashMap<String, Meta>,
    /// OCI bundle answers, by container id (`None`: no bundle or no pod).
    pods: HashMap<String, Option<PodInfo>>,
    /// Containers recorded as stopped since their last start.
    stopped: HashSet<String>,
}

async fn scan_loop(
    core: Arc<Core>,
    opts: Options,
    mut notices: mpsc::Receiver<Notice>,
    found_tx: tokio::sync::watch::Sender<Arc<Vec<Discovered>>>,
) {
    // The discovered workloads of an earlier run are the starting point: those gone since
    // are removed by the first scan.
    let previous = match core.db(|s| s.workloads()).await {
        Ok(ws) => ws
            .into_iter()
            .filter(|w| w.source == WorkloadSource::Discovered)
            .map(|w| (w.id.clone(), w))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e.message, "discovery: cannot read the stored workloads");
            BTreeMap::new()
        }
    };
    let mut tick = tokio::time::interval(opts.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut st = State {
        core,
        opts,
        roots: oci::Roots::host(),
        previous,
        metas: HashMap::new(),
        pods: HashMap::new(),
        stopped: HashSet::new(),
    };
    let mut settle: Option<tokio::time::Instant> = None;
    let mut notices_open = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = at(settle) => settle = None,
            notice = notices.recv(), if notices_open => {
                let Some(notice) = notice else {
                    notices_open = false;
                    continue;
                };
                let mut now = st.notice(notice).await;
                // A burst (a pod of several containers) makes one scan.
                while let Ok(n) = notices.try_recv() {
                    now |= st.notice(n).await;
                }
                if !now {
                    continue;
                }
                settle = Some(tokio::time::Instant::now() + SETTLE);
                tick.reset();
            }
        }
        if let Some(found) = st.scan().await {
            found_tx.send_if_modified(|old| {
                if **old == found {
                    return false;
                }
                *old = Arc::new(found);
                true
            });
        }
    }
}

/// Sleeps until `deadline`; forever without one.
async fn at(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A `system` event about a container.
fn container_event(e: &ContainerEvent, what: &str) -> NewEvent {
    NewEvent {
        workload: Some(e.id.clone()),
        details: serde_json::json!({
            "container": e.id,
            "name": e.name,
            "image": e.image,
            "action": e.action,
        }),
        ..NewEvent::system(
            Severity::Info,
            format!("container {} {what}", e.display_name()),
        )
    }
}

/// A `system` event about the runtime's event stream.
fn stream_event(severity: Severity, message: String, socket: &std::path::Path) -> NewEvent {
    NewEvent {
        details: serde_json::json!({ "socket": socket.display().to_string() }),
        ..NewEvent::system(severity, message)
    }
}

impl State {
    /// Records what `notice` says; whether it calls for a scan now.
    async fn notice(&mut self, notice: Notice) -> bool {
        let (event, scan) = match notice {
            Notice::Connected(socket) => (
                Some(stream_event(
                    Severity::Info,
                    format!("following container runtime events at {}", socket.display()),
                    &socket,
                )),
                true,
            ),
            Notice::Lost(socket, why) => (
                Some(stream_event(
                    Severity::Warning,
                    format!(
                        "container runtime events at {} lost ({why}); discovery scans every {} ms until they return",
                        socket.display(),
                        self.opts.interval.as_millis()
                    ),
                    &socket,
                )),
                false,
            ),
            Notice::Event(e) => {
                let event = match e.change {
                    _ if e.sandbox => None,
                    Change::Started => {
                        self.stopped.remove(&e.id);
                        Some(container_event(&e, "started"))
                    }
                    Change::Stopped => {
                        if self.stopped.len() >= MAX_STOPPED {
                            self.stopped.clear();
                        }
                        self.stopped
                            .insert(e.id.clone())
                            .then(|| container_event(&e, "stopped"))
                    }
                };
                (event, true)
            }
        };
        if let Some(ev) = event
            && let Err(e) = self.core.record(ev).await
        {
            tracing::warn!(error = %e.message, "discovery: cannot record a runtime event");
        }
        scan
    }

    /// One scan: stores what changed, and returns the containers to publish (`None` when
    /// discovery failed).
    async fn scan(&mut self) -> Option<Vec<Discovered>> {
        let found = match tokio::task::spawn_blocking(super::discover).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(error = %crate::error_chain(&e), "discovery failed");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "discovery task failed");
                return None;
            }
        };
        self.metas
            .retain(|id, _| found.iter().any(|d| &d.container_id == id));
        self.pods
            .retain(|id, _| found.iter().any(|d| &d.container_id == id));
        self.ask_runtime(&found).await;
        self.read_bundles(&found).await;
        let mut published = Vec::with_capacity(found.len());
        let mut current = Vec::with_capacity(found.len());
        for mut d in found {
            let meta = self.metas.get(&d.container_id);
            let pod = self.pods.get(&d.container_id).and_then(Option::as_ref);
            if is_sandbox(meta, pod) {
                continue;
            }
            let w = workload(&d, meta, pod, &self.opts.system_namespaces);
            d.exempt = w.exempt;
            current.push(w);
            published.push(d);
        }
        let changes = diff(&self.previous, &current);
        if !changes.is_empty() {
            match apply(&self.core, changes).await {
                Ok(()) => {
                    self.previous = current.into_iter().map(|w| (w.id.clone(), w)).collect();
                    self.core.policy_changed();
                }
                Err(e) => tracing::warn!(error = %e, "discovery: cannot store the workloads"),
            }
        }
        Some(published)
    }

    /// Asks the runtime API about the containers it was not asked about yet.
    async fn ask_runtime(&mut self, found: &[Discovered]) {
        let Some(socket) = runtime::find_socket(self.opts.runtime_socket.as_deref()) else {
            return;
        };
        for d in found {
            if self.metas.contains_key(&d.container_id) {
                continue;
            }
            match runtime::inspect(&socket, &d.container_id).await {
                Ok(Some(m)) => {
                    self.metas.insert(d.container_id.clone(), m);
                }
                Ok(None) => {
                    tracing::debug!(container = %d.container_id, "unknown to the runtime API")
                }
                Err(e) => {
                    tracing::debug!(container = %d.container_id, error = %crate::error_chain(&e), "runtime API")
                }
            }
        }
    }

    /// Reads the OCI bundles of the containers not read yet. An unreadable bundle is logged
    /// and counts as none (it is not read again while the container lives).
    async fn read_bundles(&mut self, found: &[Discovered]) {
        let new: Vec<String> = found
            .iter()
            .map(|d| d.container_id.clone())
            .filter(|id| !self.pods.contains_key(id))
            .collect();
        if new.is_empty() {
            return;
        }
        let roots = self.roots.clone();
        let read = tokio::task::spawn_blocking(move || {
            new.into_iter()
                .map(|id| {
                    let info = oci::pod_info(&roots, &id);
                    (id, info)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "discovery: OCI bundle task failed");
                return;
            }
        };
        for (id, info) in read {
            let info = info.unwrap_or_else(|e| {
                tracing::warn!(container = %id, error = %crate::error_chain(&e), "discovery: unreadable OCI bundle");
                None
            });
            self.pods.insert(id, info);
        }
    }
}

/// Stores a scan's changes in one go and publishes their events. A workload declared by the
/// configuration file or the API under the same id is left alone.
async fn apply(core: &Core, changes: Diff) -> Result<(), String> {
    let mode = core.default_mode;
    let events = core
        .db(move |s| {
            let stored: HashMap<String, WorkloadSource> = s
                .workloads()?
                .into_iter()
                .map(|w| (w.id, w.source))
                .collect();
            let mut events = Vec::new();
            for id in changes.removals {
                if stored.get(&id) == Some(&WorkloadSource::Discovered) {
                    events.extend(s.remove_workload(&id, "discovery")?);
                }
            }
            for w in changes.upserts {
                if stored
                    .get(&w.id)
                    .is_some_and(|src| *src != WorkloadSource::Discovered)
                {
                    continue;
                }
                let (_, evs) = crate::service::declare_workload(s, w, mode, "discovery")?;
                events.extend(evs);
            }
            Ok(events)
        })
        .await
        .map_err(|e| e.message)?;
    core.publish(events);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mode;

    fn wl(id: &str, image: &str) -> Workload {
        Workload {
            id: id.into(),
            name: String::new(),
            image: image.into(),
            labels: BTreeMap::new(),
            group: crate::model::auto_group(image, &BTreeMap::new()),
            ips: vec![],
            macs: vec![],
            netns: None,
            veth: None,
            mode: Mode::default(),
            plumbing: Default::default(),
            exempt: false,
            source: WorkloadSource::Discovered,
        }
    }

    fn by_id(ws: &[Workload]) -> BTreeMap<String, Workload> {
        ws.iter().map(|w| (w.id.clone(), w.clone())).collect()
    }

    #[test]
    fn diff_finds_new_changed_and_gone() {
        let a = wl("a", "nginx");
        let b = wl("b", "redis");
        let c = wl("c", "postgres");
        assert_eq!(
            diff(&BTreeMap::new(), &[a.clone(), b.clone()]),
            Diff {
                upserts: vec![a.clone(), b.clone()],
                removals: vec![]
            }
        );
        let prev = by_id(&[a.clone(), b.clone()]);
        assert!(diff(&prev, &[a.clone(), b.clone()]).is_empty());
        let mut b2 = b.clone();
        b2.image = "redis:7".into();
        assert_eq!(
            diff(&prev, &[b2.clone(), c.clone()]),
            Diff {
                upserts: vec![b2, c],
                removals: vec!["a".into()]
            }
        );
        assert_eq!(
            diff(&prev, &[]),
            Diff {
                upserts: vec![],
                removals: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn the_mode_the_store_set_is_no_change() {
        let mut stored = wl("a", "nginx");
        stored.mode = Mode::Protect;
        assert!(diff(&by_id(&[stored]), &[wl("a", "nginx")]).is_empty());
    }

    fn discovered() -> Discovered {
        Discovered {
            container_id: "ab".repeat(32),
            runtime: super::super::Runtime::Podman,
            root_pid: 42,
            start_time: 7,
            netns_inode: 4026,
            interfaces: vec![],
            exempt: false,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn runtime_metadata_names_the_group() {
        let d = discovered();
        let bare = workload(&d, None, None, &[]);
        assert_eq!(bare.group, crate::model::auto_group("", &BTreeMap::new()));
        let meta = Meta {
            name: "web-1".into(),
            image: "docker.io/library/nginx:1.27".into(),
            labels: BTreeMap::from([("app".into(), "shop".into())]),
        };
        let w = workload(&d, Some(&meta), None, &[]);
        assert_eq!(w.name, "web-1");
        assert_eq!(w.image, "docker.io/library/nginx:1.27");
        assert_eq!(w.group, "auto.shop");
        assert_eq!(w.source, WorkloadSource::Discovered);
        assert_eq!(w.netns.as_deref(), Some("net:[4026]"));
    }

    fn coredns() -> PodInfo {
        PodInfo {
            namespace: Some("kube-system".into()),
            pod: Some("coredns-5d78c9869d-abcde".into()),
            pod_uid: None,
            container: Some("coredns".into()),
            image: Some("registry.k8s.io/coredns/coredns:v1.10.1".into()),
            sandbox: false,
        }
    }

    #[test]
    fn pod_annotations_fill_what_the_runtime_did_not_say() {
        let d = discovered();
        let system = vec!["kube-system".to_owned()];
        // No runtime API (containerd): everything from the bundle.
        let w = workload(&d, None, Some(&coredns()), &system);
        assert_eq!(w.name, "kube-system/coredns-5d78c9869d-abcde/coredns");
        assert_eq!(w.image, "registry.k8s.io/coredns/coredns:v1.10.1");
        assert_eq!(
            w.labels,
            labels(&[
                (label::NAMESPACE, "kube-system"),
                (label::POD, "coredns-5d78c9869d-abcde"),
                (label::CONTAINER, "coredns"),
            ])
        );
        assert_eq!(w.group, "auto.coredns");
        assert!(w.exempt, "kube-system is a system namespace");
        // Not a system namespace here.
        assert!(!workload(&d, None, Some(&coredns()), &[]).exempt);
        // The runtime's name, image and labels win; the bundle adds the keys it lacks.
        let meta = Meta {
            name: "k8s_coredns_coredns-5d78c9869d-abcde_kube-system_0".into(),
            image: "sha256:ead0a4a53df8".into(),
            labels: labels(&[(label::NAMESPACE, "shop"), ("app", "dns")]),
        };
        let w = workload(&d, Some(&meta), Some(&coredns()), &system);
        assert_eq!(w.name, meta.name);
        assert_eq!(w.image, meta.image);
        assert_eq!(
            w.labels.get(label::NAMESPACE).map(String::as_str),
            Some("shop")
        );
        assert_eq!(
            w.labels.get(label::POD).map(String::as_str),
            Some("coredns-5d78c9869d-abcde")
        );
        assert_eq!(w.labels.get("app").map(String::as_str), Some("dns"));
        assert!(!w.exempt, "the runtime's namespace label wins");
        // A runtime label alone exempts too (Docker, podman --label).
        let meta = Meta {
            labels: labels(&[(label::NAMESPACE, "kube-system")]),
            ..Meta::default()
        };
        assert!(workload(&d, Some(&meta), None, &system).exempt);
        // Host-network exemption stays.
        let mut host = discovered();
        host.exempt = true;
        assert!(workload(&host, None, None, &system).exempt);
    }

    #[test]
    fn sandboxes() {
        let mut pause = coredns();
        pause.sandbox = true;
        assert!(is_sandbox(None, Some(&pause)));
        assert!(!is_sandbox(None, Some(&coredns())));
        assert!(!is_sandbox(None, None));
        let docker = |t: &str| Meta {
            labels: labels(&[(label::DOCKER_TYPE, t)]),
            ..Meta::default()
        };
        assert!(is_sandbox(Some(&docker("podsandbox")), None));
        assert!(!is_sandbox(Some(&docker("container")), Some(&coredns())));
    }

    fn state(core: Arc<Core>) -> State {
        State {
            core,
            opts: Options {
                runtime_socket: None,
                interval: Duration::from_millis(2000),
                system_namespaces: vec![],
            },
            roots: oci::Roots::host(),
            previous: BTreeMap::new(),
            metas: HashMap::new(),
            pods: HashMap::new(),
            stopped: HashSet::new(),
        }
    }

    fn ev(id: &str, name: &str, action: &str, change: Change, sandbox: bool) -> Notice {
        Notice::Event(ContainerEvent {
            id: id.into(),
            name: name.into(),
            image: "nginx".into(),
            action: action.into(),
            change,
            sandbox,
        })
    }

    #[tokio::test]
    async fn runtime_notices_become_system_events() {
        let store = crate::store::Store::open_in_memory().unwrap();
        let core = Core::new(store, Mode::default(), Duration::from_secs(60));
        let mut st = state(Arc::clone(&core));
        let sock = PathBuf::from("/run/docker.sock");
        let a = "a".repeat(64);
        // (notice, scan now?)
        let steps = [
            (Notice::Connected(sock.clone()), true),
            (ev(&a, "web", "start", Change::Started, false), true),
            // docker stop: die, then stop; one "stopped".
            (ev(&a, "web", "die", Change::Stopped, false), true),
            (ev(&a, "web", "stop", Change::Stopped, false), true),
            // docker restart: a new start, a new stop.
            (ev(&a, "web", "start", Change::Started, false), true),
            (ev(&a, "web", "die", Change::Stopped, false), true),
            // A pod sandbox scans but is not recorded.
            (
                ev(&"b".repeat(64), "k8s_POD", "start", Change::Started, true),
                true,
            ),
            (
                ev(&"c".repeat(64), "", "start", Change::Started, false),
                true,
            ),
            (
                Notice::Lost(sock.clone(), "the runtime ended the stream".into()),
                false,
            ),
        ];
        for (i, (n, scan)) in steps.into_iter().enumerate() {
            assert_eq!(st.notice(n).await, scan, "step {i}");
        }
        let (events, _) = core
            .store
            .events(&crate::store::EventQuery {
                kinds: vec![crate::model::EventKind::System],
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        let got: Vec<(Severity, &str, Option<&str>)> = events
            .iter()
            .map(|e| (e.severity, e.message.as_str(), e.workload.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Severity::Info,
                    "following container runtime events at /run/docker.sock",
                    None
                ),
                (Severity::Info, "container web started", Some(a.as_str())),
                (Severity::Info, "container web stopped", Some(a.as_str())),
                (Severity::Info, "container web started", Some(a.as_str())),
                (Severity::Info, "container web stopped", Some(a.as_str())),
                (
                    Severity::Info,
                    "container cccccccccccc started",
                    Some("c".repeat(64).as_str())
                ),
                (
                    Severity::Warning,
                    "container runtime events at /run/docker.sock lost (the runtime ended the stream); discovery scans every 2000 ms until they return",
                    None
                ),
            ]
        );
        assert_eq!(events[1].details["action"], "start");
        assert_eq!(events[1].details["image"], "nginx");
    }
}
