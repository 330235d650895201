//! Scenario `policy`: the policy engine at 10, 1k, 10k and 100k rules (`bench::policy_gen`'s
//! generated policies), in two parts.
//!
//! 1. In this process, on one core, every size once per round, interleaved (so a slow phase of
//!    the VM hits every size alike): the pipeline's cost for a data packet of an established
//!    connection (1024 connections, decisions cached), for the first packet of a new flow
//!    (parse, session insert, policy lookup), and `Compiled::compile`. A run without any
//!    policy is the baseline for the established cost.
//! 2. In a running `palisade-dp` (a busy worker forwarding `net_null` -> `net_null` on CPU 1,
//!    the main lcore on CPU 0): `set_policy` over the control socket, several times per size;
//!    the dataplane's own `policy_compile_us` and `policy_swap_us` (publish until every worker
//!    acknowledged the new epoch), and the client's round trip.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use bench::policy_gen::{self, Established, Generated, SIZES, generate};
use bench::{PolicyReport, PolicySize, median};
use dataplane::policy::{ActivePolicy, Compiled, Policy};

use super::Probe;

/// Established connections per size.
const FLOWS: usize = 1024;
/// New flows per timed batch (a fresh pipeline each).
const BATCH: usize = 60_000;
/// Established packets timed per size and round.
const PACKETS: usize = 300_000;

struct Size {
    rules: Option<usize>,
    generated: Generated,
    active: ActivePolicy,
    established: Established,
    new_flows: Vec<Vec<u8>>,
    established_ns: Vec<f64>,
    new_flow_ns: Vec<f64>,
    compile_ms: Vec<f64>,
}

fn prepare(rules: Option<usize>) -> Result<Size, String> {
    let generated = generate(rules.unwrap_or(SIZES[0]));
    let active = match rules {
        Some(n) => ActivePolicy {
            epoch: 2,
            compiled: Compiled::compile(&generated.policy, &[])
                .map_err(|e| format!("generated policy of {n} rules: {e}"))?,
        },
        None => ActivePolicy::empty().map_err(|e| e.to_string())?,
    };
    let established = policy_gen::established(&generated, &active, FLOWS)?;
    let new_flows = policy_gen::new_flow_frames(&generated, BATCH);
    Ok(Size {
        rules,
        generated,
        active,
        established,
        new_flows,
        established_ns: Vec::new(),
        new_flow_ns: Vec::new(),
        compile_ms: Vec::new(),
    })
}

fn label(rules: Option<usize>) -> String {
    rules.map_or_else(|| "none".to_owned(), |n| n.to_string())
}

