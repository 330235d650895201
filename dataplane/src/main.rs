//! `palisade-dp`: the DPDK dataplane process.
//!
//! Exit codes: 0 after a clean stop (SIGINT/SIGTERM) or a successful `--check`; 2 when the
//! configuration is invalid; 1 when the host or DPDK refuses to start (the message says what
//! to do). SIGINT and SIGTERM both stop it cleanly, however many arrive.

use std::error::Error;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use dataplane::config::{self, DataplaneConfig};
use dataplane::dpdk::{Dataplane, DpBackend, Eal};
use dataplane::preflight;
use dataplane::stats::DropReason;
use dataplane::{ctl, report};
use tracing_subscriber::EnvFilter;

/// Palisade's DPDK dataplane: forwards between port pairs on poll-mode worker lcores.
#[derive(Debug, Parser)]
#[command(name = "palisade-dp", version, about)]
struct Cli {
    /// Configuration file; only its [dataplane] section is read.
    #[arg(long, short, default_value = "/etc/palisade/palisade.toml")]
    config: PathBuf,
    /// Validate the configuration and exit (0 when valid, 2 with the reason when not).
    #[arg(long)]
    check: bool,
    /// Offline tools (no DPDK, no root).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Classify the flows of a pcap or pcapng file: one line per flow (5-tuple, application,
    /// packets and bytes each way), then the malformed counts.
    Classify {
        /// The capture.
        file: PathBuf,
        /// One JSON object per line and flow (totals as JSON on stderr).
        #[arg(long)]
        json: bool,
    },
}

/// `palisade-dp classify`: exit 0 (a damaged capture is reported, not an error), 1 when the
/// file is not a capture at all.
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn classify(file: &std::path::Path, json: bool) -> ExitCode {
    match dataplane::classify::classify(file) {
        Ok(r) => {
            if json {
                print!("{}", r.to_json_lines());
                eprintln!("{}", r.summary_json());
            } else {
                print!("{}", r.to_text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&e);
            ExitCode::from(1)
        }
    }
}

/// Prints an error and every cause under it, once.
#[allow(clippy::print_stderr)]
fn report(e: &dyn Error) {
    eprintln!("palisade-dp: error: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        eprintln!("  caused by: {s}");
        src = s.source();
    }
}

#[allow(clippy::print_stdout)]
fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(Command::Classify { file, json }) = &cli.command {
        return classify(file, *json);
    }
    let cfg = match config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!(
            "{}: ok ({} ports, {} pairs, {} worker lcores)",
            cli.config.display(),
            cfg.ports.len(),
            cfg.pairs.len(),
            cfg.worker_lcores().len()
        );
        return ExitCode::SUCCESS;
    }
    if let Err(e) = preflight::check_host(&cfg) {
        report(&e);
        return ExitCode::from(1);
    }
    match run(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(e.as_ref());
            ExitCode::from(1)
        }
    }
}

