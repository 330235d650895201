//! Policy enforced by a real palisade-dp between two network namespaces, driven over the
//! control socket by a client in the test (needs root, network namespaces, hugepages, DPDK).
//!
//! protect: the allowed TCP connection works, another is refused (RST) and its violation
//! arrives on the event stream; discover: both pass and both are reported; the control client
//! goes away and the policy stays enforced.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use dataplane::ctl::Client;
use dataplane::policy::{Action, Group, Mode, Policy, PortSpec, Rule, Workload};
use dataplane::report::{Event, Verdict};
use palisade_tests::{DpProcess, Netns, Veth, echo_servers, talk, unique};

const CLIENT: &str = "198.18.0.1";
const SERVER: &str = "198.18.0.2";

fn policy(generation: u64, mode: Mode) -> Policy {
    let group = |name: &str| Group {
        name: name.into(),
        mode,
        members: vec![],
        cidrs: vec![],
    };
    let workload = |id: &str, group: &str, ip: &str| Workload {
        id: id.into(),
        group: group.into(),
        mode,
        macs: vec![],
        ips: vec![ip.parse().unwrap()],
        exempt: false,
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
        workloads: vec![
            workload("client", "g.client", CLIENT),
            workload("server", "g.server", SERVER),
        ],
        nodes: vec![],
    }
}

/// The client's and the server's namespaces, joined through a running palisade-dp whose two
/// af_packet ports (`queues` each) are the host ends of their veths; echo servers on the
/// server's 5001 and 5002.
struct Bed {
    ns_a: Netns,
    /// Kept until the test ends (its echo servers live there).
    _ns_b: Netns,
    _veths: (Veth, Veth),
    socket: std::path::PathBuf,
    dp: DpProcess,
    _dir: tempfile::TempDir,
}

impl Bed {
    fn start(tag: &str, lcores: &str, queues: u16) -> Bed {
        let ns_a = Netns::new(&format!("{tag}-a"));
        let ns_b = Netns::new(&format!("{tag}-b"));
        let va = Veth::new(&ns_a, &format!("p{tag}a"), &format!("{CLIENT}/24"));
        let vb = Veth::new(&ns_b, &format!("p{tag}b"), &format!("{SERVER}/24"));
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("dp.sock");
        let mut dp = DpProcess::spawn(&format!(
            "[dataplane]\nlcores = \"{lcores}\"\nfile_prefix = \"{}\"\nsessions = 4096\nsocket = \"{}\"\nstats_interval_s = 0\n\
             [[dataplane.port]]\nname = \"a\"\nkind = \"af_packet\"\niface = \"{}\"\nqueues = {queues}\n\
             [[dataplane.port]]\nname = \"b\"\nkind = \"af_packet\"\niface = \"{}\"\nqueues = {queues}\n\
             [[dataplane.pair]]\nports = [\"a\", \"b\"]\n",
            unique(tag),
            socket.display(),
            va.host(),
            vb.host()
        ));
        dp.wait_ready(Duration::from_secs(30));
        echo_servers(&ns_b, SERVER, &[5001, 5002]);
        Bed {
            ns_a,
            _ns_b: ns_b,
            _veths: (va, vb),
            socket,
            dp,
            _dir: dir,
        }
    }
}

