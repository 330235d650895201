//! Compiled policy: one test per semantic rule of the module doc, asserting the whole
//! [`Decision`]; the compiled shape's exact counts; and a property test against the naive
//! [`Reference`] matcher on random policies.

use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;
use proptest::sample::Index;

use super::lookup::Side;
use super::model::special;
use super::reference::Reference;
use super::*;
use crate::dpi::App;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;
const GRE: u8 = 47;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn group(name: &str, mode: Mode) -> Group {
    Group {
        name: name.into(),
        mode,
        members: vec![],
        cidrs: vec![],
    }
}

fn wl(id: &str, group: &str, mode: Mode, ips: &[&str]) -> Workload {
    Workload {
        id: id.into(),
        group: group.into(),
        mode,
        macs: vec![],
        ips: ips.iter().map(|s| ip(s)).collect(),
        exempt: false,
    }
}

fn rule(id: u32, from: &str, to: &str, ports: &[&str], action: Action) -> Rule {
    Rule {
        id,
        from: from.into(),
        to: to.into(),
        ports: ports.iter().map(|p| p.parse().unwrap()).collect(),
        apps: vec![],
        action,
        priority: 0,
        learned: false,
        disabled: false,
    }
}

fn allow(id: u32, from: &str, to: &str, ports: &[&str]) -> Rule {
    rule(id, from, to, ports, Action::Allow)
}

fn deny(id: u32, from: &str, to: &str, ports: &[&str]) -> Rule {
    rule(id, from, to, ports, Action::Deny)
}

fn query(proto: u8, client: &str, server: &str, port: u16, app: Option<App>) -> Query {
    Query {
        proto,
        client: ip(client),
        server: ip(server),
        server_port: port,
        app,
    }
}

fn tcp(client: &str, server: &str, port: u16) -> Query {
    query(TCP, client, server, port, None)
}

/// web (protect) 10.0.0.1 + fd00::1, db (protect) 10.0.0.2, client (monitor) 10.0.0.3 +
/// fd00::3, dev (discover) 10.0.0.4; nodes 10.1.0.0/16; no rules.
fn base() -> Policy {
    Policy {
        generation: 7,
        groups: vec![
            group("web", Mode::Protect),
            group("db", Mode::Protect),
            group("client", Mode::Monitor),
            group("dev", Mode::Discover),
        ],
        rules: vec![],
        workloads: vec![
            wl("web1", "web", Mode::Protect, &["10.0.0.1", "fd00::1"]),
            wl("db1", "db", Mode::Protect, &["10.0.0.2"]),
            wl("cli1", "client", Mode::Monitor, &["10.0.0.3", "fd00::3"]),
            wl("dev1", "dev", Mode::Discover, &["10.0.0.4"]),
        ],
        nodes: vec![net("10.1.0.0/16")],
    }
}

/// Compiles `p`, evaluates `q` through both tables where both ends are workloads and through
/// the reference; all must agree.
fn eval(p: &Policy, q: Query) -> Decision {
    let c = Compiled::compile(p, &[]).unwrap();
    let d = c.evaluate(&q);
    assert_eq!(c.evaluate_via(&q, Some(Side::ClientEgress)), d, "{q:?}");
    assert_eq!(c.evaluate_via(&q, Some(Side::ServerIngress)), d, "{q:?}");
    assert_eq!(Reference::new(p, &[]).evaluate(&q), d, "{q:?}");
    d
}

fn decided(mode: Mode, verdict: Verdict, rule: Option<u32>) -> Decision {
    Decision::decided(mode, verdict, rule)
}

fn allowed(mode: Mode, rule: u32) -> Decision {
    decided(mode, Verdict::Allow, Some(rule))
}

fn denied(mode: Mode, rule: u32) -> Decision {
    decided(mode, Verdict::Deny, Some(rule))
}

fn unmatched(mode: Mode) -> Decision {
    decided(mode, Verdict::NoMatch, None)
}

#[test]
fn higher_priority_first_then_list_order() {
    let mut p = base();
    p.rules = vec![
        allow(1, "client", "web", &["tcp/80"]),
        deny(2, "client", "web", &["tcp/80"]),
        deny(3, "client", "web", &["tcp/443"]),
        allow(4, "client", "web", &["tcp/443"]),
    ];
    let q80 = tcp("10.0.0.3", "10.0.0.1", 80);
    let q443 = tcp("10.0.0.3", "10.0.0.1", 443);
    assert_eq!(eval(&p, q80), allowed(Mode::Protect, 1));
    assert_eq!(eval(&p, q443), denied(Mode::Protect, 3));
    p.rules[1].priority = 1;
    assert_eq!(eval(&p, q80), denied(Mode::Protect, 2));
    p.rules[3].priority = 5;
    assert_eq!(eval(&p, q443), allowed(Mode::Protect, 4));
    // Negative priorities rank below the default 0.
    p.rules[1].priority = -1;
    p.rules[0].priority = -2;
    assert_eq!(eval(&p, q80), denied(Mode::Protect, 2));
}

