//! Criterion micro-benchmarks of the policy compiler and lookup, at 10, 1k, 10k and 100k rules:
//!
//! - `policy_compile/N`: `Compiled::compile` of a generated policy of N rules (goals: 10k rules
//!   within 100 ms, 100k within 1 s, one core);
//! - `policy_evaluate/N`: `Compiled::evaluate` of one new flow, cycling through 4096 generated
//!   queries (half of them drawn from rules, so they hit; the rest workload, node and external
//!   pairs at random). Goal: roughly flat from 10 to 100k rules.
//!
//! The generated policy is shaped like a cluster: one group per 25 rules (four workloads each,
//! every fourth with an IPv6 address too, a few extra members), one address group per 20
//! groups, a node network; rules mostly group to group on one well-known port, some on port
//! ranges, `icmp`, `any`, to and from `external`, address groups, `nodes` and `containers`,
//! some naming applications, some with a priority, a few disabled.

// A benchmark that cannot set up has nothing to measure; its shape is printed once per size.
#![allow(clippy::expect_used, clippy::print_stderr)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::dpi::App;
use dataplane::policy::{
    Action, Compiled, Group, Mode, Policy, PortSpec, Query, Rule, Verdict, Workload,
};

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
const QUERIES: usize = 4096;

/// splitmix64: deterministic, no dependency.
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

struct Generated {
    policy: Policy,
    queries: Vec<Query>,
}

fn generate(rules: usize) -> Generated {
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
                .map(|s| s.parse().expect("network"))
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
        nodes: vec!["10.255.0.0/16".parse().expect("network")],
    };

    // Queries: half from rules (a member of `from` to a member of `to` on a matching port),
    // half random pairs.
    let member = |rng: &mut Rng, group: &str| -> IpAddr {
        if let Some(g) = group.strip_prefix("auto.svc") {
            let g: usize = g.parse().expect("group index");
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

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_compile");
    g.sample_size(10);
    for n in SIZES {
        let generated = generate(n);
        let compiled = Compiled::compile(&generated.policy, &[]).expect("valid policy");
        eprintln!("policy/{n}: {:?}", compiled.stats());
        g.bench_with_input(BenchmarkId::from_parameter(n), &generated.policy, |b, p| {
            b.iter(|| Compiled::compile(black_box(p), &[]).is_ok())
        });
    }
    g.finish();
}

fn evaluate(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_evaluate");
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let generated = generate(n);
        let compiled = Compiled::compile(&generated.policy, &[]).expect("valid policy");
        let qs = &generated.queries;
        let mut mix = [0usize; 4];
        for q in qs {
            let d = compiled.evaluate(q);
            let slot = match (d.pending_app, d.verdict) {
                (true, _) => 3,
                (_, Verdict::Allow) => 0,
                (_, Verdict::Deny) => 1,
                (_, Verdict::NoMatch) => 2,
            };
            mix[slot] += 1;
        }
        eprintln!(
            "policy/{n}: {QUERIES} queries: {} allow, {} deny, {} no match, {} pending",
            mix[0], mix[1], mix[2], mix[3]
        );
        let mut at = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let q = &qs[at];
                at = (at + 1) % QUERIES;
                compiled.evaluate(black_box(q))
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = compile, evaluate
}
criterion_main!(benches);
