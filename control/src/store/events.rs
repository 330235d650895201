//! Events: append (one or a burst per transaction), query with filters and a cursor, and
//! retention by count and age.
//!
//! Ids increase with every append (`AUTOINCREMENT`: an id is never reused, even after
//! retention removed the newest rows), so the id is the cursor.

use rusqlite::types::Value;
use rusqlite::{Connection, params, params_from_iter};

use super::{Result, Store, StoreError, from_json, now_ms, to_json};
use crate::model::{Event, EventKind, NewEvent, Severity};

/// Largest page.
pub const MAX_LIMIT: u32 = 1000;
/// Page size when none is asked for.
pub const DEFAULT_LIMIT: u32 = 100;

/// Which events to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Any of these kinds; empty means all.
    pub kinds: Vec<EventKind>,
    /// Of this group.
    pub group: Option<String>,
    /// Of this workload.
    pub workload: Option<String>,
    /// At or after (unix ms).
    pub since_ms: Option<i64>,
    /// Before (unix ms, exclusive).
    pub until_ms: Option<i64>,
    /// Cursor: continue after this id in the listing order (exclusive) — ids above it
    /// oldest-first, ids below it newest-first.
    pub after_id: Option<i64>,
    /// Page size, 1..=1000.
    pub limit: u32,
    /// Newest first (the console) instead of oldest first (tailing).
    pub newest_first: bool,
}

impl Default for EventQuery {
    fn default() -> Self {
        Self {
            kinds: Vec::new(),
            group: None,
            workload: None,
            since_ms: None,
            until_ms: None,
            after_id: None,
            limit: DEFAULT_LIMIT,
            newest_first: false,
        }
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

fn parse_severity(s: &str) -> Result<Severity> {
    match s {
        "info" => Ok(Severity::Info),
        "warning" => Ok(Severity::Warning),
        "critical" => Ok(Severity::Critical),
        _ => Err(StoreError::Corrupt(format!("event severity `{s}`"))),
    }
}

/// Inserts one event (inside the caller's transaction).
pub(crate) fn insert(c: &Connection, e: &NewEvent) -> Result<Event> {
    let details = to_json(&e.details)?;
    c.execute(
        "INSERT INTO events (at_ms, kind, severity, grp, workload, actor, message, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            e.at_ms,
            e.kind.name(),
            severity_name(e.severity),
            e.group,
            e.workload,
            e.actor,
            e.message,
            details
        ],
    )?;
    Ok(Event {
        id: c.last_insert_rowid(),
        at_ms: e.at_ms,
        kind: e.kind,
        severity: e.severity,
        group: e.group.clone(),
        workload: e.workload.clone(),
        actor: e.actor.clone(),
        message: e.message.clone(),
        details: e.details.clone(),
    })
}

type EventRow = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
);

fn decode(r: EventRow) -> Result<Event> {
    let (id, at_ms, kind, severity, group, workload, actor, message, details) = r;
    Ok(Event {
        id,
        at_ms,
        kind: kind
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("event {id}: kind `{kind}`")))?,
        severity: parse_severity(&severity)?,
        group,
        workload,
        actor,
        message,
        details: from_json(&format!("event {id} details"), &details)?,
    })
}

impl Store {
    /// Appends one event.
    pub fn append_event(&self, e: NewEvent) -> Result<Event> {
        let mut v = self.append_events(vec![e])?;
        v.pop()
            .ok_or_else(|| StoreError::Corrupt("no event appended".into()))
    }

