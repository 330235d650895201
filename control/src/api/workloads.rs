//! `/v1/workloads`: discovered and declared containers. Declaring one (POST) is how
//! workloads enter before discovery finds them; DELETE removes a declared one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{Admin, Caller};
use super::error::{ApiError, Body, ErrorBody, Params, PathParam};
use super::{AppState, List, ListQuery, page};
use crate::model::{Workload, WorkloadSource, auto_group};

/// Workload filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WorkloadQuery {
    /// Page size (1-1000, default 100).
    pub limit: Option<usize>,
    /// Cursor: the previous page's `next`.
    pub after: Option<String>,
    /// Only this group's workloads.
    pub group: Option<String>,
}

/// Lists workloads by id.
#[utoipa::path(get, path = "/v1/workloads", tag = "workloads", params(WorkloadQuery), security(("bearer" = [])),
    responses((status = 200, body = List<Workload>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _c: Caller,
    Params(q): Params<WorkloadQuery>,
) -> Result<Json<List<Workload>>, ApiError> {
    let mut all: Vec<Workload> = state
        .core
        .db(|s| s.workloads())
        .await?
        .into_iter()
        .map(|w| state.core.with_plumbing(w))
        .collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all.retain(|w| q.group.as_ref().is_none_or(|g| &w.group == g));
    let (items, next) = page(
        all,
        &ListQuery {
            limit: q.limit,
            cursor: q.after,
        },
        |w| w.id.clone(),
    )?;
    Ok(Json(List { items, next }))
}

/// One workload.
#[utoipa::path(get, path = "/v1/workloads/{id}", tag = "workloads", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Workload), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    _c: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<Workload>, ApiError> {
    let i = id.clone();
    state
        .core
        .db(move |s| s.workload(&i))
        .await?
        .map(|w| Json(state.core.with_plumbing(w)))
        .ok_or_else(|| ApiError::not_found(format!("no workload `{id}`")))
}

/// Declares a workload (its group is created when missing, in the default mode).
#[utoipa::path(post, path = "/v1/workloads", tag = "workloads", request_body = Workload, security(("bearer" = [])),
    responses((status = 201, body = Workload), (status = 422, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn declare(
    State(state): State<AppState>,
    Admin(c): Admin,
    Body(mut w): Body<Workload>,
) -> Result<Response, ApiError> {
    if w.group.is_empty() {
        w.group = auto_group(&w.image, &w.labels);
    }
    w.source = WorkloadSource::Api;
    let actor = c.actor();
    let mode = state.core.default_mode;
    let w2 = w.clone();
    let (w, events) = state
        .core
        .db(move |s| crate::service::declare_workload(s, w2, mode, &actor))
        .await?;
    state.core.publish(events);
    state.core.policy_changed();
    Ok((StatusCode::CREATED, Json(w)).into_response())
}

/// Removes a declared workload.
#[utoipa::path(delete, path = "/v1/workloads/{id}", tag = "workloads", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Admin(c): Admin,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    let actor = c.actor();
    let events = state
        .core
        .db(move |s| s.remove_workload(&id, &actor))
        .await?;
    state.core.publish(events);
    state.core.policy_changed();
    Ok(StatusCode::NO_CONTENT)
}
