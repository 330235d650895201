//! The persistent store: one SQLite database (`palisade.db` in the data directory) holding
//! users, sessions, API keys, groups, network rules, process profiles, file rules,
//! workloads, settings and events.
//!
//! Contract:
//! - [`Store`] is a cheap `Clone` handle (`Arc<Mutex<Connection>>`), `Send + Sync`, and
//!   synchronous: call quick reads directly from async code, anything that hashes a password
//!   or may touch many rows through `spawn_blocking`.
//! - Durability: WAL with `synchronous=FULL`; a method that returned `Ok` has committed and
//!   fsynced its transaction, so it survives `kill -9` and power loss.
//! - Every change made by an operator takes the `actor` (user name, `apikey:<name>`,
//!   `system`, ...) and writes one `audit` event in the **same transaction** as the change.
//!   Mutating methods return what they changed together with that [`Event`] — `(T, Event)`,
//!   or `Option<Event>` where a call may change nothing — so the caller can broadcast it.
//!   Exceptions, by design: logins and logouts ([`Store::create_token`],
//!   [`Store::revoke_token`]) are sessions, not configuration, and write nothing; workloads
//!   found by discovery ([`crate::model::WorkloadSource::Discovered`]) churn with every container
//!   start and stop and write no event either (discovery reports what matters as `system`
//!   events itself).
//! - Groups and rules carry a `version` that every update increments (the API's ETag);
//!   updates take an optional expected version and fail with [`StoreError::Stale`].
//! - Nothing read back from the database is trusted: a row that does not decode is a
//!   [`StoreError::Corrupt`], never a panic.
//! - The schema only moves forward ([`migrate`]); a database written by a newer Palisade is
//!   refused with [`StoreError::SchemaTooNew`].

mod events;
mod migrate;
mod policy;
mod users;
mod workloads;

use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::model::{Event, EventKind, Invalid, NewEvent, Severity};

pub use events::EventQuery;
pub use policy::PolicySnapshot;
pub use users::{API_KEY_PREFIX, ApiKeyInfo, NewApiKey, TokenInfo};

/// Database file name inside the data directory.
pub const DB_FILE: &str = "palisade.db";
/// Default of `[store] event_retention_count`.
pub const DEFAULT_EVENT_MAX_COUNT: u64 = 100_000;
/// Default of `[store] event_retention_days`.
pub const DEFAULT_EVENT_MAX_AGE_DAYS: u32 = 30;
/// Retention runs from [`Store::append_events`] once this many events were appended since
/// the last run.
pub const PRUNE_EVERY: u64 = 1_000;
/// How long a writer waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Store tunables (the `[store]` section of the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSettings {
    /// Keep at most this many events (oldest go first).
    pub event_max_count: u64,
    /// Drop events older than this many days.
    pub event_max_age_days: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            event_max_count: DEFAULT_EVENT_MAX_COUNT,
            event_max_age_days: DEFAULT_EVENT_MAX_AGE_DAYS,
        }
    }
}

