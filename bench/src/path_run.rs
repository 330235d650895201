//! Scenarios on the generator path: `palisade-pktgen` owns two memif server sockets (`a`
//! sends, `b` receives; its one lcore on CPU 0) and the device under test attaches to both as a
//! memif client and forwards `a` -> `b` (its worker on CPU 1, its main lcore on CPU 0 for both):
//! `dpdk-testpmd --forward-mode=io` as the reference, `palisade-dp` in the same position, on
//! the same ports and cores, alternating, in one run. UDP flows of `palisade-pktgen`
//! (`bench::pktgen::flows`), 64-byte frames by default.
//!
//! - `forward`: the RFC 2544 zero-loss rate (NDR) of both, 10k flows, no policy in palisade-dp
//!   (everything forwarded), the latency distribution at that rate, and both latencies at one
//!   equal load (half the lower of the two zero-loss rates).
//! - `protect-10k`: palisade-dp in protect mode with a 10k-rule policy
//!   ([`policy_gen::generate`] plus the rule that allows the benchmark's flows), 10k established
//!   flows; NDR against testpmd io's. Target: 80% of testpmd's.
//! - `rule-scaling`: palisade-dp in protect mode at 10, 1k, 10k and 100k rules: the NDR of
//!   established flows and of new flows (every frame opens a session: `new=every`), next to
//!   testpmd io's NDR. Target: established within 5% from 10 to 100k rules.
//! - `hitless-update`: palisade-dp in protect mode at 80% of its own zero-loss rate with a
//!   10k-rule policy, 80% allowed and 20% denied flows; the policy is swapped between two
//!   versions (which judge the benchmark's flows alike) 100 times while traffic flows, and
//!   compared with the same run without swaps: frames lost, denied frames that passed (a
//!   verdict from neither version would show here), the dataplane's swap time (publication
//!   until every worker acknowledged the new epoch). Targets: 0 extra loss, 0 mixed verdicts,
//!   swap within 100 µs.
//!
//! `palisade-pktgen` waits for a ready file (`--wait-for`) before sending, so the dataplane has
//! its policy before the first frame.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench::policy_gen;
use bench::{ScenarioReport, median};
use dataplane::ctl::client::{Client, ClientConfig};
use dataplane::policy::{Action, Group, Mode, Policy, PortSpec, Rule, Workload};
use serde_json::{Map, Value, json};

/// Flows of `forward` and `protect-10k`: 10k UDP flows 198.18.0.1:* -> 198.19.0.1:5201.
const ESTABLISHED: &str = bench::pktgen::flows::NDR_FLOWS;
/// Flows of the new-flow rate: each frame a fresh flow from 198.18.0.0/16 (65534 x 64512
/// 5-tuples, so none repeats within a trial).
const NEW_FLOWS: &str = "count=10000,src=198.18.0.0/16,new=every";
/// Flows of `hitless-update`: 10k flows, 20% of them to the denied port.
const MIXED: &str = "count=10000,allowed=80%";
/// The benchmark's server (the protected workload) and its clients' network.
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const CLIENTS: &str = "198.18.0.0/16";
/// The rate of the equal-load latency trials: this share of the lower of the two zero-loss
/// rates.
const EQUAL_LOAD: f64 = 0.5;
/// Rule sizes of `rule-scaling`.
const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];

/// Stops a child by pid (SIGTERM, then SIGKILL after 5 s) and reaps it.
pub(crate) fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The device under test forwarding between two ports, each given as the body of a
/// `[[dataplane.port]]` table (`name = "a"`, `kind = ...`): `dpdk-testpmd --forward-mode=io`
/// (`reference`) or `palisade-dp` with no policy (everything forwarded). testpmd's `--vdev`s
/// are the devargs palisade-dp hands DPDK for the same tables and its rings and pool cache
/// are palisade-dp's defaults, so both drive the same PMDs with the same settings. Both run
/// with the same lcores: main on CPU 0 (mostly asleep, beside the generator), the forwarding
/// lcore on CPU 1. `prefix` makes the EAL file prefix unique; palisade-dp's config and
/// control socket go to `dir`. Not started.
/// Where a run's processes go: the generator's lcore, the device under test's main lcore and
/// its workers. The default is this 2-CPU machine's layout (generator and both main lcores on
/// CPU 0, one worker on CPU 1); on a bigger box give the workers their own CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cores {
    /// CPU of the generator's lcore and of the device under test's main lcore.
    pub generator: u32,
    /// CPUs of the device under test's workers: worker `i` runs on `workers_on[i % len]`.
    pub workers_on: Vec<u32>,
    /// Workers of the device under test. Each gets one queue index of both ports (palisade-dp
    /// `queues`, testpmd `--nb-cores`/`--rxq`/`--txq`), and the generator sends on as many
    /// queues.
    pub workers: u16,
}

