//! `palisade up`: the appliance on this host. Opens the store, creates the first admin, starts
//! and supervises `palisade-dp`, keeps it on the latest policy, turns what it reports into
//! events and learned rules, and serves the API until SIGINT or SIGTERM.
//!
//! ```text
//!  API handlers --(store write, policy_changed)--> pusher --set_policy--> Supervisor --> palisade-dp
//!  palisade-dp --events--> intake: violations/threats -> store + SSE; connection records -> learn
//!                                   -> learned rules -> policy_changed
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::api::{AppState, app};
use crate::config::Config;
use crate::dataplane::{DpNotice, Supervisor, SupervisorHandle, SupervisorOptions, events};
use crate::learn::{self, Context};
use crate::model::{NewEvent, Severity};
use crate::service::{AdminPassword, Core, bootstrap_admin, now_ms};
use crate::store::Store;

/// How long requests in flight (and event streams) get after SIGINT/SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How to run.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Validated configuration.
    pub config: Config,
    /// The configuration file `palisade-dp` is started with (it reads `[dataplane]`); `None`
    /// writes the embedded defaults next to the database.
    pub config_path: Option<PathBuf>,
    /// `palisade-dp` (default: next to this executable).
    pub dp_binary: Option<PathBuf>,
    /// Serve the API without a dataplane (no enforcement).
    pub no_dataplane: bool,
    /// Build the demo topology ([`crate::demo`]) and run the dataplane on its ports.
    pub demo: bool,
}

