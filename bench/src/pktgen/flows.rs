//! Flow sets: which 5-tuples the generator sends, which of them a policy should allow, and how
//! fast fresh flows replace old ones.
//!
//! A [`FlowSpec`] is written in code or parsed from a compact string such as
//! `count=10000,proto=udp,src=198.18.0.0/24,dst=198.19.0.0/24,sport=1024-65535,dport=5201,deny-dport=5202,allowed=80%,new=1000,seed=7`
//! (every key optional, see [`FlowSpec::default`]); [`FlowSet::new`] validates it.
//!
//! # Slots, generations and classes
//!
//! The set has `count` *slots*; the generator sends to the flow currently in each slot. Slot
//! `s` is [`Class::Allowed`] or [`Class::Denied`] for the whole run, chosen by its index so
//! that the first `n` slots hold exactly `floor(n * share)` allowed ones (evenly spread, no
//! randomness). Allowed flows take destination ports from `dport`, denied ones from
//! `deny-dport` (the two ranges must not overlap): a policy that allows `src -> dst` on
//! `dport` and nothing else judges every flow as its class says.
//!
//! With `new=R`, [`Rotation`] replaces the oldest flow with a fresh one `R` times a second:
//! replacement `k` (from 0) takes slot `k % count`, whose *generation* goes up by one. The
//! 5-tuple of (slot, generation) is a pure function of the spec ([`FlowSet::flow`]): within a
//! class, flow number `rank(slot) + class_count * generation` is mapped by a seeded
//! permutation (`i * stride + offset mod space`, stride coprime with the space) onto the
//! class's 5-tuples, so no two flows of the same class share a 5-tuple until `space` flows of
//! that class have been used. Two runs with the same spec send the same flows.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Serialize;

/// Transport protocol of a flow set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (segments of an established connection: ACK|PSH).
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => dataplane::wire::proto::TCP,
            Proto::Udp => dataplane::wire::proto::UDP,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// What a policy built for the flow set should do with a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Matched by an allow rule.
    Allowed,
    /// Matched by no allow rule.
    Denied,
}

impl Class {
    /// 0 for allowed, 1 for denied: an index into per-class arrays.
    pub fn index(self) -> usize {
        match self {
            Class::Allowed => 0,
            Class::Denied => 1,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Allowed => "allowed",
            Class::Denied => "denied",
        })
    }
}

