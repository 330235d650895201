//! [`Compiled::compile`]: a whole policy snapshot into immutable lookup tables.
//!
//! # Design
//!
//! The issue asks for per-workload tables: "exact (peer address, protocol, port) first, then
//! CIDR and port-range structures, then the mode's default; first match wins by priority, then
//! order". Two observations shape how that is built here.
//!
//! **Rules name groups, not addresses.** Expanding a rule's peer group into the peers'
//! addresses multiplies every rule by the size of the group (and again by the local group's
//! size): `containers`, `external`, `nodes` and address groups cannot be expanded at all, and a
//! 100k-rule policy over groups of ten would be millions of keys. So every address is resolved
//! once per query to an *endpoint* with a small sorted set of group ids, and the tables are
//! keyed by the *peer group*:
//!
//! - a workload address (one hash probe, [`FxHashMap`] on the address as an integer) resolves
//!   to the workload and its *profile*, the set of groups it belongs to (its group, the groups
//!   listing it as a member, the address groups containing one of its addresses,
//!   `containers`), computed at compile time;
//! - any other address resolves by binary search over the *address map*: the sorted disjoint
//!   intervals cut by all `nodes` and address-group networks (CIDRs are laminar, so one sweep
//!   with a stack of nested networks builds it), each carrying its interned class: `nodes` or
//!   `external` plus the address groups containing it, and the name [`Compiled::describe`]
//!   reports.
//!
//! **Workloads of one group have the same profile.** Tables are built per distinct profile and
//! shared by every workload with that profile, so their size scales with the number of groups,
//! not of workloads. Each profile has an *egress* table (rules whose `from` is one of its
//! groups, keyed by the rule's `to`) and an *ingress* table (rules whose `to` is one of its
//! groups, keyed by `from`).
//!
//! **Few dependent cache misses.** A new flow touches cold memory, so the layout keeps the
//! chain short. A workload address's hash-map value (`Local`) carries the profile, the mode
//! and the group-set span itself. All tables share one hash map, `Compiled::peers`, keyed by
//! `(table, peer group)`; its value (`Peer`) holds both of that pair's structures next to
//! each other, each yielding rule *ranks* (0 = the first rule by priority then order), each
//! rank with its application set as a 64-bit mask:
//!
//! - *exact*: the sorted `(protocol, port)` items of `tcp/P` and `udp/P` rules (usually one to
//!   three per pair, found by binary search), each with the rank-ordered list of its rules;
//! - *ranged*: one bucket per protocol class (TCP, UDP, ICMP, other) for port ranges, `icmp`
//!   and `any`: the port axis 0..=65535 cut into sorted disjoint intervals, each with the
//!   rank-ordered list of rules covering it (binary search; `icmp`, `any` and port-less
//!   protocols are one interval), built by one sweep per bucket;
//! - the best rank present in the ranged buckets (and in each bucket), so that an exact hit
//!   ranked above it is final for that peer group without touching the intervals. (This is the
//!   issue's per-table precomputation, kept per `(table, peer group)`: the finer bound is free,
//!   as the pair's value is already in cache.)
//!
//! Lists are pruned at compile time: a rule is kept only if it is the first of its list or adds
//! an application no better-ranked rule of the list has (so no list is longer than 65 and a
//! rule with no `apps` ends its list), since no query could reach it otherwise. A list's first
//! entry is stored inline (most lists have one rule), and an entry (`Entry`, 16 bytes) carries
//! the rule's id, action and applications, so the decision needs no further read. A lookup
//! probes the map once per group of the peer (typically two or three: its own group and
//! `containers`, or `external` plus the address groups containing it), skipping the groups a
//! per-table 64-bit filter says the table never mentions, and keeps the best rank: its cost
//! does not depend on the number of rules. No match falls to the mode's default.
//!
//! One table answers a query: the client's egress table probed with the server's groups (it
//! holds every rule whose `from` the client is in, keyed by the group the server must be in),
//! or the server's ingress table probed with the client's groups. When only one end is a
//! workload, its table is the one; when both are, either gives the same answer (the tests
//! check both) and the one with fewer groups to probe is used.
//!
//! # Compile cost
//!
//! Each enabled rule is placed in the egress table of every profile containing its `from` and
//! the ingress table of every profile containing its `to` (one or a few for a named group,
//! every profile for `containers`), once per port spec (`any` once per protocol class); the
//! items are sorted per table, then grouped and swept. The sweep of a ranged bucket walks, per
//! interval, the covering rules in rank order until an application-less one: overlapping
//! ranges that all name applications cost up to their overlap depth per interval.
//!
//! # Hasher
//!
//! [`rustc_hash::FxHasher`] (v2): keys are small integers (a `u32`/`u128` address, a `u64`
//! packed key), where SipHash's per-lookup cost would dominate the lookup. Flooding is not a
//! concern: every key is inserted from the policy (control's data, not the network's), and a
//! lookup with an attacker-chosen key cannot lengthen any probe sequence beyond those the
//! policy's own keys produce.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

