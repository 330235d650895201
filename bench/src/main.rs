//! `palisade-bench`: runs benchmark scenarios with the reference (`dpdk-testpmd`) and with
//! `palisade-dp` in the same position, on the same ports and cores, alternating, in one
//! invocation; prints a table and writes a JSON report.
//!
//! Scenarios `forward`, `protect-10k`, `rule-scaling`, `hitless-update`: `palisade-pktgen`
//! through the device under test and back, see [`path_run`].
//!
//! Scenario `txonly`: a `dpdk-testpmd --forward-mode=txonly` generator owns a memif server
//! socket; the device under test attaches to it as a memif client and forwards everything to a
//! `net_null` sink. The rate is the sink's transmit counter over the measurement window. The
//! generator's busy lcore is pinned to CPU 0, the DUT's worker to CPU 1: two busy pollers, one
//! per vCPU.
//!
//! Scenario `null`: no generator; the DUT's input is a `net_null` port that synthesises
//! packets, forwarded to a `net_null` sink: the pure forwarding cost, CPU-bound.
//!
//! Scenario `policy`: see [`policy_run`].
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::{
    Report, Sample, ScenarioReport, TestpmdStats, dp_cycles_per_packet, dp_eal_init_ms, dp_port_tx,
    median, rate, testpmd_cycles_per_packet,
};
use clap::Parser;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

mod control_run;
mod path_run;
mod policy_run;
mod veth_run;

/// Benchmarks palisade-dp against dpdk-testpmd in the same run.
#[derive(Debug, Parser)]
#[command(name = "palisade-bench", version, about)]
struct Cli {
    /// Fewer and shorter rounds (a smoke run, not a measurement to quote).
    #[arg(long)]
    quick: bool,
    /// Rounds per side (alternating reference, palisade).
    #[arg(long)]
    rounds: Option<u32>,
    /// Seconds measured per round, after the warm-up.
    #[arg(long)]
    seconds: Option<u64>,
    /// Packet size in bytes.
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench/report.json")]
    out: PathBuf,
    /// palisade-dp binary (default: next to this one).
    #[arg(long)]
    dp: Option<PathBuf>,
    /// dpdk-testpmd binary.
    #[arg(long, default_value = "dpdk-testpmd")]
    testpmd: PathBuf,
    /// Workers of the device under test on the generator-path and veth scenarios, each with
    /// one queue of both ports (palisade-dp `queues`, testpmd `--nb-cores`/`--rxq`/`--txq`);
    /// the generator sends on as many queues.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    workers: u16,
    /// CPUs the device under test's workers run on (an lcore list, `2-5`); worker i on the
    /// i-th (round robin when there are more workers than CPUs).
    #[arg(long, default_value = "1")]
    worker_cpus: String,
    /// CPU of the generator and of the device under test's main lcore.
    #[arg(long, default_value_t = 0)]
    generator_cpu: u32,
    /// Where criterion keeps its results (for the `pipeline` scenario).
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// Scenarios to run (default: forward, null). Known: forward (palisade-pktgen -> memif ->
    /// DUT -> memif -> palisade-pktgen: zero-loss rate and latency, no policy), protect-10k
    /// (the same in protect mode with 10k rules), rule-scaling (10 to 100k rules: established
    /// and new-flow zero-loss rates), hitless-update (100 policy swaps at 80% of the zero-loss
    /// rate), txonly (testpmd txonly -> memif -> DUT -> null), null
    /// (null -> null), pipeline (the criterion micro-benchmarks in cycles, next to testpmd's),
    /// policy (the policy engine at 10 to 100k rules: established and new-flow cost, compile
    /// time, swap latency in a running palisade-dp), control (through `palisade up` and real
    /// traffic between two namespaces: a group's mode change through the REST API until the
    /// dataplane runs it and until the traffic shows it, and a new connection until its
    /// learned rule is listed by the API; needs `palisade` next to `palisade-dp`; alias
    /// mode-change), veth (the zero-loss search over veth pairs between two namespaces of
    /// its own, af_packet and af_xdp: the container path; entries veth-af_packet and
    /// veth-af_xdp). The generator-path scenarios need `palisade-pktgen` next to
    /// `palisade-dp`.
    scenarios: Vec<String>,
}

