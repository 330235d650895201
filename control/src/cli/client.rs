//! HTTP client for the REST API (ARCHITECTURE.md, "REST API"): a base URL, an optional
//! Bearer token, JSON bodies, and the error envelope `{"error": {"code", "message"}}` turned
//! into [`CliError::Api`] with the HTTP status (which decides the exit code).
//!
//! Blocking (`ureq`): the CLI makes one request at a time. Requests time out after 30 s,
//! except the event stream, which only has a connect timeout.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::Value;
use ureq::http::{self, Request, Response};

use super::error::CliError;

/// Largest answer read into memory (policy exports of big installations included).
const BODY_LIMIT: u64 = 256 * 1024 * 1024;
/// Most pages followed by [`Client::list`].
const MAX_PAGES: usize = 1000;

/// A request body.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// No body.
    None,
    /// `application/json`.
    Json(&'a Value),
    /// `application/yaml`.
    Yaml(&'a str),
}

/// One request.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// `GET`, `POST`, `PATCH`, `DELETE`.
    pub method: &'static str,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    /// Send the Bearer token (every path but `/healthz` and `POST /v1/auth`).
    pub auth: bool,
    /// Body.
    pub body: Body<'a>,
    /// `If-Match` value.
    pub if_match: Option<&'a str>,
    /// `Accept` value.
    pub accept: &'static str,
    /// `Last-Event-ID` value (event stream only).
    pub last_event_id: Option<&'a str>,
}

impl<'a> Call<'a> {
    /// An authenticated JSON request without body.
    pub fn new(method: &'static str, path: &'a str) -> Self {
        Self {
            method,
            path,
            auth: true,
            body: Body::None,
            if_match: None,
            accept: "application/json",
            last_event_id: None,
        }
    }

    /// With a JSON body.
    pub fn json(mut self, body: &'a Value) -> Self {
        self.body = Body::Json(body);
        self
    }

    /// Without the token.
    pub fn anonymous(mut self) -> Self {
        self.auth = false;
        self
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status (2xx).
    pub status: u16,
    /// `ETag`, when sent.
    pub etag: Option<String>,
    /// `Content-Type`, when sent.
    pub content_type: Option<String>,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// The body as JSON; an empty body (204) is `null`.
    pub fn json(&self, call: &Call<'_>) -> Result<Value, CliError> {
        if self.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.body).map_err(|e| CliError::BadResponse {
            method: call.method,
            path: call.path.to_owned(),
            reason: format!("not JSON: {e}"),
        })
    }
}

