//! The packet pipeline: frame in, verdict out.
//!
//! Per packet: [`wire::parse`] -> fragments ([`wire::frag`]: a later fragment follows its first
//! fragment's verdict) -> [`conntrack`] (one session for both directions) -> [`dpi`] (the
//! session's application, decided within its first packets, then no more inspection) ->
//! [`policy`](crate::policy) (the session's decision, cached with the policy epoch it was made
//! under) -> [`threat`] checks -> verdict, with connection records, violations and threats
//! pushed into the worker's [`report`] ring. Pure Rust and sans-IO: a DPDK worker drives it with
//! mbufs, `palisade-dp classify` with the records of a capture, tests with byte arrays; the
//! clock and the policy are supplied by the caller.
//!
//! # Enforcement
//!
//! - A session's decision is computed on its first packet and again whenever the policy's
//!   epoch changed or DPI decided an application a pending rule was waiting for: an
//!   established connection the new policy denies is cut (protect) on its next packet.
//! - Protect mode drops (TCP segments are answered with a RST to their sender when
//!   `tcp_reset` is on: [`Verdict::Reject`]); monitor forwards and raises a violation; discover
//!   forwards and reports the connection for learning. A violation is raised once per session
//!   and policy epoch, not per packet.
//! - Packets conntrack would not track (a stray RST, FIN or SYN+ACK) are judged statelessly by
//!   the same policy.
//! - ARP, other ethertypes and IPv6 neighbour discovery and MLD always pass: without them the
//!   network itself stops working.
//! - Threats are reported in every mode and dropped in protect mode (of the session, or of the
//!   packet's stateless decision); overlapping fragments are always dropped (RFC 5722 does so
//!   for IPv6; there is no legitimate use for them in IPv4 either).
//!
//! Malformed frames are dropped and counted by reason; so are later fragments that cannot be
//! held.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::conntrack::{self, Dir, FlowKey, Table, TcpState, Timestamp};
use crate::dpi::{self, App};
use crate::policy::{ActivePolicy, Decision, Enforcement, Mode, Query};
use crate::report::{
    self, ConnectionDelta, Flow, RecordProducer, ThreatKind, ViolationRecord, WorkerRecord,
};
use crate::stats::Counter;
use crate::threat::{self, Detection};
use crate::wire::frag::{FragKey, FragTable, Later, Piece};
use crate::wire::{self, L4, Malformed, Net, Packet, TcpFlags};

/// Why the pipeline drops a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    /// The frame is malformed.
    Malformed(Malformed),
    /// A later fragment whose first fragment never came and that could not be held.
    Fragment,
    /// The policy denies it (protect mode).
    Policy,
    /// A threat check flagged it (protect mode, or overlapping fragments).
    Threat(ThreatKind),
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Send it on.
    Forward,
    /// Free it.
    Drop(Drop),
    /// Free it and answer its sender with a TCP RST ([`wire::rst::build_rst`]).
    Reject(Drop),
}

impl Verdict {
    /// Whether the packet goes on.
    pub fn forwards(self) -> bool {
        self == Verdict::Forward
    }
}

/// A session is reported at the latest this long after its first packet.
const REPORT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Bits of [`FlowState::flags`].
mod flag {
    /// The session's first connection record was pushed.
    pub const REPORTED: u8 = 1;
    /// A record saying the server answered was pushed.
    pub const ANSWER_REPORTED: u8 = 2;
}

/// What the pipeline keeps per session (the conntrack table's extension).
#[derive(Debug, Clone, Default)]
pub struct FlowState {
    /// Application identification state; `dpi.app()` is the session's application.
    pub dpi: dpi::State,
    /// The policy decision and the epoch it was made under.
    pub decision: Option<(u64, Decision)>,
    /// Epoch of the last violation raised for the session (0: none).
    violation_epoch: u64,
    /// Packets and bytes already covered by connection records.
    reported_packets: u64,
    reported_bytes: u64,
    flags: u8,
}

