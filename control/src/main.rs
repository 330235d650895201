//! `palisade`: control process and CLI.
//!
//! Exit codes: 0 on success, 2 for an invalid configuration or usage, 1 for any other failure;
//! the API client commands add 3 (not logged in, 401/403), 4 (404), 5 (409/412) and 6
//! (server unreachable), see `cli::error::Exit`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use control::cli::{Cli, Command};
use control::config;

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check => match config::load(&cli.config) {
            Ok(mut c) => {
                if let Some(d) = cli.data_dir {
                    c.store.data_dir = d;
                }
                println!(
                    "{}: ok (api {}{}, data {}, {} dataplane ports)",
                    cli.config.display(),
                    c.api.listen,
                    if c.api.tls.is_some() { " with TLS" } else { "" },
                    c.store.data_dir.display(),
                    c.dataplane.ports.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("palisade: error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Up(args) => up(&cli.config, cli.data_dir, args),
        Command::Api(command) => ExitCode::from(control::cli::commands::main(&cli.api, command)),
    }
}

/// `palisade up`: the embedded defaults when the default configuration file does not exist.
#[allow(clippy::print_stderr)]
fn up(
    path: &std::path::Path,
    data_dir: Option<std::path::PathBuf>,
    args: control::cli::UpArgs,
) -> ExitCode {
    let explicit = path != std::path::Path::new(config::DEFAULT_PATH);
    let (cfg, config_path) = if explicit || path.exists() {
        match config::load(path) {
            Ok(c) => (c, Some(path.to_path_buf())),
            Err(e) => {
                eprintln!("palisade: error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        match config::parse("", path) {
            Ok(c) => (c, None),
            Err(e) => {
                eprintln!("palisade: error: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let mut cfg = cfg;
    if let Some(d) = data_dir {
        cfg.store.data_dir = d;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("palisade: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = control::up::UpOptions {
        config: cfg,
        config_path,
        dp_binary: args.dp,
        no_dataplane: args.no_dataplane,
        demo: args.demo,
    };
    match rt.block_on(control::up::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade: error: {}", control::error_chain(&e));
            ExitCode::from(1)
        }
    }
}
