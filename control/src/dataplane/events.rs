//! Dataplane events as control's events: violations become `network_violation`, threats
//! `threat`, lost events a `system` warning. Connection records are no events (they feed
//! [`crate::learn`] and the network graph).
//!
//! Severity: a violation is `warning` when the traffic was forwarded (discover, monitor) and
//! `critical` when it was dropped; a threat is always `critical`. The event's group and
//! workload name the end the event is about: the workload end whose mode the violation was
//! judged under (the server first: an ingress violation belongs to the protected server),
//! else any workload end (server first), else the server's group.

use dataplane::report::{Endpoint, Event, Threat, Verdict, Violation};
use serde_json::json;

use crate::learn::{Context, Party};
use crate::model::{EventKind, NewEvent, Severity};

fn proto_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        n => format!("ip/{n}"),
    }
}

fn endpoint_json(ep: &Endpoint, p: &Party) -> serde_json::Value {
    json!({
        "addr": ep.addr.to_string(),
        "workload": p.workload(),
        "group": p.group(),
    })
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Allowed => "allowed",
        Verdict::Alerted => "alerted",
        Verdict::Denied => "denied",
    }
}

/// Which end an event is about: see the module documentation.
fn subject<'a>(
    client: &'a Party,
    server: &'a Party,
    mode: Option<dataplane::policy::Mode>,
) -> &'a Party {
    let is_wl = |p: &Party| matches!(p, Party::Workload { .. });
    let mode_of = |p: &Party| match p {
        Party::Workload { mode, .. } => *mode,
        _ => None,
    };
    if let Some(m) = mode {
        if is_wl(server) && mode_of(server) == Some(m) {
            return server;
        }
        if is_wl(client) && mode_of(client) == Some(m) {
            return client;
        }
    }
    if !is_wl(server) && is_wl(client) {
        client
    } else {
        server
    }
}

