//! Human output of the client commands: aligned tables and short summaries, built as
//! strings (so they are tested) from the server's JSON. Fields are read leniently: a field
//! the server does not send shows as `-`, one it adds is ignored, so the CLI keeps working
//! while the API grows. `--json` bypasses all of this and prints the server's JSON.

use std::fmt::Write as _;

use serde_json::Value;

use crate::policy_code::{Change, ChangeOp};

/// Columns separated by two spaces, padded to the widest cell (by characters); the last
/// column is not padded. Headers are upper case as given.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let head: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A scalar field as text; `-` when missing or null, lists joined with `,`.
pub fn field(v: &Value, key: &str) -> String {
    text(v.get(key).unwrap_or(&Value::Null))
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".to_owned(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
        v => v.to_string(),
    }
}

fn is_true(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool) == Some(true)
}

/// `image=nginx*`, `name contains web`, joined with `, `.
pub fn criteria(v: &Value) -> String {
    let Some(list) = v.as_array().filter(|l| !l.is_empty()) else {
        return "-".to_owned();
    };
    list.iter()
        .map(|c| {
            let (k, op, val) = (field(c, "key"), field(c, "op"), field(c, "value"));
            if op == "=" || op == "!=" {
                format!("{k}{op}{val}")
            } else {
                format!("{k} {op} {val}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `palisade workloads`.
pub fn workloads(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|w| {
            let id: String = field(w, "id").chars().take(12).collect();
            let mut mode = field(w, "mode");
            if w.get("exempt").and_then(Value::as_bool) == Some(true) {
                mode.push_str(" (exempt)");
            }
            vec![
                id,
                field(w, "name"),
                field(w, "image"),
                field(w, "group"),
                mode,
                field(w, "plumbing"),
                field(w, "ips"),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "IMAGE", "GROUP", "MODE", "PLUMBING", "IPS"],
        &rows,
    )
}

/// `palisade groups list`.
pub fn groups(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|g| {
            vec![
                field(g, "name"),
                field(g, "network_mode"),
                field(g, "process_mode"),
                field(g, "file_mode"),
                if is_true(g, "learned") { "yes" } else { "no" }.to_owned(),
                criteria(g.get("criteria").unwrap_or(&Value::Null)),
            ]
        })
        .collect();
    table(
        &["NAME", "NETWORK", "PROCESS", "FILE", "LEARNED", "CRITERIA"],
        &rows,
    )
}

/// `palisade groups show NAME`: one `key: value` line per field, criteria one per line.
pub fn group(g: &Value) -> String {
    let mut out = String::new();
    for key in [
        "name",
        "network_mode",
        "process_mode",
        "file_mode",
        "learned",
        "comment",
    ] {
        let _ = writeln!(out, "{key:<13} {}", field(g, key));
    }
    let _ = writeln!(out, "criteria:");
    match g.get("criteria").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => {
            for c in list {
                let _ = writeln!(out, "  {}", criteria(&Value::Array(vec![c.clone()])));
            }
        }
        _ => out.push_str("  -\n"),
    }
    if let Some(members) = g.get("members").and_then(Value::as_array) {
        let _ = writeln!(out, "members ({}):", members.len());
        for m in members {
            let shown = if m.is_object() {
                let name = field(m, "name");
                let id: String = field(m, "id").chars().take(12).collect();
                format!("{id}  {name}")
            } else {
                text(m)
            };
            let _ = writeln!(out, "  {shown}");
        }
    }
    out
}

/// `palisade rules list`.
pub fn rules(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|r| {
            let mut flags = Vec::new();
            if is_true(r, "learned") {
                flags.push("learned");
            }
            if is_true(r, "disabled") {
                flags.push("disabled");
            }
            let ports = match r.get("ports") {
                Some(Value::Array(a)) if a.is_empty() => "any".to_owned(),
                _ => field(r, "ports"),
            };
            let apps = match r.get("apps") {
                Some(Value::Array(a)) if !a.is_empty() => field(r, "apps"),
                _ => "any".to_owned(),
            };
            vec![
                field(r, "id"),
                field(r, "priority"),
                field(r, "from"),
                field(r, "to"),
                ports,
                apps,
                field(r, "action"),
                if flags.is_empty() {
                    "-".to_owned()
                } else {
                    flags.join(",")
                },
            ]
        })
        .collect();
    table(
        &[
            "ID", "PRIO", "FROM", "TO", "PORTS", "APPS", "ACTION", "FLAGS",
        ],
        &rows,
    )
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds; the number itself when out of range.
pub fn time_ms(ms: i64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| ms.to_string())
}

fn event_cells(e: &Value) -> Vec<String> {
    let at = e
        .get("at_ms")
        .and_then(Value::as_i64)
        .map_or_else(|| "-".to_owned(), time_ms);
    let mut subject = field(e, "group");
    if let Some(w) = e.get("workload").and_then(Value::as_str) {
        subject = format!("{subject}/{w}");
    }
    vec![
        at,
        field(e, "id"),
        field(e, "kind"),
        field(e, "severity"),
        subject,
        field(e, "message"),
    ]
}

/// `palisade events`.
pub fn events(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items.iter().map(event_cells).collect();
    table(
        &[
            "TIME",
            "ID",
            "KIND",
            "SEVERITY",
            "GROUP/WORKLOAD",
            "MESSAGE",
        ],
        &rows,
    )
}

/// `palisade events --follow`: one line per event, same cells as the table.
pub fn event_line(e: &Value) -> String {
    let mut s = event_cells(e).join("  ");
    s.push('\n');
    s
}

/// Flattens nested JSON into `a.b.c  value` lines (arrays of objects by index), for
/// `palisade status`.
pub fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&key(k), v, out);
            }
        }
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            for (i, x) in a.iter().enumerate() {
                // Ports and workers usually have a name: use it rather than the index.
                match (x.get("name").and_then(Value::as_str), x) {
                    (Some(name), Value::Object(m)) => {
                        let mut rest = m.clone();
                        rest.remove("name");
                        flatten(&key(name), &Value::Object(rest), out);
                    }
                    _ => flatten(&key(&i.to_string()), x, out),
                }
            }
        }
        v => out.push((prefix.to_owned(), text(v))),
    }
}

