use std::sync::Mutex;

use dataplane::policy::{Policy, Workload as DpWorkload};

use super::kernel::FoundInline;
use super::*;

/// A kernel that records what it is asked, in order.
#[derive(Debug, Default)]
struct FakeKernel {
    log: Mutex<Vec<String>>,
    fail_inline: Mutex<bool>,
    found: Mutex<(Vec<FoundInline>, Vec<String>)>,
}

impl FakeKernel {
    fn push(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Kernel for FakeKernel {
    fn ensure_tap(&self, tap: &str) -> Result<(), KernelError> {
        self.push(format!("ensure_tap {tap}"));
        Ok(())
    }
    fn delete_link(&self, name: &str) -> Result<(), KernelError> {
        self.push(format!("delete {name}"));
        Ok(())
    }
    fn mirror(&self, veth: &str, tap: &str) -> Result<(), KernelError> {
        self.push(format!("mirror {veth} {tap}"));
        Ok(())
    }
    fn unmirror(&self, veth: &str) -> Result<(), KernelError> {
        self.push(format!("unmirror {veth}"));
        Ok(())
    }
    fn mirrored(&self, _veth: &str, _tap: &str) -> bool {
        false
    }
    fn offloads_off(&self, veth: &str, pid: u32, inner: &str) -> Result<(), KernelError> {
        self.push(format!("offloads {veth} {pid} {inner}"));
        Ok(())
    }
    fn inline(
        &self,
        tap: &str,
        veth: &str,
        bridge: &str,
        dp_side: &str,
        bridge_side: &str,
    ) -> Result<(), KernelError> {
        if *self.fail_inline.lock().unwrap() {
            return Err(KernelError {
                command: "ip link add".into(),
                message: "RTNETLINK answers: File exists".into(),
            });
        }
        self.push(format!(
            "inline {tap} {veth} {bridge} {dp_side} {bridge_side}"
        ));
        Ok(())
    }
    fn restore(&self, veth: &str, bridge: &str, dp_side: &str) -> Result<(), KernelError> {
        self.push(format!("restore {veth} {bridge} {dp_side}"));
        Ok(())
    }
    fn found_inline(&self, _tap: &str) -> Vec<FoundInline> {
        self.found.lock().unwrap().0.clone()
    }
    fn found_mirrors(&self, _tap: &str) -> Vec<String> {
        self.found.lock().unwrap().1.clone()
    }
    fn exists(&self, _name: &str) -> bool {
        true
    }
}

/// Dataplane ports that record pairs; `fail` refuses every add.
#[derive(Debug, Default, Clone)]
struct FakePorts {
    inner: Arc<Mutex<PortsState>>,
}

#[derive(Debug, Default)]
struct PortsState {
    next: u64,
    pairs: Vec<(u64, u64, String, String)>,
    log: Vec<String>,
    fail: bool,
}

impl Ports for FakePorts {
    fn add_pair(
        &self,
        run: u64,
        a: PortSpecDto,
        b: PortSpecDto,
    ) -> impl Future<Output = Result<u64, DpError>> + Send {
        let mut st = self.inner.lock().unwrap();
        let r = if st.fail {
            Err(DpError::Refused {
                code: dataplane::ctl::ErrorCode::Failed,
                message: "no such device".into(),
            })
        } else {
            st.next += 1;
            let id = st.next;
            st.log.push(format!(
                "add {run} {} {}",
                a.iface.clone().unwrap_or_else(|| a.kind.clone()),
                b.iface.clone().unwrap_or_else(|| b.kind.clone())
            ));
            st.pairs
                .push((run, id, a.iface.unwrap_or_default(), b.kind.clone()));
            Ok(id)
        };
        std::future::ready(r)
    }

    fn remove_pair(&self, run: u64, id: u64) -> impl Future<Output = Result<(), DpError>> + Send {
        let mut st = self.inner.lock().unwrap();
        st.log.push(format!("remove {run} {id}"));
        st.pairs.retain(|p| !(p.0 == run && p.1 == id));
        std::future::ready(Ok(()))
    }
}

impl FakePorts {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.inner.lock().unwrap().log)
    }
}

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const ID2: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn target(id: &str, veth: &str) -> Target {
    Target {
        id: id.into(),
        pid: 42,
        inner: "eth0".into(),
        veth: veth.into(),
        bridge: Some("podman1".into()),
    }
}

