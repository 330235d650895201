//! Scenario `veth`: the container path. Two network namespaces of the harness's own, the
//! generator's and the device under test's, joined by two veth pairs, `g0`-`d0` and `g1`-`d1`
//! (see [`Bed`]); `palisade-pktgen` (one lcore, CPU 0) sends on `g0` and receives on `g1`,
//! and the device under test forwards `d0` -> `d1` (its worker on CPU 1, its main lcore on
//! CPU 0): `dpdk-testpmd --forward-mode=io` as the reference, then `palisade-dp` (no policy),
//! on the same veths, cores and PMD settings, alternating per round. The rate is pktgen's
//! RFC 2544 zero-loss rate (`--ndr`), best of the rounds, once with `net_af_packet` on all four
//! ends (`veth-af_packet`) and once with `net_af_xdp` (`veth-af_xdp`).
//!
//! The kernel's veth path is shared work: a frame sent on `g0` is delivered into `d0`'s
//! socket by the sending CPU (the generator's), one sent on `d1` into `g1`'s by the device
//! under test's. The generator may therefore bound the rate, so each entry also carries what
//! pktgen offered and got back at its maximum rate (the search's first trial), per side and
//! round.
//!
//! af_xdp on veth: each PMD attaches its XDP program (the one `net_af_xdp` loads through
//! libxdp; without a bpffs in the namespace libxdp loads it alone, without its dispatcher) to
//! its veth end in native mode, which veth has, and binds its XSK socket in copy mode (veth
//! has no zero-copy). The known veth limit, that a frame sent into a veth by XDP (`XDP_TX`, or
//! `XDP_REDIRECT` to the device) is dropped unless the veth's peer has an XDP program or GRO
//! on (so that the peer runs NAPI), does not arise: the programs redirect only into XSK
//! sockets, an XSK in copy mode transmits through `veth_xmit` as an skb, and the receiving end
//! (`d0`, `g1`) has its own program anyway, which puts it on the NAPI path where native XDP
//! runs. So no GRO and no extra program are needed. An af_xdp failure (no XDP, no BPF, an old
//! libbpf) does not fail the run: the entry is written with zero rates and the error in
//! `error`.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bench::{ScenarioReport, median};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use serde_json::{Value, json};

use crate::path_run::{dut_command, report, stop};

/// The settings of the generator-path scenarios (its tag also names the namespaces).
pub(crate) use crate::path_run::Bench as Veth;

/// The PMD on all four veth ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    AfPacket,
    AfXdp,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::AfPacket => "af_packet",
            Self::AfXdp => "af_xdp",
        }
    }

    /// A port on `iface` as `key=value` pairs (pktgen's `--port`; the same keys as a
    /// `[[dataplane.port]]` table).
    fn spec(self, iface: &str, queues: u16) -> String {
        format!("kind={},iface={iface},queues={queues}", self.name())
    }

    /// The same port as the body of a `[[dataplane.port]]` table named `name`.
    fn table(self, name: &str, iface: &str) -> String {
        format!(
            "name = \"{name}\"\nkind = \"{}\"\niface = \"{iface}\"\n",
            self.name()
        )
    }
}

/// What pktgen measured in one round of one side, Mpps.
#[derive(Debug, Clone, Copy)]
struct Side {
    /// Zero-loss rate.
    ndr: f64,
    /// Sent at the maximum rate (the search's first trial).
    offered: f64,
    /// Received back in that trial.
    received: f64,
}

