//! `palisade-exec-storm`: fork+exec of one program as fast as T threads can, for S seconds,
//! optionally from inside another process's cgroups (so that an engine attributes the storm to
//! that process's container). Prints one JSON line: `{"execs", "failed", "seconds", "per_sec"}`.
//!
//! The load generator for the process engine's sustained-rate benchmark
//! (`scripts/bench-process.sh --storm`): a busybox shell loop inside a container tops out far
//! below the rate to measure, a spawn loop in a native binary does not.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

/// fork+exec storm.
#[derive(Debug, Parser)]
#[command(name = "palisade-exec-storm", version, about)]
struct Cli {
    /// The program to run (best a small static binary, e.g. a copy of busybox named `true`).
    #[arg(long)]
    program: PathBuf,
    /// Spawning threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// How long to spawn.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Join the cgroups of this pid first (every hierarchy it is in that accepts us).
    #[arg(long)]
    join_cgroups_of: Option<u32>,
}

/// Moves this process into every cgroup `pid` is in (v1 hierarchies and the v2 one).
fn join_cgroups(pid: u32) -> Result<usize, String> {
    let own = std::process::id().to_string();
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
    let v2_root = if std::path::Path::new("/sys/fs/cgroup/unified").is_dir() {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup"
    };
    let mut joined = 0;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let root = if controllers.is_empty() {
            PathBuf::from(v2_root)
        } else {
            PathBuf::from("/sys/fs/cgroup").join(controllers.trim_start_matches("name="))
        };
        let procs = root.join(path.trim_start_matches('/')).join("cgroup.procs");
        if std::fs::write(&procs, &own).is_ok() {
            joined += 1;
        }
    }
    if joined == 0 {
        return Err(format!("could not join any cgroup of pid {pid}"));
    }
    Ok(joined)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(pid) = cli.join_cgroups_of
        && let Err(e) = join_cgroups(pid)
    {
        eprintln!("palisade-exec-storm: {e}");
        return ExitCode::FAILURE;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let execs = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..cli.threads.max(1))
        .map(|_| {
            let (stop, execs, failed) = (stop.clone(), execs.clone(), failed.clone());
            let program = cli.program.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // std spawns through posix_spawn (a vfork-style clone) when nothing needs
                    // to run between fork and exec, as here.
                    let ok = Command::new(&program)
                        .spawn()
                        .and_then(|mut c| c.wait())
                        .is_ok_and(|s| s.success());
                    let c = if ok { &execs } else { &failed };
                    c.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(cli.seconds.max(0.0)));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let seconds = start.elapsed().as_secs_f64();
    let n = execs.load(Ordering::Relaxed);
    println!(
        "{{\"execs\":{n},\"failed\":{},\"seconds\":{seconds:.3},\"per_sec\":{:.0}}}",
        failed.load(Ordering::Relaxed),
        n as f64 / seconds
    );
    ExitCode::SUCCESS
}