/// Part 1: every size once per round.
fn in_process(sizes: &mut [Size], rounds: u32) -> Result<(), String> {
    for r in 0..rounds {
        // Rotate the order so no size always runs first after the previous round.
        let n = sizes.len();
        for k in 0..n {
            let s = &mut sizes[(k + r as usize) % n];
            let est = policy_gen::time_established(&mut s.established, &s.active, PACKETS);
            let new = policy_gen::time_new_flows(&s.new_flows, &s.active)?;
            s.established_ns.push(est);
            s.new_flow_ns.push(new);
            if s.rules.is_some() {
                let t = Instant::now();
                let c = Compiled::compile(&s.generated.policy, &[]).map_err(|e| e.to_string())?;
                s.compile_ms.push(t.elapsed().as_secs_f64() * 1e3);
                drop(c);
            }
        }
        eprintln!(
            "policy round {}/{rounds}: established ns {}",
            r + 1,
            sizes
                .iter()
                .map(|s| format!(
                    "{}={:.0}",
                    label(s.rules),
                    s.established_ns.last().unwrap_or(&0.0)
                ))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

/// What the dataplane reported for one size.
#[derive(Default)]
struct Swaps {
    swap_us: Vec<f64>,
    compile_ms: Vec<f64>,
    round_trip_ms: Vec<f64>,
}

/// Part 2: `swaps` publications per size into a running palisade-dp.
fn in_dataplane(
    dp_bin: &Path,
    tag: &str,
    policies: &[(usize, &Policy)],
    swaps: u32,
) -> Result<Vec<Swaps>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let socket = dir.path().join("dp.sock");
    let cfg = dir.path().join("dp.toml");
    let text = format!(
        "[dataplane]\nlcores = \"0-1\"\nmemory = \"in-memory\"\nfile_prefix = \"{tag}policy\"\nidle = \"busy\"\nstats_interval_s = 0\nmbufs = {}\nsocket = \"{}\"\n\
         [[dataplane.port]]\nname = \"in\"\nkind = \"null\"\nsize = 64\n\
         [[dataplane.port]]\nname = \"sink\"\nkind = \"null\"\nno_rx = true\n\
         [[dataplane.pair]]\nports = [\"in\", \"sink\"]\n",
        super::MBUFS,
        socket.display()
    );
    std::fs::write(&cfg, text).map_err(|e| format!("write {}: {e}", cfg.display()))?;
    let mut cmd = Command::new(dp_bin);
    cmd.arg("--config").arg(&cfg).env("RUST_LOG", "warn");
    let mut dp = Probe::spawn("palisade-dp", cmd, false, |_| None)?;
    let result = (|| {
        let mut client = super::path_run::connect(&socket, || dp.check_alive())?;
        let mut generation = client.server().generation;
        let mut out: Vec<Swaps> = policies.iter().map(|_| Swaps::default()).collect();
        // Interleaved like part 1; the first publication of each size is a warm-up.
        for r in 0..=swaps {
            for ((rules, policy), o) in policies.iter().zip(out.iter_mut()) {
                generation += 1;
                let mut p = (*policy).clone();
                p.generation = generation;
                let t = Instant::now();
                client
                    .set_policy(&p)
                    .map_err(|e| format!("set_policy ({rules} rules): {e}"))?;
                let rtt = t.elapsed();
                let st = client.stats().map_err(|e| format!("get_stats: {e}"))?;
                dp.check_alive()?;
                if r == 0 {
                    continue;
                }
                o.round_trip_ms.push(rtt.as_secs_f64() * 1e3);
                o.swap_us.extend(st.policy_swap_us.map(|v| v as f64));
                o.compile_ms
                    .extend(st.policy_compile_us.map(|v| v as f64 / 1e3));
            }
            if r > 0 {
                eprintln!(
                    "policy swap {r}/{swaps}: swap µs {}",
                    policies
                        .iter()
                        .zip(out.iter())
                        .map(|((n, _), o)| format!("{n}={:.0}", o.swap_us.last().unwrap_or(&0.0)))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
        }
        Ok(out)
    })();
    let lines = dp.stop();
    result.map_err(|e: String| format!("{e}\npalisade-dp said:\n{}", lines.join("\n")))
}

/// Runs the scenario.
pub fn run(
    quick: bool,
    rounds: Option<u32>,
    dp_bin: &Path,
    tag: &str,
) -> Result<PolicyReport, String> {
    let rounds = rounds.unwrap_or(if quick { 3 } else { 11 });
    let swaps = if quick { 3 } else { 20 };
    let mut sizes = Vec::new();
    for rules in std::iter::once(None).chain(SIZES.iter().map(|&n| Some(n))) {
        eprintln!("policy: preparing {}", label(rules));
        sizes.push(prepare(rules)?);
    }
    in_process(&mut sizes, rounds)?;
    let policies: Vec<(usize, &Policy)> = sizes
        .iter()
        .filter_map(|s| s.rules.map(|n| (n, &s.generated.policy)))
        .collect();
    let swapped = in_dataplane(dp_bin, tag, &policies, swaps)?;

    let least = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let base = sizes
        .iter()
        .find(|s| s.rules == Some(SIZES[0]))
        .and_then(|s| median(&s.established_ns));
    let mut out = Vec::new();
    let mut swapped = swapped.into_iter();
    for s in &sizes {
        let sw = if s.rules.is_some() {
            swapped.next().unwrap_or_default()
        } else {
            Swaps::default()
        };
        let est = median(&s.established_ns).unwrap_or(0.0);
        let new = median(&s.new_flow_ns).unwrap_or(0.0);
        out.push(PolicySize {
            rules: s.rules,
            established_ns_median: est,
            established_ns_best: least(&s.established_ns),
            established_ratio: base.filter(|b| *b > 0.0).map(|b| est / b),
            new_flow_ns_median: new,
            new_flow_ns_best: least(&s.new_flow_ns),
            new_flow_mfps: if new > 0.0 { 1e3 / new } else { 0.0 },
            compile_ms_median: median(&s.compile_ms),
            compile_ms_best: (!s.compile_ms.is_empty()).then(|| least(&s.compile_ms)),
            dp_compile_ms_median: median(&sw.compile_ms),
            swap_us_median: median(&sw.swap_us),
            swap_us_max: sw.swap_us.iter().copied().reduce(f64::max),
            swap_us: sw.swap_us,
            set_policy_ms_median: median(&sw.round_trip_ms),
        });
    }
    Ok(PolicyReport {
        rounds,
        established_flows: FLOWS,
        new_flow_batch: BATCH,
        sizes: out,
        goal_established_ratio: 1.05,
        goal_compile_10k_ms: 100.0,
        goal_compile_100k_ms: 1000.0,
        goal_swap_us: 100.0,
        swap_setup: format!(
            "palisade-dp, one busy worker (CPU 1) forwarding net_null -> net_null, main lcore on CPU 0; {swaps} set_policy per size after a warm-up"
        ),
    })
}

/// Prints the table.
pub fn print(p: &PolicyReport) {
    println!();
    println!(
        "policy engine, {} rounds (goals: established within {:.0}% of 10 rules, compile 10k <= {:.0} ms and 100k <= {:.0} ms, swap <= {:.0} µs)",
        p.rounds,
        (p.goal_established_ratio - 1.0) * 100.0,
        p.goal_compile_10k_ms,
        p.goal_compile_100k_ms,
        p.goal_swap_us
    );
    println!(
        "{:>7} {:>9} {:>7} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>10}",
        "rules",
        "est ns",
        "ratio",
        "new ns",
        "new M/s",
        "compile ms",
        "dp cmp ms",
        "swap µs",
        "swap max",
        "set_policy"
    );
    let opt =
        |v: Option<f64>, prec: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.prec$}"));
    for s in &p.sizes {
        println!(
            "{:>7} {:>9.1} {:>7} {:>9.1} {:>8.2} {:>10} {:>9} {:>9} {:>9} {:>8} ms",
            label(s.rules),
            s.established_ns_median,
            opt(s.established_ratio, 3),
            s.new_flow_ns_median,
            s.new_flow_mfps,
            opt(s.compile_ms_median, 2),
            opt(s.dp_compile_ms_median, 2),
            opt(s.swap_us_median, 1),
            opt(s.swap_us_max, 1),
            opt(s.set_policy_ms_median, 1),
        );
    }
}
