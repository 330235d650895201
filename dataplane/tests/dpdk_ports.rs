//! Port lifecycle on `net_null` and `net_ring` (needs root and hugepages: the EAL runs
//! in-memory on hugepages). One test per process (cargo nextest).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{config, eal, frame, ring_port};
use dataplane::dpdk::{Eal, Mbuf, Mempool, Port};

fn null_port(name: &str, no_rx: bool) -> dataplane::config::PortConfig {
    let cfg = config(&format!(
        "[[dataplane.port]]\nname = \"{name}\"\nkind = \"null\"\nno_rx = {no_rx}\n[[dataplane.port]]\nname = \"other\"\nkind = \"ring\"\n[[dataplane.pair]]\nports = [\"{name}\", \"other\"]\n"
    ));
    cfg.ports[0].clone()
}

#[test]
fn dpdk_port_start_stop_restart_and_reattach() {
    let (eal, _) = eal();
    let pool = Arc::new(Mempool::new(&eal, "pool", 2047, 32).unwrap());
    let cfg = null_port("n0", true);
    let mut p = Port::attach(&eal, &cfg).unwrap();
    assert_eq!(p.name(), "n0");
    assert_eq!(p.dev_name(), "net_null_n0");
    assert!(!p.is_started());
    // Starting an unconfigured port is refused, not undefined.
    let err = p.start().unwrap_err();
    assert_eq!(err.code, libc::EINVAL);
    p.configure(Arc::clone(&pool), 512, 512).unwrap();
    p.start().unwrap();
    assert!(p.is_started());
    assert!(p.link().up);
    p.stop().unwrap();
    assert!(!p.is_started());
    p.start().unwrap();
    let stats = p.stats().unwrap();
    assert_eq!(stats.ipackets, 0);
    let id = p.id();
    drop(p);
    // The device was removed from the bus: the same name attaches again.
    let mut p = Port::attach(&eal, &cfg).unwrap();
    assert_eq!(p.id(), id, "the freed port id is reused");
    p.configure(pool, 512, 512).unwrap();
    p.start().unwrap();
}

#[test]
fn dpdk_attach_errors_carry_dpdk_log_and_hint() {
    let (eal, _) = eal();
    let cfg = config(
        "[[dataplane.port]]\nname = \"x\"\nkind = \"af_packet\"\niface = \"pal-none0\"\n[[dataplane.port]]\nname = \"y\"\nkind = \"ring\"\n[[dataplane.pair]]\nports = [\"x\", \"y\"]\n",
    );
    let err = Port::attach(&eal, &cfg.ports[0]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("attach port x (net_af_packet_x,iface=pal-none0,qpairs=1):"),
        "{msg}"
    );
    assert!(msg.contains("check that the interface exists"), "{msg}");
    assert!(
        msg.contains("DPDK said:") && msg.contains("pal-none0"),
        "{msg}"
    );
    // A failed attach leaves nothing behind: a valid port can take the next id.
    let ok = Port::attach(&eal, &null_port("n1", true)).unwrap();
    assert_eq!(ok.id().0, 0);
}

#[test]
fn dpdk_eal_initialises_once_per_process() {
    let (eal, cfg) = eal();
    assert_eq!(eal.main_lcore().0, 0);
    assert_eq!(
        eal.worker_lcores().iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![1]
    );
    let err = Eal::init(&cfg.eal_args()).unwrap_err();
    assert_eq!(err.code, libc::EALREADY);
    assert!(
        err.to_string()
            .contains("run each DPDK test in its own process"),
        "{err}"
    );
}

#[test]
fn dpdk_mbuf_owns_one_reference() {
    let (eal, _) = eal();
    let pool = Mempool::new(&eal, "pool", 1023, 0).unwrap();
    assert_eq!(pool.in_use(), 0);
    let data = frame(7, 60);
    let mut m = Mbuf::from_slice(&pool, &data).unwrap();
    assert_eq!(m.data(), &data[..]);
    assert_eq!((m.len(), m.pkt_len()), (60, 60));
    m.data_mut()[0] = 0xff;
    assert_eq!(m.data()[0], 0xff);
    // More than one segment's room is refused without changing the packet.
    assert!(m.append(4096).is_none());
    assert_eq!(m.len(), 60);
    assert_eq!(pool.in_use(), 1);
    drop(m);
    assert_eq!(pool.in_use(), 0);
    // Exhaustion is an Option, not a crash.
    let all: Vec<Mbuf> = std::iter::from_fn(|| Mbuf::alloc(&pool)).collect();
    assert_eq!(all.len(), 1023);
    assert!(Mbuf::alloc(&pool).is_none());
    drop(all);
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn dpdk_ring_port_round_trip_without_workers() {
    let (eal, _) = eal();
    let pool = Arc::new(Mempool::new(&eal, "pool", 1023, 0).unwrap());
    let mut rp = ring_port(&eal, "r0", 64, 64);
    rp.port.configure(Arc::clone(&pool), 64, 64).unwrap();
    rp.port.start().unwrap();
    // Ring freed with mbufs inside returns them to the pool.
    let left = rp.rx.enqueue(
        (0..10)
            .map(|s| Mbuf::from_slice(&pool, &frame(s, 64)).unwrap())
            .collect(),
    );
    assert!(left.is_empty());
    assert_eq!(rp.rx.count(), 10);
    assert_eq!(pool.in_use(), 10);
    drop(rp);
    assert_eq!(pool.in_use(), 0);
}