fn run(cfg: &DataplaneConfig) -> Result<(), Box<dyn Error>> {
    // Register before the EAL starts so a signal during start-up still ends in a clean stop.
    let term = Arc::new(AtomicBool::new(false));
    // Further signals while stopping change nothing: a Ctrl-C that reaches the whole process
    // group and a supervisor's SIGTERM must not turn into an unclean exit.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&term))?;
    }

    let started = Instant::now();
    let eal = Eal::init(&cfg.eal_args())?;
    let eal_ms = started.elapsed().as_secs_f64() * 1e3;
    let dp = Dataplane::from_config(&eal, cfg)?;
    drop(eal); // the dataplane holds its own handle
    let mut server = ctl::Server::bind(ctl::ServerConfig::new(&cfg.socket))?;
    tracing::info!(
        eal_init_ms = format!("{eal_ms:.1}"),
        ready_ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
        ports = cfg.ports.len(),
        workers = cfg.worker_lcores().len(),
        tsc_hz = dp.eal().tsc_hz(),
        "dataplane running"
    );
    for p in dp.port_reports() {
        let lcores: Vec<u32> = p.lcores.iter().map(|l| l.0).collect();
        tracing::info!(port = %p.name, port_id = p.port_id, lcores = ?lcores, rss = p.rss, link_up = p.link.up, "port started");
    }

    tracing::info!(socket = %cfg.socket.display(), "control socket listening");

    // The main lcore's loop: the control socket (which also waits, instead of a sleep), the
    // workers' report rings into the aggregator and out to subscribers, the counters.
    let mut backend = DpBackend::new(dp);
    let mut aggregator = report::Aggregator::new(report::AggregatorConfig::default());
    let mut events = Vec::new();
    let interval = Duration::from_secs(u64::from(cfg.stats_interval_s));
    let mut next_stats = Instant::now() + interval;
    while !term.load(Ordering::Acquire) {
        server.poll(&mut backend, Duration::from_millis(20));
        let resolve = backend.resolver();
        let now = report::Now {
            mono: backend.dataplane().now(),
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        aggregator.poll(
            backend.dataplane_mut().reports(),
            now,
            &resolve,
            &mut events,
        );
        for e in events.drain(..) {
            server.publish(&e);
        }
        if cfg.stats_interval_s > 0 && Instant::now() >= next_stats {
            log_stats(backend.dataplane());
            next_stats += interval;
        }
    }
    tracing::info!("stopping");
    drop(server);
    let dp = backend.into_dataplane();
    log_stats(&dp);
    drop(dp);
    tracing::info!("stopped");
    Ok(())
}

fn log_stats(dp: &Dataplane) {
    for p in dp.port_reports() {
        let c = p.counters;
        let pmd = p.pmd.unwrap_or_default();
        tracing::info!(
            port = %p.name,
            rx = c.rx_packets,
            rx_bytes = c.rx_bytes,
            tx = c.tx_packets,
            tx_bytes = c.tx_bytes,
            tx_retries = c.tx_retries,
            dropped_tx_full = c.dropped(DropReason::TxFull),
            dropped_malformed = c.dropped(DropReason::Malformed),
            dropped_fragment = c.dropped(DropReason::Fragment),
            dropped_policy = c.dropped(DropReason::Policy),
            dropped_threat = c.dropped(DropReason::Threat),
            missed = pmd.imissed,
            rx_errors = pmd.ierrors,
            tx_errors = pmd.oerrors,
            rx_nombuf = pmd.rx_nombuf,
            link_up = p.link.up,
            "port counters"
        );
    }
    for w in dp.worker_reports() {
        let c = w.counters;
        tracing::info!(
            lcore = w.lcore.0,
            pairs = w.pairs,
            running = w.running,
            loops = c.loops,
            idle_loops = c.idle_loops,
            sleeps = c.sleeps,
            rx = c.rx_packets,
            tx = c.tx_packets,
            dropped = c.dropped,
            busy_cycles = c.busy_cycles,
            cycles_per_packet = format!("{:.1}", c.cycles_per_packet().unwrap_or(0.0)),
            sessions = w.conntrack.active,
            sessions_created = w.conntrack.created,
            sessions_expired = w.conntrack.expired,
            sessions_evicted = w.conntrack.evicted,
            sessions_refused = w.conntrack.refused,
            sessions_picked_up = w.conntrack.picked_up,
            malformed = w.pipeline.malformed_total(),
            inspected = w.pipeline.inspected,
            policy_drops = w.pipeline.policy_drops,
            threat_drops = w.pipeline.threat_drops,
            violations = w.pipeline.violations,
            threats = w.pipeline.threats,
            reports_lost = w.reports_lost,
            fragments_held = w.fragments.held,
            fragment_overlaps = w.fragments.overlaps,
            "worker counters"
        );
        for m in dataplane::wire::Malformed::ALL {
            let n = w.pipeline.malformed[m.index()];
            if n > 0 {
                tracing::info!(
                    lcore = w.lcore.0,
                    reason = m.name(),
                    count = n,
                    "malformed frames"
                );
            }
        }
    }
}
