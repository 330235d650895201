//! The supervisor runs a real `palisade-dp` (needs root, hugepages and DPDK): pushes policies,
//! reads stats, restarts the dataplane after a SIGKILL and resyncs the policy without being
//! asked, and leaves no process behind at shutdown.
//!
//! The dataplane binary is `PALISADE_DP`, else `palisade-dp` next to the test executable's
//! `deps` directory (`cargo build -p dataplane --bin palisade-dp`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use control::dataplane::{DpError, DpNotice, Supervisor, SupervisorOptions};
use dataplane::ctl::ErrorCode;
use dataplane::policy::{Action, Group, Mode, Policy, PortSpec, Rule, Workload};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use palisade_tests::unique;
use tokio::sync::mpsc::Receiver;

mod dp_common;
use dp_common::{Reaper, dp_binary};

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would still have one, but the supervisor
    // reaps its child.
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A `[dataplane]` config with one `net_null` pair and its socket, in `dir`.
fn null_pair(dir: &Path, prefix: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let socket = dir.join("dp.sock");
    let config = dir.join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[dataplane]\nlcores = \"0-1\"\nmemory = \"in-memory\"\nfile_prefix = \"{}\"\n\
             idle = \"adaptive\"\nsessions = 4096\nstats_interval_s = 0\nsocket = \"{}\"\n\
             [[dataplane.port]]\nname = \"a\"\nkind = \"null\"\nno_rx = true\n\
             [[dataplane.port]]\nname = \"b\"\nkind = \"null\"\nno_rx = true\n\
             [[dataplane.pair]]\nports = [\"a\", \"b\"]\n",
            unique(prefix),
            socket.display()
        ),
    )
    .unwrap();
    (socket, config)
}

fn policy(generation: u64) -> Policy {
    let group = |name: &str| Group {
        name: name.into(),
        mode: Mode::Protect,
        members: vec![],
        cidrs: vec![],
    };
    Policy {
        generation,
        groups: vec![group("g.client"), group("g.server")],
        rules: vec![Rule {
            id: 1,
            from: "g.client".into(),
            to: "g.server".into(),
            ports: vec![PortSpec::Tcp(5001, 5001)],
            apps: vec![],
            action: Action::Allow,
            priority: 0,
            learned: false,
            disabled: false,
        }],
        workloads: vec![Workload {
            id: "server".into(),
            group: "g.server".into(),
            mode: Mode::Protect,
            macs: vec![],
            ips: vec!["198.18.0.2".parse().unwrap()],
            exempt: false,
        }],
        nodes: vec![],
    }
}