const WARMUP: Duration = Duration::from_secs(3);
/// Packet pool size on every side (testpmd's default would take 340 MB of hugepages each).
const MBUFS: u32 = 32767;

/// Turns an output line into a counter value, when it carries one.
type LineParser = dyn FnMut(&str) -> Option<u64> + Send;

/// A child process whose output lines are turned into counter samples by a reader thread.
struct Probe {
    child: Child,
    name: &'static str,
    samples: Arc<Mutex<Vec<Sample>>>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Probe {
    /// Starts `cmd`, reading stdout (`from_stdout`) or stderr line by line; `parse` turns a line
    /// into a counter value.
    fn spawn(
        name: &'static str,
        mut cmd: Command,
        from_stdout: bool,
        parse: impl FnMut(&str) -> Option<u64> + Send + 'static,
    ) -> Result<Self, String> {
        cmd.stdin(Stdio::null());
        if from_stdout {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let streams: Vec<Box<dyn std::io::Read + Send>> = if from_stdout {
            let out = child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
            let err = child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
            out.into_iter().chain(err).collect()
        } else {
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>)
                .into_iter()
                .collect()
        };
        // The first stream carries the counters; any other is only kept for error messages.
        let mut parse: Option<Box<LineParser>> = Some(Box::new(parse));
        for s in streams {
            let (samples, lines) = (Arc::clone(&samples), Arc::clone(&lines));
            let mut parse_here = parse.take();
            std::thread::spawn(move || {
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    if let Some(v) = parse_here.as_mut().and_then(|p| p(&line))
                        && let Ok(mut s) = samples.lock()
                    {
                        s.push(Sample {
                            at: Instant::now(),
                            value: v,
                        });
                    }
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Ok(Self {
            child,
            name,
            samples,
            lines,
        })
    }

    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Fails when the process already exited, with its output.
    fn check_alive(&mut self) -> Result<(), String> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Err(format!(
                "{} exited early ({st}):\n{}",
                self.name,
                self.lines().join("\n")
            ));
        }
        Ok(())
    }

    /// SIGINT, then SIGKILL after 10 s.
    fn stop(mut self) -> Vec<String> {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100)); // let the readers drain
                return self.lines();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The testpmd port-`port` transmit counter parser.
fn testpmd_tx(port: u16) -> impl FnMut(&str) -> Option<u64> + Send + 'static {
    let mut st = TestpmdStats::default();
    move |l| st.feed(l).and_then(|(p, tx)| (p == port).then_some(tx))
}

/// Where the device under test receives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A testpmd txonly generator behind a memif socket (scenario `forward`).
    Memif,
    /// A `net_null` port that synthesises packets itself, no generator (scenario `null`).
    Null,
}

struct Forward<'a> {
    cli: &'a Cli,
    dp: PathBuf,
    tag: String,
    socket: String,
    source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dut {
    Reference,
    Palisade,
}

struct Round {
    rate_pps: f64,
    offered_pps: f64,
    cycles_per_packet: Option<f64>,
    eal_init_ms: Option<f64>,
    tsc_hz: Option<u64>,
}

