//! Notification targets (`[[notify]]` in the configuration): every stored event that passes
//! a target's filters (`min_severity`, `kinds`) is delivered to it.
//!
//! ```text
//! Core::publish --broadcast--> dispatcher --try_send--> [bounded queue] --> webhook worker
//!                                        \-try_send--> [bounded queue] --> syslog worker
//! ```
//!
//! The dispatcher only filters and enqueues, so a slow or dead target never holds back the
//! event path or the other targets: when a target's queue ([`QUEUE`] events) is full the event
//! is dropped for it and counted. Each target has one worker, so a target sees events in the
//! order they were stored.
//!
//! - **webhook**: `POST <url>` with the event as JSON (the `Event` schema of the API),
//!   `Content-Type: application/json`. Any status other than 2xx, a transport error or
//!   [`WEBHOOK_TIMEOUT`] is a failure; a failed event is retried [`WEBHOOK_RETRIES`] times
//!   with a doubling backoff, then counted as failed and logged. ureq is blocking, so every
//!   attempt runs on tokio's blocking pool.
//! - **syslog**: one UDP datagram per event (RFC 5426), an RFC 5424 line: see [`rfc5424`].
//!
//! Delivery counters ([`TargetStats`]) are exported by `/metrics`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use crate::api::metrics::NotifyCounts;
use crate::model::{Event, EventKind, Severity};
use crate::service::Core;

/// Events queued per target before new ones are dropped for it.
pub const QUEUE: usize = 1024;
/// A webhook call's whole time limit (connect, send, answer).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Further attempts after a failed webhook call.
pub const WEBHOOK_RETRIES: u32 = 3;
/// Delay before the first retry; doubles for each next one.
pub const WEBHOOK_BACKOFF: Duration = Duration::from_millis(500);
/// Largest syslog datagram: RFC 5426 §3.2 says receivers SHOULD take 2048 bytes; longer
/// messages are cut (at a character boundary).
pub const SYSLOG_MAX: usize = 2048;
/// Syslog facility: 4, security/authorization messages (RFC 5424 §6.2.1, table 1).
pub const SYSLOG_FACILITY: u8 = 4;
/// RFC 5612's enterprise number for documentation, naming our structured-data element until
/// Palisade has a private enterprise number of its own.
pub const SD_ID: &str = "palisade@32473";

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// HTTP(S) POST of the event as JSON.
    Webhook {
        /// `http://` or `https://` URL.
        url: String,
    },
    /// RFC 5424 over UDP.
    Syslog {
        /// The collector.
        address: SocketAddr,
    },
}

/// One validated `[[notify]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    /// Where.
    pub destination: Destination,
    /// Events at least this severe.
    pub min_severity: Severity,
    /// Events of these kinds; empty: every kind.
    pub kinds: Vec<EventKind>,
}

impl NotifyTarget {
    /// `webhook` or `syslog`.
    pub fn kind(&self) -> &'static str {
        match self.destination {
            Destination::Webhook { .. } => "webhook",
            Destination::Syslog { .. } => "syslog",
        }
    }

    /// Whether `e` passes the filters.
    pub fn admits(&self, e: &Event) -> bool {
        e.severity >= self.min_severity && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
    }
}

/// Delivery counters of one target.
#[derive(Debug, Default)]
pub struct TargetStats {
    kind: &'static str,
    /// Events delivered.
    pub sent: AtomicU64,
    /// Events given up on (webhook: after the retries; syslog: the send failed).
    pub failed: AtomicU64,
    /// Events dropped because the queue was full (or the dispatcher fell behind).
    pub dropped: AtomicU64,
}

impl TargetStats {
    /// A copy for `/metrics`.
    pub fn counts(&self) -> NotifyCounts {
        NotifyCounts {
            kind: self.kind,
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn drop_one(&self, target: usize, n: u64) {
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        // Log the first drop and then ever more rarely: a dead target must not flood the log.
        if total.is_power_of_two() {
            tracing::warn!(
                target_index = target,
                dropped = total,
                "notification queue full: events dropped"
            );
        }
    }
}

/// Tunables (the defaults are the constants above; tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Queue length per target.
    pub queue: usize,
    /// Webhook time limit.
    pub timeout: Duration,
    /// First webhook retry delay.
    pub backoff: Duration,
    /// Webhook retries.
    pub retries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            queue: QUEUE,
            timeout: WEBHOOK_TIMEOUT,
            backoff: WEBHOOK_BACKOFF,
            retries: WEBHOOK_RETRIES,
        }
    }
}