fn state(run: u64, up: bool, modes: &[(&str, Mode)]) -> DpState {
    let workloads = modes
        .iter()
        .map(|(id, mode)| DpWorkload {
            id: (*id).into(),
            group: "g".into(),
            mode: *mode,
            macs: vec![],
            ips: vec![],
            exempt: false,
        })
        .collect();
    DpState {
        run,
        up,
        acked: Some(Arc::new(Policy {
            workloads,
            ..Policy::default()
        })),
    }
}

fn plumber(fail: FailMode) -> (Plumber<FakeKernel, FakePorts>, Arc<FakeKernel>, FakePorts) {
    let k = Arc::new(FakeKernel::default());
    let p = FakePorts::default();
    let cfg = PlumbConfig {
        fail,
        tap_iface: "tap0".into(),
        ..PlumbConfig::default()
    };
    (Plumber::new(cfg, Arc::clone(&k), p.clone()), k, p)
}

#[tokio::test]
async fn discover_taps_every_container_through_one_dataplane_port() {
    let (mut pl, k, ports) = plumber(FailMode::Open);
    let dp = state(1, true, &[(ID, Mode::Discover), (ID2, Mode::Monitor)]);
    let ts = [target(ID, "veth1"), target(ID2, "veth2")];
    let r = pl.step(&ts, &dp).await;
    assert!(r.events.is_empty(), "{:?}", r.events);
    assert_eq!(
        k.take(),
        vec![
            "ensure_tap tap0",
            "offloads veth1 42 eth0",
            "mirror veth1 tap0",
            "offloads veth2 42 eth0",
            "mirror veth2 tap0",
        ]
    );
    assert_eq!(ports.take(), vec!["add 1 tap0-dp null"]);
    assert_eq!(pl.plumbing().get(ID), Some(&Plumbing::Tap));
    // Nothing changed: nothing done.
    pl.step(&ts, &dp).await;
    assert_eq!(k.take(), Vec::<String>::new());
    assert_eq!(ports.take(), Vec::<String>::new());
}

#[tokio::test]
async fn a_container_waits_for_the_dataplane_to_know_it() {
    let (mut pl, k, _) = plumber(FailMode::Open);
    // Discovered, but the acknowledged snapshot does not have it yet: left alone.
    pl.step(&[target(ID, "veth1")], &state(1, true, &[])).await;
    assert_eq!(k.take(), Vec::<String>::new());
    assert!(pl.plumbing().is_empty());
}

#[tokio::test]
async fn protect_goes_inline_then_drops_the_mirror_and_monitor_undoes_it_exactly() {
    let (mut pl, k, ports) = plumber(FailMode::Open);
    let t = [target(ID, "veth1")];
    pl.step(&t, &state(1, true, &[(ID, Mode::Monitor)])).await;
    k.take();
    ports.take();
    pl.step(&t, &state(1, true, &[(ID, Mode::Protect)])).await;
    let (d, b) = inline_names(ID);
    assert_eq!((d.as_str(), b.as_str()), ("pl0123456789d", "pl0123456789b"));
    assert_eq!(
        k.take(),
        vec![
            "offloads veth1 42 eth0".to_owned(),
            format!("inline tap0 veth1 podman1 {d} {b}"),
            "unmirror veth1".to_owned(),
        ]
    );
    assert_eq!(ports.take(), vec![format!("add 1 veth1 {d}")]);
    assert_eq!(pl.plumbing().get(ID), Some(&Plumbing::Inline));
    // While inline, discovery sees the veth on no bridge: still inline, nothing redone.
    let mut off_bridge = target(ID, "veth1");
    off_bridge.bridge = None;
    pl.step(&[off_bridge], &state(1, true, &[(ID, Mode::Protect)]))
        .await;
    assert_eq!(k.take(), Vec::<String>::new());
    // Back to monitor: pair removed, bridge restored, then mirrored again.
    pl.step(&t, &state(1, true, &[(ID, Mode::Monitor)])).await;
    assert_eq!(ports.take(), vec!["remove 1 2"]);
    assert_eq!(
        k.take(),
        vec![
            format!("restore veth1 podman1 {d}"),
            "offloads veth1 42 eth0".to_owned(),
            "mirror veth1 tap0".to_owned(),
        ]
    );
}

