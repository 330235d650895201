//! TCP split handshake: a pure function of the session's state before the segment, the
//! segment's flags and payload length, and its direction.
//!
//! RFC 9293 section 3.5's handshake is SYN (client), SYN+ACK (server), ACK (client). What this
//! flags, while the session is `SynSent` or `SynReceived` (after that it returns at once):
//!
//! - **SYN answered by a SYN** without ACK from the server ("split handshake", Beardsley and
//!   Qian, 2010): RFC 9293's simultaneous open, which client/server traffic never does, used
//!   to swap the roles so that a middlebox judges the connection as opened by the other side.
//!   Conntrack follows it (it must: the RFC allows it); this check names it.
//! - **SYN+ACK from the client** while its own SYN is unanswered (Suricata's
//!   `3whs_synack_in_wrong_direction`).
//! - **Data before the handshake completes**: payload on a segment without SYN, from either
//!   side while the client's SYN is unanswered, or from the server before the client's ACK.
//!   Data *on* a SYN or SYN+ACK is TCP Fast Open (RFC 7413) and data on the client's third
//!   segment is ordinary; neither is flagged. Segments with RST are never flagged.
//!
//! The pipeline reads the session's state before handing the segment to conntrack (or keeps
//! it from the previous segment). A tap that sees only one direction of a flow, or an
//! asymmetric route that hides the SYN+ACK, makes the client's data look early: such
//! deployments should not act on [`SplitHandshake::DataBeforeHandshake`] from the client.

use crate::conntrack::{Dir, TcpState};
use crate::report::{SplitHandshake, ThreatDetail, ThreatKind};
use crate::wire::TcpFlags;

use super::Detection;

/// Checks a segment of a session whose TCP state was `prev` before it (see the module
/// documentation). O(1); returns at the first compare once the session is established.
#[inline]
pub fn split_handshake(
    prev: TcpState,
    flags: TcpFlags,
    dir: Dir,
    payload_len: usize,
) -> Option<Detection> {
    if !matches!(prev, TcpState::SynSent | TcpState::SynReceived) || flags.contains(TcpFlags::RST) {
        return None;
    }
    let syn = flags.contains(TcpFlags::SYN);
    let ack = flags.contains(TcpFlags::ACK);
    let from_server = dir == Dir::ServerToClient;
    let found = match prev {
        TcpState::SynSent if syn && !ack && from_server => SplitHandshake::SynAnsweredBySyn,
        TcpState::SynSent if syn && ack && !from_server => SplitHandshake::SynAckFromClient,
        TcpState::SynSent if !syn && payload_len > 0 => {
            SplitHandshake::DataBeforeHandshake { from_server }
        }
        TcpState::SynReceived if !syn && payload_len > 0 && from_server => {
            SplitHandshake::DataBeforeHandshake { from_server }
        }
        _ => return None,
    };
    Some(Detection::new(
        ThreatKind::TcpSplitHandshake,
        ThreatDetail::Handshake(found),
    ))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::conntrack::{self, FlowKey, PacketMeta, Table, Timestamp};

    const SYN: TcpFlags = TcpFlags::SYN;
    const SYN_ACK: TcpFlags = TcpFlags(0x12);
    const ACK: TcpFlags = TcpFlags::ACK;
    const PSH_ACK: TcpFlags = TcpFlags(0x18);
    const RST_ACK: TcpFlags = TcpFlags(0x14);
    const C2S: Dir = Dir::ClientToServer;
    const S2C: Dir = Dir::ServerToClient;

    fn kind(d: Option<Detection>) -> Option<SplitHandshake> {
        d.and_then(|d| match d.detail {
            ThreatDetail::Handshake(h) if d.kind == ThreatKind::TcpSplitHandshake => Some(h),
            _ => None,
        })
    }

    #[test]
    fn an_ordinary_handshake_is_quiet() {
        use TcpState::*;
        for (prev, flags, dir, len) in [
            (SynSent, SYN, C2S, 0),           // retransmitted SYN
            (SynSent, SYN, C2S, 100),         // TCP Fast Open SYN with data
            (SynSent, SYN_ACK, S2C, 0),       // the answer
            (SynSent, SYN_ACK, S2C, 50),      // TFO server data on the SYN+ACK
            (SynReceived, ACK, C2S, 0),       // the third segment
            (SynReceived, PSH_ACK, C2S, 300), // ... carrying the request
            (SynReceived, SYN_ACK, S2C, 0),   // retransmitted SYN+ACK
            (SynSent, RST_ACK, S2C, 0),       // refused
            (SynSent, RST_ACK, S2C, 20),      // refused, with diagnostic payload
            (Established, SYN, S2C, 0),       // not our business any more
            (Established, PSH_ACK, S2C, 900),
            (FinWait, PSH_ACK, C2S, 10),
            (TimeWait, SYN, C2S, 0),
            (Closed, SYN, S2C, 0),
        ] {
            assert_eq!(
                split_handshake(prev, flags, dir, len),
                None,
                "{prev:?} {flags:?} {dir:?}"
            );
        }
    }

    #[test]
    fn split_and_reordered_handshakes_are_flagged() {
        use TcpState::*;
        for (prev, flags, dir, len, want) in [
            (SynSent, SYN, S2C, 0, SplitHandshake::SynAnsweredBySyn),
            (SynSent, SYN_ACK, C2S, 0, SplitHandshake::SynAckFromClient),
            (
                SynSent,
                PSH_ACK,
                C2S,
                10,
                SplitHandshake::DataBeforeHandshake { from_server: false },
            ),
            (
                SynSent,
                PSH_ACK,
                S2C,
                10,
                SplitHandshake::DataBeforeHandshake { from_server: true },
            ),
            (
                SynReceived,
                PSH_ACK,
                S2C,
                10,
                SplitHandshake::DataBeforeHandshake { from_server: true },
            ),
        ] {
            assert_eq!(kind(split_handshake(prev, flags, dir, len)), Some(want));
        }
    }

    #[test]
    fn with_the_connection_table_the_split_handshake_is_seen_on_the_servers_syn() {
        // The pipeline's way: read the session's state, check, then track the segment.
        let mut t: Table<()> =
            Table::with_capacity(conntrack::Config::with_capacity(16)).expect("table");
        let (client, server): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let seg = |from_client: bool, flags| {
            let (key, from) = if from_client {
                FlowKey::new(6, client, 40000, server, 80)
            } else {
                FlowKey::new(6, server, 80, client, 40000)
            };
            PacketMeta {
                key,
                from,
                tcp_flags: flags,
                len: 40,
            }
        };
        let mut step = |from_client: bool, flags: TcpFlags, now: u64| {
            let p = seg(from_client, flags);
            let prev = t.get(&p.key).and_then(|s| s.tcp_state());
            let dir = t.get(&p.key).map(|s| s.dir_of(p.from));
            let found = match (prev, dir) {
                (Some(prev), Some(dir)) => split_handshake(prev, flags, dir, 0),
                _ => None,
            };
            t.track(&p, Timestamp::from_nanos(now)).expect("tracked");
            kind(found)
        };
        assert_eq!(step(true, SYN, 1), None);
        assert_eq!(step(false, SYN, 2), Some(SplitHandshake::SynAnsweredBySyn));
        // Conntrack followed it as a simultaneous open.
        let key = seg(true, SYN).key;
        assert_eq!(
            t.get(&key).and_then(|s| s.tcp_state()),
            Some(TcpState::SynReceived)
        );
    }
}