#[test]
fn a_range_rule_ranked_above_an_exact_rule_wins_and_vice_versa() {
    let mut p = base();
    p.rules = vec![
        allow(1, "client", "web", &["tcp/8080"]),
        deny(2, "client", "web", &["tcp/8000-8090"]),
        deny(3, "client", "web", &["any"]),
    ];
    let q = tcp("10.0.0.3", "10.0.0.1", 8080);
    assert_eq!(eval(&p, q), allowed(Mode::Protect, 1));
    assert_eq!(
        eval(&p, tcp("10.0.0.3", "10.0.0.1", 8081)),
        denied(Mode::Protect, 2)
    );
    assert_eq!(
        eval(&p, tcp("10.0.0.3", "10.0.0.1", 9000)),
        denied(Mode::Protect, 3)
    );
    p.rules[1].priority = 1;
    assert_eq!(eval(&p, q), denied(Mode::Protect, 2));
    p.rules[1].priority = 0;
    p.rules[2].priority = 1;
    assert_eq!(eval(&p, q), denied(Mode::Protect, 3));
}

#[test]
fn disabled_rules_are_ignored() {
    let mut p = base();
    p.rules = vec![
        deny(1, "client", "web", &["tcp/80"]),
        allow(2, "client", "web", &["tcp/80"]),
    ];
    p.rules[0].disabled = true;
    assert_eq!(
        eval(&p, tcp("10.0.0.3", "10.0.0.1", 80)),
        allowed(Mode::Protect, 2)
    );
    p.rules[1].disabled = true;
    assert_eq!(
        eval(&p, tcp("10.0.0.3", "10.0.0.1", 80)),
        unmatched(Mode::Protect)
    );
    assert_eq!(Compiled::compile(&p, &[]).unwrap().rules(), 0);
}

#[test]
fn special_groups_external_nodes_containers() {
    let mut p = base();
    p.rules = vec![
        allow(1, "external", "web", &["tcp/443"]),
        allow(2, "nodes", "web", &["tcp/9100"]),
        allow(3, "containers", "db", &["tcp/5432"]),
        allow(4, "web", "external", &["udp/53"]),
        allow(5, "web", "nodes", &["any"]),
    ];
    // An address in no workload and no node network is external; a node is not external.
    assert_eq!(
        eval(&p, tcp("203.0.113.9", "10.0.0.1", 443)),
        allowed(Mode::Protect, 1)
    );
    assert_eq!(
        eval(&p, tcp("10.1.2.3", "10.0.0.1", 443)),
        unmatched(Mode::Protect)
    );
    assert_eq!(
        eval(&p, tcp("10.1.2.3", "10.0.0.1", 9100)),
        allowed(Mode::Protect, 2)
    );
    assert_eq!(
        eval(&p, tcp("203.0.113.9", "10.0.0.1", 9100)),
        unmatched(Mode::Protect)
    );
    // Every workload is in `containers`; an external address is not.
    for client in ["10.0.0.1", "10.0.0.3", "10.0.0.4"] {
        assert_eq!(
            eval(&p, tcp(client, "10.0.0.2", 5432)),
            allowed(Mode::Protect, 3),
            "{client}"
        );
    }
    assert_eq!(
        eval(&p, tcp("203.0.113.9", "10.0.0.2", 5432)),
        unmatched(Mode::Protect)
    );
    // A workload is neither external nor a node, even inside a node network.
    let dns = query(UDP, "10.0.0.1", "8.8.8.8", 53, None);
    assert_eq!(eval(&p, dns), allowed(Mode::Protect, 4));
    let dns = query(UDP, "10.0.0.1", "10.0.0.2", 53, None);
    assert_eq!(eval(&p, dns), unmatched(Mode::Protect));
    assert_eq!(
        eval(&p, tcp("10.0.0.1", "10.1.0.1", 22)),
        allowed(Mode::Protect, 5)
    );
    p.workloads
        .push(wl("in-node-net", "dev", Mode::Discover, &["10.1.9.9"]));
    assert_eq!(
        eval(&p, tcp("10.0.0.1", "10.1.9.9", 22)),
        unmatched(Mode::Protect)
    );
}

#[test]
fn address_groups_hold_addresses_nodes_and_workloads() {
    let mut p = base();
    let mut partners = group("partners", Mode::Monitor);
    partners.cidrs = vec![
        net("198.51.100.0/24"),
        net("10.1.5.0/24"),
        net("10.0.0.3/32"),
    ];
    p.groups.push(partners);
    p.workloads[2].ips.push(ip("10.9.9.9"));
    p.rules = vec![allow(1, "partners", "web", &["tcp/443"])];
    let to_web = |client| tcp(client, "10.0.0.1", 443);
    // An external address, a node, and a workload (by either of its addresses).
    assert_eq!(eval(&p, to_web("198.51.100.77")), allowed(Mode::Protect, 1));
    assert_eq!(eval(&p, to_web("10.1.5.5")), allowed(Mode::Protect, 1));
    assert_eq!(eval(&p, to_web("10.0.0.3")), allowed(Mode::Protect, 1));
    assert_eq!(eval(&p, to_web("10.9.9.9")), allowed(Mode::Protect, 1));
    assert_eq!(eval(&p, to_web("10.1.6.5")), unmatched(Mode::Protect));
    assert_eq!(eval(&p, to_web("198.51.101.1")), unmatched(Mode::Protect));
    // Host bits in a network are ignored.
    p.groups[4].cidrs = vec![net("198.51.100.9/24")];
    assert_eq!(eval(&p, to_web("198.51.100.77")), allowed(Mode::Protect, 1));
}

