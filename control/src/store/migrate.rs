//! Forward-only schema migrations. The schema version is SQLite's `PRAGMA user_version`;
//! migration `i` (0-based) of [`MIGRATIONS`] takes the database from version `i` to `i + 1`
//! in one transaction (DDL and the version bump commit together). Never edit a released
//! migration: append a new one.

use rusqlite::{Connection, TransactionBehavior};

use super::{Result, StoreError};

/// Ordered migrations.
const MIGRATIONS: &[&str] = &[
    // 1: everything.
    "
    CREATE TABLE users (
        name TEXT PRIMARY KEY NOT NULL,
        hash TEXT NOT NULL,
        role TEXT NOT NULL,
        must_change INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE tokens (
        hash TEXT PRIMARY KEY NOT NULL,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX tokens_user ON tokens(user);
    CREATE INDEX tokens_expires ON tokens(expires_at);
    CREATE TABLE api_keys (
        name TEXT PRIMARY KEY NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL
    ) STRICT;
    CREATE TABLE groups (
        name TEXT PRIMARY KEY NOT NULL,
        body TEXT NOT NULL,
        version INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE rules (
        id INTEGER PRIMARY KEY NOT NULL,
        position INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        from_group TEXT NOT NULL,
        to_group TEXT NOT NULL,
        dup_key TEXT NOT NULL,
        body TEXT NOT NULL,
        version INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX rules_order ON rules(priority DESC, position);
    CREATE INDEX rules_from ON rules(from_group);
    CREATE INDEX rules_to ON rules(to_group);
    CREATE INDEX rules_dup ON rules(dup_key);
    CREATE TABLE process_entries (
        grp TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (grp, name, path)
    ) STRICT;
    CREATE TABLE file_rules (
        grp TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
        filter TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (grp, filter)
    ) STRICT;
    CREATE TABLE workloads (
        id TEXT PRIMARY KEY NOT NULL,
        source TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE settings (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        grp TEXT,
        workload TEXT,
        actor TEXT,
        message TEXT NOT NULL,
        details TEXT NOT NULL
    ) STRICT;
    CREATE INDEX events_at ON events(at_ms);
    CREATE INDEX events_kind ON events(kind, id);
    CREATE INDEX events_grp ON events(grp, id) WHERE grp IS NOT NULL;
    CREATE INDEX events_workload ON events(workload, id) WHERE workload IS NOT NULL;
    ",
];

/// The version the code migrates to.
pub(crate) fn latest() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

pub(crate) fn user_version(c: &Connection) -> Result<i64> {
    Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Applies the missing migrations, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let supported = latest();
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read inside the write transaction: two processes opening at once do not both
        // apply the same migration.
        let found = user_version(&tx)?;
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
        if found == supported {
            return Ok(());
        }
        let sql = usize::try_from(found)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("schema version {found} is negative")))?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
        tracing::info!(version = found + 1, "store schema migrated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_is_idempotent() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        assert_eq!(user_version(&c).unwrap(), latest());
        migrate(&mut c).unwrap();
        assert_eq!(user_version(&c).unwrap(), latest());
    }

    #[test]
    fn newer_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", latest() + 5).unwrap();
        assert!(matches!(
            migrate(&mut c),
            Err(StoreError::SchemaTooNew { .. })
        ));
    }
}
