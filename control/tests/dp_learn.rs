//! Learning from real traffic (needs root, network namespaces, hugepages and DPDK): a
//! supervised `palisade-dp` forwards between two namespaces in discover mode, one TCP
//! connection crosses it, and the connection records it streams learn exactly one rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use control::dataplane::{DpNotice, Supervisor, SupervisorOptions};
use control::learn::{Context, LearnOutcome, learn};
use control::model::{self, Mode, PortSpec, Rule};
use dataplane::policy::Action;
use dataplane::report::{ConnectionRecord, Event};
use palisade_tests::{Netns, Veth, unique};

mod dp_common;
use dp_common::{Reaper, dp_binary};

const CLIENT: &str = "198.18.0.1";
const SERVER: &str = "198.18.0.2";

fn group(name: &str, mode: Mode) -> model::Group {
    model::Group {
        name: name.into(),
        criteria: vec![],
        network_mode: mode,
        process_mode: Mode::Discover,
        file_mode: Mode::Discover,
        learned: true,
        comment: String::new(),
    }
}

fn workload(id: &str, group: &str, ip: &str) -> model::Workload {
    model::Workload {
        id: id.into(),
        name: id.into(),
        image: format!("{id}:1"),
        labels: BTreeMap::new(),
        group: group.into(),
        ips: vec![ip.parse().unwrap()],
        macs: vec![],
        netns: None,
        veth: None,
        mode: Mode::Discover,
        plumbing: model::Plumbing::Tap,
        exempt: false,
        source: model::WorkloadSource::Api,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_dpdk_discover_connection_learns_exactly_one_rule() {
    let ns_a = Netns::new("lrn-a");
    let ns_b = Netns::new("lrn-b");
    let va = Veth::new(&ns_a, "lra", &format!("{CLIENT}/24"));
    let vb = Veth::new(&ns_b, "lrb", &format!("{SERVER}/24"));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dp.sock");
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[dataplane]\nlcores = \"0-1\"\nfile_prefix = \"{}\"\nidle = \"adaptive\"\n\
             sessions = 4096\nsocket = \"{}\"\nstats_interval_s = 0\n\
             [[dataplane.port]]\nname = \"a\"\nkind = \"af_packet\"\niface = \"{}\"\n\
             [[dataplane.port]]\nname = \"b\"\nkind = \"af_packet\"\niface = \"{}\"\n\
             [[dataplane.pair]]\nports = [\"a\", \"b\"]\n",
            unique("lrn"),
            socket.display(),
            va.host(),
            vb.host()
        ),
    )
    .unwrap();
    let (sup, mut rx) = Supervisor::start(SupervisorOptions::new(dp_binary(), config, socket));

    let groups = vec![
        group("auto.client", Mode::Discover),
        group("auto.server", Mode::Discover),
    ];
    let workloads = vec![
        workload("w-client", "auto.client", CLIENT),
        workload("w-server", "auto.server", SERVER),
    ];
    let snapshot = control::policy::build(&groups, &[], &workloads, &[], 1).unwrap();
    let ctx = Context::from_policy(&snapshot);
    assert_eq!(sup.set_policy(snapshot).await.unwrap(), 1);
    let _reaper = Reaper(sup.pid().into_iter().collect());

    // One echo connection from the client namespace to the server's port 5001.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = ns_b.run(move || {
        let l = TcpListener::bind((SERVER, 5001)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    ns_a.run(|| {
        let addr: SocketAddr = format!("{SERVER}:5001").parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"ping\n").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping\n");
    })
    .join()
    .unwrap();
    server.join().unwrap();

    // The connection record (reported when it closes or is 1 s old).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut records: Vec<ConnectionRecord> = Vec::new();
    while !records.iter().any(|r| r.server.addr.port() == 5001) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(DpNotice::Event(Event::Connection(c)))) => records.push(c),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("no connection record for port 5001; got {records:#?}"),
        }
    }
    let rec = records
        .iter()
        .find(|r| r.server.addr.port() == 5001)
        .unwrap();
    assert_eq!(rec.client.workload.as_deref(), Some("w-client"));
    assert_eq!((rec.proto, rec.mode), (6, Mode::Discover));

    let expected = Rule {
        id: 0,
        from: "auto.client".into(),
        to: "auto.server".into(),
        ports: vec![PortSpec::Tcp(5001, 5001)],
        apps: vec![],
        action: Action::Allow,
        priority: 0,
        learned: true,
        disabled: false,
    };
    let out = learn(&records, &ctx, &[]);
    assert_eq!(
        out,
        LearnOutcome {
            add: vec![expected.clone()],
            remove: vec![],
        }
    );
    // Stored, it is not learned again; in monitor nothing is learned at all.
    let stored = Rule {
        id: model::FIRST_LEARNED_RULE_ID,
        ..expected
    };
    assert_eq!(learn(&records, &ctx, &[stored]), LearnOutcome::default());
    let monitor = control::policy::build(
        &[
            group("auto.client", Mode::Monitor),
            group("auto.server", Mode::Discover),
        ],
        &[],
        &workloads,
        &[],
        2,
    )
    .unwrap();
    assert_eq!(
        learn(&records, &Context::from_policy(&monitor), &[]),
        LearnOutcome::default()
    );

    sup.shutdown().await;
    assert_eq!(sup.pid(), None);
    drop((va, vb));
}
