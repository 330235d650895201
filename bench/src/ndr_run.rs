//! Scenario `ndr`: the RFC 2544 zero-loss forwarding rate of the device under test, measured
//! by `palisade-pktgen` in the same position for both: pktgen owns two memif server sockets
//! (`a` sends, `b` receives; its one lcore on CPU 0) and the device under test attaches to both
//! as a memif client and forwards `a` -> `b` (its worker on CPU 1, its main lcore on CPU 0 for
//! both): `dpdk-testpmd
//! --forward-mode=io` as the reference, then `palisade-dp` (no policy: everything forwarded),
//! alternating per round, in one run. 10k UDP flows, 64-byte frames by default.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench::{ScenarioReport, median};
use serde_json::Value;

/// What a round of one side measured.
struct Side {
    mpps: f64,
}

/// Settings of a run.
pub struct Ndr<'a> {
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
}

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
pub(crate) fn dut_command(
    testpmd: &Path,
    dp: &Path,
    reference: bool,
    prefix: &str,
    dir: &Path,
    ports: [&str; 2],
) -> Result<Command, String> {
    let mut parsed = Vec::with_capacity(2);
    for body in ports {
        parsed.push(
            dataplane::config::parse_port(body, Path::new("device under test port"))
                .map_err(|e| e.to_string())?,
        );
    }
    if reference {
        let mut cmd = Command::new(testpmd);
        cmd.args(["-l", "0-1", "--in-memory", "--no-pci", "--no-telemetry"])
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
            "--nb-cores=1",
            "--stats-period=1",
            "--total-num-mbufs=32767",
        ])
        .arg(format!("--rxd={RX_DESC}"))
        .arg(format!("--txd={TX_DESC}"))
        .arg(format!("--mbcache={MBUF_CACHE}"));
        Ok(cmd)
    } else {
        let cfg = dir.join(format!("{prefix}dp.toml"));
        let names: Vec<&str> = parsed.iter().map(|p| p.name.as_str()).collect();
        let mut text = format!(
            "[dataplane]\nlcores = \"0-1\"\nmemory = \"in-memory\"\nfile_prefix = \"{prefix}dp\"\nidle = \"busy\"\nmbufs = 32767\nsocket = \"{}\"\n",
            dir.join(format!("{prefix}dp.sock")).display()
        );
        for body in ports {
            text.push_str("[[dataplane.port]]\n");
            text.push_str(body);
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
        extra: serde_json::Map::new(),
    }
}

impl Ndr<'_> {
    fn round(&self, reference: bool, round: u32) -> Result<Side, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let json = dir.path().join("pktgen.json");
        let (seconds, warmup, resolution) = if self.quick {
            ("0.5", "0.2", "0.05")
        } else {
            ("2", "0.5", "0.01")
        };
        let port = |s: &str| {
            format!(
                "kind=memif,socket={},role=server,abstract=false",
                dir.path().join(s).display()
            )
        };
        let mut pktgen = Command::new(self.pktgen)
            .args(["--port", &port("a.sock"), "--rx-port", &port("b.sock")])
            .args(["--flows", "count=10000", "--size"])
            .arg(self.size.to_string())
            .args(["--ndr", "--seconds", seconds, "--warmup", warmup])
            .args([
                "--resolution",
                resolution,
                "--cpu",
                "0",
                "--link-timeout",
                "20",
            ])
            .arg("--file-prefix")
            .arg(format!("{}gen{round}{}", self.tag, u8::from(reference)))
            .arg("--json")
            .arg(&json)
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
        let memif = |name: &str| {
            format!(
                "name = \"{name}\"\nkind = \"memif\"\nsocket = \"{}\"\nrole = \"client\"\nabstract = false\n",
                dir.path().join(format!("{name}.sock")).display()
            )
        };
        let dut = dut_command(
            self.testpmd,
            self.dp,
            reference,
            &format!("{}{round}", self.tag),
            dir.path(),
            [&memif("a"), &memif("b")],
        )
        .and_then(|mut cmd| {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("start the device under test: {e}"))
        });
        let dut = match dut {
            Ok(d) => d,
            Err(e) => {
                stop(pktgen);
                return Err(e);
            }
        };
        let out = pktgen.wait_with_output();
        stop(dut);
        let out = out.map_err(|e| format!("palisade-pktgen: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "palisade-pktgen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = std::fs::read_to_string(&json).map_err(|e| format!("pktgen report: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("pktgen report: {e}"))?;
        let pps = v["ndr"]["rate_pps"].as_f64().unwrap_or(0.0);
        Ok(Side { mpps: pps / 1e6 })
    }

    /// Runs the rounds, reference and palisade alternating.
    pub fn run(&self) -> Result<ScenarioReport, String> {
        let rounds = self.rounds.unwrap_or(if self.quick { 1 } else { 3 }).max(1);
        let (mut reference, mut palisade) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            reference.push(self.round(true, round)?.mpps);
            palisade.push(self.round(false, round)?.mpps);
            eprintln!(
                "ndr round {round}: testpmd {:.3} Mpps, palisade-dp {:.3} Mpps",
                reference[reference.len() - 1],
                palisade[palisade.len() - 1]
            );
        }
        Ok(report(
            "ndr",
            "dpdk-testpmd --forward-mode=io, memif -> memif, zero loss",
            reference,
            palisade,
            self.size,
        ))
    }
}
