//! Network learning: connection records the dataplane streams become allow rules, as NeuVector
//! learns them in discover mode.
//!
//! [`learn`] is pure: records in, rules to add and rule ids to remove out; the store assigns
//! ids (from [`FIRST_LEARNED_RULE_ID`](crate::model::FIRST_LEARNED_RULE_ID)) and persists.
//!
//! # What is learned
//!
//! - **Who decides.** The client's side: when the client is a workload, its group's network
//!   mode; when the client is no workload (ingress from `external` or `nodes`), the server's
//!   group's mode. Only `discover` learns; `monitor` and `protect` groups learn nothing. A
//!   record where neither end is a workload learns nothing (the dataplane does not report
//!   those anyway).
//! - **from / to.** The client's group (a workload's group; `nodes` for a node address;
//!   `external` for anything else, address groups included) and the server's group (same
//!   rule).
//! - **ports and apps.** One rule per (from, to, server port, application): `ports` holds the
//!   observed server port (`tcp/N`, `udp/N`, or `icmp`), and `apps` the application when DPI
//!   named one (`["http"]`), else nothing. Port *and* app, not `any` + app: a rule never
//!   allows more than what was seen (least privilege), it is the shape ARCHITECTURE.md's
//!   learned rule example has (`tcp/80` + `http`), and it still reads well in the console.
//!   Records with other IP protocols (GRE, SCTP, ...) or a zero port learn nothing, since no
//!   port spec but `any` could name them.
//! - **Nothing twice.** A record already allowed by an enabled rule with the same from/to
//!   (its ports cover the port, its apps are empty or include the app), or matching an existing
//!   rule exactly (even a disabled one: the operator disabled it on purpose), or decided by a
//!   deny rule, learns nothing; several records of one conversation learn one rule.
//! - **Collapse.** When learned rules of one (from, to) pair would name more than
//!   [`MAX_LEARNED_PORTS`] distinct port specs, the pair gets one rule with `ports: ["any"]`
//!   and no apps instead: its new port rules are not added, and its learned allow rules
//!   already stored are listed in [`LearnOutcome::remove`].
//!
//! [`Context`] is the view of the running policy both learning and event conversion
//! ([`crate::dataplane::events`]) resolve endpoints with.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use dataplane::dpi::App;
use dataplane::policy::model::special;
use dataplane::policy::{Action, Mode, Policy, PortSpec, Rule};
use dataplane::report::{ConnectionRecord, Endpoint};
use ipnet::IpNet;

use crate::model::MAX_LEARNED_PORTS;

/// What control knows about the running policy, to resolve an event's endpoints: each
/// workload's group and mode, each group's mode, which address is which workload, the nodes.
#[derive(Debug, Clone, Default)]
pub struct Context {
    group_modes: HashMap<String, Mode>,
    workloads: HashMap<String, (String, Mode)>,
    by_ip: HashMap<IpAddr, String>,
    nodes: Vec<IpNet>,
}

/// One end of a connection, as learning sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    /// A workload: its id, group and its group's network mode (`None` when control does not
    /// know the group).
    Workload {
        /// Workload id.
        id: String,
        /// Its group.
        group: String,
        /// The group's network mode.
        mode: Option<Mode>,
    },
    /// A host node address.
    Nodes,
    /// Anything else; the group the dataplane resolved it to (`external` or an address
    /// group).
    External(String),
}

impl Party {
    /// The group a learned rule names for this end: the workload's group, `nodes` or
    /// `external`.
    pub fn rule_group(&self) -> &str {
        match self {
            Self::Workload { group, .. } => group,
            Self::Nodes => special::NODES,
            Self::External(_) => special::EXTERNAL,
        }
    }

    /// The group events name for this end (an address group is kept).
    pub fn group(&self) -> &str {
        match self {
            Self::Workload { group, .. } => group,
            Self::Nodes => special::NODES,
            Self::External(g) => g,
        }
    }

    /// The workload id, for a workload.
    pub fn workload(&self) -> Option<&str> {
        match self {
            Self::Workload { id, .. } => Some(id),
            _ => None,
        }
    }

    fn mode(&self) -> Option<Mode> {
        match self {
            Self::Workload { mode, .. } => *mode,
            _ => None,
        }
    }
}

