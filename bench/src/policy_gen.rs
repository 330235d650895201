//! A generated policy shaped like a cluster, for the policy benchmarks (the criterion benches in
//! `benches/policy.rs` and the `policy` scenario of `palisade-bench`): one group per 25 rules
//! (four workloads each, every fourth with an IPv6 address too, a few extra members), one
//! address group per 20 groups, a node network; rules mostly group to group on one well-known
//! port, some on port ranges, `icmp`, `any`, to and from `external`, address groups, `nodes`
//! and `containers`, some naming applications, some with a priority, a few disabled. Queries
//! are new flows: half drawn from rules (so they hit), the rest workload, node and external
//! pairs at random.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use dataplane::conntrack::Timestamp;
use dataplane::dpi::App;
use dataplane::pipeline::{self, Pipeline, Step};
use dataplane::policy::{
    Action, ActivePolicy, Group, Mode, Policy, PortSpec, Query, Rule, Workload,
};

/// Rule counts the benchmarks run at.
pub const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
/// Queries generated per policy.
pub const QUERIES: usize = 4096;

/// splitmix64: deterministic, no dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const PORTS: [u16; 10] = [80, 443, 5432, 6379, 3306, 8080, 9092, 27017, 22, 11211];
const PER_GROUP: usize = 4;

fn v4(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32 + 1))
}

fn v6(i: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | (i as u128 + 1)))
}

/// An address group's networks: /24s in 172.16.0.0/12 (and a /64 for every fifth).
fn address_group_nets(a: usize) -> Vec<String> {
    let mut v = vec![format!("172.{}.{}.0/24", 16 + (a >> 8) % 16, a & 0xff)];
    if a.is_multiple_of(5) {
        v.push(format!("2001:db8:{a:x}::/64"));
    }
    v
}

/// A policy and new-flow queries against it.
#[derive(Debug)]
pub struct Generated {
    /// The policy.
    pub policy: Policy,
    /// Flows to look up, [`QUERIES`] of them.
    pub queries: Vec<Query>,
}