impl Default for Cores {
    fn default() -> Self {
        Self {
            generator: 0,
            workers_on: vec![1],
            workers: 1,
        }
    }
}

impl Cores {
    /// The device under test's lcores for EAL's `--lcores` (and palisade-dp's `lcores`): the
    /// main lcore 0 on the generator's CPU, worker lcores 1..=N on their CPUs.
    pub fn dut_lcores(&self) -> String {
        let mut map = vec![format!("0@{}", self.generator)];
        for i in 0..usize::from(self.workers.max(1)) {
            let cpu = self
                .workers_on
                .get(i % self.workers_on.len().max(1))
                .copied()
                .unwrap_or(1);
            map.push(format!("{}@{cpu}", i + 1));
        }
        map.join(",")
    }

    /// Queues per port: one per worker.
    pub fn queues(&self) -> u16 {
        self.workers.max(1)
    }
}

pub(crate) fn dut_command(
    testpmd: &Path,
    dp: &Path,
    reference: bool,
    prefix: &str,
    dir: &Path,
    ports: [&str; 2],
    cores: &Cores,
) -> Result<Command, String> {
    let mut parsed = Vec::with_capacity(2);
    for body in ports {
        parsed.push(
            dataplane::config::parse_port(body, Path::new("device under test port"))
                .map_err(|e| e.to_string())?,
        );
    }
    let queues = cores.queues();
    for p in &mut parsed {
        // One queue per worker (af_packet's qpairs, af_xdp's queue_count in the devargs).
        p.queues = queues;
    }
    if reference {
        let mut cmd = Command::new(testpmd);
        cmd.arg("--lcores")
            .arg(cores.dut_lcores())
            .args(["--in-memory", "--no-pci", "--no-telemetry"])
            .arg("--file-prefix")
            .arg(format!("{prefix}ref"));
        for p in &parsed {
            cmd.arg("--vdev").arg(p.devargs());
        }
        // palisade-dp's ring sizes and pool cache, not the PMD's defaults (af_xdp's rings
        // would be 2048 deep against palisade-dp's 1024).
        use dataplane::config::defaults::{MBUF_CACHE, RX_DESC, TX_DESC};
        cmd.args([
            "--",
            "--forward-mode=io",
            "--stats-period=1",
            "--total-num-mbufs=32767",
        ])
        .arg(format!("--nb-cores={queues}"))
        .arg(format!("--rxq={queues}"))
        .arg(format!("--txq={queues}"))
        .arg(format!("--rxd={RX_DESC}"))
        .arg(format!("--txd={TX_DESC}"))
        .arg(format!("--mbcache={MBUF_CACHE}"));
        Ok(cmd)
    } else {
        let cfg = dir.join(format!("{prefix}dp.toml"));
        let names: Vec<&str> = parsed.iter().map(|p| p.name.as_str()).collect();
        let mut text = format!(
            "[dataplane]\nlcores = \"{}\"\nmemory = \"in-memory\"\nfile_prefix = \"{prefix}dp\"\nidle = \"busy\"\nmbufs = 32767\nsocket = \"{}\"\n",
            cores.dut_lcores(),
            dir.join(format!("{prefix}dp.sock")).display()
        );
        for body in ports {
            text.push_str("[[dataplane.port]]\n");
            text.push_str(body);
            if queues > 1 && !body.contains("queues") {
                text.push_str(&format!("queues = {queues}\n"));
            }
        }
        text.push_str(&format!(
            "[[dataplane.pair]]\nports = [\"{}\", \"{}\"]\n",
            names[0], names[1]
        ));
        std::fs::write(&cfg, text).map_err(|e| format!("write {}: {e}", cfg.display()))?;
        let mut cmd = Command::new(dp);
        cmd.arg("--config").arg(&cfg);
        Ok(cmd)
    }
}