#[tokio::test]
async fn a_refused_pair_puts_the_container_back_on_its_bridge() {
    let (mut pl, k, ports) = plumber(FailMode::Open);
    let t = [target(ID, "veth1")];
    ports.inner.lock().unwrap().fail = true;
    let r = pl.step(&t, &state(1, true, &[(ID, Mode::Protect)])).await;
    let (d, _) = inline_names(ID);
    let log = k.take();
    assert_eq!(
        log.last(),
        Some(&format!("restore veth1 podman1 {d}")),
        "{log:?}"
    );
    assert!(pl.plumbing().is_empty());
    assert_eq!(r.events.len(), 1);
    assert!(
        r.events[0].message.contains("no such device"),
        "{:?}",
        r.events
    );
    // A kernel failure leaves it as it was too, and is retried at the next step.
    ports.inner.lock().unwrap().fail = false;
    *k.fail_inline.lock().unwrap() = true;
    let r = pl.step(&t, &state(1, true, &[(ID, Mode::Protect)])).await;
    assert!(
        r.events[0].message.contains("File exists"),
        "{:?}",
        r.events
    );
    *k.fail_inline.lock().unwrap() = false;
    pl.step(&t, &state(1, true, &[(ID, Mode::Protect)])).await;
    assert_eq!(pl.plumbing().get(ID), Some(&Plumbing::Inline));
}

#[tokio::test]
async fn fail_open_restores_the_bridge_and_the_return_of_the_dataplane_reattaches() {
    let (mut pl, k, ports) = plumber(FailMode::Open);
    let t = [target(ID, "veth1")];
    pl.step(&t, &state(1, true, &[(ID, Mode::Protect)])).await;
    k.take();
    ports.take();
    let r = pl.step(&t, &state(1, false, &[(ID, Mode::Protect)])).await;
    let (d, b) = inline_names(ID);
    assert_eq!(k.take(), vec![format!("restore veth1 podman1 {d}")]);
    assert_eq!(ports.take(), Vec::<String>::new(), "its dataplane is gone");
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].severity, Severity::Critical);
    assert!(r.events[0].message.contains("fail open"), "{:?}", r.events);
    assert!(pl.plumbing().is_empty());
    // Run 2: inline again, tap pair and all.
    pl.step(&t, &state(2, true, &[(ID, Mode::Protect)])).await;
    assert_eq!(
        k.take(),
        vec![
            "offloads veth1 42 eth0".to_owned(),
            format!("inline tap0 veth1 podman1 {d} {b}")
        ]
    );
    assert_eq!(ports.take(), vec![format!("add 2 veth1 {d}")]);
}

#[tokio::test]
async fn fail_closed_keeps_the_container_cut_off_until_the_dataplane_returns() {
    let (mut pl, k, ports) = plumber(FailMode::Closed);
    let t = [target(ID, "veth1")];
    pl.step(&t, &state(1, true, &[(ID, Mode::Protect)])).await;
    k.take();
    ports.take();
    let r = pl.step(&t, &state(1, false, &[(ID, Mode::Protect)])).await;
    assert_eq!(k.take(), Vec::<String>::new(), "nothing undone");
    assert!(
        r.events[0].message.contains("fail closed"),
        "{:?}",
        r.events
    );
    assert_eq!(pl.plumbing().get(ID), Some(&Plumbing::Inline));
    // Back: only the pair is added, the veths are in place.
    pl.step(&t, &state(2, true, &[(ID, Mode::Protect)])).await;
    assert_eq!(k.take(), Vec::<String>::new());
    let (d, _) = inline_names(ID);
    assert_eq!(ports.take(), vec![format!("add 2 veth1 {d}")]);
}