#[test]
fn members_lists_add_workloads_to_groups() {
    let mut p = base();
    let mut tier = group("backend", Mode::Protect);
    tier.members = vec!["db1".into(), "dev1".into(), "no-such-workload".into()];
    p.groups.push(tier);
    p.rules = vec![allow(1, "web", "backend", &["tcp/6379"])];
    assert_eq!(
        eval(&p, tcp("10.0.0.1", "10.0.0.2", 6379)),
        allowed(Mode::Protect, 1)
    );
    assert_eq!(
        eval(&p, tcp("10.0.0.1", "10.0.0.4", 6379)),
        allowed(Mode::Protect, 1)
    );
    assert_eq!(
        eval(&p, tcp("10.0.0.1", "10.0.0.3", 6379)),
        unmatched(Mode::Protect)
    );
}

#[test]
fn every_mode_and_verdict_has_its_enforcement() {
    use Enforcement::*;
    let table = [
        (Mode::Discover, [Learn, Alert, Learn]),
        (Mode::Monitor, [Forward, Alert, Alert]),
        (Mode::Protect, [Forward, Drop, Drop]),
    ];
    for (mode, want) in table {
        let p = Policy {
            generation: 1,
            groups: vec![group("g", mode)],
            workloads: vec![wl("w", "g", mode, &["10.0.0.9"])],
            rules: vec![
                allow(1, "external", "g", &["tcp/1"]),
                deny(2, "external", "g", &["tcp/2"]),
            ],
            nodes: vec![],
        };
        for (port, (verdict, e)) in [Verdict::Allow, Verdict::Deny, Verdict::NoMatch]
            .into_iter()
            .zip(want)
            .enumerate()
        {
            let d = eval(&p, tcp("192.0.2.1", "10.0.0.9", port as u16 + 1));
            assert_eq!(d.verdict, verdict, "{mode:?}");
            assert_eq!(d.enforcement, e, "{mode:?} {verdict:?}");
            assert_eq!(d.mode, Some(mode));
            assert_eq!(Enforcement::of(mode, verdict), e);
            assert_eq!(d.enforcement.forwards(), e != Drop);
        }
    }
}

#[test]
fn the_strictest_mode_of_the_workload_ends_applies() {
    let p = base();
    // dev (discover) -> cli (monitor): monitor; cli -> web (protect): protect.
    assert_eq!(
        eval(&p, tcp("10.0.0.4", "10.0.0.3", 80)),
        unmatched(Mode::Monitor)
    );
    assert_eq!(
        eval(&p, tcp("10.0.0.3", "10.0.0.4", 80)),
        unmatched(Mode::Monitor)
    );
    assert_eq!(
        eval(&p, tcp("10.0.0.3", "10.0.0.1", 80)).enforcement,
        Enforcement::Drop
    );
    assert_eq!(
        eval(&p, tcp("10.0.0.1", "10.0.0.4", 80)).enforcement,
        Enforcement::Drop
    );
    // The workload's own mode counts, not its group's.
    let mut p = base();
    p.workloads[0].mode = Mode::Discover;
    assert_eq!(
        eval(&p, tcp("192.0.2.1", "10.0.0.1", 80)),
        unmatched(Mode::Discover)
    );
}

#[test]
fn no_workload_end_means_no_enforcement() {
    let mut p = base();
    p.rules = vec![
        deny(1, "nodes", "external", &[]),
        deny(2, "external", "external", &[]),
    ];
    for q in [
        tcp("10.1.0.1", "192.0.2.1", 80),
        tcp("192.0.2.1", "198.51.100.1", 80),
        query(GRE, "192.0.2.1", "10.1.0.1", 0, None),
    ] {
        assert_eq!(eval(&p, q), Decision::UNENFORCED);
    }
    assert_eq!(
        Decision::UNENFORCED,
        Decision {
            verdict: Verdict::NoMatch,
            rule: None,
            mode: None,
            enforcement: Enforcement::Forward,
            pending_app: false,
        }
    );
}

#[test]
fn a_protected_workload_with_no_rules_is_closed() {
    let p = Policy {
        generation: 1,
        groups: vec![group("vault", Mode::Protect)],
        workloads: vec![wl("v", "vault", Mode::Protect, &["10.0.0.9"])],
        ..Policy::default()
    };
    for q in [
        tcp("192.0.2.1", "10.0.0.9", 443),
        tcp("10.0.0.9", "192.0.2.1", 443),
        query(ICMP, "10.0.0.9", "192.0.2.1", 0, None),
        query(TCP, "10.0.0.9", "192.0.2.1", 443, Some(App::Tls)),
    ] {
        let d = eval(&p, q);
        assert_eq!(d, unmatched(Mode::Protect));
        assert_eq!(d.enforcement, Enforcement::Drop);
    }
}

#[test]
fn exempt_workloads_never_cause_a_drop() {
    let mut p = base();
    p.workloads[0].exempt = true; // web1, protect
    let d = eval(&p, tcp("192.0.2.1", "10.0.0.1", 80));
    assert_eq!(d, unmatched(Mode::Monitor));
    assert_eq!(d.enforcement, Enforcement::Alert);
    // An exempt discover workload stays in discover.
    p.workloads[3].exempt = true;
    assert_eq!(
        eval(&p, tcp("192.0.2.1", "10.0.0.4", 80)),
        unmatched(Mode::Discover)
    );
    // Its non-exempt protected peer still drops.
    assert_eq!(
        eval(&p, tcp("10.0.0.1", "10.0.0.2", 5432)).enforcement,
        Enforcement::Drop
    );
    assert_eq!(
        eval(&p, tcp("10.0.0.1", "10.0.0.3", 80)),
        unmatched(Mode::Monitor)
    );
}

