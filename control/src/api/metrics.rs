//! `/metrics`: Prometheus metrics in the OpenMetrics text format (what `prometheus-client`
//! writes; Prometheus scrapes it natively).
//!
//! Like every route but `/healthz` and `POST /v1/auth`, it needs `Authorization: Bearer`:
//! give Prometheus an API key (`POST /v1/users/{name}/keys`, a reader's is enough) in the
//! scrape job's `authorization: {type: Bearer, credentials_file: ...}`.
//!
//! A registry is built per scrape from the live counters (the core's atomics, the store, the
//! dataplane's `stats` answer), so nothing is kept twice and nothing goes stale:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `palisade_api_requests_total` | counter | `class` (`2xx`, `4xx`, `5xx`; 1xx/3xx count as 2xx) |
//! | `palisade_events_total` | counter | `kind`: events stored since the process started |
//! | `palisade_store_bytes` | gauge | database size |
//! | `palisade_uptime_seconds` | gauge | |
//! | `palisade_dataplane_attached`, `palisade_dataplane_up` | gauge | 0 or 1 |
//! | `palisade_dataplane_restarts_total` | counter | |
//! | `palisade_dataplane_policy_generation` | gauge | |
//! | `palisade_port_{rx,tx}_{packets,bytes}_total`, `palisade_port_link_up` | counter, gauge | `port` |
//! | `palisade_port_drops_total` | counter | `port`, `reason` |
//! | `palisade_worker_sessions` | gauge | `lcore`: live sessions |
//! | `palisade_worker_{frames,policy_drops,threat_drops,violations,threats,reports_lost}_total` | counter | `lcore` |
//! | `palisade_notify_{sent,failed,dropped}_total` | counter | `target` (its index in the config), `kind` |
//!
//! The port and worker metrics are present only while a dataplane answers.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use dataplane::ctl::Stats;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use crate::model::EventKind;

/// The media type of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of one sample.
type Labels = Vec<(String, String)>;

/// The dataplane as `/metrics` sees it.
#[derive(Debug, Clone, Default)]
pub enum Dataplane {
    /// `palisade up --no-dataplane`, or in-process tests.
    #[default]
    Detached,
    /// Supervised but not connected (starting, restarting).
    Down,
    /// Connected; its counters when it answered the stats request in time.
    Up(Option<Box<Stats>>),
}

/// Delivery counters of one notification target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyCounts {
    /// `webhook` or `syslog`.
    pub kind: &'static str,
    /// Events delivered.
    pub sent: u64,
    /// Events given up on after the retries.
    pub failed: u64,
    /// Events dropped because the target's queue was full.
    pub dropped: u64,
}

/// Everything one scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// API responses by class: 2xx, 4xx, 5xx.
    pub requests: [u64; 3],
    /// Events stored since start, by kind.
    pub events: Vec<(EventKind, u64)>,
    /// Database size, when it could be read.
    pub store_bytes: Option<u64>,
    /// Seconds since start.
    pub uptime_s: u64,
    /// The dataplane.
    pub dataplane: Dataplane,
    /// Dataplane restarts since start.
    pub dp_restarts: u64,
    /// Notification targets, in configuration order.
    pub notify: Vec<NotifyCounts>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Registers families on one registry.
struct Builder {
    reg: Registry,
}

impl Builder {
    fn counters(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        let f = Family::<Labels, Counter>::default();
        self.reg.register(name, help, f.clone());
        f
    }

    fn gauges(&mut self, name: &str, help: &str) -> Family<Labels, Gauge> {
        let f = Family::<Labels, Gauge>::default();
        self.reg.register(name, help, f.clone());
        f
    }

    fn gauge(&mut self, name: &str, help: &str, v: u64) {
        let g = Gauge::<i64>::default();
        g.set(gauge_value(v));
        self.reg.register(name, help, g);
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        self.reg.register(name, help, c);
    }
}

