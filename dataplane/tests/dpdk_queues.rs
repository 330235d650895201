//! A port pair with several queues spread over several workers (needs root and hugepages).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{WAIT, wait_until};
use dataplane::config;
use dataplane::dpdk::{Dataplane, Eal};

#[test]
fn dpdk_queues_of_a_pair_run_on_their_own_workers() {
    // Three lcores on two CPUs: the main lcore and two workers, the second sharing CPU 1.
    let cfg = config::parse(
        &format!(
            "[dataplane]\nlcores = \"0-1,2@1\"\nmemory = \"in-memory\"\nfile_prefix = \"pq{}\"\nmbufs = 8191\nsessions = 4096\n\
             [[dataplane.port]]\nname = \"c\"\nkind = \"null\"\nqueues = 2\n\
             [[dataplane.port]]\nname = \"d\"\nkind = \"null\"\nno_rx = true\nqueues = 2\n\
             [[dataplane.pair]]\nports = [\"c\", \"d\"]\n",
            std::process::id()
        ),
        Path::new("test.toml"),
    )
    .unwrap();
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let eal = Eal::init(&cfg.eal_args()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(eal.worker_lcores().len(), 2);
    let dp = Dataplane::from_config(&eal, &cfg).unwrap();
    let pair = &dp.pairs()[0];
    assert_eq!(
        pair.lcores.iter().map(|l| l.0).collect::<Vec<_>>(),
        [1, 2],
        "one lane per worker"
    );
    // The null port receives on both queues: both workers forward.
    assert!(wait_until(WAIT, || dp
        .worker_reports()
        .iter()
        .all(|w| w.counters.tx_packets > 1000)));
    let workers = dp.worker_reports();
    assert!(workers.iter().all(|w| w.pairs == 1));
    // The port's counters are the sum of its queues' (each written by its own worker): read
    // after the workers', they are at least their sum (all the workers send goes to d).
    let sum: u64 = workers.iter().map(|w| w.counters.tx_packets).sum();
    let d = dp.port_report("d").unwrap();
    assert!(
        d.counters.tx_packets >= sum,
        "{} < {sum}",
        d.counters.tx_packets
    );
    assert_eq!(d.lcores.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn dpdk_three_queues_on_one_worker_with_rss_configured() {
    let cfg = common::config(
        "[[dataplane.port]]\nname = \"c\"\nkind = \"null\"\nqueues = 3\n[[dataplane.port]]\nname = \"d\"\nkind = \"null\"\nno_rx = true\nqueues = 3\n[[dataplane.pair]]\nports = [\"c\", \"d\"]\n",
    );
    let eal = Eal::init(&cfg.eal_args()).unwrap_or_else(|e| panic!("{e}"));
    let dp = Dataplane::from_config(&eal, &cfg).unwrap();
    assert!(wait_until(WAIT, || dp
        .port_report("d")
        .unwrap()
        .counters
        .tx_packets
        > 1000));
    let d = dp.port_report("d").unwrap();
    assert_eq!(d.lcores.len(), 3);
    // net_null accepts an RSS configuration (it reports hash types): the symmetric key is set.
    assert!(d.rss);
    drop(dp);
}

#[test]
fn dpdk_pairs_with_unequal_queues_are_refused_and_lanes_share_one_worker() {
    let cfg = common::config(
        "[[dataplane.port]]\nname = \"c\"\nkind = \"null\"\nqueues = 16\n[[dataplane.port]]\nname = \"d\"\nkind = \"null\"\nqueues = 16\n[[dataplane.pair]]\nports = [\"c\", \"d\"]\n",
    );
    let eal = Eal::init(&cfg.eal_args()).unwrap_or_else(|e| panic!("{e}"));
    // A ring port has one queue: pairing a 16-queue null port with it is refused before
    // anything starts.
    let ring = common::ring_port(&eal, "r", 64, 64);
    let mut dp = Dataplane::new(&eal, dataplane::dpdk::Settings::from_config(&cfg)).unwrap();
    let c = dataplane::dpdk::Port::attach(&eal, &cfg.ports[0]).unwrap();
    let e = dp.add_pair(c, ring.port).unwrap_err();
    assert_eq!(e.code, libc::EINVAL);
    assert!(e.reason.contains("16 queues"), "{e}");
    // Both ports of a 16-queue pair on one worker: every lane there.
    dp.attach_pair(&cfg.ports[0], &cfg.ports[1]).unwrap();
    dp.launch().unwrap();
    assert_eq!(dp.pairs()[0].lcores.len(), 16);
    assert!(dp.pairs()[0].lcores.iter().all(|l| l.0 == 1));
}