#[test]
fn an_undecided_application_is_pending_until_a_rule_without_apps_ranks_first() {
    let mut p = base();
    let mut http = allow(1, "client", "web", &["tcp/80"]);
    http.apps = vec![App::Http];
    p.rules = vec![http, deny(2, "client", "web", &["tcp/80"])];
    let q = |app| query(TCP, "10.0.0.3", "10.0.0.1", 80, app);
    let pending = Decision::pending(Mode::Protect);
    assert_eq!(
        pending,
        Decision {
            verdict: Verdict::NoMatch,
            rule: None,
            mode: Some(Mode::Protect),
            enforcement: Enforcement::Forward,
            pending_app: true,
        }
    );
    assert_eq!(eval(&p, q(None)), pending);
    assert_eq!(eval(&p, q(Some(App::Http))), allowed(Mode::Protect, 1));
    assert_eq!(eval(&p, q(Some(App::Tls))), denied(Mode::Protect, 2));
    // DPI gave up: rules naming applications do not match.
    assert_eq!(eval(&p, q(Some(App::Unknown))), denied(Mode::Protect, 2));
    // A rule without applications ranked first is final at once.
    p.rules[1].priority = 1;
    assert_eq!(eval(&p, q(None)), denied(Mode::Protect, 2));
    // A rule naming applications that does not otherwise cover the connection is no reason
    // to wait.
    p.rules[1].priority = 0;
    p.rules[0].ports = vec!["tcp/8080".parse().unwrap()];
    assert_eq!(eval(&p, q(None)), denied(Mode::Protect, 2));
    // Pending in every mode, and in discover too: the caller learns once the app is known.
    p.rules[0].ports = vec![];
    p.rules[0].from = "containers".into();
    assert_eq!(
        eval(&p, query(TCP, "10.0.0.4", "10.0.0.1", 80, None)),
        Decision::pending(Mode::Protect)
    );
    p.rules[0].to = "containers".into();
    assert_eq!(
        eval(&p, query(TCP, "10.0.0.4", "10.0.0.3", 80, None)),
        Decision::pending(Mode::Monitor)
    );
    assert_eq!(
        eval(&p, query(TCP, "10.0.0.4", "10.0.0.4", 80, None)),
        Decision::pending(Mode::Discover)
    );
    assert_eq!(
        eval(&p, query(TCP, "10.0.0.4", "10.0.0.4", 80, Some(App::Http))),
        allowed(Mode::Discover, 1)
    );
    assert_eq!(
        eval(&p, query(TCP, "10.0.0.4", "10.0.0.4", 80, Some(App::Http))).enforcement,
        Enforcement::Learn
    );
}

#[test]
fn application_lists_match_any_of_their_applications() {
    let mut p = base();
    let mut r1 = deny(1, "client", "web", &[]);
    r1.apps = vec![App::Ssh, App::Telnet];
    let mut r2 = allow(2, "client", "web", &["tcp/443", "udp/443"]);
    r2.apps = vec![App::Tls, App::Quic];
    p.rules = vec![r1, r2];
    let q = |proto, port, app| query(proto, "10.0.0.3", "10.0.0.1", port, Some(app));
    assert_eq!(eval(&p, q(TCP, 443, App::Ssh)), denied(Mode::Protect, 1));
    assert_eq!(eval(&p, q(TCP, 22, App::Telnet)), denied(Mode::Protect, 1));
    assert_eq!(eval(&p, q(TCP, 443, App::Tls)), allowed(Mode::Protect, 2));
    assert_eq!(eval(&p, q(UDP, 443, App::Quic)), allowed(Mode::Protect, 2));
    assert_eq!(eval(&p, q(UDP, 443, App::Dns)), unmatched(Mode::Protect));
    assert_eq!(eval(&p, q(TCP, 80, App::Tls)), unmatched(Mode::Protect));
}

#[test]
fn ipv4_and_ipv6_alike_and_never_equal() {
    let mut p = base();
    let mut v6net = group("v6partners", Mode::Monitor);
    v6net.cidrs = vec![net("2001:db8::/32")];
    p.groups.push(v6net);
    p.nodes.push(net("fd10::/64"));
    p.rules = vec![
        allow(1, "client", "web", &["tcp/80"]),
        allow(2, "v6partners", "web", &["tcp/443"]),
        allow(3, "nodes", "web", &["tcp/22"]),
    ];
    assert_eq!(
        eval(&p, tcp("fd00::3", "fd00::1", 80)),
        allowed(Mode::Protect, 1)
    );
    // Mixed families: an IPv4 client of the workload's IPv6 address is still the workload.
    assert_eq!(
        eval(&p, tcp("10.0.0.3", "fd00::1", 80)),
        allowed(Mode::Protect, 1)
    );
    assert_eq!(
        eval(&p, tcp("2001:db8:1::5", "fd00::1", 443)),
        allowed(Mode::Protect, 2)
    );
    assert_eq!(
        eval(&p, tcp("fd10::1", "10.0.0.1", 22)),
        allowed(Mode::Protect, 3)
    );
    // ::ffff:10.0.0.3 is an external IPv6 address, not cli1.
    assert_eq!(
        eval(&p, tcp("::ffff:10.0.0.3", "fd00::1", 80)),
        unmatched(Mode::Protect)
    );
    assert_eq!(
        eval(&p, tcp("fd00::3", "::ffff:10.0.0.1", 80)),
        unmatched(Mode::Monitor)
    );
    // An IPv4 network does not contain IPv6 addresses.
    p.groups[4].cidrs = vec![net("0.0.0.0/0")];
    assert_eq!(
        eval(&p, tcp("2001:db8:1::5", "fd00::1", 443)),
        unmatched(Mode::Protect)
    );
    assert_eq!(
        eval(&p, tcp("192.0.2.1", "fd00::1", 443)),
        allowed(Mode::Protect, 2)
    );
}