/// A frame [`Pipeline::prepare`] parsed, with its flow key's hash (its connection-table
/// bucket already on its way into the cache).
#[derive(Debug, Clone, Copy)]
pub struct Prepared<'a> {
    parsed: Result<Packet<'a>, Malformed>,
    hash: Option<u64>,
}

/// The outcome of [`Pipeline::process`] for the packet passed in.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<H> {
    /// Apply this verdict to the packet (its handle comes back).
    Done(Verdict, H),
    /// A later fragment held until its first fragment arrives: the handle comes back later
    /// through the `release` callback (with the verdict) or the `drop` callback.
    Held,
}

/// Pipeline counters (single writer: the owning worker).
#[derive(Debug)]
#[repr(align(64))]
pub struct PipelineCounters {
    /// Frames processed.
    pub frames: Counter,
    /// Malformed frames, by [`Malformed::index`].
    pub malformed: [Counter; Malformed::COUNT],
    /// ARP frames.
    pub arp: Counter,
    /// Frames of other ethertypes.
    pub other_ethertype: Counter,
    /// IP packets of a protocol other than TCP, UDP, ICMP (tracked with ports 0).
    pub other_ip_proto: Counter,
    /// Packets conntrack would not track (stray TCP, table full): judged statelessly.
    pub untracked: Counter,
    /// Packets handed to DPI.
    pub inspected: Counter,
    /// Policy evaluations (new sessions, epoch changes, decided applications).
    pub evaluations: Counter,
    /// Packets dropped by policy.
    pub policy_drops: Counter,
    /// Packets dropped for a threat.
    pub threat_drops: Counter,
    /// Violations raised.
    pub violations: Counter,
    /// Threats detected.
    pub threats: Counter,
    /// RSTs asked for.
    pub resets: Counter,
}

impl Default for PipelineCounters {
    fn default() -> Self {
        Self {
            frames: Counter::default(),
            malformed: std::array::from_fn(|_| Counter::default()),
            arp: Counter::default(),
            other_ethertype: Counter::default(),
            other_ip_proto: Counter::default(),
            untracked: Counter::default(),
            inspected: Counter::default(),
            evaluations: Counter::default(),
            policy_drops: Counter::default(),
            threat_drops: Counter::default(),
            violations: Counter::default(),
            threats: Counter::default(),
            resets: Counter::default(),
        }
    }
}

/// A copy of [`PipelineCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineSnapshot {
    /// Frames processed.
    pub frames: u64,
    /// Malformed frames, by [`Malformed::index`].
    pub malformed: [u64; Malformed::COUNT],
    /// ARP frames.
    pub arp: u64,
    /// Frames of other ethertypes.
    pub other_ethertype: u64,
    /// IP packets of other protocols.
    pub other_ip_proto: u64,
    /// Packets conntrack would not track.
    pub untracked: u64,
    /// Packets handed to DPI.
    pub inspected: u64,
    /// Policy evaluations.
    pub evaluations: u64,
    /// Packets dropped by policy.
    pub policy_drops: u64,
    /// Packets dropped for a threat.
    pub threat_drops: u64,
    /// Violations raised.
    pub violations: u64,
    /// Threats detected.
    pub threats: u64,
    /// RSTs asked for.
    pub resets: u64,
}

impl Default for PipelineSnapshot {
    fn default() -> Self {
        PipelineCounters::default().snapshot()
    }
}

impl PipelineSnapshot {
    /// Malformed frames of every reason together.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
}

impl PipelineCounters {
    /// A plain copy of the counters.
    pub fn snapshot(&self) -> PipelineSnapshot {
        PipelineSnapshot {
            frames: self.frames.get(),
            malformed: std::array::from_fn(|i| self.malformed[i].get()),
            arp: self.arp.get(),
            other_ethertype: self.other_ethertype.get(),
            other_ip_proto: self.other_ip_proto.get(),
            untracked: self.untracked.get(),
            inspected: self.inspected.get(),
            evaluations: self.evaluations.get(),
            policy_drops: self.policy_drops.get(),
            threat_drops: self.threat_drops.get(),
            violations: self.violations.get(),
            threats: self.threats.get(),
            resets: self.resets.get(),
        }
    }
}

