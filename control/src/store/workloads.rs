//! Workloads (declared or discovered) and key/value settings.
//!
//! Discovered workloads come and go with every container start and stop: their upserts and
//! removals write no event (discovery reports what matters as `system` events). Workloads
//! declared through the API or the configuration file are operator changes and are audited.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, Store, StoreError, audit, from_json, json_value, now_s, to_json};
use crate::model::{Event, Workload, WorkloadSource};

fn source_name(s: WorkloadSource) -> &'static str {
    match s {
        WorkloadSource::Config => "config",
        WorkloadSource::Api => "api",
        WorkloadSource::Discovered => "discovered",
    }
}

fn workload_row(c: &Connection, id: &str) -> Result<Option<Workload>> {
    let body: Option<String> = c
        .query_row("SELECT body FROM workloads WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    body.map(|b| from_json(&format!("workload {id}"), &b))
        .transpose()
}

impl Store {
    /// Inserts or replaces a workload. Returns the audit event for declared workloads,
    /// `None` for discovered ones and for an upsert that changed nothing.
    pub fn upsert_workload(&self, w: Workload, actor: &str) -> Result<Option<Event>> {
        w.validate()?;
        self.write(|tx| {
            let old = workload_row(tx, &w.id)?;
            if old.as_ref() == Some(&w) {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO workloads (id, source, body, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET source = excluded.source, body = excluded.body, updated_at = excluded.updated_at",
                params![w.id, source_name(w.source), to_json(&w)?, now_s()],
            )?;
            if w.source == WorkloadSource::Discovered {
                return Ok(None);
            }
            let verb = if old.is_some() { "updated" } else { "declared" };
            let group = (!w.group.is_empty()).then_some(w.group.as_str());
            audit(
                tx,
                actor,
                group,
                format!("workload {} {verb}", w.id),
                serde_json::json!({"before": old.as_ref().map(json_value), "after": json_value(&w)}),
            )
            .map(Some)
        })
    }

    /// Every workload, by id.
    pub fn workloads(&self) -> Result<Vec<Workload>> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT id, body FROM workloads ORDER BY id")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.iter()
                .map(|(id, b)| from_json(&format!("workload {id}"), b))
                .collect()
        })
    }

    /// One workload.
    pub fn workload(&self, id: &str) -> Result<Option<Workload>> {
        self.read(|c| workload_row(c, id))
    }

    /// Removes a workload; [`StoreError::NotFound`] when unknown. Audited unless it was
    /// discovered.
    pub fn remove_workload(&self, id: &str, actor: &str) -> Result<Option<Event>> {
        self.write(|tx| {
            let w = workload_row(tx, id)?
                .ok_or_else(|| StoreError::not_found(format!("workload {id}")))?;
            tx.execute("DELETE FROM workloads WHERE id = ?1", [id])?;
            if w.source == WorkloadSource::Discovered {
                return Ok(None);
            }
            audit(
                tx,
                actor,
                (!w.group.is_empty()).then_some(w.group.as_str()),
                format!("workload {id} removed"),
                serde_json::json!({"workload": json_value(&w)}),
            )
            .map(Some)
        })
    }

    /// A setting's value.
    pub fn setting(&self, key: &str) -> Result<Option<serde_json::Value>> {
        self.read(|c| {
            let v: Option<String> = c
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?;
            v.map(|v| from_json(&format!("setting {key}"), &v))
                .transpose()
        })
    }

    /// Sets a setting. Values end up in the audit log: settings hold no secrets.
    pub fn set_setting(&self, key: &str, value: serde_json::Value, actor: &str) -> Result<Event> {
        if key.is_empty() || key.len() > 128 {
            return Err(StoreError::invalid("key", "1-128 bytes"));
        }
        self.write(|tx| {
            let old: Option<String> = tx
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?;
            let old: Option<serde_json::Value> = old
                .map(|v| from_json(&format!("setting {key}"), &v))
                .transpose()?;
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, to_json(&value)?],
            )?;
            audit(
                tx,
                actor,
                None,
                format!("setting {key} changed"),
                serde_json::json!({"key": key, "before": old, "after": value}),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventKind;
    use crate::store::EventQuery;

    fn wl(id: &str, source: WorkloadSource) -> Workload {
        Workload {
            id: id.into(),
            name: format!("{id}-name"),
            image: "nginx:1.27".into(),
            labels: Default::default(),
            group: "auto.nginx".into(),
            ips: vec!["198.18.0.5".parse().unwrap()],
            macs: vec![],
            netns: None,
            veth: None,
            mode: Default::default(),
            plumbing: Default::default(),
            exempt: false,
            source,
        }
    }

    #[test]
    fn workloads_and_their_events() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(
            s.upsert_workload(wl("c1", WorkloadSource::Discovered), "system")
                .unwrap(),
            None
        );
        let mut changed = wl("c1", WorkloadSource::Discovered);
        changed.ips.push("198.18.0.6".parse().unwrap());
        assert_eq!(s.upsert_workload(changed.clone(), "system").unwrap(), None);
        assert_eq!(s.workload("c1").unwrap(), Some(changed));
        let ev = s
            .upsert_workload(wl("db1", WorkloadSource::Api), "alice")
            .unwrap()
            .unwrap();
        assert_eq!(ev.message, "workload db1 declared");
        assert_eq!(ev.group.as_deref(), Some("auto.nginx"));
        // Same again: nothing changed, no event.
        assert_eq!(
            s.upsert_workload(wl("db1", WorkloadSource::Api), "alice")
                .unwrap(),
            None
        );
        assert_eq!(s.workloads().unwrap().len(), 2);
        assert_eq!(s.remove_workload("c1", "system").unwrap(), None);
        assert!(s.remove_workload("db1", "alice").unwrap().is_some());
        assert!(matches!(
            s.remove_workload("db1", "alice"),
            Err(StoreError::NotFound { .. })
        ));
        assert!(s.workloads().unwrap().is_empty());
        let audits = s
            .events(&EventQuery {
                kinds: vec![EventKind::Audit],
                ..Default::default()
            })
            .unwrap()
            .0;
        assert_eq!(audits.len(), 2);
        assert!(matches!(
            s.upsert_workload(wl("bad id", WorkloadSource::Api), "a"),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn settings() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.setting("learning").unwrap(), None);
        let ev = s
            .set_setting("learning", serde_json::json!({"on": true}), "alice")
            .unwrap();
        assert_eq!(ev.details["before"], serde_json::Value::Null);
        s.set_setting("learning", serde_json::json!({"on": false}), "alice")
            .unwrap();
        assert_eq!(
            s.setting("learning").unwrap(),
            Some(serde_json::json!({"on": false}))
        );
    }
}
