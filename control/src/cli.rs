//! Command line of `palisade`: the clap definitions. The API client commands live in the
//! submodules: [`client`] (HTTP), [`session`] (the login file), [`commands`] (one function
//! per subcommand), [`output`] (tables and text), [`sse`] (the event stream framing) and
//! [`error`] (errors and exit codes).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod client;
pub mod commands;
pub mod error;
#[cfg(test)]
mod fake_http;
pub mod output;
pub mod session;
pub mod sse;

/// Where the API is when neither `--url` nor a session says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:10443";

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the server refused or failed the operation (HTTP 4xx/5xx not listed below)
  2  usage error or bad local input (arguments, files, policy documents)
  3  not logged in, session expired, or not allowed (HTTP 401, 403)
  4  not found (HTTP 404)
  5  conflict or stale data (HTTP 409, 412)
  6  cannot reach the server";

/// Palisade: a zero-trust firewall appliance for containers.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Data directory (overrides [store] data_dir).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// API client options.
    #[command(flatten)]
    pub api: ApiArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every command that talks to the REST API.
#[derive(Debug, Clone, Default, Args)]
pub struct ApiArgs {
    /// API base URL [default: the logged-in session's, else http://127.0.0.1:10443].
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Machine output: the server's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Bearer token (an API key) instead of the session; also env PALISADE_TOKEN.
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration file: exit 0 when valid, 2 with file, line and reason when not.
    Check,

    /// Run the appliance on this host: store, API, and a supervised `palisade-dp`. Prints the
    /// API URL and where the admin password is; stops on SIGINT/SIGTERM.
    Up(UpArgs),

    /// API client commands (`cli::commands`).
    #[command(flatten)]
    Api(ApiCommand),
}

/// `palisade up` options.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// `palisade-dp` binary (default: next to `palisade`).
    #[arg(long)]
    pub dp: Option<PathBuf>,
    /// Serve the API without starting a dataplane (nothing is enforced).
    #[arg(long)]
    pub no_dataplane: bool,
    /// Build a demo topology on this host first: namespaces pal-demo-client, pal-demo-web and
    /// pal-demo-db joined through the dataplane (its ports replace the configured ones), their
    /// workloads declared and some background traffic; removed again on SIGINT/SIGTERM.
    #[arg(long, conflicts_with = "no_dataplane")]
    pub demo: bool,
}

/// The API client commands, one subcommand each (flattened into [`Command`]).
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Log in: store a session token in ~/.config/palisade/session.json (mode 0600).
    Login(LoginArgs),
    /// Change the logged-in user's password (the new password is read from stdin).
    Passwd(PasswdArgs),
    /// Log out: revoke the session token and remove the session file.
    Logout,
    /// Server health and a dataplane statistics summary.
    Status,
    /// Discovered workloads (containers).
    Workloads,
    /// List, show, add or delete groups (default: list).
    Groups {
        /// What to do.
        #[command(subcommand)]
        action: Option<GroupsCmd>,
    },
    /// List, add or delete network rules (default: list).
    Rules {
        /// What to do.
        #[command(subcommand)]
        action: Option<RulesCmd>,
    },
    /// Switch a group's mode: network, process and file together unless --kind says one.
    Mode(ModeArgs),
    /// Events, newest last; --follow streams them as they happen.
    Events(EventsArgs),
    /// Write the whole policy as YAML (policy as code).
    Export {
        /// Write to FILE instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Replace the whole policy with a YAML document; prints what changes.
    Import {
        /// The document (`-` for stdin).
        file: PathBuf,
        /// Show the changes without applying them.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `palisade login`.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(long, short, default_value = "admin")]
    pub username: String,
    /// Read the password from the first line of stdin (else env PALISADE_PASSWORD).
    #[arg(long)]
    pub password_stdin: bool,
}

/// `palisade passwd`.
#[derive(Debug, Clone, Args)]
pub struct PasswdArgs {
    /// Whose password [default: the logged-in user].
    #[arg(long, short)]
    pub username: Option<String>,
}

/// `palisade groups ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum GroupsCmd {
    /// Every group with its modes and criteria.
    List,
    /// One group in full.
    Show {
        /// Group name.
        name: String,
    },
    /// Create a group.
    Add {
        /// Group name.
        name: String,
        /// A criterion: KEY (image, name, label, namespace, address), OP (=, !=, contains,
        /// prefix, regex), VALUE. Repeat for more (all must match).
        #[arg(long = "criterion", num_args = 3, value_names = ["KEY", "OP", "VALUE"])]
        criteria: Vec<String>,
        /// Network, process and file mode [default: discover].
        #[arg(long, value_enum)]
        mode: Option<ModeName>,
        /// Free text.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Delete a group.
    Delete {
        /// Group name.
        name: String,
    },
}

/// `palisade rules ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum RulesCmd {
    /// Every rule, in evaluation order as the server lists them.
    List,
    /// Add a rule (allow unless --deny).
    Add {
        /// Client group (or external, nodes, containers).
        #[arg(long)]
        from: String,
        /// Server group (or external, nodes, containers).
        #[arg(long)]
        to: String,
        /// tcp/80, udp/53, tcp/8000-8080, icmp or any; repeat for more [default: any].
        #[arg(long = "port", value_name = "PORT")]
        ports: Vec<String>,
        /// Application (http, tls, dns, postgresql, ...); repeat for more [default: any].
        #[arg(long = "app", value_name = "APP")]
        apps: Vec<String>,
        /// Deny instead of allow.
        #[arg(long)]
        deny: bool,
        /// Higher first.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// Rule id [default: chosen by the server].
        #[arg(long)]
        id: Option<u32>,
    },
    /// Delete a rule.
    Delete {
        /// Rule id.
        id: u32,
    },
}

/// A group mode on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeName {
    /// Learn.
    Discover,
    /// Alert.
    Monitor,
    /// Block.
    Protect,
}

impl ModeName {
    /// The model's mode.
    pub fn mode(self) -> crate::model::Mode {
        match self {
            Self::Discover => crate::model::Mode::Discover,
            Self::Monitor => crate::model::Mode::Monitor,
            Self::Protect => crate::model::Mode::Protect,
        }
    }
}

/// Which of a group's modes `palisade mode` switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ModeKind {
    /// network_mode only.
    Network,
    /// process_mode only.
    Process,
    /// file_mode only.
    File,
    /// All three (like NeuVector's "switch mode").
    #[default]
    All,
}

/// `palisade mode`.
#[derive(Debug, Clone, Args)]
pub struct ModeArgs {
    /// Group name.
    pub group: String,
    /// New mode.
    #[arg(value_enum)]
    pub mode: ModeName,
    /// Which mode to switch.
    #[arg(long, value_enum, default_value_t = ModeKind::All)]
    pub kind: ModeKind,
}

/// `palisade events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Only this kind (network_violation, threat, process_violation, file_violation,
    /// audit, system).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only events about this group.
    #[arg(long)]
    pub group: Option<String>,
    /// At most this many events.
    #[arg(long)]
    pub limit: Option<u32>,
    /// Only events after this cursor (the `next` of an earlier answer).
    #[arg(long)]
    pub after: Option<String>,
    /// Keep the connection open and print events as they happen.
    #[arg(long, short)]
    pub follow: bool,
}