/// Pipeline configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Connection table.
    pub conntrack: conntrack::Config,
    /// Datagrams tracked by the fragment table.
    pub frag_capacity: usize,
    /// How long a datagram's fragments are remembered, nanoseconds.
    pub frag_timeout_ns: u64,
    /// Answer TCP segments dropped by policy with a RST.
    pub tcp_reset: bool,
    /// Threat thresholds.
    pub threats: threat::Config,
}

impl Config {
    /// A pipeline for up to `sessions` sessions, with default timeouts and thresholds.
    pub fn with_capacity(sessions: usize) -> Self {
        Self {
            conntrack: conntrack::Config::with_capacity(sessions),
            frag_capacity: 4096,
            frag_timeout_ns: 30_000_000_000,
            tcp_reset: true,
            threats: threat::Config::default(),
        }
    }
}

/// One worker's pipeline. `H` is the caller's packet handle (an mbuf, a record index).
#[derive(Debug)]
pub struct Pipeline<H> {
    ct: Table<FlowState>,
    frags: FragTable<Verdict, H>,
    rates: threat::RateTable,
    threats: threat::Config,
    tcp_reset: bool,
    reports: Option<RecordProducer>,
    /// Counters (shared so that a stats reader can see them; written only by the owner).
    pub counters: Arc<PipelineCounters>,
}

#[inline]
fn flow_key(ip: &wire::Ip<'_>) -> (FlowKey, conntrack::Side) {
    let (sp, dp) = ip.l4.ports();
    match (ip.src, ip.dst) {
        (wire::Addr::V4(s), wire::Addr::V4(d)) => FlowKey::from_v4(ip.proto, *s, sp, *d, dp),
        (wire::Addr::V6(s), wire::Addr::V6(d)) => FlowKey::from_v6(ip.proto, *s, sp, *d, dp),
        (s, d) => FlowKey::new(ip.proto, s.ip(), sp, d.ip(), dp),
    }
}

fn report_verdict(e: Enforcement) -> report::Verdict {
    match e {
        Enforcement::Forward | Enforcement::Learn => report::Verdict::Allowed,
        Enforcement::Alert => report::Verdict::Alerted,
        Enforcement::Drop => report::Verdict::Denied,
    }
}

/// The source and destination of a frame whose IPv4 or IPv6 header is readable even though
/// the frame as a whole is malformed (to name the endpoints of a ping of death).
fn peek_addrs(frame: &[u8]) -> Option<(IpAddr, IpAddr, u8)> {
    let mut at = 12;
    let mut ty = crate::bytes::be16(frame, at)?;
    while matches!(
        ty,
        wire::ethertype::VLAN | wire::ethertype::QINQ | wire::ethertype::QINQ_OLD
    ) {
        at += 4;
        ty = crate::bytes::be16(frame, at)?;
    }
    let ip = frame.get(at + 2..)?;
    match ty {
        wire::ethertype::IPV4 => {
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            Some((s.into(), d.into(), *ip.get(9)?))
        }
        wire::ethertype::IPV6 => {
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            Some((s.into(), d.into(), *ip.get(6)?))
        }
        _ => None,
    }
}

/// Whether `ip` is a workload of the policy (for the per-workload rate checks).
fn workload(policy: &ActivePolicy, ip: IpAddr) -> Option<IpAddr> {
    policy.compiled.describe(ip).0.map(|_| ip)
}