/// Why a flow spec is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// A `key=value` item without `=`.
    #[error("flow spec item `{0}` is not key=value")]
    NotKeyValue(String),
    /// A key the spec does not know.
    #[error(
        "unknown flow spec key `{0}` (known: count, proto, src, dst, sport, dport, deny-dport, allowed, new, seed)"
    )]
    UnknownKey(String),
    /// A value that does not parse.
    #[error("flow spec `{key}={value}`: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No flows.
    #[error("a flow set needs at least one flow")]
    NoFlows,
    /// Source and destination ranges of different IP versions.
    #[error("source range {src} and destination range {dst} are not the same IP version")]
    MixedVersions {
        /// Source range.
        src: AddrRange,
        /// Destination range.
        dst: AddrRange,
    },
    /// An allowed share above 100%.
    #[error("allowed share {0} ppm is above 100%")]
    ShareAbove100(u32),
    /// Both classes present and their destination port ranges overlap.
    #[error(
        "allowed destination ports {allowed} and denied destination ports {denied} overlap: a rule could not tell the classes apart"
    )]
    PortsOverlap {
        /// Allowed flows' destination ports.
        allowed: PortRange,
        /// Denied flows' destination ports.
        denied: PortRange,
    },
    /// A class needs more distinct 5-tuples than its ranges hold.
    #[error(
        "{needed} {class} flows need as many distinct 5-tuples but the ranges hold only {space}"
    )]
    TooFewTuples {
        /// The class.
        class: Class,
        /// Flows of that class.
        needed: u32,
        /// Distinct 5-tuples its ranges give.
        space: u128,
    },
    /// A rotation clock with zero ticks per second.
    #[error("the rotation clock must tick at least once per second")]
    ZeroClock,
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> FlowError {
    FlowError::BadValue {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// An inclusive range of IPv4 or IPv6 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct AddrRange {
    first: IpAddr,
    last: IpAddr,
}

fn as_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl AddrRange {
    /// `first..=last`; `None` when they differ in IP version or `last < first`.
    pub fn new(first: IpAddr, last: IpAddr) -> Option<Self> {
        (first.is_ipv4() == last.is_ipv4() && as_u128(first) <= as_u128(last))
            .then_some(AddrRange { first, last })
    }

    /// One address.
    pub fn single(ip: IpAddr) -> Self {
        AddrRange {
            first: ip,
            last: ip,
        }
    }

    /// First address.
    pub fn first(&self) -> IpAddr {
        self.first
    }

    /// Last address.
    pub fn last(&self) -> IpAddr {
        self.last
    }

    /// Whether the range is IPv6.
    pub fn is_v6(&self) -> bool {
        self.first.is_ipv6()
    }

    /// Number of addresses (saturating at `u128::MAX` for all of IPv6).
    pub fn len(&self) -> u128 {
        (as_u128(self.last) - as_u128(self.first)).saturating_add(1)
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `i`-th address, `None` past the end.
    pub fn nth(&self, i: u128) -> Option<IpAddr> {
        if i >= self.len() {
            return None;
        }
        let v = as_u128(self.first) + i;
        Some(match self.first {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(v).ok()?)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
        })
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for AddrRange {
    type Err = String;

    /// `A`, `A-B` (inclusive) or a prefix `N/L`; a prefix stands for its hosts (IPv4 prefixes
    /// shorter than /31 leave out the network and broadcast addresses).
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((a, b)) = s.split_once('-') {
            let a: IpAddr = a
                .trim()
                .parse()
                .map_err(|_| format!("`{a}` is not an address"))?;
            let b: IpAddr = b
                .trim()
                .parse()
                .map_err(|_| format!("`{b}` is not an address"))?;
            return AddrRange::new(a, b)
                .ok_or_else(|| "the range is reversed or mixes IP versions".to_string());
        }
        if s.contains('/') {
            let net: ipnet::IpNet = s.parse().map_err(|_| format!("`{s}` is not a prefix"))?;
            let (first, last) = match net {
                ipnet::IpNet::V4(n) if n.prefix_len() < 31 => {
                    let lo = u32::from(n.network()) + 1;
                    let hi = u32::from(n.broadcast()) - 1;
                    (
                        IpAddr::V4(Ipv4Addr::from(lo)),
                        IpAddr::V4(Ipv4Addr::from(hi)),
                    )
                }
                n => (n.network(), n.broadcast()),
            };
            return AddrRange::new(first, last).ok_or_else(|| "empty prefix".to_string());
        }
        let ip: IpAddr = s.parse().map_err(|_| format!("`{s}` is not an address"))?;
        Ok(AddrRange::single(ip))
    }
}

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (`>= first`).
    pub last: u16,
}

impl PortRange {
    /// `first..=last`; `None` when reversed.
    pub fn new(first: u16, last: u16) -> Option<Self> {
        (first <= last).then_some(PortRange { first, last })
    }

    /// Number of ports.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the two ranges share a port.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = String;

    /// `P` or `P-Q` (inclusive).
    fn from_str(s: &str) -> Result<Self, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("`{p}` is not a port"))
        };
        match s.split_once('-') {
            Some((a, b)) => {
                PortRange::new(port(a)?, port(b)?).ok_or_else(|| "reversed range".to_string())
            }
            None => {
                let p = port(s)?;
                Ok(PortRange { first: p, last: p })
            }
        }
    }
}

/// The flow set the harness's `forward`, `protect-10k` and `rule-scaling` (established)
/// scenarios send (`palisade-pktgen --flows`), and the one
/// the Pktgen-DPDK and TRex profiles in `bench/profiles/` reproduce for physical NICs
/// (`bench/tests/profiles.rs` keeps them in step).
pub const NDR_FLOWS: &str = "count=10000";

/// Parts per million in 100%.
pub const PPM: u32 = 1_000_000;