impl Context {
    /// The context of a snapshot: its groups' modes, its workloads and nodes.
    pub fn from_policy(p: &Policy) -> Self {
        let mut c = Self {
            group_modes: p.groups.iter().map(|g| (g.name.clone(), g.mode)).collect(),
            nodes: p.nodes.clone(),
            ..Self::default()
        };
        for w in &p.workloads {
            c.workloads.insert(w.id.clone(), (w.group.clone(), w.mode));
            for ip in &w.ips {
                c.by_ip.insert(*ip, w.id.clone());
            }
        }
        c
    }

    /// Who an endpoint is: the workload the dataplane named or that owns the address, a node,
    /// or external.
    pub fn resolve(&self, ep: &Endpoint) -> Party {
        let ip = ep.addr.ip();
        let id = ep.workload.clone().or_else(|| self.by_ip.get(&ip).cloned());
        if let Some(id) = id {
            return match self.workloads.get(&id) {
                Some((group, own)) => Party::Workload {
                    mode: Some(self.group_modes.get(group).copied().unwrap_or(*own)),
                    group: group.clone(),
                    id,
                },
                None => Party::Workload {
                    mode: self.group_modes.get(&ep.group).copied(),
                    group: ep.group.clone(),
                    id,
                },
            };
        }
        if ep.group == special::NODES || self.nodes.iter().any(|n| n.contains(&ip)) {
            Party::Nodes
        } else {
            Party::External(ep.group.clone())
        }
    }
}

/// What [`learn`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LearnOutcome {
    /// New learned allow rules, id 0 (the store assigns ids), in the order first seen.
    pub add: Vec<Rule>,
    /// Ids of stored learned rules replaced by a collapsed `any` rule in `add`.
    pub remove: Vec<u32>,
}

/// The port spec naming a record's server port, if one can.
fn port_spec(rec: &ConnectionRecord) -> Option<PortSpec> {
    let port = rec.server.addr.port();
    match rec.proto {
        6 if port > 0 => Some(PortSpec::Tcp(port, port)),
        17 if port > 0 => Some(PortSpec::Udp(port, port)),
        1 | 58 => Some(PortSpec::Icmp),
        _ => None,
    }
}

/// `(proto, port)` a single-port spec matches, for coverage checks.
fn probe(p: PortSpec) -> (u8, u16) {
    match p {
        PortSpec::Tcp(lo, _) => (6, lo),
        PortSpec::Udp(lo, _) => (17, lo),
        PortSpec::Icmp => (1, 0),
        PortSpec::Any => (0, 0),
    }
}

/// Whether enabled allow rule `r` already allows what `cand` (one port, at most one app)
/// would.
fn covers(r: &Rule, cand: &Rule) -> bool {
    if r.disabled || r.action != Action::Allow || r.from != cand.from || r.to != cand.to {
        return false;
    }
    let ports_ok = r.ports.is_empty()
        || cand.ports.iter().all(|p| {
            let (proto, port) = probe(*p);
            r.ports
                .iter()
                .any(|rp| *rp == PortSpec::Any || rp.matches(proto, port))
        });
    let apps_ok = r.apps.is_empty()
        || (!cand.apps.is_empty() && cand.apps.iter().all(|a| r.apps.contains(a)));
    ports_ok && apps_ok
}

/// Same from, to, ports, apps and action.
fn same(a: &Rule, b: &Rule) -> bool {
    a.from == b.from
        && a.to == b.to
        && a.ports == b.ports
        && a.apps == b.apps
        && a.action == b.action
}

fn learned_rule(from: &str, to: &str, ports: Vec<PortSpec>, apps: Vec<App>) -> Rule {
    Rule {
        id: 0,
        from: from.to_owned(),
        to: to.to_owned(),
        ports,
        apps,
        action: Action::Allow,
        priority: 0,
        learned: true,
        disabled: false,
    }
}

