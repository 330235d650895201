//! Every port kind attaches from its config entry and carries packets: each test feeds a ring
//! port and counts what arrives at the far end (needs root and hugepages; tap and af_xdp also
//! create kernel interfaces, removed again before the test ends).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{WAIT, config, eal, inject, ring_port, wait_until};
use dataplane::config::PortConfig;
use dataplane::dpdk::{Dataplane, Eal, Port, Settings};

const N: u32 = 1000;

/// The port entries of a config text (pairs are not needed for attaching by hand).
fn ports(text: &str) -> Vec<PortConfig> {
    // Pair every port with a throwaway ring so the config validates.
    let mut full = String::from(text);
    let names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|n| n.trim_end_matches('"').to_owned())
        .collect();
    for n in &names {
        full.push_str(&format!(
            "[[dataplane.port]]\nname = \"{n}_peer\"\nkind = \"ring\"\n[[dataplane.pair]]\nports = [\"{n}\", \"{n}_peer\"]\n"
        ));
    }
    config(&full)
        .ports
        .into_iter()
        .filter(|p| !p.name.ends_with("_peer"))
        .collect()
}

fn dataplane(eal: &Eal) -> Dataplane {
    let cfg = config("");
    Dataplane::new(eal, Settings::from_config(&cfg)).unwrap()
}

fn sink(eal: &Eal, name: &str) -> Port {
    let p = ports(&format!(
        "[[dataplane.port]]\nname = \"{name}\"\nkind = \"null\"\nno_rx = true\n"
    ));
    Port::attach(eal, &p[0]).unwrap()
}

fn sysfs_counter(iface: &str, name: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/statistics/{name}"))
        .map(|s| s.trim().parse().unwrap_or(0))
        .unwrap_or(0)
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?}");
}

/// Two shared-memory kinds, both ends in this process: ring a -> first end ~ second end -> sink.
fn through_two_ends(first: &str, second: &str) {
    let (eal, _) = eal();
    let mut dp = dataplane(&eal);
    let p = ports(&format!("{first}{second}"));
    let a = ring_port(&eal, "a", 1024, 1024);
    let a_rx = a.rx.clone();
    dp.add_pair(a.port, Port::attach(&eal, &p[0]).unwrap())
        .unwrap();
    dp.add_pair(Port::attach(&eal, &p[1]).unwrap(), sink(&eal, "sink"))
        .unwrap();
    dp.launch().unwrap();
    let (e0, e1) = (p[0].name.clone(), p[1].name.clone());
    assert!(
        wait_until(WAIT, || dp.port_report(&e0).unwrap().link.up
            && dp.port_report(&e1).unwrap().link.up),
        "the two ends never connected"
    );
    // In memif (and vhost), the receiving end hands the sender its buffers when it polls: let
    // the worker poll a few times after the link came up before sending.
    let loops = dp.worker_reports()[0].counters.loops;
    assert!(wait_until(WAIT, || dp.worker_reports()[0].counters.loops > loops + 100));
    let pool = dp.pool().clone();
    // Paced in chunks that fit the shared rings: a burst into a full ring would be dropped
    // (and counted), which is not what this test is about.
    for chunk in 0..N / 100 {
        inject(&pool, &a_rx, chunk * 100, 100, 128);
        let want = u64::from((chunk + 1) * 100);
        assert!(
            wait_until(WAIT, || dp.port_report("sink").unwrap().counters.tx_packets
                == want),
            "{:?}",
            dp.port_reports()
        );
    }
    assert_eq!(
        dp.port_report(&e0).unwrap().counters.tx_packets,
        u64::from(N)
    );
    assert_eq!(dp.port_report(&e0).unwrap().counters.dropped_total(), 0);
    assert_eq!(
        dp.port_report(&e1).unwrap().counters.rx_packets,
        u64::from(N)
    );
    assert_eq!(
        dp.port_report(&e1).unwrap().counters.rx_bytes,
        u64::from(N) * 128
    );
}

#[test]
fn dpdk_kind_memif_server_to_client() {
    let sock = format!("/run/palisade-test-memif-{}.sock", std::process::id());
    through_two_ends(
        &format!(
            "[[dataplane.port]]\nname = \"ms\"\nkind = \"memif\"\nsocket = \"{sock}\"\nrole = \"server\"\n"
        ),
        &format!(
            "[[dataplane.port]]\nname = \"mc\"\nkind = \"memif\"\nsocket = \"{sock}\"\nrole = \"client\"\n"
        ),
    );
}

#[test]
fn dpdk_kind_vhost_to_virtio_user() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("vhost.sock");
    let sock = sock.to_str().unwrap();
    through_two_ends(
        &format!("[[dataplane.port]]\nname = \"vh\"\nkind = \"vhost\"\nsocket = \"{sock}\"\n"),
        &format!("[[dataplane.port]]\nname = \"vu\"\nkind = \"virtio_user\"\npath = \"{sock}\"\n"),
    );
}

