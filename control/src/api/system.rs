//! `/v1/stats` (the dataplane's counters and the control process's own) and
//! `/v1/conversations` (the network graph).

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody, Params};
use crate::conversations::Graph;

/// Counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsView {
    /// Seconds since `palisade` started.
    pub uptime_s: u64,
    /// API responses by class.
    pub api_requests: ApiRequests,
    /// A dataplane is attached and answering.
    pub dataplane_up: bool,
    /// Its counters (`get_stats` of the control socket), when it answers.
    #[schema(value_type = Option<Object>)]
    pub dataplane: Option<dataplane::ctl::Stats>,
    /// Why there are none, when there are none.
    pub dataplane_error: Option<String>,
    /// The process engine's counters, when it runs.
    pub process: Option<ProcessStats>,
    /// The file engine's counters, when it runs.
    pub file: Option<FileStats>,
}

/// File engine counters (since `palisade` started).
#[derive(Debug, Serialize, ToSchema)]
pub struct FileStats {
    /// Accesses reported (violations, and programs learned in discover).
    pub reports: u64,
    /// Reports dropped because the engine was behind.
    pub dropped: u64,
    /// Opens denied (protect, block rules).
    pub denied: u64,
    /// Containers whose filesystem is watched.
    pub marked: u64,
    /// The fanotify responder.
    pub responder: Option<crate::fanotify::Stats>,
}

/// Process engine counters (since `palisade` started).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessStats {
    /// Execs judged in containers.
    pub execs: u64,
    /// Programs killed (protect, SIGKILL path).
    pub killed: u64,
    /// Kills that failed (the program was already gone).
    pub kill_failed: u64,
    /// Times the kernel reported lost process events (each followed by a /proc rescan).
    pub lost: u64,
    /// /proc rescans.
    pub rescans: u64,
    /// Observations dropped because the engine was behind.
    pub dropped: u64,
    /// Programs gone before their executable could be read, so not learned (discover).
    pub unlearnable: u64,
    /// Processes gone before anything could be read (counted only).
    pub unidentified: u64,
    /// The exec gate (protect), when it runs.
    pub gate: Option<crate::fanotify::Stats>,
}

/// API responses by status class.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiRequests {
    /// 1xx-3xx.
    pub ok: u64,
    /// 4xx.
    pub client_error: u64,
    /// 5xx.
    pub server_error: u64,
}

/// Dataplane and control counters.
#[utoipa::path(get, path = "/v1/stats", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = StatsView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn stats(State(state): State<AppState>, _c: Caller) -> Json<StatsView> {
    let core = &state.core;
    let (dataplane, dataplane_error) = match core.dp.get() {
        None => (None, Some("no dataplane attached".to_owned())),
        Some(h) => match h.stats().await {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(crate::error_chain(&e))),
        },
    };
    Json(StatsView {
        uptime_s: core.started.elapsed().as_secs(),
        api_requests: ApiRequests {
            ok: core.requests[0].load(Ordering::Relaxed),
            client_error: core.requests[1].load(Ordering::Relaxed),
            server_error: core.requests[2].load(Ordering::Relaxed),
        },
        dataplane_up: dataplane.is_some(),
        dataplane,
        dataplane_error,
        process: core.process.get().map(|c| {
            let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            ProcessStats {
                execs: g(&c.execs),
                killed: g(&c.killed),
                kill_failed: g(&c.kill_failed),
                lost: g(&c.lost),
                rescans: g(&c.rescans),
                dropped: g(&c.dropped),
                unlearnable: g(&c.unlearnable),
                unidentified: g(&c.unidentified),
                gate: c.gate.lock().ok().and_then(|s| *s),
            }
        }),
        file: core.file.get().map(|c| {
            let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            FileStats {
                reports: g(&c.reports),
                dropped: g(&c.dropped),
                denied: g(&c.denied),
                marked: g(&c.marked),
                responder: c.responder.lock().ok().and_then(|s| *s),
            }
        }),
    })
}

/// Graph filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GraphQuery {
    /// Only edges from or to this group.
    pub group: Option<String>,
}

/// The network graph: groups and who talks to whom, on what, with counts and verdicts.
#[utoipa::path(get, path = "/v1/conversations", tag = "system", params(GraphQuery), security(("bearer" = [])),
    responses((status = 200, body = Graph), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn conversations(
    State(state): State<AppState>,
    _c: Caller,
    Params(q): Params<GraphQuery>,
) -> Result<Json<Graph>, ApiError> {
    let g = state
        .core
        .conversations
        .lock()
        .map_err(|_| ApiError::internal("conversation graph lock poisoned"))?
        .graph(q.group.as_deref());
    Ok(Json(g))
}
