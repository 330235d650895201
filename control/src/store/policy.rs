//! The policy: groups, network rules, process profiles and file rules, one by one or all at
//! once ([`PolicySnapshot`], policy as code).
//!
//! Rows keep the model types as JSON (`body`) next to the columns queries need (names, ids,
//! order, the duplicate key). Rules are listed in evaluation order: `priority` descending,
//! then list order (`position`, appended at the end).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Result, Store, StoreError, audit, from_json, json_value, to_json};
use crate::model::{
    AUTO_PREFIX, Event, FIRST_LEARNED_RULE_ID, FileRule, Group, Invalid, Mode, ProcessEntry, Rule,
    special, validate_name, validate_rule,
};

/// The whole policy, as exported and imported.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySnapshot {
    /// Groups, by name.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Network rules in evaluation order.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Process profile of each group that has one.
    #[serde(default)]
    pub process_profiles: BTreeMap<String, Vec<ProcessEntry>>,
    /// File rules of each group that has some.
    #[serde(default)]
    pub file_rules: BTreeMap<String, Vec<FileRule>>,
}

/// What makes two rules the same: ends, ports and apps as sets, action.
fn dup_key(r: &Rule) -> Result<String> {
    let mut ports: BTreeSet<String> = r.ports.iter().map(ToString::to_string).collect();
    if ports.is_empty() {
        ports.insert("any".into());
    }
    let apps: BTreeSet<&str> = r.apps.iter().map(|a| a.name()).collect();
    Ok(format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        r.from,
        r.to,
        ports.into_iter().collect::<Vec<_>>().join(","),
        apps.into_iter().collect::<Vec<_>>().join(","),
        to_json(&r.action)?
    ))
}

fn rule_id(id: i64) -> Result<u32> {
    u32::try_from(id).map_err(|_| StoreError::Corrupt(format!("rule id {id}")))
}

fn group_row(c: &Connection, name: &str) -> Result<Option<(Group, i64)>> {
    let row: Option<(String, i64)> = c
        .query_row(
            "SELECT body, version FROM groups WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(body, v)| Ok((from_json(&format!("group {name}"), &body)?, v)))
        .transpose()
}

fn all_groups(c: &Connection) -> Result<Vec<(Group, i64)>> {
    let mut stmt = c.prepare("SELECT name, body, version FROM groups ORDER BY name")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(name, body, v)| Ok((from_json(&format!("group {name}"), &body)?, v)))
        .collect()
}

fn group_exists(c: &Connection, name: &str) -> Result<bool> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM groups WHERE name = ?1)",
        [name],
        |r| r.get(0),
    )?)
}

fn all_rules(c: &Connection) -> Result<Vec<(Rule, i64)>> {
    let mut stmt =
        c.prepare("SELECT id, body, version FROM rules ORDER BY priority DESC, position")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(id, body, v)| decode_rule(id, &body).map(|r| (r, v)))
        .collect()
}

fn decode_rule(id: i64, body: &str) -> Result<Rule> {
    let r: Rule = from_json(&format!("rule {id}"), body)?;
    if i64::from(r.id) != id {
        return Err(StoreError::Corrupt(format!(
            "rule {id} stored with id {}",
            r.id
        )));
    }
    Ok(r)
}

fn rule_row(c: &Connection, id: u32) -> Result<Option<(Rule, i64)>> {
    let row: Option<(String, i64)> = c
        .query_row("SELECT body, version FROM rules WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    row.map(|(body, v)| decode_rule(i64::from(id), &body).map(|r| (r, v)))
        .transpose()
}

/// The id of an existing rule that means the same as `key`, other than `except`.
fn duplicate_of(c: &Connection, key: &str, except: u32) -> Result<Option<u32>> {
    let id: Option<i64> = c
        .query_row(
            "SELECT id FROM rules WHERE dup_key = ?1 AND id != ?2 LIMIT 1",
            params![key, except],
            |r| r.get(0),
        )
        .optional()?;
    id.map(rule_id).transpose()
}

/// The first free id above the highest in use in the rule's range (manual `1..10000`,
/// learned `10000..`), else the lowest gap.
fn next_free(used: &BTreeSet<u32>, learned: bool) -> Option<u32> {
    let (lo, hi) = if learned {
        (FIRST_LEARNED_RULE_ID, u32::MAX)
    } else {
        (1, FIRST_LEARNED_RULE_ID - 1)
    };
    match used.range(lo..=hi).next_back() {
        None => Some(lo),
        Some(&max) if max < hi => Some(max + 1),
        Some(_) => (lo..=hi).find(|i| !used.contains(i)),
    }
}

fn next_id(c: &Connection, learned: bool) -> Result<u32> {
    let (lo, hi) = if learned {
        (FIRST_LEARNED_RULE_ID, u32::MAX)
    } else {
        (1, FIRST_LEARNED_RULE_ID - 1)
    };
    let max: Option<i64> = c.query_row(
        "SELECT max(id) FROM rules WHERE id BETWEEN ?1 AND ?2",
        [lo, hi],
        |r| r.get(0),
    )?;
    let max = max.map(rule_id).transpose()?;
    let found = match max {
        None => Some(lo),
        Some(m) if m < hi => Some(m + 1),
        Some(_) => {
            let mut stmt = c.prepare("SELECT id FROM rules WHERE id BETWEEN ?1 AND ?2")?;
            let used = stmt
                .query_map([lo, hi], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .map(rule_id)
                .collect::<Result<BTreeSet<u32>>>()?;
            next_free(&used, learned)
        }
    };
    found.ok_or_else(|| {
        StoreError::Conflict(format!(
            "no free {} rule id left",
            if learned { "learned" } else { "manual" }
        ))
    })
}

fn insert_rule(c: &Connection, r: &Rule, position: i64, version: i64) -> Result<()> {
    c.execute(
        "INSERT INTO rules (id, position, priority, from_group, to_group, dup_key, body, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            r.id,
            position,
            r.priority,
            r.from,
            r.to,
            dup_key(r)?,
            to_json(r)?,
            version
        ],
    )?;
    Ok(())
}

fn next_position(c: &Connection) -> Result<i64> {
    Ok(c.query_row(
        "SELECT coalesce(max(position), 0) + 1 FROM rules",
        [],
        |r| r.get(0),
    )?)
}

/// Checks a rule's ends against the groups in the database.
fn check_rule_ends(c: &Connection, r: &Rule) -> Result<()> {
    let mut known = HashSet::new();
    for g in [&r.from, &r.to] {
        if group_exists(c, g)? {
            known.insert(g.clone());
        }
    }
    validate_rule(r, |g| known.contains(g))?;
    Ok(())
}

/// A per-group list the store keeps (process profiles, file rules): a table keyed by the
/// group and the entry's identity columns, holding the entry as JSON.
trait GroupEntry: Serialize + serde::de::DeserializeOwned {
    /// Table.
    const TABLE: &'static str;
    /// Identity columns.
    const KEY: &'static [&'static str];
    /// For messages: "process profile", "file rules".
    const WHAT: &'static str;
    /// Identity values, in `KEY` order.
    fn key(&self) -> Vec<&str>;
    /// The entry's own validation, under `field`.
    fn check(&self, field: &str) -> std::result::Result<(), Invalid>;
}