    /// Appends a burst in one transaction, ids increasing in input order. Runs retention
    /// every [`super::PRUNE_EVERY`] appended events.
    pub fn append_events(&self, events: Vec<NewEvent>) -> Result<Vec<Event>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let out: Vec<Event> = self.write(|tx| events.iter().map(|e| insert(tx, e)).collect())?;
        let n = u64::try_from(out.len()).unwrap_or(u64::MAX);
        if self.inner.count_appended(n) {
            let removed = self.prune_events(now_ms())?;
            if removed > 0 {
                tracing::debug!(removed, "event retention");
            }
        }
        Ok(out)
    }

    /// One page of events and the cursor of the next page (`None` at the end).
    pub fn events(&self, q: &EventQuery) -> Result<(Vec<Event>, Option<i64>)> {
        if q.limit == 0 || q.limit > MAX_LIMIT {
            return Err(StoreError::invalid(
                "limit",
                format!("{} is not within 1..={MAX_LIMIT}", q.limit),
            ));
        }
        let mut sql = String::from(
            "SELECT id, at_ms, kind, severity, grp, workload, actor, message, details FROM events WHERE 1",
        );
        let mut args: Vec<Value> = Vec::new();
        if !q.kinds.is_empty() {
            sql.push_str(" AND kind IN (");
            for (i, k) in q.kinds.iter().enumerate() {
                sql.push_str(if i == 0 { "?" } else { ", ?" });
                args.push(Value::Text(k.name().to_owned()));
            }
            sql.push(')');
        }
        if let Some(g) = &q.group {
            sql.push_str(" AND grp = ?");
            args.push(Value::Text(g.clone()));
        }
        if let Some(w) = &q.workload {
            sql.push_str(" AND workload = ?");
            args.push(Value::Text(w.clone()));
        }
        if let Some(t) = q.since_ms {
            sql.push_str(" AND at_ms >= ?");
            args.push(Value::Integer(t));
        }
        if let Some(t) = q.until_ms {
            sql.push_str(" AND at_ms < ?");
            args.push(Value::Integer(t));
        }
        if let Some(id) = q.after_id {
            sql.push_str(if q.newest_first {
                " AND id < ?"
            } else {
                " AND id > ?"
            });
            args.push(Value::Integer(id));
        }
        sql.push_str(if q.newest_first {
            " ORDER BY id DESC"
        } else {
            " ORDER BY id ASC"
        });
        // One more than asked tells whether there is a next page.
        sql.push_str(" LIMIT ?");
        args.push(Value::Integer(i64::from(q.limit) + 1));
        let rows = self.read(|c| {
            let mut stmt = c.prepare(&sql)?;
            Ok(stmt
                .query_map(params_from_iter(args), |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<EventRow>>>()?)
        })?;
        let more = rows.len() > q.limit as usize;
        let out = rows
            .into_iter()
            .take(q.limit as usize)
            .map(decode)
            .collect::<Result<Vec<_>>>()?;
        let next = if more { out.last().map(|e| e.id) } else { None };
        Ok((out, next))
    }

    /// Retention: removes events older than `event_max_age_days` before `now_ms` and the
    /// oldest beyond `event_max_count`; how many went.
    pub fn prune_events(&self, now_ms: i64) -> Result<u64> {
        let s = self.inner.settings;
        let cutoff = now_ms.saturating_sub(i64::from(s.event_max_age_days) * 86_400_000);
        let keep = i64::try_from(s.event_max_count).unwrap_or(i64::MAX);
        self.write(|tx| {
            let aged = tx.execute("DELETE FROM events WHERE at_ms < ?1", [cutoff])?;
            let counted = tx.execute(
                "DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                [keep],
            )?;
            Ok(u64::try_from(aged + counted).unwrap_or(u64::MAX))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreSettings;

    fn ev(at_ms: i64, kind: EventKind, group: Option<&str>, workload: Option<&str>) -> NewEvent {
        NewEvent {
            at_ms,
            kind,
            severity: Severity::Warning,
            group: group.map(Into::into),
            workload: workload.map(Into::into),
            actor: None,
            message: format!("{kind} at {at_ms}"),
            details: serde_json::json!({"at": at_ms}),
        }
    }

    #[test]
    fn append_and_filter() {
        let s = Store::open_in_memory().unwrap();
        let one = s
            .append_event(ev(1, EventKind::System, None, None))
            .unwrap();
        assert_eq!(one.id, 1);
        let burst = s
            .append_events(vec![
                ev(10, EventKind::NetworkViolation, Some("web"), Some("w1")),
                ev(20, EventKind::ProcessViolation, Some("web"), Some("w2")),
                ev(30, EventKind::NetworkViolation, Some("db"), Some("w3")),
                ev(40, EventKind::Threat, None, Some("w1")),
            ])
            .unwrap();
        assert_eq!(
            burst.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        let ids = |q: EventQuery| {
            s.events(&q)
                .unwrap()
                .0
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(EventQuery::default()), vec![1, 2, 3, 4, 5]);
        assert_eq!(
            ids(EventQuery {
                kinds: vec![EventKind::NetworkViolation, EventKind::Threat],
                ..Default::default()
            }),
            vec![2, 4, 5]
        );
        assert_eq!(
            ids(EventQuery {
                group: Some("web".into()),
                ..Default::default()
            }),
            vec![2, 3]
        );
        assert_eq!(
            ids(EventQuery {
                workload: Some("w1".into()),
                newest_first: true,
                ..Default::default()
            }),
            vec![5, 2]
        );
        assert_eq!(
            ids(EventQuery {
                since_ms: Some(20),
                until_ms: Some(40),
                ..Default::default()
            }),
            vec![3, 4]
        );
        let all = s.events(&EventQuery::default()).unwrap().0;
        assert_eq!(all[1], burst[0]);
        assert_eq!(all[1].details["at"], 10);
        assert!(matches!(
            s.events(&EventQuery {
                limit: 0,
                ..Default::default()
            }),
            Err(StoreError::Invalid(_))
        ));
        assert!(
            s.events(&EventQuery {
                limit: 1001,
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn cursor_walks_both_ways() {
        let s = Store::open_in_memory().unwrap();
        s.append_events(
            (0..7)
                .map(|i| ev(i, EventKind::System, None, None))
                .collect(),
        )
        .unwrap();
        for newest_first in [false, true] {
            let mut seen = Vec::new();
            let mut cursor = None;
            let mut pages = 0;
            loop {
                let (page, next) = s
                    .events(&EventQuery {
                        after_id: cursor,
                        limit: 3,
                        newest_first,
                        ..Default::default()
                    })
                    .unwrap();
                pages += 1;
                seen.extend(page.iter().map(|e| e.id));
                match next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
            let mut want: Vec<i64> = (1..=7).collect();
            if newest_first {
                want.reverse();
            }
            assert_eq!(seen, want);
            assert_eq!(pages, 3);
        }
        // A page that ends exactly at the last event says so.
        let (page, next) = s
            .events(&EventQuery {
                after_id: Some(4),
                limit: 3,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.len(), 3);
        assert_eq!(next, None);
    }

    #[test]
    fn retention_by_age_and_count() {
        let s = Store::open_in_memory_with(StoreSettings {
            event_max_count: 3,
            event_max_age_days: 1,
        })
        .unwrap();
        let day = 86_400_000;
        let now = 10 * day;
        s.append_events(vec![
            ev(now - 2 * day, EventKind::System, None, None),
            ev(now - day - 1, EventKind::System, None, None),
            ev(now - day, EventKind::System, None, None),
            ev(now - 5, EventKind::System, None, None),
            ev(now - 4, EventKind::System, None, None),
            ev(now - 3, EventKind::System, None, None),
        ])
        .unwrap();
        // Two too old, then one beyond the count of 3.
        assert_eq!(s.prune_events(now).unwrap(), 3);
        let left: Vec<i64> = s
            .events(&EventQuery::default())
            .unwrap()
            .0
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, vec![4, 5, 6]);
        assert_eq!(s.prune_events(now).unwrap(), 0);
        // Ids are never reused.
        let e = s
            .append_event(ev(now, EventKind::System, None, None))
            .unwrap();
        assert_eq!(e.id, 7);
    }

    #[test]
    fn appends_run_retention() {
        let s = Store::open_in_memory_with(StoreSettings {
            event_max_count: 10,
            event_max_age_days: 30,
        })
        .unwrap();
        let now = now_ms();
        let burst: Vec<NewEvent> = (0..super::super::PRUNE_EVERY)
            .map(|_| ev(now, EventKind::System, None, None))
            .collect();
        s.append_events(burst).unwrap();
        let n: i64 = s
            .read(|c| Ok(c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 10);
    }
}
