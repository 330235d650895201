//! `palisade-pktgen`: a DPDK traffic generator on the same `ffi` crate and port code as
//! `palisade-dp`. One lcore sends flows ([`bench::pktgen::flows`]) at a paced or maximum rate
//! with a stamp in each payload, receives what comes back on the same (or another) port, and
//! reports per-class loss (allowed vs denied flows) and latency percentiles; `--ndr` runs the
//! RFC 2544 zero-loss search instead of one trial. Human table on stdout, JSON with `--json`.
//!
//! Ports are given like `palisade-dp`'s `[[dataplane.port]]` tables, as comma-separated
//! `key=value` (`kind=memif,socket=/run/pg.sock,role=server`), or `loop`: a ring looped back
//! to itself, which measures the generator alone. A port with `queues=N` sends flow slot `i`
//! on queue `i mod N` (a flow keeps its queue, so a device under test with N workers on N
//! queues sees each flow on one worker) and receives from all N.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::pktgen::flows::{Class, FlowSet, FlowSpec};
use bench::pktgen::latency::Histogram;
use bench::pktgen::ndr::{NdrConfig, NdrSearch, Next};
use bench::pktgen::pacer::{Pacer, Rate};
use bench::pktgen::packet::{self, Layout, Macs, Stamp};
use bench::pktgen::report::{ClassCounters, RunSummary};
use bench::pktgen::sizes::SizeSpec;
use clap::Parser;
use dataplane::dpdk::{BURST, Eal, Mbuf, Mempool, Port, Ring};

/// DPDK traffic generator: flows, rates, loss per class, latency, zero-loss search.
#[derive(Debug, Parser)]
#[command(name = "palisade-pktgen", version, about)]
struct Cli {
    /// Port to send on: `loop`, or `key=value,...` as in a `[[dataplane.port]]` table.
    #[arg(long, default_value = "loop")]
    port: String,
    /// Port to receive on (default: the sending port).
    #[arg(long)]
    rx_port: Option<String>,
    /// Flow set: comma-separated `key=value` (count, proto, src, dst, sport, dport,
    /// deny-dport, allowed, new, seed).
    #[arg(long, default_value = "count=1000")]
    flows: String,
    /// Frame size with FCS (64..=9000) or `imix`.
    #[arg(long, default_value = "64")]
    size: String,
    /// `max`, or a rate such as `500kpps`, `1.5Mpps`.
    #[arg(long, default_value = "max")]
    rate: String,
    /// Seconds measured per trial.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds sent before each measurement (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Milliseconds to keep receiving after a trial stops sending.
    #[arg(long, default_value_t = 100)]
    drain_ms: u64,
    /// Search the zero-loss rate (RFC 2544) below the rate `--rate max` reaches.
    #[arg(long)]
    ndr: bool,
    /// Acceptable loss ratio of allowed flows for `--ndr` (0: none; 0.00005 for a PDR).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Resolution of the search, a share of the maximum rate.
    #[arg(long, default_value_t = 0.01)]
    resolution: f64,
    /// CPU the generator's lcore runs on.
    #[arg(long, default_value_t = 0)]
    cpu: u32,
    /// EAL file prefix (default: unique per process).
    #[arg(long)]
    file_prefix: Option<String>,
    /// Mbufs in the pool.
    #[arg(long, default_value_t = 16383)]
    mbufs: u32,
    /// Destination MAC of the frames.
    #[arg(long, default_value = "02:00:00:00:00:02")]
    dst_mac: String,
    /// Seconds to wait for the ports' links to come up (a memif peer to connect).
    #[arg(long, default_value_t = 10.0)]
    link_timeout: f64,
    /// Write the JSON report here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// After the links are up, send nothing until this file exists (a harness creates it once
    /// the device under test is ready, e.g. has its policy). Waits up to `--link-timeout` + 120 s.
    #[arg(long)]
    wait_for: Option<PathBuf>,
    /// After writing the report, keep the ports open while this file exists (a harness reads
    /// the device under test's counters meanwhile; a memif peer sees no disconnection). At most
    /// 120 s.
    #[arg(long)]
    hold_while: Option<PathBuf>,
    /// With `--ndr`: share of the zero-loss rate at which a last trial measures latency (RFC
    /// 2544 measures it at the throughput rate: 1.0).
    #[arg(long, default_value_t = 1.0)]
    latency_at: f64,
}