#[test]
fn port_specs_icmp_any_and_other_protocols() {
    let mut p = base();
    p.rules = vec![
        allow(1, "client", "web", &["icmp"]),
        allow(2, "client", "web", &["udp/53", "tcp/53"]),
        allow(3, "client", "web", &["tcp/1-1024"]),
        allow(4, "client", "web", &["udp/60000-65535"]),
        allow(5, "client", "db", &["any"]),
        allow(6, "client", "db", &[]),
    ];
    let q = |proto, server, port| query(proto, "10.0.0.3", server, port, None);
    let web = "10.0.0.1";
    assert_eq!(eval(&p, q(ICMP, web, 0)), allowed(Mode::Protect, 1));
    assert_eq!(eval(&p, q(ICMPV6, "fd00::1", 0)), allowed(Mode::Protect, 1));
    assert_eq!(eval(&p, q(ICMP, web, 777)), allowed(Mode::Protect, 1));
    assert_eq!(eval(&p, q(UDP, web, 53)), allowed(Mode::Protect, 2));
    assert_eq!(eval(&p, q(TCP, web, 53)), allowed(Mode::Protect, 2));
    assert_eq!(eval(&p, q(TCP, web, 1)), allowed(Mode::Protect, 3));
    assert_eq!(eval(&p, q(TCP, web, 1024)), allowed(Mode::Protect, 3));
    assert_eq!(eval(&p, q(TCP, web, 1025)), unmatched(Mode::Protect));
    assert_eq!(eval(&p, q(TCP, web, 0)), unmatched(Mode::Protect));
    assert_eq!(eval(&p, q(UDP, web, 80)), unmatched(Mode::Protect));
    assert_eq!(eval(&p, q(UDP, web, 65535)), allowed(Mode::Protect, 4));
    assert_eq!(eval(&p, q(UDP, web, 59999)), unmatched(Mode::Protect));
    // A port-less protocol matches only `any` (and an empty list).
    assert_eq!(eval(&p, q(GRE, web, 0)), unmatched(Mode::Protect));
    assert_eq!(eval(&p, q(GRE, "10.0.0.2", 0)), allowed(Mode::Protect, 5));
    p.rules[4].disabled = true;
    for proto in [TCP, UDP, ICMP, GRE, 132] {
        assert_eq!(
            eval(&p, q(proto, "10.0.0.2", 65535)),
            allowed(Mode::Protect, 6)
        );
    }
}

#[test]
fn announced_workloads_override_the_snapshot_s() {
    let mut p = base();
    p.rules = vec![allow(1, "client", "web", &["tcp/80"])];
    let extra = [
        // web1 moved to the client group with a new address.
        wl("web1", "client", Mode::Monitor, &["10.0.0.11"]),
        wl("new", "web", Mode::Protect, &["10.0.0.12"]),
    ];
    let c = Compiled::compile(&p, &extra).unwrap();
    let r = Reference::new(&p, &extra);
    assert_eq!(c.workloads(), 5);
    for (q, want) in [
        (tcp("10.0.0.3", "10.0.0.12", 80), allowed(Mode::Protect, 1)),
        (tcp("10.0.0.11", "10.0.0.12", 80), allowed(Mode::Protect, 1)),
        (tcp("10.0.0.3", "10.0.0.11", 80), unmatched(Mode::Monitor)),
        // The old address is no longer a workload.
        (tcp("10.0.0.3", "10.0.0.1", 80), unmatched(Mode::Monitor)),
        (tcp("192.0.2.1", "10.0.0.1", 80), Decision::UNENFORCED),
    ] {
        assert_eq!(c.evaluate(&q), want, "{q:?}");
        assert_eq!(r.evaluate(&q), want, "{q:?}");
    }
    assert_eq!(c.describe(ip("10.0.0.11")), (Some("web1"), "client"));
}

#[test]
fn an_address_two_workloads_list_belongs_to_the_later_one() {
    let mut p = base();
    p.workloads
        .push(wl("dup", "dev", Mode::Discover, &["10.0.0.1"]));
    let c = Compiled::compile(&p, &[]).unwrap();
    assert_eq!(c.describe(ip("10.0.0.1")), (Some("dup"), "dev"));
    assert_eq!(c.describe(ip("fd00::1")), (Some("web1"), "web"));
    assert_eq!(
        eval(&p, tcp("192.0.2.1", "10.0.0.1", 80)),
        unmatched(Mode::Discover)
    );
}

