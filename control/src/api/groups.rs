//! `/v1/groups`: auto groups (from workloads) and user groups (criteria), with their three
//! modes. A mode change is pushed to the dataplane at once and lands in the audit log.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::{Admin, Caller};
use super::error::{ApiError, Body, ErrorBody, Params, PathParam};
use super::{AppState, List, ListQuery, etag_response, if_match, page};
use crate::model::{Criterion, Group, Mode};

/// A group as served: the group and its members. (The group's fields are spelled out rather
/// than `#[serde(flatten)]`ed: a flattened `Group` documents as `allOf` with a closed `Group`
/// schema, which no served group could match.)
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct GroupView {
    /// Unique name; `auto.*` for groups created from workloads.
    pub name: String,
    /// All must match (empty for auto groups: their members name them).
    pub criteria: Vec<Criterion>,
    /// Network mode.
    #[schema(value_type = super::schema::ModeSchema)]
    pub network_mode: Mode,
    /// Process mode.
    #[schema(value_type = super::schema::ModeSchema)]
    pub process_mode: Mode,
    /// File mode.
    #[schema(value_type = super::schema::ModeSchema)]
    pub file_mode: Mode,
    /// Created from workloads (auto group), not by an operator.
    pub learned: bool,
    /// Free text (absent when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    #[schema(required = false)]
    pub comment: String,
    /// Ids of the workloads that belong to it now.
    pub members: Vec<String>,
}

impl GroupView {
    fn new(g: Group, members: Vec<String>) -> Self {
        Self {
            name: g.name,
            criteria: g.criteria,
            network_mode: g.network_mode,
            process_mode: g.process_mode,
            file_mode: g.file_mode,
            learned: g.learned,
            comment: g.comment,
            members,
        }
    }
}

/// Group list filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GroupQuery {
    /// Page size (1-1000, default 100).
    pub limit: Option<usize>,
    /// Cursor: the previous page's `next`.
    pub after: Option<String>,
    /// Only groups whose name starts with this.
    pub prefix: Option<String>,
    /// Only learned (auto) groups, or only user groups.
    pub learned: Option<bool>,
}

async fn members_of(state: &AppState, groups: Vec<Group>) -> Result<Vec<GroupView>, ApiError> {
    let workloads = state.core.db(|s| s.workloads()).await?;
    Ok(groups
        .into_iter()
        .map(|g| {
            let members = workloads
                .iter()
                .filter(|w| w.group == g.name || g.matches(&w.meta()))
                .map(|w| w.id.clone())
                .collect();
            GroupView::new(g, members)
        })
        .collect())
}

/// Lists groups, by name.
#[utoipa::path(get, path = "/v1/groups", tag = "groups", params(GroupQuery), security(("bearer" = [])),
    responses((status = 200, body = List<GroupView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _c: Caller,
    Params(q): Params<GroupQuery>,
) -> Result<Json<List<GroupView>>, ApiError> {
    let mut groups: Vec<Group> = state
        .core
        .db(|s| s.groups())
        .await?
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    groups.retain(|g| {
        q.prefix
            .as_ref()
            .is_none_or(|p| g.name.starts_with(p.as_str()))
            && q.learned.is_none_or(|l| g.learned == l)
    });
    let lq = ListQuery {
        limit: q.limit,
        cursor: q.after,
    };
    let (items, next) = page(groups, &lq, |g| g.name.clone())?;
    Ok(Json(List {
        items: members_of(&state, items).await?,
        next,
    }))
}

/// A new group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// Unique name.
    pub name: String,
    /// All must match.
    #[serde(default)]
    pub criteria: Vec<Criterion>,
    /// Default: the configured default mode.
    #[schema(value_type = Option<super::schema::ModeSchema>)]
    pub network_mode: Option<Mode>,
    /// Default: the configured default mode.
    #[schema(value_type = Option<super::schema::ModeSchema>)]
    pub process_mode: Option<Mode>,
    /// Default: the configured default mode.
    #[schema(value_type = Option<super::schema::ModeSchema>)]
    pub file_mode: Option<Mode>,
    /// Free text.
    #[serde(default)]
    pub comment: String,
    /// Must be false: learned (auto) groups come from workloads.
    #[serde(default)]
    pub learned: bool,
}