fn violation(v: &Violation, ctx: &Context) -> NewEvent {
    let client = ctx.resolve(&v.client);
    let server = ctx.resolve(&v.server);
    let about = subject(&client, &server, Some(v.mode));
    let severity = if v.verdict == Verdict::Denied {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let why = match v.rule {
        Some(id) => format!("deny rule {id}"),
        None => "no rule allows it".to_owned(),
    };
    let app = if v.app == "unknown" {
        String::new()
    } else {
        format!(" ({})", v.app)
    };
    NewEvent {
        at_ms: i64::try_from(v.at_ms).unwrap_or(i64::MAX),
        kind: EventKind::NetworkViolation,
        severity,
        group: Some(about.group().to_owned()),
        workload: about.workload().map(str::to_owned),
        actor: None,
        message: format!(
            "{} {} [{}] -> {} [{}]{app} {} in {} mode: {why}",
            proto_name(v.proto),
            v.client.addr,
            client.group(),
            v.server.addr,
            server.group(),
            verdict_name(v.verdict),
            v.mode.name(),
        ),
        details: json!({
            "client": endpoint_json(&v.client, &client),
            "server": endpoint_json(&v.server, &server),
            "proto": v.proto,
            "app": v.app,
            "rule": v.rule,
            "mode": v.mode.name(),
            "verdict": verdict_name(v.verdict),
        }),
    }
}

fn threat(t: &Threat, ctx: &Context) -> NewEvent {
    let client = ctx.resolve(&t.client);
    let server = ctx.resolve(&t.server);
    let about = subject(&client, &server, None);
    let action = if t.verdict == Verdict::Denied {
        "deny"
    } else {
        "alert"
    };
    let detail = if t.detail.is_empty() {
        String::new()
    } else {
        format!(": {}", t.detail)
    };
    NewEvent {
        at_ms: i64::try_from(t.at_ms).unwrap_or(i64::MAX),
        kind: EventKind::Threat,
        severity: Severity::Critical,
        group: Some(about.group().to_owned()),
        workload: about.workload().map(str::to_owned),
        actor: None,
        message: format!(
            "threat {} {} ({action}): {} {} [{}] -> {} [{}]{detail}",
            t.id,
            t.name,
            proto_name(t.proto),
            t.client.addr,
            client.group(),
            t.server.addr,
            server.group(),
        ),
        details: json!({
            "threat_id": t.id,
            "name": t.name,
            "kind": t.kind,
            "action": action,
            "detail": t.detail,
            "client": endpoint_json(&t.client, &client),
            "server": endpoint_json(&t.server, &server),
            "proto": t.proto,
            "verdict": verdict_name(t.verdict),
        }),
    }
}

/// Control's event for a dataplane event, if it is one (connection records are not).
/// `now_ms` dates events the dataplane sends without a time (`overflow`).
pub fn from_dataplane(ev: &Event, ctx: &Context, now_ms: i64) -> Option<NewEvent> {
    match ev {
        Event::Connection(_) => None,
        Event::Violation(v) => Some(violation(v, ctx)),
        Event::Threat(t) => Some(threat(t, ctx)),
        Event::Overflow { lost } => Some(NewEvent {
            at_ms: now_ms,
            details: json!({ "lost": lost }),
            ..NewEvent::system(
                Severity::Warning,
                format!("the dataplane dropped {lost} events (a queue was full)"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::policy::Mode;
    use dataplane::report::{ConnectionRecord, ThreatKind};

    fn ctx() -> Context {
        crate::learn::test_context(
            &[
                ("c1", "auto.client", Mode::Monitor, "198.18.0.1"),
                ("web1", "auto.web", Mode::Protect, "198.18.0.2"),
            ],
            &[],
        )
    }

    fn ep(addr: &str) -> Endpoint {
        Endpoint {
            addr: addr.parse().unwrap(),
            workload: None,
            group: "external".into(),
        }
    }

    #[test]
    fn violations_are_warnings_when_forwarded_and_critical_when_dropped() {
        let v = Violation {
            at_ms: 1_764_412_801_200,
            client: ep("198.18.0.1:40122"),
            server: ep("198.18.0.2:22"),
            proto: 6,
            app: "unknown".into(),
            rule: None,
            mode: Mode::Protect,
            verdict: Verdict::Denied,
        };
        let e = from_dataplane(&Event::Violation(v.clone()), &ctx(), 0).unwrap();
        assert_eq!(e.kind, EventKind::NetworkViolation);
        assert_eq!(e.severity, Severity::Critical);
        assert_eq!(e.at_ms, 1_764_412_801_200);
        assert_eq!(e.group.as_deref(), Some("auto.web"));
        assert_eq!(e.workload.as_deref(), Some("web1"));
        assert_eq!(
            e.message,
            "tcp 198.18.0.1:40122 [auto.client] -> 198.18.0.2:22 [auto.web] denied in protect mode: no rule allows it"
        );
        assert_eq!(e.details["client"]["workload"], "c1");
        assert_eq!(e.details["server"]["group"], "auto.web");
        assert_eq!(e.details["verdict"], "denied");
        assert_eq!(e.details["rule"], serde_json::Value::Null);

        // Monitor-mode egress to external: a warning about the client.
        let v = Violation {
            server: ep("203.0.113.5:443"),
            app: "tls".into(),
            rule: Some(7),
            mode: Mode::Monitor,
            verdict: Verdict::Alerted,
            ..v
        };
        let e = from_dataplane(&Event::Violation(v), &ctx(), 0).unwrap();
        assert_eq!(e.severity, Severity::Warning);
        assert_eq!(
            (e.group.as_deref(), e.workload.as_deref()),
            (Some("auto.client"), Some("c1"))
        );
        assert_eq!(
            e.message,
            "tcp 198.18.0.1:40122 [auto.client] -> 203.0.113.5:443 [external] (tls) alerted in monitor mode: deny rule 7"
        );
    }

    #[test]
    fn threats_are_critical_with_id_name_and_action() {
        let t = Threat {
            at_ms: 5,
            kind: ThreatKind::InvalidTcpFlags,
            id: ThreatKind::InvalidTcpFlags.id(),
            name: ThreatKind::InvalidTcpFlags.name().into(),
            client: ep("203.0.113.9:40123"),
            server: ep("198.18.0.2:80"),
            proto: 6,
            verdict: Verdict::Denied,
            detail: "Xmas scan".into(),
        };
        let e = from_dataplane(&Event::Threat(t), &ctx(), 0).unwrap();
        assert_eq!(e.kind, EventKind::Threat);
        assert_eq!(e.severity, Severity::Critical);
        assert_eq!(e.workload.as_deref(), Some("web1"));
        assert_eq!(e.details["threat_id"], 1006);
        assert_eq!(e.details["name"], "Invalid TCP flags");
        assert_eq!(e.details["kind"], "invalid_tcp_flags");
        assert_eq!(e.details["action"], "deny");
        assert_eq!(
            e.message,
            "threat 1006 Invalid TCP flags (deny): tcp 203.0.113.9:40123 [external] -> 198.18.0.2:80 [auto.web]: Xmas scan"
        );
    }

    #[test]
    fn connections_are_no_events_and_overflow_is_a_system_warning() {
        let c = ConnectionRecord {
            client: ep("198.18.0.1:0"),
            server: ep("198.18.0.2:80"),
            proto: 6,
            app: "http".into(),
            sessions: 1,
            packets: 1,
            bytes: 1,
            first_seen_ms: 1,
            last_seen_ms: 1,
            verdict: Verdict::Allowed,
            rule: None,
            mode: Mode::Discover,
            answered: true,
        };
        assert_eq!(from_dataplane(&Event::Connection(c), &ctx(), 9), None);
        let e = from_dataplane(&Event::Overflow { lost: 12 }, &ctx(), 9).unwrap();
        assert_eq!(
            (e.kind, e.severity, e.at_ms),
            (EventKind::System, Severity::Warning, 9)
        );
        assert_eq!(e.details["lost"], 12);
    }
}