#[test]
fn invalid_policies_are_rejected_with_the_model_s_error() {
    let mut p = base();
    p.rules = vec![allow(1, "client", "nowhere", &[])];
    let err = Compiled::compile(&p, &[]).unwrap_err();
    assert_eq!(Err(err.clone()), p.validate());
    assert_eq!(
        err,
        PolicyError::UnknownGroup {
            rule: 1,
            group: "nowhere".into()
        }
    );
    let mut p = base();
    p.groups.push(group("web", Mode::Monitor));
    assert_eq!(
        Compiled::compile(&p, &[]).unwrap_err(),
        PolicyError::DuplicateGroup("web".into())
    );
    let mut p = base();
    p.rules = vec![allow(1, "client", "web", &[]), allow(1, "web", "db", &[])];
    assert_eq!(
        Compiled::compile(&p, &[]).unwrap_err(),
        PolicyError::DuplicateRule(1)
    );
    let mut p = base();
    p.workloads.push(wl("web1", "web", Mode::Protect, &[]));
    assert_eq!(
        Compiled::compile(&p, &[]).unwrap_err(),
        PolicyError::DuplicateWorkload("web1".into())
    );
    // Announced workloads: unknown group, one id twice.
    let p = base();
    let stray = wl("x", "nowhere", Mode::Protect, &[]);
    assert_eq!(
        Compiled::compile(&p, &[stray]).unwrap_err(),
        PolicyError::WorkloadGroup {
            workload: "x".into(),
            group: "nowhere".into()
        }
    );
    let twice = [
        wl("x", "web", Mode::Protect, &[]),
        wl("x", "db", Mode::Protect, &[]),
    ];
    assert_eq!(
        Compiled::compile(&p, &twice).unwrap_err(),
        PolicyError::DuplicateWorkload("x".into())
    );
}

#[test]
fn describe_names_workloads_nodes_address_groups_and_external() {
    let mut p = base();
    let mut wide = group("wide", Mode::Monitor);
    wide.cidrs = vec![net("10.0.0.0/8"), net("2001:db8::/32")];
    let mut narrow = group("narrow", Mode::Monitor);
    narrow.cidrs = vec![net("10.1.2.0/24"), net("10.1.0.0/16")];
    p.groups.extend([wide, narrow]);
    let c = Compiled::compile(&p, &[]).unwrap();
    let r = Reference::new(&p, &[]);
    for (addr, want) in [
        ("10.0.0.1", (Some("web1"), "web")),
        ("fd00::3", (Some("cli1"), "client")),
        // nodes (10.1.0.0/16) ties with narrow's /16 and wins; narrow's /24 is more specific.
        ("10.1.9.9", (None, "nodes")),
        ("10.1.2.3", (None, "narrow")),
        ("10.200.0.1", (None, "wide")),
        ("2001:db8::7", (None, "wide")),
        ("192.0.2.1", (None, "external")),
        ("::1", (None, "external")),
    ] {
        assert_eq!(c.describe(ip(addr)), want, "{addr}");
        let (w, g) = r.describe(ip(addr));
        assert_eq!((w.as_deref(), g.as_str()), want, "{addr}");
    }
}

#[test]
fn the_compiled_shape_has_exact_counts() {
    let mut p = base();
    let mut corp = group("corp", Mode::Monitor);
    corp.cidrs = vec![net("192.0.2.0/24")];
    p.groups.push(corp);
    let mut http = allow(5, "client", "web", &["tcp/80"]);
    http.apps = vec![App::Http];
    http.priority = 1;
    p.rules = vec![
        allow(1, "client", "web", &["tcp/80", "tcp/8000-8080"]),
        deny(2, "corp", "web", &["tcp/443"]),
        allow(3, "containers", "external", &["udp/53"]),
        allow(4, "web", "db", &[]),
        http,
        deny(6, "client", "web", &["tcp/80"]),
    ];
    p.rules[5].disabled = true;
    let c = Compiled::compile(&p, &[]).unwrap();
    assert_eq!(c.generation(), 7);
    assert_eq!(c.rules(), 5);
    assert_eq!(c.workloads(), 4);
    assert_eq!(
        c.stats(),
        Stats {
            rules: 5,
            workloads: 4,
            // {web, containers}, {db, containers}, {client, containers}, {dev, containers}.
            profiles: 4,
            // Egress: client->{web, external}, web->{external, db}, db->{external},
            // dev->{external}; ingress: web<-{client, corp}, db<-{web}.
            peers: 6 + 3,
            // Egress: client->web tcp/80 (rules 1 and 5: one key), every profile -> external
            // udp/53 (4 keys); ingress: web <- client tcp/80, web <- corp tcp/443.
            exact_keys: 1 + 4 + 2,
            // Egress: client->web tcp range, web->db tcp/udp/icmp/other; ingress: web <-
            // client tcp range, db <- web x4.
            ranged_buckets: 1 + 4 + 1 + 4,
            // Each tcp/8000-8080 bucket: [0, 8000) empty, [8000, 8080], (8080, 65535] empty;
            // one interval for each `any` bucket.
            intervals: 3 + 4 + 3 + 4,
            // Exact lists: [5, 1] for tcp/80 twice (5 ranks first; 1 adds every other app,
            // and would hide 5 if it ranked first), 1 per other key; one per
            // non-empty interval.
            entries: 2 + 4 + 2 + 1 + 1 + 4 + 1 + 4,
            // IPv4: below corp, corp, above; IPv6: one. 10.1.0.0/16 cuts IPv4 twice more.
            address_intervals: 5 + 1,
            // external, nodes, external+corp.
            address_classes: 3,
        }
    );
}

