//! Behaviour of the table through its public API, with exact counter values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::*;
use crate::wire::TcpFlags;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const GRE: u8 = 47;

const SYN: TcpFlags = TcpFlags::SYN;
const SYN_ACK: TcpFlags = TcpFlags(0x12);
const ACK: TcpFlags = TcpFlags::ACK;
const PSH_ACK: TcpFlags = TcpFlags(0x18);
const FIN_ACK: TcpFlags = TcpFlags(0x11);
const RST: TcpFlags = TcpFlags::RST;
const RST_ACK: TcpFlags = TcpFlags(0x14);
const NONE: TcpFlags = TcpFlags(0);

/// The pipeline's extension, as a test sees it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Ext {
    verdict: u32,
}

type T = Table<Ext>;

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, d))
}

fn v6(d: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, d))
}

fn secs(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

/// Timeouts that differ from one another, so a test knows which one was applied.
fn distinct_timeouts() -> Timeouts {
    Timeouts {
        opening: Duration::from_secs(21),
        established: Duration::from_secs(1201),
        half_closed: Duration::from_secs(91),
        time_wait: Duration::from_secs(16),
        closed: Duration::from_secs(6),
        udp: Duration::from_secs(31),
        icmp: Duration::from_secs(7),
        other: Duration::from_secs(33),
    }
}

/// A small table whose wheel ticks every nanosecond: reclaiming is exact.
fn exact(capacity: usize) -> Config {
    Config {
        capacity,
        timeouts: distinct_timeouts(),
        tick: Duration::from_nanos(1),
        wheel_slots: 64,
        eviction_sample: DEFAULT_EVICTION_SAMPLE,
        hash_seed: 7,
    }
}

fn table(cfg: Config) -> T {
    Table::with_capacity(cfg).unwrap()
}

/// One connection's two endpoints.
#[derive(Clone, Copy)]
struct Conn {
    proto: u8,
    client: (IpAddr, u16),
    server: (IpAddr, u16),
}

impl Conn {
    fn tcp(client: (IpAddr, u16), server: (IpAddr, u16)) -> Conn {
        Conn {
            proto: TCP,
            client,
            server,
        }
    }

    fn with(proto: u8, client: (IpAddr, u16), server: (IpAddr, u16)) -> Conn {
        Conn {
            proto,
            client,
            server,
        }
    }

    fn packet(
        &self,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
        flags: TcpFlags,
        len: u32,
    ) -> PacketMeta {
        let (key, from) = FlowKey::new(self.proto, src.0, src.1, dst.0, dst.1);
        PacketMeta {
            key,
            from,
            tcp_flags: flags,
            len,
        }
    }

    fn c2s(&self, flags: TcpFlags, len: u32) -> PacketMeta {
        self.packet(self.client, self.server, flags, len)
    }

    fn s2c(&self, flags: TcpFlags, len: u32) -> PacketMeta {
        self.packet(self.server, self.client, flags, len)
    }

    fn key(&self) -> FlowKey {
        self.c2s(NONE, 0).key
    }
}

fn web(n: u8) -> Conn {
    Conn::tcp((v4(n), 40_000 + u16::from(n)), (v4(200), 443))
}

/// Tracks a packet that must be tracked; returns (direction, is_new, TCP state).
fn ok(t: &mut T, p: PacketMeta, now: Timestamp) -> (Dir, bool, Option<TcpState>) {
    match t.track(&p, now) {
        Ok(tr) => {
            assert_eq!(tr.session.key(), &p.key);
            assert_eq!(tr.session.dir_of(p.from), tr.dir);
            (tr.dir, tr.is_new, tr.session.tcp_state())
        }
        Err(e) => panic!("packet not tracked: {e:?}"),
    }
}

fn state(t: &T, c: &Conn) -> Option<TcpState> {
    t.get(&c.key()).and_then(|s| s.tcp_state())
}

fn snap(t: &T) -> ConntrackSnapshot {
    t.counters().snapshot()
}

/// Opens `c` with a full handshake at `now`.
fn handshake(t: &mut T, c: &Conn, now: Timestamp) {
    ok(t, c.c2s(SYN, 60), now);
    ok(t, c.s2c(SYN_ACK, 60), now);
    ok(t, c.c2s(ACK, 52), now);
}

// ---- keys -------------------------------------------------------------------------------

#[test]
fn key_is_the_same_both_ways_v4_and_v6() {
    for (a, b) in [(v4(1), v4(2)), (v6(1), v6(2)), (v4(9), v4(2))] {
        let (k1, s1) = FlowKey::new(TCP, a, 40_000, b, 80);
        let (k2, s2) = FlowKey::new(TCP, b, 80, a, 40_000);
        assert_eq!(k1, k2);
        assert_eq!(s2, s1.opposite());
        assert_eq!(k1.endpoint(s1), SocketAddr::new(a, 40_000));
        assert_eq!(k1.endpoint(s2), SocketAddr::new(b, 80));
        assert_eq!(k1.proto(), TCP);
        assert_eq!(k1.is_ipv6(), a.is_ipv6());
    }
}

#[test]
fn key_separates_protocol_ports_and_family() {
    let base = FlowKey::new(TCP, v4(1), 1000, v4(2), 80).0;
    assert_ne!(base, FlowKey::new(UDP, v4(1), 1000, v4(2), 80).0);
    assert_ne!(base, FlowKey::new(TCP, v4(1), 1001, v4(2), 80).0);
    assert_ne!(base, FlowKey::new(TCP, v4(1), 80, v4(2), 1000).0);
    let mapped = |d| IpAddr::V6(Ipv4Addr::new(10, 0, 0, d).to_ipv6_mapped());
    let v6_key = FlowKey::new(TCP, mapped(1), 1000, mapped(2), 80).0;
    assert_ne!(base, v6_key);
    assert_eq!(v6_key.endpoint(Side::Lo).ip(), mapped(1));
}

#[test]
fn key_orders_by_address_then_port_and_handles_self_flows() {
    // Same address: the lower port is the low side.
    let (k, from) = FlowKey::new(UDP, v4(1), 5000, v4(1), 53);
    assert_eq!(from, Side::Hi);
    assert_eq!(k.port(Side::Lo), 53);
    // A packet to itself: one endpoint, always from the low side.
    let (k, from) = FlowKey::new(UDP, v4(1), 53, v4(1), 53);
    assert_eq!(from, Side::Lo);
    assert_eq!(k.endpoint(Side::Lo), k.endpoint(Side::Hi));
}

// ---- one entry for both directions --------------------------------------------------------

#[test]
fn both_directions_hit_one_session_v4_and_v6() {
    for c in [
        Conn::tcp((v4(1), 40_000), (v4(2), 80)),
        Conn::tcp((v6(1), 40_000), (v6(2), 80)),
    ] {
        let mut t = table(exact(8));
        assert_eq!(
            ok(&mut t, c.c2s(SYN, 60), secs(1)),
            (Dir::ClientToServer, true, Some(TcpState::SynSent))
        );
        assert_eq!(
            ok(&mut t, c.s2c(SYN_ACK, 64), secs(1)),
            (Dir::ServerToClient, false, Some(TcpState::SynReceived))
        );
        assert_eq!(t.len(), 1);
        let s = t.get(&c.key()).unwrap();
        assert_eq!(s.client(), SocketAddr::new(c.client.0, c.client.1));
        assert_eq!(s.server(), SocketAddr::new(c.server.0, c.server.1));
        assert_eq!(
            s.counters(Dir::ClientToServer),
            DirCounters {
                packets: 1,
                bytes: 60
            }
        );
        assert_eq!(
            s.counters(Dir::ServerToClient),
            DirCounters {
                packets: 1,
                bytes: 64
            }
        );
        assert_eq!(s.first_seen(), secs(1));
        assert!(!s.picked_up());
        assert_eq!(
            snap(&t),
            ConntrackSnapshot {
                hits: 1,
                misses: 1,
                created: 1,
                active: 1,
                ..Default::default()
            }
        );
    }
}

#[test]
fn udp_and_icmp_client_is_the_first_sender() {
    let mut t = table(exact(8));
    let dns = Conn::with(UDP, (v4(1), 53_000), (v4(2), 53));
    // The server answers first as far as the table knows: it becomes the client.
    assert_eq!(
        ok(&mut t, dns.s2c(NONE, 100), secs(1)),
        (Dir::ClientToServer, true, None)
    );
    assert_eq!(
        ok(&mut t, dns.c2s(NONE, 40), secs(1)).0,
        Dir::ServerToClient
    );
    assert_eq!(
        t.get(&dns.key()).unwrap().client(),
        SocketAddr::new(v4(2), 53)
    );
    // ICMP echo: the identifier is both sides' port.
    let ping = Conn::with(ICMP, (v4(1), 0x1234), (v4(2), 0x1234));
    assert_eq!(
        ok(&mut t, ping.c2s(NONE, 84), secs(1)).0,
        Dir::ClientToServer
    );
    assert_eq!(
        ok(&mut t, ping.s2c(NONE, 84), secs(1)).0,
        Dir::ServerToClient
    );
    assert_eq!(t.len(), 2);
    // TCP flags are ignored outside TCP: a "RST" UDP packet opens a flow.
    let odd = Conn::with(UDP, (v4(3), 1), (v4(4), 2));
    assert!(ok(&mut t, odd.c2s(RST, 1), secs(1)).1);
}

// ---- TCP state machine ---------------------------------------------------------------------

#[test]
fn tcp_handshake_data_and_fin_fin() {
    let mut t = table(exact(8));
    let c = web(1);
    let ok_at = |t: &mut T, p, s| ok(t, p, secs(s));
    assert_eq!(ok_at(&mut t, c.c2s(SYN, 60), 10).2, Some(TcpState::SynSent));
    assert_eq!(t.get(&c.key()).unwrap().deadline(), secs(10 + 21));
    // A retransmitted SYN changes nothing but the deadline.
    assert_eq!(ok_at(&mut t, c.c2s(SYN, 60), 11).2, Some(TcpState::SynSent));
    assert_eq!(
        ok_at(&mut t, c.s2c(SYN_ACK, 60), 12).2,
        Some(TcpState::SynReceived)
    );
    assert_eq!(t.get(&c.key()).unwrap().deadline(), secs(12 + 21));
    // The server's retransmitted SYN+ACK as well.
    assert_eq!(
        ok_at(&mut t, c.s2c(SYN_ACK, 60), 12).2,
        Some(TcpState::SynReceived)
    );
    assert_eq!(
        ok_at(&mut t, c.c2s(ACK, 52), 13).2,
        Some(TcpState::Established)
    );
    assert_eq!(t.get(&c.key()).unwrap().deadline(), secs(13 + 1201));
    assert_eq!(
        ok_at(&mut t, c.c2s(PSH_ACK, 500), 14).2,
        Some(TcpState::Established)
    );
    assert_eq!(
        ok_at(&mut t, c.s2c(PSH_ACK, 1500), 14).2,
        Some(TcpState::Established)
    );
    assert!(t.get(&c.key()).unwrap().is_assured());
    // Client closes first.
    assert_eq!(
        ok_at(&mut t, c.c2s(FIN_ACK, 52), 20).2,
        Some(TcpState::FinWait)
    );
    assert_eq!(t.get(&c.key()).unwrap().deadline(), secs(20 + 91));
    // Its retransmission and the server's ACK keep the connection half-closed.
    assert_eq!(
        ok_at(&mut t, c.c2s(FIN_ACK, 52), 21).2,
        Some(TcpState::FinWait)
    );
    assert_eq!(
        ok_at(&mut t, c.s2c(PSH_ACK, 700), 22).2,
        Some(TcpState::FinWait)
    );
    assert!(t.get(&c.key()).unwrap().is_assured());
    assert_eq!(
        ok_at(&mut t, c.s2c(FIN_ACK, 52), 23).2,
        Some(TcpState::TimeWait)
    );
    assert_eq!(t.get(&c.key()).unwrap().deadline(), secs(23 + 16));
    assert!(!t.get(&c.key()).unwrap().is_assured());
    assert_eq!(
        ok_at(&mut t, c.c2s(ACK, 52), 24).2,
        Some(TcpState::TimeWait)
    );
    let s = t.get(&c.key()).unwrap();
    assert_eq!(s.deadline(), secs(24 + 16));
    assert_eq!(s.last_seen(), secs(24));
    assert_eq!(s.first_seen(), secs(10));
    assert_eq!(
        s.counters(Dir::ClientToServer),
        DirCounters {
            packets: 7,
            bytes: 60 + 60 + 52 + 500 + 52 + 52 + 52
        }
    );
    assert_eq!(
        s.counters(Dir::ServerToClient),
        DirCounters {
            packets: 5,
            bytes: 60 + 60 + 1500 + 700 + 52
        }
    );
    assert_eq!(snap(&t).hits, 11);
    assert_eq!(snap(&t).created, 1);
}

#[test]
fn server_may_close_first() {
    let mut t = table(exact(8));
    let c = web(1);
    handshake(&mut t, &c, secs(1));
    assert_eq!(
        ok(&mut t, c.s2c(FIN_ACK, 52), secs(2)).2,
        Some(TcpState::FinWait)
    );
    assert_eq!(
        ok(&mut t, c.s2c(FIN_ACK, 52), secs(2)).2,
        Some(TcpState::FinWait)
    );
    assert_eq!(
        ok(&mut t, c.c2s(FIN_ACK, 52), secs(3)).2,
        Some(TcpState::TimeWait)
    );
}

#[test]
fn fin_before_the_handshake_completes_half_closes() {
    let mut t = table(exact(8));
    let c = web(1);
    ok(&mut t, c.c2s(SYN, 60), secs(1));
    assert_eq!(
        ok(&mut t, c.c2s(FIN_ACK, 52), secs(2)).2,
        Some(TcpState::FinWait)
    );
}

#[test]
fn rst_closes_from_every_state() {
    let opens: [Path<'_>; 5] = [
        &[(true, SYN)],
        &[(true, SYN), (false, SYN_ACK)],
        &[(true, SYN), (false, SYN_ACK), (true, ACK)],
        &[(true, SYN), (false, SYN_ACK), (true, ACK), (true, FIN_ACK)],
        &[
            (true, SYN),
            (false, SYN_ACK),
            (true, ACK),
            (true, FIN_ACK),
            (false, FIN_ACK),
        ],
    ];
    for (n, steps) in opens.iter().enumerate() {
        for (rst, from_client) in [(RST, true), (RST_ACK, false)] {
            let mut t = table(exact(8));
            let c = web(1);
            for &(c2s, f) in *steps {
                ok(
                    &mut t,
                    if c2s { c.c2s(f, 60) } else { c.s2c(f, 60) },
                    secs(1),
                );
            }
            let p = if from_client {
                c.c2s(rst, 40)
            } else {
                c.s2c(rst, 40)
            };
            assert_eq!(
                ok(&mut t, p, secs(2)).2,
                Some(TcpState::Closed),
                "open steps {n}"
            );
            assert_eq!(t.get(&c.key()).unwrap().deadline(), secs(2 + 6));
            // Nothing but a SYN leaves Closed; ACKs and FINs refresh its 6 s.
            assert_eq!(
                ok(&mut t, c.s2c(ACK, 40), secs(3)).2,
                Some(TcpState::Closed)
            );
            assert_eq!(
                ok(&mut t, c.c2s(FIN_ACK, 40), secs(4)).2,
                Some(TcpState::Closed)
            );
            assert_eq!(t.get(&c.key()).unwrap().deadline(), secs(4 + 6));
            assert_eq!(t.expire(secs(10) - Duration::from_nanos(1)), 0);
            assert_eq!(t.expire(secs(10)), 1);
            assert!(t.is_empty());
        }
    }
}

#[test]
fn simultaneous_open() {
    // RFC 9293 figure 8: both SYNs cross, then both SYN+ACKs.
    let mut t = table(exact(8));
    let c = web(1);
    assert_eq!(
        ok(&mut t, c.c2s(SYN, 60), secs(1)).2,
        Some(TcpState::SynSent)
    );
    assert_eq!(
        ok(&mut t, c.s2c(SYN, 60), secs(1)),
        (Dir::ServerToClient, false, Some(TcpState::SynReceived))
    );
    assert_eq!(
        ok(&mut t, c.c2s(SYN_ACK, 60), secs(1)).2,
        Some(TcpState::SynReceived)
    );
    assert_eq!(
        ok(&mut t, c.s2c(SYN_ACK, 60), secs(1)).2,
        Some(TcpState::SynReceived)
    );
    // Either side's ACK completes it; the first SYN's sender stays the client.
    assert_eq!(
        ok(&mut t, c.s2c(ACK, 52), secs(2)).2,
        Some(TcpState::Established)
    );
    assert_eq!(
        t.get(&c.key()).unwrap().client(),
        SocketAddr::new(c.client.0, c.client.1)
    );
    assert_eq!(snap(&t).created, 1);
}

#[test]
fn client_syn_ack_or_server_ack_do_not_advance_syn_sent() {
    let mut t = table(exact(8));
    let c = web(1);
    ok(&mut t, c.c2s(SYN, 60), secs(1));
    assert_eq!(
        ok(&mut t, c.c2s(SYN_ACK, 60), secs(1)).2,
        Some(TcpState::SynSent)
    );
    assert_eq!(
        ok(&mut t, c.c2s(ACK, 60), secs(1)).2,
        Some(TcpState::SynSent)
    );
    assert_eq!(
        ok(&mut t, c.s2c(ACK, 60), secs(1)).2,
        Some(TcpState::SynSent)
    );
}

#[test]
fn impossible_flags_change_no_state() {
    let mut t = table(exact(8));
    let c = web(1);
    handshake(&mut t, &c, secs(1));
    for f in [
        TcpFlags(0x03),
        TcpFlags(0x06),
        TcpFlags::FIN,
        NONE,
        TcpFlags(0x29),
    ] {
        assert_eq!(
            ok(&mut t, c.c2s(f, 40), secs(2)).2,
            Some(TcpState::Established),
            "{f:?}"
        );
    }
    // A SYN inside a live connection is no reopen either.
    assert_eq!(
        ok(&mut t, c.s2c(SYN, 40), secs(2)),
        (Dir::ServerToClient, false, Some(TcpState::Established))
    );
    let s = t.get(&c.key()).unwrap();
    assert_eq!(s.counters(Dir::ClientToServer).packets, 2 + 5);
    assert_eq!(s.deadline(), secs(2 + 1201));
}

#[test]
fn syn_reopens_a_finished_connection_in_place() {
    for finish in [&[FIN_ACK, FIN_ACK][..], &[RST][..]] {
        let mut t = table(exact(8));
        let c = web(1);
        handshake(&mut t, &c, secs(1));
        ok(&mut t, c.c2s(PSH_ACK, 100), secs(1));
        t.get_mut(&c.key()).unwrap().ext.verdict = 9;
        ok(&mut t, c.c2s(finish[0], 40), secs(2));
        if let Some(&f) = finish.get(1) {
            ok(&mut t, c.s2c(f, 40), secs(2));
        }
        // The old server connects back from the same port: a new connection, its client the
        // SYN's sender.
        assert_eq!(
            ok(&mut t, c.s2c(SYN, 60), secs(3)),
            (Dir::ClientToServer, true, Some(TcpState::SynSent))
        );
        let s = t.get(&c.key()).unwrap();
        assert_eq!(s.client(), SocketAddr::new(c.server.0, c.server.1));
        assert_eq!(s.first_seen(), secs(3));
        assert_eq!(
            s.counters(Dir::ClientToServer),
            DirCounters {
                packets: 1,
                bytes: 60
            }
        );
        assert_eq!(s.counters(Dir::ServerToClient), DirCounters::default());
        assert_eq!(s.ext, Ext::default());
        assert_eq!(s.deadline(), secs(3 + 21));
        let n = snap(&t);
        assert_eq!((n.created, n.reopened, n.active), (1, 1, 1));
    }
}

// ---- timeouts --------------------------------------------------------------------------------

/// Segments in order: (client to server?, flags).
type Path<'a> = &'a [(bool, TcpFlags)];

/// Drives a fresh flow into each state at `t0`; returns the flow and the timeout that applies.
fn into_each_state(t: &mut T, t0: Timestamp) -> Vec<(&'static str, Conn, u64)> {
    let mut out = Vec::new();
    let steps: [(&str, Path<'_>, u64); 6] = [
        ("syn_sent", &[(true, SYN)], 21),
        ("syn_received", &[(true, SYN), (false, SYN_ACK)], 21),
        (
            "established",
            &[(true, SYN), (false, SYN_ACK), (true, ACK)],
            1201,
        ),
        (
            "fin_wait",
            &[(true, SYN), (false, SYN_ACK), (true, ACK), (false, FIN_ACK)],
            91,
        ),
        (
            "time_wait",
            &[
                (true, SYN),
                (false, SYN_ACK),
                (true, ACK),
                (false, FIN_ACK),
                (true, FIN_ACK),
            ],
            16,
        ),
        ("closed", &[(true, SYN), (false, SYN_ACK), (true, RST)], 6),
    ];
    for (n, (name, path, timeout)) in steps.into_iter().enumerate() {
        let c = web(n as u8);
        for &(c2s, f) in path {
            ok(t, if c2s { c.c2s(f, 60) } else { c.s2c(f, 60) }, t0);
        }
        assert_eq!(state(t, &c).map(TcpState::name), Some(name));
        out.push((name, c, timeout));
    }
    for (name, proto, timeout) in [("udp", UDP, 31), ("icmp", ICMP, 7), ("other", GRE, 33)] {
        let c = Conn::with(proto, (v4(100), 0), (v4(101), 0));
        ok(t, c.c2s(NONE, 60), t0);
        out.push((name, c, timeout));
    }
    out
}

#[test]
fn each_state_expires_exactly_at_its_deadline() {
    let t0 = secs(100);
    let mut t = table(exact(16));
    let flows = into_each_state(&mut t, t0);
    let mut expected_len = flows.len();
    let mut timeouts: Vec<u64> = flows.iter().map(|f| f.2).collect();
    timeouts.sort_unstable();
    timeouts.dedup();
    for timeout in timeouts {
        let due: Vec<_> = flows.iter().filter(|f| f.2 == timeout).collect();
        let deadline = t0 + Duration::from_secs(timeout);
        let before = deadline - Duration::from_nanos(1);
        for (name, c, _) in &due {
            assert_eq!(t.get(&c.key()).unwrap().deadline(), deadline, "{name}");
            assert!(!t.get(&c.key()).unwrap().is_expired(before));
        }
        assert_eq!(t.expire(before), 0, "{:?} expired early", due[0].0);
        let mut reported = Vec::new();
        assert_eq!(
            t.expire_with(deadline, |s| reported.push(*s.key())),
            due.len()
        );
        for (name, c, _) in &due {
            assert!(reported.contains(&c.key()), "{name}");
            assert!(t.get(&c.key()).is_none(), "{name}");
        }
        expected_len -= due.len();
        assert_eq!(t.len(), expected_len);
    }
    let n = snap(&t);
    assert_eq!((n.created, n.expired, n.active), (9, 9, 0));
}

#[test]
fn default_timeouts_match_the_documented_table() {
    let d = Timeouts::default();
    let s = Duration::from_secs;
    assert_eq!(
        [
            d.opening,
            d.established,
            d.half_closed,
            d.time_wait,
            d.closed,
            d.udp,
            d.icmp,
            d.other
        ],
        [s(20), s(1200), s(90), s(15), s(5), s(30), s(5), s(30)]
    );
}

#[test]
fn packets_push_the_deadline_out() {
    let mut t = table(exact(8));
    let c = Conn::with(UDP, (v4(1), 5000), (v4(2), 53));
    ok(&mut t, c.c2s(NONE, 1), secs(0));
    ok(&mut t, c.s2c(NONE, 1), secs(30));
    assert_eq!(t.expire(secs(31)), 0);
    assert_eq!(t.expire(secs(61) - Duration::from_nanos(1)), 0);
    assert_eq!(t.expire(secs(61)), 1);
}

#[test]
fn coarse_tick_reclaims_within_a_tick_and_never_early() {
    // The default 100 ms tick: deadlines stay exact, reclaiming waits for the tick boundary.
    let cfg = Config {
        capacity: 8,
        hash_seed: 1,
        ..Config::default()
    };
    let mut t = table(cfg);
    let c = Conn::with(UDP, (v4(1), 5000), (v4(2), 53));
    ok(&mut t, c.c2s(NONE, 1), Timestamp::from_millis(50));
    let deadline = Timestamp::from_millis(30_050);
    assert_eq!(t.get(&c.key()).unwrap().deadline(), deadline);
    assert_eq!(t.expire(Timestamp::from_millis(30_049)), 0);
    // Dead from its deadline on, reclaimed at the next tick boundary.
    assert!(t.get(&c.key()).unwrap().is_expired(deadline));
    assert_eq!(t.expire(deadline), 0);
    assert_eq!(t.expire(Timestamp::from_millis(30_099)), 0);
    assert_eq!(t.expire(Timestamp::from_millis(30_100)), 1);
    assert_eq!(snap(&t).expired, 1);
}

#[test]
fn a_packet_never_revives_a_dead_session() {
    let cfg = Config {
        capacity: 8,
        hash_seed: 1,
        timeouts: distinct_timeouts(),
        ..Config::default()
    };
    let mut t = table(cfg);
    let c = Conn::with(UDP, (v4(1), 5000), (v4(2), 53));
    ok(&mut t, c.c2s(NONE, 1), secs(0));
    t.get_mut(&c.key()).unwrap().ext.verdict = 3;
    // At its deadline, before the wheel reclaimed it, the reply starts a new session whose
    // client is the reply's sender.
    assert_eq!(
        ok(&mut t, c.s2c(NONE, 1), secs(31)),
        (Dir::ClientToServer, true, None)
    );
    let s = t.get(&c.key()).unwrap();
    assert_eq!(s.ext, Ext::default());
    assert_eq!(s.first_seen(), secs(31));
    assert_eq!(s.client(), SocketAddr::new(v4(2), 53));
    let n = snap(&t);
    assert_eq!(
        (n.created, n.expired, n.misses, n.hits, n.active),
        (2, 1, 2, 0, 1)
    );
    // The wheel frees the new session once, at its own deadline.
    assert_eq!(t.expire(secs(61)), 0);
    assert_eq!(t.expire(secs(62)), 1);
    assert_eq!(snap(&t).expired, 2);

    // A dead TCP session hit by a RST is freed and the RST is stray.
    let w = web(1);
    handshake(&mut t, &w, secs(100));
    assert_eq!(
        t.track(&w.c2s(RST, 40), secs(1301)).err(),
        Some(Untracked::Rst)
    );
    assert!(t.get(&w.key()).is_none());
    let n = snap(&t);
    assert_eq!((n.created, n.expired, n.stray, n.active), (3, 3, 1, 0));
    assert_eq!(t.expire(secs(5000)), 0);
}

// ---- mid-stream pickup and strays -----------------------------------------------------------

#[test]
fn mid_stream_pickup_guesses_the_client_by_port() {
    let mut t = table(exact(8));
    let c = web(1);
    // The server's data, first thing seen: the client is the high-port side anyway.
    assert_eq!(
        ok(&mut t, c.s2c(PSH_ACK, 1000), secs(1)),
        (Dir::ServerToClient, true, Some(TcpState::Established))
    );
    let s = t.get(&c.key()).unwrap();
    assert!(s.picked_up());
    assert_eq!(s.client(), SocketAddr::new(c.client.0, c.client.1));
    assert_eq!(s.deadline(), secs(1 + 1201));
    assert!(!s.is_assured(), "one-way pickups may be evicted");
    ok(&mut t, c.c2s(ACK, 52), secs(1));
    assert!(t.get(&c.key()).unwrap().is_assured());
    // Equal ports: the sender is the client.
    let p2p = Conn::tcp((v4(5), 7000), (v4(6), 7000));
    assert_eq!(ok(&mut t, p2p.s2c(ACK, 52), secs(1)).0, Dir::ClientToServer);
    assert_eq!(
        t.get(&p2p.key()).unwrap().client(),
        SocketAddr::new(v4(6), 7000)
    );
    let n = snap(&t);
    assert_eq!((n.created, n.picked_up, n.misses, n.hits), (2, 2, 2, 1));
}

#[test]
fn stray_segments_of_unknown_flows_are_not_tracked() {
    let mut t = table(exact(8));
    let c = web(1);
    let cases = [
        (RST, Untracked::Rst),
        (RST_ACK, Untracked::Rst),
        (FIN_ACK, Untracked::Fin),
        (TcpFlags(0x19), Untracked::Fin),
        (SYN_ACK, Untracked::SynAck),
        (TcpFlags::FIN, Untracked::BadFlags),
        (NONE, Untracked::BadFlags),
        (TcpFlags(0x29), Untracked::BadFlags),
        (TcpFlags(0x03), Untracked::BadFlags),
        (TcpFlags(0x06), Untracked::BadFlags),
    ];
    for (f, why) in cases {
        assert_eq!(t.track(&c.c2s(f, 40), secs(1)).err(), Some(why), "{f:?}");
    }
    assert!(t.is_empty());
    assert!(t.get(&c.key()).is_none());
    let n = snap(&t);
    assert_eq!((n.stray, n.misses, n.created, n.refused), (10, 10, 0, 0));
    assert_eq!(Untracked::Rst.name(), "stray_rst");
}

// ---- capacity --------------------------------------------------------------------------------

#[test]
fn full_table_evicts_the_earliest_unassured_session() {
    let mut t = table(exact(4));
    let (a, b, x, y) = (web(1), web(2), web(3), web(4));
    handshake(&mut t, &a, secs(1));
    handshake(&mut t, &b, secs(1));
    ok(&mut t, x.c2s(SYN, 60), secs(2));
    ok(&mut t, y.c2s(SYN, 60), secs(3));
    assert_eq!(t.len(), 4);
    let z = web(5);
    assert!(ok(&mut t, z.c2s(SYN, 60), secs(4)).1);
    assert!(
        t.get(&x.key()).is_none(),
        "the oldest half-open connection goes"
    );
    for kept in [&a, &b, &y, &z] {
        assert!(t.get(&kept.key()).is_some());
    }
    let n = snap(&t);
    assert_eq!(
        (n.created, n.evicted, n.expired, n.refused, n.active),
        (5, 1, 0, 0, 4)
    );
    assert_eq!(
        t.len() as u64,
        n.created - n.expired - n.evicted - n.removed
    );
}

#[test]
fn full_table_of_assured_sessions_refuses_new_flows() {
    let mut t = table(exact(2));
    let (a, b, c) = (web(1), web(2), web(3));
    handshake(&mut t, &a, secs(1));
    handshake(&mut t, &b, secs(1));
    assert_eq!(
        t.track(&c.c2s(SYN, 60), secs(2)).err(),
        Some(Untracked::TableFull)
    );
    assert_eq!(
        t.track(&c.c2s(SYN, 60), secs(2)).err(),
        Some(Untracked::TableFull)
    );
    // A stray is not a refusal: it never needs room.
    assert_eq!(
        t.track(&c.c2s(RST, 60), secs(2)).err(),
        Some(Untracked::Rst)
    );
    let n = snap(&t);
    assert_eq!(
        (n.refused, n.stray, n.evicted, n.created, n.active),
        (2, 1, 0, 2, 2)
    );
    // Once a session closes it may be evicted.
    ok(&mut t, a.c2s(RST, 40), secs(3));
    assert!(ok(&mut t, c.c2s(SYN, 60), secs(3)).1);
    assert!(t.get(&a.key()).is_none());
    assert_eq!(snap(&t).evicted, 1);
    // And a removal makes room directly.
    assert_eq!(t.remove(&b.key()), Some(Ext::default()));
    assert!(ok(&mut t, web(4).c2s(SYN, 60), secs(3)).1);
    let n = snap(&t);
    assert_eq!(
        (n.created, n.evicted, n.removed, n.refused, n.active),
        (4, 1, 1, 2, 2)
    );
}

#[test]
fn full_table_reclaims_a_dead_session_before_evicting() {
    // Coarse tick: at 30.07 s the UDP session (deadline 30.05 s) is dead but its tick has not
    // come; making room finds it first and counts it expired, not evicted.
    let cfg = Config {
        capacity: 2,
        hash_seed: 1,
        ..Config::default()
    };
    let mut t = table(cfg);
    let udp = Conn::with(UDP, (v4(1), 5000), (v4(2), 53));
    ok(&mut t, udp.c2s(NONE, 1), Timestamp::from_millis(50));
    let w = web(1);
    handshake(&mut t, &w, Timestamp::from_millis(60));
    let z = web(2);
    assert!(ok(&mut t, z.c2s(SYN, 60), Timestamp::from_millis(30_070)).1);
    assert!(t.get(&udp.key()).is_none());
    assert!(t.get(&w.key()).is_some());
    let n = snap(&t);
    assert_eq!((n.created, n.expired, n.evicted, n.active), (3, 1, 0, 2));
}

#[test]
fn eviction_sample_zero_never_evicts() {
    let mut t = table(Config {
        eviction_sample: 0,
        ..exact(1)
    });
    ok(&mut t, web(1).c2s(SYN, 60), secs(1));
    assert_eq!(
        t.track(&web(2).c2s(SYN, 60), secs(2)).err(),
        Some(Untracked::TableFull)
    );
    // Expiry still makes room.
    assert!(ok(&mut t, web(2).c2s(SYN, 60), secs(1 + 21)).1);
    let n = snap(&t);
    assert_eq!((n.created, n.expired, n.evicted, n.refused), (2, 1, 0, 1));
}

#[test]
fn flood_of_syns_cycles_through_a_full_table_without_touching_talkers() {
    let mut t = table(exact(16));
    let talker = web(200);
    handshake(&mut t, &talker, secs(1));
    for i in 0..1000u32 {
        let c = Conn::tcp((v4(50), 1024 + i as u16), (v4(200), 80));
        assert!(
            ok(
                &mut t,
                c.c2s(SYN, 60),
                secs(2) + Duration::from_micros(u64::from(i))
            )
            .1
        );
    }
    assert!(t.get(&talker.key()).is_some());
    let n = snap(&t);
    assert_eq!(
        (n.created, n.evicted, n.refused, n.active),
        (1001, 1001 - 16, 0, 16)
    );
}

// ---- the wheel through the table --------------------------------------------------------------

#[test]
fn wheel_handles_far_deadlines_and_many_sessions() {
    // 1 ms ticks, 64 slots: one rotation is 64 ms, so 1200 s sessions circle ~19 000 times
    // and get re-filed on the way; none may leave early, all must leave on time.
    let mut t = table(Config {
        capacity: 4096,
        timeouts: distinct_timeouts(),
        tick: Duration::from_millis(1),
        wheel_slots: 64,
        eviction_sample: 16,
        hash_seed: 3,
    });
    let mut deadlines = Vec::new();
    for i in 0..3000u32 {
        let c = Conn::tcp(
            (v4((i % 250) as u8), 1024 + (i / 250) as u16),
            (v4(251), 443),
        );
        let at = Timestamp::from_millis(u64::from(i)); // spread over 3 s
        ok(&mut t, c.s2c(ACK, 52), at);
        // A third of them are refreshed at 600 s.
        if i % 3 == 0 {
            ok(&mut t, c.c2s(ACK, 52), secs(600));
        }
        let d = t.get(&c.key()).unwrap().deadline();
        deadlines.push(d);
    }
    let tick = Duration::from_millis(1);
    let floor = |now: Timestamp| Timestamp::from_nanos(now.as_nanos() / 1_000_000 * 1_000_000);
    let mut now = secs(0);
    let mut freed = 0;
    while now < secs(1900) {
        now = now + Duration::from_millis(997);
        let got = t.expire(now);
        let due = deadlines.iter().filter(|&&d| d <= floor(now)).count();
        freed += got;
        assert_eq!(freed, due, "at {now:?}");
        assert!(t.iter().all(|s| s.deadline() > floor(now)));
    }
    assert!(t.is_empty());
    assert_eq!(snap(&t).expired, 3000);
    let _ = tick;
}

#[test]
fn default_wheel_expires_an_idle_established_session_on_time() {
    let mut t = table(Config {
        capacity: 8,
        hash_seed: 1,
        ..Config::default()
    });
    let c = web(1);
    handshake(&mut t, &c, Timestamp::from_millis(1));
    // The worker calls expire once per burst; here once per simulated second.
    for s in 1..1200 {
        assert_eq!(t.expire(secs(s)), 0);
    }
    assert_eq!(t.expire(Timestamp::from_millis(1_200_000)), 0);
    assert_eq!(t.expire(Timestamp::from_millis(1_200_100)), 1);
}

#[test]
fn shorter_timeouts_are_honoured_with_a_long_wheel_rotation() {
    // The default wheel (27 minutes a rotation) files an established session 1200 s out; a
    // RST or FIN must not leave it there.
    let mut t = table(Config {
        capacity: 8,
        hash_seed: 1,
        ..Config::default()
    });
    let (a, b) = (web(1), web(2));
    handshake(&mut t, &a, secs(0));
    handshake(&mut t, &b, secs(0));
    ok(&mut t, a.s2c(RST, 40), secs(10));
    ok(&mut t, b.c2s(FIN_ACK, 40), secs(10));
    assert_eq!(t.expire(secs(15) - Duration::from_nanos(1)), 0);
    assert_eq!(t.expire(secs(15)), 1);
    assert!(t.get(&a.key()).is_none());
    assert_eq!(t.expire(secs(100) - Duration::from_nanos(1)), 0);
    assert_eq!(t.expire(secs(100)), 1);
    assert!(t.is_empty());
    // A clock that goes back shortens the deadline too.
    let c = web(3);
    ok(&mut t, c.c2s(ACK, 40), secs(1000));
    ok(&mut t, c.c2s(ACK, 40), secs(200));
    assert_eq!(t.get(&c.key()).unwrap().deadline(), secs(1400));
    assert_eq!(t.expire(secs(1400)), 1);
}

// ---- the rest of the API ----------------------------------------------------------------------

#[test]
fn remove_returns_ext_and_frees_once() {
    let mut t = table(exact(4));
    let c = web(1);
    handshake(&mut t, &c, secs(1));
    t.get_mut(&c.key()).unwrap().ext.verdict = 42;
    assert_eq!(t.remove(&c.key()), Some(Ext { verdict: 42 }));
    assert_eq!(t.remove(&c.key()), None);
    assert!(t.is_empty());
    assert_eq!(t.expire(secs(5000)), 0);
    let n = snap(&t);
    assert_eq!((n.created, n.removed, n.expired, n.active), (1, 1, 0, 0));
}

#[test]
fn iteration_lists_sessions_in_slab_order() {
    let mut t = table(exact(8));
    for n in 1..=4 {
        ok(&mut t, web(n).c2s(SYN, 60), secs(1));
    }
    t.remove(&web(2).key());
    let ports: Vec<u16> = t.iter().map(|s| s.client().port()).collect();
    assert_eq!(ports, vec![40_001, 40_003, 40_004]);
    for s in t.iter_mut() {
        s.ext.verdict = 1;
    }
    assert!(t.iter().all(|s| s.ext.verdict == 1));
    assert_eq!(t.capacity(), 8);
}

#[test]
fn config_is_validated() {
    let err = |cfg: Config| Table::<()>::with_capacity(cfg).err();
    assert_eq!(err(exact(0)), Some(ConfigError::Capacity(0)));
    assert_eq!(
        err(exact(MAX_CAPACITY + 1)),
        Some(ConfigError::Capacity(MAX_CAPACITY + 1))
    );
    assert_eq!(
        err(Config {
            tick: Duration::ZERO,
            ..exact(1)
        }),
        Some(ConfigError::ZeroTick)
    );
    assert_eq!(
        err(Config {
            wheel_slots: 48,
            ..exact(1)
        }),
        Some(ConfigError::WheelSlots(48))
    );
    let mut timeouts = distinct_timeouts();
    timeouts.time_wait = Duration::ZERO;
    assert_eq!(
        err(Config {
            timeouts,
            ..exact(1)
        }),
        Some(ConfigError::ZeroTimeout("time_wait"))
    );
    assert_eq!(
        ConfigError::ZeroTimeout("udp").to_string(),
        "conntrack timeout `udp` must not be zero"
    );
    let t = Table::<()>::with_capacity(Config::with_capacity(3)).unwrap();
    assert_eq!(t.capacity(), 3);
    assert_eq!(Config::default().capacity, DEFAULT_CAPACITY);
}

// ---- random traffic ----------------------------------------------------------------------------

/// xorshift64*: a deterministic generator, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<X: Copy>(&mut self, xs: &[X]) -> X {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn check_books(t: &T, tracked: u64) {
    let n = snap(t);
    assert_eq!(
        t.len() as u64,
        n.created - n.expired - n.evicted - n.removed
    );
    assert_eq!(n.active, t.len() as u64);
    assert!(t.len() <= t.capacity());
    assert_eq!(n.lookups(), tracked);
    assert_eq!(n.misses, n.created + n.stray + n.refused);
    assert_eq!(t.iter().count(), t.len());
    for s in t.iter() {
        let found = t.get(s.key()).map(|f| f.key());
        assert_eq!(found, Some(s.key()));
    }
}

fn random_traffic(seed: u64, cfg: Config, steps: usize, monotonic: bool) {
    let mut rng = Rng(seed);
    let mut t = table(cfg);
    let addrs = [v4(1), v4(2), v4(3), v6(1), v6(2)];
    let ports = [0u16, 22, 443, 40_000, 65_535];
    let protos = [TCP, TCP, TCP, UDP, ICMP, GRE];
    let flags = [SYN, SYN_ACK, ACK, PSH_ACK, FIN_ACK, RST, RST_ACK];
    let mut now = Timestamp::from_nanos(rng.below(1 << 40));
    let mut tracked = 0;
    for _ in 0..steps {
        now = match rng.below(100) {
            0..=59 => now,
            60..=94 => now + Duration::from_millis(rng.below(3000)),
            95..=97 => now + Duration::from_secs(rng.below(2000)),
            _ if monotonic => now + Duration::from_nanos(rng.below(1000)),
            _ => Timestamp::from_nanos(rng.next() >> rng.below(64)),
        };
        let src = (rng.pick(&addrs), rng.pick(&ports));
        let dst = (rng.pick(&addrs), rng.pick(&ports));
        let (key, from) = FlowKey::new(rng.pick(&protos), src.0, src.1, dst.0, dst.1);
        match rng.below(20) {
            0..=2 => {
                let before = t.len();
                let freed = t.expire(now);
                assert_eq!(t.len(), before - freed);
                if monotonic {
                    // Everything due by the last tick boundary is gone, nothing later.
                    let tick = cfg.tick.as_nanos() as u64;
                    let boundary = Timestamp::from_nanos(now.as_nanos() / tick * tick);
                    assert!(t.iter().all(|s| !s.is_expired(boundary)));
                }
            }
            3 => {
                let had = t.get(&key).is_some();
                assert_eq!(t.remove(&key).is_some(), had);
            }
            _ => {
                let tcp_flags = if rng.below(4) == 0 {
                    TcpFlags(rng.next() as u8)
                } else {
                    rng.pick(&flags)
                };
                let len = rng.next() as u32;
                let pkt = PacketMeta {
                    key,
                    from,
                    tcp_flags,
                    len,
                };
                tracked += 1;
                if let Ok(tr) = t.track(&pkt, now) {
                    assert_eq!(tr.session.key(), &key);
                    assert_eq!(tr.session.dir_of(from), tr.dir);
                    assert!(!tr.session.is_expired(now));
                    assert_eq!(tr.session.last_seen(), now);
                    assert_eq!(tr.session.tcp_state().is_some(), key.proto() == TCP);
                    tr.session.ext.verdict = tr.session.ext.verdict.wrapping_add(1);
                }
            }
        }
        check_books(&t, tracked);
    }
}

#[test]
fn random_traffic_never_panics_and_keeps_the_books() {
    let exact_cfg = |capacity, eviction_sample| Config {
        eviction_sample,
        ..exact(capacity)
    };
    let coarse = |capacity, eviction_sample| Config {
        capacity,
        eviction_sample,
        wheel_slots: 8,
        tick: Duration::from_millis(100),
        hash_seed: 99,
        timeouts: Timeouts::default(),
    };
    // A long rotation: sessions are not revisited every call, so lazy re-filing must be
    // right on its own.
    let long = |capacity| Config {
        capacity,
        eviction_sample: 8,
        wheel_slots: 1 << 14,
        tick: Duration::from_millis(1),
        hash_seed: 5,
        timeouts: Timeouts::default(),
    };
    let cases = [
        long(16),
        long(300),
        exact_cfg(1, 16),
        exact_cfg(7, 0),
        exact_cfg(64, 4),
        exact_cfg(1000, 16),
        coarse(5, 1),
        coarse(64, 16),
    ];
    for (i, cfg) in cases.into_iter().enumerate() {
        for seed in 1..=3u64 {
            random_traffic(seed * 7919 + i as u64, cfg, 4000, true);
            random_traffic(seed * 104_729 + i as u64, cfg, 1000, false);
        }
    }
}

#[test]
fn layout_is_compact() {
    assert_eq!(size_of::<FlowKey>(), 40);
    assert_eq!(size_of::<Session<()>>(), 128);
    assert_eq!(size_of::<Session<[u64; 3]>>(), 128);
    assert_eq!(align_of::<ConntrackCounters>(), 64);
}

#[test]
fn byte_constructors_match_ipaddr_ones() {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let (a, b) = ([198, 18, 0, 1], [198, 18, 0, 2]);
    for (sp, dp) in [(1000, 80), (80, 1000), (5, 5)] {
        let by_ip = FlowKey::new(
            6,
            IpAddr::V4(Ipv4Addr::from(a)),
            sp,
            IpAddr::V4(Ipv4Addr::from(b)),
            dp,
        );
        assert_eq!(FlowKey::from_v4(6, a, sp, b, dp), by_ip);
        assert_eq!(
            FlowKey::from_v4(6, b, dp, a, sp),
            FlowKey::new(
                6,
                IpAddr::V4(Ipv4Addr::from(b)),
                dp,
                IpAddr::V4(Ipv4Addr::from(a)),
                sp
            )
        );
    }
    let (x, y) = (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
    );
    assert_eq!(
        FlowKey::from_v6(17, x.octets(), 53, y.octets(), 40000),
        FlowKey::new(17, IpAddr::V6(x), 53, IpAddr::V6(y), 40000)
    );
}