/// The OpenMetrics text of `inputs`.
pub fn render(inputs: &Inputs) -> Result<String, std::fmt::Error> {
    let mut b = Builder {
        reg: Registry::with_prefix("palisade"),
    };
    let req = b.counters("api_requests", "API responses by status class");
    for (class, n) in ["2xx", "4xx", "5xx"].iter().zip(inputs.requests) {
        req.get_or_create(&labels(&[("class", class)])).inc_by(n);
    }
    let ev = b.counters("events", "Events stored since the process started, by kind");
    for (kind, n) in &inputs.events {
        ev.get_or_create(&labels(&[("kind", kind.name())]))
            .inc_by(*n);
    }
    if let Some(bytes) = inputs.store_bytes {
        b.gauge("store_bytes", "Size of the SQLite database, bytes", bytes);
    }
    b.gauge(
        "uptime_seconds",
        "Seconds since the control process started",
        inputs.uptime_s,
    );
    let (attached, up) = match &inputs.dataplane {
        Dataplane::Detached => (0, 0),
        Dataplane::Down => (1, 0),
        Dataplane::Up(_) => (1, 1),
    };
    b.gauge(
        "dataplane_attached",
        "1 when this process supervises a dataplane",
        attached,
    );
    b.gauge(
        "dataplane_up",
        "1 when the dataplane is connected and runs the policy",
        up,
    );
    b.counter(
        "dataplane_restarts",
        "Dataplane restarts since the control process started",
        inputs.dp_restarts,
    );
    if let Dataplane::Up(Some(stats)) = &inputs.dataplane {
        dataplane_metrics(&mut b, stats);
    }
    if !inputs.notify.is_empty() {
        let sent = b.counters("notify_sent", "Events delivered to a notification target");
        let failed = b.counters(
            "notify_failed",
            "Events a notification target never accepted (after retries)",
        );
        let dropped = b.counters(
            "notify_dropped",
            "Events dropped because a notification target's queue was full",
        );
        for (i, t) in inputs.notify.iter().enumerate() {
            let l = labels(&[("target", &i.to_string()), ("kind", t.kind)]);
            sent.get_or_create(&l).inc_by(t.sent);
            failed.get_or_create(&l).inc_by(t.failed);
            dropped.get_or_create(&l).inc_by(t.dropped);
        }
    }
    let mut out = String::new();
    encode(&mut out, &b.reg)?;
    Ok(out)
}

fn dataplane_metrics(b: &mut Builder, s: &Stats) {
    b.gauge(
        "dataplane_policy_generation",
        "Generation of the policy the dataplane runs",
        s.generation,
    );
    let rx_p = b.counters("port_rx_packets", "Packets received by a port");
    let rx_b = b.counters("port_rx_bytes", "Bytes received by a port");
    let tx_p = b.counters("port_tx_packets", "Packets sent by a port");
    let tx_b = b.counters("port_tx_bytes", "Bytes sent by a port");
    let drops = b.counters("port_drops", "Packets a port dropped, by reason");
    let link = b.gauges("port_link_up", "1 when a port's link is up");
    for p in &s.ports {
        let l = labels(&[("port", &p.name)]);
        rx_p.get_or_create(&l).inc_by(p.counters.rx_packets);
        rx_b.get_or_create(&l).inc_by(p.counters.rx_bytes);
        tx_p.get_or_create(&l).inc_by(p.counters.tx_packets);
        tx_b.get_or_create(&l).inc_by(p.counters.tx_bytes);
        link.get_or_create(&l).set(i64::from(p.link.up));
        for (reason, n) in &p.counters.drops {
            drops
                .get_or_create(&labels(&[("port", &p.name), ("reason", reason)]))
                .inc_by(*n);
        }
    }
    let sessions = b.gauges("worker_sessions", "Live sessions in a worker's table");
    let frames = b.counters("worker_frames", "Frames a worker's pipeline processed");
    let policy_drops = b.counters("worker_policy_drops", "Packets dropped by policy");
    let threat_drops = b.counters("worker_threat_drops", "Packets dropped for a threat");
    let violations = b.counters("worker_violations", "Policy violations raised");
    let threats = b.counters("worker_threats", "Threats detected");
    let lost = b.counters(
        "worker_reports_lost",
        "Reports lost because a worker's report ring was full",
    );
    for w in &s.workers {
        let l = labels(&[("lcore", &w.lcore.to_string())]);
        sessions
            .get_or_create(&l)
            .set(gauge_value(w.sessions.active));
        frames.get_or_create(&l).inc_by(w.pipeline.frames);
        policy_drops
            .get_or_create(&l)
            .inc_by(w.pipeline.policy_drops);
        threat_drops
            .get_or_create(&l)
            .inc_by(w.pipeline.threat_drops);
        violations.get_or_create(&l).inc_by(w.pipeline.violations);
        threats.get_or_create(&l).inc_by(w.pipeline.threats);
        lost.get_or_create(&l).inc_by(w.reports_lost);
    }
}

