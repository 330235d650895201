//! The API client commands: one function per subcommand, each turning arguments into REST
//! requests ([`client`](super::client)) and answers into output ([`output`](super::output)).
//!
//! Everything a command touches outside itself comes in through [`Context`] (URL, token,
//! session file, environment) and [`Io`] (stdin, stdout, stderr), so tests drive the
//! commands in-process against a fake server.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Value, json};

use super::client::{Body, Call, Client, cursor, encode};
use super::error::{CliError, Exit};
use super::session::{self, Session};
use super::sse::SseParser;
use super::{
    ApiArgs, ApiCommand, DEFAULT_URL, EventsArgs, GroupsCmd, LoginArgs, ModeArgs, ModeKind,
    PasswdArgs, RulesCmd, output,
};
use crate::model::{self, Criterion, EventKind, Group, PortSpec};
use crate::policy_code::{Change, PolicyDocument};

/// Standard streams (or test buffers).
#[allow(missing_debug_implementations)]
pub struct Io<'a> {
    /// Input (passwords, `import -`).
    pub input: &'a mut dyn BufRead,
    /// Results.
    pub out: &'a mut dyn Write,
    /// Notes and errors.
    pub err: &'a mut dyn Write,
}

/// Where to connect and as whom, resolved once from flags, environment and session file.
#[derive(Debug, Clone)]
pub struct Context {
    /// API base URL: `--url`, else the session's, else [`DEFAULT_URL`].
    pub url: String,
    /// Bearer token: `--token`, else `PALISADE_TOKEN`, else the session's when it belongs
    /// to `url` and has not expired.
    pub token: Option<String>,
    /// `--json`.
    pub json: bool,
    /// The session file.
    pub session_path: Option<PathBuf>,
    /// The session, when one is stored.
    pub session: Option<Session>,
    /// `PALISADE_PASSWORD`.
    pub password_env: Option<String>,
    /// Unix seconds now.
    pub now: i64,
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

impl Context {
    /// Resolves the context from flags, explicit environment values and the session file.
    pub fn resolve(
        args: &ApiArgs,
        token_env: Option<String>,
        password_env: Option<String>,
        session_path: Option<PathBuf>,
        now: i64,
    ) -> Result<Self, CliError> {
        let session = match &session_path {
            Some(p) => session::load(p)?,
            None => None,
        };
        let url = args
            .url
            .clone()
            .or_else(|| session.as_ref().map(|s| s.url.clone()))
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        let url = url.trim_end_matches('/').to_owned();
        // A session token only ever goes to the server that issued it.
        let from_session = session
            .as_ref()
            .filter(|s| same_url(&s.url, &url) && !s.expired(now))
            .map(|s| s.token.clone());
        let token = args
            .token
            .clone()
            .or(token_env.filter(|t| !t.is_empty()))
            .or(from_session);
        Ok(Self {
            url,
            token,
            json: args.json,
            session_path,
            session,
            password_env: password_env.filter(|p| !p.is_empty()),
            now,
        })
    }

    /// From this process's environment (`PALISADE_TOKEN`, `PALISADE_PASSWORD`, `HOME`,
    /// `XDG_CONFIG_HOME`) and clock.
    pub fn from_env(args: &ApiArgs) -> Result<Self, CliError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Self::resolve(
            args,
            std::env::var("PALISADE_TOKEN").ok(),
            std::env::var("PALISADE_PASSWORD").ok(),
            session::default_path(),
            now,
        )
    }

    /// The session of this URL, expired or not.
    fn own_session(&self) -> Option<&Session> {
        self.session
            .as_ref()
            .filter(|s| same_url(&s.url, &self.url))
    }

    fn client(&self) -> Result<Client, CliError> {
        if let (None, Some(s)) = (
            &self.token,
            self.own_session().filter(|s| s.expired(self.now)),
        ) {
            return Err(CliError::Expired {
                url: self.url.clone(),
                expires_at: s.expires_text(),
            });
        }
        Ok(Client::new(&self.url, self.token.clone()))
    }
}

/// Runs a client command from `main`: resolves the context from the environment, uses the
/// process's standard streams, prints the error chain, returns the exit code.
pub fn main(args: &ApiArgs, command: ApiCommand) -> u8 {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let mut io = Io {
        input: &mut input,
        out: &mut out,
        err: &mut err,
    };
    let result = Context::from_env(args).and_then(|ctx| run(&ctx, command, &mut io));
    report(result, io.err)
}

/// The exit code of `result`, after writing its error (with every cause) to `err`.
pub fn report(result: Result<(), CliError>, err: &mut dyn Write) -> u8 {
    match result {
        Ok(()) => Exit::Ok.code(),
        Err(e) => {
            let _ = writeln!(err, "palisade: error: {}", e.chain());
            e.exit().code()
        }
    }
}

