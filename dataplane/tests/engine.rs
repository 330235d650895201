//! Engine tests in the OPTE style: packets built byte by byte go through the pipeline under a
//! compiled policy; every case asserts the verdict and the exact counter and record deltas.
//! Every mode x rule kind x direction x IP version. Pure Rust, no DPDK.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use dataplane::conntrack::Timestamp;
use dataplane::dpi::App;
use dataplane::pipeline::{Config, Drop, Pipeline, PipelineSnapshot, Step, Verdict};
use dataplane::policy::{
    Action, ActivePolicy, Compiled, Group, Mode, Policy, PortSpec, Rule, Workload,
};
use dataplane::report::{self, RecordConsumer, WorkerRecord};
use etherparse::PacketBuilder;

/// The workload under test and its peer.
const W4: [u8; 4] = [198, 18, 1, 10];
const P4: [u8; 4] = [198, 18, 2, 20];
const W6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const P6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Allow to the peer workload on exactly tcp/80.
    AllowExact,
    /// Allow on a port range that contains 8080.
    AllowRange,
    /// Allow to an address group (CIDR) holding the peer.
    AllowCidr,
    /// Allow only the http application on any port.
    AllowApp,
    /// A deny rule that matches.
    Deny,
    /// No rule covers the connection.
    NoMatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The workload is the client.
    Egress,
    /// The workload is the server.
    Ingress,
}

fn ip(v6: bool, workload: bool) -> IpAddr {
    match (v6, workload) {
        (false, true) => W4.into(),
        (false, false) => P4.into(),
        (true, true) => W6.into(),
        (true, false) => P6.into(),
    }
}

/// The policy: the workload in group `w`, the peer a workload in group `p` (or, for the CIDR
/// case, only an address in group `net`); one rule of `kind` in the right direction.
fn policy(mode: Mode, kind: Kind, dir: Direction, v6: bool) -> Compiled {
    let group = |name: &str, cidrs: Vec<ipnet::IpNet>| Group {
        name: name.into(),
        mode,
        members: vec![],
        cidrs,
    };
    let peer_net: ipnet::IpNet = if v6 {
        "2001:db8:2::/48".parse().unwrap()
    } else {
        "198.18.2.0/24".parse().unwrap()
    };
    let mut workloads = vec![Workload {
        id: "w".into(),
        group: "w".into(),
        mode,
        macs: vec![],
        ips: vec![ip(v6, true)],
        exempt: false,
    }];
    if kind != Kind::AllowCidr {
        workloads.push(Workload {
            id: "p".into(),
            group: "p".into(),
            mode: Mode::Discover,
            macs: vec![],
            ips: vec![ip(v6, false)],
            exempt: false,
        });
    }
    let peer = if kind == Kind::AllowCidr { "net" } else { "p" };
    let (from, to) = match dir {
        Direction::Egress => ("w", peer),
        Direction::Ingress => (peer, "w"),
    };
    let (ports, apps, action) = match kind {
        Kind::AllowExact | Kind::AllowCidr => (vec![PortSpec::Tcp(80, 80)], vec![], Action::Allow),
        Kind::AllowRange => (vec![PortSpec::Tcp(8000, 8090)], vec![], Action::Allow),
        Kind::AllowApp => (vec![], vec![App::Http], Action::Allow),
        Kind::Deny => (vec![PortSpec::Tcp(80, 80)], vec![], Action::Deny),
        Kind::NoMatch => (vec![PortSpec::Udp(53, 53)], vec![], Action::Allow),
    };
    let p = Policy {
        generation: 1,
        groups: vec![
            group("w", vec![]),
            group("p", vec![]),
            group("net", vec![peer_net]),
        ],
        rules: vec![Rule {
            id: 7,
            from: from.into(),
            to: to.into(),
            ports,
            apps,
            action,
            priority: 0,
            learned: false,
            disabled: false,
        }],
        workloads,
        nodes: vec![],
    };
    Compiled::compile(&p, &[]).unwrap()
}

/// The server's SYN+ACK.
fn syn_ack(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
    let b = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!(),
    };
    let mut out = Vec::new();
    b.tcp(sport, dport, 900, 64000)
        .syn()
        .ack(101)
        .write(&mut out, b"")
        .unwrap();
    out
}

