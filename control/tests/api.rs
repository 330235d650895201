//! The REST API in process (`oneshot`): every route with the roles and bad inputs that
//! matter, status codes and messages asserted. A real SQLite store in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use control::api::{AppState, app};
use control::model::{Mode, Role};
use control::service::Core;
use control::store::{Store, StoreSettings};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    app: Router,
    core: Arc<Core>,
    _dir: tempfile::TempDir,
}

impl Api {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreSettings::default()).unwrap();
        store
            .create_user("admin", "admin-password-1", Role::Admin, false, "test")
            .unwrap();
        store
            .create_user("reader", "reader-password-1", Role::Reader, false, "test")
            .unwrap();
        let core = Core::new(store, Mode::Discover, Duration::from_secs(3600));
        Self {
            app: app(AppState {
                core: Arc::clone(&core),
            }),
            core,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v, headers)
    }

    async fn login(&self, user: &str, password: &str) -> String {
        let (s, v, _) = self
            .call(
                Method::POST,
                "/v1/auth",
                None,
                Some(json!({"username": user, "password": password})),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn health_is_open_everything_else_needs_a_token() {
    let api = Api::new();
    let (s, _, _) = api.call(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        "/v1/groups",
        "/v1/rules",
        "/v1/events",
        "/v1/workloads",
        "/v1/users",
        "/v1/openapi.json",
    ] {
        let (s, v, _) = api.call(Method::GET, path, None, None, &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(v["error"]["code"], "unauthorized");
        let (s, _, _) = api.call(Method::GET, path, Some("bogus"), None, &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn login_logout_and_throttling() {
    let api = Api::new();
    let t = api.login("admin", "admin-password-1").await;
    let (s, _, _) = api
        .call(Method::GET, "/v1/groups", Some(&t), None, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = api
        .call(Method::DELETE, "/v1/auth", Some(&t), None, &[])
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = api
        .call(Method::GET, "/v1/groups", Some(&t), None, &[])
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    for _ in 0..5 {
        let (s, v, _) = api
            .call(
                Method::POST,
                "/v1/auth",
                None,
                Some(json!({"username": "reader", "password": "wrong-one"})),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(message(&v), "bad user name or password");
    }
    let (s, _, _) = api
        .call(
            Method::POST,
            "/v1/auth",
            None,
            Some(json!({"username": "reader", "password": "wrong-one"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Now even the right password waits.
    let (s, v, h) = api
        .call(
            Method::POST,
            "/v1/auth",
            None,
            Some(json!({"username": "reader", "password": "reader-password-1"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(h.get(header::RETRY_AFTER).is_some());
    // Malformed bodies.
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/auth",
            None,
            Some(json!({"username": 1})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "bad_body");
}

#[tokio::test]
async fn groups_crud_roles_etags_and_audit() {
    let api = Api::new();
    let admin = api.login("admin", "admin-password-1").await;
    let reader = api.login("reader", "reader-password-1").await;
    let body = json!({"name": "web", "criteria": [{"key": "image", "op": "=", "value": "nginx*"}]});
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/groups",
            Some(&reader),
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/groups",
            Some(&admin),
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["network_mode"], "discover");
    let (s, v, _) = api
        .call(Method::POST, "/v1/groups", Some(&admin), Some(body), &[])
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v, _) = api
        .call(Method::POST, "/v1/groups", Some(&admin), Some(json!({"name": "bad", "criteria": [{"key": "address", "op": "=", "value": "nope"}]})), &[])
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&v).starts_with("criteria[0].value"), "{v}");
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/groups",
            Some(&admin),
            Some(json!({"name": "external"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    let (s, _, h) = api
        .call(Method::GET, "/v1/groups/web", Some(&reader), None, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    let etag = h.get(header::ETAG).unwrap().to_str().unwrap().to_owned();
    let (s, v, h2) = api
        .call(
            Method::PATCH,
            "/v1/groups/web",
            Some(&admin),
            Some(json!({"network_mode": "protect"})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["network_mode"], "protect");
    assert_ne!(h2.get(header::ETAG).unwrap().to_str().unwrap(), etag);
    // A second operator with the old ETag is refused.
    let (s, v, _) = api
        .call(
            Method::PATCH,
            "/v1/groups/web",
            Some(&admin),
            Some(json!({"network_mode": "monitor"})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{v}");
    assert_eq!(v["error"]["code"], "stale");
    let (s, _, _) = api
        .call(Method::GET, "/v1/groups/nope", Some(&reader), None, &[])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The change is in the audit log, with who did it.
    let (s, v, _) = api
        .call(
            Method::GET,
            "/v1/events?kind=audit",
            Some(&reader),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let items = v["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|e| e["actor"] == "admin" && e["message"].as_str().unwrap().contains("web")),
        "{v}"
    );
    let (s, v, _) = api
        .call(
            Method::GET,
            "/v1/events?kind=bogus",
            Some(&reader),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

#[tokio::test]
async fn rules_validation_duplicates_and_group_in_use() {
    let api = Api::new();
    let admin = api.login("admin", "admin-password-1").await;
    for g in ["client", "server"] {
        let (s, v, _) = api
            .call(
                Method::POST,
                "/v1/groups",
                Some(&admin),
                Some(json!({"name": g, "criteria": [{"key": "name", "op": "prefix", "value": g}]})),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let rule = json!({"from": "client", "to": "server", "ports": ["tcp/80"], "apps": ["http"]});
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/rules",
            Some(&admin),
            Some(rule.clone()),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_u64().unwrap();
    assert!(id < 10_000);
    let (s, v, _) = api
        .call(Method::POST, "/v1/rules", Some(&admin), Some(rule), &[])
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/rules",
            Some(&admin),
            Some(json!({"from": "client", "to": "server", "ports": ["tcp/99999"]})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&v).contains("bad port spec"), "{v}");
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/rules",
            Some(&admin),
            Some(json!({"from": "ghost", "to": "server"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&v).contains("unknown group `ghost`"), "{v}");
    let (s, v, _) = api
        .call(Method::DELETE, "/v1/groups/server", Some(&admin), None, &[])
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "in_use");
    let (s, _, _) = api
        .call(
            Method::DELETE,
            &format!("/v1/rules/{id}"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = api
        .call(Method::DELETE, "/v1/groups/server", Some(&admin), None, &[])
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v, _) = api
        .call(Method::GET, "/v1/rules?limit=0", Some(&admin), None, &[])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn users_must_change_a_generated_password_first() {
    let api = Api::new();
    let admin = api.login("admin", "admin-password-1").await;
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/users",
            Some(&admin),
            Some(json!({"name": "bob", "password": "temporary-1", "role": "reader"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["must_change_password"], true);
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/users",
            Some(&admin),
            Some(json!({"name": "eve", "password": "short", "role": "reader"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let bob = api.login("bob", "temporary-1").await;
    let (s, v, _) = api
        .call(Method::GET, "/v1/groups", Some(&bob), None, &[])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error"]["code"], "password_change_required");
    let (s, v, _) = api
        .call(
            Method::PATCH,
            "/v1/users/bob",
            Some(&bob),
            Some(json!({"password": "bobs-own-password"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The old session is revoked by the change.
    let (s, _, _) = api
        .call(Method::GET, "/v1/groups", Some(&bob), None, &[])
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let bob = api.login("bob", "bobs-own-password").await;
    let (s, _, _) = api
        .call(Method::GET, "/v1/groups", Some(&bob), None, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = api
        .call(Method::GET, "/v1/users", Some(&bob), None, &[])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v, _) = api
        .call(Method::DELETE, "/v1/users/admin", Some(&admin), None, &[])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
}

#[tokio::test]
async fn api_keys_work_for_automation() {
    let api = Api::new();
    let admin = api.login("admin", "admin-password-1").await;
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(&admin),
            Some(json!({"name": "ci", "role": "reader"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = v["secret"].as_str().unwrap().to_owned();
    let (s, _, _) = api
        .call(Method::GET, "/v1/rules", Some(&key), None, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = api
        .call(
            Method::POST,
            "/v1/groups",
            Some(&key),
            Some(json!({"name": "x", "criteria": [{"key": "name", "op": "=", "value": "x"}]})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = api
        .call(Method::DELETE, "/v1/api-keys/ci", Some(&admin), None, &[])
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = api
        .call(Method::GET, "/v1/rules", Some(&key), None, &[])
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn workloads_declared_get_an_auto_group_and_profiles_patch() {
    let api = Api::new();
    let admin = api.login("admin", "admin-password-1").await;
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/workloads",
            Some(&admin),
            Some(
                json!({"id": "c1", "name": "web-1", "image": "nginx:1.27", "ips": ["198.18.0.2"]}),
            ),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["group"], "auto.nginx");
    let (s, v, _) = api
        .call(
            Method::GET,
            "/v1/groups/auto.nginx",
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["learned"], true);
    assert_eq!(v["members"], json!(["c1"]));
    let (s, v, _) = api
        .call(
            Method::PATCH,
            "/v1/process-profiles/auto.nginx",
            Some(&admin),
            Some(json!({"add": [{"name": "nginx", "path": "/usr/sbin/nginx", "action": "allow"}]})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (s, v, _) = api
        .call(
            Method::PATCH,
            "/v1/file-rules/auto.nginx",
            Some(&admin),
            Some(json!({"add": [{"filter": "relative", "behavior": "block"}]})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, _, _) = api
        .call(
            Method::GET,
            "/v1/process-profiles/nope",
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let _ = &api.core;
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let api = Api::new();
    let admin = api.login("admin", "admin-password-1").await;
    let (s, v, _) = api
        .call(Method::GET, "/v1/openapi.json", Some(&admin), None, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    let paths = v["paths"].as_object().unwrap();
    for p in [
        "/healthz",
        "/v1/auth",
        "/v1/users",
        "/v1/users/{name}",
        "/v1/api-keys",
        "/v1/groups",
        "/v1/groups/{name}",
        "/v1/rules",
        "/v1/rules/{id}",
        "/v1/workloads",
        "/v1/workloads/{id}",
        "/v1/process-profiles/{group}",
        "/v1/file-rules/{group}",
        "/v1/events",
        "/v1/events/stream",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the spec");
    }
    // The checked-in copy is the generated one.
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let generated = serde_json::to_string_pretty(&v).unwrap() + "\n";
    if std::env::var_os("PALISADE_UPDATE_OPENAPI").is_some() {
        std::fs::write(&file, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/openapi.json is out of date: run `PALISADE_UPDATE_OPENAPI=1 cargo test -p control --test api openapi`"
    );
}

async fn raw(
    api: &Api,
    method: Method,
    path: &str,
    token: &str,
    content_type: &str,
    body: String,
) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn policy_export_import_dry_run_and_atomic_apply() {
    let api = Api::new();
    let admin = api.login("admin", "admin-password-1").await;
    let reader = api.login("reader", "reader-password-1").await;
    for g in ["a", "b"] {
        let (s, v, _) = api
            .call(
                Method::POST,
                "/v1/groups",
                Some(&admin),
                Some(json!({"name": g, "criteria": [{"key": "name", "op": "=", "value": g}]})),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/rules",
            Some(&admin),
            Some(json!({"id": 5, "from": "a", "to": "b", "ports": ["tcp/80"]})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, yaml) = raw(
        &api,
        Method::GET,
        "/v1/policy/export",
        &reader,
        "text/plain",
        String::new(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{yaml}");
    assert!(yaml.contains("tcp/80"), "{yaml}");

    // Same document back: nothing to do.
    let (s, out) = raw(
        &api,
        Method::POST,
        "/v1/policy/import",
        &admin,
        "application/yaml",
        yaml.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, json!({"applied": false, "diff": []}));

    // Readers cannot import.
    let (s, _) = raw(
        &api,
        Method::POST,
        "/v1/policy/import",
        &reader,
        "application/yaml",
        yaml.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // A change, dry run first: the diff, nothing applied.
    let changed = yaml.replace("tcp/80", "tcp/8080");
    let (s, out) = raw(
        &api,
        Method::POST,
        "/v1/policy/import?dry_run=true",
        &admin,
        "application/yaml",
        changed.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["applied"], false);
    assert_eq!(v["diff"][0]["op"], "change");
    assert_eq!(v["diff"][0]["kind"], "rule");
    assert_eq!(v["diff"][0]["name"], "5");
    let (_, v, _) = api
        .call(Method::GET, "/v1/rules/5", Some(&admin), None, &[])
        .await;
    assert_eq!(v["ports"], json!(["tcp/80"]));
    let (s, out) = raw(
        &api,
        Method::POST,
        "/v1/policy/import",
        &admin,
        "application/yaml",
        changed,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let (_, v, _) = api
        .call(Method::GET, "/v1/rules/5", Some(&admin), None, &[])
        .await;
    assert_eq!(v["ports"], json!(["tcp/8080"]));

    // An invalid document changes nothing and names every problem.
    let bad = yaml.replace("to: b", "to: ghost");
    let (s, out) = raw(
        &api,
        Method::POST,
        "/v1/policy/import",
        &admin,
        "application/yaml",
        bad,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(out.contains("ghost"), "{out}");
    let (_, v, _) = api
        .call(Method::GET, "/v1/rules/5", Some(&admin), None, &[])
        .await;
    assert_eq!(v["to"], "b");
    let (s, _) = raw(
        &api,
        Method::POST,
        "/v1/policy/import",
        &admin,
        "application/yaml",
        "groups: [".into(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = raw(
        &api,
        Method::POST,
        "/v1/policy/import",
        &admin,
        "image/png",
        yaml,
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn stats_and_conversations_without_a_dataplane() {
    let api = Api::new();
    let reader = api.login("reader", "reader-password-1").await;
    let (s, v, _) = api
        .call(Method::GET, "/v1/stats", Some(&reader), None, &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["dataplane_up"], false);
    assert_eq!(v["dataplane_error"], "no dataplane attached");
    let (s, v, _) = api
        .call(Method::GET, "/v1/conversations", Some(&reader), None, &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"nodes": [], "edges": []}));
}

/// Every route: without a token 401; every change as a reader 403; every read as a reader
/// not 401/403 (except users and API keys, admin only).
#[tokio::test]
async fn every_route_enforces_authentication_and_roles() {
    let api = Api::new();
    let reader = api.login("reader", "reader-password-1").await;
    let g = json!({"name": "x1", "criteria": [{"key": "name", "op": "=", "value": "x"}]});
    let changes: Vec<(Method, &str, Option<Value>)> = vec![
        (
            Method::POST,
            "/v1/users",
            Some(json!({"name": "u", "password": "password-1", "role": "reader"})),
        ),
        (Method::DELETE, "/v1/users/admin", None),
        (
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "k", "role": "reader"})),
        ),
        (Method::DELETE, "/v1/api-keys/k", None),
        (Method::POST, "/v1/groups", Some(g)),
        (
            Method::PATCH,
            "/v1/groups/x1",
            Some(json!({"network_mode": "protect"})),
        ),
        (Method::DELETE, "/v1/groups/x1", None),
        (
            Method::POST,
            "/v1/rules",
            Some(json!({"from": "external", "to": "nodes"})),
        ),
        (
            Method::PATCH,
            "/v1/rules/1",
            Some(json!({"disabled": true})),
        ),
        (Method::DELETE, "/v1/rules/1", None),
        (
            Method::POST,
            "/v1/workloads",
            Some(json!({"id": "w1", "image": "i"})),
        ),
        (Method::DELETE, "/v1/workloads/w1", None),
        (
            Method::PATCH,
            "/v1/process-profiles/x1",
            Some(json!({"add": []})),
        ),
        (Method::PATCH, "/v1/file-rules/x1", Some(json!({"add": []}))),
    ];
    for (m, path, body) in &changes {
        let (s, v, _) = api.call(m.clone(), path, None, body.clone(), &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {path}: {v}");
        let (s, v, _) = api
            .call(m.clone(), path, Some(&reader), body.clone(), &[])
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{m} {path}: {v}");
    }
    let (s, _) = raw(
        &api,
        Method::POST,
        "/v1/policy/import",
        &reader,
        "application/yaml",
        "version: 1\n".into(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let reads = [
        "/v1/groups",
        "/v1/rules",
        "/v1/workloads",
        "/v1/events",
        "/v1/stats",
        "/v1/conversations",
        "/v1/policy/export",
        "/v1/openapi.json",
        "/v1/users/reader",
    ];
    for path in reads {
        let (s, v, _) = api.call(Method::GET, path, None, None, &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {v}");
        let (s, v, _) = api.call(Method::GET, path, Some(&reader), None, &[]).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
    }
    for path in ["/v1/users", "/v1/api-keys", "/v1/users/admin"] {
        let (s, v, _) = api.call(Method::GET, path, Some(&reader), None, &[]).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
    }
    let (s, v, _) = api
        .call(Method::GET, "/v1/nothing-here", Some(&reader), None, &[])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"]["code"], "not_found");
}

#[tokio::test]
async fn bad_inputs_get_clear_4xx() {
    let api = Api::new();
    let admin = api.login("admin", "admin-password-1").await;
    // Not JSON.
    let (s, out) = raw(
        &api,
        Method::POST,
        "/v1/groups",
        &admin,
        "application/json",
        "{nope".into(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{out}");
    // Wrong content type.
    let (s, out) = raw(
        &api,
        Method::POST,
        "/v1/groups",
        &admin,
        "text/plain",
        "{}".into(),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{out}");
    // Unknown field.
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/groups",
            Some(&admin),
            Some(json!({"name": "a", "colour": "red"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("colour"), "{v}");
    // Bad mode, bad regex, bad path parameter, bad If-Match, bad query.
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/groups",
            Some(&admin),
            Some(json!({"name": "a", "network_mode": "lockdown"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/groups",
            Some(&admin),
            Some(json!({"name": "a", "criteria": [{"key": "name", "op": "regex", "value": "("}]})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("bad regex"), "{v}");
    let (s, v, _) = api
        .call(
            Method::GET,
            "/v1/rules/not-a-number",
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v, _) = api
        .call(
            Method::POST,
            "/v1/groups",
            Some(&admin),
            Some(json!({"name": "a", "criteria": [{"key": "name", "op": "=", "value": "a"}]})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v, _) = api
        .call(
            Method::PATCH,
            "/v1/groups/a",
            Some(&admin),
            Some(json!({"comment": "x"})),
            &[("if-match", "garbage")],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v, _) = api
        .call(Method::GET, "/v1/groups?bogus=1", Some(&admin), None, &[])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // Too large.
    let big = "x".repeat(2 << 20);
    let (s, _) = raw(
        &api,
        Method::POST,
        "/v1/groups",
        &admin,
        "application/json",
        format!("{{\"name\": \"{big}\"}}"),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}
