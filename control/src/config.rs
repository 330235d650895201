//! The whole `palisade.toml`: `[api]`, `[store]`, `[discovery]`, `[[notify]]` and `[dataplane]` (validated by the
//! dataplane crate's own types, so `palisade` and `palisade-dp` agree on it).
//!
//! Raw serde shape first (`deny_unknown_fields` everywhere), then a validated [`Config`];
//! every rejection names the file, line and column. Field documentation lives in
//! `config/palisade.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use dataplane::config::{ConfigError, DataplaneConfig, RawDataplane, Source};
use serde::Deserialize;
use toml::Spanned;

use crate::model::{EventKind, Severity};
use crate::notify::{Destination, NotifyTarget};
use crate::store::StoreSettings;

/// Default configuration file.
pub const DEFAULT_PATH: &str = "/etc/palisade/palisade.toml";
/// Default data directory (SQLite store).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/palisade";
/// Default API address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10443";

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// REST API.
    pub api: ApiConfig,
    /// Persistent state.
    pub store: StoreConfig,
    /// The dataplane section, exactly as `palisade-dp` reads it.
    pub dataplane: DataplaneConfig,
    /// `[discovery]`.
    pub discovery: DiscoveryConfig,
    /// `[[workload]]`: workloads declared in the file (until discovery finds containers).
    pub workloads: Vec<crate::model::Workload>,
    /// `[[notify]]`: where events are delivered (none by default).
    pub notify: Vec<NotifyTarget>,
    /// `[plumb]`: how containers are connected to the dataplane.
    pub plumb: PlumbConfig,
    /// `[process]`: the process engine.
    pub process: ProcessConfig,
    /// `[file]`: the file engine.
    pub file: FileConfig,
}

/// `[process]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    /// Run the process engine (learn, alert, block programs in containers).
    pub enabled: bool,
    /// Block unlisted programs before they run (fanotify exec marks on protected
    /// containers); off: they are killed right after they start.
    pub exec_gate: bool,
    /// Exec checks queued for a verdict at most; more are answered with `on_overflow`.
    pub queue: usize,
    /// How long an exec waits for its verdict before the watchdog answers with `on_stall`.
    pub deadline_ms: u64,
    /// Answer to an exec that finds the queue full: true allows.
    pub overflow_allows: bool,
    /// Answer to an exec not decided in time: true allows (fail open).
    pub stall_allows: bool,
    /// Protect also refuses programs written after the container started (zero drift).
    pub zero_drift: bool,
    /// Receive buffer of the process-event socket, bytes: what a burst of events may fill
    /// before the kernel drops some (counted, and /proc rescanned).
    pub events_buffer: usize,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            exec_gate: true,
            queue: 2048,
            deadline_ms: 200,
            overflow_allows: true,
            stall_allows: true,
            zero_drift: false,
            events_buffer: 4 << 20,
        }
    }
}

/// `[file]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// Run the file engine (learn, alert, block access to sensitive files in containers).
    pub enabled: bool,
    /// Opens queued for a verdict at most; more are answered with `on_overflow`.
    pub queue: usize,
    /// How long an open waits for its verdict before the watchdog answers with `on_stall`.
    pub deadline_ms: u64,
    /// Answer to an open that finds the queue full: true allows.
    pub overflow_allows: bool,
    /// Answer to an open not decided in time: true allows (fail open).
    pub stall_allows: bool,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            queue: 2048,
            deadline_ms: 200,
            overflow_allows: true,
            stall_allows: true,
        }
    }
}

/// What the dataplane's death does to inline workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// The direct path comes back (traffic flows unfiltered) until the dataplane returns.
    #[default]
    Open,
    /// Inline workloads stay cut off until the dataplane returns.
    Closed,
}