use super::model::{Action, Mode, Policy, PolicyError, PortSpec, Rule, Workload, special};
use crate::dpi::App;

/// Group ids: the special groups, then the policy's groups in order.
pub(super) const EXTERNAL: u32 = 0;
pub(super) const NODES: u32 = 1;
pub(super) const CONTAINERS: u32 = 2;
const FIRST_USER: u32 = 3;

/// Protocol classes of the ranged structure.
pub(super) const CLASS_TCP: u8 = 0;
pub(super) const CLASS_UDP: u8 = 1;
pub(super) const CLASS_ICMP: u8 = 2;
pub(super) const CLASS_OTHER: u8 = 3;

pub(super) const PROTO_ICMP: u8 = 1;
pub(super) const PROTO_TCP: u8 = 6;
pub(super) const PROTO_UDP: u8 = 17;
pub(super) const PROTO_ICMPV6: u8 = 58;

/// Application sets are 64-bit masks.
const _: () = assert!(App::ALL.len() < 64);

/// Every application.
pub(super) const ALL_APPS: u64 = u64::MAX;

/// `app`'s bit in an application mask.
#[inline]
pub(super) fn app_bit(app: App) -> u64 {
    1u64 << ((app as u16) & 63)
}

/// A range of a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(super) struct Span {
    pub(super) start: u32,
    pub(super) len: u32,
}

impl Span {
    /// Its part of `pool` (empty if out of range, which compilation never produces).
    #[inline]
    pub(super) fn of<T>(self, pool: &[T]) -> &[T] {
        let start = self.start as usize;
        pool.get(start..start + self.len as usize).unwrap_or(&[])
    }

    fn to_end<T>(start: usize, pool: &[T]) -> Self {
        Self {
            start: u32_of(start),
            len: u32_of(pool.len() - start),
        }
    }
}

/// A rule as a list holds it: 16 bytes with everything a decision needs, so a lookup never
/// reads the rule elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Entry {
    /// `rank << 1 | deny`: orders like the rank (ranks are distinct); lower is better.
    pub(super) order: u32,
    /// The rule's id.
    pub(super) id: u32,
    /// Applications it covers: [`ALL_APPS`] when it names none (a list of applications
    /// never has every bit, as there are fewer than 64).
    pub(super) apps: u64,
}

impl Entry {
    /// Matches nothing, ranks after everything: the head of an empty list.
    pub(super) const NONE: Entry = Entry {
        order: u32::MAX,
        id: 0,
        apps: 0,
    };

    fn new(rank: u32, rule: &Rule) -> Self {
        Self {
            order: rank.saturating_mul(2) | u32::from(rule.action == Action::Deny),
            id: rule.id,
            apps: apps_mask(&rule.apps),
        }
    }

    #[inline]
    pub(super) fn deny(self) -> bool {
        self.order & 1 == 1
    }

    /// The rule names applications (an undecided one makes it pending).
    #[inline]
    pub(super) fn names_apps(self) -> bool {
        self.apps != ALL_APPS
    }
}

/// A rank-ordered list of entries, its first entry inline (most lists have one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct List {
    /// [`Entry::NONE`] when empty.
    pub(super) head: Entry,
    /// The others (into `Compiled::entries`).
    pub(super) tail: Span,
}

/// A workload, for [`Compiled::describe`].
#[derive(Debug)]
pub(super) struct WorkloadInfo {
    pub(super) id: Box<str>,
    /// Its own group.
    pub(super) group: u32,
}

/// What a workload's address resolves to: the address hash map's value, so that one probe
/// gives everything a lookup needs of this end.
#[derive(Debug, Clone, Copy)]
pub(super) struct Local {
    pub(super) workload: u32,
    /// Its tables are `2 * profile` (egress) and `2 * profile + 1` (ingress).
    pub(super) profile: u32,
    /// Its profile's groups (into `Compiled::group_sets`).
    pub(super) groups: Span,
    /// Its mode, `monitor` at most when it is exempt.
    pub(super) mode: Mode,
}

/// A class of non-workload addresses.
#[derive(Debug)]
pub(super) struct AddrClass {
    /// `nodes` or `external`, then its address groups (into `Compiled::group_sets`).
    pub(super) groups: Span,
    /// The group [`Compiled::describe`] names.
    pub(super) name: u32,
}

