//! The TCP state machine a middlebox can follow: flags and direction only.
//!
//! No sequence-number checks (RFC 9293 section 3.10.7.4 windows): the tracker sees every
//! packet of the flow but does not validate it, so a forged RST or FIN within the flow's
//! 5-tuple moves the state (and so the timeout) the way a real one would. The policy layer,
//! not the tracker, decides whether such a packet is forwarded.

use crate::wire::TcpFlags;

use super::session::Dir;

/// State of a tracked TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// The client's SYN was seen, no answer yet.
    SynSent,
    /// The server answered with SYN+ACK (or, in a simultaneous open, with its own SYN); the
    /// handshake's last ACK is not seen yet.
    SynReceived,
    /// Handshake complete, or the connection was picked up mid-stream.
    Established,
    /// Half-closed: one side sent FIN.
    FinWait,
    /// Both sides sent FIN (RFC 9293's CLOSING and TIME-WAIT as a middlebox sees them).
    TimeWait,
    /// A RST was seen.
    Closed,
}

impl TcpState {
    /// Stable snake_case name, used in reports and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::SynSent => "syn_sent",
            Self::SynReceived => "syn_received",
            Self::Established => "established",
            Self::FinWait => "fin_wait",
            Self::TimeWait => "time_wait",
            Self::Closed => "closed",
        }
    }
}

/// What a segment's flags mean to the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// SYN without ACK: a connection attempt.
    Syn,
    /// SYN+ACK: the answer to a SYN.
    SynAck,
    /// ACK without SYN, FIN or RST (data, window updates, keep-alives).
    Ack,
    /// FIN+ACK.
    Fin,
    /// RST, with or without ACK.
    Rst,
    /// A combination no TCP sends (SYN with FIN or RST, FIN without ACK, no ACK/SYN/RST at all:
    /// the null, FIN and Xmas scans). It changes no state.
    Invalid,
}

impl Event {
    /// Classifies a segment's flags (PSH, URG, ECE and CWR do not matter).
    #[inline]
    pub(crate) fn of(flags: TcpFlags) -> Event {
        let syn = flags.contains(TcpFlags::SYN);
        let ack = flags.contains(TcpFlags::ACK);
        let fin = flags.contains(TcpFlags::FIN);
        let rst = flags.contains(TcpFlags::RST);
        match (syn, ack, fin, rst) {
            (true, _, true, _) | (true, _, _, true) => Event::Invalid,
            (false, _, _, true) => Event::Rst,
            (true, false, false, false) => Event::Syn,
            (true, true, false, false) => Event::SynAck,
            (false, true, true, false) => Event::Fin,
            (false, true, false, false) => Event::Ack,
            (false, false, _, false) => Event::Invalid,
        }
    }
}

/// Bit of `fins` for a FIN sent in direction `dir`.
#[inline]
fn fin_bit(dir: Dir) -> u8 {
    match dir {
        Dir::ClientToServer => 1,
        Dir::ServerToClient => 2,
    }
}

/// Result of feeding one segment to a tracked connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// New state and FIN bits.
    To(TcpState, u8),
    /// A SYN on a finished connection (TIME-WAIT or after RST): a new connection over the same
    /// 5-tuple (RFC 9293 section 3.10.7.4 allows it in TIME-WAIT), its client the SYN's sender.
    Reopen,
}

/// Feeds a segment with event `ev`, travelling in `dir`, to a connection in `state` whose FINs
/// so far are `fins` (bit 1: client's, bit 2: server's).
#[inline]
pub(crate) fn step(state: TcpState, fins: u8, ev: Event, dir: Dir) -> Step {
    use TcpState::*;
    let to = |s| Step::To(s, fins);
    match (state, ev) {
        (_, Event::Invalid) => to(state),
        (_, Event::Rst) => to(Closed),
        (TimeWait | Closed, Event::Syn) => Step::Reopen,
        // Simultaneous open (RFC 9293 figure 8): the server's own SYN crosses the client's.
        (SynSent, Event::Syn | Event::SynAck) if dir == Dir::ServerToClient => to(SynReceived),
        // The handshake's third segment; in a simultaneous open either side may send it.
        (SynReceived, Event::Ack) => to(Established),
        (SynSent | SynReceived | Established, Event::Fin) => Step::To(FinWait, fins | fin_bit(dir)),
        (FinWait, Event::Fin) => {
            let fins = fins | fin_bit(dir);
            if fins == 3 {
                Step::To(TimeWait, fins)
            } else {
                Step::To(FinWait, fins)
            }
        }
        // Retransmissions, ACKs of FINs, SYNs inside a live connection: no change.
        _ => to(state),
    }
}

/// How a segment of an unknown flow starts tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// A SYN: a new connection, its sender the client.
    Syn,
    /// A plain ACK (with or without data): a connection opened before the tracker saw it.
    PickUp,
    /// Nothing to track; the reason is the caller's to count.
    Stray(super::Untracked),
}

impl Opening {
    #[inline]
    pub(crate) fn of(ev: Event) -> Opening {
        use super::Untracked;
        match ev {
            Event::Syn => Opening::Syn,
            Event::Ack => Opening::PickUp,
            Event::Rst => Opening::Stray(Untracked::Rst),
            Event::Fin => Opening::Stray(Untracked::Fin),
            // Linux conntrack also refuses a SYN+ACK without its SYN (nf_conntrack_proto_tcp,
            // sNO -> sIV): tracking it would let reflected SYN+ACK floods fill the table. The
            // handshake's ACK that follows picks the connection up.
            Event::SynAck => Opening::Stray(Untracked::SynAck),
            Event::Invalid => Opening::Stray(Untracked::BadFlags),
        }
    }
}
