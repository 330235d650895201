//! Network plumbing: how each discovered container's traffic reaches the dataplane.
//!
//! - **discover, monitor: tap.** tc `clsact` on the container's host veth with a `u32`
//!   match-all filter on both hooks and `mirred egress mirror` to one veth pair,
//!   `<tap_iface>` -> `<tap_iface>-dp`, whose far end is one `af_packet` dataplane port
//!   (paired with a `null` port that frees what it is given). The real path is untouched
//!   and nothing is dropped. One dataplane port serves every tapped container (DPDK has 32
//!   ports in all), at the price that a frame between two tapped containers is mirrored
//!   twice (once leaving one, once entering the other) and the dataplane sees it twice.
//! - **protect: inline.** The host veth leaves its bridge; a new veth pair
//!   `pl<id>d` <-> `pl<id>b` is created with `pl<id>b` in the bridge, and the dataplane
//!   forwards between the host veth and `pl<id>d` as one `af_packet` pair. Chosen over tc
//!   `mirred redirect` into a port pair because it needs no tc on the forwarding path (a
//!   redirect loop is impossible by construction), the bridge keeps doing ARP, learning and
//!   flooding, and undoing it is one `ip link set master`. Checksum and segmentation
//!   offloads are turned off on both ends of the workload's veth (and left off when it
//!   leaves protect: they only cost throughput), because `af_packet` hands over whatever
//!   the kernel has, super-packets included.
//!
//! **Order.** The mode a container is plumbed for is the one in the snapshot the dataplane
//! acknowledged (`DpState::acked`), so a switch happens only after the dataplane runs the
//! policy that needs it. Going inline: veths, bridge change, then `add_pair`; if the pair
//! fails the bridge change is undone. Leaving inline: `remove_pair`, back into the bridge,
//! veths deleted. Established connections survive both ways (the dataplane picks them up
//! mid-stream; the gap is one bridge change, which TCP retransmits across).
//!
//! **Failure.** When the dataplane goes down, inline containers go back to their bridges
//! (`[plumb] fail = "open"`, within a second) or stay cut off (`"closed"`); either way a
//! critical system event says so. When it comes back they are put inline again. A container
//! that exits loses its plumbing; shutdown undoes all of it.
//!
//! **Restart.** A starting plumber first removes every trace of an earlier one with the same
//! `tap_iface` (inline veths found by their alias, mirror filters by their preference and
//! target, the tap veth by its name) and then plumbs from scratch, so a crash never leaves
//! duplicates or orphans. Inline containers are briefly direct while that happens.

pub mod kernel;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use dataplane::ctl::PortSpecDto;
use dataplane::policy::{Mode, Policy};
use tokio::sync::watch;

use crate::config::{FailMode, PlumbConfig};
use crate::dataplane::{DpError, DpState, SupervisorHandle};
use crate::model::{NewEvent, Plumbing, Severity};
use crate::service::{Core, now_ms};
use crate::workload::Discovered;
pub use kernel::{Iproute2, Kernel, KernelError};

/// How often failed steps are retried even when nothing changed.
const RETRY: Duration = Duration::from_secs(2);

/// What the plumbing asks of the dataplane; [`SupervisorHandle`] is the real one.
pub trait Ports: Send + Sync + 'static {
    /// Adds a pair on run `run`.
    fn add_pair(
        &self,
        run: u64,
        a: PortSpecDto,
        b: PortSpecDto,
    ) -> impl Future<Output = Result<u64, DpError>> + Send;
    /// Removes pair `id` of run `run`.
    fn remove_pair(&self, run: u64, id: u64) -> impl Future<Output = Result<(), DpError>> + Send;
}

impl Ports for SupervisorHandle {
    fn add_pair(
        &self,
        run: u64,
        a: PortSpecDto,
        b: PortSpecDto,
    ) -> impl Future<Output = Result<u64, DpError>> + Send {
        SupervisorHandle::add_pair(self, run, a, b)
    }

    fn remove_pair(&self, run: u64, id: u64) -> impl Future<Output = Result<(), DpError>> + Send {
        SupervisorHandle::remove_pair(self, run, id)
    }
}

/// A container the plumbing may act on: discovered, with a host veth on a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Container (workload) id.
    pub id: String,
    /// Its root pid (for the in-namespace offload change).
    pub pid: u32,
    /// Its interface name inside (`eth0`).
    pub inner: String,
    /// The host-side veth.
    pub veth: String,
    /// The bridge the veth is (or was, while inline) in; `None`: not on a bridge.
    pub bridge: Option<String>,
}

