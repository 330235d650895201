//! Criterion micro-benchmarks of the policy compiler and lookup, at 10, 1k, 10k and 100k rules:
//!
//! - `policy_compile/N`: `Compiled::compile` of a generated policy of N rules (goals: 10k rules
//!   within 100 ms, 100k within 1 s, one core);
//! - `policy_evaluate/N`: `Compiled::evaluate` of one new flow, cycling through 4096 generated
//!   queries (half of them drawn from rules, so they hit; the rest workload, node and external
//!   pairs at random). Goal: roughly flat from 10 to 100k rules.
//! - `policy_new_flow/N`: the whole pipeline on the first packet of a new flow (parse, session
//!   insert, threat counters, policy lookup), the generated queries as TCP SYNs and UDP
//!   datagrams, each its own flow; the new-flow classification rate is its inverse.
//! - `policy_established/N`: the whole pipeline on a data packet of one of 1024 established
//!   IPv4 TCP connections that the policy forwards (their decision is cached in the session with
//!   its epoch, so the rule count should not matter: goal within 5% from 10 to 100k rules);
//!   `policy_established/none` is the same flows with no policy at all.
//!
//! The policies are `bench::policy_gen`'s.

// A benchmark that cannot set up has nothing to measure; its shape is printed once per size.
#![allow(clippy::expect_used, clippy::print_stderr)]

use std::hint::black_box;
use std::time::Duration;

use bench::policy_gen::{self, QUERIES, SIZES, generate};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::conntrack::Timestamp;
use dataplane::pipeline;
use dataplane::policy::{ActivePolicy, Compiled, Verdict};

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

/// New flows per batch: each batch gets a fresh pipeline (built and dropped untimed), so every
/// packet timed is the first of its flow.
const BATCH: usize = 60_000;

fn new_flow(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_new_flow");
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let generated = generate(n);
        let policy = ActivePolicy {
            epoch: 2,
            compiled: Compiled::compile(&generated.policy, &[]).expect("valid policy"),
        };
        let frames = policy_gen::new_flow_frames(&generated, BATCH);
        let mut p = policy_gen::pipeline(BATCH).expect("pipeline");
        let forwarded = frames
            .iter()
            .filter(|f| {
                policy_gen::run(&mut p, f, Timestamp::from_secs(1), &policy)
                    == Some(pipeline::Verdict::Forward)
            })
            .count();
        eprintln!(
            "policy/{n}: {} new flows per batch, {forwarded} forwarded",
            frames.len()
        );
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let k = left.min(frames.len());
                    let ns = policy_gen::time_new_flows(&frames[..k], &policy).expect("pipeline");
                    took += Duration::from_nanos((ns * k as f64) as u64);
                    left -= k;
                }
                took
            })
        });
    }
    g.finish();
}

/// Established connections per policy size.
const FLOWS: usize = 1024;

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_established");
    g.throughput(Throughput::Elements(1));
    let mut sizes: Vec<Option<usize>> = vec![None];
    sizes.extend(SIZES.iter().map(|&n| Some(n)));
    for n in sizes {
        // `none`: the flows of the smallest policy, without any policy.
        let generated = generate(n.unwrap_or(SIZES[0]));
        let policy = match n {
            Some(_) => ActivePolicy {
                epoch: 2,
                compiled: Compiled::compile(&generated.policy, &[]).expect("valid policy"),
            },
            None => ActivePolicy::empty().expect("empty policy"),
        };
        let mut e = policy_gen::established(&generated, &policy, FLOWS).expect("flows");
        let id = n.map_or_else(|| "none".to_owned(), |n| n.to_string());
        eprintln!("policy/{id}: {} established connections", e.frames.len());
        g.bench_with_input(BenchmarkId::from_parameter(&id), &id, |b, _| {
            b.iter_custom(|iters| {
                let ns = policy_gen::time_established(&mut e, &policy, iters as usize);
                Duration::from_nanos((ns * iters as f64) as u64)
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = compile, evaluate, new_flow, established
}
criterion_main!(benches);
