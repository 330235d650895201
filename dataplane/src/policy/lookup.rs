//! [`Compiled::evaluate`]: one connection against a compiled policy, without allocation or
//! locks.
//!
//! 1. Resolve both addresses: a workload (one hash probe) with its profile's group set, or a
//!    non-workload address class (binary search in the address map) with its group set.
//! 2. The effective mode; when neither end is a workload, stop: not enforced.
//! 3. One table: the client's egress table probed with the server's groups, or, when the
//!    client is not a workload, the server's ingress table probed with the client's groups.
//!    For each peer group, the exact `(group, protocol, port)` list; then, unless an exact hit
//!    already ranks above everything in the ranged structure, the ranged bucket's interval
//!    holding the port. The best (lowest) rank whose applications include the query's wins.
//! 4. The verdict (or pending, for an undecided application and a rule naming applications),
//!    then the enforcement for the mode.

use std::net::IpAddr;

use super::compile::{
    ALL_APPS, CLASS_ICMP, CLASS_OTHER, CLASS_TCP, CLASS_UDP, Compiled, Entry, PROTO_ICMP,
    PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Table, app_bit, exact_key, ranged_key,
};
use super::model::{Action, Mode};
use crate::dpi::App;

/// One new connection (or one whose application was just decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Query {
    /// IP protocol (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    pub proto: u8,
    /// The side that opened the connection.
    pub client: IpAddr,
    /// The side that accepted it.
    pub server: IpAddr,
    /// The server's port (TCP and UDP; ignored otherwise).
    pub server_port: u16,
    /// The application, or `None` while DPI is still inspecting.
    pub app: Option<App>,
}

/// What the rules say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// An allow rule decided.
    Allow,
    /// A deny rule decided.
    Deny,
    /// No rule covers the connection (or the decision is pending, or not enforced).
    NoMatch,
}

/// What the dataplane does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Enforcement {
    /// Forward, report nothing.
    Forward,
    /// Forward and report the connection for learning (discover mode).
    Learn,
    /// Forward and raise a violation (monitor mode).
    Alert,
    /// Drop and raise a violation (protect mode).
    Drop,
}

impl Enforcement {
    /// The enforcement of `verdict` under `mode` (the table in the module doc).
    #[inline]
    pub fn of(mode: Mode, verdict: Verdict) -> Self {
        match (mode, verdict) {
            // "Deny rules drop in protect and alert otherwise": discover included.
            (Mode::Discover, Verdict::Deny) => Self::Alert,
            (Mode::Discover, _) => Self::Learn,
            (_, Verdict::Allow) => Self::Forward,
            (Mode::Monitor, _) => Self::Alert,
            (Mode::Protect, _) => Self::Drop,
        }
    }

    /// Whether the packet goes on.
    #[inline]
    pub fn forwards(self) -> bool {
        self != Self::Drop
    }
}

/// The outcome of [`Compiled::evaluate`]: 12 bytes, `Copy`, cached in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// What the rules say.
    pub verdict: Verdict,
    /// The rule that decided.
    pub rule: Option<u32>,
    /// The effective mode; `None` when neither end is a workload (not enforced).
    pub mode: Option<Mode>,
    /// What to do.
    pub enforcement: Enforcement,
    /// Provisional: the application is undecided and a rule naming applications is the first
    /// that could cover the connection. Forward without alert and evaluate again once DPI
    /// decides (or gives up, with [`App::Unknown`]).
    pub pending_app: bool,
}

impl Decision {
    /// A connection between two non-workloads.
    pub const UNENFORCED: Decision = Decision {
        verdict: Verdict::NoMatch,
        rule: None,
        mode: None,
        enforcement: Enforcement::Forward,
        pending_app: false,
    };

    /// Waiting for the application under `mode`.
    pub fn pending(mode: Mode) -> Decision {
        Decision {
            verdict: Verdict::NoMatch,
            rule: None,
            mode: Some(mode),
            enforcement: Enforcement::Forward,
            pending_app: true,
        }
    }

    /// Final: `verdict` (from `rule`) under `mode`.
    pub fn decided(mode: Mode, verdict: Verdict, rule: Option<u32>) -> Decision {
        Decision {
            verdict,
            rule,
            mode: Some(mode),
            enforcement: Enforcement::of(mode, verdict),
            pending_app: false,
        }
    }
}

/// Which table answers a query (tests check both agree when both ends are workloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    ClientEgress,
    ServerIngress,
}

/// One resolved address.
struct End<'a> {
    /// Mode and profile when it is a workload.
    workload: Option<(Mode, u32)>,
    groups: &'a [u32],
}