/// The host veth of each discovered container with one (its first interface that has one).
pub fn targets(found: &[Discovered]) -> Vec<Target> {
    found
        .iter()
        .filter(|d| !d.exempt)
        .filter_map(|d| {
            let i = d.interfaces.iter().find(|i| i.host_veth.is_some())?;
            Some(Target {
                id: d.container_id.clone(),
                pid: d.root_pid,
                inner: i.name.clone(),
                veth: i.host_veth.clone()?,
                bridge: i.bridge.clone(),
            })
        })
        .collect()
}

/// What a container should be, given the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Nothing of ours.
    Direct,
    /// Mirrored.
    Tap,
    /// In the path.
    Inline,
}

/// How a container is plumbed now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Actual {
    Tap {
        veth: String,
    },
    Inline {
        veth: String,
        bridge: String,
        /// The dataplane pair forwarding for it, as (run, id); `None` while cut off (the
        /// dataplane is down and the plumbing fails closed, or the pair is being re-added).
        pair: Option<(u64, u64)>,
    },
}

impl Actual {
    fn veth(&self) -> &str {
        match self {
            Self::Tap { veth } | Self::Inline { veth, .. } => veth,
        }
    }

    fn plumbing(&self) -> Plumbing {
        match self {
            Self::Tap { .. } => Plumbing::Tap,
            Self::Inline { .. } => Plumbing::Inline,
        }
    }
}

/// Names of a container's inline veths: dataplane side and bridge side (`pl` + 10 characters
/// of the id + `d`/`b`: 13 characters, inside the kernel's 15).
pub fn inline_names(id: &str) -> (String, String) {
    let short: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(10)
        .collect();
    (format!("pl{short}d"), format!("pl{short}b"))
}

/// The mode the acknowledged snapshot gives workload `id`, and whether it is exempt.
fn acked_mode(acked: Option<&Policy>, id: &str) -> Option<(Mode, bool)> {
    acked?
        .workloads
        .iter()
        .find(|w| w.id == id)
        .map(|w| (w.mode, w.exempt))
}

/// What `t` should be. Pure.
pub fn want(cfg: &PlumbConfig, dp: &DpState, t: &Target, inline_now: bool) -> Want {
    if !cfg.enabled {
        return Want::Direct;
    }
    let on_bridge = t
        .bridge
        .as_ref()
        .is_some_and(|b| cfg.bridges.is_empty() || cfg.bridges.contains(b));
    if !on_bridge {
        return Want::Direct;
    }
    if !dp.up {
        // Tap filters are harmless without a reader; inline ones follow the fail mode.
        return match (inline_now, cfg.fail) {
            (true, FailMode::Closed) => Want::Inline,
            _ => Want::Direct,
        };
    }
    match acked_mode(dp.acked.as_deref(), &t.id) {
        Some((_, true)) | None => Want::Direct,
        Some((Mode::Protect, false)) => Want::Inline,
        Some((Mode::Discover | Mode::Monitor, false)) => Want::Tap,
    }
}

/// The plumbing task's state.
pub struct Plumber<K: Kernel, P: Ports> {
    cfg: PlumbConfig,
    kernel: Arc<K>,
    ports: P,
    actual: BTreeMap<String, Actual>,
    /// The tap pair in the dataplane: (run, id).
    tap_pair: Option<(u64, u64)>,
    /// Whether the tap veth was created by us in this process.
    tap_made: bool,
    /// Port names must be unique in the dataplane: every pair gets a fresh number.
    seq: u64,
    /// The dataplane was up at the last step (to report fail-open/closed once).
    was_up: bool,
}

impl<K: Kernel, P: Ports> std::fmt::Debug for Plumber<K, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plumber")
            .field("actual", &self.actual)
            .field("tap_pair", &self.tap_pair)
            .finish_non_exhaustive()
    }
}

fn af_packet(name: String, iface: &str) -> PortSpecDto {
    PortSpecDto {
        name,
        kind: "af_packet".into(),
        iface: Some(iface.to_owned()),
        ..Default::default()
    }
}

