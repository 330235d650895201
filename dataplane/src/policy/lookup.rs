//! [`Compiled::evaluate`]: one connection against a compiled policy, without allocation or
//! locks.
//!
//! 1. Resolve both addresses: a workload (one hash probe) with its profile's group set, or a
//!    non-workload address class (binary search in the address map) with its group set.
//! 2. The effective mode; when neither end is a workload, stop: not enforced.
//! 3. One table: the client's egress table probed with the server's groups, or the server's
//!    ingress table probed with the client's groups (when both ends are workloads, the one
//!    with fewer groups). For each peer group, one probe of the `(table, peer group)` map;
//!    then the exact `(protocol, port)` item; then, unless the exact hit already ranks above
//!    everything in the ranged buckets, the bucket's interval holding the port. The best
//!    (lowest) rank whose applications include the query's wins.
//! 4. The verdict (or pending, for an undecided application and a rule naming applications),
//!    then the enforcement for the mode.

use std::net::IpAddr;

use super::compile::{
    ALL_APPS, CLASS_ICMP, CLASS_OTHER, CLASS_TCP, CLASS_UDP, Compiled, Entry, List, Local,
    PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, app_bit, exact_key, filter_bit, peer_key,
};
use super::model::Mode;
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
    /// Set when it is a workload's.
    local: Option<&'a Local>,
    groups: &'a [u32],
}

/// Replaces `best` by the first entry of the rank-ordered `list` (its tail in `pool`) that
/// ranks better and meets `want`.
#[inline]
fn first(list: &List, pool: &[Entry], want: u64, best: &mut Option<Entry>) {
    let bound = best.map_or(u32::MAX, |b| b.order);
    for e in std::iter::once(&list.head).chain(list.tail.of(pool)) {
        if e.order >= bound {
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
        let egress = |l: &Local| l.profile.saturating_mul(2);
        let ingress = |l: &Local| l.profile.saturating_mul(2).saturating_add(1);
        let (mode, table, peers) = match (client.local, server.local) {
            (None, None) => return Decision::UNENFORCED,
            (Some(c), None) => (c.mode, egress(c), server.groups),
            (None, Some(s)) => (s.mode, ingress(s), client.groups),
            (Some(c), Some(s)) => {
                let mode = c.mode.max(s.mode);
                let side = side.unwrap_or(if client.groups.len() < server.groups.len() {
                    Side::ServerIngress
                } else {
                    Side::ClientEgress
                });
                match side {
                    Side::ClientEgress => (mode, egress(c), server.groups),
                    Side::ServerIngress => (mode, ingress(s), client.groups),
                }
            }
        };
        let want = q.app.map_or(ALL_APPS, app_bit);
        let Some(hit) = self.lookup(table, peers, q.proto, q.server_port, want) else {
            return Decision::decided(mode, Verdict::NoMatch, None);
        };
        if q.app.is_none() && hit.names_apps() {
            return Decision::pending(mode);
        }
        let verdict = if hit.deny() {
            Verdict::Deny
        } else {
            Verdict::Allow
        };
        Decision::decided(mode, verdict, Some(hit.id))
    }

    /// The best-ranked entry of `table` for any of `peers` on `(proto, port)` whose
    /// applications meet `want`.
    #[inline]
    fn lookup(&self, table: u32, peers: &[u32], proto: u8, port: u16, want: u64) -> Option<Entry> {
        let exact = (proto == PROTO_TCP || proto == PROTO_UDP).then(|| exact_key(proto, port));
        let (class, port) = match proto {
            PROTO_TCP => (CLASS_TCP, port),
            PROTO_UDP => (CLASS_UDP, port),
            PROTO_ICMP | PROTO_ICMPV6 => (CLASS_ICMP, 0),
            _ => (CLASS_OTHER, 0),
        };
        let filter = self.filters.get(table as usize).copied().unwrap_or(0);
        let mut best: Option<Entry> = None;
        for &g in peers {
            if filter & filter_bit(g) == 0 {
                continue;
            }
            let Some(peer) = self.peers.get(&peer_key(table, g)) else {
                continue;
            };
            if let Some(key) = exact {
                let items = peer.exact.of(&self.exact);
                let i = items.partition_point(|x| x.key < key);
                if let Some(x) = items.get(i).filter(|x| x.key == key) {
                    first(&x.list, &self.entries, want, &mut best);
                }
            }
            if best.is_some_and(|b| b.order < peer.best_ranged) {
                continue;
            }
            let Some(bucket) = peer
                .ranged
                .of(&self.buckets)
                .iter()
                .find(|b| b.class == class)
            else {
                continue;
            };
            if best.is_some_and(|b| b.order <= bucket.best) {
                continue;
            }
            let starts = bucket.intervals.of(&self.starts);
            let i = starts.partition_point(|s| *s <= port).saturating_sub(1);
            if let Some(list) = bucket.intervals.of(&self.lists).get(i) {
                first(list, &self.entries, want, &mut best);
            }
        }
        best
    }

    #[inline]
    fn end(&self, ip: IpAddr) -> End<'_> {
        if let Some(l) = self.local(ip) {
            return End {
                local: Some(l),
                groups: l.groups.of(&self.group_sets),
            };
        }
        let groups = self
            .classes
            .get(self.class_at(ip) as usize)
            .map_or(&[][..], |c| c.groups.of(&self.group_sets));
        End {
            local: None,
            groups,
        }
    }
}