/// Sorted disjoint intervals of one address family: `class[i]` from `starts[i]` up to the next
/// start. `starts[0]` is 0.
#[derive(Debug, Default)]
pub(super) struct AddrMap<A> {
    pub(super) starts: Box<[A]>,
    pub(super) class: Box<[u32]>,
}

impl<A: Copy + Ord> AddrMap<A> {
    #[inline]
    pub(super) fn class_of(&self, a: A) -> u32 {
        let i = self.starts.partition_point(|s| *s <= a).saturating_sub(1);
        self.class.get(i).copied().unwrap_or(0)
    }
}

/// The rules of one table (a profile's egress or ingress) for one peer group: the value of
/// `Compiled::peers`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer {
    /// Exact items (into `Compiled::exact`), sorted by [`Exact::key`].
    pub(super) exact: Span,
    /// Ranged buckets (into `Compiled::buckets`), one per protocol class present, sorted.
    pub(super) ranged: Span,
    /// Best [`Entry::order`] in `ranged` (`u32::MAX` when empty): an exact hit ranked above
    /// it is final for this peer group.
    pub(super) best_ranged: u32,
}

/// `tcp/P` or `udp/P`: the rank-ordered list of rules with that key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Exact {
    /// [`exact_key`].
    pub(super) key: u32,
    pub(super) list: List,
}

/// Port ranges, `icmp` and `any` of one protocol class: sorted disjoint port intervals (into
/// `Compiled::starts` and `Compiled::lists`), each with its rank-ordered list.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    pub(super) class: u8,
    /// Best [`Entry::order`] in its lists.
    pub(super) best: u32,
    pub(super) intervals: Span,
}

#[inline]
pub(super) fn exact_key(proto: u8, port: u16) -> u32 {
    (u32::from(proto) << 16) | u32::from(port)
}

/// A table's bit for peer `group` in `Compiled::filters`.
#[inline]
pub(super) fn filter_bit(group: u32) -> u64 {
    1u64 << (group.wrapping_mul(0x9e37_79b9) >> 26)
}

/// The key of `Compiled::peers`: table (`2 * profile + direction`) and peer group.
#[inline]
pub(super) fn peer_key(table: u32, group: u32) -> u64 {
    (u64::from(table) << 32) | u64::from(group)
}

/// Counts that describe a compiled policy's shape (for tests, logs and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Enforced (not disabled) rules.
    pub rules: usize,
    /// Workloads.
    pub workloads: usize,
    /// Distinct group-membership sets among workloads (each has an egress and an ingress
    /// table).
    pub profiles: usize,
    /// `(table, peer group)` keys: the hash map every lookup probes once per peer group.
    pub peers: usize,
    /// Exact `(protocol, port)` items over all peers.
    pub exact_keys: usize,
    /// Ranged `(protocol class)` buckets over all peers.
    pub ranged_buckets: usize,
    /// Port intervals over all buckets.
    pub intervals: usize,
    /// Rank entries over all lists, after pruning.
    pub entries: usize,
    /// Intervals of the IPv4 and IPv6 address maps.
    pub address_intervals: usize,
    /// Distinct classes of non-workload addresses.
    pub address_classes: usize,
}