/// A policy of `rules` rules and its queries; the same for the same `rules`.
pub fn generate(rules: usize) -> Generated {
    let mut rng = Rng(rules as u64);
    let n_groups = (rules / 25).max(4);
    let n_addr = (n_groups / 20).max(1);
    let modes = [Mode::Protect, Mode::Protect, Mode::Monitor, Mode::Discover];

    let mut groups: Vec<Group> = (0..n_groups)
        .map(|g| Group {
            name: format!("auto.svc{g}"),
            mode: modes[g % modes.len()],
            members: vec![],
            cidrs: vec![],
        })
        .collect();
    let workloads: Vec<Workload> = (0..n_groups * PER_GROUP)
        .map(|i| {
            let g = i / PER_GROUP;
            let mut ips = vec![v4(i)];
            if i.is_multiple_of(4) {
                ips.push(v6(i));
            }
            Workload {
                id: format!("c{i:06x}"),
                group: groups[g].name.clone(),
                mode: groups[g].mode,
                macs: vec![],
                ips,
                exempt: i.is_multiple_of(97),
            }
        })
        .collect();
    for g in groups.iter_mut() {
        if rng.chance(10) {
            g.members
                .push(workloads[rng.below(workloads.len())].id.clone());
        }
    }
    for a in 0..n_addr {
        groups.push(Group {
            name: format!("partners{a}"),
            mode: Mode::Monitor,
            members: vec![],
            cidrs: address_group_nets(a)
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        });
    }
    let user = |rng: &mut Rng| format!("auto.svc{}", rng.below(n_groups));
    let addr_group = |rng: &mut Rng| format!("partners{}", rng.below(n_addr));

    let mut list = Vec::with_capacity(rules);
    for i in 0..rules {
        let roll = rng.below(100);
        let tcp = |p: u16| PortSpec::Tcp(p, p);
        let (from, to, ports) = match roll {
            0..70 => (user(&mut rng), user(&mut rng), vec![tcp(*rng.pick(&PORTS))]),
            70..78 => {
                let r = if rng.chance(50) {
                    PortSpec::Tcp(8000, 8999)
                } else {
                    PortSpec::Tcp(30000, 32767)
                };
                (user(&mut rng), user(&mut rng), vec![r])
            }
            78..83 => {
                if rng.chance(50) {
                    ("external".into(), user(&mut rng), vec![tcp(443)])
                } else {
                    (
                        user(&mut rng),
                        "external".into(),
                        vec![PortSpec::Udp(53, 53)],
                    )
                }
            }
            83..88 => {
                if rng.chance(50) {
                    (
                        addr_group(&mut rng),
                        user(&mut rng),
                        vec![tcp(443), tcp(80)],
                    )
                } else {
                    (
                        user(&mut rng),
                        addr_group(&mut rng),
                        vec![PortSpec::Tcp(1, 1024)],
                    )
                }
            }
            88..92 => (user(&mut rng), user(&mut rng), vec![PortSpec::Any]),
            92..95 => (user(&mut rng), user(&mut rng), vec![PortSpec::Icmp]),
            95..97 => ("nodes".into(), user(&mut rng), vec![tcp(9100)]),
            _ => (user(&mut rng), user(&mut rng), vec![]),
        };
        let apps = if rng.chance(5) {
            vec![*rng.pick(&[App::Http, App::Tls, App::Grpc])]
        } else {
            vec![]
        };
        list.push(Rule {
            id: 10_000 + i as u32,
            from,
            to,
            ports,
            apps,
            action: if rng.chance(10) {
                Action::Deny
            } else {
                Action::Allow
            },
            priority: if rng.chance(10) {
                rng.below(11) as i32 - 5
            } else {
                0
            },
            learned: true,
            disabled: rng.chance(2),
        });
    }
    // A few cluster-wide rules.
    list.push(Rule {
        id: 1,
        from: "containers".into(),
        to: "external".into(),
        ports: vec![PortSpec::Udp(53, 53), PortSpec::Tcp(53, 53)],
        apps: vec![],
        action: Action::Allow,
        priority: 0,
        learned: false,
        disabled: false,
    });
    list.push(Rule {
        id: 2,
        from: "nodes".into(),
        to: "containers".into(),
        ports: vec![PortSpec::Any],
        apps: vec![],
        action: Action::Allow,
        priority: -10,
        learned: false,
        disabled: false,
    });

    let policy = Policy {
        generation: 1,
        groups,
        rules: list,
        workloads,
        nodes: "10.255.0.0/16".parse().into_iter().collect(),
    };

    // Queries: half from rules (a member of `from` to a member of `to` on a matching port),
    // half random pairs.
    let member = |rng: &mut Rng, group: &str| -> IpAddr {
        if let Some(g) = group.strip_prefix("auto.svc") {
            let g: usize = g.parse().unwrap_or(0);
            let i = g * PER_GROUP + rng.below(PER_GROUP);
            if i.is_multiple_of(4) && rng.chance(50) {
                v6(i)
            } else {
                v4(i)
            }
        } else if group.starts_with("partners") {
            IpAddr::V4(Ipv4Addr::new(172, 16, 0, 9))
        } else if group == "nodes" {
            IpAddr::V4(Ipv4Addr::new(10, 255, 0, 7))
        } else if group == "containers" {
            v4(rng.below(n_groups * PER_GROUP))
        } else {
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, rng.below(256) as u8))
        }
    };
    let apps = [None, Some(App::Http), Some(App::Tls), Some(App::Unknown)];
    let mut queries = Vec::with_capacity(QUERIES);
    for _ in 0..QUERIES {
        let app = *rng.pick(&apps);
        if rng.chance(50) {
            let r = rng.pick(&policy.rules);
            let (proto, port) = match r.ports.first() {
                Some(PortSpec::Tcp(lo, hi)) => {
                    (6, *lo + (rng.below(usize::from(hi - lo) + 1) as u16))
                }
                Some(PortSpec::Udp(lo, _)) => (17, *lo),
                Some(PortSpec::Icmp) => (1, 0),
                _ => (6, *rng.pick(&PORTS)),
            };
            queries.push(Query {
                proto,
                client: member(&mut rng, &r.from),
                server: member(&mut rng, &r.to),
                server_port: port,
                app,
            });
        } else {
            let w = n_groups * PER_GROUP;
            let pick = |rng: &mut Rng| match rng.below(10) {
                0 => IpAddr::V4(Ipv4Addr::new(198, 51, 100, rng.below(256) as u8)),
                1 => IpAddr::V4(Ipv4Addr::new(10, 255, 1, rng.below(256) as u8)),
                _ => v4(rng.below(w)),
            };
            queries.push(Query {
                proto: if rng.chance(80) { 6 } else { 17 },
                client: pick(&mut rng),
                server: pick(&mut rng),
                server_port: *rng.pick(&PORTS),
                app,
            });
        }
    }
    Generated { policy, queries }
}

/// TCP flags.
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYN_ACK: u8 = 0x12;

/// An Ethernet frame carrying `l4` (protocol `proto`) from `src` to `dst`, both of one IP
/// version; checksums are left zero (the pipeline does not verify them, as a NIC would have).
pub fn ip_frame(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Option<Vec<u8>> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => return None,
    }
    f.extend_from_slice(l4);
    Some(f)
}

pub fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// The first packet of `q` as a flow from client port `sport`: a TCP SYN, a UDP datagram, or
/// `None` for other protocols and mixed IP versions.
pub fn first_packet(q: &Query, sport: u16) -> Option<Vec<u8>> {
    match q.proto {
        6 => ip_frame(
            q.client,
            q.server,
            6,
            &tcp(sport, q.server_port, 1, 0, SYN, &[]),
        ),
        17 => ip_frame(
            q.client,
            q.server,
            17,
            &udp(sport, q.server_port, &[0x61; 32]),
        ),
        _ => None,
    }
}