/// `[plumb]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlumbConfig {
    /// Connect discovered containers to the dataplane (tap or inline by mode).
    pub enabled: bool,
    /// Inline workloads when `palisade-dp` is down.
    pub fail: FailMode,
    /// The veth whose end the dataplane reads mirrored traffic from (`<name>` gets the
    /// mirrors, `<name>-dp` is the dataplane's port); at most 11 characters.
    pub tap_iface: String,
    /// Plumb only containers whose host veth is on one of these bridges (empty: any bridge).
    pub bridges: Vec<String>,
}

impl Default for PlumbConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            fail: FailMode::Open,
            tap_iface: "pal-tap".into(),
            bridges: Vec::new(),
        }
    }
}

/// `[discovery]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Network, process and file mode of groups created from workloads and of new user
    /// groups that name none.
    pub default_mode: dataplane::policy::Mode,
    /// The container runtime's API socket (Docker-compatible); `None`: the first of
    /// [`crate::workload::runtime::DEFAULT_SOCKETS`] that exists.
    pub runtime_socket: Option<PathBuf>,
    /// Time between two discovery scans, milliseconds.
    pub interval_ms: u64,
    /// Kubernetes namespaces whose pods are exempt (alert only, never inline or blocked).
    pub system_namespaces: Vec<String>,
}

/// Default `[discovery] system_namespaces`.
pub const DEFAULT_SYSTEM_NAMESPACES: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "istio-system",
    "cattle-system",
    "neuvector",
    "palisade",
];

/// Default `[discovery] interval_ms`.
pub const DEFAULT_DISCOVERY_INTERVAL_MS: u64 = 2000;
/// Allowed `[discovery] interval_ms`.
pub const DISCOVERY_INTERVAL_MS: std::ops::RangeInclusive<i64> = 100..=60_000;

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Address the REST API listens on.
    pub listen: SocketAddr,
    /// TLS certificate and key (PEM), when the API serves HTTPS.
    pub tls: Option<TlsConfig>,
    /// Serve plain HTTP on a non-loopback address anyway (tests behind another proxy only).
    pub allow_insecure_non_loopback: bool,
}

/// TLS material for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Directory for the SQLite database and secrets.
    pub data_dir: PathBuf,
    /// Event retention (`event_retention_count`, `event_retention_days`).
    pub settings: StoreSettings,
}