/// A compiled policy snapshot: immutable, shared by every worker. See the module doc.
pub struct Compiled {
    pub(super) generation: u64,
    /// Enforced rules.
    pub(super) rules: usize,
    pub(super) workloads: Box<[WorkloadInfo]>,
    pub(super) by_v4: FxHashMap<u32, Local>,
    pub(super) by_v6: FxHashMap<u128, Local>,
    pub(super) v4: AddrMap<u32>,
    pub(super) v6: AddrMap<u128>,
    pub(super) classes: Box<[AddrClass]>,
    pub(super) profiles: usize,
    /// Sorted group-id sets of profiles and address classes.
    pub(super) group_sets: Box<[u32]>,
    /// Group names by id.
    pub(super) names: Box<[Box<str>]>,
    /// [`peer_key`] to the peer group's rules in that table.
    pub(super) peers: FxHashMap<u64, Peer>,
    /// By table: the [`filter_bit`]s of its peer groups, so that a peer group the table never
    /// mentions (typically `containers`) costs no probe of `peers`.
    pub(super) filters: Box<[u64]>,
    pub(super) exact: Box<[Exact]>,
    pub(super) buckets: Box<[Bucket]>,
    pub(super) entries: Box<[Entry]>,
    /// Interval starts of all buckets.
    pub(super) starts: Box<[u16]>,
    /// Lists of all intervals (parallel to `starts`).
    pub(super) lists: Box<[List]>,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("generation", &self.generation)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Sizes beyond `u32` cannot be built in memory (a rule alone is larger than 4 bytes).
fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A network of `nodes` or of an address group, as an inclusive integer range.
#[derive(Debug, Clone, Copy)]
struct Cidr {
    start: u128,
    end: u128,
    prefix: u8,
    node: bool,
    group: u32,
}

fn cidr(net: &IpNet, node: bool, group: u32) -> (bool, Cidr) {
    let (v4, start, end) = match net {
        IpNet::V4(n) => (
            true,
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (false, u128::from(n.network()), u128::from(n.broadcast())),
    };
    let c = Cidr {
        start,
        end,
        prefix: net.prefix_len(),
        node,
        group,
    };
    (v4, c)
}

/// Interns sorted group-id sets into one pool.
#[derive(Default)]
struct SetPool {
    pool: Vec<u32>,
    seen: HashMap<Vec<u32>, Span, FxBuildHasher>,
}

impl SetPool {
    fn intern(&mut self, set: &[u32]) -> Span {
        if let Some(s) = self.seen.get(set) {
            return *s;
        }
        let start = self.pool.len();
        self.pool.extend_from_slice(set);
        let span = Span::to_end(start, &self.pool);
        self.seen.insert(set.to_vec(), span);
        span
    }
}

/// Interns address classes.
#[derive(Default)]
struct ClassPool {
    classes: Vec<AddrClass>,
    seen: FxHashMap<(Span, u32), u32>,
}

impl ClassPool {
    fn intern(&mut self, sets: &mut SetPool, groups: &[u32], name: u32) -> u32 {
        let groups = sets.intern(groups);
        *self.seen.entry((groups, name)).or_insert_with(|| {
            self.classes.push(AddrClass { groups, name });
            u32_of(self.classes.len() - 1)
        })
    }
}

/// Cuts one family's address space (`0..=max`) by `cidrs` into classes. CIDRs are laminar
/// (two are nested or disjoint), so a stack of the networks containing the current point is
/// enough: sorted by start and then size, each network is pushed at its start and popped once
/// the sweep passes its end.
fn address_map(
    mut cidrs: Vec<Cidr>,
    max: u128,
    sets: &mut SetPool,
    classes: &mut ClassPool,
) -> (Vec<u128>, Vec<u32>) {
    // At one network, `nodes` ends on top (wins the name), then the group defined first.
    cidrs.sort_by_key(|c| (c.start, c.prefix, c.node, Reverse(c.group)));
    let mut points: Vec<u128> = Vec::with_capacity(2 * cidrs.len() + 1);
    points.push(0);
    for c in &cidrs {
        points.push(c.start);
        if let Some(next) = c.end.checked_add(1).filter(|n| *n <= max) {
            points.push(next);
        }
    }
    points.sort_unstable();
    points.dedup();

    let (mut starts, mut ids) = (Vec::new(), Vec::new());
    let mut stack: Vec<Cidr> = Vec::new();
    let mut next = 0;
    let mut groups = Vec::new();
    for p in points {
        while stack.last().is_some_and(|c| c.end < p) {
            stack.pop();
        }
        while let Some(c) = cidrs.get(next).filter(|c| c.start == p) {
            stack.push(*c);
            next += 1;
        }
        groups.clear();
        let node = stack.iter().any(|c| c.node);
        groups.push(if node { NODES } else { EXTERNAL });
        groups.extend(stack.iter().filter(|c| !c.node).map(|c| c.group));
        groups.sort_unstable();
        groups.dedup();
        let name = match stack.last() {
            None => EXTERNAL,
            Some(c) if c.node => NODES,
            Some(c) => c.group,
        };
        let class = classes.intern(sets, &groups, name);
        if ids.last() != Some(&class) {
            starts.push(p);
            ids.push(class);
        }
    }
    (starts, ids)
}

/// The snapshot's workloads: the policy's, each replaced by an announced one with its id, then
/// the other announced ones in order.
fn merge_workloads<'a>(
    policy: &'a Policy,
    extra: &'a [Workload],
    gid: &FxHashMap<&str, u32>,
) -> Result<Vec<&'a Workload>, PolicyError> {
    let mut list: Vec<&Workload> = policy.workloads.iter().collect();
    let mut at: FxHashMap<&str, usize> = list
        .iter()
        .enumerate()
        .map(|(i, w)| (w.id.as_str(), i))
        .collect();
    let mut announced = FxHashSet::default();
    for w in extra {
        if !announced.insert(w.id.as_str()) {
            return Err(PolicyError::DuplicateWorkload(w.id.clone()));
        }
        if !gid.contains_key(w.group.as_str()) {
            return Err(PolicyError::WorkloadGroup {
                workload: w.id.clone(),
                group: w.group.clone(),
            });
        }
        match at.get(w.id.as_str()) {
            Some(&i) => {
                if let Some(slot) = list.get_mut(i) {
                    *slot = w;
                }
            }
            None => {
                at.insert(w.id.as_str(), list.len());
                list.push(w);
            }
        }
    }
    Ok(list)
}

