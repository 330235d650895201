//! What a worker pushes into its ring: small `Copy` records, no `String`, no heap.
//!
//! A [`WorkerRecord`] names its flow by addresses, ports, protocol and [`App`]; the
//! aggregator (on a non-worker thread) turns records into [`super::Event`]s, resolving
//! addresses to workloads and groups and formatting [`ThreatDetail`]s into text. Times are
//! [`Timestamp`]s on the workers' monotonic clock (the one conntrack uses); the aggregator maps
//! them to wall-clock milliseconds with [`super::Now`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::conntrack::Timestamp;
use crate::dpi::App;
use crate::policy::Mode;

use super::event::{ThreatKind, Verdict};

/// A connection as records name it: the client (the side that opened it), the server, the
/// IP protocol and the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Client address.
    pub client: IpAddr,
    /// Server address.
    pub server: IpAddr,
    /// Client port (0 for protocols without ports).
    pub client_port: u16,
    /// Server port (0 for protocols without ports).
    pub server_port: u16,
    /// IP protocol.
    pub proto: u8,
    /// Application, [`App::Unknown`] while undecided.
    pub app: App,
}

impl Flow {
    /// A flow from its two socket addresses (as [`crate::conntrack::Session`] gives them).
    #[inline]
    pub fn new(client: SocketAddr, server: SocketAddr, proto: u8, app: App) -> Flow {
        Flow {
            client: client.ip(),
            server: server.ip(),
            client_port: client.port(),
            server_port: server.port(),
            proto,
            app,
        }
    }
}

/// Traffic of one session since its previous record: a delta, so that records of one
/// session and of many sessions add up the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionDelta {
    /// The session's flow.
    pub flow: Flow,
    /// Whether this is the session's first record (it then counts as one session).
    pub new_session: bool,
    /// Packets since the previous record, both directions.
    pub packets: u64,
    /// Bytes since the previous record, both directions.
    pub bytes: u64,
    /// First packet covered by this record.
    pub first: Timestamp,
    /// Last packet covered by this record.
    pub last: Timestamp,
    /// The policy's verdict on the session.
    pub verdict: Verdict,
    /// The rule that decided it, if any.
    pub rule: Option<u32>,
    /// The mode it was judged under.
    pub mode: Mode,
    /// The server side has sent something (for TCP: the handshake was answered).
    pub answered: bool,
}

/// A policy violation (one per offending session, not per packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViolationRecord {
    /// The offending flow.
    pub flow: Flow,
    /// When.
    pub at: Timestamp,
    /// The deny rule that matched; `None` when no rule matched.
    pub rule: Option<u32>,
    /// Effective mode.
    pub mode: Mode,
    /// What was done.
    pub verdict: Verdict,
}

/// A detected threat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreatRecord {
    /// The flow (for per-packet checks on untracked packets: the packet's source as client).
    pub flow: Flow,
    /// When.
    pub at: Timestamp,
    /// What.
    pub kind: ThreatKind,
    /// A small fixed detail.
    pub detail: ThreatDetail,
    /// Alerted, or denied in protect mode.
    pub verdict: Verdict,
}

/// One record in a worker's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerRecord {
    /// A session's traffic (opened, updated or ended).
    Connection(ConnectionDelta),
    /// A policy violation.
    Violation(ViolationRecord),
    /// A threat.
    Threat(ThreatRecord),
}

impl WorkerRecord {
    /// The record's flow.
    pub fn flow(&self) -> &Flow {
        match self {
            WorkerRecord::Connection(c) => &c.flow,
            WorkerRecord::Violation(v) => &v.flow,
            WorkerRecord::Threat(t) => &t.flow,
        }
    }
}

/// Why a DNS name looks like tunnelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsReason {
    /// A label longer than the limit.
    LongLabel,
    /// A whole name longer than the limit.
    LongName,
    /// High Shannon entropy over the labels below the registered domain.
    HighEntropy,
}

/// How a TCP handshake went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SplitHandshake {
    /// The server answered the client's SYN with a SYN of its own (no ACK): the split
    /// handshake (Beardsley and Qian, 2010) that turns the roles around.
    SynAnsweredBySyn,
    /// A SYN+ACK from the client to the server while the client's SYN is unanswered.
    SynAckFromClient,
    /// Payload before the handshake completed (not on a SYN, where TCP Fast Open may carry
    /// it, RFC 7413).
    DataBeforeHandshake {
        /// Sent by the server (else by the client).
        from_server: bool,
    },
}

/// A threat's detail, fixed size; formatted into [`super::Threat::detail`] by the
/// aggregator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThreatDetail {
    /// Nothing more to say.
    #[default]
    None,
    /// The segment's TCP flags byte.
    TcpFlags(u8),
    /// A rate over its limit within one window.
    Rate {
        /// Events counted in the window so far.
        observed: u32,
        /// The configured limit.
        limit: u32,
        /// The window, milliseconds.
        window_ms: u32,
    },
    /// A TCP handshake anomaly.
    Handshake(SplitHandshake),
    /// A DNS name that looks like tunnelling.
    Dns {
        /// The first reason found.
        reason: DnsReason,
        /// Longest label, characters.
        longest_label: u8,
        /// Name length in presentation form (dots included), characters.
        name_len: u8,
        /// Shannon entropy of the labels below the registered domain, thousandths of a bit
        /// per character (0 when too short to tell).
        entropy_millibits: u16,
    },
    /// A TLS ClientHello offering nothing recent enough.
    Tls {
        /// The highest version offered (0x0002 SSL 2.0, 0x0300 SSL 3.0, 0x0301 TLS 1.0...).
        offered: u16,
        /// The record layer's version (0 for an SSLv2-format hello).
        record: u16,
        /// Whether the hello had the SSLv2 format.
        sslv2_format: bool,
    },
}