/// Largest `event_retention_count`.
pub const MAX_EVENT_RETENTION_COUNT: i64 = 100_000_000;
/// Largest `event_retention_days`.
pub const MAX_EVENT_RETENTION_DAYS: i64 = 3650;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    api: Option<Spanned<RawApi>>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    dataplane: Option<RawDataplane>,
    #[serde(default)]
    discovery: RawDiscovery,
    #[serde(default)]
    workload: Vec<Spanned<crate::model::Workload>>,
    #[serde(default)]
    notify: Vec<Spanned<RawNotify>>,
    #[serde(default)]
    plumb: RawPlumb,
    #[serde(default)]
    process: RawProcess,
    #[serde(default)]
    file: RawFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    queue: Option<Spanned<i64>>,
    #[serde(default)]
    deadline_ms: Option<Spanned<i64>>,
    #[serde(default)]
    on_overflow: Option<Spanned<String>>,
    #[serde(default)]
    on_stall: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    exec_gate: Option<bool>,
    #[serde(default)]
    queue: Option<Spanned<i64>>,
    #[serde(default)]
    deadline_ms: Option<Spanned<i64>>,
    #[serde(default)]
    on_overflow: Option<Spanned<String>>,
    #[serde(default)]
    on_stall: Option<Spanned<String>>,
    #[serde(default)]
    zero_drift: Option<bool>,
    #[serde(default)]
    events_buffer: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlumb {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    fail: Option<Spanned<String>>,
    #[serde(default)]
    tap_iface: Option<Spanned<String>>,
    #[serde(default)]
    bridges: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    kind: Spanned<String>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    address: Option<Spanned<String>>,
    #[serde(default)]
    min_severity: Option<Spanned<String>>,
    #[serde(default)]
    kinds: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    #[serde(default)]
    default_mode: Option<Spanned<String>>,
    #[serde(default)]
    runtime_socket: Option<Spanned<String>>,
    #[serde(default)]
    interval_ms: Option<Spanned<i64>>,
    #[serde(default)]
    system_namespaces: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    listen: Option<Spanned<String>>,
    #[serde(default)]
    tls_cert: Option<Spanned<PathBuf>>,
    #[serde(default)]
    tls_key: Option<Spanned<PathBuf>>,
    #[serde(default)]
    allow_insecure_non_loopback: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default)]
    data_dir: Option<PathBuf>,
    #[serde(default)]
    event_retention_count: Option<Spanned<i64>>,
    #[serde(default)]
    event_retention_days: Option<Spanned<i64>>,
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validates `text` (read from `path`, used in messages).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let src = Source { path, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    let api = validate_api(&src, raw.api)?;
    let store = validate_store(&src, raw.store)?;
    let dataplane = raw.dataplane.unwrap_or_default().validate(&src)?;
    let default_mode = match raw.discovery.default_mode {
        None => dataplane::policy::Mode::Discover,
        Some(m) => match m.get_ref().as_str() {
            "discover" => dataplane::policy::Mode::Discover,
            "monitor" => dataplane::policy::Mode::Monitor,
            "protect" => dataplane::policy::Mode::Protect,
            other => {
                return Err(src.error(
                    m.span(),
                    format!("`default_mode` must be discover, monitor or protect, not `{other}`"),
                ));
            }
        },
    };
    let runtime_socket = match raw.discovery.runtime_socket {
        None => None,
        Some(p) if p.get_ref().starts_with('/') => Some(PathBuf::from(p.into_inner())),
        Some(p) => {
            return Err(src.error(
                p.span(),
                format!(
                    "`runtime_socket` must be an absolute path, not `{}`",
                    p.get_ref()
                ),
            ));
        }
    };
    let interval_ms = match raw.discovery.interval_ms {
        None => DEFAULT_DISCOVERY_INTERVAL_MS,
        Some(i) if DISCOVERY_INTERVAL_MS.contains(i.get_ref()) => {
            u64::try_from(*i.get_ref()).unwrap_or(DEFAULT_DISCOVERY_INTERVAL_MS)
        }
        Some(i) => {
            return Err(src.error(
                i.span(),
                format!(
                    "`interval_ms` must be within {}..={}, not {}",
                    DISCOVERY_INTERVAL_MS.start(),
                    DISCOVERY_INTERVAL_MS.end(),
                    i.get_ref()
                ),
            ));
        }
    };
    let system_namespaces = match raw.discovery.system_namespaces {
        None => DEFAULT_SYSTEM_NAMESPACES
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        Some(list) => list.into_iter().map(Spanned::into_inner).collect(),
    };
    let plumb = validate_plumb(&src, raw.plumb)?;
    let mut workloads = Vec::with_capacity(raw.workload.len());
    for w in raw.workload {
        let span = w.span();
        let mut w = w.into_inner();
        if w.group.is_empty() {
            w.group = crate::model::auto_group(&w.image, &w.labels);
        }
        w.source = crate::model::WorkloadSource::Config;
        w.validate()
            .map_err(|e| src.error(span.clone(), format!("workload: {e}")))?;
        if workloads
            .iter()
            .any(|x: &crate::model::Workload| x.id == w.id)
        {
            return Err(src.error(span, format!("workload `{}` is declared twice", w.id)));
        }
        workloads.push(w);
    }
    let notify = raw
        .notify
        .into_iter()
        .map(|n| validate_notify(&src, n))
        .collect::<Result<_, _>>()?;
    Ok(Config {
        api,
        store,
        dataplane,
        discovery: DiscoveryConfig {
            default_mode,
            runtime_socket,
            interval_ms,
            system_namespaces,
        },
        workloads,
        notify,
        plumb,
        process: validate_process(&src, raw.process)?,
        file: validate_file(&src, raw.file)?,
    })
}