/// A pipeline for `sessions` sessions whose rate checks never trip (the benchmarks open far
/// more flows per workload and second than a real one would).
pub fn pipeline(sessions: usize) -> Result<Pipeline<()>, String> {
    let mut cfg = pipeline::Config::with_capacity(sessions);
    cfg.threats.syn_flood = u32::MAX;
    cfg.threats.session_rate = u32::MAX;
    Pipeline::new(cfg, None).map_err(|e| format!("pipeline for {sessions} sessions: {e}"))
}

/// One frame through `p`; the verdict, or `None` when the pipeline held it.
pub fn run(
    p: &mut Pipeline<()>,
    f: &[u8],
    now: Timestamp,
    policy: &ActivePolicy,
) -> Option<pipeline::Verdict> {
    match p.process(f, now, policy, (), |_, _| {}, |_| {}) {
        Step::Done(v, ()) => Some(v),
        Step::Held => None,
    }
}

/// Established connections in a pipeline, and a data packet of each.
#[derive(Debug)]
pub struct Established {
    /// The pipeline that tracks them.
    pub pipeline: Pipeline<()>,
    /// One client data packet per connection.
    pub frames: Vec<Vec<u8>>,
}

/// Opens up to `flows` IPv4 TCP connections from `generated`'s queries that `policy` forwards
/// (handshake, then data past DPI's inspection window, so every session is settled and its
/// decision cached). IPv4 only, so the mix of address families is the same for every size.
pub fn established(
    generated: &Generated,
    policy: &ActivePolicy,
    flows: usize,
) -> Result<Established, String> {
    let mut p = pipeline(flows * 2)?;
    let now = Timestamp::from_secs(1);
    let mut frames = Vec::with_capacity(flows);
    let forward =
        |p: &mut Pipeline<()>, f: &[u8]| run(p, f, now, policy) == Some(pipeline::Verdict::Forward);
    for (i, q) in generated
        .queries
        .iter()
        .cycle()
        .take(QUERIES * 16)
        .enumerate()
    {
        if frames.len() == flows {
            break;
        }
        let sport = 1024 + i as u16;
        let (c, s, port) = (q.client, q.server, q.server_port);
        if q.proto != 6 || !c.is_ipv4() || !s.is_ipv4() {
            continue;
        }
        let handshake = [
            ip_frame(c, s, 6, &tcp(sport, port, 1, 0, SYN, &[])),
            ip_frame(s, c, 6, &tcp(port, sport, 100, 2, SYN_ACK, &[])),
            ip_frame(c, s, 6, &tcp(sport, port, 2, 101, ACK, &[])),
        ];
        let Some(data) = ip_frame(c, s, 6, &tcp(sport, port, 2, 101, ACK, &[0x61; 64])) else {
            continue;
        };
        if handshake
            .iter()
            .all(|f| f.as_ref().is_some_and(|f| forward(&mut p, f)))
            && (0..10).all(|_| forward(&mut p, &data))
        {
            frames.push(data);
        }
    }
    if frames.is_empty() {
        return Err("the policy forwards none of the generated TCP flows".into());
    }
    Ok(Established {
        pipeline: p,
        frames,
    })
}

/// Mean nanoseconds per packet over `packets` data packets of `e`'s connections, round robin.
pub fn time_established(e: &mut Established, policy: &ActivePolicy, packets: usize) -> f64 {
    let now = Timestamp::from_secs(1);
    let start = Instant::now();
    for i in 0..packets {
        let f = &e.frames[i % e.frames.len()];
        black_box(run(&mut e.pipeline, black_box(f), now, policy));
    }
    start.elapsed().as_nanos() as f64 / packets.max(1) as f64
}

/// The first packets of `count` new flows (unique client ports, at most 64511 of them) drawn
/// round robin from `generated`'s TCP and UDP queries.
pub fn new_flow_frames(generated: &Generated, count: usize) -> Vec<Vec<u8>> {
    generated
        .queries
        .iter()
        .cycle()
        .take(count.min(64_511) * 2)
        .enumerate()
        .filter_map(|(i, q)| first_packet(q, 1024 + i as u16))
        .take(count.min(64_511))
        .collect()
}

/// Mean nanoseconds per packet for the first packets `frames` in a fresh pipeline (built
/// before the clock starts, dropped after it stops).
pub fn time_new_flows(frames: &[Vec<u8>], policy: &ActivePolicy) -> Result<f64, String> {
    let mut p = pipeline(frames.len())?;
    let now = Timestamp::from_secs(1);
    let start = Instant::now();
    for f in frames {
        black_box(run(&mut p, black_box(f), now, policy));
    }
    let took = start.elapsed();
    drop(p);
    Ok(took.as_nanos() as f64 / frames.len().max(1) as f64)
}