/// What flows to generate. Build it in code or parse it ([`FromStr`]); check it with
/// [`FlowSet::new`]. [`fmt::Display`] writes the compact form back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowSpec {
    /// Flows alive at any moment (slots).
    pub count: u32,
    /// TCP or UDP.
    pub proto: Proto,
    /// Source addresses.
    pub src: AddrRange,
    /// Destination addresses.
    pub dst: AddrRange,
    /// Source ports.
    pub sport: PortRange,
    /// Destination ports of allowed flows.
    pub dport: PortRange,
    /// Destination ports of denied flows.
    pub deny_dport: PortRange,
    /// Share of allowed flows, parts per million (`1_000_000` = all).
    pub allowed_ppm: u32,
    /// Fresh flows per second replacing the oldest (0: the set never changes).
    pub new_per_sec: u64,
    /// Every frame is the first of a fresh flow (`new=every`): after a slot is sent, its next
    /// generation replaces it. Measures a device's new-session rate; `new_per_sec` is then 0.
    pub new_every_frame: bool,
    /// Seed of the 5-tuple permutation.
    pub seed: u64,
}

impl Default for FlowSpec {
    /// One UDP flow `198.18.0.1:1024-65535 -> 198.19.0.1:5201` (RFC 2544's benchmarking
    /// range), all allowed, denied flows to port 5202, no rotation, seed 0.
    fn default() -> Self {
        FlowSpec {
            count: 1,
            proto: Proto::Udp,
            src: AddrRange::single(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
            dst: AddrRange::single(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1))),
            sport: PortRange {
                first: 1024,
                last: 65535,
            },
            dport: PortRange {
                first: 5201,
                last: 5201,
            },
            deny_dport: PortRange {
                first: 5202,
                last: 5202,
            },
            allowed_ppm: PPM,
            new_per_sec: 0,
            new_every_frame: false,
            seed: 0,
        }
    }
}