#[test]
fn dpdk_kind_pcap_writes_then_replays() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.pcap");
    let file = file.to_str().unwrap().to_owned();
    {
        // ring -> pcap writer
        let (eal, _) = eal();
        let mut dp = dataplane(&eal);
        let p = ports(&format!(
            "[[dataplane.port]]\nname = \"pw\"\nkind = \"pcap\"\ntx_pcap = \"{file}\"\n"
        ));
        let a = ring_port(&eal, "a", 1024, 1024);
        let a_rx = a.rx.clone();
        dp.add_pair(a.port, Port::attach(&eal, &p[0]).unwrap())
            .unwrap();
        dp.launch().unwrap();
        let pool = dp.pool().clone();
        inject(&pool, &a_rx, 0, N, 100);
        assert!(wait_until(WAIT, || dp
            .port_report("pw")
            .unwrap()
            .counters
            .tx_packets
            == u64::from(N)));
        // Removing the pair closes the writer, which flushes the file.
        let id = dp.pairs()[0].id;
        dp.remove_pair(id).unwrap();
        // pcap: 24-byte file header, then 16 bytes + the frame per packet.
        let len = std::fs::metadata(&file).unwrap().len();
        assert_eq!(len, 24 + u64::from(N) * (16 + 100));

        // pcap reader -> sink, in the same process (the EAL is per process).
        let p = ports(&format!(
            "[[dataplane.port]]\nname = \"pr\"\nkind = \"pcap\"\nrx_pcap = \"{file}\"\n"
        ));
        dp.add_pair(Port::attach(&eal, &p[0]).unwrap(), sink(&eal, "sink"))
            .unwrap();
        assert!(wait_until(WAIT, || dp
            .port_report("sink")
            .unwrap()
            .counters
            .tx_packets
            == u64::from(N)));
        assert_eq!(
            dp.port_report("pr").unwrap().counters.rx_bytes,
            u64::from(N) * 100
        );
    }
}

#[test]
fn dpdk_kind_tap_creates_and_removes_its_interface() {
    let iface = format!("ptap{:x}", std::process::id() & 0xfffff);
    let (eal, _) = eal();
    let mut dp = dataplane(&eal);
    let p = ports(&format!(
        "[[dataplane.port]]\nname = \"t\"\nkind = \"tap\"\niface = \"{iface}\"\n"
    ));
    let a = ring_port(&eal, "a", 1024, 1024);
    let a_rx = a.rx.clone();
    let id = dp
        .add_pair(a.port, Port::attach(&eal, &p[0]).unwrap())
        .unwrap();
    dp.launch().unwrap();
    assert!(std::path::Path::new(&format!("/sys/class/net/{iface}")).exists());
    sh(&["ip", "link", "set", &iface, "up"]);
    let before = sysfs_counter(&iface, "rx_packets");
    let pool = dp.pool().clone();
    inject(&pool, &a_rx, 0, N, 100);
    assert!(wait_until(WAIT, || dp
        .port_report("t")
        .unwrap()
        .counters
        .tx_packets
        == u64::from(N)));
    // What the port transmits, the kernel receives on the TAP interface.
    assert!(wait_until(WAIT, || sysfs_counter(&iface, "rx_packets")
        - before
        == u64::from(N)));
    dp.remove_pair(id).unwrap();
    assert!(
        !std::path::Path::new(&format!("/sys/class/net/{iface}")).exists(),
        "tap interface left behind"
    );
}

#[test]
fn dpdk_kind_af_xdp_and_af_packet_on_a_veth() {
    let x = format!("pxa{:x}", std::process::id() & 0xfffff);
    let y = format!("pxb{:x}", std::process::id() & 0xfffff);
    sh(&["ip", "link", "add", &x, "type", "veth", "peer", "name", &y]);
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    let _del = Del(x.clone());
    for i in [&x, &y] {
        sh(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{i}.disable_ipv6=1"),
        ]);
        sh(&["ip", "link", "set", i, "up"]);
    }
    let (eal, _) = eal();
    let mut dp = dataplane(&eal);
    // ring -> af_xdp on x ~veth~ y -> af_packet on y -> sink
    let p = ports(&format!(
        "[[dataplane.port]]\nname = \"xdp\"\nkind = \"af_xdp\"\niface = \"{x}\"\n[[dataplane.port]]\nname = \"pkt\"\nkind = \"af_packet\"\niface = \"{y}\"\n"
    ));
    let a = ring_port(&eal, "a", 1024, 1024);
    let a_rx = a.rx.clone();
    dp.add_pair(a.port, Port::attach(&eal, &p[0]).unwrap())
        .unwrap();
    dp.add_pair(Port::attach(&eal, &p[1]).unwrap(), sink(&eal, "sink"))
        .unwrap();
    dp.launch().unwrap();
    let pool = dp.pool().clone();
    // Frames to a unicast MAC nobody owns: the kernel only passes them along the veth.
    inject(&pool, &a_rx, 0, N, 100);
    assert!(wait_until(WAIT, || dp
        .port_report("xdp")
        .unwrap()
        .counters
        .tx_packets
        == u64::from(N)));
    assert!(
        wait_until(WAIT, || dp.port_report("sink").unwrap().counters.tx_packets
            == u64::from(N)),
        "{:?}",
        dp.port_reports()
    );
    assert_eq!(
        dp.port_report("pkt").unwrap().counters.rx_bytes,
        u64::from(N) * 100
    );
}