impl<H> Pipeline<H> {
    /// A pipeline with the given limits; `reports` receives its records (none for `classify`).
    pub fn new(
        cfg: Config,
        reports: Option<RecordProducer>,
    ) -> Result<Self, conntrack::ConfigError> {
        Ok(Self {
            ct: Table::with_capacity(cfg.conntrack)?,
            frags: FragTable::new(cfg.frag_capacity, cfg.frag_timeout_ns),
            rates: threat::RateTable::new(&cfg.threats),
            threats: cfg.threats,
            tcp_reset: cfg.tcp_reset,
            reports,
            counters: Arc::default(),
        })
    }

    /// The connection table (reports, tests).
    pub fn sessions(&self) -> &Table<FlowState> {
        &self.ct
    }

    /// The fragment table's counters.
    pub fn frag_counters(&self) -> &Arc<wire::frag::FragCounters> {
        &self.frags.counters
    }

    /// The report ring's counters, when there is a ring.
    pub fn ring_counters(&self) -> Option<&Arc<report::RingCounters>> {
        self.reports.as_ref().map(RecordProducer::counters)
    }

    fn push(&mut self, rec: WorkerRecord) {
        if let Some(r) = self.reports.as_mut() {
            r.push(rec);
        }
    }

    /// Expires sessions and fragments whose time passed; call about once a millisecond. Held
    /// fragments of expired datagrams go to `drop`; sessions leave a last connection record
    /// with the traffic not reported yet.
    pub fn expire(&mut self, now: Timestamp, drop: impl FnMut(H)) -> usize {
        self.frags.expire(now.as_nanos(), 64, drop);
        let reports = &mut self.reports;
        self.ct.expire_with(now, |s| {
            if let Some(r) = reports.as_mut()
                && let Some(rec) = final_record(s)
            {
                r.push(rec);
            }
        })
    }

    /// Processes one frame under `policy`. `handle` identifies it to the caller; fragments
    /// that were waiting for this packet (when it is a late first fragment) come back through
    /// `release` with their verdict, and fragments the table gives up on come back through
    /// `drop`.
    pub fn process(
        &mut self,
        frame: &[u8],
        now: Timestamp,
        policy: &ActivePolicy,
        handle: H,
        release: impl FnMut(H, Verdict),
        drop: impl FnMut(H),
    ) -> Step<H> {
        let prepared = Prepared {
            parsed: wire::parse(frame),
            hash: None,
        };
        self.process_prepared(frame, &prepared, now, policy, handle, release, drop)
    }