impl GroupEntry for ProcessEntry {
    const TABLE: &'static str = "process_entries";
    const KEY: &'static [&'static str] = &["name", "path"];
    const WHAT: &'static str = "process profile";
    fn key(&self) -> Vec<&str> {
        vec![&self.name, &self.path]
    }
    fn check(&self, field: &str) -> std::result::Result<(), Invalid> {
        self.validate(field)
    }
}

impl GroupEntry for FileRule {
    const TABLE: &'static str = "file_rules";
    const KEY: &'static [&'static str] = &["filter"];
    const WHAT: &'static str = "file rules";
    fn key(&self) -> Vec<&str> {
        vec![&self.filter]
    }
    fn check(&self, field: &str) -> std::result::Result<(), Invalid> {
        self.validate(field)
    }
}

/// A group's entries in insertion order. (Table and column names are this module's
/// constants, never input.)
fn entries<T: GroupEntry>(c: &Connection, group: &str) -> Result<Vec<T>> {
    let mut stmt = c.prepare(&format!(
        "SELECT body FROM {} WHERE grp = ?1 ORDER BY rowid",
        T::TABLE
    ))?;
    let rows = stmt
        .query_map([group], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.iter()
        .map(|b| from_json(&format!("{} of {group}", T::WHAT), b))
        .collect()
}

/// Adds `e`, or replaces the entry with its identity.
fn upsert_entry<T: GroupEntry>(c: &Connection, group: &str, e: &T) -> Result<()> {
    let cols = T::KEY.join(", ");
    let marks: Vec<String> = (0..T::KEY.len()).map(|i| format!("?{}", i + 2)).collect();
    let sql = format!(
        "INSERT INTO {t} (grp, {cols}, body) VALUES (?1, {marks}, ?{body})
         ON CONFLICT (grp, {cols}) DO UPDATE SET body = excluded.body",
        t = T::TABLE,
        marks = marks.join(", "),
        body = T::KEY.len() + 2,
    );
    let body = to_json(e)?;
    let mut values: Vec<&str> = vec![group];
    values.extend(e.key());
    values.push(&body);
    c.execute(&sql, rusqlite::params_from_iter(values))?;
    Ok(())
}

/// Deletes the entry with `e`'s identity; its identity as JSON when there was one.
fn delete_entry<T: GroupEntry>(
    c: &Connection,
    group: &str,
    e: &T,
) -> Result<Option<serde_json::Value>> {
    let cond: Vec<String> = T::KEY
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} = ?{}", i + 2))
        .collect();
    let sql = format!(
        "DELETE FROM {} WHERE grp = ?1 AND {}",
        T::TABLE,
        cond.join(" AND ")
    );
    let mut values: Vec<&str> = vec![group];
    values.extend(e.key());
    if c.execute(&sql, rusqlite::params_from_iter(values))? == 0 {
        return Ok(None);
    }
    let key: serde_json::Map<String, serde_json::Value> = T::KEY
        .iter()
        .zip(e.key())
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v)))
        .collect();
    Ok(Some(serde_json::Value::Object(key)))
}

fn require_group(c: &Connection, name: &str) -> Result<()> {
    if group_exists(c, name)? {
        Ok(())
    } else {
        Err(StoreError::not_found(format!("group {name}")))
    }
}

fn check_version(current: i64, expected: Option<i64>) -> Result<()> {
    match expected {
        Some(v) if v != current => Err(StoreError::Stale {
            current_version: current,
        }),
        _ => Ok(()),
    }
}

/// `field` prefixed with where it sits in a snapshot.
fn at(prefix: String, e: Invalid) -> StoreError {
    StoreError::Invalid(Invalid::new(format!("{prefix}.{}", e.field), e.reason))
}

impl Store {
    /// Every group with its version, by name.
    pub fn groups(&self) -> Result<Vec<(Group, i64)>> {
        self.read(all_groups)
    }

    /// One group and its version.
    pub fn group(&self, name: &str) -> Result<Option<(Group, i64)>> {
        self.read(|c| group_row(c, name))
    }