/// Why a store operation failed. The messages are meant for API users.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for (`group web`, `rule 7`).
        what: String,
    },
    /// It exists already (or a rule with the same meaning does).
    #[error("{0}")]
    Conflict(String),
    /// Something else still refers to it.
    #[error("{0}")]
    InUse(String),
    /// The caller's `If-Match` version is not the current one.
    #[error("the object was changed meanwhile: its version is now {current_version}")]
    Stale {
        /// Version in the store.
        current_version: i64,
    },
    /// The input does not validate.
    #[error("invalid {0}")]
    Invalid(#[from] Invalid),
    /// The change is not allowed (deleting the last admin).
    #[error("{0}")]
    Forbidden(String),
    /// The database was written by a newer Palisade.
    #[error(
        "the database has schema version {found}, newer than the {supported} this palisade knows: upgrade palisade or restore an older backup"
    )]
    SchemaTooNew {
        /// Version found in the file.
        found: i64,
        /// Latest version this code migrates to.
        supported: i64,
    },
    /// A row does not decode.
    #[error("corrupt data in the store: {0}")]
    Corrupt(String),
    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// SQLite failed.
    #[error("database error")]
    Sqlite(#[source] rusqlite::Error),
    /// The data directory or database file could not be prepared.
    #[error("{}: cannot {action}", path.display())]
    Io {
        /// What was being done (`create the data directory`).
        action: &'static str,
        /// Which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl StoreError {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid(Invalid::new(field, reason))
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

struct Inner {
    conn: Mutex<Connection>,
    settings: StoreSettings,
    /// Events appended since retention last ran.
    appended: AtomicU64,
}

/// Handle to the database; clones share one connection.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating when missing) `data_dir/palisade.db`: the directory is created mode
    /// 0700, the file is mode 0600, and the schema is migrated to the latest version.
    pub fn open(data_dir: &Path, settings: StoreSettings) -> Result<Self> {
        if !data_dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .map_err(|source| StoreError::Io {
                    action: "create the data directory",
                    path: data_dir.to_path_buf(),
                    source,
                })?;
        }
        let path = data_dir.join(DB_FILE);
        let io = |action, source| StoreError::Io {
            action,
            path: path.clone(),
            source,
        };
        // Create the file ourselves so it never exists with looser permissions; SQLite gives
        // the -wal and -shm files the database file's mode.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io("create the database file", e))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("set the database file's mode", e))?;
        drop(file);
        let conn = Connection::open(&path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "{}: SQLite refused WAL journaling (journal_mode is {mode})",
                path.display()
            )));
        }
        Self::setup(conn, settings)
    }

    /// A private in-memory database (tests, `--check` runs).
    pub fn open_in_memory() -> Result<Self> {
        Self::setup(Connection::open_in_memory()?, StoreSettings::default())
    }

    /// [`Store::open_in_memory`] with settings.
    pub fn open_in_memory_with(settings: StoreSettings) -> Result<Self> {
        Self::setup(Connection::open_in_memory()?, settings)
    }

    fn setup(mut conn: Connection, settings: StoreSettings) -> Result<Self> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        migrate::migrate(&mut conn)?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                settings,
                appended: AtomicU64::new(0),
            }),
        })
    }

    /// The settings the store was opened with.
    pub fn settings(&self) -> StoreSettings {
        self.inner.settings
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        self.read(migrate::user_version)
    }

    /// Size of the database in bytes (pages in use and free, times the page size): the
    /// database file's size once the write-ahead log is checkpointed.
    pub fn size_bytes(&self) -> Result<u64> {
        self.read(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            Ok(u64::try_from(pages.saturating_mul(size)).unwrap_or(0))
        })
    }

    /// `PRAGMA integrity_check`; [`StoreError::Corrupt`] with SQLite's findings unless ok.
    pub fn check_integrity(&self) -> Result<()> {
        self.read(|c| {
            let mut stmt = c.prepare("PRAGMA integrity_check")?;
            let lines = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if lines.len() == 1 && lines[0] == "ok" {
                Ok(())
            } else {
                Err(StoreError::Corrupt(lines.join("; ")))
            }
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock dropped (rolled back) its transaction, so the
        // connection is consistent: carry on with it.
        self.inner
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the connection (reads; autocommit).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        f(&conn)
    }

    /// Runs `f` in one write transaction, committed when `f` returns `Ok`.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Unix seconds now.
pub(crate) fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Writes the audit event of a change inside the change's transaction.
pub(crate) fn audit(
    tx: &Connection,
    actor: &str,
    group: Option<&str>,
    message: String,
    details: serde_json::Value,
) -> Result<Event> {
    events::insert(
        tx,
        &NewEvent {
            at_ms: now_ms(),
            kind: EventKind::Audit,
            severity: Severity::Info,
            group: group.map(str::to_owned),
            workload: None,
            actor: Some(actor.to_owned()),
            message,
            details,
        },
    )
}

/// JSON of a value for a row (serialising our own types cannot fail; map it anyway).
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))
}

