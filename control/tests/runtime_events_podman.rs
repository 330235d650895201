//! The discovery loop (`workload::sync::run`, as `palisade up` runs it) driven by a real
//! runtime's events: podman's `podman system service` on a private socket (needs root and
//! podman; CI is root).
//!
//! The scan interval is an hour, so after the loop's start-up scans (the first tick, the one
//! when the event stream connects and its settle scan) nothing but a runtime event makes it
//! scan: every container seen or gone after that was seen through an event. What it proves:
//! - a started container becomes a workload (name, image, labels, group, address on the
//!   test network) and "container <name> started" is recorded, and a stopped one is removed
//!   with "container <name> stopped" recorded once;
//! - a container labelled `io.kubernetes.pod.namespace=kube-system` is exempt, on the
//!   workload and in the published container list;
//! - a container whose OCI bundle carries the pod annotations (podman writes `--annotation`
//!   into `config.json`; its API shows no labels) gets the Kubernetes labels, and is exempt;
//! - a container annotated as a pod sandbox is neither a workload nor published.
//!
//! Containers, the network (198.18.104.0/24) and the service (by pid) are removed by guards,
//! also when an assertion fails.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use control::model::{Event, Workload};
use control::service::Core;
use control::store::Store;
use control::workload::sync::{self, Options, SETTLE};
use palisade_tests::unique;
use tokio::sync::broadcast;

use palisade_tests::podman::{
    Cleanup, IMAGE, Service, create_network, must, require_podman, run_sleeper,
};

const SUBNET: &str = "198.18.104.0/24";

/// Waits (at most 60 s) for an event matching `want`.
async fn event(
    rx: &mut broadcast::Receiver<Event>,
    what: &str,
    want: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) if want(&e) => return e,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("event stream: {e}"),
            Err(_) => panic!("no event {what} within 60 s"),
        }
    }
}

