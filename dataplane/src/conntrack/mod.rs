//! Connection tracking: the per-worker table of sessions.
//!
//! Pure Rust, sans-IO: each worker owns one [`Table`] (no locks, no sharing) and drives it with
//! the packets it parsed and a caller-supplied monotonic clock ([`Timestamp`]); nothing in this
//! module reads a clock, allocates after [`Table::with_capacity`], or panics on any input.
//!
//! # Keys and directions
//!
//! [`FlowKey::new`] normalises (protocol, source, destination) so both directions of a flow
//! give one key, and says which [`Side`] of the key sent the packet. Ports are whatever the
//! caller supplies: TCP/UDP ports, the echo identifier on both sides for ICMP/ICMPv6 echo, 0
//! for protocols without ports. A [`Session`] knows which side is its client, so
//! [`Table::track`] answers with the packet's [`Dir`] relative to the session.
//!
//! # The caller's extension
//!
//! `Session::ext: T` is the pipeline's: application id, DPI state, the cached verdict and the
//! policy epoch it was computed under (opte's idea: a policy change bumps the epoch and a hit
//! with a stale epoch re-evaluates, so the table never has to be walked). The table resets it
//! to `T::default()` whenever a slot starts a new connection and drops it when a session is
//! freed, so `T::default()` should not allocate.
//!
//! # Who is the client
//!
//! The sender of the SYN for TCP, the sender of the first packet seen otherwise. A TCP flow
//! picked up mid-stream (a plain ACK for an unknown flow: the connection predates the
//! dataplane, or outlived its session) starts `Established` with
//! [`Session::picked_up`] set, and its client is a guess: the side with the higher port
//! (clients use ephemeral ports, servers well-known ones), the packet's sender on a tie.
//!
//! # TCP states and timeouts
//!
//! Driven by flags and direction only: no sequence-number or window checks (RFC 9293 section
//! 3.10.7.4), so a forged RST or FIN inside the flow's 5-tuple moves the state, and so the
//! timeout, the way a real one would. Whether such a packet is forwarded is the policy's call.
//! Every packet sets the session's deadline to `now` plus the timeout of the state the packet
//! leaves it in; all timeouts are fields of [`Timeouts`].
//!
//! | state | entered by | timeout (default) |
//! |---|---|---|
//! | `SynSent` | SYN of an unknown flow (or a reopen, below) | `opening` 20 s |
//! | `SynReceived` | server's SYN+ACK, or its own SYN (simultaneous open) | `opening` 20 s |
//! | `Established` | ACK in `SynReceived`, either side; mid-stream pickup | `established` 1200 s |
//! | `FinWait` | the first FIN+ACK (from `SynSent`, `SynReceived` or `Established`) | `half_closed` 90 s |
//! | `TimeWait` | the other side's FIN+ACK | `time_wait` 15 s |
//! | `Closed` | RST (with or without ACK), from any state | `closed` 5 s |
//! | UDP / ICMP, ICMPv6 / other | any packet | `udp` 30 s / `icmp` 5 s / `other` 30 s |
//!
//! A SYN in `TimeWait` or `Closed` reopens the session in place for a new connection over the
//! same 5-tuple: `SynSent`, counters and `ext` reset, the SYN's sender the client,
//! [`Tracked::is_new`] set, counted as `reopened`. Segments with impossible flags (SYN with FIN
//! or RST, FIN without ACK, none of SYN/ACK/RST) change no state but are counted and refresh
//! the deadline like any other packet of the flow.
//!
//! For an unknown flow only a SYN or a plain ACK opens a session; a lone RST, FIN+ACK,
//! SYN+ACK or a segment with impossible flags does not, and `track` returns the matching
//! [`Untracked`] reason (counted as `stray`).
//!
//! # Expiry
//!
//! A session is dead from its deadline on: a packet that finds a dead session never revives
//! it, but counts it `expired` and starts a new session in its slot (if it may open one). The
//! memory is reclaimed by [`Table::expire`], which the worker calls once per burst: a hashed
//! timing wheel (see `wheel.rs`) makes it cost O(1) per slot of `tick` that elapsed plus O(1)
//! per session it finds due or refreshed, and nothing at all between two ticks. `expire(now)`
//! frees every session whose deadline is at or before `now` rounded down to a multiple of
//! [`Config::tick`] (so reclaiming lags a deadline by less than one tick, 100 ms by default),
//! and never one whose deadline is after `now`.
//!
//! # When the table is full
//!
//! A new flow needs a free slot. When there is none:
//!
//! 1. run [`Table::expire`] (free if already up to date);
//! 2. scan the wheel from the next tick on, in filing order (roughly soonest deadline first),
//!    examining at most [`Config::eviction_sample`] sessions and at most one rotation of
//!    slots. The first dead session found is freed (counted `expired`); otherwise the
//!    examined session with the earliest deadline among those *not assured* is evicted
//!    (counted `evicted`);
//! 3. if the sample holds only assured sessions, the new flow is refused (counted `refused`,
//!    [`Untracked::TableFull`]), and the scan is not repeated until the wheel's next tick or
//!    until a session is freed, so a flood of new flows against a full table costs one
//!    counter increment each.
//!
//! A session is *assured* ([`Session::is_assured`]) once it has seen packets in both
//! directions and, for TCP, is `Established` or `FinWait`: like Linux conntrack's early drop,
//! half-open handshakes, finished connections, unanswered UDP and one-way mid-stream pickups
//! (an ACK flood) may be evicted, connections that really talk may not. An
//! `eviction_sample` of 0 turns eviction off.
//!
//! # Cost
//!
//! The per-packet path for a known flow is: five-word seeded hash (three 64x64->128
//! multiplies), one probe of an 8-byte-bucket open-addressing index (at most half full, so
//! about one bucket read), a tag compare, a 40-byte key compare, the state step and counter
//! updates in the session. The wheel is not touched per packet. Memory is allocated once:
//! sessions (104 bytes plus `T`, cache-line aligned: 128 bytes for a `T` of up to 24 bytes),
//! 16 bytes of wheel links per session, 16 bytes of index per session (twice the capacity,
//! rounded up to a power of two) and 4 bytes per wheel slot: about 160 MiB for the default
//! million sessions. A packet that shortens its session's timeout (FIN, RST) re-files it in the
//! wheel, O(1); every other packet leaves the wheel alone.

