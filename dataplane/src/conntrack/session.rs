//! One tracked connection.

use std::net::SocketAddr;

use super::Timestamp;
use super::key::{FlowKey, Side};
use super::tcp::TcpState;

/// Direction of a packet relative to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the client (the side that sent the first packet or the SYN) to the server.
    ClientToServer,
    /// From the server to the client.
    ServerToClient,
}

impl Dir {
    /// Index into per-direction arrays: 0 for client to server, 1 for server to client.
    #[inline]
    pub fn index(self) -> usize {
        match self {
            Dir::ClientToServer => 0,
            Dir::ServerToClient => 1,
        }
    }
}

/// Packets and bytes seen in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirCounters {
    /// Packets.
    pub packets: u64,
    /// Bytes, as the caller counted them (see [`super::PacketMeta::len`]).
    pub bytes: u64,
}

/// Protocol family of a session and, for TCP, its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// TCP; `fins` has bit 1 set once the client sent FIN, bit 2 once the server did.
    Tcp {
        state: TcpState,
        fins: u8,
    },
    Udp,
    Icmp,
    Other,
}

/// Index of each timeout in the table's array of timeouts (the order of `Timeouts::named`).
pub(crate) mod class {
    pub const OPENING: usize = 0;
    pub const ESTABLISHED: usize = 1;
    pub const HALF_CLOSED: usize = 2;
    pub const TIME_WAIT: usize = 3;
    pub const CLOSED: usize = 4;
    pub const UDP: usize = 5;
    pub const ICMP: usize = 6;
    pub const OTHER: usize = 7;
    pub const COUNT: usize = 8;
}

impl Kind {
    /// The kind a new session of protocol `proto` starts with (TCP callers overwrite the state).
    pub(crate) fn of_proto(proto: u8) -> Kind {
        match proto {
            6 => Kind::Tcp {
                state: TcpState::SynSent,
                fins: 0,
            },
            17 => Kind::Udp,
            1 | 58 => Kind::Icmp,
            _ => Kind::Other,
        }
    }

    /// Which timeout applies.
    #[inline]
    pub(crate) fn class(self) -> usize {
        match self {
            Kind::Tcp { state, .. } => match state {
                TcpState::SynSent | TcpState::SynReceived => class::OPENING,
                TcpState::Established => class::ESTABLISHED,
                TcpState::FinWait => class::HALF_CLOSED,
                TcpState::TimeWait => class::TIME_WAIT,
                TcpState::Closed => class::CLOSED,
            },
            Kind::Udp => class::UDP,
            Kind::Icmp => class::ICMP,
            Kind::Other => class::OTHER,
        }
    }
}

/// A tracked connection: endpoints, state, counters, timers and the caller's extension.
///
/// `ext` belongs to the pipeline (application id, DPI state, the cached verdict and the policy
/// epoch it was computed under). The table resets it to `T::default()` whenever the slot starts
/// a new connection, so `T::default()` should not allocate.
#[derive(Debug)]
// Cache-line aligned so a session never straddles more lines than its size needs: the packet
// path reads and writes the key, state, deadline and counters of one session.
#[repr(align(64))]
pub struct Session<T> {
    pub(crate) key: FlowKey,
    pub(crate) kind: Kind,
    /// Which side of `key` is the client.
    pub(crate) client: Side,
    pub(crate) picked_up: bool,
    /// Whether the slot holds a session (free slab slots are not live).
    pub(crate) live: bool,
    pub(crate) deadline: Timestamp,
    pub(crate) last_seen: Timestamp,
    pub(crate) first_seen: Timestamp,
    pub(crate) counters: [DirCounters; 2],
    /// The caller's per-session state.
    pub ext: T,
}

impl<T: Default> Default for Session<T> {
    fn default() -> Self {
        Session {
            key: FlowKey::new(0, [0u8; 4].into(), 0, [0u8; 4].into(), 0).0,
            kind: Kind::Other,
            client: Side::Lo,
            picked_up: false,
            live: false,
            deadline: Timestamp::ZERO,
            last_seen: Timestamp::ZERO,
            first_seen: Timestamp::ZERO,
            counters: [DirCounters::default(); 2],
            ext: T::default(),
        }
    }
}

impl<T> Session<T> {
    /// The flow key (both directions).
    #[inline]
    pub fn key(&self) -> &FlowKey {
        &self.key
    }

    /// IP protocol number.
    #[inline]
    pub fn proto(&self) -> u8 {
        self.key.proto()
    }

    /// The client's address and port.
    pub fn client(&self) -> SocketAddr {
        self.key.endpoint(self.client)
    }

    /// The server's address and port.
    pub fn server(&self) -> SocketAddr {
        self.key.endpoint(self.client.opposite())
    }

    /// Which side of [`Self::key`] the client is.
    #[inline]
    pub fn client_side(&self) -> Side {
        self.client
    }

    /// Direction of a packet sent by `from`.
    #[inline]
    pub fn dir_of(&self, from: Side) -> Dir {
        if from == self.client {
            Dir::ClientToServer
        } else {
            Dir::ServerToClient
        }
    }

    /// TCP state; `None` for other protocols.
    #[inline]
    pub fn tcp_state(&self) -> Option<TcpState> {
        match self.kind {
            Kind::Tcp { state, .. } => Some(state),
            _ => None,
        }
    }

    /// Whether tracking started mid-stream (no SYN seen): DPI missed the start and the client
    /// is a guess (see the module documentation).
    #[inline]
    pub fn picked_up(&self) -> bool {
        self.picked_up
    }

    /// When the first packet was seen.
    #[inline]
    pub fn first_seen(&self) -> Timestamp {
        self.first_seen
    }

    /// When the last packet was seen.
    #[inline]
    pub fn last_seen(&self) -> Timestamp {
        self.last_seen
    }

    /// When the session expires unless another packet arrives: it is dead at any `now` at or
    /// after this instant.
    #[inline]
    pub fn deadline(&self) -> Timestamp {
        self.deadline
    }

    /// Whether the session is dead at `now` (it may not have been reaped yet).
    #[inline]
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.deadline <= now
    }

    /// Packets and bytes in one direction.
    #[inline]
    pub fn counters(&self, dir: Dir) -> DirCounters {
        self.counters[dir.index()]
    }

    /// Whether the session is protected from eviction: it has seen traffic both ways and, for
    /// TCP, is established or half-closed. See the module documentation.
    pub fn is_assured(&self) -> bool {
        let both_ways = self.counters[0].packets > 0 && self.counters[1].packets > 0;
        both_ways
            && !matches!(
                self.tcp_state(),
                Some(
                    TcpState::SynSent
                        | TcpState::SynReceived
                        | TcpState::TimeWait
                        | TcpState::Closed
                )
            )
    }
}