/// A port spec (`key=value,...`) as the body of a `[[dataplane.port]]` table.
fn port_toml(name: &str, spec: &str) -> String {
    let mut text = format!("name = \"{name}\"\n");
    for item in spec.split(',').filter(|i| !i.trim().is_empty()) {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        let (k, v) = (k.trim(), v.trim());
        let literal = v.parse::<i64>().is_ok() || v == "true" || v == "false";
        if literal {
            text.push_str(&format!("{k} = {v}\n"));
        } else {
            text.push_str(&format!(
                "{k} = \"{}\"\n",
                v.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
    }
    text
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("`{s}` is not a MAC address"))?;
    parts
        .try_into()
        .map_err(|_| format!("`{s}` is not a MAC address"))
}

/// Opens (and starts) a port from its spec.
fn open_port(eal: &Eal, pool: &Arc<Mempool>, name: &str, spec: &str) -> Result<Port, String> {
    let mut port = if spec == "loop" {
        let ring =
            Arc::new(Ring::new(eal, &format!("pg_{name}"), 8192).map_err(|e| e.to_string())?);
        Port::from_rings(eal, name, Arc::clone(&ring), ring).map_err(|e| e.to_string())?
    } else {
        let cfg = dataplane::config::parse_port(&port_toml(name, spec), Path::new("--port"))
            .map_err(|e| e.to_string())?;
        Port::attach(eal, &cfg).map_err(|e| e.to_string())?
    };
    port.configure(Arc::clone(pool), 1024, 1024)
        .map_err(|e| e.to_string())?;
    port.start().map_err(|e| e.to_string())?;
    Ok(port)
}

/// What one trial needs.
struct Gen<'a> {
    tx: &'a Port,
    rx: &'a Port,
    pool: &'a Mempool,
    flows: &'a FlowSet,
    size: SizeSpec,
    macs: Macs,
    drain: Duration,
}

/// One frame template per flow slot.
struct Template {
    frame: Vec<u8>,
    layout: Layout,
    class: Class,
    seq: u32,
    generation: u64,
    /// Frame size asked for (with FCS).
    size: u16,
}

/// What a trial measured.
struct Outcome {
    counters: ClassCounters,
    latency: Histogram,
    seconds: f64,
    /// Frames received without a stamp of ours.
    foreign: u64,
}

impl Gen<'_> {
    fn template(&self, slot: u32, generation: u64, size: u16) -> Result<Template, String> {
        let mut tpl = Template {
            frame: Vec::with_capacity(usize::from(size)),
            layout: Layout::default(),
            class: Class::Allowed,
            seq: 0,
            generation,
            size,
        };
        self.refill(&mut tpl, slot, generation, size)?;
        Ok(tpl)
    }

    /// Rebuilds `tpl` in place for (`slot`, `generation`): no allocation once its buffer has
    /// grown to the size (with `new=every` this runs for every frame sent).
    fn refill(
        &self,
        tpl: &mut Template,
        slot: u32,
        generation: u64,
        size: u16,
    ) -> Result<(), String> {
        let flow = self
            .flows
            .flow(slot, generation)
            .ok_or_else(|| format!("no flow for slot {slot}"))?;
        tpl.frame.clear();
        tpl.frame.resize(usize::from(size), 0);
        tpl.layout = packet::build(&mut tpl.frame, &flow, &self.macs, size, &Stamp::default())
            .map_err(|e| e.to_string())?;
        tpl.frame.truncate(tpl.layout.len);
        tpl.class = flow.class;
        tpl.seq = 0;
        tpl.generation = generation;
        tpl.size = size;
        Ok(())
    }

    /// Sends for `warmup` then `seconds` at `rate`, counting only the second part, then
    /// drains the receive side.
    fn trial(&self, rate: Rate, warmup: f64, seconds: f64) -> Result<Outcome, String> {
        let clock = Instant::now();
        let now = || u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let burst = u32::try_from(BURST).unwrap_or(32);
        let mut pacer = Pacer::new(rate, 1_000_000_000, burst, now()).map_err(|e| e.to_string())?;
        let mut rotation = self
            .flows
            .rotation(1_000_000_000, now())
            .map_err(|e| e.to_string())?;
        let mut sizes = self.size.sequence();
        let fixed = match self.size {
            SizeSpec::Fixed(n) => Some(n),
            SizeSpec::Imix => None,
        };
        let mut templates: Vec<Template> = Vec::with_capacity(self.flows.len() as usize);
        for slot in 0..self.flows.len() {
            let size = fixed.unwrap_or_else(|| sizes.next().unwrap_or(64));
            templates.push(self.template(slot, 0, size)?);
        }
        let mut counters = ClassCounters::default();
        let mut latency = Histogram::new();
        let mut foreign = 0u64;
        let queues = self.tx.queues().max(1);
        let mut batches: Vec<Vec<Mbuf>> = (0..queues).map(|_| Vec::with_capacity(BURST)).collect();
        let mut classes: Vec<Vec<Class>> = (0..queues).map(|_| Vec::with_capacity(BURST)).collect();
        let mut received: Vec<Mbuf> = Vec::with_capacity(BURST);
        let warm_end = Duration::from_secs_f64(warmup.max(0.0));
        let end = warm_end + Duration::from_secs_f64(seconds.max(0.0));
        let mut measuring = warmup <= 0.0;
        let mut measure_start = clock.elapsed();
        // Frames stamped before this (the warm-up's) are not counted when they come back.
        let mut since = 0u64;
        let mut slot = 0u32;
        let count = self.flows.len().max(1);
        let every_frame_new = self.flows.spec().new_every_frame;
        loop {
            let elapsed = clock.elapsed();
            if !measuring && elapsed >= warm_end {
                measuring = true;
                measure_start = elapsed;
                since = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
            }
            if elapsed >= end {
                break;
            }
            let t = now();
            for r in rotation.due(t) {
                let size = fixed.unwrap_or_else(|| sizes.next().unwrap_or(64));
                if let Some(tpl) = templates.get_mut(r.slot as usize) {
                    self.refill(tpl, r.slot, r.generation, size)?;
                }
            }
            let n = pacer.available(t).min(burst);
            for _ in 0..n {
                let Some(tpl) = templates.get_mut(slot as usize) else {
                    break;
                };
                let Some(mut m) = Mbuf::alloc(self.pool) else {
                    break;
                };
                let Some(data) = m.append(tpl.frame.len()) else {
                    break;
                };
                data.copy_from_slice(&tpl.frame);
                let stamp = Stamp {
                    flow: slot,
                    seq: tpl.seq,
                    tx_time: t,
                };
                if packet::restamp(m.data_mut(), &tpl.layout, &stamp).is_err() {
                    break;
                }
                tpl.seq = tpl.seq.wrapping_add(1);
                let q = (slot % u32::from(queues)) as usize;
                if let (Some(b), Some(c)) = (batches.get_mut(q), classes.get_mut(q)) {
                    c.push(tpl.class);
                    b.push(m);
                }
                if every_frame_new {
                    let (generation, size) = (tpl.generation + 1, tpl.size);
                    self.refill(tpl, slot, generation, size)?;
                }
                slot = (slot + 1) % count;
            }
            for (q, (batch, classes)) in batches.iter_mut().zip(classes.iter_mut()).enumerate() {
                if batch.is_empty() {
                    continue;
                }
                let sent = self.tx.tx_burst_on(u16::try_from(q).unwrap_or(0), batch);
                pacer.consume(u32::try_from(sent).unwrap_or(0));
                if measuring {
                    for c in &classes[..sent] {
                        counters.sent(*c, 1);
                    }
                }
                // Not taken: dropped (freed) and not counted; their sequence numbers are
                // skipped, which a receiver may see as a gap.
                batch.clear();
                classes.clear();
            }
            self.receive(
                clock,
                since,
                &mut received,
                measuring,
                &mut counters,
                &mut latency,
                &mut foreign,
            );
        }
        let seconds = (clock.elapsed() - measure_start).as_secs_f64();
        let drain_end = Instant::now() + self.drain;
        while Instant::now() < drain_end {
            self.receive(
                clock,
                since,
                &mut received,
                true,
                &mut counters,
                &mut latency,
                &mut foreign,
            );
        }
        Ok(Outcome {
            counters,
            latency,
            seconds,
            foreign,
        })
    }

    /// One receive burst from each rx queue: stamps found are counted by their flow's class and
    /// their latency (against `clock`, the trial's) recorded while `measuring`, if sent at or
    /// after `since`.
    #[allow(clippy::too_many_arguments)]
    fn receive(
        &self,
        clock: Instant,
        since: u64,
        buf: &mut Vec<Mbuf>,
        measuring: bool,
        counters: &mut ClassCounters,
        latency: &mut Histogram,
        foreign: &mut u64,
    ) {
        for q in 0..self.rx.queues().max(1) {
            buf.clear();
            if self.rx.rx_burst_from(q, buf, BURST) == 0 {
                continue;
            }
            let t = u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX);
            for m in buf.drain(..) {
                match packet::parse_stamp(m.data()) {
                    Some(stamp) if measuring && stamp.tx_time >= since => {
                        counters.received(self.flows.class(stamp.flow), 1);
                        latency.record(stamp.latency(t));
                    }
                    Some(_) => {}
                    None => *foreign += 1,
                }
            }
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let spec: FlowSpec = cli.flows.parse().map_err(|e| format!("--flows: {e}"))?;
    let flows = FlowSet::new(spec.clone()).map_err(|e| format!("--flows: {e}"))?;
    let size: SizeSpec = cli.size.parse().map_err(|e| format!("--size: {e}"))?;
    let rate: Rate = cli.rate.parse().map_err(|e| format!("--rate: {e}"))?;
    let dst = parse_mac(&cli.dst_mac)?;
    let prefix = cli
        .file_prefix
        .clone()
        .unwrap_or_else(|| format!("pktgen{}", std::process::id()));
    let args: Vec<String> = [
        "--lcores".to_owned(),
        format!("0@{}", cli.cpu),
        "--in-memory".to_owned(),
        "--no-pci".to_owned(),
        "--no-telemetry".to_owned(),
        "--file-prefix".to_owned(),
        prefix,
    ]
    .into();
    let eal = Eal::init(&args).map_err(|e| e.to_string())?;
    let pool = Arc::new(Mempool::new(&eal, "pktgen", cli.mbufs, 256).map_err(|e| e.to_string())?);
    let tx = open_port(&eal, &pool, "gen", &cli.port)?;
    let rx_port = match &cli.rx_port {
        Some(spec) => Some(open_port(&eal, &pool, "genrx", spec)?),
        None => None,
    };
    let rx = rx_port.as_ref().unwrap_or(&tx);
    // A memif or vhost peer connects after we start: send nothing into a link that is down.
    let deadline = Instant::now() + Duration::from_secs_f64(cli.link_timeout.max(0.0));
    for p in [&tx, rx] {
        while !p.link().up {
            if Instant::now() >= deadline {
                return Err(format!(
                    "port {} link still down after {} s",
                    p.name(),
                    cli.link_timeout
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Some(path) = &cli.wait_for {
        let deadline = Instant::now() + Duration::from_secs_f64(cli.link_timeout.max(0.0) + 120.0);
        while !path.exists() {
            if Instant::now() >= deadline {
                return Err(format!("{} did not appear", path.display()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let generator = Gen {
        tx: &tx,
        rx,
        pool: &pool,
        flows: &flows,
        size,
        macs: Macs { src: tx.mac(), dst },
        drain: Duration::from_millis(cli.drain_ms),
    };
    let summary = if cli.ndr {
        let top = generator.trial(Rate::Max, cli.warmup, cli.seconds)?;
        let max_pps = top.counters.total().sent as f64 / top.seconds.max(1e-9);
        let mut cfg = NdrConfig::ndr((max_pps * 0.01).max(1.0), max_pps.max(2.0), 1.0)
            .with_relative_resolution(cli.resolution);
        cfg.loss_ratio = cli.loss;
        let mut search = NdrSearch::new(cfg).map_err(|e| e.to_string())?;
        let (result, last) = loop {
            match search.step() {
                Next::Trial(pps) => {
                    let r = Rate::Pps((pps as u64).max(1));
                    let o = generator.trial(r, cli.warmup, cli.seconds)?;
                    let allowed = o.counters.get(Class::Allowed);
                    eprintln!(
                        "trial at {:.0} pps: {} sent, {} received (allowed flows)",
                        pps, allowed.sent, allowed.received
                    );
                    search
                        .record(allowed.sent, allowed.received)
                        .map_err(|e| e.to_string())?;
                }
                Next::Done(result) => break (result, top),
            }
        };
        // Latency at the zero-loss rate (a trial at the maximum would measure queues full).
        let (rate, last) = match result.rate_pps {
            Some(pps) if cli.latency_at > 0.0 => {
                let r = Rate::Pps(((pps * cli.latency_at) as u64).max(1));
                (r, generator.trial(r, cli.warmup, cli.seconds)?)
            }
            _ => (Rate::Max, last),
        };
        let mut s = RunSummary::new(
            &spec,
            size,
            rate,
            last.seconds,
            &last.counters,
            Some(&last.latency),
        );
        s.ndr = Some(result);
        s
    } else {
        let o = generator.trial(rate, cli.warmup, cli.seconds)?;
        if o.foreign > 0 {
            eprintln!(
                "{} frames received without our stamp (not counted)",
                o.foreign
            );
        }
        RunSummary::new(&spec, size, rate, o.seconds, &o.counters, Some(&o.latency))
    };
    println!("{summary}");
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    if let Some(path) = &cli.hold_while {
        let deadline = Instant::now() + Duration::from_secs(120);
        while path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade-pktgen: {e}");
            ExitCode::FAILURE
        }
    }
}