/// A TCP segment from `src:sport` to `dst:dport`.
fn tcp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, syn: bool, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let b = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!(),
    };
    let b = if syn {
        b.tcp(sport, dport, 100, 64000).syn()
    } else {
        b.tcp(sport, dport, 101, 64000).ack(1).psh()
    };
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

struct Rig {
    pipe: Pipeline<u32>,
    rx: RecordConsumer,
    policy: ActivePolicy,
    /// Send through the burst path (`prepare`, `prefetch_session`, `process_prepared`) as the
    /// DPDK worker does, instead of `process`.
    prepared: bool,
}

impl Rig {
    fn new(compiled: Compiled) -> Rig {
        let (tx, rx) = report::ring(1024).unwrap();
        Rig {
            pipe: Pipeline::new(Config::with_capacity(256), Some(tx)).unwrap(),
            rx,
            policy: ActivePolicy { epoch: 2, compiled },
            prepared: false,
        }
    }

    fn send(&mut self, frame: &[u8], t: u64) -> Verdict {
        let now = Timestamp::from_millis(t);
        let step = if self.prepared {
            let p = self.pipe.prepare(frame);
            self.pipe.prefetch_session(&p);
            self.pipe
                .process_prepared(frame, &p, now, &self.policy, 0, |_, _| {}, |_| {})
        } else {
            self.pipe
                .process(frame, now, &self.policy, 0, |_, _| {}, |_| {})
        };
        match step {
            Step::Done(v, _) => v,
            Step::Held => panic!("held"),
        }
    }

    fn counters(&self) -> PipelineSnapshot {
        self.pipe.counters.snapshot()
    }

    /// (connection records, violations, threats) pushed so far, drained.
    fn records(
        &mut self,
    ) -> (
        Vec<report::ConnectionDelta>,
        Vec<report::ViolationRecord>,
        usize,
    ) {
        let (mut c, mut v, mut t) = (Vec::new(), Vec::new(), 0);
        self.rx.drain(usize::MAX, |r| match r {
            WorkerRecord::Connection(x) => c.push(x),
            WorkerRecord::Violation(x) => v.push(x),
            WorkerRecord::Threat(_) => t += 1,
        });
        (c, v, t)
    }
}

/// What each case must come out as.
fn expected(mode: Mode, kind: Kind) -> (bool, bool) {
    // (forwarded, violation)
    let allowed = matches!(
        kind,
        Kind::AllowExact | Kind::AllowRange | Kind::AllowCidr | Kind::AllowApp
    );
    match (mode, allowed, kind) {
        (_, true, _) => (true, false),
        (Mode::Discover, false, Kind::NoMatch) => (true, false),
        (Mode::Discover | Mode::Monitor, false, _) => (true, true),
        (Mode::Protect, false, _) => (false, true),
    }
}