/// An integer setting within `range`, or `default` when absent.
fn int_in(
    src: &Source<'_>,
    v: Option<Spanned<i64>>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    default: u64,
) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) if range.contains(v.get_ref()) => {
            Ok(u64::try_from(*v.get_ref()).unwrap_or(default))
        }
        Some(v) => Err(src.error(
            v.span(),
            format!(
                "`{name}` must be within {}..={}, not {}",
                range.start(),
                range.end(),
                v.get_ref()
            ),
        )),
    }
}

/// An `allow`/`deny` setting (true allows), allow when absent.
fn allows(src: &Source<'_>, v: Option<Spanned<String>>, name: &str) -> Result<bool, ConfigError> {
    match v {
        None => Ok(true),
        Some(v) => match v.get_ref().as_str() {
            "allow" => Ok(true),
            "deny" => Ok(false),
            other => Err(src.error(
                v.span(),
                format!("`{name}` must be allow or deny, not `{other}`"),
            )),
        },
    }
}

/// A responder queue length.
fn queue_len(
    src: &Source<'_>,
    v: Option<Spanned<i64>>,
    default: usize,
) -> Result<usize, ConfigError> {
    Ok(usize::try_from(int_in(src, v, "queue", 1..=1_000_000, default as u64)?).unwrap_or(default))
}

fn validate_file(src: &Source<'_>, raw: RawFile) -> Result<FileConfig, ConfigError> {
    let d = FileConfig::default();
    Ok(FileConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        queue: queue_len(src, raw.queue, d.queue)?,
        deadline_ms: int_in(
            src,
            raw.deadline_ms,
            "deadline_ms",
            10..=10_000,
            d.deadline_ms,
        )?,
        overflow_allows: allows(src, raw.on_overflow, "on_overflow")?,
        stall_allows: allows(src, raw.on_stall, "on_stall")?,
    })
}

fn validate_process(src: &Source<'_>, raw: RawProcess) -> Result<ProcessConfig, ConfigError> {
    let d = ProcessConfig::default();
    Ok(ProcessConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        exec_gate: raw.exec_gate.unwrap_or(d.exec_gate),
        queue: queue_len(src, raw.queue, d.queue)?,
        deadline_ms: int_in(
            src,
            raw.deadline_ms,
            "deadline_ms",
            10..=10_000,
            d.deadline_ms,
        )?,
        overflow_allows: allows(src, raw.on_overflow, "on_overflow")?,
        stall_allows: allows(src, raw.on_stall, "on_stall")?,
        zero_drift: raw.zero_drift.unwrap_or(d.zero_drift),
        events_buffer: usize::try_from(int_in(
            src,
            raw.events_buffer,
            "events_buffer",
            0..=(256 << 20),
            d.events_buffer as u64,
        )?)
        .unwrap_or(d.events_buffer),
    })
}

/// A Linux interface name: 1..=15 bytes, none of `/`, whitespace, `:` or NUL.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
}

fn validate_plumb(src: &Source<'_>, raw: RawPlumb) -> Result<PlumbConfig, ConfigError> {
    let mut out = PlumbConfig::default();
    if let Some(e) = raw.enabled {
        out.enabled = e;
    }
    if let Some(f) = raw.fail {
        out.fail = match f.get_ref().as_str() {
            "open" => FailMode::Open,
            "closed" => FailMode::Closed,
            other => {
                return Err(src.error(
                    f.span(),
                    format!("`fail` must be open or closed, not `{other}`"),
                ));
            }
        };
    }
    if let Some(t) = raw.tap_iface {
        if !valid_ifname(t.get_ref()) || t.get_ref().len() > 11 {
            return Err(src.error(
                t.span(),
                format!(
                    "`tap_iface` must be an interface name of 1 to 11 characters (without '/', ':' or spaces), not `{}`",
                    t.get_ref()
                ),
            ));
        }
        out.tap_iface = t.into_inner();
    }
    if let Some(list) = raw.bridges {
        for b in list {
            if !valid_ifname(b.get_ref()) {
                return Err(src.error(
                    b.span(),
                    format!("`bridges`: `{}` is not an interface name", b.get_ref()),
                ));
            }
            out.bridges.push(b.into_inner());
        }
    }
    Ok(out)
}