#[tokio::test]
async fn a_gone_or_restarted_container_is_undone() {
    let (mut pl, k, ports) = plumber(FailMode::Open);
    pl.step(
        &[target(ID, "veth1")],
        &state(1, true, &[(ID, Mode::Protect)]),
    )
    .await;
    k.take();
    ports.take();
    // Same container, new veth (it was restarted): the old set-up goes, a new one comes.
    pl.step(
        &[target(ID, "veth9")],
        &state(1, true, &[(ID, Mode::Protect)]),
    )
    .await;
    let (d, b) = inline_names(ID);
    assert_eq!(
        k.take(),
        vec![
            format!("restore veth1 podman1 {d}"),
            "offloads veth9 42 eth0".to_owned(),
            format!("inline tap0 veth9 podman1 {d} {b}"),
        ]
    );
    assert_eq!(
        ports.take(),
        vec!["remove 1 1".to_owned(), format!("add 1 veth9 {d}")]
    );
    pl.step(&[], &state(1, true, &[(ID, Mode::Protect)])).await;
    assert_eq!(k.take(), vec![format!("restore veth9 podman1 {d}")]);
    assert_eq!(ports.take(), vec!["remove 1 2"]);
    assert!(pl.plumbing().is_empty());
}

#[tokio::test]
async fn disabled_exempt_and_unlisted_bridges_are_left_alone() {
    let dp = state(1, true, &[(ID, Mode::Protect)]);
    let t = target(ID, "veth1");
    let mut cfg = PlumbConfig::default();
    assert_eq!(want(&cfg, &dp, &t, false), Want::Inline);
    cfg.bridges = vec!["other".into()];
    assert_eq!(want(&cfg, &dp, &t, false), Want::Direct);
    cfg.bridges = vec!["podman1".into()];
    assert_eq!(want(&cfg, &dp, &t, false), Want::Inline);
    cfg.enabled = false;
    assert_eq!(want(&cfg, &dp, &t, false), Want::Direct);
    let mut exempt = dp.clone();
    if let Some(p) = exempt.acked.as_mut() {
        Arc::make_mut(p).workloads[0].exempt = true;
    }
    assert_eq!(
        want(&PlumbConfig::default(), &exempt, &t, false),
        Want::Direct
    );
    let mut no_bridge = t.clone();
    no_bridge.bridge = None;
    assert_eq!(
        want(&PlumbConfig::default(), &dp, &no_bridge, false),
        Want::Direct
    );
}

#[tokio::test]
async fn sweep_and_teardown_leave_nothing_behind() {
    let (mut pl, k, ports) = plumber(FailMode::Open);
    *k.found.lock().unwrap() = (
        vec![FoundInline {
            bridge_side: "plold0000000b".into(),
            veth: "veth7".into(),
            bridge: "podman1".into(),
        }],
        vec!["veth8".into()],
    );
    let events = pl.sweep().await;
    assert_eq!(
        k.take(),
        vec![
            "restore veth7 podman1 plold0000000b",
            "unmirror veth8",
            "delete tap0"
        ]
    );
    assert_eq!(events.len(), 1);
    let dp = state(1, true, &[(ID, Mode::Discover), (ID2, Mode::Protect)]);
    pl.step(&[target(ID, "veth1"), target(ID2, "veth2")], &dp)
        .await;
    k.take();
    ports.take();
    pl.teardown(&dp).await;
    let (d2, _) = inline_names(ID2);
    assert_eq!(
        k.take(),
        vec![
            "unmirror veth1".to_owned(),
            format!("restore veth2 podman1 {d2}"),
            "delete tap0".to_owned(),
        ]
    );
    assert_eq!(ports.take(), vec!["remove 1 2", "remove 1 1"]);
    assert!(pl.plumbing().is_empty());
    assert!(ports.inner.lock().unwrap().pairs.is_empty());
}