/// `palisade status`: health first, then the stats flattened and aligned.
pub fn status(url: &str, health: &Value, stats: &Value) -> String {
    let health_text = match health {
        Value::Object(_) => {
            let mut f = Vec::new();
            flatten("", health, &mut f);
            f.into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
        v => text(v),
    };
    let mut out = format!("server   {url}\nhealth   {health_text}\n");
    if !stats.is_object() {
        let _ = writeln!(out, "stats    {}", text(stats));
        return out;
    }
    let mut f = Vec::new();
    flatten("", stats, &mut f);
    if !f.is_empty() {
        out.push_str("stats:\n");
        let w = f.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        for (k, v) in f {
            let _ = writeln!(out, "  {k:<w$}  {v}");
        }
    }
    out
}

/// `palisade import`: one line per change (`+` add, `-` remove, `~` change) and a summary.
pub fn diff(changes: &[Change], applied: bool) -> String {
    let mut out = String::new();
    for c in changes {
        let sign = match c.op {
            ChangeOp::Add => '+',
            ChangeOp::Remove => '-',
            ChangeOp::Change => '~',
        };
        let _ = writeln!(out, "{sign} {:<15} {}", c.kind.name(), c.name);
    }
    let n = changes.len();
    let s = if n == 1 { "" } else { "s" };
    let _ = match (n, applied) {
        (0, _) => writeln!(out, "no changes"),
        (_, true) => writeln!(out, "applied {n} change{s}"),
        (_, false) => writeln!(out, "{n} change{s}, nothing applied (dry run)"),
    };
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy_code::ChangeKind;

    #[test]
    fn tables_align_columns_and_leave_no_trailing_spaces() {
        let t = table(
            &["ID", "NAME", "X"],
            &[
                vec!["1".into(), "web".into(), "".into()],
                vec!["10001".into(), "é".into(), "z".into()],
            ],
        );
        assert_eq!(t, "ID     NAME  X\n1      web\n10001  é     z\n");
        assert_eq!(table(&["A"], &[]), "A\n");
    }

    #[test]
    fn group_and_rule_tables() {
        let g = json!([{"name": "web", "criteria": [{"key": "image", "op": "=", "value": "nginx*"},
            {"key": "name", "op": "contains", "value": "fe"}], "network_mode": "protect",
            "process_mode": "monitor", "file_mode": "discover", "learned": false}]);
        assert_eq!(
            groups(g.as_array().unwrap()),
            "NAME  NETWORK  PROCESS  FILE      LEARNED  CRITERIA\n\
             web   protect  monitor  discover  no       image=nginx*, name contains fe\n"
        );
        let r = json!([{"id": 10001, "from": "auto.client", "to": "auto.web", "ports": ["tcp/80", "tcp/8080"],
            "apps": ["http"], "action": "allow", "priority": 0, "learned": true, "disabled": false},
            {"id": 2, "from": "external", "to": "web", "ports": [], "apps": [], "action": "deny",
            "priority": 5, "learned": false, "disabled": true}]);
        assert_eq!(
            rules(r.as_array().unwrap()),
            "ID     PRIO  FROM         TO        PORTS            APPS  ACTION  FLAGS\n\
             10001  0     auto.client  auto.web  tcp/80,tcp/8080  http  allow   learned\n\
             2      5     external     web       any              any   deny    disabled\n"
        );
    }

    #[test]
    fn group_details_and_workloads() {
        let g = json!({"name": "db", "criteria": [], "network_mode": "monitor", "process_mode": "monitor",
            "file_mode": "protect", "learned": true, "members": [{"id": "0123456789abcdef", "name": "pg"}]});
        assert_eq!(
            group(&g),
            "name          db\nnetwork_mode  monitor\nprocess_mode  monitor\nfile_mode     protect\n\
             learned       true\ncomment       -\ncriteria:\n  -\nmembers (1):\n  0123456789ab  pg\n"
        );
        let w = json!([{"id": "0123456789abcdef", "name": "web-1", "image": "nginx:1.27", "group": "auto.nginx",
            "ips": ["198.18.0.5", "fd00::5"], "mode": "protect", "plumbing": "inline", "exempt": false}]);
        assert_eq!(
            workloads(w.as_array().unwrap()),
            "ID            NAME   IMAGE       GROUP       MODE     PLUMBING  IPS\n\
             0123456789ab  web-1  nginx:1.27  auto.nginx  protect  inline    198.18.0.5,fd00::5\n"
        );
    }

    #[test]
    fn events_show_utc_time_and_subject() {
        let e = json!({"id": 42, "at_ms": 1_700_000_000_123_i64, "kind": "network_violation",
            "severity": "critical", "group": "web", "workload": "web-1", "message": "denied tcp/22"});
        assert_eq!(
            event_line(&e),
            "2023-11-14T22:13:20.123Z  42  network_violation  critical  web/web-1  denied tcp/22\n"
        );
        assert_eq!(time_ms(0), "1970-01-01T00:00:00.000Z");
        let sys = json!({"id": 1, "at_ms": 0, "kind": "system", "severity": "info", "message": "started"});
        assert_eq!(
            events(&[sys]),
            "TIME                      ID  KIND    SEVERITY  GROUP/WORKLOAD  MESSAGE\n\
             1970-01-01T00:00:00.000Z  1   system  info      -               started\n"
        );
    }

    #[test]
    fn status_flattens_stats() {
        let stats = json!({"generation": 3, "ports": [{"name": "veth0", "rx": 10}], "sessions": {"active": 2}});
        assert_eq!(
            status("http://h", &json!({"status": "ok"}), &stats),
            "server   http://h\nhealth   status=ok\nstats:\n  generation       3\n  ports.veth0.rx   10\n  sessions.active  2\n"
        );
        assert_eq!(
            status("u", &json!("ok"), &Value::Null),
            "server   u\nhealth   ok\nstats    -\n"
        );
    }

    #[test]
    fn diff_lines_and_summary() {
        let c = |op, kind, name: &str| Change {
            op,
            kind,
            name: name.into(),
            before: None,
            after: None,
        };
        let changes = [
            c(ChangeOp::Add, ChangeKind::Group, "cache"),
            c(ChangeOp::Remove, ChangeKind::Rule, "2"),
            c(ChangeOp::Change, ChangeKind::ProcessProfile, "web"),
        ];
        assert_eq!(
            diff(&changes, false),
            "+ group           cache\n- rule            2\n~ process_profile web\n3 changes, nothing applied (dry run)\n"
        );
        assert_eq!(
            diff(&changes[..1], true).lines().last(),
            Some("applied 1 change")
        );
        assert_eq!(diff(&[], true), "no changes\n");
    }
}