/// Why `up` stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// The store.
    #[error("store")]
    Store(#[from] crate::store::StoreError),
    /// The demo topology.
    #[error("demo topology")]
    Demo(#[from] crate::demo::DemoError),
    /// Files, sockets.
    #[error("{what}")]
    Io {
        /// What failed.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpError {
    let what = what.into();
    move |source| UpError::Io { what, source }
}

/// Runs until SIGINT/SIGTERM.
#[allow(clippy::print_stdout)]
pub async fn run(opts: UpOptions) -> Result<(), UpError> {
    let cfg = &opts.config;
    let data_dir = cfg.store.data_dir.clone();
    let store = Store::open(&data_dir, cfg.store.settings)?;
    let admin = bootstrap_admin(
        &store,
        &data_dir,
        std::env::var("PALISADE_ADMIN_PASSWORD").ok(),
    )?;
    let core = Core::new(
        store,
        cfg.discovery.default_mode,
        crate::service::DEFAULT_TOKEN_TTL,
    );
    // Before the first event, so the notification targets see every one.
    crate::notify::start(&core, cfg.notify.clone());
    let _ = core
        .record(NewEvent::system(Severity::Info, "palisade started"))
        .await;
    declare_configured(&core, &cfg.workloads).await?;
    // Containers on this host, kept as workloads (not with the demo: its ports are veths).
    let (found_tx, found_rx) = tokio::sync::watch::channel(Arc::new(Vec::new()));
    if !opts.demo {
        tokio::spawn(crate::workload::sync::run(
            Arc::clone(&core),
            crate::workload::sync::Options {
                runtime_socket: cfg.discovery.runtime_socket.clone(),
                interval: Duration::from_millis(cfg.discovery.interval_ms),
                system_namespaces: cfg.discovery.system_namespaces.clone(),
            },
            found_tx,
        ));
    }

    let mut demo = None;
    if opts.demo {
        let d = crate::demo::Demo::start(&data_dir, opts.config_path.as_deref())?;
        for w in crate::demo::Demo::workloads() {
            let mode = core.default_mode;
            let (_, events) = core
                .db(move |s| crate::service::declare_workload(s, w, mode, "demo"))
                .await
                .map_err(|e| UpError::Io {
                    what: "declare the demo workloads".into(),
                    source: std::io::Error::other(e.message),
                })?;
            core.publish(events);
        }
        for line in crate::demo::Demo::describe() {
            println!("palisade: demo: {line}");
        }
        demo = Some(d);
    }
    let dp = if opts.no_dataplane {
        None
    } else {
        let dp_config = demo.as_ref().map(|d| d.config_path().to_path_buf());
        Some(start_dataplane(&opts, &core, dp_config)?)
    };
    if let Some(h) = &dp {
        let _ = core.dp.set(h.clone());
    }
    // The process engine (its own self-test decides whether it can run here).
    let (process_stop, process_stop_rx) = tokio::sync::watch::channel(false);
    let process_counters = Arc::new(crate::process::engine::EngineCounters::default());
    let process = (!opts.demo && cfg.process.enabled).then(|| {
        tokio::spawn(crate::process::engine::run(
            Arc::clone(&core),
            cfg.process.clone(),
            Arc::clone(&process_counters),
            found_rx.clone(),
            process_stop_rx,
        ))
    });
    // The file engine (fanotify marks on container filesystems).
    let (file_stop, file_stop_rx) = tokio::sync::watch::channel(false);
    let file = (!opts.demo && cfg.file.enabled).then(|| {
        tokio::spawn(crate::file::engine::run(
            Arc::clone(&core),
            cfg.file.clone(),
            Arc::new(crate::file::engine::FileCounters::default()),
            found_rx.clone(),
            file_stop_rx,
        ))
    });
    // Containers to the dataplane (tap or inline by mode); stopped, and undone, before it.
    let (plumb_stop, plumb_stop_rx) = tokio::sync::watch::channel(false);
    let plumbing = match &dp {
        Some(h) if !opts.demo && cfg.plumb.enabled => Some(tokio::spawn(crate::plumb::run(
            Arc::clone(&core),
            cfg.plumb.clone(),
            h.clone(),
            found_rx,
            plumb_stop_rx,
        ))),
        _ => None,
    };

    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .map_err(io(format!("listen on {}", cfg.api.listen)))?;
    let addr = listener.local_addr().map_err(io("local address"))?;
    let scheme = if cfg.api.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("palisade: API at {scheme}://{addr}");
    match &admin {
        AdminPassword::Existing => println!(
            "palisade: users exist already (data in {})",
            data_dir.display()
        ),
        AdminPassword::FromEnvironment => {
            println!("palisade: user `admin`, password from PALISADE_ADMIN_PASSWORD")
        }
        AdminPassword::Generated(p) => println!(
            "palisade: user `admin`, generated password in {} (must be changed at first login)",
            p.display()
        ),
    }
    let router = app(AppState {
        core: Arc::clone(&core),
    })
    .into_make_service_with_connect_info::<SocketAddr>();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let served = match &cfg.api.tls {
        // Graceful shutdown waits for every open connection, and an event stream (SSE) never
        // ends by itself: after SHUTDOWN_GRACE the rest is cut.
        None => tokio::select! {
            r = axum::serve(listener, router).with_graceful_shutdown(stopped(stop_rx.clone())) => {
                r.map_err(io("serve the API"))
            }
            () = async {
                stopped(stop_rx.clone()).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::info!(grace = ?SHUTDOWN_GRACE, "closing the connections still open (event streams)");
                Ok(())
            }
        },
        Some(tls) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rc = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(io(format!(
                    "TLS certificate {} / key {}",
                    tls.cert.display(),
                    tls.key.display()
                )))?;
            let handle = axum_server::Handle::new();
            let h2 = handle.clone();
            tokio::spawn(async move {
                stopped(stop_rx).await;
                h2.graceful_shutdown(Some(SHUTDOWN_GRACE));
            });
            let std_listener = listener.into_std().map_err(io("listener"))?;
            axum_server::from_tcp_rustls(std_listener, rc)
                .map_err(io("TLS listener"))?
                .handle(handle)
                .serve(router)
                .await
                .map_err(io("serve the API over TLS"))
        }
    };
    let _ = core
        .record(NewEvent::system(Severity::Info, "palisade stopping"))
        .await;
    let _ = process_stop.send(true);
    let _ = file_stop.send(true);
    if let Some(p) = process {
        let _ = p.await;
    }
    if let Some(f) = file {
        let _ = f.await;
    }
    let _ = plumb_stop.send(true);
    if let Some(p) = plumbing {
        let _ = p.await;
    }
    if let Some(h) = dp {
        h.shutdown().await;
    }
    // The dataplane let go of the demo's veths: remove them.
    if let Some(mut d) = demo {
        d.teardown();
    }
    served
}

/// Declares the configuration file's workloads and removes those it declared before but no
/// longer does.
async fn declare_configured(
    core: &Arc<Core>,
    workloads: &[crate::model::Workload],
) -> Result<(), UpError> {
    let mode = core.default_mode;
    let wanted = workloads.to_vec();
    let events = core
        .db(move |s| {
            let mut events = Vec::new();
            for w in s.workloads()? {
                if w.source == crate::model::WorkloadSource::Config
                    && !wanted.iter().any(|x| x.id == w.id)
                {
                    events.extend(s.remove_workload(&w.id, "config")?);
                }
            }
            for w in wanted {
                let (_, evs) = crate::service::declare_workload(s, w, mode, "config")?;
                events.extend(evs);
            }
            Ok(events)
        })
        .await
        .map_err(|e| UpError::Io {
            what: format!("declare the configured workloads: {}", e.message),
            source: std::io::Error::other("store"),
        })?;
    core.publish(events);
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

fn start_dataplane(
    opts: &UpOptions,
    core: &Arc<Core>,
    config_override: Option<PathBuf>,
) -> Result<SupervisorHandle, UpError> {
    let bin = match &opts.dp_binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .map_err(io("find this executable"))?
            .with_file_name("palisade-dp"),
    };
    let config_path = match config_override.as_ref().or(opts.config_path.as_ref()) {
        Some(p) => p.clone(),
        None => {
            // Embedded defaults: an empty file is every default.
            let p = opts.config.store.data_dir.join("dataplane.toml");
            std::fs::write(&p, "# written by palisade up: embedded defaults\n")
                .map_err(io(format!("write {}", p.display())))?;
            p
        }
    };
    let socket = opts.config.dataplane.socket.clone();
    let (handle, notices) = Supervisor::start(SupervisorOptions::new(bin, config_path, socket));
    tokio::spawn(push_policy(Arc::clone(core), handle.clone()));
    tokio::spawn(intake(Arc::clone(core), notices));
    Ok(handle)
}

/// Builds the dataplane snapshot from the store.
pub async fn snapshot(core: &Core, generation: u64) -> Result<dataplane::policy::Policy, String> {
    let default_mode = core.default_mode;
    let (groups, rules, workloads) = core
        .db(|s| {
            let groups: Vec<_> = s.groups()?.into_iter().map(|(g, _)| g).collect();
            Ok((groups, s.rules()?, s.workloads()?))
        })
        .await
        .map_err(|e| e.message)?;
    let rules: Vec<_> = rules.into_iter().map(|(r, _)| r).collect();
    let built = crate::policy::build_with(
        &groups,
        &rules,
        &workloads,
        &[],
        generation,
        crate::policy::BuildOptions { default_mode },
    )
    .map_err(|e| e.to_string())?;
    if !built.skipped_rules.is_empty() {
        tracing::warn!(rules = ?built.skipped_rules, "rules naming missing groups left out of the dataplane policy");
    }
    Ok(built.policy)
}

/// Pushes a new snapshot after every change (changes arriving while one is built are folded
/// into the next). Generations are Unix milliseconds, increasing across restarts of control.
async fn push_policy(core: Arc<Core>, dp: SupervisorHandle) {
    let mut rev = core.policy_watch();
    let mut last_gen = 0u64;
    loop {
        rev.borrow_and_update();
        let generation = (u64::try_from(now_ms()).unwrap_or(0)).max(last_gen + 1);
        last_gen = generation;
        match snapshot(&core, generation).await {
            Ok(p) => {
                let dp = dp.clone();
                // The supervisor keeps the newest snapshot; waiting here would hold back the next.
                tokio::spawn(async move {
                    match dp.set_policy(p).await {
                        Ok(g) => tracing::debug!(generation = g, "dataplane runs the policy"),
                        Err(e) => {
                            tracing::warn!(error = %crate::error_chain(&e), "policy not applied")
                        }
                    }
                });
            }
            Err(e) => tracing::error!(error = %e, "cannot build the dataplane policy"),
        }
        if rev.changed().await.is_err() {
            return;
        }
    }
}

/// Dataplane notices: events into the store and the stream, connection records into learning
/// (in batches of up to a second), up/down into system events.
async fn intake(core: Arc<Core>, mut notices: mpsc::Receiver<DpNotice>) {
    let mut records = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut revs = core.policy_watch();
    let mut ctx: Option<(u64, Context)> = None;
    loop {
        tokio::select! {
            n = notices.recv() => {
                let Some(n) = n else { return };
                match n {
                    DpNotice::Up { generation } => {
                        let _ = core.record(NewEvent::system(Severity::Info, format!("dataplane up, policy generation {generation}"))).await;
                        core.policy_changed();
                    }
                    DpNotice::Down { reason } => {
                        let _ = core.record(NewEvent::system(Severity::Critical, format!("dataplane down: {reason}"))).await;
                    }
                    DpNotice::Restarted { attempt } => {
                        core.dp_restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let _ = core.record(NewEvent::system(Severity::Warning, format!("dataplane restarted (attempt {attempt})"))).await;
                    }
                    DpNotice::Event(ev) => {
                        if let dataplane::report::Event::Connection(c) = &ev {
                            // The graph and learning; no event of its own.
                            if let Ok(mut g) = core.conversations.lock() {
                                g.add(c);
                            }
                            records.push(c.clone());
                            continue;
                        }
                        // The endpoints' context, rebuilt from the store only when the policy
                        // changed since (not for every event).
                        let rev = *revs.borrow_and_update();
                        if ctx.as_ref().is_none_or(|(r, _)| *r != rev) {
                            match snapshot(&core, 0).await {
                                Ok(p) => ctx = Some((rev, Context::from_policy(&p))),
                                Err(e) => tracing::warn!(error = %e, "cannot resolve dataplane events"),
                            }
                        }
                        if let Some((_, c)) = &ctx
                            && let Some(e) = events::from_dataplane(&ev, c, now_ms())
                        {
                            let _ = core.record(e).await;
                        }
                    }
                }
            }
            _ = tick.tick() => {
                if records.is_empty() {
                    continue;
                }
                let batch = std::mem::take(&mut records);
                if let Err(e) = learn_batch(&core, &batch).await {
                    tracing::warn!(error = %e, "learning failed");
                }
            }
        }
    }
}

async fn learn_batch(
    core: &Core,
    batch: &[dataplane::report::ConnectionRecord],
) -> Result<(), String> {
    let p = snapshot(core, 0).await?;
    let ctx = Context::from_policy(&p);
    let existing: Vec<_> = core
        .db(|s| s.rules())
        .await
        .map_err(|e| e.message)?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let out = learn::learn(batch, &ctx, &existing);
    if out.add.is_empty() && out.remove.is_empty() {
        return Ok(());
    }
    let events = core
        .db(move |s| {
            let mut events = Vec::new();
            for id in out.remove {
                events.push(s.delete_rule(id, "learning")?);
            }
            let (_, evs) = s.add_learned_rules(out.add, "learning")?;
            events.extend(evs);
            Ok(events)
        })
        .await
        .map_err(|e| e.message)?;
    core.publish(events);
    core.policy_changed();
    Ok(())
}