/// A zero-loss scenario's report from every round's rates (Mpps, run order): best of the
/// rounds on each side (a whole round on these shared VMs sometimes runs slow for both
/// alike), medians beside them; no cycle counts.
pub(crate) fn report(
    name: &str,
    reference: &str,
    reference_rounds: Vec<f64>,
    palisade_rounds: Vec<f64>,
    packet_bytes: u32,
) -> ScenarioReport {
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (r, p) = (best(&reference_rounds), best(&palisade_rounds));
    ScenarioReport {
        name: name.into(),
        reference: reference.into(),
        reference_mpps: r,
        palisade_mpps: p,
        ratio: if r > 0.0 { p / r } else { 0.0 },
        reference_cycles_per_packet: 0.0,
        palisade_cycles_per_packet: 0.0,
        cycle_ratio: 0.0,
        offered_mpps: 0.0,
        reference_median_mpps: median(&reference_rounds).unwrap_or(0.0),
        palisade_median_mpps: median(&palisade_rounds).unwrap_or(0.0),
        reference_median_cycles_per_packet: 0.0,
        palisade_median_cycles_per_packet: 0.0,
        packet_bytes,
        reference_rounds,
        palisade_rounds,
        reference_rounds_cycles_per_packet: Vec::new(),
        palisade_rounds_cycles_per_packet: Vec::new(),
        tsc_hz: None,
        palisade_eal_init_ms: Vec::new(),
        extra: Map::new(),
    }
}

/// [`report`] with scenario-specific fields.
fn report_with(
    packet_bytes: u32,
    name: &str,
    reference: &str,
    reference_rounds: Vec<f64>,
    palisade_rounds: Vec<f64>,
    extra: Map<String, Value>,
) -> ScenarioReport {
    let mut r = report(
        name,
        reference,
        reference_rounds,
        palisade_rounds,
        packet_bytes,
    );
    r.extra = extra;
    r
}

/// The policy of the protect scenarios: `rules` generated rules, the benchmark's server as a
/// protected workload and one rule (above every generated one) that allows its clients on the
/// allowed port. `variant` adds an explicit deny of the denied port, which judges the denied
/// flows as the first version's no-match does (a different policy, the same verdicts).
pub fn protect_policy(rules: usize, variant: bool) -> Policy {
    let mut p = policy_gen::generate(rules).policy;
    p.groups.push(Group {
        name: "bench.clients".into(),
        mode: Mode::Protect,
        members: vec![],
        cidrs: CLIENTS.parse().into_iter().collect(),
    });
    p.groups.push(Group {
        name: "bench.server".into(),
        mode: Mode::Protect,
        members: vec![],
        cidrs: vec![],
    });
    p.workloads.push(Workload {
        id: "bench-server".into(),
        group: "bench.server".into(),
        mode: Mode::Protect,
        macs: vec![],
        ips: vec![IpAddr::V4(SERVER)],
        exempt: false,
    });
    let rule = |id, port, action| Rule {
        id,
        from: "bench.clients".into(),
        to: "bench.server".into(),
        ports: vec![PortSpec::Udp(port, port)],
        apps: vec![],
        action,
        priority: 10,
        learned: false,
        disabled: false,
    };
    p.rules.insert(0, rule(9_000_001, 5201, Action::Allow));
    if variant {
        p.rules.insert(1, rule(9_000_002, 5202, Action::Deny));
    }
    p
}

/// Which device is under test.
#[derive(Clone, Copy)]
enum Dut<'p> {
    Testpmd,
    /// palisade-dp, with this policy published before traffic starts (none: forward all).
    Palisade(Option<&'p Policy>),
}

/// What the generator does.
#[derive(Clone, Copy)]
enum Load {
    /// The zero-loss search, then latency at the rate found.
    Ndr,
    /// One trial at this rate.
    Fixed(f64),
}

/// What one run measured.
struct Run {
    /// palisade-pktgen's JSON summary.
    generator: Value,
    /// palisade-dp's statistics at the end (palisade only).
    dp: Option<Value>,
}

impl Run {
    fn ndr_mpps(&self) -> f64 {
        self.generator["ndr"]["rate_pps"].as_f64().unwrap_or(0.0) / 1e6
    }

    /// The latency summary with the rate it was measured at.
    fn latency(&self) -> Value {
        let mut l = self.generator["latency"].clone();
        if let Some(o) = l.as_object_mut() {
            o.insert("rate_pps".into(), self.generator["tx_pps"].clone());
        }
        l
    }