#[test]
fn every_mode_rule_kind_direction_and_ip_version() {
    let mut cases = 0;
    for mode in [Mode::Discover, Mode::Monitor, Mode::Protect] {
        for kind in [
            Kind::AllowExact,
            Kind::AllowRange,
            Kind::AllowCidr,
            Kind::AllowApp,
            Kind::Deny,
            Kind::NoMatch,
        ] {
            for dir in [Direction::Egress, Direction::Ingress] {
                for v6 in [false, true] {
                    cases += 1;
                    let ctx = format!("{mode:?} {kind:?} {dir:?} v6={v6}");
                    let mut rig = Rig::new(policy(mode, kind, dir, v6));
                    let (client, server) = match dir {
                        Direction::Egress => (ip(v6, true), ip(v6, false)),
                        Direction::Ingress => (ip(v6, false), ip(v6, true)),
                    };
                    let port = if kind == Kind::AllowRange { 8080 } else { 80 };
                    let before = rig.counters();

                    // The SYN: the session's first decision.
                    let syn = tcp(client, 40000, server, port, true, b"");
                    let v = rig.send(&syn, 1);
                    let (forward, violation) = expected(mode, kind);
                    if kind == Kind::AllowApp {
                        // Waiting for the application: forwarded, no violation yet.
                        assert_eq!(v, Verdict::Forward, "{ctx}: pending");
                    } else if forward {
                        assert_eq!(v, Verdict::Forward, "{ctx}");
                    } else {
                        assert_eq!(
                            v,
                            Verdict::Reject(Drop::Policy),
                            "{ctx}: protect answers a SYN with a RST"
                        );
                    }

                    // The answer, then the request: HTTP, which decides the application.
                    let v1 = rig.send(&syn_ack(server, port, client, 40000), 2);
                    assert_eq!(
                        v1.forwards(),
                        forward,
                        "{ctx}: the session keeps its verdict ({v1:?})"
                    );
                    let req = tcp(
                        client,
                        40000,
                        server,
                        port,
                        false,
                        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                    );
                    let v2 = rig.send(&req, 3);
                    assert_eq!(
                        v2.forwards(),
                        forward,
                        "{ctx}: the session keeps its verdict ({v2:?})"
                    );

                    let after = rig.counters();
                    let (conns, viols, threats) = rig.records();
                    assert_eq!(after.frames - before.frames, 3, "{ctx}");
                    assert_eq!(threats, 0, "{ctx}");
                    let drops = if forward { 0 } else { 3 };
                    assert_eq!(after.policy_drops - before.policy_drops, drops, "{ctx}");
                    assert_eq!(
                        after.resets - before.resets,
                        drops,
                        "{ctx}: every dropped segment answered"
                    );
                    assert_eq!(
                        viols.len(),
                        usize::from(violation),
                        "{ctx}: one violation per session, not per packet"
                    );
                    assert_eq!(
                        after.violations - before.violations,
                        u64::from(violation),
                        "{ctx}"
                    );
                    // One evaluation for the SYN; the app rule needs a second once DPI decides.
                    let evals = if kind == Kind::AllowApp { 2 } else { 1 };
                    assert_eq!(after.evaluations - before.evaluations, evals, "{ctx}");
                    if let Some(v) = viols.first() {
                        assert_eq!(v.flow.client, client, "{ctx}");
                        assert_eq!((v.flow.server, v.flow.server_port), (server, port), "{ctx}");
                        assert_eq!(v.mode, mode, "{ctx}");
                        assert_eq!(
                            v.rule,
                            if kind == Kind::Deny { Some(7) } else { None },
                            "{ctx}"
                        );
                        let want = if forward {
                            report::Verdict::Alerted
                        } else {
                            report::Verdict::Denied
                        };
                        assert_eq!(v.verdict, want, "{ctx}");
                    }
                    // The application is decided by the request: the connection is reported.
                    assert_eq!(conns.len(), 1, "{ctx}: {conns:?}");
                    let c = conns[0];
                    assert!(c.new_session, "{ctx}");
                    assert_eq!(
                        (c.flow.app, c.packets, c.mode),
                        (App::Http, 3, mode),
                        "{ctx}"
                    );
                }
            }
        }
    }
    assert_eq!(cases, 72);
}

/// A new policy epoch re-judges an established session on its next packet: the connection a
/// new protect policy denies is cut.
#[test]
fn a_policy_swap_cuts_an_established_connection_in_protect() {
    let mut rig = Rig::new(policy(
        Mode::Protect,
        Kind::AllowExact,
        Direction::Egress,
        false,
    ));
    let (c, s) = (ip(false, true), ip(false, false));
    assert_eq!(
        rig.send(&tcp(c, 40000, s, 80, true, b""), 1),
        Verdict::Forward
    );
    assert_eq!(rig.send(&syn_ack(s, 80, c, 40000), 1), Verdict::Forward);
    assert_eq!(
        rig.send(&tcp(c, 40000, s, 80, false, b"a"), 2),
        Verdict::Forward
    );
    let evals = rig.counters().evaluations;
    // Same epoch: the cached decision, no evaluation.
    assert_eq!(
        rig.send(&tcp(c, 40000, s, 80, false, b"b"), 3),
        Verdict::Forward
    );
    assert_eq!(rig.counters().evaluations, evals);
    // The new policy (epoch 3) has the rule the other way round: this direction is denied.
    rig.policy = ActivePolicy {
        epoch: 3,
        compiled: policy(Mode::Protect, Kind::AllowExact, Direction::Ingress, false),
    };
    assert_eq!(
        rig.send(&tcp(c, 40000, s, 80, false, b"c"), 4),
        Verdict::Reject(Drop::Policy)
    );
    assert_eq!(rig.counters().evaluations, evals + 1);
    let (_, viols, _) = rig.records();
    assert_eq!(viols.len(), 1);
}

