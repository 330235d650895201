//! palisade-dp between two network namespaces: the host ends of their veths are the two
//! af_packet ports of one pair (needs root, network namespaces, hugepages and DPDK).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use palisade_tests::{DpProcess, Netns, Veth, links, tcp_transfer, unique};

fn hugepage_files(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/hugepages")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn netns_af_packet_pair_ping_and_50mb_tcp_then_clean_sigterm() {
    let ns_a = Netns::new("pal-a");
    let ns_b = Netns::new("pal-b");
    let va = Veth::new(&ns_a, "pva", "198.18.0.1/24");
    let vb = Veth::new(&ns_b, "pvb", "198.18.0.2/24");
    let prefix = unique("e2e");
    let before = links();

    // Hugepage files (not in-memory), so the test can see that none is left behind.
    let mut dp = DpProcess::spawn(&format!(
        r#"
[dataplane]
lcores = "0-1"
memory = "hugepages"
file_prefix = "{prefix}"
idle = "adaptive"
stats_interval_s = 1

[[dataplane.port]]
name = "a"
kind = "af_packet"
iface = "{}"

[[dataplane.port]]
name = "b"
kind = "af_packet"
iface = "{}"

[[dataplane.pair]]
ports = ["a", "b"]
"#,
        va.host(),
        vb.host()
    ));
    dp.wait_ready(Duration::from_secs(30));
    assert!(
        std::path::Path::new(&format!("/var/run/dpdk/{prefix}")).exists(),
        "hugepage mode keeps a runtime dir while running"
    );

    let ping = ns_a.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2"]);
    assert!(
        ping.status.success(),
        "ping failed:\n{}\n{}",
        String::from_utf8_lossy(&ping.stdout),
        dp.log_text()
    );
    assert!(String::from_utf8_lossy(&ping.stdout).contains("3 received"));

    let (sent, sent_hash, got, got_hash) =
        tcp_transfer(&ns_a, &ns_b, "198.18.0.2:5001".parse().unwrap(), 50_000_000);
    assert_eq!(sent, 50_000_000);
    assert_eq!(got, sent, "bytes lost");
    assert_eq!(got_hash, sent_hash, "content changed on the way");

    // Reverse direction too, on the same pair.
    let (sent, sent_hash, got, got_hash) =
        tcp_transfer(&ns_b, &ns_a, "198.18.0.1:5002".parse().unwrap(), 5_000_000);
    assert_eq!((got, got_hash), (sent, sent_hash));

    let st = dp.terminate(Duration::from_secs(15));
    assert!(st.success(), "exit status {st}:\n{}", dp.log_text());
    let log = dp.log_text();
    assert!(log.contains("stopped"), "{log}");
    // The final counters: everything a received went out of b and back.
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("port counters") && l.contains("port=a"))
        .unwrap();
    assert!(line.contains("dropped_tx_full=0"), "{line}");

    assert_eq!(
        hugepage_files(&prefix),
        Vec::<String>::new(),
        "hugepage files left behind"
    );
    assert!(
        !std::path::Path::new(&format!("/var/run/dpdk/{prefix}")).exists(),
        "runtime dir left behind"
    );
    assert_eq!(links(), before, "interfaces appeared or vanished");
    drop((va, vb));
}