/// A value back from a row's JSON.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// `serde_json::Value` of our own types, for audit details.
pub(crate) fn json_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

impl Inner {
    fn count_appended(&self, n: u64) -> bool {
        let before = self.appended.fetch_add(n, Ordering::Relaxed);
        if before + n >= PRUNE_EVERY {
            self.appended.store(0, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_creates_modes_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        let s = Store::open(&data, StoreSettings::default()).unwrap();
        let v = s.schema_version().unwrap();
        assert_eq!(v, migrate::latest());
        s.check_integrity().unwrap();
        drop(s);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join(DB_FILE)), 0o600);
        let s = Store::open(&data, StoreSettings::default()).unwrap();
        assert_eq!(s.schema_version().unwrap(), v);
        let journal: String = s
            .read(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(journal, "wal");
        let sync: i64 = s
            .read(|c| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
        let fk: i64 = s
            .read(|c| Ok(c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(fk, 1);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), StoreSettings::default()).unwrap());
        let newer = migrate::latest() + 1;
        {
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            c.pragma_update(None, "user_version", newer).unwrap();
        }
        let e = Store::open(dir.path(), StoreSettings::default()).unwrap_err();
        assert!(
            matches!(e, StoreError::SchemaTooNew { found, supported } if found == newer && supported == newer - 1),
            "{e:?}"
        );
        assert!(e.to_string().contains("upgrade palisade"), "{e}");
    }

    #[test]
    fn audit_events_commit_with_their_change_only() {
        use crate::model::{Group, Mode};
        let s = Store::open_in_memory().unwrap();
        let g = Group {
            name: "web".into(),
            criteria: Vec::new(),
            network_mode: Mode::Discover,
            process_mode: Mode::Discover,
            file_mode: Mode::Discover,
            learned: false,
            comment: String::new(),
        };
        let (_, ev) = s.create_group(g.clone(), "alice").unwrap();
        // A refused change leaves no audit event behind.
        assert!(s.create_group(g, "alice").is_err());
        assert!(s.delete_group("nope", "alice").is_err());
        let (all, next) = s.events(&EventQuery::default()).unwrap();
        assert_eq!(all, vec![ev]);
        assert_eq!(next, None);
    }

    #[test]
    fn bad_rows_are_errors_not_panics() {
        let s = Store::open_in_memory().unwrap();
        s.read(|c| {
            c.execute_batch(
                "INSERT INTO groups (name, body, version) VALUES ('g', 'not json', 1);
                 INSERT INTO users (name, hash, role, must_change, created_at) VALUES ('u', 'x', 'root', 0, 0);
                 INSERT INTO rules (id, position, priority, from_group, to_group, dup_key, body, version)
                     VALUES (-1, 0, 0, 'a', 'b', 'k', '{}', 1);
                 INSERT INTO events (at_ms, kind, severity, message, details) VALUES (0, 'bogus', 'info', 'm', '{}');
                 INSERT INTO workloads (id, source, body, updated_at) VALUES ('w', 'api', '[]', 0);
                 INSERT INTO settings (key, value) VALUES ('k', '{');",
            )?;
            Ok(())
        })
        .unwrap();
        let corrupt = |r: Result<()>| assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
        corrupt(s.groups().map(drop));
        corrupt(s.group("g").map(drop));
        corrupt(s.users().map(drop));
        corrupt(s.user("u").map(drop));
        corrupt(s.rules().map(drop));
        corrupt(s.events(&EventQuery::default()).map(drop));
        corrupt(s.workloads().map(drop));
        corrupt(s.setting("k").map(drop));
        corrupt(s.policy_snapshot().map(drop));
        // Unknown user with a corrupt role: verification errs too, nothing panics.
        assert!(s.verify_password("u", "password1").is_err());
    }

    #[test]
    fn store_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Store>();
    }
}
