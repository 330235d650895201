//! Runs `palisade-dp`, restarts it when it dies, and keeps it on the latest policy.
//!
//! # Lifecycle
//!
//! One supervisor thread loops over *runs*: spawn the child (unless
//! [`SupervisorOptions::external`]), connect to its control socket (retrying until it is up,
//! [`SupervisorOptions::connect_timeout`] at most), open a second, subscribed connection whose
//! events go out as [`DpNotice::Event`], push the desired policy (a full resync) and send
//! [`DpNotice::Up`]. Then it serves requests until the child exits, a connection breaks or
//! shutdown is asked. A broken run sends [`DpNotice::Down`], stops what is left of the child
//! (SIGTERM, then SIGKILL after 2 s; by pid, never by name), waits the [`Backoff`] delay
//! (doubling from `restart_backoff.0` to `.1`, reset after a run of `reset_after`) and starts
//! again with [`DpNotice::Restarted`].
//!
//! # Policy
//!
//! [`SupervisorHandle::set_policy`] records the snapshot as the desired one right away (the
//! latest call wins: a snapshot replaced before it was sent is never sent) and resolves once
//! the dataplane acknowledged a snapshot at least as new, with that generation. While no
//! dataplane is connected the request waits (callers wanting a bound use a timeout); it is
//! sent on the next connect. A snapshot the dataplane refuses fails its waiters with
//! [`DpError::Refused`] and is not resent: resyncs send the last acknowledged one.
//!
//! # Plumbing
//!
//! [`SupervisorHandle::state`] follows the dataplane: which *run* (connection) is current,
//! whether it is up, and the snapshot it acknowledged last. Port pairs are per run:
//! [`SupervisorHandle::add_pair`] and [`SupervisorHandle::remove_pair`] name the run they are
//! meant for and fail with [`DpError::WrongRun`] once another run replaced it (its pairs died
//! with its dataplane).
//!
//! # Notices
//!
//! Events are sent with backpressure (a slow consumer slows the events connection; the
//! dataplane then drops and counts, never blocks). Lifecycle notices never block the
//! supervisor: if the channel is full they are logged and dropped. Dropping the last handle
//! shuts the supervisor down like [`SupervisorHandle::shutdown`].

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dataplane::ctl::{Client, ClientConfig, CtlError, Message, PortSpecDto, Stats};
use dataplane::policy::Policy;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Backoff, DpError, DpNotice};

/// How to run the dataplane.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// The `palisade-dp` executable.
    pub dp_binary: PathBuf,
    /// Its configuration file (its `[dataplane] socket` must be `socket`).
    pub config_path: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// Restart delay: first and largest.
    pub restart_backoff: (Duration, Duration),
    /// A run at least this long resets the restart delay.
    pub reset_after: Duration,
    /// Do not spawn: connect to a dataplane someone else runs (reconnecting with backoff).
    pub external: bool,
    /// How long a started dataplane may take to accept connections before it is restarted.
    pub connect_timeout: Duration,
    /// How long [`SupervisorHandle::stats`] waits.
    pub stats_timeout: Duration,
    /// How long shutdown waits after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    /// Capacity of the notice channel.
    pub notice_capacity: usize,
}

impl SupervisorOptions {
    /// Defaults: backoff 200 ms doubling to 30 s, reset after 60 s up, 60 s to come up, 5 s
    /// for stats, 10 s between SIGTERM and SIGKILL at shutdown, 4096 notices.
    pub fn new(dp_binary: PathBuf, config_path: PathBuf, socket: PathBuf) -> Self {
        Self {
            dp_binary,
            config_path,
            socket,
            restart_backoff: (Duration::from_millis(200), Duration::from_secs(30)),
            reset_after: Duration::from_secs(60),
            external: false,
            connect_timeout: Duration::from_secs(60),
            stats_timeout: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(10),
            notice_capacity: 4096,
        }
    }
}