/// Rules in rank order: enabled ones, higher priority first, list order kept (stable sort).
pub(super) fn ranked(policy: &Policy) -> Vec<&Rule> {
    let mut rules: Vec<&Rule> = policy.rules.iter().filter(|r| !r.disabled).collect();
    rules.sort_by_key(|r| Reverse(r.priority));
    rules
}

fn apps_mask(apps: &[App]) -> u64 {
    if apps.is_empty() {
        ALL_APPS
    } else {
        apps.iter().fold(0, |m, a| m | app_bit(*a))
    }
}

/// An exact rule item of one table, before grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ExactItem {
    peer: u32,
    key: u32,
    entry: Entry,
}

/// A ranged rule item of one table, before the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RangedItem {
    peer: u32,
    class: u8,
    entry: Entry,
    lo: u16,
    hi: u16,
}

/// The pools being built, and scratch space reused across tables.
#[derive(Default)]
struct Builder {
    peers: FxHashMap<u64, Peer>,
    filters: Vec<u64>,
    exact: Vec<Exact>,
    buckets: Vec<Bucket>,
    entries: Vec<Entry>,
    starts: Vec<u16>,
    lists: Vec<List>,
    exact_items: Vec<ExactItem>,
    ranged_items: Vec<RangedItem>,
    /// Sweep state of one bucket: (port, insertion, order, item).
    events: Vec<(u32, bool, u32, u32)>,
    active: BTreeMap<(u32, u32), Entry>,
    list: Vec<Entry>,
}

/// Appends `e` to a rank-ordered list under construction unless it is unreachable: every
/// application it covers is covered by a better-ranked entry (`union`) already. The first entry
/// is always kept (it is what an undecided application sees).
#[inline]
fn keep(list: &mut Vec<Entry>, union: &mut u64, e: Entry) {
    if list.is_empty() || e.apps & !*union != 0 {
        list.push(e);
        *union |= e.apps;
    }
}

/// Pruned rank-ordered list of `items` (already in rank order) into `list`.
fn pruned(list: &mut Vec<Entry>, items: impl Iterator<Item = Entry>) {
    list.clear();
    let mut union = 0;
    for e in items {
        if union == ALL_APPS {
            break;
        }
        keep(list, &mut union, e);
    }
}

impl Builder {
    /// Stores `self.list` as a [`List`].
    fn push_list(&mut self) -> List {
        let Some((&head, tail)) = self.list.split_first() else {
            return List {
                head: Entry::NONE,
                tail: Span::default(),
            };
        };
        let start = self.entries.len();
        self.entries.extend_from_slice(tail);
        List {
            head,
            tail: Span::to_end(start, &self.entries),
        }
    }

    /// Whether `prev` holds what `self.list` does.
    fn same_list(&self, prev: &List) -> bool {
        match self.list.split_first() {
            None => prev.head == Entry::NONE,
            Some((head, tail)) => prev.head == *head && prev.tail.of(&self.entries) == tail,
        }
    }