/// Learned allow rules for `records`; see the module documentation for what is learned.
pub fn learn(records: &[ConnectionRecord], ctx: &Context, existing: &[Rule]) -> LearnOutcome {
    let deny_ids: HashSet<u32> = existing
        .iter()
        .filter(|r| r.action == Action::Deny && !r.disabled)
        .map(|r| r.id)
        .collect();
    let mut cands: Vec<Rule> = Vec::new();
    for rec in records {
        if rec.rule.is_some_and(|id| deny_ids.contains(&id)) {
            continue;
        }
        // A TCP attempt nobody answered (a SYN into a stopped service, or sent while the
        // dataplane was not forwarding yet) proves no conversation, and would teach a
        // port-only rule that then covers the application rule of the real connections.
        if rec.proto == 6 && !rec.answered {
            continue;
        }
        let client = ctx.resolve(&rec.client);
        let server = ctx.resolve(&rec.server);
        let decider = match (&client, &server) {
            (Party::Workload { .. }, _) => client.mode(),
            (_, Party::Workload { .. }) => server.mode(),
            _ => None,
        };
        if decider != Some(Mode::Discover) {
            continue;
        }
        let Some(port) = port_spec(rec) else {
            continue;
        };
        let apps = match App::from_name(&rec.app) {
            Some(a) if a != App::Unknown && port != PortSpec::Icmp => vec![a],
            _ => vec![],
        };
        let cand = learned_rule(client.rule_group(), server.rule_group(), vec![port], apps);
        let known = existing.iter().any(|r| same(r, &cand) || covers(r, &cand))
            || cands.iter().any(|r| same(r, &cand) || covers(r, &cand));
        if !known {
            cands.push(cand);
        }
    }

    // Collapse pairs with too many distinct ports.
    let mut collapsed: HashSet<(String, String)> = HashSet::new();
    let pairs: BTreeSet<(String, String)> = cands
        .iter()
        .map(|r| (r.from.clone(), r.to.clone()))
        .collect();
    let mut remove = Vec::new();
    for (from, to) in pairs {
        let in_pair = |r: &&Rule| r.from == from && r.to == to && r.action == Action::Allow;
        let stored: Vec<&Rule> = existing
            .iter()
            .filter(in_pair)
            .filter(|r| r.learned)
            .collect();
        let ports: HashSet<PortSpec> = stored
            .iter()
            .copied()
            .chain(cands.iter().filter(in_pair))
            .flat_map(|r| r.ports.iter().copied())
            .collect();
        if ports.len() > MAX_LEARNED_PORTS {
            remove.extend(stored.iter().map(|r| r.id));
            collapsed.insert((from, to));
        }
    }
    let mut add = Vec::with_capacity(cands.len());
    let mut emitted: HashSet<(String, String)> = HashSet::new();
    for r in cands {
        let key = (r.from.clone(), r.to.clone());
        if collapsed.contains(&key) {
            if emitted.insert(key) {
                add.push(learned_rule(&r.from, &r.to, vec![PortSpec::Any], vec![]));
            }
        } else {
            add.push(r);
        }
    }
    remove.sort_unstable();
    LearnOutcome { add, remove }
}