/// Runs `cmd` and fails with its output unless it succeeds.
fn run_cmd(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// A network namespace, deleted (with the veth ends in it) on drop.
#[derive(Debug)]
struct Netns {
    name: String,
}

impl Netns {
    fn create(name: &str) -> Result<Self, String> {
        run_cmd(Command::new("ip").args(["netns", "add", name]))?;
        // From here on, every exit path deletes it.
        let ns = Self { name: name.into() };
        // No IPv6: no router solicitations or neighbour discovery among the measured frames.
        for key in ["all", "default"] {
            run_cmd(
                ns.exec("sysctl")
                    .args(["-qw", &format!("net.ipv6.conf.{key}.disable_ipv6=1")]),
            )?;
        }
        Ok(ns)
    }

    /// `program` run inside the namespace.
    fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// `cmd` (program and arguments) run inside the namespace.
    fn wrap(&self, cmd: &Command) -> Command {
        let mut c = self.exec(cmd.get_program());
        c.args(cmd.get_args());
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run_cmd(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("veth: cannot remove network namespace {}: {e}", self.name);
        }
    }
}

/// The generator's namespace (`g0`, `g1`) and the device under test's (`d0`, `d1`), joined by
/// the veth pairs `g0`-`d0` and `g1`-`d1`, as a container's veth joins two namespaces. Not one
/// namespace for all four: `net_af_packet` (DPDK 22.11) puts each socket in the
/// `PACKET_FANOUT` group numbered `pid ^ ifindex`, group numbers are per namespace, and a
/// generator and a device under test in the same one collided now and then (`could not set
/// PACKET_FANOUT on AF_PACKET socket for g0: Invalid argument`).
#[derive(Debug)]
struct Bed {
    generator: Netns,
    dut: Netns,
}

impl Bed {
    /// The bed, each veth with `queues` rx and tx queues (af_xdp binds one per worker).
    fn create(name: &str, queues: u16) -> Result<Self, String> {
        let bed = Self {
            generator: Netns::create(&format!("{name}-g"))?,
            dut: Netns::create(&format!("{name}-d"))?,
        };
        let (g, d) = (&bed.generator.name, &bed.dut.name);
        for (gi, di) in [("g0", "d0"), ("g1", "d1")] {
            let q = queues.to_string();
            run_cmd(Command::new("ip").args([
                "-n",
                g,
                "link",
                "add",
                gi,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                di,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "netns",
                d,
            ]))?;
        }
        for (ns, i) in [
            (&bed.generator, "g0"),
            (&bed.generator, "g1"),
            (&bed.dut, "d0"),
            (&bed.dut, "d1"),
        ] {
            // The offloads palisade's own plumbing turns off on a container's veths
            // (control/src/plumb/kernel.rs): the path measured is the path it runs.
            run_cmd(ns.exec("ethtool").args([
                "-K", i, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
            ]))?;
            run_cmd(Command::new("ip").args(["-n", &ns.name, "link", "set", i, "up"]))?;
        }
        Ok(bed)
    }
}

/// Set by SIGINT or SIGTERM while a run is in progress.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// While alive, SIGINT and SIGTERM set [`INTERRUPTED`] instead of killing the harness, so the
/// run can stop its children and remove its namespace; the previous actions come back on drop.
struct Interrupts {
    old: Vec<(Signal, SigAction)>,
}

impl Interrupts {
    fn catch() -> Self {
        INTERRUPTED.store(false, Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let mut old = Vec::new();
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            if let Ok(prev) = unsafe { sigaction(sig, &action) } {
                old.push((sig, prev));
            }
        }
        Self { old }
    }

    fn check() -> Result<(), String> {
        if INTERRUPTED.load(Ordering::Relaxed) {
            Err("interrupted".into())
        } else {
            Ok(())
        }
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        for (sig, prev) in &self.old {
            // SAFETY: `prev` is the action that was installed before `catch`, restored as it was.
            let _ = unsafe { sigaction(*sig, prev) };
        }
    }
}

/// A child whose output goes to a file, stopped (SIGTERM, then SIGKILL) on drop.
struct Proc {
    child: Option<Child>,
    log: std::path::PathBuf,
    name: &'static str,
}

impl Proc {
    fn spawn(
        name: &'static str,
        mut cmd: Command,
        log: std::path::PathBuf,
    ) -> Result<Self, String> {
        let out = File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start {name}: {e}"))?;
        Ok(Self {
            child: Some(child),
            log,
            name,
        })
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(success)` once it has exited.
    fn exited(&mut self) -> Option<bool> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => Some(st.success()),
            _ => None,
        }
    }

    /// Fails with the tail of its output if it has exited.
    fn check_alive(&mut self) -> Result<(), String> {
        match self.exited() {
            Some(_) => Err(format!(
                "{} exited early:\n{}",
                self.name,
                tail(&self.output())
            )),
            None => Ok(()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop(c);
        }
    }
}

/// The last lines of a log, for error messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

impl Veth<'_> {
    /// One side, one round: the device under test up and forwarding, then pktgen's search.
    fn round(&self, bed: &Bed, kind: Kind, reference: bool, round: u32) -> Result<Side, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let prefix = format!("{}{}{round}", self.tag, &kind.name()[3..]);
        let dut = dut_command(
            self.testpmd,
            self.dp,
            reference,
            &prefix,
            dir.path(),
            [&kind.table("a", "d0"), &kind.table("b", "d1")],
            &self.cores,
        )?;
        // testpmd's statistics (and its ready line) must reach the log as they are printed.
        let dut = if reference {
            let mut c = bed.dut.exec("stdbuf");
            c.arg("-oL").arg(dut.get_program()).args(dut.get_args());
            c
        } else {
            bed.dut.wrap(&dut)
        };
        let name = if reference { "testpmd" } else { "palisade-dp" };
        let mut dut = Proc::spawn(name, dut, dir.path().join("dut.log"))?;
        // af_packet links are up from the start: pktgen would not wait for the device under
        // test, so wait here until it forwards.
        let ready = if reference {
            "packet forwarding - ports="
        } else {
            "dataplane running"
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dut.output().contains(ready) {
            Interrupts::check()?;
            dut.check_alive()?;
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} not forwarding after 30 s:\n{}",
                    tail(&dut.output())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (seconds, warmup, resolution) = if self.quick {
            ("0.3", "0.1", "0.1")
        } else {
            ("2", "0.5", "0.01")
        };
        let json = dir.path().join("pktgen.json");
        let q = self.cores.queues();
        let mut gen_cmd = bed.generator.exec(self.pktgen);
        gen_cmd
            .args([
                "--port",
                &kind.spec("g0", q),
                "--rx-port",
                &kind.spec("g1", q),
            ])
            .args(["--flows", "count=10000", "--size"])
            .arg(self.size.to_string())
            .args(["--ndr", "--seconds", seconds, "--warmup", warmup])
            .args(["--resolution", resolution, "--cpu"])
            .arg(self.cores.generator.to_string())
            .args(["--link-timeout", "20", "--file-prefix"])
            .arg(format!("{prefix}gen{}", u8::from(reference)))
            .arg("--json")
            .arg(&json);
        let mut pktgen = Proc::spawn("palisade-pktgen", gen_cmd, dir.path().join("pktgen.log"))?;
        let ok = loop {
            Interrupts::check()?;
            if let Some(ok) = pktgen.exited() {
                break ok;
            }
            dut.check_alive()?;
            std::thread::sleep(Duration::from_millis(50));
        };
        drop(dut);
        if !ok {
            return Err(format!(
                "palisade-pktgen failed:\n{}",
                tail(&pktgen.output())
            ));
        }
        let text = std::fs::read_to_string(&json).map_err(|e| format!("pktgen report: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("pktgen report: {e}"))?;
        Ok(Side {
            ndr: v["ndr"]["rate_pps"].as_f64().unwrap_or(0.0) / 1e6,
            offered: v["tx_mpps"].as_f64().unwrap_or(0.0),
            received: v["rx_mpps"].as_f64().unwrap_or(0.0),
        })
    }

    /// Every round of one PMD, in a fresh pair of namespaces.
    fn kind(&self, kind: Kind) -> Result<ScenarioReport, String> {
        let rounds = self.rounds.unwrap_or(if self.quick { 1 } else { 3 }).max(1);
        let bed = Bed::create(
            &format!("{}-veth-{}", self.tag, kind.name()),
            self.cores.queues(),
        )?;
        let (mut reference, mut palisade) = (Vec::<Side>::new(), Vec::<Side>::new());
        for round in 0..rounds {
            let r = self.round(&bed, kind, true, round)?;
            let p = self.round(&bed, kind, false, round)?;
            eprintln!(
                "veth-{} round {round}: testpmd {:.3} Mpps (offered {:.3}, back {:.3}), palisade-dp {:.3} Mpps (offered {:.3}, back {:.3})",
                kind.name(),
                r.ndr,
                r.offered,
                r.received,
                p.ndr,
                p.offered,
                p.received
            );
            reference.push(r);
            palisade.push(p);
        }
        drop(bed);
        let field = |v: &[Side], f: fn(&Side) -> f64| v.iter().map(f).collect::<Vec<f64>>();
        let mut rep = report(
            &format!("veth-{}", kind.name()),
            &format!(
                "dpdk-testpmd --forward-mode=io, {0} veth -> {0} veth, zero loss",
                kind.name()
            ),
            field(&reference, |s| s.ndr),
            field(&palisade, |s| s.ndr),
            self.size,
        );
        let offered: Vec<f64> = reference
            .iter()
            .chain(&palisade)
            .map(|s| s.offered)
            .collect();
        rep.offered_mpps = median(&offered).unwrap_or(0.0);
        let extra = json!({
            "pmd": kind.name(),
            "reference_offered_mpps_rounds": field(&reference, |s| s.offered),
            "reference_received_at_max_mpps_rounds": field(&reference, |s| s.received),
            "palisade_offered_mpps_rounds": field(&palisade, |s| s.offered),
            "palisade_received_at_max_mpps_rounds": field(&palisade, |s| s.received),
        });
        if let Value::Object(m) = extra {
            rep.extra = m;
        }
        Ok(rep)
    }

    /// Both PMDs. af_packet must work; an af_xdp failure is written into its entry.
    pub(crate) fn veth(&self) -> Result<Vec<ScenarioReport>, String> {
        let _interrupts = Interrupts::catch();
        let af_packet = self.kind(Kind::AfPacket)?;
        let af_xdp = if self.cores.queues() > 1 {
            // Tried: with two queues on every veth end, neither testpmd nor palisade-dp got a
            // frame back over af_xdp (veth XDP, kernel 6.18), so the search found nothing.
            Err("not measured with several workers: over veth, af_xdp on several queues delivered no frame on this kernel; measure it on a NIC's queues".to_owned())
        } else {
            self.kind(Kind::AfXdp)
        };
        let af_xdp = match af_xdp {
            Ok(r) => r,
            Err(e) if e == "interrupted" => return Err(e),
            Err(e) => {
                eprintln!("veth-af_xdp: {e}");
                let mut r = report(
                    "veth-af_xdp",
                    "dpdk-testpmd --forward-mode=io, af_xdp veth -> af_xdp veth, zero loss",
                    Vec::new(),
                    Vec::new(),
                    self.size,
                );
                r.extra.insert("pmd".into(), "af_xdp".into());
                r.extra.insert("error".into(), e.into());
                r
            }
        };
        Ok(vec![af_packet, af_xdp])
    }
}
