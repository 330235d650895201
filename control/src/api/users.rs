//! `/v1/users` (admins manage users; everyone changes their own password) and
//! `/v1/api-keys` (admins issue keys for automation).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Admin, Pending};
use super::error::{ApiError, Body, ErrorBody, PathParam};
use super::{AppState, List};
use crate::model::{Role, User};

/// Lists users.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = List<User>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, _a: Admin) -> Result<Json<List<User>>, ApiError> {
    let items = state.core.db(|s| s.users()).await?;
    Ok(Json(List { items, next: None }))
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name.
    pub name: String,
    /// At least 8 characters; the user must change it at first login.
    pub password: String,
    /// Role.
    pub role: Role,
}

/// Creates a user (who must change the password at first login).
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = NewUser, security(("bearer" = [])),
    responses((status = 201, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Admin(c): Admin,
    Body(req): Body<NewUser>,
) -> Result<Response, ApiError> {
    crate::model::validate_name("name", &req.name)?;
    let actor = c.actor();
    let (user, ev) = state
        .core
        .db(move |s| s.create_user(&req.name, &req.password, req.role, true, &actor))
        .await?;
    state.core.publish([ev]);
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// One user: admins see anyone, others themselves.
#[utoipa::path(get, path = "/v1/users/{name}", tag = "users", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Pending(c): Pending,
    PathParam(name): PathParam<String>,
) -> Result<Json<User>, ApiError> {
    if c.role != Role::Admin && (c.api_key || c.name != name) {
        return Err(ApiError::forbidden("only admins see other users"));
    }
    let n = name.clone();
    let u = state
        .core
        .db(move |s| s.user(&n))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user `{name}`")))?;
    Ok(Json(u))
}

/// Changes to a user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// New password (at least 8 characters). Revokes the user's sessions.
    pub password: Option<String>,
    /// New role (admins only).
    pub role: Option<Role>,
}

/// Changes a password (one's own, or anyone's as admin: then it must be changed at next
/// login) or a role (admins).
#[utoipa::path(patch, path = "/v1/users/{name}", tag = "users", params(("name" = String, Path)), request_body = UserPatch, security(("bearer" = [])),
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    Pending(c): Pending,
    PathParam(name): PathParam<String>,
    Body(p): Body<UserPatch>,
) -> Result<Json<User>, ApiError> {
    let own = !c.api_key && c.name == name;
    let admin = c.role == Role::Admin && !c.must_change_password;
    if !own && !admin {
        return Err(ApiError::forbidden(if c.must_change_password {
            "change your own password first"
        } else {
            "only admins change other users"
        }));
    }
    if p.role.is_some() && !admin {
        return Err(ApiError::forbidden("only admins change roles"));
    }
    if p.password.is_none() && p.role.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give `password` and/or `role`",
        ));
    }
    let actor = c.actor();
    let n = name.clone();
    let (user, events) = state
        .core
        .db(move |s| {
            let mut events = Vec::new();
            if let Some(pw) = p.password {
                // Someone else's password set by an admin is temporary.
                let (_, ev) = s.set_password(&n, &pw, !own, &actor)?;
                events.push(ev);
            }
            if let Some(r) = p.role {
                let (_, ev) = s.set_role(&n, r, &actor)?;
                events.push(ev);
            }
            let u = s.user(&n)?;
            Ok((u, events))
        })
        .await?;
    state.core.publish(events);
    user.map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no user `{name}`")))
}

/// Deletes a user (not the last admin).
#[utoipa::path(delete, path = "/v1/users/{name}", tag = "users", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(c): Admin,
    PathParam(name): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    let actor = c.actor();
    let ev = state.core.db(move |s| s.delete_user(&name, &actor)).await?;
    state.core.publish([ev]);
    Ok(StatusCode::NO_CONTENT)
}

/// A new API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// Unique name (`ci`).
    pub name: String,
    /// Role the key acts with.
    pub role: Role,
}

/// A created key: the secret is shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// Lists API keys (never their secrets).
#[utoipa::path(get, path = "/v1/api-keys", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = List<crate::store::ApiKeyInfo>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_keys(
    State(state): State<AppState>,
    _a: Admin,
) -> Result<Json<List<crate::store::ApiKeyInfo>>, ApiError> {
    let items = state.core.db(|s| s.api_keys()).await?;
    Ok(Json(List { items, next: None }))
}

/// Creates an API key.
#[utoipa::path(post, path = "/v1/api-keys", tag = "users", request_body = NewApiKey, security(("bearer" = [])),
    responses((status = 201, body = ApiKeyCreated), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    Admin(c): Admin,
    Body(req): Body<NewApiKey>,
) -> Result<Response, ApiError> {
    crate::model::validate_name("name", &req.name)?;
    let actor = c.actor();
    let (crate::store::NewApiKey { info, secret }, ev) = state
        .core
        .db(move |s| s.create_api_key(&req.name, req.role, &actor))
        .await?;
    state.core.publish([ev]);
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyCreated {
            name: info.name,
            role: info.role,
            secret,
        }),
    )
        .into_response())
}

/// Deletes an API key.
#[utoipa::path(delete, path = "/v1/api-keys/{name}", tag = "users", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete_key(
    State(state): State<AppState>,
    Admin(c): Admin,
    PathParam(name): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    let actor = c.actor();
    let ev = state
        .core
        .db(move |s| s.delete_api_key(&name, &actor))
        .await?;
    state.core.publish([ev]);
    Ok(StatusCode::NO_CONTENT)
}