/// `TLS 1.0`, `SSL 3.0`, or the hex value.
struct TlsVersion(u16);

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0x0002 => f.write_str("SSL 2.0"),
            0x0300 => f.write_str("SSL 3.0"),
            v @ 0x0301..=0x0304 => write!(f, "TLS 1.{}", (v & 0xff) - 1),
            v => write!(f, "version 0x{v:04x}"),
        }
    }
}

/// The set flags of a TCP flags byte, `SYN+FIN`, `none` when empty.
struct FlagNames(u8);

impl fmt::Display for FlagNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        if self.0 == 0 {
            return f.write_str("none");
        }
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("+")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// The scan a flag combination is known as (nmap's names), if any.
fn scan_name(flags: u8) -> Option<&'static str> {
    // FIN, SYN, RST, PSH, ACK, URG: the six classic flags; ECE and CWR do not matter here.
    match flags & 0x3f {
        0x00 => Some("null scan"),
        0x01 => Some("FIN scan"),
        0x29 | 0x3f => Some("Xmas scan"),
        0x03 => Some("SYN+FIN scan"),
        _ => None,
    }
}

impl fmt::Display for ThreatDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ThreatDetail::None => Ok(()),
            ThreatDetail::TcpFlags(b) => {
                write!(f, "TCP flags {} (0x{b:02x})", FlagNames(b))?;
                if let Some(scan) = scan_name(b) {
                    write!(f, ", {scan}")?;
                }
                Ok(())
            }
            ThreatDetail::Rate {
                observed,
                limit,
                window_ms,
            } => write!(f, "{observed} in {window_ms} ms, limit {limit}"),
            ThreatDetail::Handshake(h) => f.write_str(match h {
                SplitHandshake::SynAnsweredBySyn => "SYN answered by a SYN without ACK",
                SplitHandshake::SynAckFromClient => "SYN+ACK from the client",
                SplitHandshake::DataBeforeHandshake { from_server: true } => {
                    "server data before the handshake completed"
                }
                SplitHandshake::DataBeforeHandshake { from_server: false } => {
                    "client data before the handshake completed"
                }
            }),
            ThreatDetail::Dns {
                reason,
                longest_label,
                name_len,
                entropy_millibits,
            } => {
                let why = match reason {
                    DnsReason::LongLabel => "long label",
                    DnsReason::LongName => "long name",
                    DnsReason::HighEntropy => "high-entropy labels",
                };
                write!(
                    f,
                    "DNS query with {why}: longest label {longest_label}, name {name_len} chars, \
                     entropy {}.{:03} bits/char",
                    entropy_millibits / 1000,
                    entropy_millibits % 1000
                )
            }
            ThreatDetail::Tls {
                offered,
                record,
                sslv2_format,
            } => {
                if sslv2_format {
                    write!(
                        f,
                        "SSLv2-format ClientHello offering {}",
                        TlsVersion(offered)
                    )
                } else {
                    write!(
                        f,
                        "ClientHello offering at most {} (record {})",
                        TlsVersion(offered),
                        TlsVersion(record)
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_stay_small_and_copy() {
        fn is_copy<T: Copy>() {}
        is_copy::<WorkerRecord>();
        // Two 17-byte addresses dominate: 88 bytes, so a ring of 64 Ki records is 5.5 MiB.
        assert!(
            size_of::<WorkerRecord>() <= 88,
            "{}",
            size_of::<WorkerRecord>()
        );
        assert!(size_of::<ThreatDetail>() <= 16);
    }

    #[test]
    fn details_read_well() {
        assert_eq!(
            ThreatDetail::TcpFlags(0x29).to_string(),
            "TCP flags FIN+PSH+URG (0x29), Xmas scan"
        );
        assert_eq!(
            ThreatDetail::TcpFlags(0).to_string(),
            "TCP flags none (0x00), null scan"
        );
        assert_eq!(
            ThreatDetail::TcpFlags(0x06).to_string(),
            "TCP flags SYN+RST (0x06)"
        );
        assert_eq!(
            ThreatDetail::Tls {
                offered: 0x0301,
                record: 0x0301,
                sslv2_format: false
            }
            .to_string(),
            "ClientHello offering at most TLS 1.0 (record TLS 1.0)"
        );
        assert_eq!(
            ThreatDetail::Tls {
                offered: 0x0002,
                record: 0,
                sslv2_format: true
            }
            .to_string(),
            "SSLv2-format ClientHello offering SSL 2.0"
        );
        assert_eq!(
            ThreatDetail::Dns {
                reason: DnsReason::LongLabel,
                longest_label: 52,
                name_len: 64,
                entropy_millibits: 4612
            }
            .to_string(),
            "DNS query with long label: longest label 52, name 64 chars, entropy 4.612 bits/char"
        );
        assert_eq!(
            ThreatDetail::Rate {
                observed: 11,
                limit: 10,
                window_ms: 1000
            }
            .to_string(),
            "11 in 1000 ms, limit 10"
        );
        assert_eq!(ThreatDetail::None.to_string(), "");
    }
}
