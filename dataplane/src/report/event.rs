//! What the dataplane tells control: connection records (for learning and the network graph),
//! policy violations and threats. Plain serde data: the control socket carries it as is.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::policy::Mode;

/// What the dataplane did with the traffic an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Forwarded.
    Allowed,
    /// Forwarded, and reported as a violation or threat.
    Alerted,
    /// Dropped (TCP: the client may have been sent a RST).
    Denied,
}

/// One endpoint of a connection as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// Address and port.
    pub addr: SocketAddr,
    /// Workload id, when the address belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The group it resolved to: the workload's group, `nodes`, `external`, or an address
    /// group.
    pub group: String,
}

/// Aggregated connections between two endpoints on one server port and application, for
/// learning (discover mode) and the network graph.
///
/// The counts are those since the previous record of the same conversation (the aggregator
/// reports each at most once per interval, see [`super::aggregate`]), and the first and last
/// seen times span the traffic they cover: a consumer adds records up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// The side that opened the connections (port 0 in the aggregate: clients' ports vary).
    pub client: Endpoint,
    /// The side that accepted them.
    pub server: Endpoint,
    /// IP protocol (6, 17, 1, 58, ...).
    pub proto: u8,
    /// Application (`rules`' lower-case name, `unknown` when undecided).
    pub app: String,
    /// Connections seen.
    pub sessions: u64,
    /// Packets, both directions.
    pub packets: u64,
    /// Bytes, both directions.
    pub bytes: u64,
    /// First seen, milliseconds since the Unix epoch.
    pub first_seen_ms: u64,
    /// Last seen, milliseconds since the Unix epoch.
    pub last_seen_ms: u64,
    /// The policy's verdict on these connections.
    pub verdict: Verdict,
    /// Matching rule, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// Effective mode they were judged under.
    pub mode: Mode,
    /// Some of these connections were answered by the server (for TCP: the handshake
    /// completed). Learning ignores unanswered TCP attempts.
    #[serde(default)]
    pub answered: bool,
}

/// A connection no allow rule covers, or a deny rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Client endpoint.
    pub client: Endpoint,
    /// Server endpoint.
    pub server: Endpoint,
    /// IP protocol.
    pub proto: u8,
    /// Application, `unknown` when undecided.
    pub app: String,
    /// The deny rule that matched; `None` when no rule matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// Effective mode.
    pub mode: Mode,
    /// What was done.
    pub verdict: Verdict,
}

/// Threats the dataplane detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreatKind {
    /// Many half-open TCP connections to one workload.
    SynFlood,
    /// New sessions to or from one workload above the configured rate.
    SessionRate,
    /// An IP datagram reassembling beyond 65535 bytes.
    PingOfDeath,
    /// Overlapping IP fragments.
    Teardrop,
    /// A TCP handshake split or reordered to evade inspection (e.g. SYN answered by a SYN).
    TcpSplitHandshake,
    /// A TCP segment with an impossible flag combination (SYN+FIN, SYN+RST, none, ...).
    InvalidTcpFlags,
    /// DNS queries with long or high-entropy labels (data exfiltration through DNS).
    DnsTunneling,
    /// A TLS handshake offering nothing newer than TLS 1.1, or SSLv2/SSLv3.
    WeakTls,
}

impl ThreatKind {
    /// Stable numeric id (NeuVector-style threat ids).
    pub fn id(self) -> u32 {
        match self {
            Self::SynFlood => 1001,
            Self::SessionRate => 1002,
            Self::PingOfDeath => 1003,
            Self::Teardrop => 1004,
            Self::TcpSplitHandshake => 1005,
            Self::InvalidTcpFlags => 1006,
            Self::DnsTunneling => 1007,
            Self::WeakTls => 1008,
        }
    }

    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            Self::SynFlood => "TCP SYN flood",
            Self::SessionRate => "Session rate limit",
            Self::PingOfDeath => "Ping of death",
            Self::Teardrop => "IP fragment overlap (teardrop)",
            Self::TcpSplitHandshake => "TCP split handshake",
            Self::InvalidTcpFlags => "Invalid TCP flags",
            Self::DnsTunneling => "DNS tunneling",
            Self::WeakTls => "TLS below 1.2 or SSLv2/v3",
        }
    }
}

/// A detected threat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threat {
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What.
    pub kind: ThreatKind,
    /// [`ThreatKind::id`].
    pub id: u32,
    /// [`ThreatKind::name`].
    pub name: String,
    /// Client (or source) endpoint.
    pub client: Endpoint,
    /// Server (or destination) endpoint.
    pub server: Endpoint,
    /// IP protocol.
    pub proto: u8,
    /// Alerted, or denied in protect mode.
    pub verdict: Verdict,
    /// Detail for the operator (e.g. the DNS name, the TLS version offered).
    #[serde(default)]
    pub detail: String,
}

/// Everything the event stream carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Aggregated connections.
    Connection(ConnectionRecord),
    /// A policy violation.
    Violation(Violation),
    /// A threat.
    Threat(Threat),
    /// Events lost because a worker's ring was full (count since the last such event).
    Overflow {
        /// Events dropped.
        lost: u64,
    },
}