/// Creates a user group.
#[utoipa::path(post, path = "/v1/groups", tag = "groups", request_body = NewGroup, security(("bearer" = [])),
    responses((status = 201, body = GroupView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Admin(c): Admin,
    Body(req): Body<NewGroup>,
) -> Result<Response, ApiError> {
    if req.learned {
        return Err(crate::model::Invalid::new(
            "learned",
            "auto groups are created from workloads, not through the API",
        )
        .into());
    }
    let d = state.core.default_mode;
    let g = Group {
        name: req.name,
        criteria: req.criteria,
        network_mode: req.network_mode.unwrap_or(d),
        process_mode: req.process_mode.unwrap_or(d),
        file_mode: req.file_mode.unwrap_or(d),
        learned: false,
        comment: req.comment,
    };
    let actor = c.actor();
    let g2 = g.clone();
    let ((_, version), ev) = state.core.db(move |s| s.create_group(g2, &actor)).await?;
    state.core.publish([ev]);
    state.core.policy_changed();
    let view = members_of(&state, vec![g]).await?.pop();
    Ok((StatusCode::CREATED, etag_response(version, Json(view))).into_response())
}

/// One group.
#[utoipa::path(get, path = "/v1/groups/{name}", tag = "groups", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = GroupView, headers(("ETag" = String))), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    _c: Caller,
    PathParam(name): PathParam<String>,
) -> Result<Response, ApiError> {
    let n = name.clone();
    let (g, version) = state
        .core
        .db(move |s| s.group(&n))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no group `{name}`")))?;
    let view = members_of(&state, vec![g]).await?.pop();
    Ok(etag_response(version, Json(view)).into_response())
}

/// Changes to a group; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    /// New criteria (replaces them all).
    pub criteria: Option<Vec<Criterion>>,
    /// Network mode.
    #[schema(value_type = Option<super::schema::ModeSchema>)]
    pub network_mode: Option<Mode>,
    /// Process mode.
    #[schema(value_type = Option<super::schema::ModeSchema>)]
    pub process_mode: Option<Mode>,
    /// File mode.
    #[schema(value_type = Option<super::schema::ModeSchema>)]
    pub file_mode: Option<Mode>,
    /// Free text.
    pub comment: Option<String>,
}

/// Changes a group (modes, criteria). `If-Match` with the ETag of a GET makes it conditional.
#[utoipa::path(patch, path = "/v1/groups/{name}", tag = "groups", params(("name" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = GroupPatch, security(("bearer" = [])),
    responses((status = 200, body = GroupView, headers(("ETag" = String))), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    Admin(c): Admin,
    PathParam(name): PathParam<String>,
    headers: HeaderMap,
    Body(p): Body<GroupPatch>,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let n = name.clone();
    let (mut g, version) = state
        .core
        .db(move |s| s.group(&n))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no group `{name}`")))?;
    if let Some(v) = expected
        && v != version
    {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "stale",
            format!("group `{name}` changed since (now at version {version}): GET it again"),
        ));
    }
    if let Some(cr) = p.criteria {
        if g.learned && !cr.is_empty() {
            return Err(ApiError::from(crate::model::Invalid::new(
                "criteria",
                "an auto group's members are the workloads it was made from; it takes no criteria",
            )));
        }
        g.criteria = cr;
    }
    if let Some(m) = p.network_mode {
        g.network_mode = m;
    }
    if let Some(m) = p.process_mode {
        g.process_mode = m;
    }
    if let Some(m) = p.file_mode {
        g.file_mode = m;
    }
    if let Some(cm) = p.comment {
        g.comment = cm;
    }
    let actor = c.actor();
    let g2 = g.clone();
    let n = name.clone();
    let ((_, version), ev) = state
        .core
        .db(move |s| s.update_group(&n, g2, Some(version), &actor))
        .await?;
    state.core.publish([ev]);
    state.core.policy_changed();
    let view = members_of(&state, vec![g]).await?.pop();
    Ok(etag_response(version, Json(view)).into_response())
}

/// Deletes a group no rule names.
#[utoipa::path(delete, path = "/v1/groups/{name}", tag = "groups", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "rules name it", body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(c): Admin,
    PathParam(name): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    let actor = c.actor();
    let ev = state
        .core
        .db(move |s| s.delete_group(&name, &actor))
        .await?;
    state.core.publish([ev]);
    state.core.policy_changed();
    Ok(StatusCode::NO_CONTENT)
}
