//! `/v1/rules`: network rules in evaluation order (priority, then list order).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::{Admin, Caller};
use super::error::{ApiError, Body, ErrorBody, Params, PathParam};
use super::schema::RuleSchema;
use super::{AppState, List, ListQuery, etag_response, if_match, page};
use crate::model::{Action, PortSpec, Rule};

/// Rule list filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RuleQuery {
    /// Page size (1-1000, default 100).
    pub limit: Option<usize>,
    /// Cursor: the previous page's `next`.
    pub after: Option<String>,
    /// Rules from this group.
    pub from: Option<String>,
    /// Rules to this group.
    pub to: Option<String>,
    /// Rules naming this group at either end.
    pub group: Option<String>,
    /// Only learned, or only hand-made rules.
    pub learned: Option<bool>,
}

/// Lists rules in evaluation order.
#[utoipa::path(get, path = "/v1/rules", tag = "rules", params(RuleQuery), security(("bearer" = [])),
    responses((status = 200, body = List<RuleSchema>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _c: Caller,
    Params(q): Params<RuleQuery>,
) -> Result<Json<List<Rule>>, ApiError> {
    let mut rules: Vec<(usize, Rule)> = state
        .core
        .db(|s| s.rules())
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .enumerate()
        .collect();
    rules.retain(|(_, r)| {
        q.from.as_ref().is_none_or(|g| &r.from == g)
            && q.to.as_ref().is_none_or(|g| &r.to == g)
            && q.group.as_ref().is_none_or(|g| &r.from == g || &r.to == g)
            && q.learned.is_none_or(|l| r.learned == l)
    });
    let lq = ListQuery {
        limit: q.limit,
        cursor: q.after,
    };
    // The cursor is the position in evaluation order, zero-padded so it sorts.
    let (items, next) = page(rules, &lq, |(i, _)| format!("{i:010}"))?;
    Ok(Json(List {
        items: items.into_iter().map(|(_, r)| r).collect(),
        next,
    }))
}

/// A new rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// Id; absent: the next free one below 10000.
    pub id: Option<u32>,
    /// Client group.
    pub from: String,
    /// Server group.
    pub to: String,
    /// Port specs; empty: any.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub ports: Vec<PortSpec>,
    /// Applications.
    #[serde(default)]
    pub apps: Vec<String>,
    /// Default allow.
    #[schema(value_type = Option<super::schema::ActionSchema>)]
    pub action: Option<Action>,
    /// Higher first.
    #[serde(default)]
    pub priority: i32,
    /// Kept but not enforced.
    #[serde(default)]
    pub disabled: bool,
}

fn apps(names: &[String]) -> Result<Vec<dataplane::dpi::App>, ApiError> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            dataplane::dpi::App::from_name(n)
                .filter(|a| *a != dataplane::dpi::App::Unknown)
                .ok_or_else(|| {
                    crate::model::Invalid::new(
                        format!("apps[{i}]"),
                        format!("unknown application `{n}`"),
                    )
                    .into()
                })
        })
        .collect()
}

/// Adds a rule at the end of the list.
#[utoipa::path(post, path = "/v1/rules", tag = "rules", request_body = NewRule, security(("bearer" = [])),
    responses((status = 201, body = RuleSchema), (status = 409, description = "duplicate rule or id", body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Admin(c): Admin,
    Body(req): Body<NewRule>,
) -> Result<Response, ApiError> {
    let rule = Rule {
        id: req.id.unwrap_or(0),
        from: req.from,
        to: req.to,
        ports: req.ports,
        apps: apps(&req.apps)?,
        action: req.action.unwrap_or(Action::Allow),
        priority: req.priority,
        learned: false,
        disabled: req.disabled,
    };
    if req.id == Some(0) {
        return Err(crate::model::Invalid::new("id", "0 is not a rule id").into());
    }
    let actor = c.actor();
    let ((rule, version), ev) = state.core.db(move |s| s.create_rule(rule, &actor)).await?;
    state.core.publish([ev]);
    state.core.policy_changed();
    Ok((StatusCode::CREATED, etag_response(version, Json(rule))).into_response())
}

/// One rule.
#[utoipa::path(get, path = "/v1/rules/{id}", tag = "rules", params(("id" = u32, Path)), security(("bearer" = [])),
    responses((status = 200, body = RuleSchema, headers(("ETag" = String))), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    _c: Caller,
    PathParam(id): PathParam<u32>,
) -> Result<Response, ApiError> {
    let (rule, version) = state
        .core
        .db(move |s| s.rule(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no rule {id}")))?;
    Ok(etag_response(version, Json(rule)).into_response())
}

/// Changes to a rule; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePatch {
    /// Client group.
    pub from: Option<String>,
    /// Server group.
    pub to: Option<String>,
    /// Port specs.
    #[schema(value_type = Option<Vec<String>>)]
    pub ports: Option<Vec<PortSpec>>,
    /// Applications.
    pub apps: Option<Vec<String>>,
    /// Allow or deny.
    #[schema(value_type = Option<super::schema::ActionSchema>)]
    pub action: Option<Action>,
    /// Priority.
    pub priority: Option<i32>,
    /// Disabled.
    pub disabled: Option<bool>,
}

/// Changes a rule. `If-Match` with the ETag of a GET makes it conditional.
#[utoipa::path(patch, path = "/v1/rules/{id}", tag = "rules", params(("id" = u32, Path), ("If-Match" = Option<String>, Header)),
    request_body = RulePatch, security(("bearer" = [])),
    responses((status = 200, body = RuleSchema, headers(("ETag" = String))), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    Admin(c): Admin,
    PathParam(id): PathParam<u32>,
    headers: HeaderMap,
    Body(p): Body<RulePatch>,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let (mut rule, version) = state
        .core
        .db(move |s| s.rule(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no rule {id}")))?;
    let expected = expected.unwrap_or(version);
    if let Some(v) = p.from {
        rule.from = v;
    }
    if let Some(v) = p.to {
        rule.to = v;
    }
    if let Some(v) = p.ports {
        rule.ports = v;
    }
    if let Some(v) = p.apps {
        rule.apps = apps(&v)?;
    }
    if let Some(v) = p.action {
        rule.action = v;
    }
    if let Some(v) = p.priority {
        rule.priority = v;
    }
    if let Some(v) = p.disabled {
        rule.disabled = v;
    }
    let actor = c.actor();
    let r2 = rule.clone();
    let ((_, version), ev) = state
        .core
        .db(move |s| s.update_rule(id, r2, Some(expected), &actor))
        .await?;
    state.core.publish([ev]);
    state.core.policy_changed();
    Ok(etag_response(version, Json(rule)).into_response())
}

/// Deletes a rule.
#[utoipa::path(delete, path = "/v1/rules/{id}", tag = "rules", params(("id" = u32, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(c): Admin,
    PathParam(id): PathParam<u32>,
) -> Result<StatusCode, ApiError> {
    let actor = c.actor();
    let ev = state.core.db(move |s| s.delete_rule(id, &actor)).await?;
    state.core.publish([ev]);
    state.core.policy_changed();
    Ok(StatusCode::NO_CONTENT)
}
