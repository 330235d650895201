//! Policy as code: `GET /v1/policy/export` answers the whole policy (groups with their modes,
//! rules, process profiles, file rules) as YAML; `POST /v1/policy/import` validates a document
//! completely and replaces the policy in one transaction, or with `?dry_run=true` only
//! answers the diff.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Admin, Caller};
use super::error::{ApiError, ErrorBody, Params};
use crate::policy_code::{self, Change, PolicyDocument};
use crate::store::PolicySnapshot;

/// Largest document accepted.
pub const MAX_IMPORT: usize = 8 << 20;

fn document(s: PolicySnapshot) -> PolicyDocument {
    PolicyDocument {
        version: policy_code::VERSION,
        groups: s.groups,
        rules: s.rules,
        process_profiles: s.process_profiles,
        file_rules: s.file_rules,
    }
}

/// Exports the policy as YAML.
#[utoipa::path(get, path = "/v1/policy/export", tag = "policy", security(("bearer" = [])),
    responses((status = 200, content_type = "application/yaml", body = PolicyDocument, description = "the policy document, as YAML"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn export(State(state): State<AppState>, _c: Caller) -> Result<Response, ApiError> {
    let snap = state.core.db(|s| s.policy_snapshot()).await?;
    let yaml = document(snap).to_yaml().map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response())
}

/// Import options.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Only compute the diff.
    #[serde(default)]
    pub dry_run: bool,
}

/// What an import did or would do.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    /// The policy was replaced.
    pub applied: bool,
    /// Differences from the current policy, groups first, then rules, profiles, file rules.
    pub diff: Vec<Change>,
}

/// Imports a policy document (YAML, or the same as JSON): all or nothing.
#[utoipa::path(post, path = "/v1/policy/import", tag = "policy", params(ImportQuery), security(("bearer" = [])),
    request_body(content = PolicyDocument, content_type = "application/yaml", description = "a policy document, as YAML"),
    responses((status = 200, body = ImportResult), (status = 422, description = "every problem, one per line", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn import(
    State(state): State<AppState>,
    Admin(c): Admin,
    Params(q): Params<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ImportResult>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !matches!(
        ct.as_str(),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "application/json" | "text/plain"
    ) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_body",
            "send the document as application/yaml (or application/json)",
        ));
    }
    if body.len() > MAX_IMPORT {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("documents are limited to {MAX_IMPORT} bytes"),
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the document is not UTF-8"))?;
    let doc = PolicyDocument::from_yaml(text)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))?;
    if let Err(problems) = doc.validate() {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            lines.join("\n"),
        ));
    }
    let current = document(state.core.db(|s| s.policy_snapshot()).await?);
    let diff = policy_code::diff(&current, &doc);
    if q.dry_run || diff.is_empty() {
        return Ok(Json(ImportResult {
            applied: false,
            diff,
        }));
    }
    let snap = PolicySnapshot {
        groups: doc.groups,
        rules: doc.rules,
        process_profiles: doc.process_profiles,
        file_rules: doc.file_rules,
    };
    let actor = c.actor();
    let ev = state
        .core
        .db(move |s| s.replace_policy(snap, &actor))
        .await?;
    state.core.publish([ev]);
    state.core.policy_changed();
    state.core.profiles_changed();
    Ok(Json(ImportResult {
        applied: true,
        diff,
    }))
}
