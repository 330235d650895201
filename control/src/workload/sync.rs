//! The discovery loop of `palisade up`: every interval, the containers on this host (from
//! `/proc`, in `spawn_blocking`), their names, images and labels from the runtime API (when a
//! socket exists), upserted as workloads of source [`WorkloadSource::Discovered`] (each
//! group created in the default mode when missing), and the discovered workloads that are
//! gone removed. The policy is pushed only when a scan changed something.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Discovered;
use super::runtime::{self, Meta};
use crate::model::{Workload, WorkloadSource};
use crate::service::Core;

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

/// A discovered container as a workload, with what the runtime knows of it (when it does);
/// its group is the auto group of its image and labels.
pub fn workload(d: &Discovered, meta: Option<&Meta>) -> Workload {
    let mut w = d.to_workload();
    if let Some(m) = meta {
        w.name.clone_from(&m.name);
        w.image.clone_from(&m.image);
        w.labels.clone_from(&m.labels);
    }
    w.group = crate::model::auto_group(&w.image, &w.labels);
    w
}

/// Runs the discovery loop until the process ends; `runtime_socket` as configured (`None`:
/// the first default socket that exists, looked for again at every scan). Every scan's
/// containers are published on `found` (for the plumbing, which needs their pids, veths and
/// bridges).
pub async fn run(
    core: Arc<Core>,
    runtime_socket: Option<PathBuf>,
    interval: Duration,
    found_tx: tokio::sync::watch::Sender<Arc<Vec<Discovered>>>,
) {
    // The discovered workloads of an earlier run are the starting point: those gone since
    // are removed by the first scan.
    let mut previous: BTreeMap<String, Workload> = match core.db(|s| s.workloads()).await {
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
    // Names, images and labels do not change while a container lives: asked once.
    let mut metas: HashMap<String, Meta> = HashMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let found = match tokio::task::spawn_blocking(super::discover).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(error = %crate::error_chain(&e), "discovery failed");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "discovery task failed");
                continue;
            }
        };
        metas.retain(|id, _| found.iter().any(|d| &d.container_id == id));
        if let Some(socket) = runtime::find_socket(runtime_socket.as_deref()) {
            for d in &found {
                if metas.contains_key(&d.container_id) {
                    continue;
                }
                match runtime::inspect(&socket, &d.container_id).await {
                    Ok(Some(m)) => {
                        metas.insert(d.container_id.clone(), m);
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
        let current: Vec<Workload> = found
            .iter()
            .map(|d| workload(d, metas.get(&d.container_id)))
            .collect();
        let changes = diff(&previous, &current);
        if !changes.is_empty() {
            match apply(&core, changes).await {
                Ok(()) => {
                    previous = current.into_iter().map(|w| (w.id.clone(), w)).collect();
                    core.policy_changed();
                }
                Err(e) => tracing::warn!(error = %e, "discovery: cannot store the workloads"),
            }
        }
        found_tx.send_if_modified(|old| {
            if **old == found {
                return false;
            }
            *old = Arc::new(found);
            true
        });
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

    #[test]
    fn runtime_metadata_names_the_group() {
        let d = Discovered {
            container_id: "ab".repeat(32),
            runtime: super::super::Runtime::Podman,
            root_pid: 42,
            start_time: 7,
            netns_inode: 4026,
            interfaces: vec![],
            exempt: false,
        };
        let bare = workload(&d, None);
        assert_eq!(bare.group, crate::model::auto_group("", &BTreeMap::new()));
        let meta = Meta {
            name: "web-1".into(),
            image: "docker.io/library/nginx:1.27".into(),
            labels: BTreeMap::from([("app".into(), "shop".into())]),
        };
        let w = workload(&d, Some(&meta));
        assert_eq!(w.name, "web-1");
        assert_eq!(w.image, "docker.io/library/nginx:1.27");
        assert_eq!(w.group, "auto.shop");
        assert_eq!(w.source, WorkloadSource::Discovered);
        assert_eq!(w.netns.as_deref(), Some("net:[4026]"));
    }
}