    /// Creates a group (version 1).
    pub fn create_group(&self, g: Group, actor: &str) -> Result<((Group, i64), Event)> {
        g.validate()?;
        self.write(|tx| {
            if group_exists(tx, &g.name)? {
                return Err(StoreError::Conflict(format!(
                    "group {} exists already",
                    g.name
                )));
            }
            tx.execute(
                "INSERT INTO groups (name, body, version) VALUES (?1, ?2, 1)",
                params![g.name, to_json(&g)?],
            )?;
            let ev = audit(
                tx,
                actor,
                Some(&g.name),
                format!("group {} created", g.name),
                serde_json::json!({"group": json_value(&g)}),
            )?;
            Ok(((g, 1), ev))
        })
    }

    /// Replaces a group's definition; `if_version` must be the current version when given.
    /// The name cannot change.
    pub fn update_group(
        &self,
        name: &str,
        g: Group,
        if_version: Option<i64>,
        actor: &str,
    ) -> Result<((Group, i64), Event)> {
        if g.name != name {
            return Err(StoreError::invalid(
                "name",
                format!("groups cannot be renamed (`{name}` to `{}`)", g.name),
            ));
        }
        g.validate()?;
        self.write(|tx| {
            let (old, version) =
                group_row(tx, name)?.ok_or_else(|| StoreError::not_found(format!("group {name}")))?;
            check_version(version, if_version)?;
            let version = version + 1;
            tx.execute(
                "UPDATE groups SET body = ?2, version = ?3 WHERE name = ?1",
                params![name, to_json(&g)?, version],
            )?;
            let ev = audit(
                tx,
                actor,
                Some(name),
                format!("group {name} updated"),
                serde_json::json!({"before": json_value(&old), "after": json_value(&g), "version": version}),
            )?;
            Ok(((g, version), ev))
        })
    }

