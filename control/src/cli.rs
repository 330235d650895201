//! Command line of `palisade`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Palisade: a zero-trust firewall appliance for containers.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Data directory (overrides [store] data_dir).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration file: exit 0 when valid, 2 with file, line and reason when not.
    Check,
}