/// Runs one client command.
pub fn run(ctx: &Context, command: ApiCommand, io: &mut Io<'_>) -> Result<(), CliError> {
    match command {
        ApiCommand::Login(a) => login(ctx, &a, io),
        ApiCommand::Passwd(a) => passwd(ctx, &a, io),
        ApiCommand::Logout => logout(ctx, io),
        ApiCommand::Status => status(ctx, io),
        ApiCommand::Workloads => {
            let items = ctx.client()?.list("/v1/workloads")?;
            print_list(ctx, io, &items, output::workloads)
        }
        ApiCommand::Groups { action } => groups(ctx, action.unwrap_or(GroupsCmd::List), io),
        ApiCommand::Rules { action } => rules(ctx, action.unwrap_or(RulesCmd::List), io),
        ApiCommand::Mode(a) => mode(ctx, &a, io),
        ApiCommand::Events(a) if a.follow => follow(ctx, &a, io),
        ApiCommand::Events(a) => events(ctx, &a, io),
        ApiCommand::Export { output } => export(ctx, output.as_deref(), io),
        ApiCommand::Import { file, dry_run } => import(ctx, &file, dry_run, io),
    }
}

fn print_json(io: &mut Io<'_>, v: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(v).map_err(std::io::Error::other)?;
    writeln!(io.out, "{text}")?;
    Ok(())
}

fn print_list(
    ctx: &Context,
    io: &mut Io<'_>,
    items: &[Value],
    human: fn(&[Value]) -> String,
) -> Result<(), CliError> {
    if ctx.json {
        print_json(io, &json!({"items": items, "next": null}))
    } else {
        io.out.write_all(human(items).as_bytes())?;
        Ok(())
    }
}

/// The first line of input, without its line ending.
fn read_line(io: &mut Io<'_>, what: &str) -> Result<String, CliError> {
    let mut line = String::new();
    io.input
        .read_line(&mut line)
        .map_err(|source| CliError::Read {
            path: PathBuf::from("<stdin>"),
            source,
        })?;
    let line = line.trim_end_matches(['\n', '\r']).to_owned();
    if line.is_empty() {
        return Err(CliError::Usage(format!("no {what} on stdin")));
    }
    Ok(line)
}

fn login(ctx: &Context, a: &LoginArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let path = ctx.session_path.clone().ok_or_else(|| {
        CliError::Usage("no place for the session file: set HOME or XDG_CONFIG_HOME".to_owned())
    })?;
    let password = if a.password_stdin {
        read_line(io, "password")?
    } else {
        ctx.password_env.clone().ok_or_else(|| {
            CliError::Usage(
                "no password: pass --password-stdin and write it to stdin, or set PALISADE_PASSWORD"
                    .to_owned(),
            )
        })?
    };
    let client = Client::new(&ctx.url, None);
    let body = json!({"username": a.username, "password": password});
    let call = Call::new("POST", "/v1/auth").json(&body).anonymous();
    let answer = client.send_json(&call)?;
    let Some(token) = answer.get("token").and_then(Value::as_str) else {
        return Err(CliError::BadResponse {
            method: "POST",
            path: "/v1/auth".to_owned(),
            reason: "no `token` in the answer".to_owned(),
        });
    };
    let s = Session {
        url: ctx.url.clone(),
        username: a.username.clone(),
        token: token.to_owned(),
        expires_at: answer.get("expires_at").cloned().unwrap_or(Value::Null),
    };
    session::save(&path, &s)?;
    if ctx.json {
        print_json(io, &answer)?;
    } else {
        writeln!(
            io.out,
            "logged in to {} as {} (session expires {}, saved in {})",
            ctx.url,
            a.username,
            s.expires_text(),
            path.display()
        )?;
    }
    if answer.get("must_change_password").and_then(Value::as_bool) == Some(true) {
        writeln!(
            io.err,
            "palisade: the password of {} must be changed before anything else: run `palisade passwd` (new password on stdin)",
            a.username
        )?;
    }
    Ok(())
}

fn passwd(ctx: &Context, a: &PasswdArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let name = a
        .username
        .clone()
        .or_else(|| {
            ctx.own_session()
                .map(|s| s.username.clone())
                .filter(|u| !u.is_empty())
        })
        .ok_or_else(|| {
            CliError::Usage("whose password? pass --username (or log in first)".to_owned())
        })?;
    let client = ctx.client()?;
    let password = read_line(io, "new password")?;
    let path = format!("/v1/users/{}", encode(&name));
    let body = json!({"password": password});
    let answer = client.send_json(&Call::new("PATCH", &path).json(&body))?;
    if ctx.json {
        print_json(io, &answer)
    } else {
        writeln!(io.out, "password of {name} changed")?;
        Ok(())
    }
}

fn logout(ctx: &Context, io: &mut Io<'_>) -> Result<(), CliError> {
    let own = ctx.own_session().is_some();
    let revoked = match &ctx.token {
        None => Ok(()),
        Some(_) => match ctx.client()?.send(&Call::new("DELETE", "/v1/auth")) {
            // An expired or revoked token is logged out already.
            Err(CliError::Api { status: 401, .. }) => Ok(()),
            r => r.map(drop),
        },
    };
    // The local session goes even when the server cannot be told: the user asked to forget it.
    if let (true, Some(p)) = (own, &ctx.session_path) {
        session::remove(p)?;
    }
    revoked?;
    if !ctx.json {
        if ctx.token.is_none() && !own {
            writeln!(io.out, "not logged in to {}", ctx.url)?;
        } else {
            writeln!(io.out, "logged out of {}", ctx.url)?;
        }
    }
    Ok(())
}

