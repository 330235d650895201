//! `palisade-bench-charts`: draws `rule-scaling.svg` and `latency.svg` from a benchmark report
//! (see [`bench::charts`]). Exits non-zero, naming what is missing, when a chart's data is not
//! in the report; the other chart is still drawn.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use bench::charts::{self, Which};
use clap::{Parser, ValueEnum};

/// Charts of a palisade-bench report: rule scaling and latency distribution, as SVG.
#[derive(Debug, Parser)]
#[command(name = "palisade-bench-charts", version, about)]
struct Cli {
    /// The report `palisade-bench` wrote.
    #[arg(default_value = "target/bench/report.json")]
    report: PathBuf,
    /// Directory the SVG files go to (created if missing).
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
    /// Which charts to draw.
    #[arg(long, value_enum, default_value_t = Chart::All)]
    chart: Chart,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Chart {
    All,
    RuleScaling,
    Latency,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let which = match cli.chart {
        Chart::All => Which::All,
        Chart::RuleScaling => Which::RuleScaling,
        Chart::Latency => Which::Latency,
    };
    let done = match charts::read_report(&cli.report)
        .and_then(|report| charts::render(&report, &cli.out, which))
    {
        Ok(done) => done,
        Err(e) => {
            eprintln!("palisade-bench-charts: {}", charts::error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    for path in &done.written {
        println!("wrote {}", path.display());
    }
    for e in &done.failed {
        eprintln!("palisade-bench-charts: {}", charts::error_chain(e));
    }
    if done.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