/// Waits (at most 60 s) until the stored workloads satisfy `done`; returns them.
async fn workloads(core: &Core, what: &str, done: impl Fn(&[Workload]) -> bool) -> Vec<Workload> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ws = core.store.workloads().unwrap();
        if done(&ws) {
            return ws;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 60 s; workloads {ws:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn find<'a>(ws: &'a [Workload], id: &str) -> Option<&'a Workload> {
    ws.iter().find(|w| w.id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_events_drive_discovery_as_root() {
    require_podman();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(&dir.path().join("podman.sock"));
    let socket = service.socket.clone();
    let base = unique("palev");
    let (web, kube, annotated, pause) = (
        format!("{base}-web"),
        format!("{base}-kube"),
        format!("{base}-ann"),
        format!("{base}-pause"),
    );
    let guard = Cleanup {
        containers: vec![web.clone(), kube.clone(), annotated.clone(), pause.clone()],
        networks: vec![base.clone()],
    };
    create_network(&base, SUBNET);

    let core = Core::new(
        Store::open_in_memory().unwrap(),
        Default::default(),
        Duration::from_secs(3600),
    );
    let mut events = core.events.subscribe();
    let (found_tx, found_rx) = tokio::sync::watch::channel(Arc::new(Vec::new()));
    let task = tokio::spawn(sync::run(
        Arc::clone(&core),
        Options {
            runtime_socket: Some(socket.clone()),
            interval: Duration::from_secs(3600),
            system_namespaces: vec!["kube-system".into()],
        },
        found_tx,
    ));
    let following = format!("following container runtime events at {}", socket.display());
    event(&mut events, "following the runtime", |e| {
        e.message == following
    })
    .await;
    // Past the connect scan and its settle scan: from here on only events make it scan.
    tokio::time::sleep(SETTLE * 3).await;

    let app = format!("{base}app");
    let web_id = run_sleeper(
        &web,
        &["--network", &base, "--label", &format!("app={app}")],
    );
    let kube_id = run_sleeper(
        &kube,
        &[
            "--network",
            "none",
            "--label",
            "io.kubernetes.pod.namespace=kube-system",
        ],
    );
    let ann_id = run_sleeper(
        &annotated,
        &[
            "--network",
            "none",
            "--annotation",
            "io.kubernetes.pod.namespace=kube-system",
            "--annotation",
            "io.kubernetes.pod.name=coredns-1",
            "--annotation",
            &format!("io.kubernetes.container.name={base}dns"),
        ],
    );
    let pause_id = run_sleeper(
        &pause,
        &[
            "--network",
            "none",
            "--annotation",
            "io.kubernetes.cri.container-type=sandbox",
            "--annotation",
            "io.kubernetes.cri.sandbox-name=coredns-1",
            "--annotation",
            "io.kubernetes.cri.sandbox-namespace=kube-system",
        ],
    );
    let started = event(&mut events, "web started", |e| {
        e.message == format!("container {web} started")
    })
    .await;
    assert_eq!(started.workload.as_deref(), Some(web_id.as_str()));
    assert_eq!(started.details["action"], "start");

    let ws = workloads(&core, "the started containers", |ws| {
        [&web_id, &kube_id, &ann_id]
            .iter()
            .all(|id| find(ws, id).is_some())
    })
    .await;
    let w = find(&ws, &web_id).unwrap();
    assert_eq!(w.name, web);
    assert!(w.image.ends_with(IMAGE), "image {:?}", w.image);
    assert_eq!(w.labels.get("app"), Some(&app));
    assert_eq!(w.group, format!("auto.{app}"));
    assert!(!w.exempt);
    assert_eq!(w.ips.len(), 1, "{w:#?}");
    let IpAddr::V4(v4) = w.ips[0] else {
        panic!("{} is not IPv4", w.ips[0])
    };
    assert_eq!(
        u32::from(v4) & 0xffff_ff00,
        u32::from(Ipv4Addr::new(198, 18, 104, 0)),
        "{v4} is not in {SUBNET}"
    );

    let k = find(&ws, &kube_id).unwrap();
    assert!(k.exempt, "kube-system by label: {k:#?}");

    let a = find(&ws, &ann_id).unwrap();
    assert!(a.exempt, "kube-system by annotation: {a:#?}");
    assert_eq!(a.name, annotated, "the runtime's name wins");
    assert_eq!(
        a.labels
            .get("io.kubernetes.pod.namespace")
            .map(String::as_str),
        Some("kube-system")
    );
    assert_eq!(
        a.labels.get("io.kubernetes.pod.name").map(String::as_str),
        Some("coredns-1")
    );
    assert_eq!(a.group, format!("auto.{base}dns"));

    assert!(
        find(&ws, &pause_id).is_none(),
        "a pod sandbox is no workload"
    );

    // The published list: the same exemptions, no sandbox. The watch may still hold the
    // previous scan's list: wait for the one with our containers.
    let mut found_rx = found_rx;
    let found = tokio::time::timeout(
        Duration::from_secs(60),
        found_rx.wait_for(|f| f.iter().any(|d| d.container_id == ann_id)),
    )
    .await
    .expect("published within 60 s")
    .expect("the loop runs")
    .clone();
    let exempt = |id: &str| {
        found
            .iter()
            .find(|d| d.container_id == id)
            .map(|d| d.exempt)
    };
    assert_eq!(exempt(&web_id), Some(false));
    assert_eq!(exempt(&kube_id), Some(true));
    assert_eq!(exempt(&ann_id), Some(true));
    assert_eq!(exempt(&pause_id), None);

    // Stopping removes it, through the `die` event.
    must(&["stop", "--time", "0", &web]);
    event(&mut events, "web stopped", |e| {
        e.message == format!("container {web} stopped")
    })
    .await;
    let ws = workloads(&core, "the stopped container removed", |ws| {
        find(ws, &web_id).is_none()
    })
    .await;
    assert!(find(&ws, &kube_id).is_some());
    let (stored, _) = core
        .store
        .events(&control::store::EventQuery {
            workload: Some(web_id.clone()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let messages: Vec<&str> = stored.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            format!("container {web} started"),
            format!("container {web} stopped")
        ],
        "one event per start and stop"
    );

    task.abort();
    let _ = task.await;
    drop(guard);
    drop(service);
}
