//! The supervisor in `external` mode against a fake dataplane (the real control-socket server
//! over a recording backend; no root, no DPDK): latest-wins policy pushes, event forwarding,
//! a full resync when the dataplane comes back, and pair requests scoped to one dataplane run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use control::dataplane::{DpNotice, Supervisor, SupervisorOptions};
use dataplane::config::PortConfig;
use dataplane::ctl::{Backend, BackendError, Server, ServerConfig, Stats};
use dataplane::policy::{Policy, Workload};
use dataplane::report::Event;
use tokio::sync::mpsc::Receiver;

/// Records the generations it was given; generation 2 takes 300 ms to "publish".
struct Recording {
    generation: u64,
    pairs: u64,
    seen: Arc<Mutex<Vec<u64>>>,
    /// Set when generation 2 starts publishing.
    busy: Arc<AtomicBool>,
}

impl Backend for Recording {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn set_policy(&mut self, policy: Policy) -> Result<u64, BackendError> {
        if policy.generation == 2 {
            self.busy.store(true, Ordering::Release);
            std::thread::sleep(Duration::from_millis(300));
        }
        self.seen.lock().unwrap().push(policy.generation);
        self.generation = policy.generation;
        Ok(policy.generation)
    }

    fn set_workload(&mut self, _: Workload) -> Result<(), BackendError> {
        Ok(())
    }

    fn remove_workload(&mut self, _: &str) -> Result<(), BackendError> {
        Ok(())
    }

    /// Pairs of `null` ports are "added" (numbered from 1); anything else is refused.
    fn add_pair(&mut self, ports: [PortConfig; 2]) -> Result<u64, BackendError> {
        if ports.iter().all(|p| p.name.starts_with("ok")) {
            self.pairs += 1;
            Ok(self.pairs)
        } else {
            Err(BackendError::invalid("no ports here"))
        }
    }

    fn remove_pair(&mut self, id: u64) -> Result<(), BackendError> {
        if id >= 1 && id <= self.pairs {
            Ok(())
        } else {
            Err(BackendError::invalid("no such pair"))
        }
    }

    fn stats(&mut self) -> Stats {
        Stats {
            generation: self.generation,
            ..Stats::default()
        }
    }
}

/// A fake dataplane serving `path` on its own thread until dropped.
struct FakeDp {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    publish: mpsc::Sender<Event>,
    seen: Arc<Mutex<Vec<u64>>>,
    busy: Arc<AtomicBool>,
}