/// Runs a kernel step off the async workers.
async fn blocking<K: Kernel, T: Send + 'static>(
    kernel: &Arc<K>,
    f: impl FnOnce(&K) -> T + Send + 'static,
) -> T {
    let k = Arc::clone(kernel);
    match tokio::task::spawn_blocking(move || f(&k)).await {
        Ok(v) => v,
        // The closure panicked (it does not: every step returns its errors); resume it here.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// What one step changed, for events and the API.
#[derive(Debug, Default)]
pub struct StepReport {
    /// Events to record.
    pub events: Vec<NewEvent>,
}

fn system(severity: Severity, workload: Option<&str>, message: String) -> NewEvent {
    NewEvent {
        workload: workload.map(str::to_owned),
        actor: Some("plumbing".into()),
        ..NewEvent::system(severity, message)
    }
}

impl<K: Kernel, P: Ports> Plumber<K, P> {
    /// A plumber with nothing plumbed yet.
    pub fn new(cfg: PlumbConfig, kernel: Arc<K>, ports: P) -> Self {
        let seq = u64::try_from(now_ms()).unwrap_or(0) % 1_000_000;
        Self {
            cfg,
            kernel,
            ports,
            actual: BTreeMap::new(),
            tap_pair: None,
            tap_made: false,
            seq,
            was_up: false,
        }
    }

    /// How each container is plumbed now.
    pub fn plumbing(&self) -> HashMap<String, Plumbing> {
        self.actual
            .iter()
            .map(|(id, a)| (id.clone(), a.plumbing()))
            .collect()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Removes what an earlier plumber left on the host (see the module documentation).
    pub async fn sweep(&mut self) -> Vec<NewEvent> {
        let tap = self.cfg.tap_iface.clone();
        let (inline, mirrors) = blocking(&self.kernel, move |k| {
            let inline = k.found_inline(&tap);
            for f in &inline {
                let dp_side = f.bridge_side.clone();
                if let Err(e) = k.restore(&f.veth, &f.bridge, &dp_side) {
                    tracing::warn!(error = %e, "plumbing: cannot undo an earlier inline set-up");
                }
            }
            let mirrors = k.found_mirrors(&tap);
            for v in &mirrors {
                if let Err(e) = k.unmirror(v) {
                    tracing::warn!(error = %e, "plumbing: cannot remove an earlier mirror");
                }
            }
            let _ = k.delete_link(&tap);
            (inline, mirrors)
        })
        .await;
        let mut events = Vec::new();
        if !inline.is_empty() || !mirrors.is_empty() {
            events.push(system(
                Severity::Warning,
                None,
                format!(
                    "plumbing left by an earlier run removed: {} inline container(s) put back on their bridges, mirrors removed from {} veth(s)",
                    inline.len(),
                    mirrors.len()
                ),
            ));
        }
        events
    }

    async fn ensure_tap_pair(&mut self, dp: &DpState) -> Result<(), String> {
        if self.tap_pair.is_some_and(|(run, _)| run == dp.run) {
            return Ok(());
        }
        let tap = self.cfg.tap_iface.clone();
        blocking(&self.kernel, move |k| k.ensure_tap(&tap))
            .await
            .map_err(|e| e.to_string())?;
        self.tap_made = true;
        let n = self.next_seq();
        let a = af_packet(format!("tap{n}"), &format!("{}-dp", self.cfg.tap_iface));
        let b = PortSpecDto {
            name: format!("tapsink{n}"),
            kind: "null".into(),
            no_rx: Some(true),
            ..Default::default()
        };
        let id = self
            .ports
            .add_pair(dp.run, a, b)
            .await
            .map_err(|e| crate::error_chain(&e))?;
        self.tap_pair = Some((dp.run, id));
        Ok(())
    }

    /// Undoes `a` (the container is `id`); `dp` for removing a pair.
    async fn undo(&mut self, id: &str, a: Actual, dp: &DpState) -> Result<(), String> {
        match a {
            Actual::Tap { veth } => blocking(&self.kernel, move |k| k.unmirror(&veth))
                .await
                .map_err(|e| e.to_string()),
            Actual::Inline { veth, bridge, pair } => {
                if let Some((run, pid)) = pair
                    && dp.up
                    && run == dp.run
                    && let Err(e) = self.ports.remove_pair(run, pid).await
                {
                    tracing::warn!(container = %id, error = %crate::error_chain(&e), "plumbing: cannot remove the inline pair");
                }
                let (dp_side, _) = inline_names(id);
                blocking(&self.kernel, move |k| k.restore(&veth, &bridge, &dp_side))
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    async fn go_tap(&mut self, t: &Target, dp: &DpState) -> Result<Actual, String> {
        self.ensure_tap_pair(dp).await?;
        let (veth, tap, pid, inner) = (
            t.veth.clone(),
            self.cfg.tap_iface.clone(),
            t.pid,
            t.inner.clone(),
        );
        blocking(&self.kernel, move |k| {
            k.offloads_off(&veth, pid, &inner)?;
            k.mirror(&veth, &tap)
        })
        .await
        .map_err(|e| e.to_string())?;
        Ok(Actual::Tap {
            veth: t.veth.clone(),
        })
    }

    /// Puts `t` inline (its kernel part unless `kernel_done`), then adds its pair.
    async fn go_inline(
        &mut self,
        t: &Target,
        bridge: String,
        dp: &DpState,
        kernel_done: bool,
    ) -> Result<Actual, String> {
        let (dp_side, bridge_side) = inline_names(&t.id);
        if !kernel_done {
            let tap = self.cfg.tap_iface.clone();
            let (veth, br, pid, inner, d, b) = (
                t.veth.clone(),
                bridge.clone(),
                t.pid,
                t.inner.clone(),
                dp_side.clone(),
                bridge_side.clone(),
            );
            blocking(&self.kernel, move |k| {
                k.offloads_off(&veth, pid, &inner)?;
                k.inline(&tap, &veth, &br, &d, &b)
            })
            .await
            .map_err(|e| e.to_string())?;
        }
        let n = self.next_seq();
        let short = &dp_side[2..dp_side.len() - 1];
        let added = self
            .ports
            .add_pair(
                dp.run,
                af_packet(format!("w{short}-{n}"), &t.veth),
                af_packet(format!("b{short}-{n}"), &dp_side),
            )
            .await;
        match added {
            Ok(id) => Ok(Actual::Inline {
                veth: t.veth.clone(),
                bridge,
                pair: Some((dp.run, id)),
            }),
            Err(e) => {
                // Back to the direct path: a half-done switch must not cut the container off.
                let (veth, br) = (t.veth.clone(), bridge.clone());
                let _ = blocking(&self.kernel, move |k| k.restore(&veth, &br, &dp_side)).await;
                Err(crate::error_chain(&e))
            }
        }
    }

    /// One reconciliation: every target to what it should be, gone containers undone.
    pub async fn step(&mut self, targets: &[Target], dp: &DpState) -> StepReport {
        let mut report = StepReport::default();
        // The dataplane's liveness changed: say what it means for inline containers.
        if self.was_up && !dp.up {
            let inline = self
                .actual
                .values()
                .filter(|a| matches!(a, Actual::Inline { .. }))
                .count();
            if inline > 0 {
                report.events.push(system(
                    Severity::Critical,
                    None,
                    match self.cfg.fail {
                        FailMode::Open => format!("dataplane down: {inline} inline container(s) put back on their bridges, unfiltered (fail open)"),
                        FailMode::Closed => format!("dataplane down: {inline} inline container(s) cut off until it returns (fail closed)"),
                    },
                ));
            }
            self.tap_pair = None;
        }
        self.was_up = dp.up;

        // Containers gone (or whose veth changed: a restarted container).
        let gone: Vec<String> = self
            .actual
            .iter()
            .filter(|(id, a)| !targets.iter().any(|t| &t.id == *id && t.veth == a.veth()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(a) = self.actual.remove(&id)
                && let Err(e) = self.undo(&id, a, dp).await
            {
                tracing::warn!(container = %id, error = %e, "plumbing: cannot undo for a gone container");
            }
        }

        for t in targets {
            let current = self.actual.get(&t.id).cloned();
            let inline_now = matches!(current, Some(Actual::Inline { .. }));
            // While inline the veth is out of its bridge: discovery sees none, we know it.
            let with_bridge;
            let t = match &current {
                Some(Actual::Inline { bridge, .. }) if t.bridge.is_none() => {
                    with_bridge = Target {
                        bridge: Some(bridge.clone()),
                        ..t.clone()
                    };
                    &with_bridge
                }
                _ => t,
            };
            let w = want(&self.cfg, dp, t, inline_now);
            let result = match (w, current) {
                (Want::Direct, None) => Ok(None),
                (Want::Direct, Some(a)) => {
                    let was = a.plumbing();
                    self.undo(&t.id, a, dp).await.map(|()| {
                        if was == Plumbing::Inline {
                            tracing::info!(container = %t.id, "plumbing: back on the bridge");
                        }
                        None
                    })
                }
                (Want::Tap, Some(a @ Actual::Tap { .. })) => {
                    // The tap pair may have to come back after a dataplane restart.
                    self.ensure_tap_pair(dp).await.map(|()| Some(a))
                }
                (Want::Tap, cur) => {
                    if let Some(a) = cur
                        && let Err(e) = self.undo(&t.id, a, dp).await
                    {
                        Err(e)
                    } else {
                        self.go_tap(t, dp).await.map(Some)
                    }
                }
                (Want::Inline, Some(Actual::Inline { veth, bridge, pair })) => {
                    if !dp.up || pair.is_some_and(|(run, _)| run == dp.run) {
                        Ok(Some(Actual::Inline {
                            veth,
                            bridge,
                            pair: pair.filter(|(run, _)| dp.up && *run == dp.run),
                        }))
                    } else {
                        // The dataplane returned: the kernel side is in place, the pair is not.
                        match self.go_inline(t, bridge.clone(), dp, true).await {
                            Ok(a) => Ok(Some(a)),
                            Err(e) => {
                                // go_inline restored the bridge on failure.
                                tracing::warn!(container = %t.id, error = %e, "plumbing: cannot re-attach inline");
                                Ok(None)
                            }
                        }
                    }
                }
                (Want::Inline, cur) => {
                    let Some(bridge) = t.bridge.clone() else {
                        continue;
                    };
                    let tapped = matches!(cur, Some(Actual::Tap { .. }));
                    match self.go_inline(t, bridge, dp, false).await {
                        Ok(a) => {
                            if tapped {
                                let veth = t.veth.clone();
                                if let Err(e) =
                                    blocking(&self.kernel, move |k| k.unmirror(&veth)).await
                                {
                                    tracing::warn!(container = %t.id, error = %e, "plumbing: cannot remove the mirror");
                                }
                            }
                            Ok(Some(a))
                        }
                        // Still as it was (go_inline undid its part).
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(Some(a)) => {
                    let before = self.actual.insert(t.id.clone(), a.clone());
                    if before.as_ref().map(Actual::plumbing) != Some(a.plumbing()) {
                        tracing::info!(container = %t.id, veth = %a.veth(), plumbing = ?a.plumbing(), "plumbed");
                    }
                }
                Ok(None) => {
                    self.actual.remove(&t.id);
                }
                Err(e) => {
                    tracing::warn!(container = %t.id, error = %e, "plumbing failed; retrying");
                    report.events.push(system(
                        Severity::Warning,
                        Some(&t.id),
                        format!("plumbing of container {} failed: {e}", t.id),
                    ));
                }
            }
        }
        report
    }

    /// Undoes everything (shutdown).
    pub async fn teardown(&mut self, dp: &DpState) {
        let all = std::mem::take(&mut self.actual);
        for (id, a) in all {
            if let Err(e) = self.undo(&id, a, dp).await {
                tracing::warn!(container = %id, error = %e, "plumbing: cannot undo at shutdown");
            }
        }
        if let Some((run, id)) = self.tap_pair.take()
            && dp.up
            && run == dp.run
        {
            let _ = self.ports.remove_pair(run, id).await;
        }
        if self.tap_made {
            let tap = self.cfg.tap_iface.clone();
            let _ = blocking(&self.kernel, move |k| k.delete_link(&tap)).await;
        }
    }
}

/// Runs the plumbing until `stop` turns true, then undoes it all and returns.
pub async fn run(
    core: Arc<Core>,
    cfg: PlumbConfig,
    dp: SupervisorHandle,
    mut found: watch::Receiver<Arc<Vec<Discovered>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut dp_state = dp.state();
    let mut p = Plumber::new(cfg, Arc::new(Iproute2), dp);
    let swept = p.sweep().await;
    for e in swept {
        let _ = core.record(e).await;
    }
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let targets = targets(&found.borrow_and_update());
        let state = dp_state.borrow_and_update().clone();
        let report = p.step(&targets, &state).await;
        if let Ok(mut m) = core.plumbing.lock() {
            *m = p.plumbing();
        }
        for e in report.events {
            let _ = core.record(e).await;
        }
        tokio::select! {
            _ = found.changed() => {}
            _ = dp_state.changed() => {}
            _ = retry.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let state = dp_state.borrow().clone();
    p.teardown(&state).await;
    if let Ok(mut m) = core.plumbing.lock() {
        m.clear();
    }
}

#[cfg(test)]
mod tests;
