//! The normalised flow key: one key for both directions of a connection.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Which endpoint of a [`FlowKey`] sent a packet.
///
/// A key stores its two endpoints in a fixed order, the lower `(address, port)` first, so both
/// directions of a flow build the same key; the side says which of the two the packet came
/// from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The endpoint that sorts first (lower address, then lower port).
    Lo,
    /// The endpoint that sorts second.
    Hi,
}

impl Side {
    /// The other endpoint.
    #[inline]
    pub fn opposite(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }
}

/// A connection's identity, the same for both of its directions.
///
/// Built from (IP protocol, source address and port, destination address and port). Ports are
/// whatever the caller supplies: the TCP/UDP ports, the echo identifier on both sides for ICMP
/// and ICMPv6 echo, and 0 for protocols without ports. (ICMP errors are the caller's to relate
/// to the flow they quote, or to key with port 0.)
///
/// Layout: an IPv4 address is stored as its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`) plus a
/// family flag, so v4 and v6 keys share one fixed 40-byte, allocation-free shape that hashes as
/// five machine words; the flag keeps a v4 flow and a v6 flow between `::ffff:` addresses
/// apart. A packet whose two addresses differ in family (not a valid packet) is keyed as v6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    lo_addr: [u64; 2],
    hi_addr: [u64; 2],
    lo_port: u16,
    hi_port: u16,
    proto: u8,
    v6: bool,
}

impl FlowKey {
    /// The key of a packet from `src:src_port` to `dst:dst_port` over IP protocol `proto`, and
    /// the side of the key the packet came from.
    ///
    /// The reply packet (addresses and ports swapped) yields the same key and the opposite
    /// side. When source and destination are the same endpoint, the packet is from [`Side::Lo`].
    #[inline]
    pub fn new(
        proto: u8,
        src: IpAddr,
        src_port: u16,
        dst: IpAddr,
        dst_port: u16,
    ) -> (FlowKey, Side) {
        let v6 = src.is_ipv6() || dst.is_ipv6();
        Self::from_words(
            proto,
            addr_words(src),
            src_port,
            addr_words(dst),
            dst_port,
            v6,
        )
    }

    /// Like [`FlowKey::new`], for two IPv4 addresses given as their bytes (the hot path: no
    /// `IpAddr` round trip).
    #[inline]
    pub fn from_v4(
        proto: u8,
        src: [u8; 4],
        src_port: u16,
        dst: [u8; 4],
        dst_port: u16,
    ) -> (FlowKey, Side) {
        // IPv4-mapped IPv6 (::ffff:a.b.c.d), as `addr_words` makes it.
        let w = |a: [u8; 4]| [0, 0xffff_0000_0000 | u64::from(u32::from_be_bytes(a))];
        Self::from_words(proto, w(src), src_port, w(dst), dst_port, false)
    }

    /// Like [`FlowKey::new`], for two IPv6 addresses given as their bytes.
    #[inline]
    pub fn from_v6(
        proto: u8,
        src: [u8; 16],
        src_port: u16,
        dst: [u8; 16],
        dst_port: u16,
    ) -> (FlowKey, Side) {
        let w = |a: [u8; 16]| {
            let x = u128::from_be_bytes(a);
            [(x >> 64) as u64, x as u64]
        };
        Self::from_words(proto, w(src), src_port, w(dst), dst_port, true)
    }

    #[inline]
    fn from_words(
        proto: u8,
        s: [u64; 2],
        src_port: u16,
        d: [u64; 2],
        dst_port: u16,
        v6: bool,
    ) -> (FlowKey, Side) {
        if (s, src_port) <= (d, dst_port) {
            let key = FlowKey {
                lo_addr: s,
                hi_addr: d,
                lo_port: src_port,
                hi_port: dst_port,
                proto,
                v6,
            };
            (key, Side::Lo)
        } else {
            let key = FlowKey {
                lo_addr: d,
                hi_addr: s,
                lo_port: dst_port,
                hi_port: src_port,
                proto,
                v6,
            };
            (key, Side::Hi)
        }
    }

    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    #[inline]
    pub fn proto(&self) -> u8 {
        self.proto
    }

    /// Whether the flow is IPv6 (or, for an invalid mixed-family packet, involved IPv6).
    #[inline]
    pub fn is_ipv6(&self) -> bool {
        self.v6
    }

    /// Port the caller supplied for one side.
    #[inline]
    pub fn port(&self, side: Side) -> u16 {
        match side {
            Side::Lo => self.lo_port,
            Side::Hi => self.hi_port,
        }
    }

    /// Address and port of one side.
    pub fn endpoint(&self, side: Side) -> SocketAddr {
        let words = match side {
            Side::Lo => self.lo_addr,
            Side::Hi => self.hi_addr,
        };
        SocketAddr::new(self.ip(words), self.port(side))
    }

    fn ip(&self, words: [u64; 2]) -> IpAddr {
        let v6 = Ipv6Addr::from((u128::from(words[0]) << 64) | u128::from(words[1]));
        match (self.v6, v6.to_ipv4_mapped()) {
            (false, Some(v4)) => IpAddr::V4(v4),
            _ => IpAddr::V6(v6),
        }
    }

    /// Ports, protocol and family packed in one word (the fifth hashed word).
    #[inline]
    fn tail(&self) -> u64 {
        u64::from(self.lo_port)
            | u64::from(self.hi_port) << 16
            | u64::from(self.proto) << 32
            | u64::from(self.v6) << 40
    }

    /// Seeded hash: three folded multiplies over the five key words (the scheme of
    /// `foldhash`), a few nanoseconds with no branches. Resistance to hash flooding rests on
    /// the seed being secret, see [`super::Config::hash_seed`].
    #[inline]
    pub(crate) fn hash(&self, seed: &Seed) -> u64 {
        let a = folded_mul(self.lo_addr[0] ^ seed.0[0], self.lo_addr[1] ^ seed.0[1]);
        let b = folded_mul(self.hi_addr[0] ^ seed.0[2], self.hi_addr[1] ^ seed.0[3]);
        folded_mul(a ^ self.tail() ^ seed.0[4], b ^ seed.0[5])
    }
}

fn addr_words(ip: IpAddr) -> [u64; 2] {
    let v6 = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    let x = u128::from(v6);
    [(x >> 64) as u64, x as u64]
}

/// Multiplies as 128 bits and folds the halves together: every input bit reaches every output
/// bit in one `mul`.
#[inline]
fn folded_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Per-table hash keys, expanded from [`super::Config::hash_seed`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seed([u64; 6]);

impl Seed {
    pub(crate) fn new(seed: u64) -> Seed {
        // SplitMix64 (Steele et al.): distinct, well-mixed words from one seed.
        let mut state = seed;
        Seed(std::array::from_fn(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }))
    }
}