type PolicyWaiter = oneshot::Sender<Result<u64, DpError>>;
type StatsWaiter = oneshot::Sender<Result<Stats, DpError>>;

/// A request for one run's connection.
struct Request {
    run: u64,
    msg: Message,
    reply: oneshot::Sender<Result<Message, DpError>>,
}

/// The dataplane as the plumbing sees it; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct DpState {
    /// The current run (connection); 0 before the first.
    pub run: u64,
    /// Connected and resynced.
    pub up: bool,
    /// The snapshot it acknowledged last (kept across runs: a new run is resynced to it).
    pub acked: Option<Arc<Policy>>,
}

#[derive(Default)]
struct State {
    /// Newest snapshot not yet acknowledged, with everyone waiting for it or an older one.
    pending: Option<Policy>,
    waiters: Vec<PolicyWaiter>,
    /// Last snapshot the dataplane acknowledged (what a resync sends).
    acked: Option<Arc<Policy>>,
    stats: Vec<StatsWaiter>,
    requests: Vec<Request>,
    shutdown: bool,
    /// Bumped on every connect; an events thread of an older connection stops.
    epoch: u64,
    /// Set by the events thread of `epoch` when its connection broke.
    lost: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    pid: AtomicU32,
    connected: AtomicBool,
    finished: watch::Sender<bool>,
    dp_state: watch::Sender<DpState>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("pid", &self.pid)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a supervisor thread panicked; the state is still consistent
        // (every mutation is a single assignment or push), so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait(&self, timeout: Duration) {
        let g = self.lock();
        let _g = self
            .cond
            .wait_timeout(g, timeout)
            .unwrap_or_else(|p| p.into_inner());
    }

    /// Sleeps up to `d`, returning early (true) on shutdown.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self.lock();
        while !g.shutdown {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self
                .cond
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    fn is_shutdown(&self) -> bool {
        self.lock().shutdown
    }

    fn request_shutdown(&self) {
        self.lock().shutdown = true;
        self.cond.notify_all();
    }
}

/// Shuts the supervisor down when the last handle goes.
#[derive(Debug)]
struct LastHandle(Arc<Shared>);

impl Drop for LastHandle {
    fn drop(&mut self) {
        self.0.request_shutdown();
    }
}

/// Talks to a running [`Supervisor`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    shared: Arc<Shared>,
    stats_timeout: Duration,
    _last: Arc<LastHandle>,
}

/// Runs and supervises `palisade-dp`; see the module documentation.
#[derive(Debug)]
pub struct Supervisor;

