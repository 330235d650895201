//! Authentication and roles: `POST /v1/auth` (login, throttled), `DELETE /v1/auth` (logout),
//! and the extractors every other handler takes: [`Caller`] (any valid token or API key whose
//! user needs no password change), [`Admin`], and [`Pending`] (also a user who must change
//! the password first: only logout and the password change accept it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::{Json, http::header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, Body};
use crate::model::Role;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// User or API key name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The bearer secret (a session token or an API key).
    pub secret: String,
    /// It is an API key.
    pub api_key: bool,
    /// The user must change the password before anything else.
    pub must_change_password: bool,
}

impl Caller {
    /// What goes into audit events: `alice`, or `key:ci` for an API key.
    pub fn actor(&self) -> String {
        if self.api_key {
            format!("key:{}", self.name)
        } else {
            self.name.clone()
        }
    }
}

fn bearer(parts: &Parts) -> Result<String, ApiError> {
    let h = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>`"))?;
    let s = h
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let token = s
        .strip_prefix("Bearer ")
        .or_else(|| s.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 512)
        .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <token>`"))?;
    Ok(token.to_owned())
}

/// Any authenticated caller, including one who must change the password.
#[derive(Debug, Clone)]
pub struct Pending(pub Caller);

impl FromRequestParts<AppState> for Pending {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer(parts)?;
        let s = secret.clone();
        let found = state
            .core
            .db(move |store| {
                if s.starts_with(crate::store::API_KEY_PREFIX) {
                    Ok(store
                        .api_key_role(&s)?
                        .map(|(name, role)| (name, role, true, false)))
                } else {
                    Ok(store
                        .token_user(&s)?
                        .map(|(u, _)| (u.name, u.role, false, u.must_change_password)))
                }
            })
            .await?;
        let (name, role, api_key, must_change_password) = found.ok_or_else(|| {
            ApiError::unauthorized("unknown, expired or revoked token: log in again")
        })?;
        Ok(Self(Caller {
            name,
            role,
            secret,
            api_key,
            must_change_password,
        }))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Pending(c) = Pending::from_request_parts(parts, state).await?;
        if c.must_change_password {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "password_change_required",
                format!(
                    "user `{}` must change the password first: PATCH /v1/users/{} with {{\"password\": ...}}",
                    c.name, c.name
                ),
            ));
        }
        Ok(c)
    }
}

/// An admin caller.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let c = Caller::from_request_parts(parts, state).await?;
        if c.role != Role::Admin {
            return Err(ApiError::forbidden(format!(
                "`{}` is a {}; this needs an admin",
                c.name,
                c.role.name()
            )));
        }
        Ok(Self(c))
    }
}

/// The peer address, when the server recorded it (absent in in-process tests).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// Failed logins per user name and per peer address: after [`FREE_FAILURES`] in a row, each
/// further attempt must wait 2^(n - FREE_FAILURES) seconds (at most 5 minutes). A success
/// clears the user's count.
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Failures allowed before waiting starts.
pub const FREE_FAILURES: u32 = 5;
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Entries kept at most (oldest dropped): bounded memory under a spray of names.
const MAX_ENTRIES: usize = 10_000;

impl Throttle {
    /// Seconds to wait before `keys` may try again, if any must.
    pub fn check(&self, keys: &[String], now: Instant) -> Option<u64> {
        let st = self.state.lock().ok()?;
        keys.iter()
            .filter_map(|k| st.get(k))
            .filter(|(_, until)| *until > now)
            .map(|(_, until)| until.duration_since(now).as_secs().max(1))
            .max()
    }

    /// Records a failure for every key.
    pub fn failed(&self, keys: &[String], now: Instant) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if st.len() >= MAX_ENTRIES {
            let oldest = st
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                st.remove(&k);
            }
        }
        for k in keys {
            let e = st.entry(k.clone()).or_insert((0, now));
            e.0 = e.0.saturating_add(1);
            e.1 = if e.0 > FREE_FAILURES {
                let exp = (e.0 - FREE_FAILURES).min(16);
                now + Duration::from_secs(1u64 << exp).min(MAX_WAIT)
            } else {
                now
            };
        }
    }

    /// Clears `key`.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut st) = self.state.lock() {
            st.remove(key);
        }
    }
}

/// Login request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Login answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginOk {
    /// Bearer token.
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Only the password change and logout work until it is changed.
    pub must_change_password: bool,
}

/// Logs in.
#[utoipa::path(post, path = "/v1/auth", tag = "auth", request_body = Login,
    responses(
        (status = 200, description = "logged in", body = LoginOk),
        (status = 401, description = "bad user name or password", body = super::error::ErrorBody),
        (status = 429, description = "too many failures: wait Retry-After seconds", body = super::error::ErrorBody),
        (status = 400, body = super::error::ErrorBody), (status = 415, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    peer: Peer,
    Body(req): Body<Login>,
) -> Result<Json<LoginOk>, ApiError> {
    if req.username.len() > 64 || req.password.len() > 1024 {
        return Err(ApiError::unauthorized("bad user name or password"));
    }
    let mut keys = vec![format!("user:{}", req.username)];
    if let Some(p) = peer.0 {
        keys.push(format!("ip:{}", p.ip()));
    }
    let now = Instant::now();
    if let Some(wait) = state.core.throttle.check(&keys, now) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            format!("too many failed logins: try again in {wait} s"),
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    let ttl = state.core.token_ttl;
    let (user, pass) = (req.username.clone(), req.password);
    let ok = state
        .core
        .db(move |s| match s.verify_password(&user, &pass)? {
            Some(u) => {
                let (token, expires_at) = s.create_token(&u.name, ttl)?;
                Ok(Some((u, token, expires_at)))
            }
            None => Ok(None),
        })
        .await?;
    match ok {
        Some((u, token, expires_at)) => {
            state.core.throttle.succeeded(&keys[0]);
            tracing::info!(user = %u.name, "login");
            Ok(Json(LoginOk {
                token,
                expires_at,
                must_change_password: u.must_change_password,
            }))
        }
        None => {
            state.core.throttle.failed(&keys, Instant::now());
            tracing::warn!(user = %req.username, peer = ?peer.0, "failed login");
            Err(ApiError::unauthorized("bad user name or password"))
        }
    }
}

/// Logs out: the token stops working.
#[utoipa::path(delete, path = "/v1/auth", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "logged out"),
        (status = 400, description = "an API key is not a session", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    Pending(c): Pending,
) -> Result<StatusCode, ApiError> {
    if c.api_key {
        return Err(ApiError::bad_request(
            "an API key is not a session: delete it with DELETE /v1/api-keys/{name}",
        ));
    }
    let secret = c.secret.clone();
    state.core.db(move |s| s.revoke_token(&secret)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_waits_after_five_failures_and_clears_on_success() {
        let t = Throttle::default();
        let k = vec!["user:a".to_owned()];
        let now = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.check(&k, now), None);
            t.failed(&k, now);
        }
        assert_eq!(t.check(&k, now), None);
        t.failed(&k, now);
        assert_eq!(t.check(&k, now), Some(2));
        t.failed(&k, now);
        assert_eq!(t.check(&k, now), Some(4));
        assert_eq!(t.check(&k, now + Duration::from_secs(5)), None);
        t.succeeded("user:a");
        assert_eq!(t.check(&k, now), None);
    }
}