impl Forward<'_> {
    fn memif(&self, name: &str, role: &str) -> String {
        format!(
            "{name},role={role},socket={},socket-abstract=yes",
            self.socket
        )
    }

    /// testpmd under `stdbuf -oL`: its statistics must arrive as they are printed, because
    /// the harness timestamps each line (a pipe would otherwise block-buffer them).
    fn testpmd(&self) -> Command {
        let mut cmd = Command::new("stdbuf");
        cmd.arg("-oL").arg(&self.cli.testpmd);
        cmd
    }

    fn generator(&self, round: u32) -> Result<Probe, String> {
        let mut cmd = self.testpmd();
        // lcore 0 (main, mostly asleep) on CPU 1, lcore 1 (the busy transmitter) on CPU 0.
        cmd.args([
            "--lcores",
            "0@1,1@0",
            "--in-memory",
            "--no-pci",
            "--no-telemetry",
            "--file-prefix",
        ])
        .arg(format!("{}gen{round}", self.tag))
        .arg("--vdev")
        .arg(self.memif("net_memif_gen", "server"))
        .args([
            "--",
            "--forward-mode=txonly",
            "--stats-period=1",
            "--nb-cores=1",
        ])
        .arg(format!("--txpkts={}", self.cli.size))
        .arg(format!("--total-num-mbufs={MBUFS}"));
        Probe::spawn("generator (testpmd txonly)", cmd, true, testpmd_tx(0))
    }

    fn dut(&self, which: Dut, round: u32, dir: &Path) -> Result<Probe, String> {
        match which {
            Dut::Reference => {
                let mut cmd = self.testpmd();
                cmd.args([
                    "-l",
                    "0-1",
                    "--in-memory",
                    "--no-pci",
                    "--no-telemetry",
                    "--file-prefix",
                ])
                .arg(format!("{}ref{round}", self.tag))
                .arg("--vdev")
                .arg(match self.source {
                    Source::Memif => self.memif("net_memif_in", "client"),
                    Source::Null => format!("net_null_in,size={}", self.cli.size),
                })
                .args(["--vdev", "net_null_sink,no-rx=1"])
                .args([
                    "--",
                    "--forward-mode=io",
                    "--stats-period=1",
                    "--nb-cores=1",
                    "--record-core-cycles",
                ])
                .arg(format!("--total-num-mbufs={MBUFS}"));
                Probe::spawn("reference (testpmd io)", cmd, true, testpmd_tx(1))
            }
            Dut::Palisade => {
                let cfg = dir.join(format!("dp{round}.toml"));
                let input = match self.source {
                    Source::Memif => format!(
                        "kind = \"memif\"\nsocket = \"{}\"\nrole = \"client\"",
                        self.socket
                    ),
                    Source::Null => format!("kind = \"null\"\nsize = {}", self.cli.size),
                };
                let text = format!(
                    "[dataplane]\nlcores = \"0-1\"\nmemory = \"in-memory\"\nfile_prefix = \"{}dp{round}\"\nidle = \"busy\"\nstats_interval_s = 1\nmbufs = {MBUFS}\n\
                     [[dataplane.port]]\nname = \"in\"\n{input}\n\
                     [[dataplane.port]]\nname = \"sink\"\nkind = \"null\"\nno_rx = true\n\
                     [[dataplane.pair]]\nports = [\"in\", \"sink\"]\n",
                    self.tag
                );
                std::fs::write(&cfg, text).map_err(|e| format!("write {}: {e}", cfg.display()))?;
                let mut cmd = Command::new(&self.dp);
                cmd.arg("--config").arg(&cfg).env("RUST_LOG", "info");
                Probe::spawn("palisade-dp", cmd, false, |l| dp_port_tx(l, "sink"))
            }
        }
    }

    fn round(&self, which: Dut, round: u32, seconds: u64, dir: &Path) -> Result<Round, String> {
        let mut generator = match self.source {
            Source::Memif => {
                let mut g = self.generator(round)?;
                std::thread::sleep(Duration::from_millis(1500));
                g.check_alive()?;
                Some(g)
            }
            Source::Null => None,
        };
        let start = Instant::now();
        let mut dut = self.dut(which, round, dir)?;
        let window = Duration::from_secs(seconds);
        while start.elapsed() < WARMUP + window + Duration::from_millis(2500) {
            std::thread::sleep(Duration::from_millis(200));
            dut.check_alive()?;
            if let Some(g) = generator.as_mut() {
                g.check_alive()?;
            }
        }
        let dut_samples = dut.samples();
        let gen_samples = generator.as_ref().map(Probe::samples);
        // The DUT stops first, while traffic still flows: testpmd's summary counters underflow
        // when its memif peer goes away first. The generator (testpmd's memif server) may
        // then crash as its client leaves; its numbers are already taken, so that is ignored.
        let dut_lines = dut.stop();
        if let Some(g) = generator {
            let _ = g.stop();
        }
        let span = window + Duration::from_millis(2500);
        let rate_pps = rate(&dut_samples, start, WARMUP, span).ok_or_else(|| {
            let at: Vec<String> = dut_samples
                .iter()
                .map(|s| {
                    format!(
                        "{:.1}s={}",
                        s.at.duration_since(start).as_secs_f64(),
                        s.value
                    )
                })
                .collect();
            format!(
                "no rate from {which:?} (samples: {}); its output:\n{}",
                at.join(" "),
                dut_lines.join("\n")
            )
        })?;
        // Without a generator the source is the DUT's own null port: offered = forwarded.
        let offered_pps = match gen_samples {
            Some(g) => rate(&g, start, WARMUP, span).unwrap_or(0.0),
            None => rate_pps,
        };
        let eal_init_ms = dut_lines.iter().find_map(|l| dp_eal_init_ms(l));
        // The last report covers the whole run, warm-up included: cycles per packet do not
        // depend on the rate, so that is fine.
        let cycles_per_packet = dut_lines
            .iter()
            .rev()
            .find_map(|l| testpmd_cycles_per_packet(l).or_else(|| dp_cycles_per_packet(l)));
        let tsc_hz = dut_lines.iter().find_map(|l| bench::testpmd_tsc_hz(l));
        Ok(Round {
            rate_pps,
            offered_pps,
            cycles_per_packet,
            eal_init_ms,
            tsc_hz,
        })
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} vCPUs, Linux {}", kernel.trim())
}

fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The palisade-dp binary: `--dp`, or next to this one.
fn dp_path(cli: &Cli) -> Result<PathBuf, String> {
    match &cli.dp {
        Some(p) => Ok(p.clone()),
        None => Ok(std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("palisade-dp")),
    }
}

fn run_forward(cli: &Cli, source: Source) -> Result<ScenarioReport, String> {
    let name = match source {
        Source::Memif => "txonly",
        Source::Null => "null",
    };
    let rounds = cli.rounds.unwrap_or(if cli.quick { 1 } else { 3 });
    let seconds = cli.seconds.unwrap_or(if cli.quick { 3 } else { 8 });
    let dp = dp_path(cli)?;
    let pid = std::process::id();
    let fw = Forward {
        cli,
        dp,
        tag: format!("pb{pid}"),
        socket: format!("/run/palisade-bench-{pid}.sock"),
        source,
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (mut reference, mut palisade, mut offered, mut eal) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ref_cpp, mut dp_cpp) = (Vec::new(), Vec::new());
    let mut tsc_hz = None;
    for r in 0..rounds {
        for which in [Dut::Reference, Dut::Palisade] {
            let res = fw.round(which, r, seconds, dir.path())?;
            let mpps = res.rate_pps / 1e6;
            eprintln!(
                "{name} round {}/{rounds} {which:?}: {mpps:.2} Mpps (offered {:.2}), {:.1} cycles/packet",
                r + 1,
                res.offered_pps / 1e6,
                res.cycles_per_packet.unwrap_or(0.0)
            );
            offered.push(res.offered_pps / 1e6);
            match which {
                Dut::Reference => {
                    reference.push(mpps);
                    ref_cpp.extend(res.cycles_per_packet);
                    tsc_hz = tsc_hz.or(res.tsc_hz);
                }
                Dut::Palisade => {
                    palisade.push(mpps);
                    dp_cpp.extend(res.cycles_per_packet);
                    eal.extend(res.eal_init_ms);
                }
            }
        }
    }
    // Best of the rounds on each side: on these shared VMs a whole round sometimes runs at
    // half speed for both programs alike (the per-packet cost doubles), so the best round is
    // the program's own cost; medians are reported beside it.
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let least = |v: &[f64]| {
        v.iter()
            .copied()
            .filter(|x| *x > 0.0)
            .fold(f64::INFINITY, f64::min)
    };
    let reference_mpps = best(&reference);
    let palisade_mpps = best(&palisade);
    let reference_cycles_per_packet = least(&ref_cpp);
    let palisade_cycles_per_packet = least(&dp_cpp);
    let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
    let (reference_cycles_per_packet, palisade_cycles_per_packet) = (
        finite(reference_cycles_per_packet),
        finite(palisade_cycles_per_packet),
    );
    Ok(ScenarioReport {
        name: name.into(),
        reference: "dpdk-testpmd --forward-mode=io".into(),
        reference_mpps,
        palisade_mpps,
        ratio: if reference_mpps > 0.0 {
            palisade_mpps / reference_mpps
        } else {
            0.0
        },
        reference_cycles_per_packet,
        palisade_cycles_per_packet,
        cycle_ratio: if palisade_cycles_per_packet > 0.0 {
            reference_cycles_per_packet / palisade_cycles_per_packet
        } else {
            0.0
        },
        offered_mpps: median(&offered).unwrap_or(0.0),
        reference_median_mpps: median(&reference).unwrap_or(0.0),
        palisade_median_mpps: median(&palisade).unwrap_or(0.0),
        reference_median_cycles_per_packet: median(&ref_cpp).unwrap_or(0.0),
        palisade_median_cycles_per_packet: median(&dp_cpp).unwrap_or(0.0),
        packet_bytes: cli.size,
        reference_rounds: reference,
        palisade_rounds: palisade,
        reference_rounds_cycles_per_packet: ref_cpp,
        palisade_rounds_cycles_per_packet: dp_cpp,
        palisade_eal_init_ms: eal,
        extra: serde_json::Map::new(),
        tsc_hz,
    })
}

