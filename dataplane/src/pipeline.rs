//! The packet pipeline: frame in, verdict out.
//!
//! Per packet: [`wire::parse`] -> fragments ([`wire::frag`]: a later fragment follows its first
//! fragment's verdict) -> [`conntrack`] (one session for both directions) -> [`dpi`] (the
//! session's application, decided within its first packets, then no more inspection) ->
//! verdict. Pure Rust and sans-IO: a DPDK worker drives it with mbufs, `palisade-dp classify`
//! with the records of a capture, tests with byte arrays; the clock is supplied by the caller.
//!
//! Policy is not here yet: every well-formed packet is forwarded. Malformed frames are dropped
//! and counted by reason; so are later fragments that cannot be held.

use std::sync::Arc;

use crate::conntrack::{self, FlowKey, Table, Timestamp, Untracked};
use crate::dpi;
use crate::stats::Counter;
use crate::wire::frag::{FragKey, FragTable, Later, Piece};
use crate::wire::{self, L4, Malformed, Net, Packet};

/// Why the pipeline drops a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    /// The frame is malformed.
    Malformed(Malformed),
    /// A later fragment whose first fragment never came and that could not be held.
    Fragment,
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Send it on.
    Forward,
    /// Free it.
    Drop(Drop),
}

/// What the pipeline keeps per session (the conntrack table's extension).
#[derive(Debug, Clone, Default)]
pub struct FlowState {
    /// Application identification state; `dpi.app()` is the session's application.
    pub dpi: dpi::State,
    /// The verdict computed for the session, with the policy epoch it was computed under.
    pub verdict: Option<(u64, Verdict)>,
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
    /// Packets conntrack would not track (stray TCP, table full), by [`Untracked`].
    pub untracked: Counter,
    /// Packets handed to DPI.
    pub inspected: Counter,
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
}

impl Default for PipelineSnapshot {
    fn default() -> Self {
        Self {
            frames: 0,
            malformed: [0; Malformed::COUNT],
            arp: 0,
            other_ethertype: 0,
            other_ip_proto: 0,
            untracked: 0,
            inspected: 0,
        }
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
        }
    }
}

/// Pipeline configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Connection table.
    pub conntrack: conntrack::Config,
    /// Datagrams tracked by the fragment table.
    pub frag_capacity: usize,
    /// How long a datagram's fragments are remembered, nanoseconds.
    pub frag_timeout_ns: u64,
}

impl Config {
    /// A pipeline for up to `sessions` sessions, with default timeouts.
    pub fn with_capacity(sessions: usize) -> Self {
        Self {
            conntrack: conntrack::Config::with_capacity(sessions),
            frag_capacity: 4096,
            frag_timeout_ns: 30_000_000_000,
        }
    }
}

/// One worker's pipeline. `H` is the caller's packet handle (an mbuf, a record index).
#[derive(Debug)]
pub struct Pipeline<H> {
    ct: Table<FlowState>,
    frags: FragTable<Verdict, H>,
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

impl<H> Pipeline<H> {
    /// A pipeline with the given limits.
    pub fn new(cfg: Config) -> Result<Self, conntrack::ConfigError> {
        Ok(Self {
            ct: Table::with_capacity(cfg.conntrack)?,
            frags: FragTable::new(cfg.frag_capacity, cfg.frag_timeout_ns),
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

    /// Expires sessions and fragments whose time passed; call once per burst. Held fragments
    /// of expired datagrams go to `drop`.
    pub fn expire(&mut self, now: Timestamp, drop: impl FnMut(H)) -> usize {
        self.frags.expire(now.as_nanos(), 64, drop);
        self.ct.expire(now)
    }

    /// Processes one frame. `handle` identifies it to the caller; fragments that were waiting
    /// for this packet (when it is a late first fragment) come back through `release` with
    /// their verdict, and fragments the table gives up on come back through `drop`.
    pub fn process(
        &mut self,
        frame: &[u8],
        now: Timestamp,
        handle: H,
        release: impl FnMut(H, Verdict),
        drop: impl FnMut(H),
    ) -> Step<H> {
        self.counters.frames.add(1);
        match wire::parse(frame) {
            Ok(p) => self.packet(&p, now, handle, release, drop),
            Err(m) => {
                self.counters.malformed[m.index()].add(1);
                Step::Done(Verdict::Drop(Drop::Malformed(m)), handle)
            }
        }
    }

    /// Processes an already parsed packet (captures with other link layers come this way).
    pub fn packet(
        &mut self,
        p: &Packet<'_>,
        now: Timestamp,
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
            return match self.frags.later(key, now.as_nanos(), piece, handle, drop).0 {
                Later::Verdict(v, h) => Step::Done(v, h),
                Later::Held => Step::Held,
                Later::Unheld(h) => Step::Done(Verdict::Drop(Drop::Fragment), h),
            };
        }
        let verdict = self.session(&ip, now);
        if let Some(f) = ip.frag {
            // The first fragment: later ones follow its verdict.
            let key = FragKey {
                src: ip.src.ip(),
                dst: ip.dst.ip(),
                proto: ip.proto,
                id: f.id,
            };
            let len = u32::try_from(ip.l4.payload().len()).unwrap_or(u32::MAX);
            self.frags
                .first(key, now.as_nanos(), len, verdict, release, drop);
        }
        Step::Done(verdict, handle)
    }

    /// Tracks the packet's session, feeds DPI while it is undecided, and returns the verdict.
    fn session(&mut self, ip: &wire::Ip<'_>, now: Timestamp) -> Verdict {
        let (key, from) = flow_key(ip);
        let (flags, transport) = match ip.l4 {
            L4::Tcp(t) => (t.flags, Some(dpi::Transport::Tcp)),
            L4::Udp { .. } => (wire::TcpFlags::default(), Some(dpi::Transport::Udp)),
            L4::Icmp { .. } => (wire::TcpFlags::default(), None),
            L4::Fragment(_) | L4::Other(_) => {
                self.counters.other_ip_proto.add(1);
                (wire::TcpFlags::default(), None)
            }
        };
        let pkt = conntrack::PacketMeta {
            key,
            from,
            tcp_flags: flags,
            len: u32::from(ip.len),
        };
        let tracked = match self.ct.track(&pkt, now) {
            Ok(t) => t,
            Err(
                Untracked::TableFull
                | Untracked::Rst
                | Untracked::Fin
                | Untracked::SynAck
                | Untracked::BadFlags,
            ) => {
                self.counters.untracked.add(1);
                return Verdict::Forward;
            }
        };
        let session = tracked.session;
        if let Some(transport) = transport
            && !session.ext.dpi.done()
        {
            let payload = ip.l4.payload();
            if !payload.is_empty() {
                self.counters.inspected.add(1);
                let flow = dpi::Flow {
                    transport,
                    client_port: session.client().port(),
                    server_port: session.server().port(),
                };
                let dir = match tracked.dir {
                    conntrack::Dir::ClientToServer => dpi::Dir::ClientToServer,
                    conntrack::Dir::ServerToClient => dpi::Dir::ServerToClient,
                };
                session.ext.dpi.inspect(&flow, dir, payload);
            }
        }
        Verdict::Forward
    }
}