/// `80%`, `12.5%` or a fraction `0.8`, as parts per million.
fn parse_share(v: &str) -> Result<u32, String> {
    let (num, scale) = match v.strip_suffix('%') {
        Some(p) => (p, 10_000.0),
        None => (v, 1_000_000.0),
    };
    let x: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{v}` is not a share (80% or 0.8)"))?;
    if !(0.0..=1_000_000.0 / scale).contains(&x) {
        return Err("a share is between 0 and 100%".into());
    }
    Ok((x * scale).round() as u32)
}

impl FromStr for FlowSpec {
    type Err = FlowError;

    /// Comma-separated `key=value` items over [`FlowSpec::default`]: `count`, `proto`
    /// (`tcp`/`udp`), `src`, `dst` (see [`AddrRange`]), `sport`, `dport`, `deny-dport` (see
    /// [`PortRange`]), `allowed` (`80%` or `0.8`), `new` (flows per second, or `every`: each
    /// frame opens a fresh flow), `seed`.
    fn from_str(s: &str) -> Result<Self, FlowError> {
        let mut spec = FlowSpec::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| FlowError::NotKeyValue(item.into()))?;
            let (k, v) = (k.trim(), v.trim());
            let num = |v: &str| v.parse::<u64>().map_err(|_| bad(k, v, "not a number"));
            match k {
                "count" => {
                    spec.count = u32::try_from(num(v)?).map_err(|_| bad(k, v, "too many flows"))?
                }
                "proto" => {
                    spec.proto = match v {
                        "tcp" => Proto::Tcp,
                        "udp" => Proto::Udp,
                        _ => return Err(bad(k, v, "tcp or udp")),
                    }
                }
                "src" => spec.src = v.parse().map_err(|e| bad(k, v, e))?,
                "dst" => spec.dst = v.parse().map_err(|e| bad(k, v, e))?,
                "sport" => spec.sport = v.parse().map_err(|e| bad(k, v, e))?,
                "dport" => spec.dport = v.parse().map_err(|e| bad(k, v, e))?,
                "deny-dport" => spec.deny_dport = v.parse().map_err(|e| bad(k, v, e))?,
                "allowed" => spec.allowed_ppm = parse_share(v).map_err(|e| bad(k, v, e))?,
                "new" if v == "every" => {
                    spec.new_per_sec = 0;
                    spec.new_every_frame = true;
                }
                "new" => {
                    spec.new_per_sec = num(v)?;
                    spec.new_every_frame = false;
                }
                "seed" => spec.seed = num(v)?,
                _ => return Err(FlowError::UnknownKey(k.into())),
            }
        }
        Ok(spec)
    }
}

impl fmt::Display for FlowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "count={},proto={},src={},dst={},sport={},dport={},deny-dport={},allowed={}%,new={},seed={}",
            self.count,
            self.proto,
            self.src,
            self.dst,
            self.sport,
            self.dport,
            self.deny_dport,
            f64::from(self.allowed_ppm) / 10_000.0,
            if self.new_every_frame {
                "every".to_owned()
            } else {
                self.new_per_sec.to_string()
            },
            self.seed
        )
    }
}

/// One flow: a 5-tuple and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Flow {
    /// Slot (the "flow index" carried in the payload stamp).
    pub slot: u32,
    /// How many times the slot has been refilled before this flow.
    pub generation: u64,
    /// Allowed or denied.
    pub class: Class,
    /// TCP or UDP.
    pub proto: Proto,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// splitmix64 (as in `policy_gen`): the seed's mixer.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Spaces are capped here so that `index * stride` fits in a `u128`; a class never needs more
/// than 2^32 distinct tuples at once, so the cap only means part of a huge range goes unused.
const SPACE_CAP: u128 = 1 << 63;

/// One class's 5-tuple space and its permutation.
#[derive(Debug, Clone, Copy)]
struct Space {
    size: u128,
    stride: u128,
    offset: u128,
    dport: PortRange,
}

impl Space {
    fn new(spec: &FlowSpec, dport: PortRange, salt: u64) -> Self {
        let full = [
            spec.src.len(),
            spec.dst.len(),
            u128::from(spec.sport.len()),
            u128::from(dport.len()),
        ]
        .iter()
        .try_fold(1u128, |a, &b| a.checked_mul(b))
        .unwrap_or(u128::MAX);
        let size = full.min(SPACE_CAP);
        let r1 = splitmix(spec.seed ^ salt);
        let r2 = splitmix(r1);
        // Any stride coprime with the size permutes 0..size; start from a random one.
        let mut stride = u128::from(r1) % size;
        while gcd(stride, size) != 1 {
            stride += 1;
        }
        Space {
            size,
            stride,
            offset: u128::from(r2) % size,
            dport,
        }
    }

    /// The `i`-th tuple index, `i` reduced modulo the space first.
    fn permute(&self, i: u128) -> u128 {
        ((i % self.size) * self.stride + self.offset) % self.size
    }
}

/// A validated flow spec: maps slots and generations to 5-tuples.
#[derive(Debug, Clone)]
pub struct FlowSet {
    spec: FlowSpec,
    allowed: u32,
    spaces: [Space; 2],
}

impl FlowSet {
    /// Checks `spec`: at least one flow, one IP version, share at most 100%, disjoint
    /// destination ports when both classes are present, enough distinct 5-tuples per class.
    pub fn new(spec: FlowSpec) -> Result<Self, FlowError> {
        if spec.count == 0 {
            return Err(FlowError::NoFlows);
        }
        if spec.src.is_v6() != spec.dst.is_v6() {
            return Err(FlowError::MixedVersions {
                src: spec.src,
                dst: spec.dst,
            });
        }
        if spec.allowed_ppm > PPM {
            return Err(FlowError::ShareAbove100(spec.allowed_ppm));
        }
        let allowed = allowed_before(spec.count, spec.allowed_ppm);
        let denied = spec.count - allowed;
        if allowed > 0 && denied > 0 && spec.dport.overlaps(&spec.deny_dport) {
            return Err(FlowError::PortsOverlap {
                allowed: spec.dport,
                denied: spec.deny_dport,
            });
        }
        let spaces = [
            Space::new(&spec, spec.dport, 0xa110),
            Space::new(&spec, spec.deny_dport, 0xde17),
        ];
        for (class, needed) in [(Class::Allowed, allowed), (Class::Denied, denied)] {
            let space = spaces[class.index()].size;
            if u128::from(needed) > space {
                return Err(FlowError::TooFewTuples {
                    class,
                    needed,
                    space,
                });
            }
        }
        Ok(FlowSet {
            spec,
            allowed,
            spaces,
        })
    }

    /// The spec.
    pub fn spec(&self) -> &FlowSpec {
        &self.spec
    }

    /// Number of slots.
    pub fn len(&self) -> u32 {
        self.spec.count
    }

    /// Never empty (validated); here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the flows are IPv6.
    pub fn is_v6(&self) -> bool {
        self.spec.src.is_v6()
    }

    /// Slots of class allowed.
    pub fn allowed_count(&self) -> u32 {
        self.allowed
    }

    /// The class of `slot` (slots past the end are denied).
    pub fn class(&self, slot: u32) -> Class {
        if slot < self.spec.count
            && allowed_before(slot + 1, self.spec.allowed_ppm)
                > allowed_before(slot, self.spec.allowed_ppm)
        {
            Class::Allowed
        } else {
            Class::Denied
        }
    }

    /// The flow in `slot` at `generation`; `None` past the last slot.
    pub fn flow(&self, slot: u32, generation: u64) -> Option<Flow> {
        if slot >= self.spec.count {
            return None;
        }
        let class = self.class(slot);
        let before = allowed_before(slot, self.spec.allowed_ppm);
        let (rank, per_gen) = match class {
            Class::Allowed => (before, self.allowed),
            Class::Denied => (slot - before, self.spec.count - self.allowed),
        };
        let space = &self.spaces[class.index()];
        let i = u128::from(rank) + u128::from(per_gen) * u128::from(generation);
        let mut t = space.permute(i);
        let mut take = |n: u128| {
            let v = t % n;
            t /= n;
            v
        };
        let sport = take(u128::from(self.spec.sport.len())) as u16;
        let dport = take(u128::from(space.dport.len())) as u16;
        let src = take(self.spec.src.len());
        let dst = take(self.spec.dst.len());
        Some(Flow {
            slot,
            generation,
            class,
            proto: self.spec.proto,
            src: self.spec.src.nth(src)?,
            dst: self.spec.dst.nth(dst)?,
            sport: self.spec.sport.first.wrapping_add(sport),
            dport: space.dport.first.wrapping_add(dport),
        })
    }

    /// A rotation schedule for this set on a clock of `ticks_per_sec`, starting at `start`.
    pub fn rotation(&self, ticks_per_sec: u64, start: u64) -> Result<Rotation, FlowError> {
        Rotation::new(self.spec.count, self.spec.new_per_sec, ticks_per_sec, start)
    }
}

/// Allowed slots among the first `n`: `floor(n * ppm / 1e6)`.
fn allowed_before(n: u32, ppm: u32) -> u32 {
    (u64::from(n) * u64::from(ppm) / u64::from(PPM)) as u32
}

/// Which slots get a fresh flow, and when: replacement `k` (from 0) is due at
/// `start + k * ticks_per_sec / per_sec` and refills slot `k % count` (the oldest flow).
#[derive(Debug, Clone)]
pub struct Rotation {
    count: u32,
    per_sec: u64,
    ticks_per_sec: u64,
    start: u64,
    done: u64,
}

/// One slot refilled: send to [`FlowSet::flow`]`(slot, generation)` from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replacement {
    /// The slot.
    pub slot: u32,
    /// Its new generation.
    pub generation: u64,
}

impl Rotation {
    /// `per_sec` replacements a second among `count` slots (0: none ever).
    pub fn new(
        count: u32,
        per_sec: u64,
        ticks_per_sec: u64,
        start: u64,
    ) -> Result<Self, FlowError> {
        if count == 0 {
            return Err(FlowError::NoFlows);
        }
        if ticks_per_sec == 0 {
            return Err(FlowError::ZeroClock);
        }
        Ok(Rotation {
            count,
            per_sec,
            ticks_per_sec,
            start,
            done: 0,
        })
    }

    /// Replacements made so far.
    pub fn replaced(&self) -> u64 {
        self.done
    }

    /// The current generation of `slot`.
    pub fn generation(&self, slot: u32) -> u64 {
        let s = u64::from(slot);
        if self.done > s {
            (self.done - s - 1) / u64::from(self.count) + 1
        } else {
            0
        }
    }

    /// The replacements due by `now`, oldest first. When more than `count` are due at once
    /// (the caller fell behind), only the last `count` are returned: the earlier ones would
    /// be overwritten anyway. A clock that goes backwards makes nothing due.
    pub fn due(&mut self, now: u64) -> impl Iterator<Item = Replacement> + use<> {
        let elapsed = u128::from(now.saturating_sub(self.start));
        let total = elapsed * u128::from(self.per_sec) / u128::from(self.ticks_per_sec);
        let total = u64::try_from(total).unwrap_or(u64::MAX);
        let from = self.done.max(total.saturating_sub(u64::from(self.count)));
        let to = total.max(self.done);
        self.done = to;
        let count = u64::from(self.count);
        (from..to).map(move |k| Replacement {
            slot: (k % count) as u32,
            generation: k / count + 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn set(s: &str) -> FlowSet {
        FlowSet::new(s.parse().unwrap()).unwrap()
    }

    #[test]
    fn parses_the_compact_form_and_writes_it_back() {
        let s = "count=10000,proto=tcp,src=198.18.0.0/24,dst=198.19.0.1-198.19.0.100,sport=1024-65535,dport=80,deny-dport=8000-8999,allowed=80%,new=1000,seed=7";
        let spec: FlowSpec = s.parse().unwrap();
        assert_eq!(spec.count, 10_000);
        assert_eq!(spec.proto, Proto::Tcp);
        assert_eq!(spec.src.first().to_string(), "198.18.0.1");
        assert_eq!(spec.src.last().to_string(), "198.18.0.254");
        assert_eq!(spec.dst.len(), 100);
        assert_eq!(spec.deny_dport, PortRange::new(8000, 8999).unwrap());
        assert_eq!(spec.allowed_ppm, 800_000);
        assert_eq!(spec.new_per_sec, 1000);
        let again: FlowSpec = spec.to_string().parse().unwrap();
        assert_eq!(again, spec);
        assert_eq!(
            "allowed=0.125".parse::<FlowSpec>().unwrap().allowed_ppm,
            125_000
        );
        assert_eq!("".parse::<FlowSpec>().unwrap(), FlowSpec::default());
        let every: FlowSpec = "new=every".parse().unwrap();
        assert!(every.new_every_frame);
        assert_eq!(every.new_per_sec, 0);
        assert_eq!(every.to_string().parse::<FlowSpec>().unwrap(), every);
        assert!(
            !"new=every,new=5"
                .parse::<FlowSpec>()
                .unwrap()
                .new_every_frame
        );
    }

    #[test]
    fn parse_errors_name_the_item() {
        let e = |s: &str| s.parse::<FlowSpec>().unwrap_err().to_string();
        assert!(e("count").contains("`count` is not key=value"));
        assert!(e("colour=red").contains("unknown flow spec key `colour`"));
        assert!(e("count=-1").contains("count=-1"));
        assert!(e("count=5000000000").contains("too many flows"));
        assert!(e("proto=sctp").contains("tcp or udp"));
        assert!(e("src=198.18.0.9-198.18.0.1").contains("reversed"));
        assert!(e("src=198.18.0.1-::1").contains("reversed or mixes"));
        assert!(e("dst=1.2.3.4/33").contains("not a prefix"));
        assert!(e("sport=70000").contains("not a port"));
        assert!(e("dport=9-1").contains("reversed"));
        assert!(e("allowed=120%").contains("between 0 and 100%"));
        assert!(e("allowed=lots").contains("not a share"));
    }

    #[test]
    fn validation_errors() {
        let v = |s: &str| FlowSet::new(s.parse().unwrap()).unwrap_err();
        assert_eq!(v("count=0"), FlowError::NoFlows);
        assert!(matches!(
            v("dst=2001:2::1"),
            FlowError::MixedVersions { .. }
        ));
        assert!(matches!(
            v("count=10,allowed=50%,dport=80-90,deny-dport=90"),
            FlowError::PortsOverlap { .. }
        ));
        // 1 src x 1 dst x 2 sports x 1 dport = 2 tuples for 5 allowed flows.
        assert_eq!(
            v("count=5,sport=1-2"),
            FlowError::TooFewTuples {
                class: Class::Allowed,
                needed: 5,
                space: 2
            }
        );
        let spec = FlowSpec {
            allowed_ppm: PPM + 1,
            ..FlowSpec::default()
        };
        assert_eq!(
            FlowSet::new(spec).unwrap_err(),
            FlowError::ShareAbove100(PPM + 1)
        );
        // Overlap does not matter when one class is empty.
        set("count=10,allowed=100%,dport=80,deny-dport=80");
    }

    #[test]
    fn classes_follow_the_share_exactly_and_evenly() {
        let s = set("count=1000,allowed=80%,sport=1-65535");
        let allowed = (0..1000).filter(|&i| s.class(i) == Class::Allowed).count();
        assert_eq!(allowed, 800);
        assert_eq!(s.allowed_count(), 800);
        // Any window of 10 consecutive slots holds 8 allowed.
        for w in 0..990 {
            let n = (w..w + 10)
                .filter(|&i| s.class(i) == Class::Allowed)
                .count();
            assert!((7..=9).contains(&n), "{w}: {n}");
        }
        assert_eq!(s.class(5000), Class::Denied);
        let none = set("count=10,allowed=0%");
        assert!((0..10).all(|i| none.class(i) == Class::Denied));
    }

    #[test]
    fn flows_are_in_range_distinct_deterministic_and_classed_by_port() {
        // Allowed: 1500 slots x 3 generations in 30 x 14 x 10 x 2 = 8400 tuples.
        let spec = "count=2000,proto=tcp,src=198.18.0.0/27,dst=198.19.0.0/28,sport=1000-1009,dport=80-81,deny-dport=90,allowed=75%,seed=3";
        let a = set(spec);
        let b = set(spec);
        let mut seen = HashSet::new();
        for slot in 0..2000 {
            for g in 0..3 {
                let f = a.flow(slot, g).unwrap();
                assert_eq!(Some(f), b.flow(slot, g));
                assert_eq!(f.class, a.class(slot));
                match f.class {
                    Class::Allowed => assert!((80..=81).contains(&f.dport)),
                    Class::Denied => assert_eq!(f.dport, 90),
                }
                assert!((1000..=1009).contains(&f.sport));
                let IpAddr::V4(src) = f.src else { panic!() };
                assert!((1..=30).contains(&src.octets()[3]), "{src}");
                assert!(seen.insert((f.src, f.dst, f.sport, f.dport)), "{f:?}");
            }
        }
        assert_eq!(a.flow(2000, 0), None);
        let other = set(&spec.replace("seed=3", "seed=4"));
        assert_ne!(a.flow(0, 0), other.flow(0, 0));
    }

    #[test]
    fn ipv6_flows_and_huge_ranges() {
        let s = set("count=100,src=2001:2::/64,dst=2001:2:0:1::/64,allowed=50%");
        let f = s.flow(7, 1_000_000).unwrap();
        assert!(s.is_v6());
        let IpAddr::V6(d) = f.dst else { panic!() };
        assert_eq!(d.segments()[..4], [0x2001, 2, 0, 1]);
        let all = set("src=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,dst=::/0");
        assert!(all.flow(0, u64::MAX).is_some());
    }

    #[test]
    fn rotation_replaces_the_oldest_at_the_rate() {
        let s = set("count=4,new=2,sport=1-1000");
        let mut r = s.rotation(1000, 500).unwrap();
        assert_eq!(r.due(400).count(), 0, "before the start");
        assert_eq!(r.due(999).count(), 0);
        let got: Vec<_> = r.due(1500).collect();
        assert_eq!(
            got,
            vec![
                Replacement {
                    slot: 0,
                    generation: 1
                },
                Replacement {
                    slot: 1,
                    generation: 1
                }
            ]
        );
        assert_eq!(r.due(1500).count(), 0, "nothing twice");
        assert_eq!(
            (r.generation(0), r.generation(1), r.generation(2)),
            (1, 1, 0)
        );
        // Ten seconds late: 20 more due, only the last 4 matter.
        let late: Vec<_> = r.due(11_500).collect();
        assert_eq!(late.len(), 4);
        assert_eq!(r.replaced(), 22);
        for x in late {
            assert_eq!(x.generation, r.generation(x.slot));
        }
        assert_eq!(r.generation(0), 6); // replacements 0, 4, 8, 12, 16, 20
        assert_eq!(r.generation(2), 5); // 2, 6, 10, 14, 18
        let fresh = s.flow(0, r.generation(0)).unwrap();
        assert_ne!(fresh, s.flow(0, 5).unwrap());
        assert_eq!(s.rotation(0, 0).unwrap_err(), FlowError::ZeroClock);
    }

    #[test]
    fn no_rotation_without_a_rate() {
        let s = set("count=4");
        let mut r = s.rotation(1, 0).unwrap();
        assert_eq!(r.due(u64::MAX).count(), 0);
    }
}