fn status(ctx: &Context, io: &mut Io<'_>) -> Result<(), CliError> {
    let client = Client::new(&ctx.url, ctx.token.clone());
    let call = Call::new("GET", "/healthz").anonymous();
    let reply = client.send(&call)?;
    let health = serde_json::from_str(&reply.body)
        .unwrap_or_else(|_| Value::String(reply.body.trim().to_owned()));
    let stats = ctx
        .client()
        .and_then(|c| c.send_json(&Call::new("GET", "/v1/stats")));
    match stats {
        Ok(stats) if ctx.json => print_json(
            io,
            &json!({"url": ctx.url, "health": health, "stats": stats}),
        ),
        Ok(stats) => {
            io.out
                .write_all(output::status(&ctx.url, &health, &stats).as_bytes())?;
            Ok(())
        }
        Err(e) => {
            if !ctx.json {
                io.out
                    .write_all(output::status(&ctx.url, &health, &Value::Null).as_bytes())?;
            }
            Err(e)
        }
    }
}

/// Parses `KEY OP VALUE` triples into criteria.
fn parse_criteria(flat: &[String]) -> Result<Vec<Criterion>, CliError> {
    flat.chunks(3)
        .map(|c| match c {
            [k, op, v] => serde_json::from_value(json!({"key": k, "op": op, "value": v})).map_err(|_| {
                CliError::Usage(format!(
                    "bad criterion `{k} {op} {v}`: KEY is image, name, label, namespace or address; OP is =, !=, contains, prefix or regex"
                ))
            }),
            _ => Err(CliError::Usage("--criterion takes KEY OP VALUE".to_owned())),
        })
        .collect()
}

fn groups(ctx: &Context, cmd: GroupsCmd, io: &mut Io<'_>) -> Result<(), CliError> {
    let client = ctx.client()?;
    match cmd {
        GroupsCmd::List => {
            let items = client.list("/v1/groups")?;
            print_list(ctx, io, &items, output::groups)
        }
        GroupsCmd::Show { name } => {
            let g =
                client.send_json(&Call::new("GET", &format!("/v1/groups/{}", encode(&name))))?;
            if ctx.json {
                return print_json(io, &g);
            }
            io.out.write_all(output::group(&g).as_bytes())?;
            Ok(())
        }
        GroupsCmd::Add {
            name,
            criteria,
            mode,
            comment,
        } => {
            let mode = mode.map(super::ModeName::mode).unwrap_or_default();
            let group = Group {
                name,
                criteria: parse_criteria(&criteria)?,
                network_mode: mode,
                process_mode: mode,
                file_mode: mode,
                learned: false,
                comment,
            };
            group.validate().map_err(|source| CliError::Invalid {
                what: "group",
                source,
            })?;
            let body = serde_json::to_value(&group).map_err(std::io::Error::other)?;
            let answer = client.send_json(&Call::new("POST", "/v1/groups").json(&body))?;
            if ctx.json {
                return print_json(io, &answer);
            }
            writeln!(io.out, "group {} created", group.name)?;
            Ok(())
        }
        GroupsCmd::Delete { name } => {
            let path = format!("/v1/groups/{}", encode(&name));
            let answer = client.send_json(&Call::new("DELETE", &path))?;
            if ctx.json {
                return print_json(io, &answer);
            }
            writeln!(io.out, "group {name} deleted")?;
            Ok(())
        }
    }
}