mod counters;
mod index;
mod key;
mod session;
mod table;
mod tcp;
mod wheel;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use counters::{ConntrackCounters, ConntrackSnapshot, Gauge};
pub use key::{FlowKey, Side};
pub use session::{Dir, DirCounters, Session};
pub use table::{Iter, Table};
pub use tcp::TcpState;

use crate::wire::TcpFlags;

/// Default capacity: sessions per worker.
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// Largest capacity (slab indices are `u32`, the index has up to 2^32 buckets).
pub const MAX_CAPACITY: usize = 1 << 31;
/// Default wheel tick.
pub const DEFAULT_TICK: Duration = Duration::from_millis(100);
/// Default number of wheel slots: with the default tick one rotation is about 27 minutes, longer
/// than the longest default timeout, so an idle established session is visited once.
pub const DEFAULT_WHEEL_SLOTS: usize = 1 << 14;
/// Largest number of wheel slots.
pub const MAX_WHEEL_SLOTS: usize = 1 << 24;
/// Default number of sessions examined to find an eviction victim.
pub const DEFAULT_EVICTION_SAMPLE: usize = 16;

/// A monotonic instant in nanoseconds, on a clock the caller chooses (the worker converts its
/// TSC reading). Only differences matter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The clock's origin.
    pub const ZERO: Timestamp = Timestamp(0);

    /// The instant `ns` nanoseconds after the origin.
    #[inline]
    pub const fn from_nanos(ns: u64) -> Timestamp {
        Timestamp(ns)
    }

    /// The instant `s` seconds after the origin (saturating).
    pub const fn from_secs(s: u64) -> Timestamp {
        Timestamp(s.saturating_mul(1_000_000_000))
    }

    /// The instant `ms` milliseconds after the origin (saturating).
    pub const fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the origin.
    #[inline]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos(d)))
    }

    /// `self - d`, saturating at the origin.
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(nanos(d)))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// Saturating, unlike `Instant + Duration`: time arithmetic never panics here.
impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

/// Saturating at the origin.
impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        self.saturating_sub(d)
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Idle timeouts per state; see the table in the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP `SynSent` and `SynReceived`.
    pub opening: Duration,
    /// TCP `Established`.
    pub established: Duration,
    /// TCP `FinWait`: one side sent FIN.
    pub half_closed: Duration,
    /// TCP `TimeWait`: both sides sent FIN.
    pub time_wait: Duration,
    /// TCP `Closed`: after RST.
    pub closed: Duration,
    /// UDP.
    pub udp: Duration,
    /// ICMP and ICMPv6.
    pub icmp: Duration,
    /// Any other IP protocol.
    pub other: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            opening: Duration::from_secs(20),
            established: Duration::from_secs(1200),
            half_closed: Duration::from_secs(90),
            time_wait: Duration::from_secs(15),
            closed: Duration::from_secs(5),
            udp: Duration::from_secs(30),
            icmp: Duration::from_secs(5),
            other: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// Names and values, in the order of `session::class`.
    fn named(&self) -> [(&'static str, Duration); session::class::COUNT] {
        [
            ("opening", self.opening),
            ("established", self.established),
            ("half_closed", self.half_closed),
            ("time_wait", self.time_wait),
            ("closed", self.closed),
            ("udp", self.udp),
            ("icmp", self.icmp),
            ("other", self.other),
        ]
    }
}