    /// Packets each of palisade-dp's workers received, in lcore order (how the queues spread
    /// the flows).
    fn dp_worker_rx(&self) -> Vec<u64> {
        self.dp
            .as_ref()
            .and_then(|d| d["workers"].as_array())
            .map_or_else(Vec::new, |w| {
                w.iter()
                    .map(|w| w["counters"]["rx_packets"].as_u64().unwrap_or(0))
                    .collect()
            })
    }

    /// A counter summed over palisade-dp's workers (`pipeline.policy_drops`...).
    fn dp_counter(&self, section: &str, key: &str) -> u64 {
        self.dp
            .as_ref()
            .and_then(|d| d["workers"].as_array())
            .map_or(0, |w| {
                w.iter()
                    .map(|w| w[section][key].as_u64().unwrap_or(0))
                    .sum()
            })
    }
}

/// Settings of a run.
pub struct Bench<'a> {
    /// `palisade-pktgen`.
    pub pktgen: &'a Path,
    /// `palisade-dp`.
    pub dp: &'a Path,
    /// `dpdk-testpmd`.
    pub testpmd: &'a Path,
    /// Unique tag for file prefixes.
    pub tag: &'a str,
    /// Short trials, one round.
    pub quick: bool,
    /// Rounds per side.
    pub rounds: Option<u32>,
    /// Frame size.
    pub size: u32,
    /// Runs so far (file prefixes stay unique).
    pub runs: std::cell::Cell<u32>,
    /// Where the generator and the device under test run.
    pub cores: Cores,
}

/// While the generator runs: given a control client of palisade-dp and the instant the
/// generator was told to start, does its work and returns what it measured.
type During<'h> = &'h mut dyn FnMut(&mut Client, Instant) -> Result<Value, String>;