/// Starts delivering to `targets` (nothing without any) with the default [`Options`]; the
/// counters are also put into `core.notify` for `/metrics`.
pub fn start(core: &Arc<Core>, targets: Vec<NotifyTarget>) -> Vec<Arc<TargetStats>> {
    start_with(core, targets, Options::default())
}

/// [`start`] with `opts`. Events stored from the moment it returns are delivered.
pub fn start_with(
    core: &Arc<Core>,
    targets: Vec<NotifyTarget>,
    opts: Options,
) -> Vec<Arc<TargetStats>> {
    if targets.is_empty() {
        return Vec::new();
    }
    let events = core.events.subscribe();
    let mut routes = Vec::new();
    let mut stats = Vec::new();
    for (i, t) in targets.into_iter().enumerate() {
        let st = Arc::new(TargetStats {
            kind: t.kind(),
            ..TargetStats::default()
        });
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        match &t.destination {
            Destination::Webhook { url } => {
                tokio::spawn(webhook(i, url.clone(), rx, Arc::clone(&st), opts));
            }
            Destination::Syslog { address } => {
                tokio::spawn(syslog(i, *address, rx, Arc::clone(&st)));
            }
        }
        stats.push(Arc::clone(&st));
        routes.push((t, tx, st));
    }
    let _ = core.notify.set(stats.clone());
    tokio::spawn(dispatch(events, routes));
    stats
}

type Route = (NotifyTarget, mpsc::Sender<Arc<Event>>, Arc<TargetStats>);

