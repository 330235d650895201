//! Network policy: the model shared with `palisade` ([`model`]), compiled ([`Compiled`]) into
//! immutable per-workload lookup tables the workers read without locks or allocation.
//!
//! A non-worker thread calls [`Compiled::compile`] on each whole snapshot and publishes the
//! result (an `ArcSwap` in the DPDK runtime); workers call [`Compiled::evaluate`] once per new
//! connection and again when DPI decides the application ([`Decision::pending_app`]).
//! [`Compiled::generation`] is the rule epoch: a verdict cached in a session is stale once the
//! published generation differs from the one it was computed under.
//!
//! # Semantics
//!
//! **Endpoints.** An address is a *workload* when one of the snapshot's workloads (those of
//! [`Policy::workloads`], overridden or extended by the ones passed separately to
//! [`Compiled::compile`]) lists it; if two list the same address, the later one in that merged
//! order wins (announced workloads come last and are newer). Otherwise it is a *node* when a
//! [`Policy::nodes`] network contains it, else *external*. IPv4 and IPv6 are alike and never
//! equal: `::ffff:a.b.c.d` is an IPv6 address like any other.
//!
//! **Membership.** A workload belongs to its `group`, to every group listing its id in
//! `members`, to every group with a `cidrs` network containing *any* of its addresses, and to
//! `containers`. A node belongs to `nodes`, an external address to `external`, and both to
//! every group with a `cidrs` network containing the address.
//!
//! **Rules.** A rule `from A to B` covers a connection whose client (the side that opened it)
//! is in `A` and server in `B`, whose IP protocol and server port match one of `ports` (empty
//! means `any`; `icmp` is ICMP or ICMPv6 whatever the port; `any` is every protocol, including
//! those with no ports), and whose application is in `apps` (empty means any application).
//! Disabled rules are ignored. Rules are ranked by `priority`, higher first, then by list
//! order; the first rule by rank that covers the connection decides: [`Verdict::Allow`] or
//! [`Verdict::Deny`]; when none does, [`Verdict::NoMatch`]. Which end is local does not
//! matter: a rule covers a connection whether its client, its server or both are workloads.
//!
//! **Applications.** [`Query::app`] is the session's application, or `None` while DPI has not
//! decided. With `Some(app)` (including [`App::Unknown`](crate::dpi::App::Unknown) when DPI gave
//! up) a rule naming applications covers only if `app` is one of them. With `None`, the first
//! rule by rank that covers the connection when applications are disregarded decides: if it
//! names no application its verdict is final; if it names some, the decision is *pending*
//! ([`Decision::pending_app`]): verdict [`Verdict::NoMatch`], no rule, [`Enforcement::Forward`]
//! (no alert, no drop, so the handshake DPI needs can pass), to be evaluated again with the
//! application.
//!
//! **Modes.** The effective mode of a connection is the strictest (`protect` > `monitor` >
//! `discover`) of the `mode`s of its ends that are workloads; an exempt workload counts at most
//! as `monitor`, so it never causes a drop (its peer's own `protect` still may). When neither
//! end is a workload, the connection is not the firewall's business: [`Decision::mode`] is
//! `None`, the verdict [`Verdict::NoMatch`] and the enforcement [`Enforcement::Forward`], with
//! no report. Otherwise ([`Enforcement::of`]):
//!
//! | mode | `Allow` | `Deny` | `NoMatch` |
//! |---|---|---|---|
//! | discover | [`Enforcement::Learn`] | [`Enforcement::Alert`] | [`Enforcement::Learn`] |
//! | monitor | [`Enforcement::Forward`] | [`Enforcement::Alert`] | [`Enforcement::Alert`] |
//! | protect | [`Enforcement::Forward`] | [`Enforcement::Drop`] | [`Enforcement::Drop`] |
//!
//! (Deny rules drop in protect and alert otherwise, discover included.)
//!
//! A protected workload that no rule mentions is therefore closed from its first packet: there
//! is no window in which it is open until rules arrive.
//!
//! **Descriptions.** [`Compiled::describe`] names an address for reports: a workload's id and
//! group; otherwise the most specific (longest-prefix) of the `nodes` networks and the address
//! groups' networks containing it (`nodes` wins a tie, then the group defined first), else
//! `external`.
//!
//! # Compiled structure
//!
//! See [`compile`] for the tables and why they look the way they do, and [`lookup`] for the
//! walk `evaluate` does.

pub mod compile;
pub mod lookup;
pub mod model;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

pub use compile::{Compiled, Stats};
pub use lookup::{Decision, Enforcement, Query, Verdict};
pub use model::{Action, Group, Mac, Mode, Policy, PolicyError, PortSpec, Rule, Workload};

/// The policy workers enforce: a compiled snapshot and the dataplane's epoch for it (every
/// publication — a new snapshot or a workload change — gets a new epoch, which is what cached
/// session decisions are checked against).
#[derive(Debug)]
pub struct ActivePolicy {
    /// Increases with every publication.
    pub epoch: u64,
    /// The compiled tables.
    pub compiled: Compiled,
}

impl ActivePolicy {
    /// Before any policy arrived: no workloads, nothing enforced.
    pub fn empty() -> Result<ActivePolicy, PolicyError> {
        Ok(ActivePolicy {
            epoch: 1,
            compiled: Compiled::compile(&Policy::default(), &[])?,
        })
    }
}
