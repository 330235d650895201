//! Hitless policy updates under concurrency: reader threads judge packets through the pipeline
//! (loading the snapshot once per burst, as workers do) while a writer swaps between two
//! policies thousands of times. No packet may be judged by a mix of two snapshots, and no
//! snapshot may be freed while a reader holds it.
//!
//! The two policies disagree on the test flow (A allows it by rule 1, B denies it by rule 2),
//! and the epoch says which one a reader holds: every verdict must match its snapshot. A drop
//! counter per snapshot proves the writer's old snapshots are freed, and only after readers
//! let go (arc-swap's guarantee; the test would see a freed snapshot's epoch otherwise).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use dataplane::conntrack::Timestamp;
use dataplane::pipeline::{Config, Pipeline, Step, Verdict};
use dataplane::policy::{
    Action, ActivePolicy, Compiled, Decision, Group, Mode, Policy, PortSpec, Query, Rule, Workload,
};

// Miri (`cargo +nightly miri test --test policy_swap`) interprets every step: fewer swaps.
const SWAPS: u64 = if cfg!(miri) { 20 } else { 5_000 };
const WARM: u64 = if cfg!(miri) { 64 } else { 1_000 };
const CLIENT: [u8; 4] = [198, 18, 3, 1];
const SERVER: [u8; 4] = [198, 18, 3, 2];

fn compiled(allow: bool) -> Compiled {
    let g = |n: &str| Group {
        name: n.into(),
        mode: Mode::Protect,
        members: vec![],
        cidrs: vec![],
    };
    let w = |id: &str, ip: [u8; 4]| Workload {
        id: id.into(),
        group: id.into(),
        mode: Mode::Protect,
        macs: vec![],
        ips: vec![IpAddr::from(ip)],
        exempt: false,
    };
    let rule = Rule {
        id: if allow { 1 } else { 2 },
        from: "c".into(),
        to: "s".into(),
        ports: vec![PortSpec::Tcp(80, 80)],
        apps: vec![],
        action: if allow { Action::Allow } else { Action::Deny },
        priority: 0,
        learned: false,
        disabled: false,
    };
    let p = Policy {
        generation: 1,
        groups: vec![g("c"), g("s")],
        rules: vec![rule],
        workloads: vec![w("c", CLIENT), w("s", SERVER)],
        nodes: vec![],
    };
    Compiled::compile(&p, &[]).unwrap()
}

/// A snapshot that counts how many of its kind were dropped.
struct Probe {
    policy: ActivePolicy,
    dropped: Arc<AtomicU64>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A SYN from CLIENT:sport to SERVER:80.
fn syn(sport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(CLIENT, SERVER, 64)
        .tcp(sport, 80, 1, 64000)
        .syn()
        .write(&mut out, b"")
        .unwrap();
    out
}

#[test]
fn swapping_thousands_of_times_never_mixes_or_frees_a_snapshot_in_use() {
    let dropped = Arc::new(AtomicU64::new(0));
    // Even epochs carry policy A (allow), odd epochs policy B (deny).
    let make = |epoch: u64| Probe {
        policy: ActivePolicy {
            epoch,
            compiled: compiled(epoch.is_multiple_of(2)),
        },
        dropped: Arc::clone(&dropped),
    };
    let cell = Arc::new(ArcSwap::from_pointee(make(2)));
    let stop = Arc::new(AtomicBool::new(false));
    let judged = Arc::new(AtomicU64::new(0));

    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (cell, stop, judged) = (Arc::clone(&cell), Arc::clone(&stop), Arc::clone(&judged));
            std::thread::spawn(move || {
                // Thousands of SYNs a second to one workload: a SYN flood, were it not for this.
                let mut cfg = Config::with_capacity(if cfg!(miri) { 256 } else { 1 << 16 });
                cfg.threats.syn_flood = u32::MAX;
                cfg.threats.session_rate = u32::MAX;
                let mut pipe: Pipeline<()> = Pipeline::new(cfg, None).unwrap();
                let q = Query {
                    proto: 6,
                    client: CLIENT.into(),
                    server: SERVER.into(),
                    server_port: 80,
                    app: None,
                };
                let mut sport = 1024u16 + r * 20_000;
                while !stop.load(Ordering::Acquire) {
                    // One load per burst, as a worker does; a burst of 32 packets under it.
                    let snap = cell.load();
                    let allow = snap.policy.epoch % 2 == 0;
                    for _ in 0..32 {
                        // The compiled tables themselves.
                        let d: Decision = snap.policy.compiled.evaluate(&q);
                        assert_eq!(
                            d.rule,
                            Some(if allow { 1 } else { 2 }),
                            "epoch {} judged by the other policy",
                            snap.policy.epoch
                        );
                        // And a new session through the whole pipeline.
                        sport = sport.wrapping_add(1).max(1024);
                        let v = match pipe.process(
                            &syn(sport),
                            Timestamp::from_secs(1),
                            &snap.policy,
                            (),
                            |_, _| {},
                            |_| {},
                        ) {
                            Step::Done(v, ()) => v,
                            Step::Held => panic!("held"),
                        };
                        assert_eq!(v.forwards(), allow, "epoch {}: {v:?}", snap.policy.epoch);
                        if !allow {
                            assert!(matches!(v, Verdict::Reject(_)));
                        }
                    }
                    judged.fetch_add(32, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Let the readers run before and between swaps (a reader that failed ends the wait: its
    // panic surfaces at the join below).
    let alive = |rs: &Vec<std::thread::JoinHandle<()>>| rs.iter().all(|r| !r.is_finished());
    while judged.load(Ordering::Relaxed) < WARM && alive(&readers) {
        std::thread::yield_now();
    }
    for epoch in 3..3 + SWAPS {
        cell.store(Arc::new(make(epoch)));
        if epoch % 64 == 0 {
            std::thread::yield_now();
        }
    }
    let at_end = judged.load(Ordering::Relaxed);
    while judged.load(Ordering::Relaxed) < at_end + WARM && alive(&readers) {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Release);
    for r in readers {
        r.join().unwrap();
    }
    // Every snapshot but the current one has been freed, once readers let go of it.
    assert_eq!(dropped.load(Ordering::SeqCst), SWAPS);
    assert!(judged.load(Ordering::Relaxed) >= 2 * WARM);
    drop(cell);
    assert_eq!(dropped.load(Ordering::SeqCst), SWAPS + 1);
}