async fn dispatch(mut events: broadcast::Receiver<Event>, routes: Vec<Route>) {
    loop {
        match events.recv().await {
            Ok(e) => {
                let e = Arc::new(e);
                for (i, (t, tx, st)) in routes.iter().enumerate() {
                    if !t.admits(&e) {
                        continue;
                    }
                    if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(Arc::clone(&e)) {
                        st.drop_one(i, 1);
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // Which of the missed events a target wanted is unknown: count them for each.
                for (i, (_, _, st)) in routes.iter().enumerate() {
                    st.drop_one(i, n);
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn webhook(
    target: usize,
    url: String,
    mut rx: mpsc::Receiver<Arc<Event>>,
    stats: Arc<TargetStats>,
    opts: Options,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(opts.timeout))
        .http_status_as_error(true)
        .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    while let Some(e) = rx.recv().await {
        let body = match serde_json::to_vec(&*e) {
            Ok(b) => Arc::new(b),
            Err(err) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target_index = target, event = e.id, error = %err, "cannot serialise an event");
                continue;
            }
        };
        let mut delay = opts.backoff;
        let mut attempt = 0;
        loop {
            let (agent, url, body) = (agent.clone(), url.clone(), Arc::clone(&body));
            let r = tokio::task::spawn_blocking(move || post(&agent, &url, &body)).await;
            let err = match r {
                Ok(Ok(())) => {
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Err(e)) => e,
                Err(e) => e.to_string(),
            };
            if attempt >= opts.retries {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                // The URL may carry a secret (many webhooks do): log the target's index only.
                tracing::warn!(target_index = target, event = e.id, attempts = attempt + 1, error = %err, "webhook delivery failed; event dropped");
                break;
            }
            tracing::debug!(target_index = target, event = e.id, error = %err, "webhook delivery failed; retrying");
            attempt += 1;
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<(), String> {
    agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn syslog(
    target: usize,
    address: SocketAddr,
    mut rx: mpsc::Receiver<Arc<Event>>,
    stats: Arc<TargetStats>,
) {
    let local: SocketAddr = if address.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match tokio::net::UdpSocket::bind(local).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(target_index = target, error = %e, "cannot open a UDP socket for syslog");
            None
        }
    };
    let host = hostname();
    let pid = std::process::id();
    while let Some(e) = rx.recv().await {
        let line = rfc5424(&e, &host, pid);
        let sent = match &socket {
            Some(s) => s.send_to(line.as_bytes(), address).await.map(drop),
            None => Err(std::io::Error::other("no socket")),
        };
        match sent {
            Ok(()) => stats.sent.fetch_add(1, Ordering::Relaxed),
            Err(err) => {
                tracing::debug!(target_index = target, event = e.id, error = %err, "syslog send failed");
                stats.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// This host's name for syslog's HOSTNAME field (`-` when unknown).
pub fn hostname() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let h: String = h
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if h.is_empty() { "-".to_owned() } else { h }
}

/// `e` as one RFC 5424 message:
///
/// ```text
/// <PRI>1 TIMESTAMP HOSTNAME palisade PROCID KIND [palisade@32473 id="7" severity="warning" group="web" ...] BOM MESSAGE
/// ```
///
/// PRI is facility [`SYSLOG_FACILITY`] × 8 + severity (critical 2, warning 4, info 6); the
/// timestamp is UTC with milliseconds; MSGID is the event kind; the message is UTF-8, so it
/// starts with a BOM (§6.4). The whole message is at most [`SYSLOG_MAX`] bytes.
///
/// Written by hand rather than with a syslog crate: it is one `format!` call, and the crates
/// around either speak RFC 3164 only or bring a `log` facade and their own sockets.
pub fn rfc5424(e: &Event, host: &str, pid: u32) -> String {
    let sev: u8 = match e.severity {
        Severity::Critical => 2,
        Severity::Warning => 4,
        Severity::Info => 6,
    };
    let pri = SYSLOG_FACILITY * 8 + sev;
    let ts = timestamp(e.at_ms);
    let mut sd = format!(
        "[{SD_ID} id=\"{}\" severity=\"{}\"",
        e.id,
        severity_name(e.severity)
    );
    for (k, v) in [
        ("group", &e.group),
        ("workload", &e.workload),
        ("actor", &e.actor),
    ] {
        if let Some(v) = v {
            sd.push_str(&format!(" {k}=\"{}\"", sd_escape(v)));
        }
    }
    sd.push(']');
    let mut line = format!(
        "<{pri}>1 {ts} {host} palisade {pid} {} {sd} \u{feff}",
        e.kind.name()
    );
    let room = SYSLOG_MAX.saturating_sub(line.len());
    let mut cut = e.message.len().min(room);
    while !e.message.is_char_boundary(cut) {
        cut -= 1;
    }
    line.push_str(&e.message[..cut]);
    line
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// PARAM-VALUE escaping (RFC 5424 §6.3.3): `"`, `\` and `]` get a backslash.
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// RFC 3339 UTC with milliseconds, or the NILVALUE.
fn timestamp(at_ms: i64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn event() -> Event {
        Event {
            id: 7,
            at_ms: 1_700_000_000_123,
            kind: EventKind::NetworkViolation,
            severity: Severity::Critical,
            group: Some("we\"b]".into()),
            workload: None,
            actor: None,
            message: "drop tcp 10.0.0.1 -> 10.0.0.2:80".into(),
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn rfc5424_line() {
        assert_eq!(
            rfc5424(&event(), "box", 42),
            "<34>1 2023-11-14T22:13:20.123Z box palisade 42 network_violation \
             [palisade@32473 id=\"7\" severity=\"critical\" group=\"we\\\"b\\]\"] \u{feff}\
             drop tcp 10.0.0.1 -> 10.0.0.2:80"
        );
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let mut e = event();
        e.message = "é".repeat(3000);
        let line = rfc5424(&e, "box", 42);
        assert!(line.len() <= SYSLOG_MAX && line.len() >= SYSLOG_MAX - 1);
        assert!(line.ends_with('é'));
    }

    #[test]
    fn filters() {
        let t = NotifyTarget {
            destination: Destination::Syslog {
                address: "127.0.0.1:514".parse().unwrap(),
            },
            min_severity: Severity::Warning,
            kinds: vec![EventKind::Threat],
        };
        let mut e = event();
        assert!(!t.admits(&e));
        e.kind = EventKind::Threat;
        assert!(t.admits(&e));
        e.severity = Severity::Info;
        assert!(!t.admits(&e));
    }
}