    /// Builds table `table` from `(peer group, rank)` pairs in rank order.
    fn table(&mut self, table: u32, items: &[(u32, u32)], rules: &[&Rule]) {
        self.exact_items.clear();
        self.ranged_items.clear();
        for &(peer, rank) in items {
            let Some(rule) = rules.get(rank as usize) else {
                continue;
            };
            let entry = Entry::new(rank, rule);
            let ports: &[PortSpec] = if rule.ports.is_empty() {
                &[PortSpec::Any]
            } else {
                &rule.ports
            };
            let ranged = |class, lo, hi| RangedItem {
                peer,
                class,
                entry,
                lo,
                hi,
            };
            for p in ports {
                match *p {
                    PortSpec::Tcp(lo, hi) | PortSpec::Udp(lo, hi) if lo == hi => {
                        let proto = if matches!(p, PortSpec::Tcp(..)) {
                            PROTO_TCP
                        } else {
                            PROTO_UDP
                        };
                        self.exact_items.push(ExactItem {
                            peer,
                            key: exact_key(proto, lo),
                            entry,
                        });
                    }
                    PortSpec::Tcp(lo, hi) => self.ranged_items.push(ranged(CLASS_TCP, lo, hi)),
                    PortSpec::Udp(lo, hi) => self.ranged_items.push(ranged(CLASS_UDP, lo, hi)),
                    PortSpec::Icmp => {
                        self.ranged_items.push(ranged(CLASS_ICMP, 0, u16::MAX));
                    }
                    PortSpec::Any => {
                        for class in [CLASS_TCP, CLASS_UDP, CLASS_ICMP, CLASS_OTHER] {
                            self.ranged_items.push(ranged(class, 0, u16::MAX));
                        }
                    }
                }
            }
        }
        self.exact_items.sort_unstable();
        self.ranged_items.sort_unstable();
        let exact_items = std::mem::take(&mut self.exact_items);
        let ranged_items = std::mem::take(&mut self.ranged_items);

        // Walk both lists peer by peer.
        let mut filter = 0;
        let (mut e, mut r) = (0, 0);
        loop {
            let peer = match (exact_items.get(e), ranged_items.get(r)) {
                (None, None) => break,
                (Some(x), None) => x.peer,
                (None, Some(y)) => y.peer,
                (Some(x), Some(y)) => x.peer.min(y.peer),
            };
            let e_end = e + exact_items[e..].partition_point(|x| x.peer == peer);
            let r_end = r + ranged_items[r..].partition_point(|y| y.peer == peer);

            let exact_start = self.exact.len();
            for run in exact_items[e..e_end].chunk_by(|a, b| a.key == b.key) {
                let Some(first) = run.first() else {
                    continue;
                };
                pruned(&mut self.list, run.iter().map(|x| x.entry));
                let list = self.push_list();
                self.exact.push(Exact {
                    key: first.key,
                    list,
                });
            }

            let buckets_start = self.buckets.len();
            let mut best_ranged = u32::MAX;
            for run in ranged_items[r..r_end].chunk_by(|a, b| a.class == b.class) {
                let Some(first) = run.first() else {
                    continue;
                };
                let (intervals, best) = self.bucket(run);
                best_ranged = best_ranged.min(best);
                self.buckets.push(Bucket {
                    class: first.class,
                    best,
                    intervals,
                });
            }

            filter |= filter_bit(peer);
            self.peers.insert(
                peer_key(table, peer),
                Peer {
                    exact: Span::to_end(exact_start, &self.exact),
                    ranged: Span::to_end(buckets_start, &self.buckets),
                    best_ranged,
                },
            );
            (e, r) = (e_end, r_end);
        }
        self.exact_items = exact_items;
        self.ranged_items = ranged_items;
        if let Some(slot) = self.filters.get_mut(table as usize) {
            *slot = filter;
        }
    }

    /// Cuts 0..=65535 at every range's ends; each interval gets the pruned rank-ordered list of
    /// the ranges covering it (adjacent intervals with equal lists merge). Returns the
    /// intervals and the best rank in them.
    fn bucket(&mut self, run: &[RangedItem]) -> (Span, u32) {
        let first = self.starts.len();
        if run.iter().all(|x| x.lo == 0 && x.hi == u16::MAX) {
            // `any`, `icmp`, full ranges: one interval, `run` already in rank order.
            pruned(&mut self.list, run.iter().map(|x| x.entry));
            let list = self.push_list();
            self.starts.push(0);
            self.lists.push(list);
            return (Span::to_end(first, &self.starts), list.head.order);
        }
        self.events.clear();
        for (i, x) in run.iter().enumerate() {
            let i = u32_of(i);
            self.events.push((u32::from(x.lo), true, x.entry.order, i));
            self.events
                .push((u32::from(x.hi) + 1, false, x.entry.order, i));
        }
        // At one point, removals (false) before insertions.
        self.events.sort_unstable();
        self.active.clear();
        let mut best = u32::MAX;
        let mut ev = 0;
        let mut at = 0u32;
        while at <= u32::from(u16::MAX) {
            while let Some(&(_, insert, order, i)) = self.events.get(ev).filter(|e| e.0 == at) {
                if insert {
                    let entry = run.get(i as usize).map_or(Entry::NONE, |x| x.entry);
                    self.active.insert((order, i), entry);
                } else {
                    self.active.remove(&(order, i));
                }
                ev += 1;
            }
            pruned(&mut self.list, self.active.values().copied());
            if let Some(e) = self.list.first() {
                best = best.min(e.order);
            }
            let same = self
                .lists
                .get(first..)
                .and_then(|l| l.last())
                .is_some_and(|prev| self.same_list(prev));
            if !same {
                let list = self.push_list();
                self.starts.push(u16::try_from(at).unwrap_or(u16::MAX));
                self.lists.push(list);
            }
            at = self.events.get(ev).map_or(u32::MAX, |e| e.0);
        }
        (Span::to_end(first, &self.starts), best)
    }
}