/// Events until `pred` has seen what it wants or `timeout` passes.
fn wait_events(
    c: &mut Client,
    timeout: Duration,
    mut pred: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Some(e) = c.next_event(Some(Duration::from_millis(200))).unwrap() {
            let done = pred(&e);
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
    panic!("event not seen in {timeout:?}; got {seen:#?}");
}

#[test]
fn netns_protect_allows_the_rule_and_refuses_the_rest_then_discover_reports_both() {
    let bed = Bed::start("pol", "0-1", 1);
    let (ns_a, socket, mut dp) = (&bed.ns_a, bed.socket.clone(), bed.dp);

    let mut ctl = Client::connect(&socket).unwrap();
    let mut events = Client::connect(&socket).unwrap();
    events.subscribe().unwrap();

    // Before any policy: nothing is a workload, everything passes.
    assert_eq!(talk(ns_a, SERVER, 5002), Ok(()));

    // protect: the rule's port works, the other is refused at once and reported.
    assert_eq!(ctl.set_policy(&policy(1, Mode::Protect)).unwrap(), 1);
    assert_eq!(talk(ns_a, SERVER, 5001), Ok(()));
    let started = Instant::now();
    assert_eq!(
        talk(ns_a, SERVER, 5002),
        Err(ErrorKind::ConnectionRefused),
        "the dataplane answers with a RST"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused, not timed out"
    );
    let seen = wait_events(
        &mut events,
        Duration::from_secs(10),
        |e| matches!(e, Event::Violation(v) if v.server.addr.port() == 5002),
    );
    let Some(Event::Violation(v)) = seen.last() else {
        panic!()
    };
    assert_eq!(v.client.addr.ip().to_string(), CLIENT);
    assert_eq!(v.client.workload.as_deref(), Some("client"));
    assert_eq!(v.client.group, "g.client");
    assert_eq!(v.server.group, "g.server");
    assert_eq!(
        (v.proto, v.mode, v.verdict, v.rule),
        (6, Mode::Protect, Verdict::Denied, None)
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::Violation(v) if v.server.addr.port() == 5001)),
        "the allowed connection is no violation"
    );

    // discover: both pass, both are reported for learning.
    assert_eq!(ctl.set_policy(&policy(2, Mode::Discover)).unwrap(), 2);
    assert_eq!(talk(ns_a, SERVER, 5001), Ok(()));
    assert_eq!(talk(ns_a, SERVER, 5002), Ok(()));
    let mut ports = std::collections::BTreeSet::new();
    wait_events(&mut events, Duration::from_secs(10), |e| {
        if let Event::Connection(c) = e
            && c.mode == Mode::Discover
            && c.verdict == Verdict::Allowed
            && c.client.workload.as_deref() == Some("client")
        {
            ports.insert(c.server.addr.port());
        }
        ports.contains(&5001) && ports.contains(&5002)
    });

    // protect again, then the control clients go away: the policy stays.
    assert_eq!(ctl.set_policy(&policy(3, Mode::Protect)).unwrap(), 3);
    drop(ctl);
    drop(events);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(talk(ns_a, SERVER, 5002), Err(ErrorKind::ConnectionRefused));
    assert_eq!(talk(ns_a, SERVER, 5001), Ok(()));

    // A new client resyncs: it learns the generation running.
    let again = Client::connect(&socket).unwrap();
    assert_eq!(again.server().generation, 3);
    drop(again);

    let st = dp.terminate(Duration::from_secs(15));
    assert!(st.success(), "{}", dp.log_text());
    assert!(!socket.exists(), "the socket file is removed on exit");
}

/// Two workers on two queues of each af_packet port (lcore 2 shares CPU 1 on a 2-core box):
/// the kernel's fanout hash must put a connection and its replies on the same queue index, so
/// on the same worker and connection table. In protect mode a reply landing on the other
/// worker would be picked up mid-flow there, and judged as a new connection from the server
/// (denied): every connection working, with no session picked up, shows both directions met.
#[test]
fn netns_two_workers_on_two_queues_see_both_directions_of_every_connection() {
    let bed = Bed::start("mq", "0-1,2@1", 2);
    let (ns_a, socket, mut dp) = (&bed.ns_a, bed.socket.clone(), bed.dp);
    let mut ctl = Client::connect(&socket).unwrap();
    let stats = ctl.stats().unwrap();
    assert_eq!(stats.pairs.len(), 1);
    assert_eq!(stats.pairs[0].lcores, vec![1, 2], "one queue per worker");
    assert_eq!(stats.workers.len(), 2);

    assert_eq!(ctl.set_policy(&policy(1, Mode::Protect)).unwrap(), 1);
    // Each connection has a fresh ephemeral port, so a fresh hash: 40 spread over both queues.
    for i in 0..40 {
        assert_eq!(
            talk(ns_a, SERVER, 5001),
            Ok(()),
            "connection {i}:\n{}",
            dp.log_text()
        );
    }
    for _ in 0..4 {
        assert_eq!(
            talk(ns_a, SERVER, 5002),
            Err(ErrorKind::ConnectionRefused),
            "the RST leaves by the worker's own queue"
        );
    }
    let stats = ctl.stats().unwrap();
    for w in &stats.workers {
        assert!(
            w.sessions.created >= 4,
            "lcore {} got too few connections: {:?}",
            w.lcore,
            w.sessions
        );
        assert_eq!(
            w.sessions.picked_up, 0,
            "lcore {}: a reply missed its session",
            w.lcore
        );
    }
    let denied: u64 = stats.workers.iter().map(|w| w.pipeline.policy_drops).sum();
    assert!(
        denied >= 4,
        "the refused connections were dropped: {denied}"
    );
    let a = stats.ports.iter().find(|p| p.name == "a").unwrap();
    assert_eq!(a.lcores, vec![1, 2]);
    assert!(
        !a.rss,
        "af_packet spreads by the kernel's fanout hash, not RSS"
    );
    drop(ctl);
    let st = dp.terminate(Duration::from_secs(15));
    assert!(st.success(), "{}", dp.log_text());
}
