//! A deliberately naive matcher the compiled tables are checked against: the module doc's
//! semantics read literally. Every query scans the workloads, the networks and every rule in
//! rank order, checking membership by name; nothing is precomputed.

use std::cmp::Reverse;
use std::net::IpAddr;

use super::lookup::{Decision, Query, Verdict};
use super::model::{Action, Group, Mode, Policy, Workload, special};

pub(super) struct Reference<'a> {
    policy: &'a Policy,
    /// The policy's workloads, each replaced by an announced one with its id, then the other
    /// announced ones.
    workloads: Vec<&'a Workload>,
}

impl<'a> Reference<'a> {
    pub(super) fn new(policy: &'a Policy, extra: &'a [Workload]) -> Self {
        let mut workloads: Vec<&Workload> = policy.workloads.iter().collect();
        for w in extra {
            match workloads.iter_mut().find(|p| p.id == w.id) {
                Some(slot) => *slot = w,
                None => workloads.push(w),
            }
        }
        Self { policy, workloads }
    }

    /// The last workload listing `ip`.
    fn workload(&self, ip: IpAddr) -> Option<&'a Workload> {
        self.workloads
            .iter()
            .rev()
            .find(|w| w.ips.contains(&ip))
            .copied()
    }

    fn is_node(&self, ip: IpAddr) -> bool {
        self.policy.nodes.iter().any(|n| n.contains(&ip))
    }

    fn group(&self, name: &str) -> Option<&'a Group> {
        self.policy.groups.iter().find(|g| g.name == name)
    }

    fn member(&self, name: &str, ip: IpAddr) -> bool {
        let group = self.group(name);
        match self.workload(ip) {
            Some(w) => {
                name == special::CONTAINERS
                    || w.group == name
                    || group.is_some_and(|g| {
                        g.members.contains(&w.id)
                            || g.cidrs.iter().any(|n| w.ips.iter().any(|a| n.contains(a)))
                    })
            }
            None => {
                let node = self.is_node(ip);
                (node && name == special::NODES)
                    || (!node && name == special::EXTERNAL)
                    || group.is_some_and(|g| g.cidrs.iter().any(|n| n.contains(&ip)))
            }
        }
    }

    fn mode(&self, ip: IpAddr) -> Option<Mode> {
        self.workload(ip).map(|w| {
            if w.exempt && w.mode == Mode::Protect {
                Mode::Monitor
            } else {
                w.mode
            }
        })
    }

    pub(super) fn evaluate(&self, q: &Query) -> Decision {
        let mode = match (self.mode(q.client), self.mode(q.server)) {
            (None, None) => return Decision::UNENFORCED,
            (Some(a), None) | (None, Some(a)) => a,
            (Some(a), Some(b)) => {
                if a == Mode::Protect || b == Mode::Protect {
                    Mode::Protect
                } else if a == Mode::Monitor || b == Mode::Monitor {
                    Mode::Monitor
                } else {
                    Mode::Discover
                }
            }
        };
        let mut rules: Vec<(usize, _)> = self
            .policy
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.disabled)
            .collect();
        rules.sort_by_key(|(i, r)| (Reverse(r.priority), *i));
        for (_, r) in rules {
            if !self.member(&r.from, q.client) || !self.member(&r.to, q.server) {
                continue;
            }
            if !r.ports.is_empty() && !r.ports.iter().any(|p| p.matches(q.proto, q.server_port)) {
                continue;
            }
            match q.app {
                None if !r.apps.is_empty() => return Decision::pending(mode),
                Some(app) if !r.apps.is_empty() && !r.apps.contains(&app) => continue,
                _ => {}
            }
            let verdict = match r.action {
                Action::Allow => Verdict::Allow,
                Action::Deny => Verdict::Deny,
            };
            return Decision::decided(mode, verdict, Some(r.id));
        }
        Decision::decided(mode, Verdict::NoMatch, None)
    }

    pub(super) fn describe(&self, ip: IpAddr) -> (Option<String>, String) {
        if let Some(w) = self.workload(ip) {
            return (Some(w.id.clone()), w.group.clone());
        }
        // (prefix length, nodes first, earlier group first): the best is the maximum.
        type Key = (u8, bool, Reverse<usize>);
        let mut best: Option<(Key, &str)> = None;
        let nodes = self
            .policy
            .nodes
            .iter()
            .map(|n| (n, true, 0, special::NODES));
        let groups = self
            .policy
            .groups
            .iter()
            .enumerate()
            .flat_map(|(i, g)| g.cidrs.iter().map(move |n| (n, false, i, g.name.as_str())));
        for (net, node, i, name) in nodes.chain(groups) {
            if !net.contains(&ip) {
                continue;
            }
            let key = (net.prefix_len(), node, Reverse(i));
            if best.is_none_or(|(k, _)| key > k) {
                best = Some((key, name));
            }
        }
        let name = best.map_or(special::EXTERNAL, |(_, n)| n);
        (None, name.to_owned())
    }
}