/// A workload in a protect group whose rules have not arrived is closed, not open.
#[test]
fn a_new_protect_workload_without_rules_is_closed() {
    let p = Policy {
        generation: 1,
        groups: vec![Group {
            name: "db".into(),
            mode: Mode::Protect,
            members: vec![],
            cidrs: vec![],
        }],
        rules: vec![],
        workloads: vec![Workload {
            id: "db1".into(),
            group: "db".into(),
            mode: Mode::Protect,
            macs: vec![],
            ips: vec![ip(false, true)],
            exempt: false,
        }],
        nodes: vec![],
    };
    let mut rig = Rig::new(Compiled::compile(&p, &[]).unwrap());
    let v = rig.send(
        &tcp(ip(false, false), 40000, ip(false, true), 5432, true, b""),
        1,
    );
    assert_eq!(v, Verdict::Reject(Drop::Policy));
    // Exempt workloads only alert.
    let mut p = p;
    p.workloads[0].exempt = true;
    let mut rig = Rig::new(Compiled::compile(&p, &[]).unwrap());
    let v = rig.send(
        &tcp(ip(false, false), 40000, ip(false, true), 5432, true, b""),
        1,
    );
    assert_eq!(v, Verdict::Forward);
    assert_eq!(rig.records().1.len(), 1, "alerted");
}

/// Threats: an invalid flag combination is reported in every mode and dropped in protect.
#[test]
fn invalid_tcp_flags_are_a_threat_dropped_in_protect() {
    for (mode, dropped) in [(Mode::Monitor, false), (Mode::Protect, true)] {
        let mut rig = Rig::new(policy(mode, Kind::AllowExact, Direction::Egress, false));
        let mut f = tcp(ip(false, true), 40000, ip(false, false), 80, true, b"");
        f[14 + 20 + 13] = 0x03; // SYN+FIN
        let v = rig.send(&f, 1);
        assert_eq!(!v.forwards(), dropped, "{mode:?}: {v:?}");
        let (_, _, threats) = rig.records();
        assert_eq!(threats, 1, "{mode:?}");
        assert_eq!(rig.counters().threats, 1);
    }
}

/// SYN flood: every SYN over the limit in a window is dropped in protect (not only the first),
/// and the window is reported once, in every mode.
#[test]
fn every_syn_over_the_flood_limit_is_dropped_in_protect_and_reported_once() {
    for mode in [Mode::Monitor, Mode::Protect] {
        let mut cfg = Config::with_capacity(256);
        cfg.threats.syn_flood = 5;
        cfg.threats.session_rate = u32::MAX;
        let (tx, rx) = report::ring(1024).unwrap();
        let mut rig = Rig {
            pipe: Pipeline::new(cfg, Some(tx)).unwrap(),
            rx,
            policy: ActivePolicy {
                epoch: 2,
                compiled: policy(mode, Kind::AllowExact, Direction::Ingress, false),
            },
            prepared: false,
        };
        let mut verdicts = Vec::new();
        for i in 0..8u16 {
            let f = tcp(ip(false, false), 40000 + i, ip(false, true), 80, true, b"");
            verdicts.push(rig.send(&f, 1 + u64::from(i)));
        }
        let over = Verdict::Drop(Drop::Threat(report::ThreatKind::SynFlood));
        let want: Vec<Verdict> = (0..8)
            .map(|i| {
                if i >= 5 && mode == Mode::Protect {
                    over
                } else {
                    Verdict::Forward
                }
            })
            .collect();
        assert_eq!(verdicts, want, "{mode:?}");
        let (_, _, threats) = rig.records();
        assert_eq!(threats, 1, "{mode:?}: one report per window");
        let c = rig.counters();
        assert_eq!(c.threats, 1, "{mode:?}");
        assert_eq!(
            c.threat_drops,
            if mode == Mode::Protect { 3 } else { 0 },
            "{mode:?}"
        );
    }
}