/// Notices until one satisfies `pred`; panics with what came after `timeout`.
async fn wait_notice(
    rx: &mut Receiver<DpNotice>,
    timeout: Duration,
    mut pred: impl FnMut(&DpNotice) -> bool,
) -> DpNotice {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(n)) => {
                if pred(&n) {
                    return n;
                }
                seen.push(n);
            }
            Ok(None) => panic!("notice channel closed; seen {seen:#?}"),
            Err(_) => panic!("notice not seen within {timeout:?}; seen {seen:#?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpdk_supervisor_pushes_policy_restarts_a_killed_dataplane_and_resyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, config) = null_pair(dir.path(), "sup");
    let mut opts = SupervisorOptions::new(dp_binary(), config, socket.clone());
    opts.restart_backoff = (Duration::from_millis(200), Duration::from_secs(2));
    let (sup, mut rx) = Supervisor::start(opts);
    let mut reaper = Reaper(Vec::new());

    // Up with nothing pushed yet: generation 0.
    let up = wait_notice(&mut rx, Duration::from_secs(60), |n| {
        matches!(n, DpNotice::Up { .. })
    })
    .await;
    assert_eq!(up, DpNotice::Up { generation: 0 });
    let first = sup.pid().expect("a child runs");
    reaper.0.push(first);
    assert!(sup.is_up());

    assert_eq!(sup.set_policy(policy(1)).await.unwrap(), 1);
    assert_eq!(sup.stats().await.unwrap().generation, 1);

    // Latest wins: both waiters are covered by what was acknowledged for them.
    let older = sup.set_policy(policy(2));
    let newer = sup.set_policy(policy(3));
    let (older, newer) = tokio::join!(older, newer);
    let older = older.unwrap();
    assert!(older == 2 || older == 3, "{older}");
    assert_eq!(newer.unwrap(), 3);
    assert_eq!(sup.stats().await.unwrap().generation, 3);

    // A stale snapshot is refused and changes nothing.
    match sup.set_policy(policy(1)).await {
        Err(DpError::Refused { code, .. }) => assert_eq!(code, ErrorCode::StaleGeneration),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(sup.stats().await.unwrap().generation, 3);

    // SIGKILL the dataplane: it comes back on its own with generation 3, nothing pushed.
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    let down = wait_notice(&mut rx, Duration::from_secs(10), |n| {
        matches!(n, DpNotice::Down { .. })
    })
    .await;
    let DpNotice::Down { reason } = down else {
        unreachable!()
    };
    assert!(
        reason.contains("palisade-dp exited") || reason.contains("event connection lost"),
        "{reason}"
    );
    assert_eq!(
        wait_notice(&mut rx, Duration::from_secs(10), |n| {
            matches!(n, DpNotice::Restarted { .. })
        })
        .await,
        DpNotice::Restarted { attempt: 1 }
    );
    let second = sup.pid().expect("a new child runs");
    reaper.0.push(second);
    assert_ne!(second, first);
    assert_eq!(
        wait_notice(&mut rx, Duration::from_secs(60), |n| {
            matches!(n, DpNotice::Up { .. })
        })
        .await,
        DpNotice::Up { generation: 3 }
    );
    assert_eq!(sup.stats().await.unwrap().generation, 3);
    assert!(!alive(first), "the killed dataplane was reaped");

    // Shutdown: SIGTERM, clean exit, nothing left; later requests fail.
    sup.shutdown().await;
    assert!(
        !alive(second),
        "palisade-dp {second} still runs after shutdown"
    );
    assert_eq!(sup.pid(), None);
    assert!(!sup.is_up());
    assert!(!socket.exists(), "a clean stop removes the socket");
    assert!(matches!(
        sup.set_policy(policy(4)).await,
        Err(DpError::Shutdown)
    ));
    assert!(sup.stats().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_reports_a_dataplane_that_cannot_start_and_backs_off() {
    // A config palisade-dp rejects (exit 2): Down with the exit status, restarts with
    // growing attempts; no DPDK needed since it exits before EAL init.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(&config, "[dataplane]\nbogus = 1\n").unwrap();
    let mut opts = SupervisorOptions::new(dp_binary(), config, dir.path().join("dp.sock"));
    opts.restart_backoff = (Duration::from_millis(50), Duration::from_millis(200));
    let (sup, mut rx) = Supervisor::start(opts);
    let DpNotice::Down { reason } = wait_notice(&mut rx, Duration::from_secs(10), |n| {
        matches!(n, DpNotice::Down { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert!(reason.contains("exit status: 2"), "{reason}");
    for attempt in 1..=3 {
        assert_eq!(
            wait_notice(&mut rx, Duration::from_secs(10), |n| {
                matches!(n, DpNotice::Restarted { .. })
            })
            .await,
            DpNotice::Restarted { attempt }
        );
    }
    assert!(matches!(sup.stats().await, Err(DpError::NotConnected)));
    sup.shutdown().await;
    assert_eq!(sup.pid(), None);
}

/// A dataplane that outlived an earlier `palisade` still owns the socket: the supervisor
/// adopts it instead of starting one that could not bind the socket, and leaves it running
/// when it shuts down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpdk_supervisor_adopts_a_dataplane_already_on_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, config) = null_pair(dir.path(), "adopt");
    let mut orphan = std::process::Command::new(dp_binary())
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut reaper = Reaper(vec![orphan.id()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while dataplane::ctl::Client::connect(&socket).is_err() {
        assert!(orphan.try_wait().unwrap().is_none(), "palisade-dp exited");
        assert!(Instant::now() < deadline, "palisade-dp never answered");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (sup, mut rx) = Supervisor::start(SupervisorOptions::new(dp_binary(), config, socket));
    let up = wait_notice(&mut rx, Duration::from_secs(30), |n| {
        matches!(n, DpNotice::Up { .. })
    })
    .await;
    assert_eq!(up, DpNotice::Up { generation: 0 });
    assert_eq!(sup.pid(), None, "nothing was started");
    assert_eq!(sup.set_policy(policy(7)).await.unwrap(), 7);
    assert_eq!(sup.stats().await.unwrap().generation, 7);
    sup.shutdown().await;
    assert!(
        orphan.try_wait().unwrap().is_none(),
        "the adopted dataplane keeps running"
    );
    let _ = kill(Pid::from_raw(orphan.id() as i32), Signal::SIGTERM);
    let _ = orphan.wait();
    reaper.0.clear();
}