#[test]
fn decision_is_small_and_copy() {
    fn copy<T: Copy>() {}
    copy::<Decision>();
    copy::<Query>();
    assert!(size_of::<Decision>() <= 12);
}

#[test]
fn an_empty_policy_compiles_and_enforces_workload_modes_only() {
    let c = Compiled::compile(&Policy::default(), &[]).unwrap();
    assert_eq!(
        c.stats(),
        Stats {
            address_intervals: 2,
            address_classes: 1,
            ..Stats::default()
        }
    );
    let q = tcp("10.0.0.1", "10.0.0.2", 80);
    assert_eq!(c.evaluate(&q), Decision::UNENFORCED);
    assert_eq!(c.describe(ip("10.0.0.1")), (None, "external"));
    let w = [wl("w", "containers", Mode::Protect, &["10.0.0.1"])];
    let c = Compiled::compile(&Policy::default(), &w).unwrap();
    assert_eq!(c.evaluate(&q), unmatched(Mode::Protect));
    assert_eq!(c.describe(ip("10.0.0.1")), (Some("w"), "containers"));
}

// --- Property test: compiled == reference on random policies. ---

/// A small address space so that workloads, networks and queries collide often.
fn pool() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = Vec::new();
    v.extend((0..8).map(|i| IpAddr::from([10, 0, 0, i])));
    v.extend((0..4).map(|i| IpAddr::from([10, 0, 1, i])));
    v.extend([
        ip("192.0.2.1"),
        ip("198.51.100.7"),
        ip("0.0.0.0"),
        ip("255.255.255.255"),
    ]);
    v.extend((0..6u16).map(|i| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, i])));
    v.extend([
        ip("fd00:1::1"),
        ip("2001:db8::1"),
        ip("::ffff:10.0.0.1"),
        ip("::"),
        ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    ]);
    v
}

const PORTS: [u16; 9] = [0, 1, 22, 53, 80, 443, 8000, 8080, 65535];
const QUERY_PORTS: [u16; 13] = [0, 1, 2, 22, 53, 80, 81, 443, 7999, 8000, 8080, 8081, 65535];
const APPS: [App; 4] = [App::Http, App::Tls, App::Dns, App::Ssh];
const MODES: [Mode; 3] = [Mode::Discover, Mode::Monitor, Mode::Protect];

fn arb_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        8 => any::<Index>().prop_map(|i| {
            let p = pool();
            p[i.index(p.len())]
        }),
        1 => any::<[u8; 4]>().prop_map(IpAddr::from),
        1 => any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn arb_net() -> impl Strategy<Value = IpNet> {
    (any::<Index>(), any::<Index>()).prop_map(|(a, l)| {
        let p = pool();
        let addr = p[a.index(p.len())];
        let lens: &[u8] = if addr.is_ipv4() {
            &[0, 8, 16, 23, 24, 29, 30, 31, 32]
        } else {
            &[0, 16, 64, 120, 125, 126, 127, 128]
        };
        IpNet::new(addr, lens[l.index(lens.len())]).unwrap()
    })
}

fn arb_port_spec() -> impl Strategy<Value = PortSpec> {
    let port = any::<Index>().prop_map(|i| PORTS[i.index(PORTS.len())]);
    let range = (
        any::<Index>().prop_map(|i| PORTS[i.index(PORTS.len())]),
        any::<Index>().prop_map(|i| PORTS[i.index(PORTS.len())]),
    )
        .prop_map(|(a, b)| (a.min(b), a.max(b)));
    prop_oneof![
        1 => Just(PortSpec::Any),
        1 => Just(PortSpec::Icmp),
        3 => port.clone().prop_map(|p| PortSpec::Tcp(p, p)),
        2 => port.prop_map(|p| PortSpec::Udp(p, p)),
        2 => range.clone().prop_map(|(a, b)| PortSpec::Tcp(a, b)),
        1 => range.prop_map(|(a, b)| PortSpec::Udp(a, b)),
    ]
}

fn arb_mode() -> impl Strategy<Value = Mode> {
    any::<Index>().prop_map(|i| MODES[i.index(3)])
}

#[derive(Debug, Clone)]
struct RawWorkload {
    id: usize,
    group: Index,
    mode: Mode,
    ips: Vec<IpAddr>,
    exempt: bool,
}

fn arb_workload() -> impl Strategy<Value = RawWorkload> {
    (
        0..10usize,
        any::<Index>(),
        arb_mode(),
        prop::collection::vec(arb_addr(), 0..3),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(id, group, mode, ips, exempt)| RawWorkload {
            id,
            group,
            mode,
            ips,
            exempt,
        })
}

#[derive(Debug, Clone)]
struct RawRule {
    from: Index,
    to: Index,
    ports: Vec<PortSpec>,
    apps: Vec<Index>,
    deny: bool,
    priority: i32,
    disabled: bool,
}