/// Connects to palisade-dp's control socket, retrying for 30 s while `alive` says the
/// dataplane still runs.
pub(crate) fn connect(
    socket: &Path,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<Client, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        alive()?;
        let cfg = ClientConfig {
            name: "palisade-bench".into(),
            timeout: Some(Duration::from_secs(60)),
            ..ClientConfig::default()
        };
        match Client::connect_with(socket, cfg) {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "cannot connect to palisade-dp at {}: {e}",
                    socket.display()
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Publishes `policy` as the next generation; returns the dataplane's statistics after it.
pub(crate) fn publish(client: &mut Client, policy: &Policy) -> Result<Value, String> {
    let before = client.stats().map_err(|e| format!("get_stats: {e}"))?;
    let mut p = policy.clone();
    p.generation = before.generation.max(client.server().generation) + 1;
    client
        .set_policy(&p)
        .map_err(|e| format!("set_policy ({} rules): {e}", p.rules.len()))?;
    let after = client.stats().map_err(|e| format!("get_stats: {e}"))?;
    serde_json::to_value(after).map_err(|e| e.to_string())
}

impl Bench<'_> {
    fn next_run(&self) -> u32 {
        let n = self.runs.get();
        self.runs.set(n + 1);
        n
    }

    fn seconds(&self) -> (f64, f64) {
        if self.quick { (0.5, 0.2) } else { (2.0, 0.5) }
    }

    fn dut(&self, dut: Dut<'_>, dir: &Path, run: u32) -> Result<Child, String> {
        let port = |name: &str| {
            format!(
                "name = \"{name}\"\nkind = \"memif\"\nsocket = \"{}\"\nrole = \"client\"\nabstract = false\n",
                dir.join(format!("{name}.sock")).display()
            )
        };
        let (a, b) = (port("a"), port("b"));
        let mut cmd = dut_command(
            self.testpmd,
            self.dp,
            matches!(dut, Dut::Testpmd),
            &format!("{}{run}", self.tag),
            dir,
            [&a, &b],
            &self.cores,
        )?;
        if let Dut::Palisade(_) = dut {
            // `PALISADE_BENCH_DP_LOG` sets its log filter (default: warnings).
            let log = std::env::var("PALISADE_BENCH_DP_LOG").unwrap_or_else(|_| "warn".into());
            cmd.env("RUST_LOG", log);
        }
        let log = std::fs::File::create(dir.join("dut.log"))
            .map_err(|e| format!("create the device under test's log: {e}"))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start the device under test: {e}"))
    }

    /// One generator run through `dut`: `flows`, `load`, `seconds` measured per trial after
    /// `warmup`; `during` runs beside the generator (palisade only).
    fn once(
        &self,
        dut: Dut<'_>,
        flows: &str,
        load: Load,
        (seconds, warmup): (f64, f64),
        during: Option<During<'_>>,
    ) -> Result<Run, String> {
        let run = self.next_run();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let json = dir.path().join("pktgen.json");
        let ready = dir.path().join("ready");
        let port = |s: &str| {
            format!(
                "kind=memif,socket={},role=server,abstract=false,queues={}",
                dir.path().join(s).display(),
                self.cores.queues()
            )
        };
        let mut cmd = Command::new(self.pktgen);
        cmd.args(["--port", &port("a.sock"), "--rx-port", &port("b.sock")])
            .args(["--flows", flows, "--size"])
            .arg(self.size.to_string())
            .args(["--seconds", &seconds.to_string(), "--warmup"])
            .arg(warmup.to_string())
            .arg("--cpu")
            .arg(self.cores.generator.to_string())
            .args(["--link-timeout", "20", "--wait-for"])
            .arg(&ready)
            .arg("--file-prefix")
            .arg(format!("{}gen{run}", self.tag))
            .arg("--json")
            .arg(&json)
            .arg("--hold-while")
            .arg(&ready);
        match load {
            Load::Ndr => {
                cmd.args([
                    "--ndr",
                    "--resolution",
                    if self.quick { "0.05" } else { "0.01" },
                ]);
            }
            Load::Fixed(pps) => {
                cmd.arg("--rate").arg(format!("{}pps", pps.max(1.0) as u64));
            }
        }
        let mut pktgen = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start palisade-pktgen: {e}"))?;
        // The device under test connects to sockets that must exist first.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(dir.path().join("a.sock").exists() && dir.path().join("b.sock").exists()) {
            if Instant::now() >= deadline || matches!(pktgen.try_wait(), Ok(Some(_))) {
                stop(pktgen);
                return Err("palisade-pktgen did not create its memif sockets".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut child = match self.dut(dut, dir.path(), run) {
            Ok(d) => d,
            Err(e) => {
                stop(pktgen);
                return Err(e);
            }
        };
        let result = (|| -> Result<Option<Value>, String> {
            let mut client = match dut {
                Dut::Testpmd => None,
                Dut::Palisade(policy) => {
                    let socket = dir.path().join(format!("{}{run}dp.sock", self.tag));
                    let mut c = connect(&socket, || match child.try_wait() {
                        Ok(Some(st)) => Err(format!("palisade-dp exited early ({st})")),
                        _ => Ok(()),
                    })?;
                    if let Some(p) = policy {
                        publish(&mut c, p)?;
                    }
                    Some(c)
                }
            };
            std::fs::write(&ready, b"").map_err(|e| format!("write the ready file: {e}"))?;
            let started = Instant::now();
            let extra = match (during, client.as_mut()) {
                (Some(f), Some(c)) => Some(f(c, started)?),
                _ => None,
            };
            // Wait for the generator's report (it holds its ports open meanwhile); then the
            // dataplane's counters.
            while !json.exists() {
                if let Ok(Some(st)) = pktgen.try_wait() {
                    return Err(format!("palisade-pktgen exited ({st}) without a report"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!(
                    "the device under test exited ({st}) during the run"
                ));
            }
            let stats = match client.as_mut() {
                Some(c) => Some(
                    c.stats()
                        .map_err(|e| format!("get_stats: {e}"))
                        .and_then(|s| serde_json::to_value(s).map_err(|e| e.to_string()))?,
                ),
                None => None,
            };
            Ok(match (stats, extra) {
                (Some(mut s), Some(x)) => {
                    if let Some(o) = s.as_object_mut() {
                        o.insert("during".into(), x);
                    }
                    Some(s)
                }
                (s, _) => s,
            })
        })();
        let _ = std::fs::remove_file(&ready);
        let out = match result {
            Ok(dp) => {
                let out = pktgen.wait_with_output();
                stop(child);
                (out, dp)
            }
            Err(e) => {
                stop(pktgen);
                stop(child);
                let log = std::fs::read_to_string(dir.path().join("dut.log")).unwrap_or_default();
                return Err(format!("{e}; the device under test said:\n{log}"));
            }
        };
        let (out, dp) = out;
        let out = out.map_err(|e| format!("palisade-pktgen: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "palisade-pktgen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = std::fs::read_to_string(&json).map_err(|e| format!("pktgen report: {e}"))?;
        let generator: Value =
            serde_json::from_str(&text).map_err(|e| format!("pktgen report: {e}"))?;
        Ok(Run { generator, dp })
    }

    fn rounds(&self) -> u32 {
        self.rounds.unwrap_or(if self.quick { 1 } else { 3 }).max(1)
    }

    /// NDR rounds, testpmd and palisade-dp (with `policy`) alternating; the best round's
    /// latency of each side goes into the report.
    fn versus(&self, name: &str, policy: Option<&Policy>) -> Result<ScenarioReport, String> {
        let (mut reference, mut palisade) = (Vec::new(), Vec::new());
        let (mut ref_best, mut pal_best): (Option<Run>, Option<Run>) = (None, None);
        for round in 0..self.rounds() {
            let r = self.once(Dut::Testpmd, ESTABLISHED, Load::Ndr, self.seconds(), None)?;
            let p = self.once(
                Dut::Palisade(policy),
                ESTABLISHED,
                Load::Ndr,
                self.seconds(),
                None,
            )?;
            eprintln!(
                "{name} round {}: testpmd {:.3} Mpps, palisade-dp {:.3} Mpps",
                round + 1,
                r.ndr_mpps(),
                p.ndr_mpps()
            );
            reference.push(r.ndr_mpps());
            palisade.push(p.ndr_mpps());
            if ref_best
                .as_ref()
                .is_none_or(|b| r.ndr_mpps() > b.ndr_mpps())
            {
                ref_best = Some(r);
            }
            if pal_best
                .as_ref()
                .is_none_or(|b| p.ndr_mpps() > b.ndr_mpps())
            {
                pal_best = Some(p);
            }
        }
        let mut extra = Map::new();
        extra.insert("flows".into(), ESTABLISHED.into());
        if let Some(r) = &ref_best {
            extra.insert("reference_latency".into(), r.latency());
        }
        // Latency at each side's own zero-loss rate compares two loaded systems; at one rate
        // both sustain (half the lower zero-loss rate), it compares the programs.
        let equal = ref_best
            .as_ref()
            .zip(pal_best.as_ref())
            .map(|(r, p)| r.ndr_mpps().min(p.ndr_mpps()) * 1e6 * EQUAL_LOAD)
            .filter(|pps| *pps >= 1.0);
        if let Some(pps) = equal {
            let r = self.once(
                Dut::Testpmd,
                ESTABLISHED,
                Load::Fixed(pps),
                self.seconds(),
                None,
            )?;
            let p = self.once(
                Dut::Palisade(policy),
                ESTABLISHED,
                Load::Fixed(pps),
                self.seconds(),
                None,
            )?;
            extra.insert("equal_load_pps".into(), pps.round().into());
            extra.insert("reference_latency_equal_load".into(), r.latency());
            extra.insert("palisade_latency_equal_load".into(), p.latency());
        }
        if let Some(p) = &pal_best {
            extra.insert("palisade_latency".into(), p.latency());
            extra.insert(
                "palisade_policy_drops".into(),
                p.dp_counter("pipeline", "policy_drops").into(),
            );
            extra.insert(
                "palisade_evaluations".into(),
                p.dp_counter("pipeline", "evaluations").into(),
            );
            extra.insert("palisade_worker_rx".into(), p.dp_worker_rx().into());
        }
        if let Some(p) = policy {
            extra.insert("rules".into(), p.rules.len().into());
            extra.insert("mode".into(), "protect".into());
        }
        let what = match policy {
            Some(_) => "zero loss, protect",
            None => "zero loss",
        };
        Ok(report_with(
            self.size,
            name,
            &format!("dpdk-testpmd --forward-mode=io, memif -> memif, {what}"),
            reference,
            palisade,
            extra,
        ))
    }

    /// Scenario `forward`.
    pub fn forward(&self) -> Result<ScenarioReport, String> {
        self.versus("forward", None)
    }

    /// Scenario `protect-10k`.
    pub fn protect_10k(&self) -> Result<ScenarioReport, String> {
        let policy = protect_policy(10_000, false);
        let mut r = self.versus("protect-10k", Some(&policy))?;
        r.extra.insert("target_ratio".into(), 0.8.into());
        Ok(r)
    }

    /// Scenario `rule-scaling`.
    pub fn rule_scaling(&self) -> Result<ScenarioReport, String> {
        let policies: Vec<(usize, Policy)> = SIZES
            .iter()
            .map(|&n| (n, protect_policy(n, false)))
            .collect();
        let mut reference = Vec::new();
        let mut est: Vec<Vec<f64>> = vec![Vec::new(); SIZES.len()];
        let mut new: Vec<Vec<f64>> = vec![Vec::new(); SIZES.len()];
        let rounds = self.rounds.unwrap_or(if self.quick { 1 } else { 2 }).max(1);
        for round in 0..rounds {
            let r = self.once(Dut::Testpmd, ESTABLISHED, Load::Ndr, self.seconds(), None)?;
            reference.push(r.ndr_mpps());
            // Rotate the order so no size always runs first.
            for k in 0..policies.len() {
                let i = (k + round as usize) % policies.len();
                let (n, p) = &policies[i];
                let e = self.once(
                    Dut::Palisade(Some(p)),
                    ESTABLISHED,
                    Load::Ndr,
                    self.seconds(),
                    None,
                )?;
                let f = self.once(
                    Dut::Palisade(Some(p)),
                    NEW_FLOWS,
                    Load::Ndr,
                    self.seconds(),
                    None,
                )?;
                eprintln!(
                    "rule-scaling round {}: {n} rules: established {:.3} Mpps, new flows {:.3} M/s",
                    round + 1,
                    e.ndr_mpps(),
                    f.ndr_mpps()
                );
                est[i].push(e.ndr_mpps());
                new[i].push(f.ndr_mpps());
            }
        }
        let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let reference_mpps = best(&reference);
        let sizes: Vec<Value> = SIZES
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                json!({
                    "rules": n,
                    "established_mpps": best(&est[i]),
                    "new_flows_per_s": best(&new[i]) * 1e6,
                    "reference_mpps": reference_mpps,
                    "established_rounds": est[i],
                    "new_flow_rounds_mpps": new[i],
                })
            })
            .collect();
        let first = best(&est[0]);
        let last = best(&est[SIZES.len() - 1]);
        let mut extra = Map::new();
        extra.insert("sizes".into(), sizes.into());
        extra.insert(
            "established_ratio_100k_to_10".into(),
            (if first > 0.0 { last / first } else { 0.0 }).into(),
        );
        extra.insert("target_established_ratio".into(), 0.95.into());
        extra.insert("flows".into(), ESTABLISHED.into());
        extra.insert("new_flows".into(), NEW_FLOWS.into());
        // The headline: 10k rules, established.
        let at_10k = SIZES.iter().position(|&n| n == 10_000).unwrap_or(0);
        Ok(report_with(
            self.size,
            "rule-scaling",
            "dpdk-testpmd --forward-mode=io, memif -> memif, zero loss; palisade-dp at 10k rules",
            reference,
            est[at_10k].clone(),
            extra,
        ))
    }

    /// Scenario `hitless-update`.
    pub fn hitless_update(&self) -> Result<ScenarioReport, String> {
        let (a, b) = (protect_policy(10_000, false), protect_policy(10_000, true));
        // A 10k-rule publication takes 0.3-0.4 s here (compiling beside the generator on
        // CPU 0): the window leaves room for every swap.
        let (seconds, swaps) = if self.quick { (5.0, 10) } else { (60.0, 100) };
        let warmup = 1.0;
        let ndr = self.once(
            Dut::Palisade(Some(&a)),
            MIXED,
            Load::Ndr,
            self.seconds(),
            None,
        )?;
        let rate = ndr.ndr_mpps() * 1e6 * 0.8;
        if rate <= 0.0 {
            return Err("hitless-update: palisade-dp found no zero-loss rate".into());
        }
        eprintln!(
            "hitless-update: zero-loss rate {:.3} Mpps, trials at {:.3} Mpps",
            ndr.ndr_mpps(),
            rate / 1e6
        );
        let mut rows = Vec::new();
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let rounds = self.rounds.unwrap_or(if self.quick { 1 } else { 2 }).max(1);
        for round in 0..rounds {
            let base = self.once(
                Dut::Palisade(Some(&a)),
                MIXED,
                Load::Fixed(rate),
                (seconds, warmup),
                None,
            )?;
            let mut swap = |client: &mut Client, started: Instant| -> Result<Value, String> {
                swap_during(client, started, warmup, seconds, swaps, [&b, &a])
            };
            let swapped = self.once(
                Dut::Palisade(Some(&a)),
                MIXED,
                Load::Fixed(rate),
                (seconds, warmup),
                Some(&mut swap),
            )?;
            let g = |r: &Run, class: &str, k: &str| r.generator[class][k].as_u64().unwrap_or(0);
            let during = swapped
                .dp
                .as_ref()
                .map(|d| d["during"].clone())
                .unwrap_or(Value::Null);
            let row = json!({
                "round": round + 1,
                "without_swaps": {
                    "allowed_sent": g(&base, "allowed", "sent"),
                    "allowed_lost": g(&base, "allowed", "lost"),
                    "denied_sent": g(&base, "denied", "sent"),
                    "denied_passed": g(&base, "denied", "received"),
                    "rx_mpps": base.generator["rx_mpps"],
                },
                "with_swaps": {
                    "allowed_sent": g(&swapped, "allowed", "sent"),
                    "allowed_lost": g(&swapped, "allowed", "lost"),
                    "denied_sent": g(&swapped, "denied", "sent"),
                    "denied_passed": g(&swapped, "denied", "received"),
                    "rx_mpps": swapped.generator["rx_mpps"],
                    "swaps": during,
                },
                "extra_loss": g(&swapped, "allowed", "lost") as i64 - g(&base, "allowed", "lost") as i64,
                "mixed_verdicts": g(&swapped, "denied", "received"),
            });
            eprintln!("hitless-update round {}: {row}", round + 1);
            without.push(base.generator["rx_mpps"].as_f64().unwrap_or(0.0));
            with.push(swapped.generator["rx_mpps"].as_f64().unwrap_or(0.0));
            rows.push(row);
        }
        let sum = |k: &str| rows.iter().map(|r| r[k].as_i64().unwrap_or(0)).sum::<i64>();
        let swap_us: Vec<f64> = rows
            .iter()
            .flat_map(|r| {
                r["with_swaps"]["swaps"]["swap_us"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|v| v.as_f64())
            .collect();
        let mut extra = Map::new();
        extra.insert("flows".into(), MIXED.into());
        extra.insert("rules".into(), a.rules.len().into());
        extra.insert("ndr_mpps".into(), ndr.ndr_mpps().into());
        extra.insert("trial_mpps".into(), (rate / 1e6).into());
        extra.insert("swaps_per_round".into(), swaps.into());
        extra.insert("extra_loss".into(), sum("extra_loss").into());
        extra.insert("mixed_verdicts".into(), sum("mixed_verdicts").into());
        extra.insert("swap_us_median".into(), median(&swap_us).into());
        extra.insert(
            "swap_us_max".into(),
            swap_us.iter().copied().reduce(f64::max).into(),
        );
        extra.insert("target_swap_us".into(), 100.0.into());
        extra.insert("rounds".into(), rows.into());
        Ok(report_with(
            self.size,
            "hitless-update",
            "palisade-dp at the same rate without swaps",
            without,
            with,
            extra,
        ))
    }
}

/// `swaps` publications of `policies` in turn, spread evenly over the measured `seconds` that
/// start `warmup` after `started`; stops at the window's end. Returns the swap and compile
/// times the dataplane reported and the client's round trips.
fn swap_during(
    client: &mut Client,
    started: Instant,
    warmup: f64,
    seconds: f64,
    swaps: u32,
    policies: [&Policy; 2],
) -> Result<Value, String> {
    let window = Duration::from_secs_f64(seconds);
    let from = started + Duration::from_secs_f64(warmup);
    let (mut swap_us, mut compile_us, mut round_trip_ms) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..swaps {
        let at = from + window.mul_f64((f64::from(i) + 0.5) / f64::from(swaps));
        if at > from + window {
            break;
        }
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        } else if Instant::now() > from + window {
            break;
        }
        let t = Instant::now();
        let st = publish(client, policies[i as usize % 2])?;
        round_trip_ms.push(t.elapsed().as_secs_f64() * 1e3);
        swap_us.extend(st["policy_swap_us"].as_f64());
        compile_us.extend(st["policy_compile_us"].as_f64());
    }
    Ok(json!({
        "done": swap_us.len(),
        "swap_us": swap_us,
        "compile_us": compile_us,
        "round_trip_ms": round_trip_ms,
    }))
}

/// Where the generator-path binaries are: `palisade-pktgen` next to `palisade-dp`.
pub fn pktgen_next_to(dp: &Path) -> PathBuf {
    dp.with_file_name("palisade-pktgen")
}