/// What the core knows now (asks the store and the dataplane).
pub async fn gather(state: &AppState) -> Inputs {
    let core = &state.core;
    let store_bytes = match core.db(|s| s.size_bytes()).await {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(error = %e.message, "metrics: cannot read the store size");
            None
        }
    };
    let dataplane = match core.dp.get() {
        None => Dataplane::Detached,
        Some(h) if !h.is_up() => Dataplane::Down,
        Some(h) => match h.stats().await {
            Ok(s) => Dataplane::Up(Some(Box::new(s))),
            Err(e) => {
                tracing::debug!(error = %e, "metrics: no dataplane counters");
                Dataplane::Up(None)
            }
        },
    };
    Inputs {
        requests: core.requests.each_ref().map(|c| c.load(Ordering::Relaxed)),
        events: EventKind::ALL
            .iter()
            .zip(&core.events_by_kind)
            .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
            .collect(),
        store_bytes,
        uptime_s: core.started.elapsed().as_secs(),
        dataplane,
        dp_restarts: core.dp_restarts.load(Ordering::Relaxed),
        notify: core
            .notify
            .get()
            .map(|t| t.iter().map(|s| s.counts()).collect())
            .unwrap_or_default(),
    }
}

/// Prometheus metrics (OpenMetrics text). Needs a token or API key like every other route.
#[utoipa::path(get, path = "/metrics", tag = "system", security(("bearer" = [])),
    responses(
        (status = 200, description = "OpenMetrics text exposition", content_type = "application/openmetrics-text", body = String),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, _c: Caller) -> Result<Response, ApiError> {
    let text = render(&gather(&state).await)
        .map_err(|e| ApiError::internal(format!("encode metrics: {e}")))?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use dataplane::ctl::stats::{PortStats, WorkerStats};

    #[test]
    fn dataplane_counters_are_exported_per_port_and_worker() {
        let mut port = PortStats {
            name: "a".into(),
            ..PortStats::default()
        };
        port.counters.rx_packets = 10;
        port.counters.tx_bytes = 640;
        port.counters.drops.insert("not_whitelisted".into(), 3);
        port.link.up = true;
        let mut w = WorkerStats {
            lcore: 1,
            ..WorkerStats::default()
        };
        w.sessions.active = 7;
        w.pipeline.policy_drops = 3;
        w.pipeline.violations = 2;
        let stats = Stats {
            generation: 42,
            pairs: Vec::new(),
            ports: vec![port],
            workers: vec![w],
            policy_compile_us: None,
            policy_swap_us: None,
        };
        let text = render(&Inputs {
            requests: [5, 2, 0],
            events: vec![(EventKind::Audit, 4)],
            store_bytes: Some(4096),
            dataplane: Dataplane::Up(Some(Box::new(stats))),
            dp_restarts: 1,
            ..Inputs::default()
        })
        .unwrap();
        for line in [
            "palisade_api_requests_total{class=\"2xx\"} 5",
            "palisade_api_requests_total{class=\"4xx\"} 2",
            "palisade_api_requests_total{class=\"5xx\"} 0",
            "palisade_events_total{kind=\"audit\"} 4",
            "palisade_store_bytes 4096",
            "palisade_dataplane_attached 1",
            "palisade_dataplane_up 1",
            "palisade_dataplane_restarts_total 1",
            "palisade_dataplane_policy_generation 42",
            "palisade_port_rx_packets_total{port=\"a\"} 10",
            "palisade_port_tx_bytes_total{port=\"a\"} 640",
            "palisade_port_drops_total{port=\"a\",reason=\"not_whitelisted\"} 3",
            "palisade_port_link_up{port=\"a\"} 1",
            "palisade_worker_sessions{lcore=\"1\"} 7",
            "palisade_worker_policy_drops_total{lcore=\"1\"} 3",
            "palisade_worker_violations_total{lcore=\"1\"} 2",
            "palisade_worker_threats_total{lcore=\"1\"} 0",
            "# TYPE palisade_worker_threats counter",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
    }

    #[test]
    fn a_dataplane_that_is_down_has_no_port_metrics() {
        let text = render(&Inputs {
            dataplane: Dataplane::Down,
            ..Inputs::default()
        })
        .unwrap();
        assert!(text.contains("\npalisade_dataplane_attached 1\n"), "{text}");
        assert!(text.contains("\npalisade_dataplane_up 0\n"), "{text}");
        assert!(!text.contains("palisade_port_"), "{text}");
        assert!(!text.contains("palisade_store_bytes"), "{text}");
    }
}