impl Table {
    /// The best-ranked entry for `peers` on `(proto, port)` whose applications meet `want`.
    #[inline]
    fn lookup(
        &self,
        c: &Compiled,
        peers: &[u32],
        proto: u8,
        port: u16,
        want: u64,
    ) -> Option<Entry> {
        let mut best: Option<Entry> = None;
        if proto == PROTO_TCP || proto == PROTO_UDP {
            if !self.exact.is_empty() {
                for &g in peers {
                    if let Some(span) = self.exact.get(&exact_key(g, proto, port)) {
                        first(span.of(&c.entries), want, &mut best);
                    }
                }
            }
            if best.is_some_and(|b| b.rank < self.best_ranged) {
                return best;
            }
        }
        if self.ranged.is_empty() {
            return best;
        }
        let (class, port) = match proto {
            PROTO_TCP => (CLASS_TCP, port),
            PROTO_UDP => (CLASS_UDP, port),
            PROTO_ICMP | PROTO_ICMPV6 => (CLASS_ICMP, 0),
            _ => (CLASS_OTHER, 0),
        };
        for &g in peers {
            let Some(bucket) = self.ranged.get(&ranged_key(g, class)) else {
                continue;
            };
            if best.is_some_and(|b| b.rank <= bucket.best) {
                continue;
            }
            let starts = bucket.intervals.of(&c.starts);
            let i = starts.partition_point(|s| *s <= port).saturating_sub(1);
            let lists = bucket.intervals.of(&c.lists);
            if let Some(list) = lists.get(i) {
                first(list.of(&c.entries), want, &mut best);
            }
        }
        best
    }
}

/// Replaces `best` by the first entry of the rank-ordered `list` that ranks better and meets
/// `want`.
#[inline]
fn first(list: &[Entry], want: u64, best: &mut Option<Entry>) {
    let bound = best.map_or(u32::MAX, |b| b.rank);
    for e in list {
        if e.rank >= bound {
            return;
        }
        if e.apps & want != 0 {
            *best = Some(*e);
            return;
        }
    }
}

impl Compiled {
    /// Evaluates one connection (see the module doc for the semantics). No allocation, no
    /// locks; cost independent of the number of rules.
    pub fn evaluate(&self, q: &Query) -> Decision {
        self.evaluate_via(q, None)
    }

    /// [`Compiled::evaluate`] through the table of `side` when both ends are workloads
    /// (`None`: the one with fewer peer groups to probe).
    pub(super) fn evaluate_via(&self, q: &Query, side: Option<Side>) -> Decision {
        let client = self.end(q.client);
        let server = self.end(q.server);
        let (mode, table, peers) = match (client.workload, server.workload) {
            (None, None) => return Decision::UNENFORCED,
            (Some((mode, p)), None) => (mode, self.egress(p), server.groups),
            (None, Some((mode, p))) => (mode, self.ingress(p), client.groups),
            (Some((a, pa)), Some((b, pb))) => {
                let mode = a.max(b);
                let side = side.unwrap_or(if client.groups.len() < server.groups.len() {
                    Side::ServerIngress
                } else {
                    Side::ClientEgress
                });
                match side {
                    Side::ClientEgress => (mode, self.egress(pa), server.groups),
                    Side::ServerIngress => (mode, self.ingress(pb), client.groups),
                }
            }
        };
        let want = q.app.map_or(ALL_APPS, app_bit);
        let hit = table.and_then(|t| t.lookup(self, peers, q.proto, q.server_port, want));
        let Some(info) = hit.and_then(|e| self.rules.get(e.rank as usize)) else {
            return Decision::decided(mode, Verdict::NoMatch, None);
        };
        if q.app.is_none() && info.has_apps {
            return Decision::pending(mode);
        }
        let verdict = match info.action {
            Action::Allow => Verdict::Allow,
            Action::Deny => Verdict::Deny,
        };
        Decision::decided(mode, verdict, Some(info.id))
    }

    fn egress(&self, profile: u32) -> Option<&Table> {
        self.profiles.get(profile as usize).map(|p| &p.egress)
    }

    fn ingress(&self, profile: u32) -> Option<&Table> {
        self.profiles.get(profile as usize).map(|p| &p.ingress)
    }

    #[inline]
    fn end(&self, ip: IpAddr) -> End<'_> {
        if let Some(w) = self.workload_at(ip) {
            let groups = self
                .profiles
                .get(w.profile as usize)
                .map_or(&[][..], |p| p.groups.of(&self.group_sets));
            return End {
                workload: Some((w.mode, w.profile)),
                groups,
            };
        }
        let groups = self
            .classes
            .get(self.class_at(ip) as usize)
            .map_or(&[][..], |c| c.groups.of(&self.group_sets));
        End {
            workload: None,
            groups,
        }
    }
}
