//! Port pairs hotplugged in and out while another pair forwards (needs root and hugepages).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{WAIT, config, eal, inject, ring_port, wait_until};
use dataplane::dpdk::{Dataplane, Port, Settings};

#[test]
fn dpdk_hotplug_pair_add_remove_while_other_pair_forwards() {
    const N: u32 = 150_000;
    let (eal, _) = eal();
    let cfg = config(
        "[[dataplane.port]]\nname = \"c\"\nkind = \"null\"\n[[dataplane.port]]\nname = \"d\"\nkind = \"null\"\n[[dataplane.pair]]\nports = [\"c\", \"d\"]\n",
    );
    let mut dp = Dataplane::new(&eal, Settings::from_config(&cfg)).unwrap();
    // a (ring, fed by the test) -> sink (null, never refuses a packet), so the counts are exact
    // however the CPU is shared.
    let a = ring_port(&eal, "a", 1024, 1024);
    let a_rx = a.rx.clone();
    let sink_cfg = config(
        "[[dataplane.port]]\nname = \"sink\"\nkind = \"null\"\nno_rx = true\n[[dataplane.port]]\nname = \"x\"\nkind = \"ring\"\n[[dataplane.pair]]\nports = [\"sink\", \"x\"]\n",
    );
    let sink = Port::attach(&eal, &sink_cfg.ports[0]).unwrap();
    dp.add_pair(a.port, sink).unwrap();
    dp.launch().unwrap();
    let pool = dp.pool().clone();

    // Steady traffic a -> sink for the whole test.
    let p2 = pool.clone();
    let injector = std::thread::spawn(move || inject(&p2, &a_rx, 0, N, 64));

    // Meanwhile: a null <-> null pair (traffic both ways, as fast as it goes) comes and goes.
    for round in 0..5 {
        let id = dp.attach_pair(&cfg.ports[0], &cfg.ports[1]).unwrap();
        let before = dp.port_report("d").unwrap().counters.tx_packets;
        assert_eq!(before, 0, "round {round}: a fresh pair starts from zero");
        assert!(wait_until(WAIT, || dp
            .port_report("d")
            .map_or(0, |r| r.counters.tx_packets)
            > 10_000));
        assert_eq!(dp.pairs().len(), 2);
        dp.remove_pair(id).unwrap();
        assert!(dp.port_report("c").is_none());
        assert_eq!(dp.pairs().len(), 1);
    }
    // Removing twice is an error, not a crash.
    assert_eq!(
        dp.remove_pair(dataplane::dpdk::PairId(999))
            .unwrap_err()
            .code,
        libc::ENOENT
    );

    injector.join().unwrap();
    assert!(wait_until(WAIT, || dp
        .port_report("sink")
        .unwrap()
        .counters
        .tx_packets
        == u64::from(N)));
    let ra = dp.port_report("a").unwrap().counters;
    let rs = dp.port_report("sink").unwrap();
    assert_eq!(
        (
            ra.rx_packets,
            rs.counters.tx_packets,
            rs.counters.dropped_total()
        ),
        (u64::from(N), u64::from(N), 0)
    );
    assert_eq!(rs.pmd.unwrap().opackets, u64::from(N));

    // The removed devices are gone from the bus: their names attach again.
    let again = Port::attach(&eal, &cfg.ports[0]).unwrap();
    assert_eq!(again.dev_name(), "net_null_c");
    drop(again);
    assert_eq!(dp.worker_reports()[0].pairs, 1);
}

#[test]
fn dpdk_pairs_spread_over_workers_and_config_start() {
    let (eal, _) = eal();
    let cfg = config(
        "[[dataplane.port]]\nname = \"c\"\nkind = \"null\"\n[[dataplane.port]]\nname = \"d\"\nkind = \"null\"\nno_rx = true\n[[dataplane.pair]]\nports = [\"c\", \"d\"]\n",
    );
    let dp = Dataplane::from_config(&eal, &cfg).unwrap();
    assert_eq!(dp.pairs().len(), 1);
    assert!(wait_until(WAIT, || dp
        .port_report("d")
        .unwrap()
        .counters
        .tx_packets
        > 1000));
    let c = dp.port_report("c").unwrap();
    assert_eq!(c.lcores, [dataplane::dpdk::LcoreId(1)]);
    assert!(c.link.up);
    drop(dp);
}