/// The API client.
#[derive(Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    stream_agent: ureq::Agent,
}

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(timeout)
        .user_agent(concat!("palisade-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

impl Client {
    /// A client for `base` (`http://127.0.0.1:10443`; a trailing `/` is ignored).
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent: agent(Some(Duration::from_secs(30))),
            stream_agent: agent(None),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, call: &Call<'_>, stream: bool) -> Result<Response<ureq::Body>, CliError> {
        let mut b = Request::builder()
            .method(call.method)
            .uri(format!("{}{}", self.base, call.path))
            .header(http::header::ACCEPT, call.accept);
        if call.auth {
            let token = self.token.as_deref().ok_or_else(|| CliError::NotLoggedIn {
                url: self.base.clone(),
            })?;
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(tag) = call.if_match {
            b = b.header(http::header::IF_MATCH, tag);
        }
        if let Some(id) = call.last_event_id {
            b = b.header("last-event-id", id);
        }
        let usage =
            |e: http::Error| CliError::Usage(format!("bad URL `{}{}`: {e}", self.base, call.path));
        let agent = if stream {
            &self.stream_agent
        } else {
            &self.agent
        };
        let sent = match call.body {
            Body::None => agent.run(b.body(()).map_err(usage)?),
            Body::Json(v) => agent.run(
                b.header(http::header::CONTENT_TYPE, "application/json")
                    .body(v.to_string())
                    .map_err(usage)?,
            ),
            Body::Yaml(t) => agent.run(
                b.header(http::header::CONTENT_TYPE, "application/yaml")
                    .body(t.to_owned())
                    .map_err(usage)?,
            ),
        };
        let resp = sent.map_err(|source| match source {
            ureq::Error::BadUri(u) => CliError::Usage(format!("bad URL `{u}`")),
            source => CliError::Unreachable {
                url: self.base.clone(),
                source,
            },
        })?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = read_body(resp, call, &self.base)?.body;
        Err(api_error(call, status, &body))
    }

    /// Sends `call`; a non-2xx answer is [`CliError::Api`].
    pub fn send(&self, call: &Call<'_>) -> Result<Reply, CliError> {
        let resp = self.request(call, false)?;
        read_body(resp, call, &self.base)
    }

    /// Sends `call` and parses the answer as JSON.
    pub fn send_json(&self, call: &Call<'_>) -> Result<Value, CliError> {
        self.send(call)?.json(call)
    }

    /// `GET` a list (`{"items": [...], "next": cursor}`), following `next` with
    /// `?after=<cursor>` until it is null (or repeats).
    pub fn list(&self, path: &str) -> Result<Vec<Value>, CliError> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let p = match &after {
                None => path.to_owned(),
                Some(c) => {
                    let sep = if path.contains('?') { '&' } else { '?' };
                    format!("{path}{sep}after={}", encode(c))
                }
            };
            let call = Call::new("GET", &p);
            let page = self.send_json(&call)?;
            let bad = |reason: &str| CliError::BadResponse {
                method: "GET",
                path: p.clone(),
                reason: reason.to_owned(),
            };
            let Some(list) = page.get("items").and_then(Value::as_array) else {
                return Err(bad("no `items` list"));
            };
            items.extend(list.iter().cloned());
            let next = cursor(&page);
            if next.is_none() || next == after || list.is_empty() {
                break;
            }
            after = next;
        }
        Ok(items)
    }

    /// Opens a Server-Sent Events stream (`Accept: text/event-stream`), resuming after
    /// `last_event_id` when given (`Last-Event-ID`).
    pub fn stream(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<impl BufRead + use<>, CliError> {
        let mut call = Call::new("GET", path);
        call.accept = "text/event-stream";
        call.last_event_id = last_event_id;
        let resp = self.request(&call, true)?;
        Ok(BufReader::new(resp.into_body().into_reader()))
    }
}

/// The `next` cursor of a list answer (a string or a number), `None` when null or absent.
pub fn cursor(page: &Value) -> Option<String> {
    match page.get("next") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn read_body(
    mut resp: Response<ureq::Body>,
    call: &Call<'_>,
    base: &str,
) -> Result<Reply, CliError> {
    let status = resp.status().as_u16();
    let header = |name: http::header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let etag = header(http::header::ETAG);
    let content_type = header(http::header::CONTENT_TYPE);
    let body = resp
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_string()
        .map_err(|source| match source {
            ureq::Error::BodyExceedsLimit(_) => CliError::BadResponse {
                method: call.method,
                path: call.path.to_owned(),
                reason: source.to_string(),
            },
            source => CliError::Unreachable {
                url: base.to_owned(),
                source,
            },
        })?;
    Ok(Reply {
        status,
        etag,
        content_type,
        body,
    })
}

/// The typed error for a non-2xx answer: the envelope's code and message, or (for a body
/// that is no envelope) `http_<status>` and the body's first 200 characters.
pub fn api_error(call: &Call<'_>, status: u16, body: &str) -> CliError {
    let envelope = serde_json::from_str::<Value>(body).ok();
    let err = envelope.as_ref().and_then(|v| v.get("error"));
    let field = |k: &str| {
        err.and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let message = field("message").unwrap_or_else(|| {
        let t = body.trim();
        if t.is_empty() {
            "(no body)".to_owned()
        } else {
            t.chars().take(200).collect()
        }
    });
    CliError::Api {
        method: call.method,
        path: call.path.to_owned(),
        status,
        code: field("code").unwrap_or_else(|| format!("http_{status}")),
        message,
    }
}

/// Percent-encodes a path segment or query value (everything but unreserved characters,
/// RFC 3986 section 2.3).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::error::Exit;
    use crate::cli::fake_http::{Canned, FakeServer};

    #[test]
    fn encodes_reserved_characters() {
        assert_eq!(encode("auto.web-1_x~"), "auto.web-1_x~");
        assert_eq!(encode("a b/c?d&e=é"), "a%20b%2Fc%3Fd%26e%3D%C3%A9");
    }

    #[test]
    fn sends_token_body_and_if_match() {
        let srv = FakeServer::start(vec![Canned::json(200, r#"{"name":"web"}"#).etag("\"7\"")]);
        let c = Client::new(&format!("{}/", srv.url()), Some("tok".into()));
        let body = serde_json::json!({"network_mode": "protect"});
        let mut call = Call::new("PATCH", "/v1/groups/web").json(&body);
        call.if_match = Some("\"6\"");
        let reply = c.send(&call).unwrap();
        assert_eq!(reply.etag.as_deref(), Some("\"7\""));
        let reqs = srv.requests();
        assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("PATCH", "/v1/groups/web")
        );
        assert_eq!(r.header("authorization"), Some("Bearer tok"));
        assert_eq!(r.header("if-match"), Some("\"6\""));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap(), body);
    }

    #[test]
    fn error_envelope_becomes_a_typed_error() {
        let srv = FakeServer::start(vec![
            Canned::json(
                412,
                r#"{"error":{"code":"stale","message":"the group changed"}}"#,
            ),
            Canned::text(502, "text/plain", "bad gateway"),
        ]);
        let c = Client::new(&srv.url(), Some("t".into()));
        let e = c.send(&Call::new("PATCH", "/v1/groups/web")).unwrap_err();
        assert_eq!(e.exit(), Exit::Conflict);
        assert_eq!(
            e.to_string(),
            "PATCH /v1/groups/web: HTTP 412 stale: the group changed"
        );
        let e = c.send(&Call::new("GET", "/v1/stats")).unwrap_err();
        assert_eq!(e.exit(), Exit::Failed);
        assert_eq!(
            e.to_string(),
            "GET /v1/stats: HTTP 502 http_502: bad gateway"
        );
    }

    #[test]
    fn no_token_means_not_logged_in_and_nothing_is_sent() {
        let c = Client::new("http://127.0.0.1:9", None);
        let e = c.send(&Call::new("GET", "/v1/groups")).unwrap_err();
        assert_eq!(e.exit(), Exit::Auth);
    }

    #[test]
    fn unreachable_server() {
        // Bind then drop: nothing listens on the port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), None);
        let e = c
            .send(&Call::new("GET", "/healthz").anonymous())
            .unwrap_err();
        assert_eq!(e.exit(), Exit::Unreachable, "{e:?}");
    }

    #[test]
    fn lists_follow_the_cursor() {
        let srv = FakeServer::start(vec![
            Canned::json(200, r#"{"items":[1,2],"next":"c1"}"#),
            Canned::json(200, r#"{"items":[3],"next":null}"#),
        ]);
        let c = Client::new(&srv.url(), Some("t".into()));
        let items = c.list("/v1/workloads").unwrap();
        assert_eq!(items, vec![Value::from(1), Value::from(2), Value::from(3)]);
        let paths: Vec<String> = srv.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/v1/workloads", "/v1/workloads?after=c1"]);
    }
}