/// How to build a [`Table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Most sessions the table holds, 1 to [`MAX_CAPACITY`].
    pub capacity: usize,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// Granularity of reclaiming (not of deadlines, which are exact); at least 1 ns.
    pub tick: Duration,
    /// Slots of the timing wheel: a power of two up to [`MAX_WHEEL_SLOTS`]. `tick * wheel_slots`
    /// at or above the longest timeout means an idle session is visited only once.
    pub wheel_slots: usize,
    /// Sessions examined per eviction attempt; 0 never evicts.
    pub eviction_sample: usize,
    /// Key of the flow hash. The index's resistance to hash flooding rests on it being secret,
    /// so the worker passes a random value; the default draws one from the standard library's
    /// per-process random keys.
    pub hash_seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        use std::hash::{BuildHasher, RandomState};
        Config {
            capacity: DEFAULT_CAPACITY,
            timeouts: Timeouts::default(),
            tick: DEFAULT_TICK,
            wheel_slots: DEFAULT_WHEEL_SLOTS,
            eviction_sample: DEFAULT_EVICTION_SAMPLE,
            hash_seed: RandomState::new().hash_one(0x636f_6e6e_7472_6163_u64),
        }
    }
}

impl Config {
    /// The default configuration with another capacity.
    pub fn with_capacity(capacity: usize) -> Config {
        Config {
            capacity,
            ..Config::default()
        }
    }
}

/// Why a [`Config`] was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Capacity out of range.
    #[error("conntrack capacity {0} is outside 1..={MAX_CAPACITY}")]
    Capacity(usize),
    /// The tick is zero.
    #[error("conntrack wheel tick must be at least 1 ns")]
    ZeroTick,
    /// The slot count is not a power of two in range.
    #[error("conntrack wheel slots {0} is not a power of two in 1..={MAX_WHEEL_SLOTS}")]
    WheelSlots(usize),
    /// A timeout is zero (the session would be dead on arrival).
    #[error("conntrack timeout `{0}` must not be zero")]
    ZeroTimeout(&'static str),
    /// The tables could not be allocated.
    #[error("not enough memory for the conntrack table")]
    OutOfMemory,
}

/// What [`Table::track`] needs of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// Normalised flow key.
    pub key: FlowKey,
    /// Side of the key that sent the packet.
    pub from: Side,
    /// TCP flags; ignored unless the key's protocol is TCP (6).
    pub tcp_flags: TcpFlags,
    /// Bytes to count, as the caller defines them (the pipeline counts the IP datagram).
    pub len: u32,
}

/// A packet's session, from [`Table::track`].
#[derive(Debug)]
pub struct Tracked<'a, T> {
    /// The session, updated for this packet.
    pub session: &'a mut Session<T>,
    /// The packet's direction relative to the session.
    pub dir: Dir,
    /// Whether this packet started the session (created, or reopened by a SYN): `ext` is
    /// fresh and the pipeline must classify the flow.
    pub is_new: bool,
    /// The session's TCP state before this packet (`None` for new sessions and non-TCP), for
    /// checks on the transition such as a split handshake.
    pub prev_tcp: Option<TcpState>,
}

/// Why [`Table::track`] did not track a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Untracked {
    /// Table full and no session could be evicted (counted `refused`).
    TableFull,
    /// A RST for an unknown flow (counted `stray`, as are the reasons below).
    Rst,
    /// A FIN+ACK for an unknown flow.
    Fin,
    /// A SYN+ACK for an unknown flow.
    SynAck,
    /// Impossible TCP flags (SYN with FIN or RST, FIN without ACK, no SYN/ACK/RST) for an
    /// unknown flow.
    BadFlags,
}

impl Untracked {
    /// Stable snake_case name, for logs and exported metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::TableFull => "table_full",
            Self::Rst => "stray_rst",
            Self::Fin => "stray_fin",
            Self::SynAck => "stray_syn_ack",
            Self::BadFlags => "bad_flags",
        }
    }
}