fn validate_notify(src: &Source<'_>, raw: Spanned<RawNotify>) -> Result<NotifyTarget, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let destination = match raw.kind.get_ref().as_str() {
        "webhook" => {
            if let Some(a) = &raw.address {
                return Err(src.error(a.span(), "`address` is for syslog; a webhook takes `url`"));
            }
            let url = raw
                .url
                .ok_or_else(|| src.error(span.clone(), "a webhook needs a `url`"))?;
            let ok = url
                .get_ref()
                .parse::<ureq::http::Uri>()
                .ok()
                .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
                .is_some_and(|u| u.host().is_some_and(|h| !h.is_empty()));
            if !ok {
                return Err(src.error(
                    url.span(),
                    format!(
                        "`url` must be an http:// or https:// URL with a host, not `{}`",
                        url.get_ref()
                    ),
                ));
            }
            Destination::Webhook {
                url: url.into_inner(),
            }
        }
        "syslog" => {
            if let Some(u) = &raw.url {
                return Err(src.error(u.span(), "`url` is for webhooks; syslog takes `address`"));
            }
            let a = raw
                .address
                .ok_or_else(|| src.error(span.clone(), "syslog needs an `address`"))?;
            let address = a.get_ref().parse::<SocketAddr>().map_err(|_| {
                src.error(
                    a.span(),
                    format!(
                        "`address` must be an IP address and UDP port such as 127.0.0.1:514, not `{}`",
                        a.get_ref()
                    ),
                )
            })?;
            Destination::Syslog { address }
        }
        other => {
            return Err(src.error(
                raw.kind.span(),
                format!("notify `kind` must be webhook or syslog, not `{other}`"),
            ));
        }
    };
    let min_severity = match &raw.min_severity {
        None => Severity::Warning,
        Some(m) => match m.get_ref().as_str() {
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            other => {
                return Err(src.error(
                    m.span(),
                    format!("`min_severity` must be info, warning or critical, not `{other}`"),
                ));
            }
        },
    };
    let mut kinds = Vec::new();
    for k in raw.kinds.unwrap_or_default() {
        let kind = k.get_ref().parse::<EventKind>().map_err(|_| {
            src.error(
                k.span(),
                format!(
                    "unknown event kind `{}` (one of {})",
                    k.get_ref(),
                    EventKind::ALL.map(EventKind::name).join(", ")
                ),
            )
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(NotifyTarget {
        destination,
        min_severity,
        kinds,
    })
}

fn validate_store(src: &Source<'_>, raw: RawStore) -> Result<StoreConfig, ConfigError> {
    let defaults = StoreSettings::default();
    let in_range = |v: &Option<Spanned<i64>>, name: &str, max: i64| match v {
        None => Ok(None),
        Some(v) if (1..=max).contains(v.get_ref()) => Ok(Some(*v.get_ref())),
        Some(v) => Err(src.error(
            v.span(),
            format!("`{name}` must be within 1..={max}, not {}", v.get_ref()),
        )),
    };
    let count = in_range(
        &raw.event_retention_count,
        "event_retention_count",
        MAX_EVENT_RETENTION_COUNT,
    )?;
    let days = in_range(
        &raw.event_retention_days,
        "event_retention_days",
        MAX_EVENT_RETENTION_DAYS,
    )?;
    Ok(StoreConfig {
        data_dir: raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        settings: StoreSettings {
            event_max_count: count
                .and_then(|c| u64::try_from(c).ok())
                .unwrap_or(defaults.event_max_count),
            event_max_age_days: days
                .and_then(|d| u32::try_from(d).ok())
                .unwrap_or(defaults.event_max_age_days),
        },
    })
}

fn validate_api(src: &Source<'_>, raw: Option<Spanned<RawApi>>) -> Result<ApiConfig, ConfigError> {
    let (span, raw) = match raw {
        Some(r) => {
            let span = r.span();
            (span, r.into_inner())
        }
        None => (0..0, RawApi::default()),
    };
    let listen = match &raw.listen {
        None => DEFAULT_LISTEN
            .parse()
            .map_err(|_| src.error(0..0, "bad default listen address"))?,
        Some(l) => l.get_ref().parse::<SocketAddr>().map_err(|_| {
            src.error(
                l.span(),
                format!(
                    "`listen` must be an IP address and port such as 127.0.0.1:10443, not `{}`",
                    l.get_ref()
                ),
            )
        })?,
    };
    let tls = match (raw.tls_cert, raw.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(TlsConfig {
            cert: cert.into_inner(),
            key: key.into_inner(),
        }),
        (Some(c), None) => return Err(src.error(c.span(), "`tls_cert` needs `tls_key` as well")),
        (None, Some(k)) => return Err(src.error(k.span(), "`tls_key` needs `tls_cert` as well")),
    };
    if !listen.ip().is_loopback() && tls.is_none() && !raw.allow_insecure_non_loopback {
        let at = raw.listen.as_ref().map_or(span, Spanned::span);
        return Err(src.error(
            at,
            format!(
                "the API would listen on {listen} without TLS: set `tls_cert` and `tls_key`, or listen on a loopback address"
            ),
        ));
    }
    Ok(ApiConfig {
        listen,
        tls,
        allow_insecure_non_loopback: raw.allow_insecure_non_loopback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Config {
        parse(text, Path::new("c.toml")).unwrap()
    }

    fn bad(text: &str) -> (usize, String) {
        let e = parse(text, Path::new("c.toml")).unwrap_err();
        (e.line().unwrap_or(0), e.message())
    }

    #[test]
    fn empty_file_gets_defaults() {
        let c = parse("", Path::new("c.toml")).unwrap();
        assert_eq!(c.api.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.api.tls, None);
        assert_eq!(c.store.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.store.settings, StoreSettings::default());
        assert!(c.dataplane.ports.is_empty());
        assert_eq!(c.dataplane.lcores, vec![0, 1]);
    }

    #[test]
    fn unknown_section_is_rejected_with_its_line() {
        let (line, msg) = bad("[api]\n\n[scanner]\nx = 1\n");
        assert_eq!(line, 3);
        assert!(
            msg.starts_with("unknown field `scanner`, expected one of"),
            "{msg}"
        );
    }

    #[test]
    fn non_loopback_needs_tls() {
        assert_eq!(
            bad("[api]\nlisten = \"0.0.0.0:10443\"\n"),
            (2, "the API would listen on 0.0.0.0:10443 without TLS: set `tls_cert` and `tls_key`, or listen on a loopback address".into())
        );
        let ok = parse(
            "[api]\nlisten = \"0.0.0.0:10443\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(ok.api.tls.unwrap().key, PathBuf::from("/k.pem"));
        let ok = parse("[api]\nlisten = \"[::1]:1\"\n", Path::new("c.toml")).unwrap();
        assert!(ok.api.listen.ip().is_loopback());
        assert!(
            parse(
                "[api]\nlisten = \"10.0.0.1:80\"\nallow_insecure_non_loopback = true\n",
                Path::new("c.toml")
            )
            .is_ok()
        );
    }

    #[test]
    fn bad_api_values() {
        assert_eq!(
            bad("[api]\nlisten = \"localhost\"\n"),
            (
                2,
                "`listen` must be an IP address and port such as 127.0.0.1:10443, not `localhost`"
                    .into()
            )
        );
        assert_eq!(
            bad("[api]\ntls_cert = \"/c\"\n"),
            (2, "`tls_cert` needs `tls_key` as well".into())
        );
        assert_eq!(
            bad("[api]\ntls_key = \"/k\"\n"),
            (2, "`tls_key` needs `tls_cert` as well".into())
        );
    }

    #[test]
    fn store_retention() {
        let c = parse(
            "[store]\nevent_retention_count = 500\nevent_retention_days = 7\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            c.store.settings,
            StoreSettings {
                event_max_count: 500,
                event_max_age_days: 7
            }
        );
        assert_eq!(
            bad("[store]\n\nevent_retention_count = 0\n"),
            (
                3,
                "`event_retention_count` must be within 1..=100000000, not 0".into()
            )
        );
        assert_eq!(
            bad("[store]\nevent_retention_days = -1\n"),
            (
                2,
                "`event_retention_days` must be within 1..=3650, not -1".into()
            )
        );
        let (line, msg) = bad("[store]\nevent_retention_days = \"30\"\n");
        assert_eq!(line, 2, "{msg}");
    }

    #[test]
    fn notify_targets() {
        let c = parse(
            "[[notify]]\nkind = \"webhook\"\nurl = \"https://hooks.example/x?k=1\"\n\n[[notify]]\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\nmin_severity = \"critical\"\nkinds = [\"threat\", \"network_violation\", \"threat\"]\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            c.notify,
            vec![
                NotifyTarget {
                    destination: Destination::Webhook {
                        url: "https://hooks.example/x?k=1".into()
                    },
                    min_severity: Severity::Warning,
                    kinds: vec![],
                },
                NotifyTarget {
                    destination: Destination::Syslog {
                        address: "127.0.0.1:514".parse().unwrap()
                    },
                    min_severity: Severity::Critical,
                    kinds: vec![EventKind::Threat, EventKind::NetworkViolation],
                },
            ]
        );
    }

    #[test]
    fn bad_notify_targets() {
        assert_eq!(
            bad("[api]\n[[notify]]\nkind = \"email\"\n"),
            (
                3,
                "notify `kind` must be webhook or syslog, not `email`".into()
            )
        );
        assert_eq!(
            bad("[[notify]]\nkind = \"webhook\"\nurl = \"ftp://x/\"\n"),
            (
                3,
                "`url` must be an http:// or https:// URL with a host, not `ftp://x/`".into()
            )
        );
        assert_eq!(
            bad("[[notify]]\nkind = \"webhook\"\n").1,
            "a webhook needs a `url`"
        );
        assert_eq!(
            bad(
                "[[notify]]\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\nurl = \"http://a/\"\n"
            ),
            (4, "`url` is for webhooks; syslog takes `address`".into())
        );
        assert_eq!(
            bad("[[notify]]\nkind = \"syslog\"\naddress = \"loghost\"\n"),
            (
                3,
                "`address` must be an IP address and UDP port such as 127.0.0.1:514, not `loghost`"
                    .into()
            )
        );
        assert_eq!(
            bad(
                "[[notify]]\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\nmin_severity = \"high\"\n"
            ),
            (
                4,
                "`min_severity` must be info, warning or critical, not `high`".into()
            )
        );
        assert_eq!(
            bad("[[notify]]\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\nkinds = [\"audit\",\n  \"bogus\"]\n"),
            (5, "unknown event kind `bogus` (one of network_violation, threat, process_violation, file_violation, audit, system)".into())
        );
        let (line, msg) = bad("[[notify]]\nkind = \"syslog\"\nport = 514\n");
        assert_eq!(line, 3, "{msg}");
    }

    #[test]
    fn process_section() {
        assert_eq!(ok("").process, ProcessConfig::default());
        let c = ok(
            "[process]\nexec_gate = false\nqueue = 16\ndeadline_ms = 50\non_overflow = \"deny\"\non_stall = \"deny\"\nzero_drift = true\n",
        );
        assert_eq!(
            c.process,
            ProcessConfig {
                enabled: true,
                exec_gate: false,
                queue: 16,
                deadline_ms: 50,
                overflow_allows: false,
                stall_allows: false,
                zero_drift: true,
                events_buffer: 4 << 20,
            }
        );
        assert_eq!(
            bad("[process]\nqueue = 0\n"),
            (2, "`queue` must be within 1..=1000000, not 0".into())
        );
        assert_eq!(
            bad("[process]\n\non_stall = \"maybe\"\n"),
            (3, "`on_stall` must be allow or deny, not `maybe`".into())
        );
        assert_eq!(bad("[process]\ndeadline_ms = 5\n").0, 2);
    }

    #[test]
    fn file_section() {
        assert_eq!(ok("").file, FileConfig::default());
        let c =
            ok("[file]\nenabled = false\nqueue = 8\ndeadline_ms = 40\non_overflow = \"deny\"\n");
        assert_eq!(
            c.file,
            FileConfig {
                enabled: false,
                queue: 8,
                deadline_ms: 40,
                overflow_allows: false,
                stall_allows: true,
            }
        );
        assert_eq!(
            bad("[file]\n\nqueue = -1\n"),
            (3, "`queue` must be within 1..=1000000, not -1".into())
        );
        assert_eq!(
            bad("[file]\non_stall = \"later\"\n"),
            (2, "`on_stall` must be allow or deny, not `later`".into())
        );
        assert_eq!(bad("[file]\nwatch = true\n").0, 2);
    }

    #[test]
    fn plumb_section() {
        let c = ok("");
        assert_eq!(c.plumb, PlumbConfig::default());
        assert!(c.plumb.enabled);
        assert_eq!(
            c.discovery.system_namespaces.len(),
            DEFAULT_SYSTEM_NAMESPACES.len()
        );
        let c = ok(
            "[plumb]\nenabled = false\nfail = \"closed\"\ntap_iface = \"t1\"\nbridges = [\"podman9\"]\n[discovery]\nsystem_namespaces = [\"ops\"]\n",
        );
        assert!(!c.plumb.enabled);
        assert_eq!(c.plumb.fail, FailMode::Closed);
        assert_eq!(c.plumb.tap_iface, "t1");
        assert_eq!(c.plumb.bridges, vec!["podman9".to_owned()]);
        assert_eq!(c.discovery.system_namespaces, vec!["ops".to_owned()]);
        assert_eq!(
            bad("[plumb]\nfail = \"ajar\"\n"),
            (2, "`fail` must be open or closed, not `ajar`".into())
        );
        assert_eq!(bad("[plumb]\ntap_iface = \"much-too-long\"\n").0, 2);
        assert_eq!(bad("[plumb]\n\nbridges = [\"a/b\"]\n").0, 3);
        assert_eq!(bad("[plumb]\nmirror = 1\n").0, 2);
    }

    #[test]
    fn discovery_section() {
        let c = parse("", Path::new("c.toml")).unwrap();
        assert_eq!(c.discovery.runtime_socket, None);
        assert_eq!(c.discovery.interval_ms, DEFAULT_DISCOVERY_INTERVAL_MS);
        let c = parse(
            "[discovery]\nruntime_socket = \"/run/podman/podman.sock\"\ninterval_ms = 100\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            c.discovery.runtime_socket,
            Some(PathBuf::from("/run/podman/podman.sock"))
        );
        assert_eq!(c.discovery.interval_ms, 100);
        assert_eq!(
            bad("[discovery]\n\ninterval_ms = 99\n"),
            (3, "`interval_ms` must be within 100..=60000, not 99".into())
        );
        assert_eq!(
            bad("[discovery]\ninterval_ms = 60001\n"),
            (
                2,
                "`interval_ms` must be within 100..=60000, not 60001".into()
            )
        );
        assert_eq!(
            bad("[discovery]\nruntime_socket = \"docker.sock\"\n"),
            (
                2,
                "`runtime_socket` must be an absolute path, not `docker.sock`".into()
            )
        );
        let (line, msg) = bad("[discovery]\nruntime_socket = 1\n");
        assert_eq!(line, 2, "{msg}");
    }

    #[test]
    fn dataplane_errors_keep_their_position_in_the_whole_file() {
        let (line, msg) = bad(
            "[api]\n[store]\ndata_dir = \"/tmp/x\"\n[dataplane]\n[[dataplane.port]]\nname = \"a\"\nkind = \"nic\"\n",
        );
        assert_eq!(line, 7);
        assert!(msg.starts_with("unknown port kind `nic`"), "{msg}");
    }
}