fn rule_body(
    from: &str,
    to: &str,
    ports: &[String],
    apps: &[String],
    deny: bool,
    priority: i32,
    id: Option<u32>,
) -> Result<Value, CliError> {
    for (flag, g) in [("--from", from), ("--to", to)] {
        if !model::special::ALL.contains(&g) {
            model::validate_name(flag, g).map_err(|source| CliError::Invalid {
                what: "rule",
                source,
            })?;
        }
    }
    let ports = ports
        .iter()
        .map(|p| {
            PortSpec::from_str(p)
                .map(|p| p.to_string())
                .map_err(|e| CliError::Usage(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for a in apps {
        let known =
            dataplane::dpi::App::from_name(a).is_some_and(|x| x != dataplane::dpi::App::Unknown);
        if !known {
            let names: Vec<&str> = dataplane::dpi::App::ALL
                .iter()
                .skip(1)
                .map(|x| x.name())
                .collect();
            return Err(CliError::Usage(format!(
                "unknown application `{a}` (known: {})",
                names.join(", ")
            )));
        }
    }
    let mut body = json!({
        "from": from,
        "to": to,
        "ports": ports,
        "apps": apps,
        "action": if deny { "deny" } else { "allow" },
        "priority": priority,
    });
    if let (Some(id), Some(m)) = (id, body.as_object_mut()) {
        m.insert("id".to_owned(), Value::from(id));
    }
    Ok(body)
}

fn rules(ctx: &Context, cmd: RulesCmd, io: &mut Io<'_>) -> Result<(), CliError> {
    match cmd {
        RulesCmd::List => {
            let items = ctx.client()?.list("/v1/rules")?;
            print_list(ctx, io, &items, output::rules)
        }
        RulesCmd::Add {
            from,
            to,
            ports,
            apps,
            deny,
            priority,
            id,
        } => {
            let body = rule_body(&from, &to, &ports, &apps, deny, priority, id)?;
            let answer = ctx
                .client()?
                .send_json(&Call::new("POST", "/v1/rules").json(&body))?;
            if ctx.json {
                return print_json(io, &answer);
            }
            let shown = if answer.is_object() { &answer } else { &body };
            writeln!(io.out, "rule {} added", output::field(shown, "id"))?;
            Ok(())
        }
        RulesCmd::Delete { id } => {
            let answer = ctx
                .client()?
                .send_json(&Call::new("DELETE", &format!("/v1/rules/{id}")))?;
            if ctx.json {
                return print_json(io, &answer);
            }
            writeln!(io.out, "rule {id} deleted")?;
            Ok(())
        }
    }
}

fn mode(ctx: &Context, a: &ModeArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let client = ctx.client()?;
    let path = format!("/v1/groups/{}", encode(&a.group));
    let current = client.send(&Call::new("GET", &path))?;
    let m = a.mode.mode().name();
    let fields: &[&str] = match a.kind {
        ModeKind::Network => &["network_mode"],
        ModeKind::Process => &["process_mode"],
        ModeKind::File => &["file_mode"],
        ModeKind::All => &["network_mode", "process_mode", "file_mode"],
    };
    let body = Value::Object(
        fields
            .iter()
            .map(|f| ((*f).to_owned(), Value::from(m)))
            .collect(),
    );
    let mut call = Call::new("PATCH", &path).json(&body);
    call.if_match = current.etag.as_deref();
    let answer = client.send_json(&call)?;
    if ctx.json {
        return print_json(io, &answer);
    }
    // The answer is the updated group; without one, what was asked for is what holds.
    let before = current
        .json(&Call::new("GET", &path))
        .unwrap_or(Value::Null);
    let after = if answer.is_object() { &answer } else { &body };
    let pick = |k: &str| {
        after
            .get(k)
            .or_else(|| before.get(k))
            .map_or_else(|| "-".to_owned(), |v| output::field(&json!({ k: v }), k))
    };
    writeln!(
        io.out,
        "group {}: network {}, process {}, file {}",
        a.group,
        pick("network_mode"),
        pick("process_mode"),
        pick("file_mode")
    )?;
    Ok(())
}

fn event_query(a: &EventsArgs, with_page: bool) -> Result<String, CliError> {
    let mut q: Vec<String> = Vec::new();
    if let Some(k) = &a.kind {
        EventKind::from_str(k).map_err(|e| CliError::Usage(e.to_string()))?;
        q.push(format!("kind={}", encode(k)));
    }
    if let Some(g) = &a.group {
        q.push(format!("group={}", encode(g)));
    }
    if with_page {
        if let Some(c) = &a.after {
            q.push(format!("after={}", encode(c)));
        }
        if let Some(n) = a.limit {
            q.push(format!("limit={n}"));
        }
    }
    Ok(if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    })
}

fn events(ctx: &Context, a: &EventsArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let path = format!("/v1/events{}", event_query(a, true)?);
    let page = ctx.client()?.send_json(&Call::new("GET", &path))?;
    if ctx.json {
        return print_json(io, &page);
    }
    let items =
        page.get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| CliError::BadResponse {
                method: "GET",
                path: path.clone(),
                reason: "no `items` list".to_owned(),
            })?;
    io.out.write_all(output::events(items).as_bytes())?;
    if let Some(next) = cursor(&page) {
        writeln!(io.err, "more: palisade events --after {next}")?;
    }
    Ok(())
}

/// `events --follow`: reads the SSE stream, prints each matching event as it arrives
/// (`--json`: one compact JSON object per line), stops after `--limit` events. When the
/// server ends the stream it reconnects once a second with `Last-Event-ID`; a failed
/// reconnection ends the command (exit 6).
fn follow(ctx: &Context, a: &EventsArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let client = ctx.client()?;
    let path = format!("/v1/events/stream{}", event_query(a, false)?);
    let mut parser = SseParser::new();
    let mut last_id = a.after.clone();
    let mut printed: u64 = 0;
    loop {
        let stream = client.stream(&path, last_id.as_deref())?;
        for line in stream.lines() {
            let Ok(line) = line else { break };
            let Some(ev) = parser.line(&line) else {
                continue;
            };
            let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
                writeln!(
                    io.err,
                    "palisade: skipping an event that is not JSON: {}",
                    ev.data
                )?;
                continue;
            };
            // The server filters too; checking here keeps the output right if it does not.
            let matches = |key: &str, want: &Option<String>| {
                want.as_deref()
                    .is_none_or(|w| data.get(key).and_then(Value::as_str) == Some(w))
            };
            if !matches("kind", &a.kind) || !matches("group", &a.group) {
                continue;
            }
            if ctx.json {
                writeln!(io.out, "{data}")?;
            } else {
                io.out.write_all(output::event_line(&data).as_bytes())?;
            }
            io.out.flush()?;
            printed += 1;
            if a.limit.is_some_and(|n| printed >= u64::from(n)) {
                return Ok(());
            }
        }
        last_id = parser.last_id().map(str::to_owned).or(last_id);
        parser = SseParser::new();
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn export(ctx: &Context, to: Option<&Path>, io: &mut Io<'_>) -> Result<(), CliError> {
    let mut call = Call::new("GET", "/v1/policy/export");
    call.accept = "application/yaml";
    let reply = ctx.client()?.send(&call)?;
    let text = if ctx.json {
        let doc = PolicyDocument::from_yaml(&reply.body).map_err(|e| CliError::BadResponse {
            method: "GET",
            path: call.path.to_owned(),
            reason: e.to_string(),
        })?;
        let mut t = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
        t.push('\n');
        t
    } else {
        reply.body
    };
    match to {
        None => io.out.write_all(text.as_bytes())?,
        Some(p) => {
            std::fs::write(p, text.as_bytes()).map_err(|source| CliError::Write {
                path: p.to_path_buf(),
                source,
            })?;
            writeln!(io.err, "policy written to {}", p.display())?;
        }
    }
    Ok(())
}

fn import(ctx: &Context, file: &Path, dry_run: bool, io: &mut Io<'_>) -> Result<(), CliError> {
    let read = |source| CliError::Read {
        path: file.to_path_buf(),
        source,
    };
    let text = if file == Path::new("-") {
        let mut t = String::new();
        io.input.read_to_string(&mut t).map_err(read)?;
        t
    } else {
        std::fs::read_to_string(file).map_err(read)?
    };
    // Checked here first so that a broken file never reaches the server and its problems
    // are all listed at once.
    let doc = PolicyDocument::from_yaml(&text).map_err(|source| CliError::Policy {
        path: file.to_path_buf(),
        source,
    })?;
    doc.validate().map_err(|errors| CliError::InvalidPolicy {
        path: file.to_path_buf(),
        errors,
    })?;
    let path = format!("/v1/policy/import?dry_run={dry_run}");
    let mut call = Call::new("POST", &path);
    call.body = Body::Yaml(&text);
    let answer = ctx.client()?.send_json(&call)?;
    if ctx.json {
        return print_json(io, &answer);
    }
    let bad = |reason: String| CliError::BadResponse {
        method: "POST",
        path: path.clone(),
        reason,
    };
    let changes: Vec<Change> =
        serde_json::from_value(answer.get("diff").cloned().unwrap_or(Value::Null))
            .map_err(|e| bad(format!("`diff`: {e}")))?;
    let applied = answer
        .get("applied")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad("no `applied`".to_owned()))?;
    io.out
        .write_all(output::diff(&changes, applied).as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use clap::Parser;

    use super::*;
    use crate::cli::Cli;
    use crate::cli::fake_http::{Canned, FakeServer, Recorded};

    fn ctx(url: &str, token: Option<&str>) -> Context {
        Context {
            url: url.to_owned(),
            token: token.map(str::to_owned),
            json: false,
            session_path: None,
            session: None,
            password_env: None,
            now: 0,
        }
    }

    /// Runs `palisade ARGS` in-process: (exit code, stdout, stderr).
    fn run_with(ctx: &Context, args: &[&str], stdin: &str) -> (u8, String, String) {
        let cli =
            Cli::try_parse_from(std::iter::once("palisade").chain(args.iter().copied())).unwrap();
        let (mut input, mut out, mut err) = (stdin.as_bytes(), Vec::new(), Vec::new());
        let mut io = Io {
            input: &mut input,
            out: &mut out,
            err: &mut err,
        };
        let crate::cli::Command::Api(command) = cli.command else {
            panic!("not an API command: {args:?}");
        };
        let result = run(ctx, command, &mut io);
        let code = report(result, io.err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn body(r: &Recorded) -> Value {
        serde_json::from_str(&r.body).unwrap()
    }

    #[test]
    fn login_stores_a_private_session_and_says_when_the_password_must_change() {
        let srv = FakeServer::start(vec![Canned::json(
            200,
            r#"{"token":"t0k","expires_at":"2030-01-01T00:00:00Z","must_change_password":true}"#,
        )]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palisade/session.json");
        let mut c = ctx(&srv.url(), None);
        c.session_path = Some(path.clone());
        let (code, out, err) = run_with(&c, &["login", "--password-stdin", "-u", "root"], "pw\n");
        assert_eq!(code, 0, "{err}");
        assert!(
            out.starts_with(&format!("logged in to {} as root", srv.url())),
            "{out}"
        );
        assert!(err.contains("run `palisade passwd`"), "{err}");
        let url = srv.url();
        let reqs = srv.finish();
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("POST", "/v1/auth")
        );
        assert_eq!(reqs[0].header("authorization"), None);
        assert_eq!(
            body(&reqs[0]),
            json!({"username": "root", "password": "pw"})
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let s = session::load(&path).unwrap().unwrap();
        assert_eq!(
            (s.url, s.username, s.token),
            (url, "root".into(), "t0k".into())
        );
    }

    #[test]
    fn login_needs_a_password_and_a_bad_one_is_exit_3() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ctx("http://127.0.0.1:9", None);
        c.session_path = Some(dir.path().join("s.json"));
        let (code, _, err) = run_with(&c, &["login"], "");
        assert_eq!(code, 2, "{err}");
        let srv = FakeServer::start(vec![Canned::json(
            401,
            r#"{"error":{"code":"unauthorized","message":"bad user name or password"}}"#,
        )]);
        c.url = srv.url();
        c.password_env = Some("wrong".into());
        let (code, _, err) = run_with(&c, &["login"], "");
        assert_eq!(code, 3);
        assert_eq!(
            err,
            "palisade: error: POST /v1/auth: HTTP 401 unauthorized: bad user name or password\n"
        );
        assert!(!dir.path().join("s.json").exists());
    }

    #[test]
    fn session_tokens_only_go_to_their_server_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        let s = Session {
            url: "http://a:1/".into(),
            username: "admin".into(),
            token: "sess".into(),
            expires_at: Value::from(1000),
        };
        session::save(&path, &s).unwrap();
        let args = |url: Option<&str>, token: Option<&str>| ApiArgs {
            url: url.map(str::to_owned),
            json: false,
            token: token.map(str::to_owned),
        };
        let c = Context::resolve(&args(None, None), None, None, Some(path.clone()), 10).unwrap();
        assert_eq!(
            (c.url.as_str(), c.token.as_deref()),
            ("http://a:1", Some("sess"))
        );
        let c = Context::resolve(
            &args(Some("http://b:1"), None),
            None,
            None,
            Some(path.clone()),
            10,
        )
        .unwrap();
        assert_eq!((c.url.as_str(), c.token), ("http://b:1", None));
        let c = Context::resolve(
            &args(None, None),
            Some("env".into()),
            None,
            Some(path.clone()),
            10,
        )
        .unwrap();
        assert_eq!(c.token.as_deref(), Some("env"));
        let c = Context::resolve(
            &args(None, Some("flag")),
            Some("env".into()),
            None,
            Some(path.clone()),
            10,
        )
        .unwrap();
        assert_eq!(c.token.as_deref(), Some("flag"));
        let c = Context::resolve(&args(None, None), None, None, Some(path.clone()), 1000).unwrap();
        assert_eq!(c.token, None);
        let (code, _, err) = run_with(&c, &["groups"], "");
        assert_eq!(code, 3);
        assert!(
            err.contains("expired at 1000: run `palisade login`"),
            "{err}"
        );
        let c = Context::resolve(&args(None, None), None, None, None, 0).unwrap();
        assert_eq!(c.url, DEFAULT_URL);
        let (code, _, err) = run_with(&c, &["rules"], "");
        assert_eq!(code, 3);
        assert!(
            err.contains("not logged in to http://127.0.0.1:10443"),
            "{err}"
        );
    }

    #[test]
    fn mode_patches_with_the_etag_of_a_fresh_get() {
        let group = r#"{"name":"web","criteria":[],"network_mode":"monitor","process_mode":"monitor","file_mode":"monitor","learned":false}"#;
        let after = group.replace(
            "\"network_mode\":\"monitor\"",
            "\"network_mode\":\"protect\"",
        );
        let srv = FakeServer::start(vec![
            Canned::json(200, group).etag("W/\"5\""),
            Canned::json(200, &after),
        ]);
        let c = ctx(&srv.url(), Some("k"));
        let (code, out, err) = run_with(&c, &["mode", "web", "protect", "--kind", "network"], "");
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out,
            "group web: network protect, process monitor, file monitor\n"
        );
        let reqs = srv.finish();
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("GET", "/v1/groups/web")
        );
        assert_eq!(
            (reqs[1].method.as_str(), reqs[1].path.as_str()),
            ("PATCH", "/v1/groups/web")
        );
        assert_eq!(reqs[1].header("if-match"), Some("W/\"5\""));
        assert_eq!(reqs[1].header("authorization"), Some("Bearer k"));
        assert_eq!(body(&reqs[1]), json!({"network_mode": "protect"}));
    }

    #[test]
    fn mode_all_and_a_stale_etag() {
        let srv = FakeServer::start(vec![
            Canned::json(200, r#"{"name":"db"}"#),
            Canned::json(
                412,
                r#"{"error":{"code":"precondition_failed","message":"stale"}}"#,
            ),
        ]);
        let c = ctx(&srv.url(), Some("k"));
        let (code, _, _) = run_with(&c, &["mode", "db", "discover"], "");
        assert_eq!(code, 5);
        let reqs = srv.finish();
        assert_eq!(reqs[1].header("if-match"), None);
        assert_eq!(
            body(&reqs[1]),
            json!({"network_mode": "discover", "process_mode": "discover", "file_mode": "discover"})
        );
    }

    #[test]
    fn groups_list_show_add_delete() {
        let srv = FakeServer::start(vec![
            Canned::json(
                200,
                r#"{"items":[{"name":"web","criteria":[{"key":"image","op":"=","value":"nginx*"}],"network_mode":"discover","process_mode":"discover","file_mode":"discover","learned":false}],"next":null}"#,
            ),
            Canned::json(
                404,
                r#"{"error":{"code":"not_found","message":"no group `x`"}}"#,
            ),
            Canned::json(201, r#"{"name":"api"}"#),
            Canned::text(204, "application/json", ""),
        ]);
        let c = ctx(&srv.url(), Some("k"));
        let (code, out, _) = run_with(&c, &["groups"], "");
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "NAME  NETWORK   PROCESS   FILE      LEARNED  CRITERIA\nweb   discover  discover  discover  no       image=nginx*\n"
        );
        let (code, _, err) = run_with(&c, &["groups", "show", "x"], "");
        assert_eq!(
            (code, err.as_str()),
            (
                4,
                "palisade: error: GET /v1/groups/x: HTTP 404 not_found: no group `x`\n"
            )
        );
        // Rejected locally: nothing is sent.
        let (code, _, err) = run_with(
            &c,
            &["groups", "add", "bad", "--criterion", "colour", "=", "red"],
            "",
        );
        assert_eq!(code, 2, "{err}");
        let (code, _, err) = run_with(
            &c,
            &[
                "groups",
                "add",
                "bad",
                "--criterion",
                "address",
                "=",
                "nope",
            ],
            "",
        );
        assert_eq!(code, 2);
        assert!(err.contains("invalid group: criteria[0].value"), "{err}");
        let (code, out, err) = run_with(
            &c,
            &[
                "groups",
                "add",
                "api",
                "--criterion",
                "label",
                "=",
                "app=api",
                "--criterion",
                "namespace",
                "=",
                "shop",
                "--mode",
                "monitor",
            ],
            "",
        );
        assert_eq!((code, out.as_str()), (0, "group api created\n"), "{err}");
        let (code, out, _) = run_with(&c, &["groups", "delete", "api"], "");
        assert_eq!((code, out.as_str()), (0, "group api deleted\n"));
        let reqs = srv.finish();
        let lines: Vec<(String, String)> = reqs
            .iter()
            .map(|r| (r.method.clone(), r.path.clone()))
            .collect();
        assert_eq!(
            lines,
            [
                ("GET".into(), "/v1/groups".into()),
                ("GET".into(), "/v1/groups/x".into()),
                ("POST".into(), "/v1/groups".into()),
                ("DELETE".into(), "/v1/groups/api".into()),
            ]
        );
        assert_eq!(
            body(&reqs[2]),
            json!({"name": "api", "criteria": [{"key": "label", "op": "=", "value": "app=api"},
                {"key": "namespace", "op": "=", "value": "shop"}], "network_mode": "monitor",
                "process_mode": "monitor", "file_mode": "monitor", "learned": false})
        );
    }

    #[test]
    fn rules_add_sends_the_contract_shape_and_checks_locally() {
        let srv = FakeServer::start(vec![
            Canned::json(201, r#"{"id":12,"from":"web","to":"db"}"#),
            Canned::json(
                409,
                r#"{"error":{"code":"conflict","message":"rule 3 exists"}}"#,
            ),
        ]);
        let c = ctx(&srv.url(), Some("k"));
        let (code, _, err) = run_with(
            &c,
            &[
                "rules", "add", "--from", "web", "--to", "db", "--port", "tcp/0",
            ],
            "",
        );
        assert_eq!(code, 2);
        assert!(err.contains("bad port spec `tcp/0`"), "{err}");
        let (code, _, err) = run_with(
            &c,
            &[
                "rules", "add", "--from", "web", "--to", "db", "--app", "gopher",
            ],
            "",
        );
        assert_eq!(code, 2);
        assert!(err.contains("unknown application `gopher`"), "{err}");
        let (code, out, err) = run_with(
            &c,
            &[
                "rules",
                "add",
                "--from",
                "web",
                "--to",
                "db",
                "--port",
                "tcp/5432",
                "--port",
                "udp/1000-2000",
                "--app",
                "postgresql",
                "--priority",
                "-3",
            ],
            "",
        );
        assert_eq!((code, out.as_str()), (0, "rule 12 added\n"), "{err}");
        let (code, _, _) = run_with(
            &c,
            &[
                "rules", "add", "--from", "external", "--to", "db", "--deny", "--id", "3",
            ],
            "",
        );
        assert_eq!(code, 5);
        let reqs = srv.finish();
        assert_eq!(reqs.len(), 2);
        assert_eq!(
            body(&reqs[0]),
            json!({"from": "web", "to": "db", "ports": ["tcp/5432", "udp/1000-2000"], "apps": ["postgresql"],
                "action": "allow", "priority": -3})
        );
        assert_eq!(
            body(&reqs[1]),
            json!({"id": 3, "from": "external", "to": "db", "ports": [], "apps": [], "action": "deny", "priority": 0})
        );
    }

    #[test]
    fn import_checks_the_file_then_prints_the_server_diff() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("p.yaml");
        let text = "version: 1\ngroups:\n  - name: web\n    criteria: [{key: image, op: '=', value: 'nginx*'}]\n";
        std::fs::write(&good, text).unwrap();
        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            "version: 1\nrules:\n  - {id: 1, from: web, to: ghost, action: allow}\n",
        )
        .unwrap();
        let ugly = dir.path().join("ugly.yaml");
        std::fs::write(&ugly, "version: 1\ngroup: []\n").unwrap();
        let srv = FakeServer::start(vec![Canned::json(
            200,
            r#"{"applied":false,"diff":[{"op":"add","kind":"group","name":"web","before":null,"after":{"name":"web"}}]}"#,
        )]);
        let c = ctx(&srv.url(), Some("k"));
        let (code, _, err) = run_with(&c, &["import", bad.to_str().unwrap()], "");
        assert_eq!(code, 2);
        assert!(
            err.ends_with("bad.yaml: 1 problem(s):\n  rules[0].from: unknown group `web`\n"),
            "{err}"
        );
        let (code, _, err) = run_with(&c, &["import", ugly.to_str().unwrap()], "");
        assert_eq!(code, 2);
        assert!(
            err.contains("unknown field `group`") && err.contains("line 2 column 1"),
            "{err}"
        );
        let (code, out, err) = run_with(&c, &["import", good.to_str().unwrap(), "--dry-run"], "");
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out,
            "+ group           web\n1 change, nothing applied (dry run)\n"
        );
        let reqs = srv.finish();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].path, "/v1/policy/import?dry_run=true");
        assert_eq!(reqs[0].header("content-type"), Some("application/yaml"));
        assert_eq!(reqs[0].body, text);
    }

    #[test]
    fn export_writes_yaml_or_json() {
        let yaml = "version: 1\ngroups: []\nrules: []\n";
        let srv = FakeServer::start(vec![
            Canned::text(200, "application/yaml", yaml),
            Canned::text(200, "application/yaml", yaml),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.yaml");
        let mut c = ctx(&srv.url(), Some("k"));
        let (code, out, err) = run_with(&c, &["export", "-o", file.to_str().unwrap()], "");
        assert_eq!((code, out.as_str()), (0, ""), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), yaml);
        c.json = true;
        let (code, out, _) = run_with(&c, &["export"], "");
        assert_eq!(code, 0);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["version"], 1);
        let reqs = srv.finish();
        assert_eq!(reqs[0].header("accept"), Some("application/yaml"));
        assert_eq!(reqs[0].path, "/v1/policy/export");
    }

    #[test]
    fn events_page_and_follow() {
        let ev = |id: i64, kind: &str| {
            format!(
                r#"{{"id":{id},"at_ms":0,"kind":"{kind}","severity":"info","group":"web","message":"m{id}"}}"#
            )
        };
        let stream = format!(
            ": hello\n\nid: 5\nevent: audit\ndata: {}\n\nid: 6\nevent: system\ndata: {}\n\nid: 7\nevent: audit\ndata: {}\n\n",
            ev(5, "audit"),
            ev(6, "system"),
            ev(7, "audit")
        );
        let srv = FakeServer::start(vec![
            Canned::json(
                200,
                &format!(r#"{{"items":[{}],"next":"9"}}"#, ev(5, "audit")),
            ),
            Canned::text(200, "text/event-stream", &stream),
        ]);
        let mut c = ctx(&srv.url(), Some("k"));
        let (code, out, err) = run_with(
            &c,
            &[
                "events", "--kind", "audit", "--group", "web", "--limit", "1",
            ],
            "",
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.lines().nth(1).unwrap().contains("m5"), "{out}");
        assert_eq!(err, "more: palisade events --after 9\n");
        c.json = true;
        let (code, out, err) = run_with(
            &c,
            &["events", "--follow", "--kind", "audit", "--limit", "2"],
            "",
        );
        assert_eq!(code, 0, "{err}");
        let ids: Vec<i64> = out
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids, [5, 7]);
        let reqs = srv.finish();
        assert_eq!(reqs[0].path, "/v1/events?kind=audit&group=web&limit=1");
        assert_eq!(reqs[1].path, "/v1/events/stream?kind=audit");
        assert_eq!(reqs[1].header("accept"), Some("text/event-stream"));
        let (code, _, _) = run_with(&c, &["events", "--kind", "nope"], "");
        assert_eq!(code, 2);
    }

    #[test]
    fn logout_revokes_and_forgets_the_session() {
        let srv = FakeServer::start(vec![Canned::text(204, "application/json", "")]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let s = Session {
            url: srv.url(),
            username: "admin".into(),
            token: "sess".into(),
            expires_at: Value::Null,
        };
        session::save(&path, &s).unwrap();
        let args = ApiArgs::default();
        let c = Context::resolve(&args, None, None, Some(path.clone()), 0).unwrap();
        let (code, out, _) = run_with(&c, &["logout"], "");
        assert_eq!((code, out), (0, format!("logged out of {}\n", srv.url())));
        assert!(!path.exists());
        let reqs = srv.finish();
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("DELETE", "/v1/auth")
        );
        assert_eq!(reqs[0].header("authorization"), Some("Bearer sess"));
    }

    #[test]
    fn passwd_patches_the_session_user() {
        let srv = FakeServer::start(vec![Canned::json(
            200,
            r#"{"name":"admin","role":"admin"}"#,
        )]);
        let mut c = ctx(&srv.url(), Some("k"));
        c.session = Some(Session {
            url: srv.url(),
            username: "admin".into(),
            token: "k".into(),
            expires_at: Value::Null,
        });
        let (code, _, _) = run_with(&c, &["passwd"], "");
        assert_eq!(code, 2);
        let (code, out, err) = run_with(&c, &["passwd"], "n3w-secret\n");
        assert_eq!(
            (code, out.as_str()),
            (0, "password of admin changed\n"),
            "{err}"
        );
        let reqs = srv.finish();
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("PATCH", "/v1/users/admin")
        );
        assert_eq!(body(&reqs[0]), json!({"password": "n3w-secret"}));
    }

    #[test]
    fn status_shows_health_and_stats() {
        let srv = FakeServer::start(vec![
            Canned::text(200, "text/plain", "ok\n"),
            Canned::json(200, r#"{"dataplane":{"generation":4,"sessions":12}}"#),
        ]);
        let c = ctx(&srv.url(), Some("k"));
        let (code, out, err) = run_with(&c, &["status"], "");
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out,
            format!(
                "server   {}\nhealth   ok\nstats:\n  dataplane.generation  4\n  dataplane.sessions    12\n",
                srv.url()
            )
        );
        let reqs = srv.finish();
        assert_eq!(reqs[0].path, "/healthz");
        assert_eq!(reqs[0].header("authorization"), None);
        assert_eq!(reqs[1].path, "/v1/stats");
        assert_eq!(reqs[1].header("authorization"), Some("Bearer k"));
    }
}