fn arb_rule() -> impl Strategy<Value = RawRule> {
    (
        any::<Index>(),
        any::<Index>(),
        prop::collection::vec(arb_port_spec(), 0..3),
        prop::collection::vec(any::<Index>(), 0..3),
        any::<bool>(),
        -2..3i32,
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(from, to, ports, apps, deny, priority, disabled)| RawRule {
                from,
                to,
                ports,
                apps,
                deny,
                priority,
                disabled,
            },
        )
}

type RawGroup = (Mode, Vec<usize>, Vec<IpNet>);

fn arb_group() -> impl Strategy<Value = RawGroup> {
    (
        arb_mode(),
        prop::collection::vec(0..10usize, 0..3),
        prop_oneof![
            1 => prop::collection::vec(arb_net(), 1..3),
            1 => Just(vec![]),
        ],
    )
}

/// A valid random policy and announced workloads.
fn arb_policy() -> impl Strategy<Value = (Policy, Vec<Workload>)> {
    (
        prop::collection::vec(arb_group(), 0..6),
        prop::collection::vec(arb_workload(), 0..8),
        prop::collection::vec(arb_workload(), 0..3),
        prop::collection::vec(arb_net(), 0..3),
        prop::collection::vec(arb_rule(), 0..16),
    )
        .prop_map(|(groups, workloads, extra, nodes, rules)| {
            let groups: Vec<Group> = groups
                .into_iter()
                .enumerate()
                .map(|(i, (mode, members, cidrs))| Group {
                    name: format!("g{i}"),
                    mode,
                    members: members.into_iter().map(|m| format!("w{m}")).collect(),
                    cidrs,
                })
                .collect();
            let mut names: Vec<String> = special::ALL.iter().map(|s| s.to_string()).collect();
            names.extend(groups.iter().map(|g| g.name.clone()));
            let build = |raw: Vec<RawWorkload>| {
                let mut seen = std::collections::HashSet::new();
                raw.into_iter()
                    .filter(|w| seen.insert(w.id))
                    .map(|w| Workload {
                        id: format!("w{}", w.id),
                        group: names[w.group.index(names.len())].clone(),
                        mode: w.mode,
                        macs: vec![],
                        ips: w.ips,
                        exempt: w.exempt,
                    })
                    .collect::<Vec<_>>()
            };
            let workloads = build(workloads);
            let extra = build(extra);
            let rules = rules
                .into_iter()
                .enumerate()
                .map(|(i, r)| Rule {
                    id: 1000 - i as u32 * 7,
                    from: names[r.from.index(names.len())].clone(),
                    to: names[r.to.index(names.len())].clone(),
                    ports: r.ports,
                    apps: r.apps.iter().map(|a| APPS[a.index(APPS.len())]).collect(),
                    action: if r.deny { Action::Deny } else { Action::Allow },
                    priority: r.priority,
                    learned: false,
                    disabled: r.disabled,
                })
                .collect();
            let policy = Policy {
                generation: 1,
                groups,
                rules,
                workloads,
                nodes,
            };
            (policy, extra)
        })
}

fn arb_query(addrs: Vec<IpAddr>) -> impl Strategy<Value = Query> {
    // Mostly addresses the policy knows (workloads' first), sometimes any.
    let known = any::<Index>().prop_map(move |i| addrs[i.index(addrs.len())]);
    let addr = prop_oneof![3 => known, 1 => arb_addr()];
    let apps = [
        None,
        Some(App::Unknown),
        Some(App::Http),
        Some(App::Tls),
        Some(App::Dns),
        Some(App::Ssh),
        Some(App::Redis),
    ];
    let protos = [TCP, TCP, TCP, UDP, UDP, ICMP, ICMPV6, GRE];
    (
        addr.clone(),
        addr,
        any::<Index>().prop_map(move |i| protos[i.index(protos.len())]),
        any::<Index>().prop_map(|i| QUERY_PORTS[i.index(QUERY_PORTS.len())]),
        any::<Index>().prop_map(move |i| apps[i.index(apps.len())]),
    )
        .prop_map(|(client, server, proto, server_port, app)| Query {
            proto,
            client,
            server,
            server_port,
            app,
        })
}

fn arb_case() -> impl Strategy<Value = (Policy, Vec<Workload>, Vec<Query>)> {
    arb_policy().prop_flat_map(|(policy, extra)| {
        let mut addrs: Vec<IpAddr> = policy
            .workloads
            .iter()
            .chain(&extra)
            .flat_map(|w| w.ips.iter().copied())
            .collect();
        addrs.extend(pool());
        let queries = prop::collection::vec(arb_query(addrs), 24);
        (Just(policy), Just(extra), queries)
    })
}

/// Property-test cases (each a random policy and 24 queries).
const CASES: u32 = 3000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn compiled_matches_the_reference((policy, extra, queries) in arb_case()) {
        let c = Compiled::compile(&policy, &extra).unwrap();
        let r = Reference::new(&policy, &extra);
        for q in &queries {
            let want = r.evaluate(q);
            prop_assert_eq!(c.evaluate(q), want, "{:?}", q);
            prop_assert_eq!(c.evaluate_via(q, Some(Side::ClientEgress)), want, "{:?}", q);
            prop_assert_eq!(c.evaluate_via(q, Some(Side::ServerIngress)), want, "{:?}", q);
            for addr in [q.client, q.server] {
                let (w, g) = r.describe(addr);
                prop_assert_eq!(c.describe(addr), (w.as_deref(), g.as_str()), "{}", addr);
            }
        }
    }
}
