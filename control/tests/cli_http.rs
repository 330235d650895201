//! The real `palisade` binary against a fake API server: login stores a session that later
//! commands use, and every failure class ends with its documented exit code. No root needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../src/cli/fake_http.rs"]
mod fake_http;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use fake_http::{Canned, FakeServer};

/// Runs `palisade ARGS` with `home` as HOME and XDG_CONFIG_HOME parent, `stdin` as input.
fn palisade(home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("cfg"))
        .env_remove("PALISADE_TOKEN")
        .env_remove("PALISADE_PASSWORD")
        .env("RUST_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn login_then_commands_use_the_session() {
    let home = tempfile::tempdir().unwrap();
    let srv = FakeServer::start(vec![
        Canned::json(
            200,
            r#"{"token":"abc","expires_at":"2099-01-01T00:00:00Z","must_change_password":false}"#,
        ),
        Canned::json(
            200,
            r#"{"items":[{"id":10001,"from":"auto.client","to":"auto.web","ports":["tcp/80"],"apps":["http"],"action":"allow","priority":0,"learned":true,"disabled":false}],"next":null}"#,
        ),
        Canned::json(200, r#"{"name":"web"}"#).etag("\"3\""),
        Canned::json(
            412,
            r#"{"error":{"code":"precondition_failed","message":"group changed"}}"#,
        ),
        Canned::json(
            403,
            r#"{"error":{"code":"forbidden","message":"readers change nothing"}}"#,
        ),
    ]);
    let url = srv.url();

    let o = palisade(
        home.path(),
        &["login", "--url", &url, "--password-stdin"],
        "secret\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let session = home.path().join("cfg/palisade/session.json");
    let mode = std::fs::metadata(&session).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // No --url now: the session's URL and token are used.
    let o = palisade(home.path(), &["rules"], "");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "ID     PRIO  FROM         TO        PORTS   APPS  ACTION  FLAGS\n\
         10001  0     auto.client  auto.web  tcp/80  http  allow   learned\n"
    );

    let o = palisade(home.path(), &["mode", "web", "protect"], "");
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(
        text(&o.stderr),
        "palisade: error: PATCH /v1/groups/web: HTTP 412 precondition_failed: group changed\n"
    );

    let o = palisade(home.path(), &["rules", "delete", "7"], "");
    assert_eq!(o.status.code(), Some(3));

    let reqs = srv.finish();
    let seen: Vec<String> = reqs
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.method,
                r.path,
                r.header("authorization").unwrap_or("-"),
                r.header("if-match").unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            "POST /v1/auth - -",
            "GET /v1/rules Bearer abc -",
            "GET /v1/groups/web Bearer abc -",
            "PATCH /v1/groups/web Bearer abc \"3\"",
            "DELETE /v1/rules/7 Bearer abc -",
        ]
    );
}

#[test]
fn exit_codes_for_usage_unreachable_and_not_logged_in() {
    let home = tempfile::tempdir().unwrap();
    let o = palisade(home.path(), &["--help"], "");
    assert_eq!(o.status.code(), Some(0));
    assert!(
        text(&o.stdout).contains("6  cannot reach the server"),
        "{}",
        text(&o.stdout)
    );

    let o = palisade(home.path(), &["rules", "add", "--to", "web"], "");
    assert_eq!(o.status.code(), Some(2));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let o = palisade(
        home.path(),
        &["--url", &url, "--token", "t", "workloads"],
        "",
    );
    assert_eq!(o.status.code(), Some(6));
    assert!(
        text(&o.stderr).starts_with(&format!(
            "palisade: error: cannot reach the server at {url}: "
        )),
        "{}",
        text(&o.stderr)
    );

    let o = palisade(home.path(), &["--url", &url, "groups"], "");
    assert_eq!(o.status.code(), Some(3));

    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/palisade.toml");
    let o = palisade(
        home.path(),
        &["check", "--config", cfg.to_str().unwrap()],
        "",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}