impl FakeDp {
    fn start(path: &Path) -> Self {
        let mut server = Server::bind(ServerConfig::new(path)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let busy = Arc::new(AtomicBool::new(false));
        let (publish, events) = mpsc::channel::<Event>();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            let seen = seen.clone();
            let busy = busy.clone();
            move || {
                let mut backend = Recording {
                    generation: 0,
                    pairs: 0,
                    seen,
                    busy,
                };
                while !stop.load(Ordering::Relaxed) {
                    while let Ok(ev) = events.try_recv() {
                        server.publish(&ev);
                    }
                    server.poll(&mut backend, Duration::from_millis(5));
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
            publish,
            seen,
            busy,
        }
    }

    fn seen(&self) -> Vec<u64> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeDp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn policy(generation: u64) -> Policy {
    Policy {
        generation,
        ..Policy::default()
    }
}

async fn next_notice(rx: &mut Receiver<DpNotice>, timeout: Duration) -> DpNotice {
    tokio::time::timeout(timeout, rx.recv())
        .await
        .expect("a notice in time")
        .expect("channel open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_dataplane_latest_wins_events_and_resync_after_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("dp.sock");
    let fake = FakeDp::start(&socket);
    let mut opts =
        SupervisorOptions::new("/nonexistent".into(), "/nonexistent".into(), socket.clone());
    opts.external = true;
    opts.restart_backoff = (Duration::from_millis(20), Duration::from_millis(100));
    let (sup, mut rx) = Supervisor::start(opts);

    assert_eq!(
        next_notice(&mut rx, Duration::from_secs(5)).await,
        DpNotice::Up { generation: 0 }
    );
    assert_eq!(sup.pid(), None, "external: nothing spawned");
    assert_eq!(sup.set_policy(policy(1)).await.unwrap(), 1);

    // While 2 is being published, 3, 4 and 5 queue up: only 5 is sent, and covers them all.
    let two = sup.set_policy(policy(2));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake.busy.load(Ordering::Acquire) {
        assert!(
            Instant::now() < deadline,
            "generation 2 never reached the dataplane"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let three = sup.set_policy(policy(3));
    let four = sup.set_policy(policy(4));
    let five = sup.set_policy(policy(5));
    let (two, three, four, five) = tokio::join!(two, three, four, five);
    assert_eq!(
        (two.unwrap(), three.unwrap(), four.unwrap(), five.unwrap()),
        (2, 5, 5, 5)
    );
    assert_eq!(fake.seen(), [1, 2, 5]);
    assert_eq!(sup.stats().await.unwrap().generation, 5);

    // Events are forwarded as they come.
    fake.publish.send(Event::Overflow { lost: 7 }).unwrap();
    assert_eq!(
        next_notice(&mut rx, Duration::from_secs(5)).await,
        DpNotice::Event(Event::Overflow { lost: 7 })
    );

    // The dataplane goes away: Down; a new one (at generation 0) gets 5 without a push.
    drop(fake);
    assert!(matches!(
        next_notice(&mut rx, Duration::from_secs(5)).await,
        DpNotice::Down { .. }
    ));
    assert!(!sup.is_up());
    let fake = FakeDp::start(&socket);
    assert_eq!(
        next_notice(&mut rx, Duration::from_secs(5)).await,
        DpNotice::Up { generation: 5 }
    );
    assert_eq!(fake.seen(), [5]);

    sup.shutdown().await;
    assert!(matches!(
        sup.set_policy(policy(6)).await,
        Err(control::dataplane::DpError::Shutdown)
    ));
    assert_eq!(fake.seen(), [5]);
}

fn null_port(name: &str) -> dataplane::ctl::PortSpecDto {
    dataplane::ctl::PortSpecDto {
        name: name.into(),
        kind: "null".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_requests_belong_to_one_run_and_the_state_follows_the_dataplane() {
    use control::dataplane::DpError;
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("dp.sock");
    let fake = FakeDp::start(&socket);
    let mut opts =
        SupervisorOptions::new("/nonexistent".into(), "/nonexistent".into(), socket.clone());
    opts.external = true;
    opts.restart_backoff = (Duration::from_millis(20), Duration::from_millis(100));
    let (sup, mut rx) = Supervisor::start(opts);
    let mut state = sup.state();
    assert!(matches!(
        next_notice(&mut rx, Duration::from_secs(5)).await,
        DpNotice::Up { .. }
    ));
    let s1 = state.borrow_and_update().clone();
    assert!(s1.up && s1.run > 0, "{s1:?}");
    assert!(s1.acked.is_none(), "nothing pushed yet");
    assert_eq!(sup.set_policy(policy(3)).await.unwrap(), 3);
    assert_eq!(state.borrow().acked.as_ref().map(|p| p.generation), Some(3));

    let run = s1.run;
    assert_eq!(
        sup.add_pair(run, null_port("ok-a"), null_port("ok-b"))
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        sup.add_pair(run, null_port("bad-a"), null_port("ok-b"))
            .await,
        Err(DpError::Refused { .. })
    ));
    sup.remove_pair(run, 1).await.unwrap();
    assert!(matches!(
        sup.add_pair(run + 1, null_port("ok-a"), null_port("ok-b"))
            .await,
        Err(DpError::WrongRun)
    ));

    // The dataplane goes and comes back: a new run, the old one's requests are refused, the
    // acknowledged snapshot is kept (and resent).
    drop(fake);
    assert!(matches!(
        next_notice(&mut rx, Duration::from_secs(5)).await,
        DpNotice::Down { .. }
    ));
    assert!(!state.borrow().up);
    let _fake = FakeDp::start(&socket);
    assert!(matches!(
        next_notice(&mut rx, Duration::from_secs(5)).await,
        DpNotice::Up { generation: 3 }
    ));
    let s2 = state.borrow_and_update().clone();
    assert!(s2.up && s2.run > run, "{s2:?} after {s1:?}");
    assert!(matches!(
        sup.remove_pair(run, 1).await,
        Err(DpError::WrongRun)
    ));
    assert_eq!(
        sup.add_pair(s2.run, null_port("ok-c"), null_port("ok-d"))
            .await
            .unwrap(),
        1,
        "a new dataplane numbers its pairs afresh"
    );
    sup.shutdown().await;
}