/// A context for tests: each workload `(id, group, mode, ip)` in its group of that mode.
#[cfg(test)]
pub(crate) fn test_context(workloads: &[(&str, &str, Mode, &str)], nodes: &[&str]) -> Context {
    use dataplane::policy::{Group, Workload};
    let mut groups: Vec<Group> = Vec::new();
    for (_, g, mode, _) in workloads {
        if !groups.iter().any(|x| x.name == *g) {
            groups.push(Group {
                name: (*g).into(),
                mode: *mode,
                members: vec![],
                cidrs: vec![],
            });
        }
    }
    Context::from_policy(&Policy {
        generation: 1,
        groups,
        rules: vec![],
        workloads: workloads
            .iter()
            .map(|(id, g, mode, ip)| Workload {
                id: (*id).into(),
                group: (*g).into(),
                mode: *mode,
                macs: vec![],
                ips: ip.parse().into_iter().collect(),
                exempt: false,
            })
            .collect(),
        nodes: nodes.iter().filter_map(|n| n.parse().ok()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::report::Verdict;

    fn ctx() -> Context {
        test_context(
            &[
                ("c1", "auto.client", Mode::Discover, "198.18.0.1"),
                ("web1", "auto.web", Mode::Discover, "198.18.0.2"),
                ("db1", "auto.db", Mode::Monitor, "198.18.0.3"),
                ("v1", "auto.vault", Mode::Protect, "198.18.0.4"),
            ],
            &["198.18.200.0/24"],
        )
    }

    /// A record as the dataplane sends it; `workload`/`group` are left as the dataplane would
    /// fill them only when `named` (else control resolves the addresses).
    fn rec(client: &str, server: &str, proto: u8, app: &str) -> ConnectionRecord {
        let ep = |a: &str| Endpoint {
            addr: a.parse().unwrap(),
            workload: None,
            group: "external".into(),
        };
        ConnectionRecord {
            client: ep(client),
            server: ep(server),
            proto,
            app: app.into(),
            sessions: 1,
            packets: 4,
            bytes: 300,
            first_seen_ms: 1,
            last_seen_ms: 2,
            verdict: Verdict::Allowed,
            rule: None,
            mode: Mode::Discover,
            answered: true,
        }
    }

    fn rule(from: &str, to: &str, ports: &[&str], apps: &[App]) -> Rule {
        learned_rule(
            from,
            to,
            ports.iter().map(|p| p.parse().unwrap()).collect(),
            apps.to_vec(),
        )
    }

    #[test]
    fn unanswered_tcp_attempts_teach_nothing_and_do_not_hide_the_app_rule() {
        let mut syn_only = rec("198.18.0.1:0", "198.18.0.2:8080", 6, "unknown");
        syn_only.answered = false;
        let mut udp_one_way = rec("198.18.0.1:0", "198.18.0.2:514", 17, "unknown");
        udp_one_way.answered = false;
        let out = learn(
            &[
                syn_only,
                rec("198.18.0.1:0", "198.18.0.2:8080", 6, "http"),
                udp_one_way,
            ],
            &ctx(),
            &[],
        );
        assert_eq!(
            out.add,
            vec![
                rule("auto.client", "auto.web", &["tcp/8080"], &[App::Http]),
                rule("auto.client", "auto.web", &["udp/514"], &[]),
            ]
        );
    }

    #[test]
    fn discover_client_learns_port_and_app() {
        let out = learn(
            &[
                rec("198.18.0.1:0", "198.18.0.2:80", 6, "http"),
                rec("198.18.0.1:0", "198.18.0.2:80", 6, "http"),
                rec("198.18.0.1:0", "198.18.0.2:5001", 6, "unknown"),
                rec("198.18.0.1:0", "198.18.0.2:53", 17, "dns"),
                rec("198.18.0.1:0", "198.18.0.2:0", 1, "unknown"),
            ],
            &ctx(),
            &[],
        );
        assert_eq!(
            out,
            LearnOutcome {
                add: vec![
                    rule("auto.client", "auto.web", &["tcp/80"], &[App::Http]),
                    rule("auto.client", "auto.web", &["tcp/5001"], &[]),
                    rule("auto.client", "auto.web", &["udp/53"], &[App::Dns]),
                    rule("auto.client", "auto.web", &["icmp"], &[]),
                ],
                remove: vec![],
            }
        );
        assert!(out.add.iter().all(|r| r.id == 0 && r.learned));
    }

    #[test]
    fn the_clients_mode_decides_and_non_workloads_map_to_external_or_nodes() {
        let c = ctx();
        // Client in monitor / protect: nothing, whatever the server's mode.
        let none = learn(
            &[
                rec("198.18.0.3:0", "198.18.0.2:80", 6, "unknown"),
                rec("198.18.0.4:0", "198.18.0.2:80", 6, "unknown"),
            ],
            &c,
            &[],
        );
        assert_eq!(none, LearnOutcome::default());
        // A discover client learns towards a protected server.
        let out = learn(
            &[rec("198.18.0.1:0", "198.18.0.4:8200", 6, "unknown")],
            &c,
            &[],
        );
        assert_eq!(
            out.add,
            [rule("auto.client", "auto.vault", &["tcp/8200"], &[])]
        );
        // Ingress from outside: the server's mode decides.
        let out = learn(
            &[
                rec("203.0.113.9:0", "198.18.0.2:443", 6, "tls"),
                rec("198.18.200.7:0", "198.18.0.2:9100", 6, "unknown"),
                rec("203.0.113.9:0", "198.18.0.3:5432", 6, "unknown"),
                rec("198.18.0.2:0", "198.18.200.1:10250", 6, "unknown"),
                rec("198.18.0.2:0", "203.0.113.10:443", 6, "unknown"),
                rec("203.0.113.9:0", "203.0.113.10:443", 6, "unknown"),
            ],
            &c,
            &[],
        );
        assert_eq!(
            out.add,
            [
                rule("external", "auto.web", &["tcp/443"], &[App::Tls]),
                rule("nodes", "auto.web", &["tcp/9100"], &[]),
                rule("auto.web", "nodes", &["tcp/10250"], &[]),
                rule("auto.web", "external", &["tcp/443"], &[]),
            ]
        );
    }

    #[test]
    fn the_dataplanes_names_are_used_when_given() {
        let mut r = rec("198.18.9.1:0", "198.18.9.2:80", 6, "unknown");
        r.client.workload = Some("c1".into());
        r.client.group = "auto.client".into();
        r.server.workload = Some("new1".into());
        r.server.group = "auto.web".into();
        let out = learn(&[r], &ctx(), &[]);
        assert_eq!(out.add, [rule("auto.client", "auto.web", &["tcp/80"], &[])]);
    }

    #[test]
    fn nothing_is_learned_twice() {
        let mut stored = rule("auto.client", "auto.web", &["tcp/80"], &[App::Http]);
        stored.id = 10_000;
        let mut disabled = rule("auto.client", "auto.web", &["tcp/81"], &[]);
        disabled.id = 10_001;
        disabled.disabled = true;
        let mut range = rule("auto.client", "auto.web", &["tcp/8000-8080"], &[]);
        range.id = 5;
        range.learned = false;
        let mut deny = rule("auto.client", "external", &["any"], &[]);
        deny.id = 6;
        deny.action = Action::Deny;
        let mut denied = rec("198.18.0.1:0", "203.0.113.1:22", 6, "ssh");
        denied.rule = Some(6);
        denied.verdict = Verdict::Alerted;
        let out = learn(
            &[
                rec("198.18.0.1:0", "198.18.0.2:80", 6, "http"),
                rec("198.18.0.1:0", "198.18.0.2:81", 6, "unknown"),
                rec("198.18.0.1:0", "198.18.0.2:8080", 6, "http"),
                denied,
                // Not covered: the stored rule names http, this has no app.
                rec("198.18.0.1:0", "198.18.0.2:80", 6, "unknown"),
                rec("198.18.0.1:0", "198.18.0.2:0", 47, "unknown"),
            ],
            &ctx(),
            &[stored, disabled, range, deny],
        );
        assert_eq!(out.add, [rule("auto.client", "auto.web", &["tcp/80"], &[])]);
        // An app-less rule covers the same port with an app.
        let mut any_app = rule("auto.client", "auto.web", &["tcp/80"], &[]);
        any_app.id = 10_002;
        let out = learn(
            &[rec("198.18.0.1:0", "198.18.0.2:80", 6, "http")],
            &ctx(),
            &[any_app],
        );
        assert_eq!(out, LearnOutcome::default());
    }

    #[test]
    fn more_than_max_ports_collapse_into_one_any_rule() {
        // 15 stored learned port rules, one hand-made rule, 6 new ports: 21 > 20.
        let mut existing: Vec<Rule> = (0..15u16)
            .map(|i| {
                let mut r = rule(
                    "auto.client",
                    "auto.web",
                    &[&format!("tcp/{}", 1000 + i)],
                    &[],
                );
                r.id = 10_000 + u32::from(i);
                r
            })
            .collect();
        let mut manual = rule("auto.client", "auto.web", &["tcp/22"], &[]);
        manual.id = 3;
        manual.learned = false;
        existing.push(manual);
        let mut recs: Vec<ConnectionRecord> = (0..6u16)
            .map(|i| {
                rec(
                    "198.18.0.1:0",
                    &format!("198.18.0.2:{}", 2000 + i),
                    6,
                    "unknown",
                )
            })
            .collect();
        // Another pair is untouched.
        recs.push(rec("198.18.0.2:0", "198.18.0.1:7", 6, "unknown"));
        let out = learn(&recs, &ctx(), &existing);
        assert_eq!(
            out,
            LearnOutcome {
                add: vec![
                    rule("auto.client", "auto.web", &["any"], &[]),
                    rule("auto.web", "auto.client", &["tcp/7"], &[]),
                ],
                remove: (10_000..10_015).collect(),
            }
        );
        // Exactly 20 distinct ports stay port rules.
        let out = learn(&recs[..5], &ctx(), &existing[..15]);
        assert_eq!(out.add.len(), 5);
        assert!(out.remove.is_empty());
    }
}
