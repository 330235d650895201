//! The control process's shared core: the store, the live event stream, login throttling and
//! the "policy changed" signal that the dataplane pusher waits on. The API's handlers, the
//! dataplane supervisor's event intake and learning all go through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};

use crate::api::auth::Throttle;
use crate::api::error::ApiError;
use crate::model::{Event, EventKind, Mode, NewEvent};
use crate::store::{Store, StoreError};

/// Events kept for slow SSE subscribers before they miss some (they are told).
pub const EVENT_BACKLOG: usize = 4096;
/// Default session token lifetime.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// Shared by every task of the control process.
#[derive(Debug)]
pub struct Core {
    /// Persistent state.
    pub store: Store,
    /// Every stored event, as it is stored.
    pub events: broadcast::Sender<Event>,
    /// Failed logins.
    pub throttle: Throttle,
    /// Session token lifetime.
    pub token_ttl: Duration,
    /// Mode of groups created from workloads.
    pub default_mode: Mode,
    /// Bumped on every change the dataplane must see (groups, rules, workloads).
    policy_rev: watch::Sender<u64>,
    /// Bumped on every change of a process profile or file rules (the engines reload).
    profiles_rev: watch::Sender<u64>,
    /// When the process started.
    pub started: Instant,
    /// API requests served, by class (2xx, 4xx, 5xx).
    pub requests: [AtomicU64; 3],
    /// The dataplane, once started.
    pub dp: std::sync::OnceLock<crate::dataplane::SupervisorHandle>,
    /// The network graph from the dataplane's connection records.
    pub conversations: std::sync::Mutex<crate::conversations::Conversations>,
    /// Events announced since the process started, by kind (in [`EventKind::ALL`] order).
    pub events_by_kind: [AtomicU64; EventKind::ALL.len()],
    /// Dataplane restarts since the process started.
    pub dp_restarts: AtomicU64,
    /// Delivery counters of the notification targets, once started.
    pub notify: std::sync::OnceLock<Vec<Arc<crate::notify::TargetStats>>>,
    /// How each plumbed container is connected now (by workload id), kept by the plumbing.
    pub plumbing: std::sync::Mutex<std::collections::HashMap<String, crate::model::Plumbing>>,
    /// The process engine's counters, once it runs.
    pub process: std::sync::OnceLock<Arc<crate::process::engine::EngineCounters>>,
    /// The file engine's counters, once it runs.
    pub file: std::sync::OnceLock<Arc<crate::file::engine::FileCounters>>,
}

impl Core {
    /// A core over `store`.
    pub fn new(store: Store, default_mode: Mode, token_ttl: Duration) -> Arc<Self> {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let (policy_rev, _) = watch::channel(0);
        Arc::new(Self {
            store,
            events,
            throttle: Throttle::default(),
            token_ttl,
            default_mode,
            policy_rev,
            profiles_rev: watch::channel(0).0,
            started: Instant::now(),
            requests: Default::default(),
            dp: std::sync::OnceLock::new(),
            conversations: Default::default(),
            events_by_kind: Default::default(),
            dp_restarts: AtomicU64::new(0),
            notify: std::sync::OnceLock::new(),
            plumbing: Default::default(),
            process: std::sync::OnceLock::new(),
            file: std::sync::OnceLock::new(),
        })
    }

    /// `w` with the plumbing it has now (stored workloads say `none`).
    pub fn with_plumbing(&self, mut w: crate::model::Workload) -> crate::model::Workload {
        if let Ok(m) = self.plumbing.lock()
            && let Some(p) = m.get(&w.id)
        {
            w.plumbing = *p;
        }
        w
    }

    /// Runs `f` on the store off the async workers (SQLite writes wait for fsync).
    pub async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(r) => r.map_err(ApiError::from),
            Err(e) => Err(ApiError::internal(format!("store task failed: {e}"))),
        }
    }

    /// Announces stored events to live subscribers.
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            if let Some(i) = EventKind::ALL.iter().position(|k| *k == e.kind) {
                self.events_by_kind[i].fetch_add(1, Ordering::Relaxed);
            }
            // No subscriber is fine.
            let _ = self.events.send(e);
        }
    }

    /// Stores and announces one event.
    pub async fn record(&self, ev: NewEvent) -> Result<Event, ApiError> {
        let e = self.db(move |s| s.append_event(ev)).await?;
        self.publish([e.clone()]);
        Ok(e)
    }

    /// Tells the dataplane pusher that the policy changed.
    pub fn policy_changed(&self) {
        self.policy_rev.send_modify(|r| *r += 1);
    }

    /// Waits for policy changes.
    pub fn policy_watch(&self) -> watch::Receiver<u64> {
        self.policy_rev.subscribe()
    }

    /// Signals that a process profile or file rules changed.
    pub fn profiles_changed(&self) {
        self.profiles_rev.send_modify(|r| *r += 1);
    }

    /// Waits for profile changes.
    pub fn profiles_watch(&self) -> watch::Receiver<u64> {
        self.profiles_rev.subscribe()
    }

    /// Counts a served request by its status.
    pub fn count_request(&self, status: u16) {
        let i = match status {
            500.. => 2,
            400..=499 => 1,
            _ => 0,
        };
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Declares `w` (its group created when missing, in `default_mode`), in one go.
pub fn declare_workload(
    store: &Store,
    mut w: crate::model::Workload,
    default_mode: Mode,
    actor: &str,
) -> Result<(crate::model::Workload, Vec<Event>), StoreError> {
    let mut events = Vec::new();
    let (created, ev) = store.ensure_auto_group(&w.group, default_mode, actor)?;
    if created {
        events.extend(ev);
    }
    if let Some((g, _)) = store.group(&w.group)? {
        w.mode = g.network_mode;
    }
    let w = w;
    events.extend(store.upsert_workload(w.clone(), actor)?);
    Ok((w, events))
}

/// Where the first admin's password came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminPassword {
    /// Users existed already.
    Existing,
    /// `PALISADE_ADMIN_PASSWORD`.
    FromEnvironment,
    /// Generated and written to this file (0600); it must be changed at first login.
    Generated(std::path::PathBuf),
}

/// Creates the first admin (`admin`) when there is no user: with `env_password` when given,
/// else a random password written to `<data_dir>/admin-password`, mode 0600, that must be
/// changed at first login. There is no default password.
pub fn bootstrap_admin(
    store: &Store,
    data_dir: &std::path::Path,
    env_password: Option<String>,
) -> Result<AdminPassword, StoreError> {
    if store.user_count()? > 0 {
        return Ok(AdminPassword::Existing);
    }
    if let Some(pw) = env_password.filter(|p| !p.is_empty()) {
        store.create_user("admin", &pw, crate::model::Role::Admin, false, "system")?;
        return Ok(AdminPassword::FromEnvironment);
    }
    let mut bytes = [0u8; 18];
    rand::fill(&mut bytes);
    let pw = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
    let path = data_dir.join("admin-password");
    write_secret(&path, &format!("{pw}\n")).map_err(|source| StoreError::Io {
        action: "write the generated admin password",
        path: path.clone(),
        source,
    })?;
    store.create_user("admin", &pw, crate::model::Role::Admin, true, "system")?;
    Ok(AdminPassword::Generated(path))
}

/// Writes `text` to a new file created mode 0600 (replacing an old one).
pub fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
