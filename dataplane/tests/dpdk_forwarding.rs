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
        tcp_reset: true,
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

/// The worker runs every packet through the pipeline: malformed frames are dropped and counted
/// by reason on the port they came in on; a later IP fragment that arrives before its first
/// fragment is held, then sent right behind it.
#[test]
fn dpdk_worker_drops_malformed_and_holds_early_fragments() {
    use dataplane::dpdk::Mbuf;
    use dataplane::wire::Malformed;
    let (eal, _) = eal();
    let mut dp = Dataplane::new(&eal, settings(Idle::Adaptive)).unwrap();
    let a = ring_port(&eal, "a", 1024, 1024);
    let b = ring_port(&eal, "b", 1024, 1024);
    let (a_rx, b_tx) = (a.rx.clone(), b.tx.clone());
    dp.add_pair(a.port, b.port).unwrap();
    dp.launch().unwrap();
    let pool = dp.pool().clone();

    // 10 good frames, 3 with a bad IPv4 version, 2 truncated inside the UDP header.
    let mut pkts: Vec<Mbuf> = (0..10)
        .map(|s| Mbuf::from_slice(&pool, &common::frame(s, 80)).unwrap())
        .collect();
    for s in 0..3 {
        let mut f = common::frame(100 + s, 80);
        f[14] = 0x55;
        pkts.push(Mbuf::from_slice(&pool, &f).unwrap());
    }
    for s in 0..2 {
        let mut f = common::frame(200 + s, 80);
        f[16..18].copy_from_slice(&24u16.to_be_bytes()); // IP total length: 20 + 4 bytes of UDP
        pkts.push(Mbuf::from_slice(&pool, &f).unwrap());
    }
    assert!(a_rx.enqueue(pkts).is_empty());
    assert!(wait_until(WAIT, || dp
        .port_report("a")
        .unwrap()
        .counters
        .rx_packets
        == 15));
    assert!(wait_until(WAIT, || dp
        .port_report("b")
        .unwrap()
        .counters
        .tx_packets
        == 10));
    let ra = dp.port_report("a").unwrap().counters;
    assert_eq!(ra.dropped(DropReason::Malformed), 5);
    let w = &dp.worker_reports()[0];
    assert_eq!(w.pipeline.frames, 15);
    assert_eq!(w.pipeline.malformed[Malformed::Ipv4BadVersion.index()], 3);
    assert_eq!(w.pipeline.malformed[Malformed::UdpTruncated.index()], 2);
    assert_eq!(
        w.conntrack.created, 1,
        "the ten good frames are one UDP flow"
    );
    drop(b_tx.dequeue(64));

    // Fragments of one datagram, the later one first: held, then released behind the first.
    let first = fragment(true);
    let later = fragment(false);
    assert!(
        a_rx.enqueue(vec![Mbuf::from_slice(&pool, &later).unwrap()])
            .is_empty()
    );
    assert!(wait_until(WAIT, || dp.worker_reports()[0].fragments.held == 1));
    assert_eq!(b_tx.count(), 0, "held, not sent");
    assert!(
        a_rx.enqueue(vec![Mbuf::from_slice(&pool, &first).unwrap()])
            .is_empty()
    );
    assert!(wait_until(WAIT, || b_tx.count() == 2));
    let out = b_tx.dequeue(4);
    assert_eq!(out[0].data(), &first[..]);
    assert_eq!(out[1].data(), &later[..]);
    assert_eq!(dp.worker_reports()[0].fragments.released, 1);
    drop(out);
    assert_eq!(pool.in_use(), 0, "nothing leaked");
}

/// An IPv4/UDP datagram of 1008 payload bytes in two fragments (id 0x4242): the first
/// carries the UDP header and 992 bytes, the later one the last 16 bytes at offset 1000.
fn fragment(first: bool) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let (payload_len, frag_field) = if first {
        (1000usize, 0x2000u16)
    } else {
        (16, 125)
    };
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0x42, 0x42]);
    f.extend_from_slice(&frag_field.to_be_bytes());
    f.extend_from_slice(&[64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]);
    if first {
        f.extend_from_slice(&4000u16.to_be_bytes());
        f.extend_from_slice(&5000u16.to_be_bytes());
        f.extend_from_slice(&1016u16.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend(std::iter::repeat_n(0xab, 992));
    } else {
        f.extend(std::iter::repeat_n(0xcd, 16));
    }
    f
}