impl Supervisor {
    /// Starts supervising (on its own threads) and returns the handle and the notices.
    pub fn start(opts: SupervisorOptions) -> (SupervisorHandle, mpsc::Receiver<DpNotice>) {
        let (tx, rx) = mpsc::channel(opts.notice_capacity.max(1));
        let (finished, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            pid: AtomicU32::new(0),
            connected: AtomicBool::new(false),
            finished,
            dp_state: watch::channel(DpState::default()).0,
        });
        let handle = SupervisorHandle {
            shared: shared.clone(),
            stats_timeout: opts.stats_timeout,
            _last: Arc::new(LastHandle(shared.clone())),
        };
        let spawned = std::thread::Builder::new()
            .name("dp-supervisor".into())
            .spawn({
                let shared = shared.clone();
                move || {
                    let mut r = Runner {
                        shared: shared.clone(),
                        opts,
                        tx,
                    };
                    r.run();
                    shared.finished.send_replace(true);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the dataplane supervisor thread");
            let mut st = shared.lock();
            st.shutdown = true;
            for w in st.waiters.drain(..) {
                let _ = w.send(Err(DpError::Shutdown));
            }
            drop(st);
            shared.finished.send_replace(true);
        }
        (handle, rx)
    }
}

impl SupervisorHandle {
    /// Makes `policy` the desired snapshot; resolves with the generation the dataplane
    /// acknowledged for it or a newer one. See the module documentation.
    pub fn set_policy(
        &self,
        policy: Policy,
    ) -> impl Future<Output = Result<u64, DpError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if st.shutdown {
                let _ = tx.send(Err(DpError::Shutdown));
            } else {
                st.pending = Some(policy);
                st.waiters.push(tx);
            }
        }
        self.shared.cond.notify_all();
        async move { rx.await.unwrap_or(Err(DpError::Shutdown)) }
    }

    /// Every dataplane counter; fails at once when no dataplane is connected.
    pub async fn stats(&self) -> Result<Stats, DpError> {
        if !self.shared.connected.load(Ordering::Acquire) {
            return Err(DpError::NotConnected);
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if st.shutdown {
                return Err(DpError::Shutdown);
            }
            st.stats.push(tx);
        }
        self.shared.cond.notify_all();
        match tokio::time::timeout(self.stats_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(DpError::Shutdown),
            Err(_) => Err(DpError::Timeout(self.stats_timeout)),
        }
    }

    /// The dataplane's run, liveness and acknowledged snapshot, as they change.
    pub fn state(&self) -> watch::Receiver<DpState> {
        self.shared.dp_state.subscribe()
    }

    /// Sends `msg` on run `run`'s connection and returns the reply (an error reply is
    /// [`DpError::Refused`]); waits at most `timeout`.
    pub async fn request(
        &self,
        run: u64,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message, DpError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if st.shutdown {
                return Err(DpError::Shutdown);
            }
            st.requests.push(Request {
                run,
                msg,
                reply: tx,
            });
        }
        self.shared.cond.notify_all();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(DpError::Shutdown),
            Err(_) => Err(DpError::Timeout(timeout)),
        }
    }

    /// Attaches two ports as a forwarding pair on run `run`; returns the pair id.
    pub async fn add_pair(&self, run: u64, a: PortSpecDto, b: PortSpecDto) -> Result<u64, DpError> {
        let msg = Message::AddPair {
            ports: Box::new([a, b]),
        };
        match self.request(run, msg, PAIR_TIMEOUT).await? {
            Message::PairAdded { id } => Ok(id),
            other => Err(DpError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Detaches pair `id` of run `run`.
    pub async fn remove_pair(&self, run: u64, id: u64) -> Result<(), DpError> {
        match self
            .request(run, Message::RemovePair { id }, PAIR_TIMEOUT)
            .await?
        {
            Message::Ok => Ok(()),
            other => Err(DpError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Pid of the running `palisade-dp` child, if one runs.
    pub fn pid(&self) -> Option<u32> {
        match self.shared.pid.load(Ordering::Acquire) {
            0 => None,
            p => Some(p),
        }
    }

    /// Whether a dataplane is connected and resynced.
    pub fn is_up(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// Stops supervising: SIGTERM to the child, SIGKILL after the stop timeout, and returns
    /// once it is gone. Pending requests fail with [`DpError::Shutdown`].
    pub async fn shutdown(&self) {
        self.shared.request_shutdown();
        let mut rx = self.shared.finished.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }
}

/// How long adding or removing a pair may take (attaching an `af_packet` port takes tens of
/// milliseconds; a busy dataplane more).
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(10);

/// The supervisor thread.
struct Runner {
    shared: Arc<Shared>,
    opts: SupervisorOptions,
    tx: mpsc::Sender<DpNotice>,
}

/// How a run ended.
enum End {
    Shutdown,
    Broken(String),
}

fn log_child_output(stream: impl Read + Send + 'static, pid: u32) {
    let spawned = std::thread::Builder::new()
        .name("dp-log".into())
        .spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if line.contains(" ERROR ") {
                    tracing::error!(target: "dp", pid, "{line}");
                } else if line.contains(" WARN ") {
                    tracing::warn!(target: "dp", pid, "{line}");
                } else {
                    tracing::info!(target: "dp", pid, "{line}");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread for palisade-dp's output");
    }
}

/// SIGTERM, then SIGKILL after `grace`; reaps the child.
fn terminate(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // The child is ours and not yet reaped, so the pid cannot have been reused.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(st)) => {
                tracing::info!(status = %st, "palisade-dp stopped");
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    tracing::warn!(
        pid = child.id(),
        "palisade-dp did not stop after SIGTERM; killing it"
    );
    let _ = child.kill();
    let _ = child.wait();
}

impl Runner {
    fn notice(&self, n: DpNotice) {
        match self.tx.try_send(n) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(n)) => {
                tracing::warn!(notice = ?n, "dataplane notice dropped: the channel is full");
            }
        }
    }

    fn client_config(&self) -> ClientConfig {
        ClientConfig::default()
    }

    fn spawn(&self) -> Result<Child, String> {
        let mut child = Command::new(&self.opts.dp_binary)
            .arg("--config")
            .arg(&self.opts.config_path)
            // RUST_LOG and the rest of the environment are inherited.
            // Its own process group: a terminal's Ctrl-C reaches `palisade`, which stops the
            // dataplane in order, instead of killing both at once (and the supervisor seeing
            // a crash to restart from while it shuts down).
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.opts.dp_binary.display()))?;
        let pid = child.id();
        if let Some(s) = child.stdout.take() {
            log_child_output(s, pid);
        }
        if let Some(s) = child.stderr.take() {
            log_child_output(s, pid);
        }
        tracing::info!(pid, binary = %self.opts.dp_binary.display(), "palisade-dp started");
        Ok(child)
    }

    fn run(&mut self) {
        let (min, max) = self.opts.restart_backoff;
        let mut backoff = Backoff::new(min, max, self.opts.reset_after);
        loop {
            if self.shared.is_shutdown() {
                break;
            }
            let started = Instant::now();
            let mut child = None;
            let end = if self.opts.external {
                self.serve(None)
            } else if self.answering() {
                // A dataplane that outlived an earlier `palisade` (it keeps enforcing when
                // control dies) still owns the socket: a new one could not bind it. Adopt it;
                // when it goes away, start our own.
                tracing::warn!(
                    socket = %self.opts.socket.display(),
                    "a palisade-dp already answers on the control socket: adopting it (not stopped when palisade stops)"
                );
                self.serve(None)
            } else {
                match self.spawn() {
                    Ok(c) => {
                        self.shared.pid.store(c.id(), Ordering::Release);
                        if backoff.failures() > 0 {
                            self.notice(DpNotice::Restarted {
                                attempt: backoff.failures(),
                            });
                        }
                        let c = child.insert(c);
                        self.serve(Some(c))
                    }
                    Err(e) => End::Broken(e),
                }
            };
            self.shared.connected.store(false, Ordering::Release);
            {
                let mut st = self.shared.lock();
                st.epoch += 1; // stops the events thread
                st.lost = None;
                for w in st.stats.drain(..) {
                    let _ = w.send(Err(DpError::NotConnected));
                }
                for r in st.requests.drain(..) {
                    let _ = r.reply.send(Err(DpError::WrongRun));
                }
            }
            self.shared
                .dp_state
                .send_if_modified(|s| std::mem::replace(&mut s.up, false));
            if let Some(c) = child.as_mut() {
                let grace = match end {
                    End::Shutdown => self.opts.stop_timeout,
                    End::Broken(_) => Duration::from_secs(2),
                };
                terminate(c, grace);
            }
            self.shared.pid.store(0, Ordering::Release);
            let End::Broken(reason) = end else { break };
            tracing::warn!(%reason, "dataplane down");
            self.notice(DpNotice::Down { reason });
            let delay = backoff.on_exit(started.elapsed());
            tracing::info!(
                ?delay,
                failures = backoff.failures(),
                "restarting the dataplane after a delay"
            );
            if self.shared.sleep(delay) {
                break;
            }
        }
        let mut st = self.shared.lock();
        for w in st.waiters.drain(..) {
            let _ = w.send(Err(DpError::Shutdown));
        }
        for w in st.stats.drain(..) {
            let _ = w.send(Err(DpError::Shutdown));
        }
        for r in st.requests.drain(..) {
            let _ = r.reply.send(Err(DpError::Shutdown));
        }
        st.pending = None;
    }

    /// Why the run must end now, if it must.
    fn check(&self, child: &mut Option<&mut Child>) -> Option<End> {
        let st = self.shared.lock();
        if st.shutdown {
            return Some(End::Shutdown);
        }
        if let Some(reason) = &st.lost {
            return Some(End::Broken(format!("event connection lost: {reason}")));
        }
        drop(st);
        if let Some(c) = child {
            match c.try_wait() {
                Ok(Some(st)) => return Some(End::Broken(format!("palisade-dp exited ({st})"))),
                Ok(None) => {}
                Err(e) => return Some(End::Broken(format!("cannot wait for palisade-dp: {e}"))),
            }
        }
        None
    }

    fn connect(&self, child: &mut Option<&mut Child>) -> Result<Client, End> {
        let deadline = Instant::now() + self.opts.connect_timeout;
        loop {
            if let Some(end) = self.check(child) {
                return Err(end);
            }
            let err = match Client::connect_with(&self.opts.socket, self.client_config()) {
                Ok(c) => return Ok(c),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(End::Broken(format!(
                    "no dataplane on {} within {:?}: {err}",
                    self.opts.socket.display(),
                    self.opts.connect_timeout
                )));
            }
            self.shared.wait(Duration::from_millis(100));
        }
    }

    /// One run: connect, subscribe, resync, serve until something ends it.
    /// Whether a dataplane answers on the socket right now.
    fn answering(&self) -> bool {
        self.opts.socket.exists()
            && Client::connect_with(
                &self.opts.socket,
                ClientConfig {
                    timeout: Some(Duration::from_secs(2)),
                    ..self.client_config()
                },
            )
            .is_ok()
    }

    fn serve(&self, mut child: Option<&mut Child>) -> End {
        let mut ctl = match self.connect(&mut child) {
            Ok(c) => c,
            Err(end) => return end,
        };
        let mut events = match Client::connect_with(&self.opts.socket, self.client_config())
            .and_then(|mut c| c.subscribe().map(|()| c))
        {
            Ok(c) => c,
            Err(e) => return End::Broken(format!("cannot subscribe to events: {e}")),
        };
        let epoch = {
            let mut st = self.shared.lock();
            st.epoch += 1;
            st.lost = None;
            st.epoch
        };
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("dp-events".into())
            .spawn(move || events_loop(&mut events, &shared, epoch, &tx));
        if let Err(e) = spawned {
            return End::Broken(format!("cannot start the events thread: {e}"));
        }

        let mut generation = ctl.server().generation;
        let mut resync = true;
        let mut announced = false;
        loop {
            if let Some(end) = self.check(&mut child) {
                return end;
            }
            let (stats, send, requests) = {
                let mut st = self.shared.lock();
                let stats: Vec<StatsWaiter> = st.stats.drain(..).collect();
                // Requests wait until the run is announced (resynced).
                let requests: Vec<Request> = if announced {
                    st.requests.drain(..).collect()
                } else {
                    Vec::new()
                };
                let send = match st.pending.take() {
                    Some(p) => Some((Arc::new(p), std::mem::take(&mut st.waiters))),
                    None if resync => st.acked.clone().map(|p| (p, Vec::new())),
                    None => None,
                };
                (stats, send, requests)
            };
            resync = false;
            if let Some((policy, waiters)) = send {
                match ctl.set_policy(&policy) {
                    Ok(g) => {
                        generation = g;
                        tracing::info!(generation = g, "dataplane runs the policy");
                        self.shared
                            .dp_state
                            .send_modify(|s| s.acked = Some(Arc::clone(&policy)));
                        self.shared.lock().acked = Some(policy);
                        for w in waiters {
                            let _ = w.send(Ok(g));
                        }
                    }
                    Err(CtlError::Remote { code, message }) => {
                        tracing::warn!(generation = policy.generation, %code, %message, "the dataplane refused the policy");
                        for w in waiters {
                            let _ = w.send(Err(DpError::Refused {
                                code,
                                message: message.clone(),
                            }));
                        }
                    }
                    Err(e) => {
                        // Not sent: keep it (unless a newer one came) for the next run.
                        let mut st = self.shared.lock();
                        if st.pending.is_none() && !waiters.is_empty() {
                            st.pending = Some(Arc::unwrap_or_clone(policy));
                        }
                        st.waiters.extend(waiters);
                        drop(st);
                        for w in stats {
                            let _ = w.send(Err(DpError::NotConnected));
                        }
                        return End::Broken(format!("cannot push the policy: {e}"));
                    }
                }
            }
            if !announced {
                announced = true;
                self.shared.connected.store(true, Ordering::Release);
                self.shared.dp_state.send_modify(|s| {
                    s.run = epoch;
                    s.up = true;
                });
                tracing::info!(generation, "dataplane up");
                self.notice(DpNotice::Up { generation });
            }
            let mut broken = None;
            for w in stats {
                if broken.is_some() {
                    let _ = w.send(Err(DpError::NotConnected));
                    continue;
                }
                match ctl.stats() {
                    Ok(s) => {
                        let _ = w.send(Ok(s));
                    }
                    Err(e @ CtlError::Remote { .. }) => {
                        let _ = w.send(Err(e.into()));
                    }
                    Err(e) => {
                        broken = Some(format!("stats request failed: {e}"));
                        let _ = w.send(Err(e.into()));
                    }
                }
            }
            for r in requests {
                if broken.is_some() {
                    let _ = r.reply.send(Err(DpError::NotConnected));
                    continue;
                }
                if r.run != epoch {
                    let _ = r.reply.send(Err(DpError::WrongRun));
                    continue;
                }
                match ctl.request(r.msg) {
                    Ok(m) => {
                        let _ = r.reply.send(Ok(m));
                    }
                    Err(e @ CtlError::Remote { .. }) => {
                        let _ = r.reply.send(Err(e.into()));
                    }
                    Err(e) => {
                        broken = Some(format!("request failed: {e}"));
                        let _ = r.reply.send(Err(e.into()));
                    }
                }
            }
            if let Some(reason) = broken {
                return End::Broken(reason);
            }
            let st = self.shared.lock();
            if st.pending.is_none()
                && st.stats.is_empty()
                && (st.requests.is_empty() || !announced)
                && !st.shutdown
                && st.lost.is_none()
            {
                let _ = self
                    .shared
                    .cond
                    .wait_timeout(st, Duration::from_millis(200))
                    .unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

/// Forwards a subscribed connection's events until its run ends or the connection breaks.
fn events_loop(client: &mut Client, shared: &Shared, epoch: u64, tx: &mpsc::Sender<DpNotice>) {
    loop {
        {
            let st = shared.lock();
            if st.epoch != epoch || st.shutdown {
                return;
            }
        }
        match client.next_event(Some(Duration::from_millis(200))) {
            Ok(Some(ev)) => {
                // Backpressure on a slow consumer (the dataplane drops and counts what its
                // queue for us cannot hold), but never past the end of this run: a thread
                // stuck here would keep its connection, and the dataplane takes only 8.
                // A gone consumer is ignored (keep draining).
                let mut n = DpNotice::Event(ev);
                loop {
                    match tx.try_send(n) {
                        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => break,
                        Err(mpsc::error::TrySendError::Full(back)) => {
                            n = back;
                            {
                                let st = shared.lock();
                                if st.epoch != epoch || st.shutdown {
                                    return;
                                }
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                let mut st = shared.lock();
                if st.epoch == epoch {
                    st.lost = Some(e.to_string());
                }
                drop(st);
                shared.cond.notify_all();
                return;
            }
        }
    }
}