    /// Deletes a group with its process profile and file rules; [`StoreError::InUse`] while
    /// rules name it.
    pub fn delete_group(&self, name: &str, actor: &str) -> Result<Event> {
        self.write(|tx| {
            let (g, _) =
                group_row(tx, name)?.ok_or_else(|| StoreError::not_found(format!("group {name}")))?;
            let mut stmt = tx.prepare(
                "SELECT id FROM rules WHERE from_group = ?1 OR to_group = ?1 ORDER BY id",
            )?;
            let ids = stmt
                .query_map([name], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if !ids.is_empty() {
                let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
                return Err(StoreError::InUse(format!(
                    "group {name} is used by rule{} {}",
                    if ids.len() == 1 { "" } else { "s" },
                    list.join(", ")
                )));
            }
            let processes = entries::<ProcessEntry>(tx, name)?.len();
            let files = entries::<FileRule>(tx, name)?.len();
            tx.execute("DELETE FROM groups WHERE name = ?1", [name])?;
            audit(
                tx,
                actor,
                Some(name),
                format!("group {name} deleted"),
                serde_json::json!({"group": json_value(&g), "process_entries": processes, "file_rules": files}),
            )
        })
    }

    /// Creates the auto group `name` (`auto.*`, learned, all three modes `default_mode`)
    /// unless it exists; whether it was created, and the audit event if so.
    pub fn ensure_auto_group(
        &self,
        name: &str,
        default_mode: Mode,
        actor: &str,
    ) -> Result<(bool, Option<Event>)> {
        if !name.starts_with(AUTO_PREFIX) {
            return Err(StoreError::invalid(
                "name",
                format!("`{name}` does not start with `{AUTO_PREFIX}`"),
            ));
        }
        validate_name("name", name)?;
        if self.read(|c| group_exists(c, name))? {
            return Ok((false, None));
        }
        let g = Group {
            name: name.to_owned(),
            criteria: Vec::new(),
            network_mode: default_mode,
            process_mode: default_mode,
            file_mode: default_mode,
            learned: true,
            comment: String::new(),
        };
        match self.create_group(g, actor) {
            Ok((_, ev)) => Ok((true, Some(ev))),
            // Created by someone else between the check and the write.
            Err(StoreError::Conflict(_)) => Ok((false, None)),
            Err(e) => Err(e),
        }
    }

    /// Every rule with its version, in evaluation order.
    pub fn rules(&self) -> Result<Vec<(Rule, i64)>> {
        self.read(all_rules)
    }

    /// One rule and its version.
    pub fn rule(&self, id: u32) -> Result<Option<(Rule, i64)>> {
        self.read(|c| rule_row(c, id))
    }

    /// Appends a rule. `rule.id == 0` assigns the next free id (from 1 for manual rules,
    /// from 10000 for learned ones); an explicit id must be free. A rule with the same ends,
    /// ports, apps and action is a [`StoreError::Conflict`] naming the existing one.
    pub fn create_rule(&self, rule: Rule, actor: &str) -> Result<((Rule, i64), Event)> {
        self.write(|tx| {
            let r = add_rule(tx, rule)?;
            let ev = audit(
                tx,
                actor,
                None,
                format!("rule {} created", r.id),
                serde_json::json!({"rule": json_value(&r)}),
            )?;
            Ok(((r, 1), ev))
        })
    }

    /// Replaces a rule, keeping its place in the list. `rule.id` is 0 or `id`.
    pub fn update_rule(
        &self,
        id: u32,
        mut rule: Rule,
        if_version: Option<i64>,
        actor: &str,
    ) -> Result<((Rule, i64), Event)> {
        if rule.id != 0 && rule.id != id {
            return Err(StoreError::invalid(
                "id",
                format!("rule ids cannot change ({id} to {})", rule.id),
            ));
        }
        rule.id = id;
        self.write(|tx| {
            let (old, version) =
                rule_row(tx, id)?.ok_or_else(|| StoreError::not_found(format!("rule {id}")))?;
            check_version(version, if_version)?;
            check_rule_ends(tx, &rule)?;
            let key = dup_key(&rule)?;
            if let Some(other) = duplicate_of(tx, &key, id)? {
                return Err(StoreError::Conflict(format!(
                    "rule {other} has the same groups, ports, apps and action"
                )));
            }
            let version = version + 1;
            tx.execute(
                "UPDATE rules SET priority = ?2, from_group = ?3, to_group = ?4, dup_key = ?5, body = ?6, version = ?7 WHERE id = ?1",
                params![id, rule.priority, rule.from, rule.to, key, to_json(&rule)?, version],
            )?;
            let ev = audit(
                tx,
                actor,
                None,
                format!("rule {id} updated"),
                serde_json::json!({"before": json_value(&old), "after": json_value(&rule), "version": version}),
            )?;
            Ok(((rule, version), ev))
        })
    }

    /// Deletes a rule.
    pub fn delete_rule(&self, id: u32, actor: &str) -> Result<Event> {
        self.write(|tx| {
            let (old, _) =
                rule_row(tx, id)?.ok_or_else(|| StoreError::not_found(format!("rule {id}")))?;
            tx.execute("DELETE FROM rules WHERE id = ?1", [id])?;
            audit(
                tx,
                actor,
                None,
                format!("rule {id} deleted"),
                serde_json::json!({"rule": json_value(&old)}),
            )
        })
    }

    /// Adds learned rules in one transaction: each is marked learned and gets the next id
    /// from 10000; rules that duplicate an existing one (or an earlier one of the batch) are
    /// skipped. Returns the rules added, and one audit event unless none was.
    pub fn add_learned_rules(
        &self,
        rules: Vec<Rule>,
        actor: &str,
    ) -> Result<(Vec<Rule>, Option<Event>)> {
        self.write(|tx| {
            let mut added = Vec::new();
            for (i, mut r) in rules.into_iter().enumerate() {
                r.learned = true;
                r.id = 0;
                if duplicate_of(tx, &dup_key(&r)?, 0)?.is_some() {
                    continue;
                }
                let r = add_rule(tx, r).map_err(|e| match e {
                    StoreError::Invalid(inv) => at(format!("rules[{i}]"), inv),
                    e => e,
                })?;
                added.push(r);
            }
            if added.is_empty() {
                return Ok((added, None));
            }
            let ids: Vec<u32> = added.iter().map(|r| r.id).collect();
            let ev = audit(
                tx,
                actor,
                None,
                format!(
                    "{} learned rule{} added",
                    added.len(),
                    if added.len() == 1 { "" } else { "s" }
                ),
                serde_json::json!({"ids": ids}),
            )?;
            Ok((added, Some(ev)))
        })
    }

    /// A group's process profile; [`StoreError::NotFound`] for an unknown group.
    pub fn process_profile(&self, group: &str) -> Result<Vec<ProcessEntry>> {
        self.read(|c| {
            require_group(c, group)?;
            entries::<ProcessEntry>(c, group)
        })
    }

    /// Deletes the entries matching `delete` (by name and path; absent ones are ignored),
    /// then adds `add` (an entry with the same name and path is replaced). Returns the new
    /// profile.
    pub fn patch_process_profile(
        &self,
        group: &str,
        add: Vec<ProcessEntry>,
        delete: Vec<ProcessEntry>,
        actor: &str,
    ) -> Result<(Vec<ProcessEntry>, Event)> {
        self.patch_entries(group, add, delete, actor)
    }

    /// A group's file rules; [`StoreError::NotFound`] for an unknown group.
    pub fn file_rules(&self, group: &str) -> Result<Vec<FileRule>> {
        self.read(|c| {
            require_group(c, group)?;
            entries::<FileRule>(c, group)
        })
    }

    /// Like [`Store::patch_process_profile`], file rules matched by `filter`.
    pub fn patch_file_rules(
        &self,
        group: &str,
        add: Vec<FileRule>,
        delete: Vec<FileRule>,
        actor: &str,
    ) -> Result<(Vec<FileRule>, Event)> {
        self.patch_entries(group, add, delete, actor)
    }

    /// Both patches: delete by identity, then add or replace, one audit event.
    fn patch_entries<T: GroupEntry>(
        &self,
        group: &str,
        add: Vec<T>,
        delete: Vec<T>,
        actor: &str,
    ) -> Result<(Vec<T>, Event)> {
        for (i, e) in add.iter().enumerate() {
            e.check(&format!("add[{i}]"))?;
        }
        self.write(|tx| {
            require_group(tx, group)?;
            let mut deleted = Vec::new();
            for e in &delete {
                deleted.extend(delete_entry(tx, group, e)?);
            }
            for e in &add {
                upsert_entry(tx, group, e)?;
            }
            let now = entries::<T>(tx, group)?;
            let ev = audit(
                tx,
                actor,
                Some(group),
                format!("{} of {group} changed", T::WHAT),
                serde_json::json!({"added": json_value(&add), "deleted": deleted}),
            )?;
            Ok((now, ev))
        })
    }

    /// The whole policy, read in one go (consistent).
    pub fn policy_snapshot(&self) -> Result<PolicySnapshot> {
        self.read(|c| {
            let groups: Vec<Group> = all_groups(c)?.into_iter().map(|(g, _)| g).collect();
            let rules = all_rules(c)?.into_iter().map(|(r, _)| r).collect();
            let mut process_profiles = BTreeMap::new();
            let mut file_rule_map = BTreeMap::new();
            for g in &groups {
                let p = entries::<ProcessEntry>(c, &g.name)?;
                if !p.is_empty() {
                    process_profiles.insert(g.name.clone(), p);
                }
                let f = entries::<FileRule>(c, &g.name)?;
                if !f.is_empty() {
                    file_rule_map.insert(g.name.clone(), f);
                }
            }
            Ok(PolicySnapshot {
                groups,
                rules,
                process_profiles,
                file_rules: file_rule_map,
            })
        })
    }

    /// Replaces the whole policy: everything is validated first, then applied in one
    /// transaction, so a bad item leaves the current policy as it was. Rules with id 0 get
    /// ids as in [`Store::create_rule`]. Versions of groups and rules that did not change are
    /// kept; changed ones are incremented. One audit event summarises the counts.
    pub fn replace_policy(&self, snapshot: PolicySnapshot, actor: &str) -> Result<Event> {
        let snapshot = validate_snapshot(snapshot)?;
        self.write(|tx| {
            let old_groups: HashMap<String, (Group, i64)> = all_groups(tx)?
                .into_iter()
                .map(|(g, v)| (g.name.clone(), (g, v)))
                .collect();
            let old_rules: HashMap<u32, (Rule, i64)> = all_rules(tx)?
                .into_iter()
                .map(|(r, v)| (r.id, (r, v)))
                .collect();
            tx.execute_batch(
                "DELETE FROM process_entries; DELETE FROM file_rules; DELETE FROM rules; DELETE FROM groups;",
            )?;
            for g in &snapshot.groups {
                let version = match old_groups.get(&g.name) {
                    Some((old, v)) if old == g => *v,
                    Some((_, v)) => v + 1,
                    None => 1,
                };
                tx.execute(
                    "INSERT INTO groups (name, body, version) VALUES (?1, ?2, ?3)",
                    params![g.name, to_json(g)?, version],
                )?;
            }
            for (pos, r) in snapshot.rules.iter().enumerate() {
                let version = match old_rules.get(&r.id) {
                    Some((old, v)) if old == r => *v,
                    Some((_, v)) => v + 1,
                    None => 1,
                };
                insert_rule(tx, r, i64::try_from(pos).unwrap_or(i64::MAX), version)?;
            }
            let mut processes = 0;
            for (g, entries) in &snapshot.process_profiles {
                for e in entries {
                    upsert_entry(tx, g, e)?;
                    processes += 1;
                }
            }
            let mut files = 0;
            for (g, rules) in &snapshot.file_rules {
                for f in rules {
                    upsert_entry(tx, g, f)?;
                    files += 1;
                }
            }
            let removed: Vec<&String> = old_groups
                .keys()
                .filter(|n| !snapshot.groups.iter().any(|g| &g.name == *n))
                .collect();
            audit(
                tx,
                actor,
                None,
                format!(
                    "policy replaced: {} groups, {} rules, {processes} process entries, {files} file rules",
                    snapshot.groups.len(),
                    snapshot.rules.len()
                ),
                serde_json::json!({
                    "groups": snapshot.groups.len(),
                    "rules": snapshot.rules.len(),
                    "process_entries": processes,
                    "file_rules": files,
                    "removed_groups": removed,
                }),
            )
        })
    }
}

/// Inserts a rule at the end of the list after assigning its id and checking it.
fn add_rule(tx: &Connection, mut rule: Rule) -> Result<Rule> {
    if rule.id == 0 {
        rule.id = next_id(tx, rule.learned)?;
    } else if rule_row(tx, rule.id)?.is_some() {
        return Err(StoreError::Conflict(format!(
            "rule {} exists already",
            rule.id
        )));
    }
    check_rule_ends(tx, &rule)?;
    let key = dup_key(&rule)?;
    if let Some(other) = duplicate_of(tx, &key, rule.id)? {
        return Err(StoreError::Conflict(format!(
            "rule {other} has the same groups, ports, apps and action"
        )));
    }
    insert_rule(tx, &rule, next_position(tx)?, 1)?;
    Ok(rule)
}

/// Checks a snapshot as a whole and assigns missing rule ids.
fn validate_snapshot(mut s: PolicySnapshot) -> Result<PolicySnapshot> {
    let mut names = HashSet::new();
    for (i, g) in s.groups.iter().enumerate() {
        g.validate().map_err(|e| at(format!("groups[{i}]"), e))?;
        if !names.insert(g.name.clone()) {
            return Err(StoreError::invalid(
                format!("groups[{i}].name"),
                format!("group `{}` appears twice", g.name),
            ));
        }
    }
    let mut used: BTreeSet<u32> = BTreeSet::new();
    for (i, r) in s.rules.iter().enumerate() {
        if r.id != 0 && !used.insert(r.id) {
            return Err(StoreError::invalid(
                format!("rules[{i}].id"),
                format!("rule id {} appears twice", r.id),
            ));
        }
    }
    let mut keys: HashMap<String, usize> = HashMap::new();
    for (i, r) in s.rules.iter_mut().enumerate() {
        if r.id == 0 {
            r.id = next_free(&used, r.learned).ok_or_else(|| {
                StoreError::invalid(format!("rules[{i}].id"), "no free rule id left")
            })?;
            used.insert(r.id);
        }
        validate_rule(r, |g| names.contains(g) || special::ALL.contains(&g))
            .map_err(|e| at(format!("rules[{i}]"), e))?;
        if let Some(j) = keys.insert(dup_key(r)?, i) {
            return Err(StoreError::invalid(
                format!("rules[{i}]"),
                format!("same groups, ports, apps and action as rules[{j}]"),
            ));
        }
    }
    for (g, entries) in &s.process_profiles {
        if !names.contains(g) {
            return Err(StoreError::invalid(
                format!("process_profiles.{g}"),
                format!("unknown group `{g}`"),
            ));
        }
        let mut seen = HashSet::new();
        for (i, e) in entries.iter().enumerate() {
            let field = format!("process_profiles.{g}[{i}]");
            e.validate(&field)?;
            if !seen.insert((&e.name, &e.path)) {
                return Err(StoreError::invalid(
                    field,
                    format!("{} at {} appears twice", e.name, e.path),
                ));
            }
        }
    }
    for (g, rules) in &s.file_rules {
        if !names.contains(g) {
            return Err(StoreError::invalid(
                format!("file_rules.{g}"),
                format!("unknown group `{g}`"),
            ));
        }
        let mut seen = HashSet::new();
        for (i, f) in rules.iter().enumerate() {
            let field = format!("file_rules.{g}[{i}]");
            f.validate(&field)?;
            if !seen.insert(&f.filter) {
                return Err(StoreError::invalid(
                    field,
                    format!("filter {} appears twice", f.filter),
                ));
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Criterion, CriterionKey, CriterionOp, FileBehavior};

    fn group(name: &str) -> Group {
        Group {
            name: name.into(),
            criteria: vec![Criterion {
                key: CriterionKey::Image,
                op: CriterionOp::Eq,
                value: format!("{name}*"),
            }],
            network_mode: Mode::Monitor,
            process_mode: Mode::Monitor,
            file_mode: Mode::Monitor,
            learned: false,
            comment: String::new(),
        }
    }

    fn rule(from: &str, to: &str, ports: &[&str]) -> Rule {
        Rule {
            id: 0,
            from: from.into(),
            to: to.into(),
            ports: ports.iter().map(|p| p.parse().unwrap()).collect(),
            apps: Vec::new(),
            action: Action::Allow,
            priority: 0,
            learned: false,
            disabled: false,
        }
    }

    fn proc_entry(name: &str, path: &str, action: Action) -> ProcessEntry {
        ProcessEntry {
            name: name.into(),
            path: path.into(),
            action,
            learned: false,
        }
    }

    fn store_with(groups: &[&str]) -> Store {
        let s = Store::open_in_memory().unwrap();
        for g in groups {
            s.create_group(group(g), "t").unwrap();
        }
        s
    }

    #[test]
    fn groups_crud_versions_and_stale() {
        let s = Store::open_in_memory().unwrap();
        let ((g, v), ev) = s.create_group(group("web"), "alice").unwrap();
        assert_eq!(v, 1);
        assert_eq!(ev.message, "group web created");
        assert_eq!(ev.group.as_deref(), Some("web"));
        assert_eq!(ev.details["group"]["name"], "web");
        assert!(matches!(
            s.create_group(group("web"), "alice"),
            Err(StoreError::Conflict(_))
        ));
        let mut bad = group("db");
        bad.criteria[0].op = CriterionOp::Regex;
        bad.criteria[0].value = "(".into();
        let e = s.create_group(bad, "alice").unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid(i) if i.field == "criteria[0].value"),
            "{e:?}"
        );
        let mut g2 = g.clone();
        g2.network_mode = Mode::Protect;
        let ((_, v2), ev) = s.update_group("web", g2.clone(), Some(1), "bob").unwrap();
        assert_eq!(v2, 2);
        assert_eq!(ev.details["before"]["network_mode"], "monitor");
        assert_eq!(ev.details["after"]["network_mode"], "protect");
        let e = s
            .update_group("web", g2.clone(), Some(1), "bob")
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Stale { current_version: 2 }),
            "{e:?}"
        );
        let ((_, v3), _) = s.update_group("web", g2.clone(), None, "bob").unwrap();
        assert_eq!(v3, 3);
        assert_eq!(s.group("web").unwrap(), Some((g2.clone(), 3)));
        let mut renamed = g2.clone();
        renamed.name = "web2".into();
        assert!(matches!(
            s.update_group("web", renamed, None, "bob"),
            Err(StoreError::Invalid(i)) if i.field == "name"
        ));
        assert!(matches!(
            s.update_group("nope", group("nope"), None, "bob"),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(s.groups().unwrap().len(), 1);
        s.delete_group("web", "bob").unwrap();
        assert_eq!(s.group("web").unwrap(), None);
        assert!(matches!(
            s.delete_group("web", "bob"),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn groups_in_use_are_kept() {
        let s = store_with(&["web", "db"]);
        let ((r1, _), _) = s
            .create_rule(rule("web", "db", &["tcp/5432"]), "t")
            .unwrap();
        let ((r2, _), _) = s
            .create_rule(rule("external", "web", &["tcp/443"]), "t")
            .unwrap();
        let e = s.delete_group("web", "t").unwrap_err();
        assert!(matches!(e, StoreError::InUse(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("group web is used by rules {}, {}", r1.id, r2.id)
        );
        s.delete_rule(r2.id, "t").unwrap();
        s.delete_rule(r1.id, "t").unwrap();
        s.patch_process_profile(
            "web",
            vec![proc_entry("nginx", "/usr/sbin/nginx", Action::Allow)],
            vec![],
            "t",
        )
        .unwrap();
        let ev = s.delete_group("web", "t").unwrap();
        assert_eq!(ev.details["process_entries"], 1);
        // The profile went with the group.
        let n: i64 = s
            .read(|c| Ok(c.query_row("SELECT count(*) FROM process_entries", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn auto_groups() {
        let s = Store::open_in_memory().unwrap();
        let (created, ev) = s
            .ensure_auto_group("auto.nginx", Mode::Discover, "system")
            .unwrap();
        assert!(created);
        assert!(ev.is_some());
        let (g, v) = s.group("auto.nginx").unwrap().unwrap();
        assert!(g.learned);
        assert_eq!(g.process_mode, Mode::Discover);
        assert_eq!(v, 1);
        assert_eq!(
            s.ensure_auto_group("auto.nginx", Mode::Protect, "system")
                .unwrap(),
            (false, None)
        );
        assert!(matches!(
            s.ensure_auto_group("nginx", Mode::Discover, "system"),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn rule_ids_duplicates_and_order() {
        let s = store_with(&["web", "db", "cache"]);
        let ((a, v), ev) = s
            .create_rule(rule("web", "db", &["tcp/5432"]), "t")
            .unwrap();
        assert_eq!((a.id, v), (1, 1));
        assert_eq!(ev.message, "rule 1 created");
        let ((b, _), _) = s
            .create_rule(rule("web", "cache", &["tcp/6379"]), "t")
            .unwrap();
        assert_eq!(b.id, 2);
        let mut l = rule("cache", "db", &["tcp/5432"]);
        l.learned = true;
        let ((c, _), _) = s.create_rule(l, "t").unwrap();
        assert_eq!(c.id, FIRST_LEARNED_RULE_ID);
        let mut explicit = rule("db", "web", &["tcp/1"]);
        explicit.id = 500;
        s.create_rule(explicit.clone(), "t").unwrap();
        let ((d, _), _) = s.create_rule(rule("db", "cache", &["tcp/2"]), "t").unwrap();
        assert_eq!(d.id, 501);
        explicit.ports = vec!["tcp/3".parse().unwrap()];
        let e = s.create_rule(explicit, "t").unwrap_err();
        assert_eq!(e.to_string(), "rule 500 exists already");
        // Same meaning, ports in another order and repeated: duplicate of rule 1.
        let mut dup = rule("web", "db", &["tcp/5432"]);
        dup.priority = 5;
        let e = s.create_rule(dup, "t").unwrap_err();
        assert_eq!(
            e.to_string(),
            "rule 1 has the same groups, ports, apps and action"
        );
        let ((m, _), _) = s
            .create_rule(rule("web", "db", &["tcp/80", "udp/53"]), "t")
            .unwrap();
        assert!(matches!(
            s.create_rule(rule("web", "db", &["udp/53", "tcp/80", "tcp/80"]), "t"),
            Err(StoreError::Conflict(_))
        ));
        // Unknown ends.
        let e = s.create_rule(rule("web", "nowhere", &[]), "t").unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid(i) if i.field == "to"),
            "{e:?}"
        );
        assert!(
            s.create_rule(rule("containers", "external", &[]), "t")
                .is_ok()
        );
        // Evaluation order: priority, then list order.
        let mut hi = rule("db", "db", &[]);
        hi.priority = 10;
        let ((hi, _), _) = s.create_rule(hi, "t").unwrap();
        let order: Vec<u32> = s.rules().unwrap().iter().map(|(r, _)| r.id).collect();
        assert_eq!(
            order,
            vec![hi.id, 1, 2, FIRST_LEARNED_RULE_ID, 500, 501, m.id, 503]
        );
        // Update keeps the place, bumps the version, checks duplicates and If-Match.
        let mut upd = a.clone();
        upd.ports = vec!["tcp/5433".parse().unwrap()];
        let ((u, v), _) = s.update_rule(1, upd.clone(), Some(1), "t").unwrap();
        assert_eq!((u.id, v), (1, 2));
        assert!(matches!(
            s.update_rule(1, upd.clone(), Some(1), "t"),
            Err(StoreError::Stale { current_version: 2 })
        ));
        let mut clash = upd.clone();
        clash.to = "cache".into();
        clash.ports = vec!["tcp/6379".parse().unwrap()];
        assert!(matches!(
            s.update_rule(1, clash, None, "t"),
            Err(StoreError::Conflict(m)) if m.starts_with("rule 2 ")
        ));
        let mut moved = upd;
        moved.id = 7;
        assert!(matches!(
            s.update_rule(1, moved, None, "t"),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(s.rule(1).unwrap().unwrap().1, 2);
        let order2: Vec<u32> = s.rules().unwrap().iter().map(|(r, _)| r.id).collect();
        assert_eq!(order, order2);
        assert!(matches!(
            s.delete_rule(999, "t"),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn learned_rules_skip_duplicates() {
        let s = store_with(&["web", "db"]);
        s.create_rule(rule("web", "db", &["tcp/5432"]), "t")
            .unwrap();
        let (added, ev) = s
            .add_learned_rules(
                vec![
                    rule("web", "db", &["tcp/5432"]),
                    rule("db", "web", &["tcp/80"]),
                    rule("db", "web", &["tcp/80"]),
                    rule("external", "web", &["tcp/443"]),
                ],
                "learn",
            )
            .unwrap();
        let ids: Vec<u32> = added.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![10_000, 10_001]);
        assert!(added.iter().all(|r| r.learned));
        assert_eq!(
            ev.unwrap().details["ids"],
            serde_json::json!([10_000, 10_001])
        );
        let (none, ev) = s
            .add_learned_rules(vec![rule("db", "web", &["tcp/80"])], "learn")
            .unwrap();
        assert!(none.is_empty() && ev.is_none());
        // One bad rule: nothing of the batch is added.
        let e = s
            .add_learned_rules(
                vec![rule("db", "web", &["tcp/81"]), rule("db", "ghost", &[])],
                "learn",
            )
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid(i) if i.field == "rules[1].to"),
            "{e:?}"
        );
        assert_eq!(s.rules().unwrap().len(), 3);
    }

    #[test]
    fn profiles_patch() {
        let s = store_with(&["web"]);
        assert!(s.process_profile("web").unwrap().is_empty());
        assert!(matches!(
            s.process_profile("nope"),
            Err(StoreError::NotFound { .. })
        ));
        let (p, ev) = s
            .patch_process_profile(
                "web",
                vec![
                    proc_entry("nginx", "/usr/sbin/nginx", Action::Allow),
                    proc_entry("sh", "*", Action::Allow),
                    proc_entry("curl", "/usr/bin/curl", Action::Deny),
                ],
                vec![],
                "t",
            )
            .unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(ev.message, "process profile of web changed");
        // Replace `sh` (same identity), delete curl (action ignored), ignore an absent one.
        let (p, ev) = s
            .patch_process_profile(
                "web",
                vec![proc_entry("sh", "*", Action::Deny)],
                vec![
                    proc_entry("curl", "/usr/bin/curl", Action::Allow),
                    proc_entry("ghost", "/x", Action::Allow),
                ],
                "t",
            )
            .unwrap();
        assert_eq!(
            p,
            vec![
                proc_entry("nginx", "/usr/sbin/nginx", Action::Allow),
                proc_entry("sh", "*", Action::Deny),
            ]
        );
        assert_eq!(ev.details["deleted"].as_array().unwrap().len(), 1);
        let e = s
            .patch_process_profile(
                "web",
                vec![proc_entry("x", "rel/path", Action::Allow)],
                vec![],
                "t",
            )
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid(i) if i.field == "add[0].path"),
            "{e:?}"
        );
        assert!(matches!(
            s.patch_process_profile("nope", vec![], vec![], "t"),
            Err(StoreError::NotFound { .. })
        ));

        let fr = |filter: &str, behavior| FileRule {
            filter: filter.into(),
            recursive: false,
            behavior,
            apps: vec![],
            learned: false,
        };
        let (f, _) = s
            .patch_file_rules(
                "web",
                vec![
                    fr("/etc/passwd", FileBehavior::Monitor),
                    fr("/etc/shadow", FileBehavior::Block),
                ],
                vec![],
                "t",
            )
            .unwrap();
        assert_eq!(f.len(), 2);
        let (f, _) = s
            .patch_file_rules(
                "web",
                vec![fr("/etc/passwd", FileBehavior::Block)],
                vec![fr("/etc/shadow", FileBehavior::Monitor)],
                "t",
            )
            .unwrap();
        assert_eq!(f, vec![fr("/etc/passwd", FileBehavior::Block)]);
        assert_eq!(s.file_rules("web").unwrap(), f);
        assert!(matches!(
            s.patch_file_rules("web", vec![fr("etc", FileBehavior::Block)], vec![], "t"),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn replace_policy_is_all_or_nothing() {
        let s = store_with(&["web", "db"]);
        s.create_rule(rule("web", "db", &["tcp/5432"]), "t")
            .unwrap();
        s.patch_process_profile(
            "web",
            vec![proc_entry("nginx", "/usr/sbin/nginx", Action::Allow)],
            vec![],
            "t",
        )
        .unwrap();
        let before = s.policy_snapshot().unwrap();
        assert_eq!(before.groups.len(), 2);
        assert_eq!(before.rules.len(), 1);
        assert_eq!(before.process_profiles["web"].len(), 1);
        // Round trip through JSON.
        let text = serde_json::to_string(&before).unwrap();
        assert_eq!(
            serde_json::from_str::<PolicySnapshot>(&text).unwrap(),
            before
        );

        let mut next = before.clone();
        next.groups.push(group("cache"));
        next.rules.push(rule("web", "cache", &["tcp/6379"]));
        next.file_rules.insert(
            "cache".into(),
            vec![FileRule {
                filter: "/data".into(),
                recursive: true,
                behavior: FileBehavior::Block,
                apps: vec!["redis-server".into()],
                learned: false,
            }],
        );
        // Each of these bad items must leave the old policy intact.
        let mut bad_rule = next.clone();
        bad_rule.rules.push(rule("web", "ghost", &[]));
        let mut bad_group = next.clone();
        bad_group.groups.push(group("nodes"));
        let mut twice = next.clone();
        twice.groups.push(group("cache"));
        let mut bad_profile = next.clone();
        bad_profile
            .process_profiles
            .insert("ghost".into(), vec![proc_entry("a", "*", Action::Allow)]);
        let mut bad_entry = next.clone();
        bad_entry.process_profiles.insert(
            "db".into(),
            vec![proc_entry("a", "relative", Action::Allow)],
        );
        let mut dup_rule = next.clone();
        dup_rule.rules.push(rule("web", "db", &["tcp/5432"]));
        for (bad, field) in [
            (bad_rule, "rules[2].to"),
            (bad_group, "groups[3].name"),
            (twice, "groups[3].name"),
            (bad_profile, "process_profiles.ghost"),
            (bad_entry, "process_profiles.db[0].path"),
            (dup_rule, "rules[2]"),
        ] {
            let e = s.replace_policy(bad, "t").unwrap_err();
            assert!(
                matches!(&e, StoreError::Invalid(i) if i.field == field),
                "{field}: {e:?}"
            );
            assert_eq!(s.policy_snapshot().unwrap(), before);
        }

        let ev = s.replace_policy(next, "alice").unwrap();
        assert_eq!(
            ev.message,
            "policy replaced: 3 groups, 2 rules, 1 process entries, 1 file rules"
        );
        let after = s.policy_snapshot().unwrap();
        assert_eq!(after.groups.len(), 3);
        assert_eq!(after.rules[1].id, 2);
        assert_eq!(after.file_rules["cache"][0].filter, "/data");
        // Unchanged groups kept their version.
        assert_eq!(s.group("web").unwrap().unwrap().1, 1);
        assert_eq!(s.group("cache").unwrap().unwrap().1, 1);

        // Removing a group drops its profile and rules with it.
        let mut smaller = after.clone();
        smaller.groups.retain(|g| g.name != "web");
        smaller.rules.clear();
        smaller.process_profiles.clear();
        let ev = s.replace_policy(smaller, "alice").unwrap();
        assert_eq!(ev.details["removed_groups"], serde_json::json!(["web"]));
        assert!(s.group("web").unwrap().is_none());
        assert!(s.rules().unwrap().is_empty());
    }

    #[test]
    fn next_free_ids() {
        let set = |v: &[u32]| v.iter().copied().collect::<BTreeSet<u32>>();
        assert_eq!(next_free(&set(&[]), false), Some(1));
        assert_eq!(next_free(&set(&[]), true), Some(10_000));
        assert_eq!(next_free(&set(&[1, 2, 10_005]), false), Some(3));
        assert_eq!(next_free(&set(&[1, 2, 10_005]), true), Some(10_006));
        assert_eq!(next_free(&set(&[3, 9_999]), false), Some(1));
        let full: BTreeSet<u32> = (1..10_000).collect();
        assert_eq!(next_free(&full, false), None);
    }
}