    /// First step of the software pipeline over a burst (what DPDK's `rte_hash_lookup_bulk`
    /// does): parses `frame` and prefetches the connection-table bucket its session is filed
    /// under. Run it over the whole burst, then [`Pipeline::prefetch_session`] over it, then
    /// [`Pipeline::process_prepared`]: the burst's cache misses overlap instead of following
    /// each other, and each frame is parsed and its key hashed once. Same verdicts as
    /// [`Pipeline::process`].
    #[inline]
    pub fn prepare<'a>(&self, frame: &'a [u8]) -> Prepared<'a> {
        let parsed = wire::parse(frame);
        let hash = match &parsed {
            Ok(Packet {
                net: Net::Ip(ip), ..
            }) if !matches!(ip.l4, L4::Fragment(_)) => {
                Some(self.ct.prefetch_bucket(&flow_key(ip).0))
            }
            _ => None,
        };
        Prepared { parsed, hash }
    }

    /// Second step: prefetches the session the bucket of a prepared frame points at.
    #[inline]
    pub fn prefetch_session(&self, prepared: &Prepared<'_>) {
        if let Some(h) = prepared.hash {
            self.ct.prefetch_session(h);
        }
    }

    /// [`Pipeline::process`] for a frame [`Pipeline::prepare`] parsed.
    #[allow(clippy::too_many_arguments)]
    pub fn process_prepared(
        &mut self,
        frame: &[u8],
        prepared: &Prepared<'_>,
        now: Timestamp,
        policy: &ActivePolicy,
        handle: H,
        release: impl FnMut(H, Verdict),
        drop: impl FnMut(H),
    ) -> Step<H> {
        self.counters.frames.add(1);
        match prepared.parsed {
            Ok(p) => self.packet_hashed(&p, prepared.hash, now, policy, handle, release, drop),
            Err(m) => {
                self.counters.malformed[m.index()].add(1);
                if let (Some(d), Some((src, dst, proto))) =
                    (threat::malformed(m), peek_addrs(frame))
                {
                    self.threat(
                        d,
                        Flow::new(
                            SocketAddr::new(src, 0),
                            SocketAddr::new(dst, 0),
                            proto,
                            App::Unknown,
                        ),
                        now,
                        report::Verdict::Denied,
                    );
                }
                Step::Done(Verdict::Drop(Drop::Malformed(m)), handle)
            }
        }
    }

    /// Processes an already parsed packet (captures with other link layers come this way).
    pub fn packet(
        &mut self,
        p: &Packet<'_>,
        now: Timestamp,
        policy: &ActivePolicy,
        handle: H,
        release: impl FnMut(H, Verdict),
        drop: impl FnMut(H),
    ) -> Step<H> {
        self.packet_hashed(p, None, now, policy, handle, release, drop)
    }

    /// [`Pipeline::packet`] with its flow key's hash when [`Pipeline::prepare`] computed it.
    #[allow(clippy::too_many_arguments)]
    fn packet_hashed(
        &mut self,
        p: &Packet<'_>,
        hash: Option<u64>,
        now: Timestamp,
        policy: &ActivePolicy,
        handle: H,
        release: impl FnMut(H, Verdict),
        drop: impl FnMut(H),
    ) -> Step<H> {
        let ip = match p.net {
            Net::Ip(ip) => ip,
            Net::Arp { .. } => {
                self.counters.arp.add(1);
                return Step::Done(Verdict::Forward, handle);
            }
            Net::Other(_) => {
                self.counters.other_ethertype.add(1);
                return Step::Done(Verdict::Forward, handle);
            }
        };
        if let L4::Icmp { v6: true, ty, .. } = ip.l4 {
            // Neighbour discovery (133-137) and multicast listener messages (130-132, 143).
            if wire::is_neighbour_discovery(ty) || matches!(ty, 130..=132 | 143) {
                return Step::Done(Verdict::Forward, handle);
            }
        }
        if let (Some(f), L4::Fragment(data)) = (ip.frag, ip.l4) {
            let key = FragKey {
                src: ip.src.ip(),
                dst: ip.dst.ip(),
                proto: ip.proto,
                id: f.id,
            };
            let piece = Piece {
                offset: f.offset,
                len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                last: !f.more,
            };
            let (later, overlap) = self.frags.later(key, now.as_nanos(), piece, handle, drop);
            if let Some(d) = threat::fragment_overlap(overlap) {
                let flow = Flow::new(
                    SocketAddr::new(key.src, 0),
                    SocketAddr::new(key.dst, 0),
                    ip.proto,
                    App::Unknown,
                );
                self.threat(d, flow, now, report::Verdict::Denied);
                self.counters.threat_drops.add(1);
                let verdict = Verdict::Drop(Drop::Threat(ThreatKind::Teardrop));
                return match later {
                    Later::Verdict(_, h) | Later::Unheld(h) => Step::Done(verdict, h),
                    Later::Held => Step::Held,
                };
            }
            return match later {
                Later::Verdict(v, h) => Step::Done(v, h),
                Later::Held => Step::Held,
                Later::Unheld(h) => Step::Done(Verdict::Drop(Drop::Fragment), h),
            };
        }
        let verdict = self.session(p, &ip, hash, now, policy);
        if let Some(f) = ip.frag {
            // The first fragment: later ones follow its verdict.
            let key = FragKey {
                src: ip.src.ip(),
                dst: ip.dst.ip(),
                proto: ip.proto,
                id: f.id,
            };
            let len = u32::try_from(ip.l4.payload().len()).unwrap_or(u32::MAX);
            let later_verdict = match verdict {
                Verdict::Reject(d) => Verdict::Drop(d),
                v => v,
            };
            if self
                .frags
                .first(key, now.as_nanos(), len, later_verdict, release, drop)
            {
                let flow = Flow::new(
                    SocketAddr::new(key.src, 0),
                    SocketAddr::new(key.dst, 0),
                    ip.proto,
                    App::Unknown,
                );
                if let Some(d) = threat::fragment_overlap(true) {
                    self.threat(d, flow, now, report::Verdict::Denied);
                }
                self.counters.threat_drops.add(1);
                return Step::Done(Verdict::Drop(Drop::Threat(ThreatKind::Teardrop)), handle);
            }
        }
        Step::Done(verdict, handle)
    }

    fn threat(&mut self, d: Detection, flow: Flow, now: Timestamp, verdict: report::Verdict) {
        self.counters.threats.add(1);
        self.push(d.record(flow, now, verdict));
    }

    /// The verdict for a packet the policy denies.
    fn deny(&self, p: &Packet<'_>, ip: &wire::Ip<'_>, why: Drop) -> Verdict {
        match ip.l4 {
            L4::Tcp(t)
                if self.tcp_reset && !t.flags.contains(TcpFlags::RST) && p.vlan_count <= 2 =>
            {
                self.counters.resets.add(1);
                Verdict::Reject(why)
            }
            _ => Verdict::Drop(why),
        }
    }

    /// Tracks the packet's session, feeds DPI while it is undecided, applies the policy and
    /// the threat checks, and returns the verdict.
    fn session(
        &mut self,
        p: &Packet<'_>,
        ip: &wire::Ip<'_>,
        hash: Option<u64>,
        now: Timestamp,
        policy: &ActivePolicy,
    ) -> Verdict {
        let (key, from) = flow_key(ip);
        let (flags, transport) = match ip.l4 {
            L4::Tcp(t) => (t.flags, Some(dpi::Transport::Tcp)),
            L4::Udp { .. } => (TcpFlags::default(), Some(dpi::Transport::Udp)),
            L4::Icmp { .. } => (TcpFlags::default(), None),
            L4::Fragment(_) | L4::Other(_) => {
                self.counters.other_ip_proto.add(1);
                (TcpFlags::default(), None)
            }
        };
        let payload = ip.l4.payload();
        let flag_threat = if matches!(ip.l4, L4::Tcp(_)) {
            threat::tcp_flags(flags)
        } else {
            None
        };
        let meta = conntrack::PacketMeta {
            key,
            from,
            tcp_flags: flags,
            len: u32::from(ip.len),
        };
        let tracked = match hash {
            Some(h) => self.ct.track_hashed(&meta, h, now),
            None => self.ct.track(&meta, now),
        };
        let Ok(tracked) = tracked else {
            // Not tracked (a stray RST/FIN/SYN+ACK, bad flags, or a full table): judge the
            // packet on its own, its source as the client.
            self.counters.untracked.add(1);
            let (sp, dp) = ip.l4.ports();
            let q = Query {
                proto: ip.proto,
                client: ip.src.ip(),
                server: ip.dst.ip(),
                server_port: dp,
                app: Some(App::Unknown),
            };
            self.counters.evaluations.add(1);
            let d = policy.compiled.evaluate(&q);
            let mode = d.mode;
            let flow = Flow::new(
                SocketAddr::new(q.client, sp),
                SocketAddr::new(q.server, dp),
                ip.proto,
                App::Unknown,
            );
            if let Some(t) = flag_threat {
                let m = mode.unwrap_or(Mode::Monitor);
                self.threat(t, flow, now, t.verdict(m));
                if m == Mode::Protect {
                    self.counters.threat_drops.add(1);
                    return Verdict::Drop(Drop::Threat(t.kind));
                }
            }
            return match (d.enforcement, mode) {
                (Enforcement::Drop, Some(m)) => {
                    self.counters.policy_drops.add(1);
                    self.counters.violations.add(1);
                    self.push(WorkerRecord::Violation(ViolationRecord {
                        flow,
                        at: now,
                        rule: d.rule,
                        mode: m,
                        verdict: report::Verdict::Denied,
                    }));
                    self.deny(p, ip, Drop::Policy)
                }
                _ => Verdict::Forward,
            };
        };
        let dir = tracked.dir;
        let is_new = tracked.is_new;
        let prev_tcp = tracked.prev_tcp;
        let s = tracked.session;
        let (client, server) = (s.client(), s.server());
        let mut threats: [Option<Detection>; 4] = [flag_threat, None, None, None];

        // Threats on the TCP state transition and on new sessions.
        if let (Some(prev), L4::Tcp(_)) = (prev_tcp, ip.l4) {
            threats[1] = threat::split_handshake(prev, flags, dir, payload.len());
        }
        if is_new {
            let syn = flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK);
            threats[2] = self.rates.new_session(
                workload(policy, client.ip()),
                workload(policy, server.ip()),
                syn,
                now,
            );
        } else if prev_tcp == Some(TcpState::SynReceived)
            && s.tcp_state() == Some(TcpState::Established)
        {
            self.rates
                .handshake_completed(server.ip(), s.first_seen(), now);
        }

        // Application identification, and the checks that look at the first payloads.
        if let Some(transport) = transport
            && !s.ext.dpi.done()
            && !payload.is_empty()
        {
            self.counters.inspected.add(1);
            let flow = dpi::Flow {
                transport,
                client_port: client.port(),
                server_port: server.port(),
            };
            let ddir = match dir {
                Dir::ClientToServer => dpi::Dir::ClientToServer,
                Dir::ServerToClient => dpi::Dir::ServerToClient,
            };
            s.ext.dpi.inspect(&flow, ddir, payload);
            let app = s.ext.dpi.app();
            if dir == Dir::ClientToServer {
                if server.port() == 53 || app == App::Dns {
                    threats[3] = threat::dns_tunnel(payload, transport, &self.threats);
                } else if matches!(app, App::Unknown | App::Tls) && transport == dpi::Transport::Tcp
                {
                    threats[3] = threat::weak_tls(payload, self.threats.tls_min_version);
                }
            }
        }

        // The policy decision, cached per epoch.
        let app_known = s.ext.dpi.done();
        let app = s.ext.dpi.app();
        let decision = match s.ext.decision {
            Some((epoch, d)) if epoch == policy.epoch && !(d.pending_app && app_known) => d,
            _ => {
                self.counters.evaluations.add(1);
                let q = Query {
                    proto: ip.proto,
                    client: client.ip(),
                    server: server.ip(),
                    server_port: server.port(),
                    app: app_known.then_some(app),
                };
                let d = policy.compiled.evaluate(&q);
                s.ext.decision = Some((policy.epoch, d));
                d
            }
        };
        let flow = Flow::new(client, server, key.proto(), app);

        // Records: the first when the application is known (or at expiry), violations once
        // per session and epoch.
        let mut out: [Option<WorkerRecord>; 6] = [None; 6];
        let mut n = 0;
        if let Some(mode) = decision.mode {
            // Report once the application is known, the connection is closing, or it has
            // lived a second: learning should not wait for a long connection to end.
            let closing = matches!(
                s.tcp_state(),
                Some(TcpState::FinWait | TcpState::TimeWait | TcpState::Closed)
            );
            let aged = now.saturating_duration_since(s.first_seen()) >= REPORT_AFTER;
            let answered = s.counters(Dir::ServerToClient).packets > 0;
            if (app_known || closing || aged)
                && !decision.pending_app
                && s.ext.flags & flag::REPORTED == 0
            {
                s.ext.flags |= flag::REPORTED;
                if answered {
                    s.ext.flags |= flag::ANSWER_REPORTED;
                }
                out[n] = Some(delta_record(s, flow, decision, mode, true));
                n += 1;
            } else if answered
                && s.ext.flags & (flag::REPORTED | flag::ANSWER_REPORTED) == flag::REPORTED
            {
                // Reported while unanswered (a retransmitted SYN): say so once it is
                // answered, or learning would wait for the session to expire.
                s.ext.flags |= flag::ANSWER_REPORTED;
                out[n] = Some(delta_record(s, flow, decision, mode, false));
                n += 1;
            }
            if matches!(decision.enforcement, Enforcement::Alert | Enforcement::Drop)
                && s.ext.violation_epoch != policy.epoch
            {
                s.ext.violation_epoch = policy.epoch;
                out[n] = Some(WorkerRecord::Violation(ViolationRecord {
                    flow,
                    at: now,
                    rule: decision.rule,
                    mode,
                    verdict: report_verdict(decision.enforcement),
                }));
                n += 1;
                self.counters.violations.add(1);
            }
        }
        let mode = decision.mode.unwrap_or(Mode::Monitor);
        let mut threat_drop = None;
        for t in threats.into_iter().flatten() {
            let v = t.verdict(mode);
            if v == report::Verdict::Denied && threat_drop.is_none() {
                threat_drop = Some(t.kind);
            }
            // Every session over a rate limit is dropped (in protect), but a window is
            // reported once.
            if t.first_excess() {
                self.counters.threats.add(1);
                out[n] = Some(t.record(flow, now, v));
                n += 1;
            }
        }
        for rec in out.into_iter().flatten() {
            self.push(rec);
        }
        if let Some(kind) = threat_drop {
            self.counters.threat_drops.add(1);
            return Verdict::Drop(Drop::Threat(kind));
        }
        if decision.enforcement == Enforcement::Drop {
            self.counters.policy_drops.add(1);
            return self.deny(p, ip, Drop::Policy);
        }
        Verdict::Forward
    }
}

