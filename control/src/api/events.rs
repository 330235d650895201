//! `/v1/events` (filters and a cursor) and `/v1/events/stream` (Server-Sent Events: every
//! event as it is stored; `Last-Event-ID` or `?after=` replays what was missed first).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody, Params};
use super::{AppState, List};
use crate::model::{Event, EventKind};
use crate::store::EventQuery;

/// Event filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Comma-separated kinds (`network_violation,threat`).
    pub kind: Option<String>,
    /// Events of this group.
    pub group: Option<String>,
    /// Events of this workload.
    pub workload: Option<String>,
    /// From this time, Unix ms.
    pub since_ms: Option<i64>,
    /// Until this time, Unix ms.
    pub until_ms: Option<i64>,
    /// Cursor: events after this id (from the previous page's `next`).
    pub after: Option<i64>,
    /// Page size (1-1000, default 100).
    pub limit: Option<usize>,
}

impl EventParams {
    fn query(&self) -> Result<EventQuery, ApiError> {
        let kinds = match &self.kind {
            None => Vec::new(),
            Some(k) => k
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<EventKind>())
                .collect::<Result<_, _>>()?,
        };
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::bad_request("`limit` must be 1-1000"));
        }
        Ok(EventQuery {
            kinds,
            group: self.group.clone(),
            workload: self.workload.clone(),
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            after_id: self.after,
            limit: u32::try_from(limit).unwrap_or(1000),
            newest_first: false,
        })
    }

    fn admits(&self, q: &EventQuery, e: &Event) -> bool {
        (q.kinds.is_empty() || q.kinds.contains(&e.kind))
            && q.group.as_ref().is_none_or(|g| e.group.as_ref() == Some(g))
            && q.workload
                .as_ref()
                .is_none_or(|w| e.workload.as_ref() == Some(w))
    }
}

/// Lists events, oldest first from the cursor.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventParams), security(("bearer" = [])),
    responses((status = 200, body = List<Event>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _c: Caller,
    Params(p): Params<EventParams>,
) -> Result<Json<List<Event>>, ApiError> {
    let q = p.query()?;
    let (items, next) = state.core.db(move |s| s.events(&q)).await?;
    Ok(Json(List {
        items,
        next: next.map(|n| n.to_string()),
    }))
}

fn sse(e: &Event) -> SseEvent {
    SseEvent::default()
        .id(e.id.to_string())
        .event(e.kind.name())
        .json_data(e)
        .unwrap_or_else(|_| SseEvent::default().comment("unserialisable event"))
}

/// Streams events as they are stored (text/event-stream). Replays from `Last-Event-ID` or
/// `after` first; a subscriber too slow to keep up gets an `event: lagged` with the count.
#[utoipa::path(get, path = "/v1/events/stream", tag = "events", params(EventParams), security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream", description = "`id`, `event` (the kind), `data` (the event as JSON)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    _c: Caller,
    headers: HeaderMap,
    Params(p): Params<EventParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let mut q = p.query()?;
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    // Subscribe before reading the backlog, so nothing falls between the two.
    let rx = state.core.events.subscribe();
    let mut replay = Vec::new();
    if let Some(after) = last.or(p.after) {
        q.after_id = Some(after);
        q.limit = 1000;
        let q2 = q.clone();
        let (items, _) = state.core.db(move |s| s.events(&q2)).await?;
        replay = items;
    }
    let mut seen = replay
        .last()
        .map_or(last.or(p.after).unwrap_or(0), |e| e.id);
    let backlog = tokio_stream::iter(replay.into_iter().map(|e| Ok(sse(&e))));
    let live = BroadcastStream::new(rx).filter_map(move |r| match r {
        Ok(e) if e.id > seen && p.admits(&q, &e) => {
            seen = e.id;
            Some(Ok(sse(&e)))
        }
        Ok(_) => None,
        Err(BroadcastStreamRecvError::Lagged(n)) => {
            Some(Ok(SseEvent::default().event("lagged").data(n.to_string())))
        }
    });
    Ok(
        Sse::new(backlog.chain(live))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
}