/// Connection records say whether the server answered: a SYN nobody answers is reported after
/// a second as unanswered (learning ignores it); once the SYN+ACK comes, the next record is.
#[test]
fn connection_records_say_whether_the_server_answered() {
    let p = Policy {
        generation: 1,
        groups: vec![Group {
            name: "web".into(),
            mode: Mode::Discover,
            members: vec![],
            cidrs: vec![],
        }],
        rules: vec![],
        workloads: vec![Workload {
            id: "w1".into(),
            group: "web".into(),
            mode: Mode::Discover,
            macs: vec![],
            ips: vec![ip(false, true)],
            exempt: false,
        }],
        nodes: vec![],
    };
    let mut rig = Rig::new(Compiled::compile(&p, &[]).unwrap());
    let (client, server) = (ip(false, true), ip(false, false));
    assert_eq!(
        rig.send(&tcp(client, 40000, server, 80, true, b""), 0),
        Verdict::Forward
    );
    assert!(rig.records().0.is_empty(), "nothing before a second");
    // The retransmitted SYN a second and a half later: reported, unanswered.
    assert_eq!(
        rig.send(&tcp(client, 40000, server, 80, true, b""), 1500),
        Verdict::Forward
    );
    let (c, _, _) = rig.records();
    assert_eq!(c.len(), 1);
    assert!(c[0].new_session && !c[0].answered, "{c:?}");
    assert_eq!(
        rig.send(&syn_ack(server, 80, client, 40000), 1600),
        Verdict::Forward
    );
    let (c, _, _) = rig.records();
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(!c[0].new_session && c[0].answered, "{c:?}");
    // Once: the rest comes with the session's last record.
    assert_eq!(
        rig.send(&tcp(client, 40000, server, 80, false, b"x"), 1700),
        Verdict::Forward
    );
    assert!(rig.records().0.is_empty());
}

/// The worker's burst path (parse and prefetch first, then judge) gives exactly what
/// `process` gives: verdicts, counters and records, over connections allowed and denied in
/// both IP versions, replies, data, malformed frames and ARP.
#[test]
fn the_prepared_burst_path_matches_process() {
    for v6 in [false, true] {
        for kind in [Kind::AllowExact, Kind::Deny, Kind::NoMatch] {
            let (client, server) = (ip(v6, true), ip(v6, false));
            let mut frames = Vec::new();
            for sport in [40000u16, 40001, 40002] {
                frames.push(tcp(client, sport, server, 80, true, b""));
                frames.push(syn_ack(server, 80, client, sport));
                frames.push(tcp(
                    client,
                    sport,
                    server,
                    80,
                    false,
                    b"GET / HTTP/1.1\r\n\r\n",
                ));
                frames.push(tcp(
                    server,
                    80,
                    client,
                    sport,
                    false,
                    b"HTTP/1.1 200 OK\r\n\r\n",
                ));
            }
            // An unsolicited reply, a truncated frame and something that is not IP.
            frames.push(syn_ack(server, 81, client, 41000));
            let mut short = tcp(client, 40000, server, 80, false, b"x");
            short.truncate(30);
            frames.push(short);
            frames.push(vec![0xff; 60]);
            let ctx = format!("{kind:?} v6={v6}");
            let mut plain = Rig::new(policy(Mode::Protect, kind, Direction::Egress, v6));
            let mut burst = Rig::new(policy(Mode::Protect, kind, Direction::Egress, v6));
            burst.prepared = true;
            for (i, f) in frames.iter().enumerate() {
                let t = 1 + i as u64;
                assert_eq!(plain.send(f, t), burst.send(f, t), "{ctx}: frame {i}");
            }
            assert_eq!(plain.counters(), burst.counters(), "{ctx}");
            let (pc, pv, pt) = plain.records();
            let (bc, bv, bt) = burst.records();
            assert_eq!(
                (format!("{pc:?}"), format!("{pv:?}"), pt),
                (format!("{bc:?}"), format!("{bv:?}"), bt),
                "{ctx}"
            );
            assert_eq!(
                plain.pipe.sessions().counters().snapshot(),
                burst.pipe.sessions().counters().snapshot(),
                "{ctx}"
            );
        }
    }
}
