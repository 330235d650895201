//! The REST API (axum), as ARCHITECTURE.md lists it. [`app`] builds the whole router; the
//! OpenAPI document is generated from the same registrations (utoipa-axum), so a route cannot
//! exist without its spec entry. One file per resource; handlers turn requests into store
//! calls and announce the resulting audit events.
//!
//! Conventions: JSON everywhere; errors `{"error": {"code", "message"}}`; lists
//! `{"items": [...], "next": cursor|null}`; `Authorization: Bearer <token or API key>` on all
//! but `/healthz` and `POST /v1/auth`; `PATCH` honours `If-Match` (a stale one gets 412).
//! Bodies are limited to 1 MiB (8 MiB for a policy import); requests time out after 30 s
//! (the event stream excepted).

pub mod auth;
pub mod error;
// utoipa's `IntoParams` expansion names the params type by its full path.
#[allow(unused_qualifications)]
pub mod events;
// utoipa's `IntoParams` expansion names the params type by its full path.
#[allow(unused_qualifications)]
pub mod groups;
// utoipa's `IntoParams` expansion names the params type by its full path.
pub mod metrics;
#[allow(unused_qualifications)]
pub mod policy;
pub mod profiles;
// utoipa's `IntoParams` expansion names the params type by its full path.
#[allow(unused_qualifications)]
pub mod rules;
pub mod schema;
// utoipa's `IntoParams` expansion names the params type by its full path.
#[allow(unused_qualifications)]
pub mod system;
pub mod users;
// utoipa's `IntoParams` expansion names the params type by its full path.
#[allow(unused_qualifications)]
pub mod workloads;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower_http::timeout::TimeoutLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::Core;
use error::ApiError;

/// What every handler gets.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The shared core.
    pub core: Arc<Core>,
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    /// This page.
    pub items: Vec<T>,
    /// Cursor of the next page, `null` at the end.
    pub next: Option<String>,
}

/// Paging parameters.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// 1-1000, default 100.
    pub limit: Option<usize>,
    /// Key of the last item of the previous page.
    pub cursor: Option<String>,
}

/// One page of `items` (sorted by `key`): those after the cursor, at most `limit`.
pub fn page<T>(
    items: Vec<T>,
    q: &ListQuery,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be 1-1000"));
    }
    let mut out: Vec<T> = items
        .into_iter()
        .filter(|i| q.cursor.as_ref().is_none_or(|c| key(i) > *c))
        .take(limit + 1)
        .collect();
    let next = if out.len() > limit {
        out.truncate(limit);
        out.last().map(&key)
    } else {
        None
    };
    Ok((out, next))
}

/// `"N"`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// `body` with an `ETag` header.
pub fn etag_response(version: i64, body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// The version an `If-Match` asks for (`None` without one, or for `*`).
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| ApiError::bad_request("malformed If-Match"))?
        .trim();
    if s == "*" {
        return Ok(None);
    }
    s.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("If-Match `{s}` is not an ETag of this API")))
}

/// Liveness: 200 while the process serves.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, description = "ok", body = String)))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Palisade API", description = "Zero-trust firewall for containers: groups, rules, workloads, events."),
    modifiers(&Security),
    tags((name = "auth"), (name = "users"), (name = "groups"), (name = "rules"), (name = "workloads"), (name = "profiles"), (name = "events"), (name = "policy"), (name = "system"))
)]
struct ApiDoc;

/// The router and its OpenAPI document.
fn parts(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let timed: OpenApiRouter<AppState> = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(auth::login, auth::logout))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::patch, users::delete))
        .routes(routes!(users::list_keys, users::create_key))
        .routes(routes!(users::delete_key))
        .routes(routes!(groups::list, groups::create))
        .routes(routes!(groups::get, groups::patch, groups::delete))
        .routes(routes!(rules::list, rules::create))
        .routes(routes!(rules::get, rules::patch, rules::delete))
        .routes(routes!(workloads::list, workloads::declare))
        .routes(routes!(workloads::get, workloads::remove))
        .routes(routes!(profiles::get_process, profiles::patch_process))
        .routes(routes!(profiles::get_files, profiles::patch_files))
        .routes(routes!(events::list))
        .routes(routes!(policy::export))
        .routes(routes!(system::stats))
        .routes(routes!(system::conversations))
        .layer(DefaultBodyLimit::max(1 << 20));
    let import: OpenApiRouter<AppState> = OpenApiRouter::new()
        .routes(routes!(policy::import))
        .layer(DefaultBodyLimit::max(policy::MAX_IMPORT));
    let streaming: OpenApiRouter<AppState> = OpenApiRouter::new().routes(routes!(events::stream));
    let (router, mut api) = timed
        .merge(import)
        .routes(routes!(metrics::metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .merge(streaming)
        .split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let spec = api.clone();
    let router = router
        .route(
            "/v1/openapi.json",
            axum::routing::get(move |_c: auth::Caller| {
                let spec = spec.clone();
                async move { Json(spec) }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such path") })
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state);
    (router, api)
}

/// Counts responses by class for `/metrics`.
async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    state.core.count_request(r.status().as_u16());
    r
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    parts(state).0
}

/// The OpenAPI document (also served at `/v1/openapi.json`).
pub fn openapi(state: AppState) -> utoipa::openapi::OpenApi {
    parts(state).1
}