/// The criterion micro-benchmarks (`cargo bench -p bench --bench pipeline`, run by
/// scripts/bench.sh just before) in cycles, next to testpmd's cycles per packet from the
/// `null` scenario of this same invocation.
fn pipeline_report(cli: &Cli, null: &ScenarioReport) -> Result<bench::PipelineReport, String> {
    let tsc_hz = null
        .tsc_hz
        .ok_or("testpmd did not report its TSC frequency")?;
    let ghz = tsc_hz as f64 / 1e9;
    let mut steps = Vec::new();
    let sizes = ["1000", "100000", "1000000"];
    let wanted: Vec<(&str, Vec<&str>)> = vec![
        ("parse", vec!["ipv4_tcp"]),
        ("conntrack_hit", sizes.to_vec()),
        ("conntrack_insert", sizes.to_vec()),
        ("dpi_first_packet", vec!["http", "tls"]),
        ("established", sizes.to_vec()),
    ];
    for (group, ids) in wanted {
        for id in ids {
            let ns = bench::criterion_mean_ns(&cli.criterion, group, id).ok_or_else(|| {
                format!(
                    "no criterion result {group}/{id} under {}: run `cargo bench -p bench --bench pipeline` first",
                    cli.criterion.display()
                )
            })?;
            steps.push(bench::Step {
                name: group.into(),
                at: id.into(),
                ns,
                cycles: ns * ghz,
            });
        }
    }
    Ok(bench::PipelineReport {
        tsc_hz,
        reference: "dpdk-testpmd --forward-mode=io, null -> null".into(),
        reference_cycles_per_packet: null.reference_cycles_per_packet,
        steps,
        established_goal_cycles: 100.0,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let wanted: Vec<String> = if cli.scenarios.is_empty() {
        vec!["forward".into(), "null".into()]
    } else {
        cli.scenarios.clone()
    };
    let mut report = Report {
        commit: commit(),
        machine: machine(),
        scenarios: Vec::new(),
        pipeline: None,
        policy: None,
    };
    let mut control = None;
    for s in &wanted {
        let res = match s.as_str() {
            "txonly" => run_forward(&cli, Source::Memif),
            "null" => run_forward(&cli, Source::Null),
            "pipeline" => {
                // Needs testpmd's cycles per packet from this run: the null scenario.
                let null = match report.scenarios.iter().find(|s| s.name == "null") {
                    Some(n) => Ok(n.clone()),
                    None => run_forward(&cli, Source::Null)
                        .inspect(|n| report.scenarios.push(n.clone())),
                };
                match null.and_then(|n| pipeline_report(&cli, &n)) {
                    Ok(p) => {
                        report.pipeline = Some(p);
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
            "policy" => {
                let tag = format!("pb{}", std::process::id());
                match dp_path(&cli).and_then(|dp| policy_run::run(cli.quick, cli.rounds, &dp, &tag))
                {
                    Ok(p) => {
                        report.policy = Some(p);
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
            "control" | "mode-change" => {
                let tag = format!("pb{}", std::process::id());
                let (changes, connections) = if cli.quick { (4, 3) } else { (30, 20) };
                match dp_path(&cli).and_then(|dp| {
                    let palisade = dp.with_file_name("palisade");
                    control_run::run(&palisade, &dp, &tag, changes, connections)
                }) {
                    Ok(c) => {
                        control = Some(c);
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
            "forward" | "protect-10k" | "rule-scaling" | "hitless-update" | "veth" => {
                let run = dp_path(&cli).and_then(|dp| {
                    let tag = format!("pb{}{}", std::process::id(), s.replace('-', ""));
                    let cores = path_run::Cores {
                        generator: cli.generator_cpu,
                        workers_on: dataplane::config::parse_lcores(&cli.worker_cpus)
                            .map_err(|e| format!("--worker-cpus: {e}"))?,
                        workers: cli.workers,
                    };
                    let b = path_run::Bench {
                        pktgen: &path_run::pktgen_next_to(&dp),
                        dp: &dp,
                        testpmd: &cli.testpmd,
                        tag: &tag,
                        quick: cli.quick,
                        rounds: cli.rounds,
                        size: cli.size,
                        runs: std::cell::Cell::new(0),
                        cores: cores.clone(),
                    };
                    let mut entries = match s.as_str() {
                        "forward" => b.forward().map(|r| vec![r]),
                        "protect-10k" => b.protect_10k().map(|r| vec![r]),
                        "rule-scaling" => b.rule_scaling().map(|r| vec![r]),
                        "hitless-update" => b.hitless_update().map(|r| vec![r]),
                        _ => b.veth(),
                    }?;
                    for e in &mut entries {
                        e.extra.insert("workers".into(), cores.workers.into());
                        e.extra
                            .insert("dut_lcores".into(), cores.dut_lcores().into());
                    }
                    Ok(entries)
                });
                match run {
                    Ok(entries) => {
                        report.scenarios.extend(entries);
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
            other => Err(format!(
                "unknown scenario `{other}`; known: forward, protect-10k, rule-scaling, hitless-update, txonly, null, pipeline, policy, control (alias mode-change), veth"
            )),
        };
        match res {
            Ok(r) => report.scenarios.push(r),
            Err(e) => {
                eprintln!("palisade-bench: error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    println!(
        "{:<14} {:<31} {:>8} {:>8} {:>6} {:>8} {:>8} {:>7} {:>8}",
        "scenario",
        "reference",
        "ref Mpps",
        "pal Mpps",
        "ratio",
        "ref c/p",
        "pal c/p",
        "c ratio",
        "offered"
    );
    for s in &report.scenarios {
        println!(
            "{:<14} {:<31.31} {:>8.2} {:>8.2} {:>6.3} {:>8.1} {:>8.1} {:>7.3} {:>8.2}",
            s.name,
            s.reference,
            s.reference_mpps,
            s.palisade_mpps,
            s.ratio,
            s.reference_cycles_per_packet,
            s.palisade_cycles_per_packet,
            s.cycle_ratio,
            s.offered_mpps
        );
    }
    if let Some(p) = &report.pipeline {
        println!();
        println!(
            "pipeline step, cycles per packet at {:.2} GHz (testpmd io-forward, null -> null: {:.1}; goal for established: {:.0})",
            p.tsc_hz as f64 / 1e9,
            p.reference_cycles_per_packet,
            p.established_goal_cycles
        );
        for st in &p.steps {
            println!(
                "{:<18} {:>9} {:>8.1} ns {:>8.1} cycles",
                st.name, st.at, st.ns, st.cycles
            );
        }
    }
    if let Some(p) = &report.policy {
        policy_run::print(p);
    }
    if let Some(c) = &control {
        control_run::print(c);
    }
    let mut json = match serde_json::to_value(&report) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("palisade-bench: error: {e}");
            return ExitCode::from(1);
        }
    };
    if let (Some(c), Some(obj)) = (&control, json.as_object_mut()) {
        obj.insert(
            "control".into(),
            serde_json::to_value(c).unwrap_or_default(),
        );
    }
    if let Some(parent) = cli.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    match serde_json::to_string_pretty(&json) {
        Ok(j) => {
            if let Err(e) = std::fs::write(&cli.out, j + "\n") {
                eprintln!(
                    "palisade-bench: error: cannot write {}: {e}",
                    cli.out.display()
                );
                return ExitCode::from(1);
            }
            println!("report: {}", cli.out.display());
        }
        Err(e) => {
            eprintln!("palisade-bench: error: {e}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