impl Compiled {
    /// Compiles a validated policy plus workloads announced separately (they override policy
    /// workloads with the same id).
    ///
    /// Fails with the [`PolicyError`] [`Policy::validate`] gives, or, for the announced
    /// workloads, with [`PolicyError::DuplicateWorkload`] (one id announced twice) or
    /// [`PolicyError::WorkloadGroup`] (an unknown group).
    pub fn compile(policy: &Policy, extra: &[Workload]) -> Result<Compiled, PolicyError> {
        policy.validate()?;

        let mut names: Vec<Box<str>> = vec![
            special::EXTERNAL.into(),
            special::NODES.into(),
            special::CONTAINERS.into(),
        ];
        names.extend(policy.groups.iter().map(|g| Box::from(g.name.as_str())));
        let gid: FxHashMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (&**n, u32_of(i)))
            .collect();
        let group_of = |name: &str| gid.get(name).copied().unwrap_or(EXTERNAL);

        let merged = merge_workloads(policy, extra, &gid)?;

        // Address maps.
        let (mut cidrs4, mut cidrs6) = (Vec::new(), Vec::new());
        let nets = policy.nodes.iter().map(|n| (n, true, NODES)).chain(
            policy
                .groups
                .iter()
                .zip(FIRST_USER..)
                .flat_map(|(g, id)| g.cidrs.iter().map(move |n| (n, false, id))),
        );
        for (net, node, group) in nets {
            match cidr(net, node, group) {
                (true, c) => cidrs4.push(c),
                (false, c) => cidrs6.push(c),
            }
        }
        let mut sets = SetPool::default();
        let mut classes = ClassPool::default();
        let (starts4, class4) = address_map(cidrs4, u128::from(u32::MAX), &mut sets, &mut classes);
        let (starts6, class6) = address_map(cidrs6, u128::MAX, &mut sets, &mut classes);
        let v4 = AddrMap {
            starts: starts4
                .into_iter()
                .map(|s| u32::try_from(s).unwrap_or(u32::MAX))
                .collect(),
            class: class4.into(),
        };
        let v6 = AddrMap {
            starts: starts6.into(),
            class: class6.into(),
        };

