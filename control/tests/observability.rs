//! `/metrics` in process (`oneshot`) and the notification targets against a real HTTP
//! receiver (a std `TcpListener`) and a real UDP socket: exact payloads, filters, retries,
//! drops and counters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use control::api::{AppState, app};
use control::model::{Event, EventKind, Mode, NewEvent, Role, Severity};
use control::notify::{self, Destination, NotifyTarget, Options};
use control::service::Core;
use control::store::{Store, StoreSettings};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn core() -> (Arc<Core>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreSettings::default()).unwrap();
    store
        .create_user("admin", "admin-password-1", Role::Admin, false, "test")
        .unwrap();
    (
        Core::new(store, Mode::Discover, Duration::from_secs(3600)),
        dir,
    )
}

fn new_event(kind: EventKind, severity: Severity, message: &str) -> NewEvent {
    NewEvent {
        at_ms: 1_700_000_000_000,
        kind,
        severity,
        group: Some("web".into()),
        workload: None,
        actor: None,
        message: message.into(),
        details: json!({"port": 80}),
    }
}

async fn call(
    app: &axum::Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        headers,
    )
}

/// `name{labels} value` lines of an exposition, as (series, value).
fn samples(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn value<'a>(s: &'a [(String, String)], series: &str) -> Option<&'a str> {
    s.iter().find(|(k, _)| k == series).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn metrics_need_a_token_and_count_requests_events_and_the_store() {
    let (core, _dir) = core();
    let app = app(AppState {
        core: Arc::clone(&core),
    });
    let (s, _, _) = call(&app, Method::GET, "/metrics", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, body, _) = call(
        &app,
        Method::POST,
        "/v1/auth",
        None,
        Some(json!({"username": "admin", "password": "admin-password-1"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let (s, _, _) = call(&app, Method::GET, "/v1/nowhere", Some(&token), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for _ in 0..2 {
        core.record(new_event(
            EventKind::NetworkViolation,
            Severity::Warning,
            "x",
        ))
        .await
        .unwrap();
    }
    core.record(new_event(EventKind::Threat, Severity::Critical, "y"))
        .await
        .unwrap();

    let (s, text, h) = call(&app, Method::GET, "/metrics", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(
        h[header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let m = samples(&text);
    // Before this scrape: the login (2xx), the unauthenticated scrape and the 404 (4xx).
    assert_eq!(
        value(&m, "palisade_api_requests_total{class=\"2xx\"}"),
        Some("1")
    );
    assert_eq!(
        value(&m, "palisade_api_requests_total{class=\"4xx\"}"),
        Some("2")
    );
    assert_eq!(
        value(&m, "palisade_api_requests_total{class=\"5xx\"}"),
        Some("0")
    );
    assert_eq!(
        value(&m, "palisade_events_total{kind=\"network_violation\"}"),
        Some("2")
    );
    assert_eq!(
        value(&m, "palisade_events_total{kind=\"threat\"}"),
        Some("1")
    );
    assert_eq!(
        value(&m, "palisade_events_total{kind=\"file_violation\"}"),
        Some("0")
    );
    let bytes = core.store.size_bytes().unwrap();
    assert!(bytes >= 4096, "{bytes}");
    assert_eq!(
        value(&m, "palisade_store_bytes"),
        Some(bytes.to_string().as_str())
    );
    assert_eq!(value(&m, "palisade_dataplane_attached"), Some("0"));
    assert_eq!(value(&m, "palisade_dataplane_up"), Some("0"));
    assert_eq!(value(&m, "palisade_dataplane_restarts_total"), Some("0"));
    assert!(!text.contains("palisade_port_"), "{text}");
    assert!(!text.contains("palisade_notify_"), "{text}");

    // The scrape itself is counted next time.
    let (_, text, _) = call(&app, Method::GET, "/metrics", Some(&token), None).await;
    let m = samples(&text);
    assert_eq!(
        value(&m, "palisade_api_requests_total{class=\"2xx\"}"),
        Some("2")
    );
}

/// A webhook receiver: answers each request with the next status of `script` (then 200),
/// and reports (request line, content type, body). `hang` requests get no answer at all.
fn receiver(script: Vec<u16>, hang: bool) -> (String, mpsc::Receiver<(String, String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            r.read_line(&mut request_line).unwrap();
            let (mut len, mut ctype) = (0usize, String::new());
            loop {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                let l = l.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap(),
                    "content-type" => ctype = v.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            if tx
                .send((request_line.trim_end().to_owned(), ctype, body))
                .is_err()
            {
                return;
            }
            if hang {
                held.push(conn);
                continue;
            }
            let status = script.next().unwrap_or(200);
            let mut conn = conn;
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, rx)
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fast() -> Options {
    Options {
        queue: 16,
        timeout: Duration::from_secs(5),
        backoff: Duration::from_millis(5),
        retries: 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_and_syslog_get_exactly_the_events_their_filters_admit() {
    let (core, _dir) = core();
    let (url, hooks) = receiver(vec![500], false);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let stats = notify::start_with(
        &core,
        vec![
            NotifyTarget {
                destination: Destination::Webhook { url },
                min_severity: Severity::Warning,
                kinds: vec![EventKind::NetworkViolation],
            },
            NotifyTarget {
                destination: Destination::Syslog {
                    address: udp.local_addr().unwrap(),
                },
                min_severity: Severity::Info,
                kinds: vec![],
            },
        ],
        fast(),
    );
    let mut stored: Vec<Event> = Vec::new();
    for (kind, sev) in [
        (EventKind::Audit, Severity::Info),
        (EventKind::NetworkViolation, Severity::Info),
        (EventKind::NetworkViolation, Severity::Warning),
        (EventKind::Threat, Severity::Critical),
    ] {
        stored.push(
            core.record(new_event(kind, sev, "what happened"))
                .await
                .unwrap(),
        );
    }

    // Webhook: only the warning network violation; the first POST got a 500, so it came twice.
    until("webhook delivered", || {
        stats[0].sent.load(Ordering::Relaxed) == 1
    })
    .await;
    let want = serde_json::to_value(&stored[2]).unwrap();
    for _ in 0..2 {
        let (line, ctype, body) = hooks.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(line, "POST /hook HTTP/1.1");
        assert_eq!(ctype, "application/json");
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), want);
    }
    assert_eq!(stats[0].failed.load(Ordering::Relaxed), 0);
    assert_eq!(stats[0].dropped.load(Ordering::Relaxed), 0);

    // Syslog: everything, in order, one datagram each.
    let host = notify::hostname();
    let mut buf = [0u8; 4096];
    let mut lines = Vec::new();
    for e in &stored {
        let n = udp.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap().to_owned();
        assert_eq!(line, notify::rfc5424(e, &host, std::process::id()));
        lines.push(line);
    }
    assert_eq!(
        lines[3],
        format!(
            "<34>1 2023-11-14T22:13:20.000Z {host} palisade {} threat [palisade@32473 id=\"{}\" severity=\"critical\" group=\"web\"] \u{feff}what happened",
            std::process::id(),
            stored[3].id
        )
    );
    until("syslog counted", || {
        stats[1].sent.load(Ordering::Relaxed) == 4
    })
    .await;
    assert_eq!(stats[1].failed.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_keeps_failing_is_retried_three_times_then_counted() {
    let (core, _dir) = core();
    let (url, hooks) = receiver(vec![503, 503, 503, 503], false);
    let stats = notify::start_with(
        &core,
        vec![NotifyTarget {
            destination: Destination::Webhook { url },
            min_severity: Severity::Info,
            kinds: vec![],
        }],
        fast(),
    );
    let e = core
        .record(new_event(EventKind::Threat, Severity::Critical, "t"))
        .await
        .unwrap();
    until("given up", || stats[0].failed.load(Ordering::Relaxed) == 1).await;
    let want = serde_json::to_value(&e).unwrap();
    for _ in 0..4 {
        let (_, _, body) = hooks.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), want);
    }
    assert!(hooks.recv_timeout(Duration::from_millis(200)).is_err());
    assert_eq!(stats[0].sent.load(Ordering::Relaxed), 0);
    // Counted in /metrics as well.
    let text = control::api::metrics::render(
        &control::api::metrics::gather(&AppState {
            core: Arc::clone(&core),
        })
        .await,
    )
    .unwrap();
    assert!(
        text.contains("\npalisade_notify_failed_total{target=\"0\",kind=\"webhook\"} 1\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_webhook_never_blocks_events_and_overflow_is_dropped_and_counted() {
    let (core, _dir) = core();
    let (url, hooks) = receiver(Vec::new(), true);
    let stats = notify::start_with(
        &core,
        vec![NotifyTarget {
            destination: Destination::Webhook { url },
            min_severity: Severity::Info,
            kinds: vec![],
        }],
        Options {
            queue: 1,
            timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(5),
            retries: 0,
        },
    );
    core.record(new_event(EventKind::Threat, Severity::Critical, "1"))
        .await
        .unwrap();
    // The worker holds the first event in a call that gets no answer ...
    hooks.recv_timeout(Duration::from_secs(5)).unwrap();
    // ... so of three more, one waits in the queue and two are dropped; storing is unaffected.
    for m in ["2", "3", "4"] {
        core.record(new_event(EventKind::Threat, Severity::Critical, m))
            .await
            .unwrap();
    }
    until("two dropped", || {
        stats[0].dropped.load(Ordering::Relaxed) == 2
    })
    .await;
    until("first timed out", || {
        stats[0].failed.load(Ordering::Relaxed) == 1
    })
    .await;
    // The queued one goes next (and times out too: the receiver never answers).
    hooks.recv_timeout(Duration::from_secs(5)).unwrap();
    until("second timed out", || {
        stats[0].failed.load(Ordering::Relaxed) == 2
    })
    .await;
    assert_eq!(stats[0].dropped.load(Ordering::Relaxed), 2);
    assert_eq!(stats[0].sent.load(Ordering::Relaxed), 0);
}
