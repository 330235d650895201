//! `/v1/process-profiles/{group}` and `/v1/file-rules/{group}`: read, and change by
//! `PATCH {"add": [...], "delete": [...]}` (a process entry is matched by name and path, a
//! file rule by its filter).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Admin, Caller};
use super::error::{ApiError, Body, ErrorBody, PathParam};
use crate::model::{FileRule, ProcessEntry};

/// A group's process profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessProfile {
    /// Group.
    pub group: String,
    /// Entries.
    pub items: Vec<ProcessEntry>,
}

/// Changes to a process profile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessPatch {
    /// Added (or replacing the entry with the same name and path).
    #[serde(default)]
    pub add: Vec<ProcessEntry>,
    /// Removed (by name and path).
    #[serde(default)]
    pub delete: Vec<ProcessEntry>,
}

/// A group's process profile.
#[utoipa::path(get, path = "/v1/process-profiles/{group}", tag = "profiles", params(("group" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ProcessProfile), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_process(
    State(state): State<AppState>,
    _c: Caller,
    PathParam(group): PathParam<String>,
) -> Result<Json<ProcessProfile>, ApiError> {
    let g = group.clone();
    let items = state.core.db(move |s| s.process_profile(&g)).await?;
    Ok(Json(ProcessProfile { group, items }))
}

/// Changes a group's process profile.
#[utoipa::path(patch, path = "/v1/process-profiles/{group}", tag = "profiles", params(("group" = String, Path)), request_body = ProcessPatch, security(("bearer" = [])),
    responses((status = 200, body = ProcessProfile), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn patch_process(
    State(state): State<AppState>,
    Admin(c): Admin,
    PathParam(group): PathParam<String>,
    Body(p): Body<ProcessPatch>,
) -> Result<Json<ProcessProfile>, ApiError> {
    let actor = c.actor();
    let g = group.clone();
    let (items, ev) = state
        .core
        .db(move |s| s.patch_process_profile(&g, p.add, p.delete, &actor))
        .await?;
    state.core.publish([ev]);
    state.core.profiles_changed();
    Ok(Json(ProcessProfile { group, items }))
}

/// A group's file rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileRules {
    /// Group.
    pub group: String,
    /// Rules.
    pub items: Vec<FileRule>,
}

/// Changes to file rules.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePatch {
    /// Added (or replacing the rule with the same filter).
    #[serde(default)]
    pub add: Vec<FileRule>,
    /// Removed (by filter).
    #[serde(default)]
    pub delete: Vec<FileRule>,
}

/// A group's file rules.
#[utoipa::path(get, path = "/v1/file-rules/{group}", tag = "profiles", params(("group" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = FileRules), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_files(
    State(state): State<AppState>,
    _c: Caller,
    PathParam(group): PathParam<String>,
) -> Result<Json<FileRules>, ApiError> {
    let g = group.clone();
    let items = state.core.db(move |s| s.file_rules(&g)).await?;
    Ok(Json(FileRules { group, items }))
}

/// Changes a group's file rules.
#[utoipa::path(patch, path = "/v1/file-rules/{group}", tag = "profiles", params(("group" = String, Path)), request_body = FilePatch, security(("bearer" = [])),
    responses((status = 200, body = FileRules), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn patch_files(
    State(state): State<AppState>,
    Admin(c): Admin,
    PathParam(group): PathParam<String>,
    Body(p): Body<FilePatch>,
) -> Result<Json<FileRules>, ApiError> {
    let actor = c.actor();
    let g = group.clone();
    let (items, ev) = state
        .core
        .db(move |s| s.patch_file_rules(&g, p.add, p.delete, &actor))
        .await?;
    state.core.publish([ev]);
    state.core.profiles_changed();
    Ok(Json(FileRules { group, items }))
}