        // Workloads: addresses, memberships, profiles.
        let widx: FxHashMap<&str, usize> = merged
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id.as_str(), i))
            .collect();
        let mut member_of: Vec<Vec<u32>> = vec![Vec::new(); merged.len()];
        for (g, id) in policy.groups.iter().zip(FIRST_USER..) {
            for m in &g.members {
                if let Some(v) = widx.get(m.as_str()).and_then(|&i| member_of.get_mut(i)) {
                    v.push(id);
                }
            }
        }
        let mut by_v4: FxHashMap<u32, Local> = FxHashMap::default();
        let mut by_v6: FxHashMap<u128, Local> = FxHashMap::default();
        let mut profile_ids: FxHashMap<Span, u32> = FxHashMap::default();
        let mut profile_sets: Vec<Span> = Vec::new();
        let mut workloads = Vec::with_capacity(merged.len());
        let mut set = Vec::new();
        for (i, (w, members)) in merged.iter().zip(member_of).enumerate() {
            let own = group_of(&w.group);
            set.clear();
            set.extend([own, CONTAINERS]);
            set.extend(members);
            for ip in &w.ips {
                let class = match *ip {
                    IpAddr::V4(a) => v4.class_of(u32::from(a)),
                    IpAddr::V6(a) => v6.class_of(u128::from(a)),
                };
                if let Some(c) = classes.classes.get(class as usize) {
                    let groups = c.groups.of(&sets.pool);
                    set.extend(groups.iter().filter(|g| **g >= FIRST_USER));
                }
            }
            set.sort_unstable();
            set.dedup();
            let groups = sets.intern(&set);
            let profile = *profile_ids.entry(groups).or_insert_with(|| {
                profile_sets.push(groups);
                u32_of(profile_sets.len() - 1)
            });
            let local = Local {
                workload: u32_of(i),
                profile,
                groups,
                mode: if w.exempt {
                    w.mode.min(Mode::Monitor)
                } else {
                    w.mode
                },
            };
            // A later workload listing the same address replaces an earlier one.
            for ip in &w.ips {
                match *ip {
                    IpAddr::V4(a) => by_v4.insert(u32::from(a), local),
                    IpAddr::V6(a) => by_v6.insert(u128::from(a), local),
                };
            }
            workloads.push(WorkloadInfo {
                id: w.id.as_str().into(),
                group: own,
            });
        }

        // Rules by rank, distributed to the profiles containing their `from` (egress) and
        // `to` (ingress).
        let rules = ranked(policy);
        let mut with_group: Vec<Vec<u32>> = vec![Vec::new(); names.len()];
        for (p, span) in profile_sets.iter().enumerate() {
            for &g in span.of(&sets.pool) {
                if let Some(v) = with_group.get_mut(g as usize) {
                    v.push(u32_of(p));
                }
            }
        }
        let mut egress: Vec<Vec<(u32, u32)>> = vec![Vec::new(); profile_sets.len()];
        let mut ingress: Vec<Vec<(u32, u32)>> = vec![Vec::new(); profile_sets.len()];
        let none: &[u32] = &[];
        for (rank, r) in rules.iter().enumerate() {
            let rank = u32_of(rank);
            let (from, to) = (group_of(&r.from), group_of(&r.to));
            for &p in with_group.get(from as usize).map_or(none, Vec::as_slice) {
                if let Some(v) = egress.get_mut(p as usize) {
                    v.push((to, rank));
                }
            }
            for &p in with_group.get(to as usize).map_or(none, Vec::as_slice) {
                if let Some(v) = ingress.get_mut(p as usize) {
                    v.push((from, rank));
                }
            }
        }
        let mut b = Builder {
            filters: vec![0; 2 * profile_sets.len()],
            ..Builder::default()
        };
        for (p, (e, i)) in egress.iter().zip(&ingress).enumerate() {
            let table = u32_of(p).saturating_mul(2);
            b.table(table, e, &rules);
            b.table(table.saturating_add(1), i, &rules);
        }

        Ok(Compiled {
            generation: policy.generation,
            rules: rules.len(),
            workloads: workloads.into(),
            by_v4,
            by_v6,
            v4,
            v6,
            classes: classes.classes.into(),
            profiles: profile_sets.len(),
            group_sets: sets.pool.into(),
            names: names.into(),
            peers: b.peers,
            filters: b.filters.into(),
            exact: b.exact.into(),
            buckets: b.buckets.into(),
            entries: b.entries.into(),
            starts: b.starts.into(),
            lists: b.lists.into(),
        })
    }

    /// The policy's generation: the rule epoch cached verdicts are checked against.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Enforced (not disabled) rules.
    pub fn rules(&self) -> usize {
        self.rules
    }

    /// Workloads: the policy's and the announced ones, each id once.
    pub fn workloads(&self) -> usize {
        self.workloads.len()
    }

    /// For reports: what an address resolved to: a workload's id and group, else `nodes`,
    /// `external` or the most specific address group containing it (see the module doc).
    pub fn describe(&self, ip: IpAddr) -> (Option<&str>, &str) {
        if let Some(w) = self
            .local(ip)
            .and_then(|l| self.workloads.get(l.workload as usize))
        {
            return (Some(&w.id), self.name(w.group));
        }
        let name = self
            .classes
            .get(self.class_at(ip) as usize)
            .map_or(EXTERNAL, |c| c.name);
        (None, self.name(name))
    }

    /// The compiled shape.
    pub fn stats(&self) -> Stats {
        Stats {
            rules: self.rules,
            workloads: self.workloads.len(),
            profiles: self.profiles,
            peers: self.peers.len(),
            exact_keys: self.exact.len(),
            ranged_buckets: self.buckets.len(),
            intervals: self.starts.len(),
            entries: self.entries.len()
                + self
                    .exact
                    .iter()
                    .map(|x| &x.list)
                    .chain(self.lists.iter())
                    .filter(|l| l.head != Entry::NONE)
                    .count(),
            address_intervals: self.v4.starts.len() + self.v6.starts.len(),
            address_classes: self.classes.len(),
        }
    }

    pub(super) fn name(&self, group: u32) -> &str {
        self.names
            .get(group as usize)
            .map_or(special::EXTERNAL, |n| n)
    }

    #[inline]
    pub(super) fn local(&self, ip: IpAddr) -> Option<&Local> {
        match ip {
            IpAddr::V4(a) => self.by_v4.get(&u32::from(a)),
            IpAddr::V6(a) => self.by_v6.get(&u128::from(a)),
        }
    }

    #[inline]
    pub(super) fn class_at(&self, ip: IpAddr) -> u32 {
        match ip {
            IpAddr::V4(a) => self.v4.class_of(u32::from(a)),
            IpAddr::V6(a) => self.v6.class_of(u128::from(a)),
        }
    }
}