/// A connection record of a session's traffic not reported yet.
fn delta_record(
    s: &mut conntrack::Session<FlowState>,
    flow: Flow,
    d: Decision,
    mode: Mode,
    new_session: bool,
) -> WorkerRecord {
    let c2s = s.counters(Dir::ClientToServer);
    let s2c = s.counters(Dir::ServerToClient);
    let (packets, bytes) = (c2s.packets + s2c.packets, c2s.bytes + s2c.bytes);
    let rec = WorkerRecord::Connection(ConnectionDelta {
        flow,
        new_session,
        packets: packets.saturating_sub(s.ext.reported_packets),
        bytes: bytes.saturating_sub(s.ext.reported_bytes),
        first: s.first_seen(),
        last: s.last_seen(),
        verdict: report_verdict(d.enforcement),
        rule: d.rule,
        mode,
        answered: s2c.packets > 0,
    });
    s.ext.reported_packets = packets;
    s.ext.reported_bytes = bytes;
    rec
}

/// The last record of an expiring session: what was not reported yet (and the session itself
/// when it never was).
fn final_record(s: &conntrack::Session<FlowState>) -> Option<WorkerRecord> {
    let (_, d) = s.ext.decision?;
    let mode = d.mode?;
    let c2s = s.counters(Dir::ClientToServer);
    let s2c = s.counters(Dir::ServerToClient);
    let (packets, bytes) = (c2s.packets + s2c.packets, c2s.bytes + s2c.bytes);
    let new_session = s.ext.flags & flag::REPORTED == 0;
    if !new_session && packets <= s.ext.reported_packets {
        return None;
    }
    Some(WorkerRecord::Connection(ConnectionDelta {
        flow: Flow::new(s.client(), s.server(), s.proto(), s.ext.dpi.app()),
        new_session,
        packets: packets.saturating_sub(s.ext.reported_packets),
        bytes: bytes.saturating_sub(s.ext.reported_bytes),
        first: s.first_seen(),
        last: s.last_seen(),
        verdict: report_verdict(d.enforcement),
        rule: d.rule,
        mode,
        answered: s2c.packets > 0,
    }))
}
