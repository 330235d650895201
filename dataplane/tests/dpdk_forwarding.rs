//! Burst forwarding between ring ports through a real worker lcore, with exact counters
//! (needs root and hugepages). One test per process (cargo nextest).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{WAIT, eal, inject, ring_port, seq_of, wait_until};
use dataplane::config::Idle;
use dataplane::dpdk::{Dataplane, Settings};
use dataplane::stats::DropReason;

fn settings(idle: Idle) -> Settings {
    Settings {
        // Room for every packet of a test to sit in the output rings at once.
        mbufs: 32767,
        mbuf_cache: 128,
        rx_desc: 1024,
        tx_desc: 1024,
        idle,
        idle_sleep_us: 50,
        sessions: 4096,
        timeouts: dataplane::conntrack::Timeouts::default(),
    }
}

/// N packets in on each side, N out on the other, in order and intact; every counter exact.
fn forward_both_ways(idle: Idle) {
    const N: u32 = 20_000;
    const M: u32 = 7_000;
    const LEN: usize = 100;
    let (eal, _) = eal();
    let mut dp = Dataplane::new(&eal, settings(idle)).unwrap();
    let a = ring_port(&eal, "a", 1024, 32768);
    let b = ring_port(&eal, "b", 1024, 32768);
    let (a_rx, a_tx, b_rx, b_tx) = (a.rx.clone(), a.tx.clone(), b.rx.clone(), b.tx.clone());
    dp.add_pair(a.port, b.port).unwrap();
    dp.launch().unwrap();
    let pool = dp.pool().clone();

    let p2 = pool.clone();
    let injector = std::thread::spawn(move || inject(&p2, &b_rx, 1_000_000, M, LEN));
    inject(&pool, &a_rx, 0, N, LEN);
    injector.join().unwrap();

    let done = wait_until(WAIT, || {
        dp.port_report("b").unwrap().counters.tx_packets == u64::from(N)
            && dp.port_report("a").unwrap().counters.tx_packets == u64::from(M)
    });
    let ra = dp.port_report("a").unwrap();
    let rb = dp.port_report("b").unwrap();
    assert!(done, "forwarding stalled: a={ra:?} b={rb:?}");

    assert_eq!(ra.counters.rx_packets, u64::from(N));
    assert_eq!(ra.counters.rx_bytes, u64::from(N) * LEN as u64);
    assert_eq!(rb.counters.tx_packets, u64::from(N));
    assert_eq!(rb.counters.tx_bytes, u64::from(N) * LEN as u64);
    assert_eq!(rb.counters.rx_packets, u64::from(M));
    assert_eq!(ra.counters.tx_packets, u64::from(M));
    assert_eq!(ra.counters.dropped_total() + rb.counters.dropped_total(), 0);
    assert_eq!(ra.counters.tx_retries + rb.counters.tx_retries, 0);
    // The PMD saw the same.
    assert_eq!(rb.pmd.unwrap().opackets, u64::from(N));
    assert_eq!(ra.pmd.unwrap().ipackets, u64::from(N));
    let w = &dp.worker_reports()[0];
    assert_eq!(w.counters.rx_packets, u64::from(N + M));
    assert_eq!(w.counters.tx_packets, u64::from(N + M));
    assert_eq!(w.counters.dropped, 0);
    assert!(w.running);

    // Out in order and intact.
    let out_b = b_tx.dequeue(N as usize + 1);
    assert_eq!(out_b.len(), N as usize);
    for (i, m) in out_b.iter().enumerate() {
        assert_eq!(m.data(), &common::frame(i as u32, LEN)[..], "packet {i}");
    }
    let out_a = a_tx.dequeue(M as usize + 1);
    assert_eq!(out_a.len(), M as usize);
    assert!(
        out_a
            .iter()
            .enumerate()
            .all(|(i, m)| seq_of(m.data()) == 1_000_000 + i as u32)
    );
    drop((out_a, out_b));
    assert_eq!(pool.in_use(), 0, "every mbuf went back to the pool");
}

#[test]
fn dpdk_burst_forwarding_exact_counters_adaptive() {
    forward_both_ways(Idle::Adaptive);
}

#[test]
fn dpdk_burst_forwarding_exact_counters_busy() {
    forward_both_ways(Idle::Busy);
}

/// A transmit ring with room for 63 packets receives 100 in one go: bursts of 32, 32, 32 and
/// 4 meet it, the second goes out in part (31), the rest not at all; every short burst is
/// retried TX_RETRIES (4) times, then freed and counted.
#[test]
fn dpdk_partial_tx_is_retried_then_freed_and_counted() {
    let (eal, _) = eal();
    let mut dp = Dataplane::new(&eal, settings(Idle::Adaptive)).unwrap();
    let a = ring_port(&eal, "a", 1024, 1024);
    let b = ring_port(&eal, "b", 1024, 64); // 63 usable slots
    let (a_rx, b_tx) = (a.rx.clone(), b.tx.clone());
    dp.add_pair(a.port, b.port).unwrap();
    dp.launch().unwrap();
    let pool = dp.pool().clone();

    // One enqueue of 100: the worker sees all of them at once.
    let pkts: Vec<_> = (0..100)
        .map(|s| dataplane::dpdk::Mbuf::from_slice(&pool, &common::frame(s, 64)).unwrap())
        .collect();
    assert!(a_rx.enqueue(pkts).is_empty());

    let done = wait_until(WAIT, || {
        dp.port_report("a").unwrap().counters.rx_packets == 100 && {
            let b = dp.port_report("b").unwrap().counters;
            b.tx_packets + b.dropped_total() == 100
        }
    });
    let rb = dp.port_report("b").unwrap().counters;
    assert!(done, "stalled: {rb:?}");
    assert_eq!(rb.tx_packets, 63);
    assert_eq!(rb.dropped(DropReason::TxFull), 37);
    assert_eq!(rb.tx_retries, 12);
    assert_eq!(rb.tx_bytes, 63 * 64);
    let w = dp.worker_reports()[0].counters;
    assert_eq!((w.rx_packets, w.tx_packets, w.dropped), (100, 63, 37));
    // The 37 were freed, not leaked; the 63 sit in the ring.
    assert_eq!(pool.in_use(), 63);
    let out = b_tx.dequeue(100);
    assert_eq!(
        out.iter().map(|m| seq_of(m.data())).collect::<Vec<_>>(),
        (0..63).collect::<Vec<_>>()
    );
    drop(out);
    assert_eq!(pool.in_use(), 0);
}

/// An idle adaptive worker sleeps, and still forwards what arrives afterwards.
#[test]
fn dpdk_adaptive_worker_sleeps_when_idle_and_wakes_for_traffic() {
    let (eal, _) = eal();
    let mut dp = Dataplane::new(&eal, settings(Idle::Adaptive)).unwrap();
    let a = ring_port(&eal, "a", 1024, 1024);
    let b = ring_port(&eal, "b", 1024, 1024);
    let a_rx = a.rx.clone();
    dp.add_pair(a.port, b.port).unwrap();
    dp.launch().unwrap();
    assert!(
        wait_until(WAIT, || dp.worker_reports()[0].counters.sleeps > 100),
        "idle worker never slept"
    );
    let pool = dp.pool().clone();
    inject(&pool, &a_rx, 0, 500, 64);
    assert!(wait_until(WAIT, || dp
        .port_report("b")
        .unwrap()
        .counters
        .tx_packets
        == 500));
    // A busy worker never sleeps.
}
