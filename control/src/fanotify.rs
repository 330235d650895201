//! The fanotify permission responder of both engines: permission events (`FAN_OPEN_EXEC_PERM`
//! for the process engine's exec gate, `FAN_OPEN_PERM` for the file engine's block rules) from
//! marked mounts or filesystems (a container's rootfs), each answered allow or deny exactly
//! once, never late; notification events (`FAN_OPEN`, `FAN_CLOSE_WRITE`) of the same marks
//! handed to [`Policy::observe`] on the reader thread (nothing waits for those). What a group
//! watches is [`Config::mask`]; each mark may ask for part of it ([`Responder::mark_mask`]).
//!
//! # Contract
//!
//! A process that execs a file under a mark sleeps in the kernel (D state) until this
//! responder writes a verdict for the event, or closes the fanotify fd. A responder that stops
//! answering therefore hangs containers, so the design is about always answering:
//!
//! - **Reader thread.** Reads events, answers Palisade's own pids (`getpid()` plus
//!   [`Config::trusted_pids`]) with allow at once, answers cache hits itself
//!   ([`Config::hits_in_reader`]: one thread wake-up less per cached exec), and pushes every
//!   other event into a bounded queue ([`Config::queue_capacity`]). When the queue is full the
//!   event is answered at once with [`Config::overflow_verdict`] and counted
//!   ([`Stats::overflow`]).
//! - **Decision workers** ([`Config::workers`]) take events from the queue, build an
//!   [`Request`] from the event's fd (`fstat` and the `/proc/self/fd` link; the responder
//!   never opens or execs a watched path itself), look the verdict up in the cache and call
//!   [`Policy::decide`] only on a miss.
//! - **Watchdog thread.** Every queued event has a deadline ([`Config::deadline`], counted
//!   from when the reader read it). An event still unanswered at its deadline is answered with
//!   [`Config::stall_verdict`] (fail-open allow by default) and counted ([`Stats::watchdog`]);
//!   the worker's later decision is discarded ([`Stats::late`]).
//! - **One answer, one close.** A queued event lives in a `Slot` that owns its fd. Answering
//!   *takes* the fd out of the slot under its lock, writes the response, then closes the fd, so
//!   whichever of worker, watchdog or shutdown comes first answers and the others find the slot
//!   empty. The fd is closed right after the answer (not when the last reference goes), and
//!   never before it: the kernel matches responses by fd number, and a number closed early
//!   could be reused by the next event.
//! - **Two events per exec.** Exec'ing a dynamic binary raises two permission events, one for
//!   the binary and one for its interpreter (`PT_INTERP`, e.g. `ld-linux`, which the kernel
//!   opens for exec too), each with its own fd; a static binary raises one. Nothing pairs
//!   them: every event is answered on its own, and denying either fails the exec with
//!   `EPERM`. The interpreter is the same file for every binary, so it is a cache hit.
//! - **Shutdown** ([`Responder::shutdown`], or drop): flush every mark (no new events), drain
//!   the kernel queue answering allow, answer everything queued with allow, join the threads,
//!   close the fanotify fd (which makes the kernel allow anything still in flight). Nothing
//!   can hang after Palisade stops.
//!
//! # The cache
//!
//! Verdicts are cached by the executed file's identity — device, inode, mtime and ctime (ctime
//! because `utimensat` can put mtime back, ctime cannot be set) — and an opaque policy key the
//! policy supplies ([`Policy::cache_key`], e.g. the container's group). Changing the
//! policy means calling [`Responder::clear_cache`]: it bumps an epoch, and a decision computed
//! under an older epoch is not inserted, so a verdict racing with the clear cannot survive it.
//!
//! # What the policy must not do
//!
//! [`Policy::decide`] runs on a worker with the exec'ing process asleep in the kernel. It
//! must be cheap, must not exec or open files under a marked mount (that would wait on this
//! very responder), and must not wait on the exec'ing process (its `/proc/<pid>/exe`,
//! `cmdline` or `environ`). The watchdog bounds the damage of a slow policy; a panicking one is
//! caught, counted as an error and answered with the stall verdict.
//!
//! [`Policy::cache_key`] runs on the reader (unless [`Config::hits_in_reader`] is off),
//! where nothing bounds it: it must not block at all. A pure function of the request is ideal,
//! e.g. the container whose rootfs mount [`Request::path`] is under.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::fanotify::{
    EventFFlags, Fanotify, FanotifyEvent, FanotifyResponse, InitFlags, MarkFlags, MaskFlags,
    Response,
};

/// The answer to one exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The exec goes ahead.
    Allow,
    /// The exec fails with `EPERM`.
    Deny,
}

/// The identity of an executed file, from `fstat` of the event's fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// `st_dev`: the filesystem (each overlay mount has its own).
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_mtime` and its nanoseconds.
    pub mtime: (i64, i64),
    /// `st_ctime` and its nanoseconds.
    pub ctime: (i64, i64),
}

/// What the process is doing to the file, from the event's mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Executing it (`FAN_OPEN_EXEC_PERM`).
    Exec,
    /// Opening it, for reading or writing (`FAN_OPEN_PERM`, `FAN_OPEN`).
    Open,
    /// Wrote it (`FAN_CLOSE_WRITE`, `FAN_MODIFY`).
    Write,
}

impl Access {
    fn of(mask: MaskFlags) -> Self {
        if mask.contains(MaskFlags::FAN_OPEN_EXEC_PERM) {
            Self::Exec
        } else if mask.intersects(MaskFlags::FAN_CLOSE_WRITE | MaskFlags::FAN_MODIFY) {
            Self::Write
        } else {
            Self::Open
        }
    }
}

/// One event: an exec or open waiting for a verdict, or a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The process (the thread group id, as fanotify reports it).
    pub pid: i32,
    /// What it does.
    pub access: Access,
    /// The file as the kernel names it (`/proc/self/fd/N` of the event's fd), in the
    /// responder's mount namespace: for a container, a path under its rootfs mount.
    pub path: PathBuf,
    /// The file's identity, the cache key.
    pub file: FileId,
}

/// An opaque policy key: which policy applies to an exec (e.g. the container's group id).
/// Cached verdicts are per key.
pub type PolicyKey = u64;

/// What the responder asks for each exec it does not answer by itself.
///
/// Any `Fn(&Request) -> Verdict` is a policy whose verdicts depend on the file only (one
/// cache key for everything).
pub trait Policy: Send + Sync + 'static {
    /// The policy key for this exec, or `None` to decide it without the cache. Called for
    /// every event that reaches a worker, so it must be cheaper still than
    /// [`decide`](Self::decide).
    fn cache_key(&self, _req: &Request) -> Option<PolicyKey> {
        Some(0)
    }

    /// The verdict, on a cache miss. See the module docs for what it must not do.
    fn decide(&self, req: &Request) -> Verdict;

    /// The events the kernel may stop raising for this file (an ignore mark,
    /// [`Config::ignore_allowed`]) after an allow of `req` (by `decide` or the cache): what
    /// would be allowed for every process alike. All of [`Config::mask`] by default.
    fn ignorable(&self, _req: &Request) -> MaskFlags {
        MaskFlags::all()
    }

    /// A notification event (nothing waits for it), on the reader thread: it must not block.
    /// Returns the events the kernel may stop raising for this file (an ignore mark, flushed
    /// by [`Responder::clear_cache`]); none by default.
    fn observe(&self, _req: &Request) -> MaskFlags {
        MaskFlags::empty()
    }
}

impl<F> Policy for F
where
    F: Fn(&Request) -> Verdict + Send + Sync + 'static,
{
    fn decide(&self, req: &Request) -> Verdict {
        self(req)
    }
}

/// The responder's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Events queued for the workers at most; one more is answered with
    /// [`overflow_verdict`](Self::overflow_verdict). At least 1.
    pub queue_capacity: usize,
    /// Decision worker threads. At least 1.
    pub workers: usize,
    /// How long a queued event may wait for its verdict before the watchdog answers it.
    pub deadline: Duration,
    /// The answer to an event that finds the queue full.
    pub overflow_verdict: Verdict,
    /// The answer to an event the workers did not decide in time, or could not examine, or
    /// whose policy panicked.
    pub stall_verdict: Verdict,
    /// Pids always allowed without asking the policy, besides the responder's own process.
    /// fanotify reports the thread group id, so the own process covers all its threads; a
    /// child Palisade forks has its own pid (it is watched only if it execs under a mark).
    pub trusted_pids: Vec<i32>,
    /// Cached verdicts at most; when full the cache starts over.
    pub cache_capacity: usize,
    /// Answer cache hits on the reader thread, without the hop to a worker: the reader then
    /// examines every event and calls [`Policy::cache_key`] itself, so that must never
    /// block (the watchdog only covers queued events). Saves a thread wake-up per cached exec.
    pub hits_in_reader: bool,
    /// After the policy (or the cache) allows a file, put an ignore mark on its inode: the
    /// kernel then raises no event for it at all until the file is modified (the kernel drops
    /// the ignore mark then) or [`Responder::clear_cache`] flushes the ignore marks.
    pub ignore_allowed: bool,
    /// The events [`Responder::mark`] asks for, and what an ignore mark silences:
    /// `FAN_OPEN_EXEC_PERM` for the exec gate; permission events are answered, the others
    /// handed to [`Policy::observe`].
    pub mask: MaskFlags,
    /// Ignore marks survive writes to the file (`FAN_MARK_IGNORED_SURV_MODIFY`): right when
    /// verdicts depend on the path, not the content.
    pub ignore_survives_modify: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            queue_capacity: 2048,
            workers: 1,
            deadline: Duration::from_millis(200),
            overflow_verdict: Verdict::Allow,
            stall_verdict: Verdict::Allow,
            trusted_pids: Vec::new(),
            cache_capacity: 65_536,
            hits_in_reader: true,
            ignore_allowed: true,
            mask: MaskFlags::FAN_OPEN_EXEC_PERM,
            ignore_survives_modify: false,
        }
    }
}

impl Config {
    /// The defaults with the settings both engines expose: queue length, deadline, and
    /// whether an overflowing or a stalled event is allowed.
    pub fn answering(
        queue: usize,
        deadline: Duration,
        overflow_allows: bool,
        stall_allows: bool,
    ) -> Self {
        let verdict = |allow: bool| if allow { Verdict::Allow } else { Verdict::Deny };
        Self {
            queue_capacity: queue,
            deadline,
            overflow_verdict: verdict(overflow_allows),
            stall_verdict: verdict(stall_allows),
            ..Self::default()
        }
    }
}

/// Which object a mark covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkScope {
    /// The mount at (or containing) the path: execs through that mount only.
    Mount,
    /// The whole filesystem the path is on, through any mount.
    Filesystem,
}

impl MarkScope {
    fn flag(self) -> MarkFlags {
        match self {
            MarkScope::Mount => MarkFlags::FAN_MARK_MOUNT,
            MarkScope::Filesystem => MarkFlags::FAN_MARK_FILESYSTEM,
        }
    }
}

/// Why the responder could not start or mark.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `fanotify_init` failed (EPERM: not root / no `CAP_SYS_ADMIN`; EINVAL: no permission
    /// events in this kernel).
    #[error("fanotify_init failed")]
    Init(#[source] Errno),
    /// `fanotify_mark` failed.
    #[error("cannot {op} {scope:?} mark on {path}")]
    Mark {
        /// `add` or `remove`.
        op: &'static str,
        /// The scope asked for.
        scope: MarkScope,
        /// The path given.
        path: PathBuf,
        /// The kernel's error (ENOENT: no such path; EINVAL: not supported here).
        #[source]
        source: Errno,
    },
    /// The shutdown pipe could not be created.
    #[error("cannot create the shutdown pipe")]
    Pipe(#[source] Errno),
    /// A thread could not be spawned.
    #[error("cannot spawn the {0} thread")]
    Spawn(&'static str, #[source] io::Error),
    /// The responder has been shut down.
    #[error("the responder has been shut down")]
    ShutDown,
}

/// The responder's counters, from [`Responder::stats`] (served as `process.gate` in
/// `/v1/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Permission events read.
    pub events: u64,
    /// Answers written with allow, whoever wrote them.
    pub allowed: u64,
    /// Answers written with deny, whoever wrote them.
    pub denied: u64,
    /// Events from trusted pids: permission events allowed by the reader, notifications not
    /// handed on.
    pub trusted: u64,
    /// Verdicts taken from the cache.
    pub cache_hits: u64,
    /// Events answered by the reader because the queue was full.
    pub overflow: u64,
    /// Events answered by the watchdog at their deadline.
    pub watchdog: u64,
    /// Worker decisions discarded because the event had been answered already.
    pub late: u64,
    /// Failures: reads, response writes, examining an event fd, a panicking policy, an event
    /// in an unknown format, a kernel queue overflow.
    pub errors: u64,
    /// Files the kernel was told not to ask about again (ignore marks after an allow).
    pub ignored: u64,
    /// Notification events (no answer: `FAN_OPEN`, `FAN_CLOSE_WRITE`, ...) handed to
    /// [`Policy::observe`].
    pub observed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    events: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
    trusted: AtomicU64,
    cache_hits: AtomicU64,
    overflow: AtomicU64,
    watchdog: AtomicU64,
    late: AtomicU64,
    errors: AtomicU64,
    ignored: AtomicU64,
    observed: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            events: get(&self.events),
            allowed: get(&self.allowed),
            denied: get(&self.denied),
            trusted: get(&self.trusted),
            cache_hits: get(&self.cache_hits),
            overflow: get(&self.overflow),
            watchdog: get(&self.watchdog),
            late: get(&self.late),
            errors: get(&self.errors),
            ignored: get(&self.ignored),
            observed: get(&self.observed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent, and a policy panic is caught
    // outside any lock: a poisoned lock is still good to use.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cache key: the file and the policy key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CacheKey {
    file: FileId,
    policy: PolicyKey,
}

/// Cached verdicts with epoch invalidation.
#[derive(Debug)]
struct VerdictCache {
    map: Mutex<HashMap<CacheKey, Verdict>>,
    epoch: AtomicU64,
    capacity: usize,
}

impl VerdictCache {
    fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            capacity: capacity.max(1),
        }
    }

    /// The epoch to hand back to [`insert`](Self::insert), read before deciding.
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn get(&self, key: &CacheKey) -> Option<Verdict> {
        lock(&self.map).get(key).copied()
    }

    /// Caches a verdict decided under `epoch`, unless the cache was cleared since.
    fn insert(&self, key: CacheKey, verdict: Verdict, epoch: u64) -> bool {
        let mut map = lock(&self.map);
        // `clear` bumps the epoch under this lock, so the comparison cannot race with it.
        if self.epoch.load(Ordering::Acquire) != epoch {
            return false;
        }
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, verdict);
        true
    }

    fn clear(&self) {
        let mut map = lock(&self.map);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

/// Where answers go: the fanotify fd, or a recorder in tests.
trait Sink<E> {
    fn respond(&self, event: &E, verdict: Verdict) -> Result<(), Errno>;
}

impl Sink<FanotifyEvent> for Fanotify {
    fn respond(&self, event: &FanotifyEvent, verdict: Verdict) -> Result<(), Errno> {
        let Some(fd) = event.fd() else {
            return Err(Errno::EBADF);
        };
        let response = match verdict {
            Verdict::Allow => Response::FAN_ALLOW,
            Verdict::Deny => Response::FAN_DENY,
        };
        self.write_response(FanotifyResponse::new(fd, response))
    }
}

/// The fanotify fd as a [`Sink`] that counts each answer before writing it, plus `also`.
struct Counted<'a> {
    shared: &'a Shared,
    also: Option<&'a AtomicU64>,
}

impl Sink<FanotifyEvent> for Counted<'_> {
    fn respond(&self, event: &FanotifyEvent, verdict: Verdict) -> Result<(), Errno> {
        if let Some(also) = self.also {
            bump(also);
        }
        self.shared.respond_counted(event, verdict)
    }
}

/// One queued event: owns the event (its fd) until someone answers it.
#[derive(Debug)]
struct Slot<E> {
    event: Mutex<Option<E>>,
    answered: AtomicBool,
    deadline: Instant,
    pid: i32,
}

impl<E> Slot<E> {
    fn new(event: E, pid: i32, deadline: Instant) -> Self {
        Self {
            event: Mutex::new(Some(event)),
            answered: AtomicBool::new(false),
            deadline,
            pid,
        }
    }

    fn is_answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }

    /// Runs `f` on the event unless it has been answered; the answer waits meanwhile, so the
    /// fd stays open (and its number ours) while `f` looks at it.
    fn with_event<R>(&self, f: impl FnOnce(&E) -> R) -> Option<R> {
        lock(&self.event).as_ref().map(f)
    }

    /// Answers the event if nobody has: writes `verdict` through `sink`, then drops the event
    /// (closing its fd). `None` if it had been answered already, else the write's result.
    fn answer(&self, sink: &impl Sink<E>, verdict: Verdict) -> Option<Result<(), Errno>> {
        let mut guard = lock(&self.event);
        let event = guard.take()?;
        self.answered.store(true, Ordering::Release);
        let result = sink.respond(&event, verdict);
        drop(event);
        Some(result)
    }
}

type EventSlot = Arc<Slot<FanotifyEvent>>;

/// What the reader hands a worker: the event, and its request and cache key if the reader
/// examined it already.
#[derive(Debug)]
struct Queued {
    slot: EventSlot,
    prepared: Option<Prepared>,
}

type Prepared = (Request, Option<CacheKey>);

/// Everything the threads share.
struct Shared {
    fan: Fanotify,
    policy: Box<dyn Policy>,
    config: Config,
    trusted: HashSet<i32>,
    cache: VerdictCache,
    counters: Counters,
    stop: AtomicBool,
    /// Queued events by deadline (the reader pushes in deadline order), for the watchdog.
    pending: Mutex<VecDeque<EventSlot>>,
    pending_cv: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("fan", &self.fan)
            .field("config", &self.config)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Answers a queued event (see [`Slot::answer`]) and counts the answer; `false` if it had
    /// been answered already.
    fn answer(&self, slot: &Slot<FanotifyEvent>, verdict: Verdict) -> bool {
        self.answer_counting(slot, verdict, None)
    }

    /// [`Shared::answer`], also bumping `also` when this call is the one that answers.
    fn answer_counting(
        &self,
        slot: &Slot<FanotifyEvent>,
        verdict: Verdict,
        also: Option<&AtomicU64>,
    ) -> bool {
        let sink = Counted { shared: self, also };
        slot.answer(&sink, verdict).is_some()
    }

    /// Tells the kernel not to ask about this event's file again until it is modified (an
    /// ignore mark on its inode), when so configured.
    fn ignore(&self, event: &FanotifyEvent, mask: MaskFlags) {
        let mask = mask & self.config.mask;
        if !self.config.ignore_allowed || mask.is_empty() {
            return;
        }
        let Some(fd) = event.fd() else { return };
        let mut flags = MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_IGNORED_MASK;
        if self.config.ignore_survives_modify {
            flags |= MarkFlags::FAN_MARK_IGNORED_SURV_MODIFY;
        }
        if self.fan.mark(flags, mask, fd, None::<&Path>).is_ok() {
            bump(&self.counters.ignored);
        }
    }

    /// Answers an event that was never queued, then closes its fd.
    fn answer_now(&self, event: FanotifyEvent, verdict: Verdict) {
        let _ = self.respond_counted(&event, verdict);
        drop(event);
    }

    /// Writes an answer, counted *before* the write: the exec it releases may be the last
    /// thing a reader of [`Stats`] waits for, and must then find its answer counted. A
    /// failed write moves the count to `errors` (ENOENT: the exec'ing process was killed
    /// while waiting and the kernel dropped the event).
    fn respond_counted(&self, event: &FanotifyEvent, verdict: Verdict) -> Result<(), Errno> {
        let counter = match verdict {
            Verdict::Allow => &self.counters.allowed,
            Verdict::Deny => &self.counters.denied,
        };
        bump(counter);
        let result = self.fan.respond(event, verdict);
        if result.is_err() {
            counter.fetch_sub(1, Ordering::Relaxed);
            bump(&self.counters.errors);
        }
        result
    }

    /// The cache key of a request, if the policy caches it.
    fn key(&self, req: &Request) -> Option<CacheKey> {
        self.policy.cache_key(req).map(|policy| CacheKey {
            file: req.file,
            policy,
        })
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// The fanotify exec permission responder. Dropping it shuts it down.
#[derive(Debug)]
pub struct Responder {
    shared: Arc<Shared>,
    /// Write end of the pipe that wakes the reader for shutdown.
    wake: Option<OwnedFd>,
    reader: Option<JoinHandle<()>>,
    /// The workers and the watchdog.
    threads: Vec<JoinHandle<()>>,
}

impl Responder {
    /// Creates the fanotify group and starts the reader, the workers and the watchdog. No
    /// mark yet: nothing is watched until [`mark`](Self::mark).
    pub fn start(config: Config, policy: impl Policy) -> Result<Self, Error> {
        let fan = Fanotify::init(
            // CONTENT: permission events once the file's content is final. UNLIMITED_QUEUE:
            // a full kernel queue would drop permission events, i.e. allow them unseen;
            // blocked execs bound the queue anyway. NONBLOCK: the reader polls it with the
            // shutdown pipe.
            InitFlags::FAN_CLASS_CONTENT
                | InitFlags::FAN_CLOEXEC
                | InitFlags::FAN_NONBLOCK
                | InitFlags::FAN_UNLIMITED_QUEUE,
            // CLOEXEC: event fds must not leak into anything Palisade spawns.
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        )
        .map_err(Error::Init)?;
        let (wake_rx, wake_tx) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(Error::Pipe)?;

        let mut config = config;
        config.queue_capacity = config.queue_capacity.max(1);
        config.workers = config.workers.max(1);
        let mut trusted: HashSet<i32> = config.trusted_pids.iter().copied().collect();
        trusted.insert(std::process::id().cast_signed());
        let (tx, rx) = sync_channel::<Queued>(config.queue_capacity);
        let rx = Arc::new(Mutex::new(rx));
        let workers = config.workers;
        let shared = Arc::new(Shared {
            fan,
            policy: Box::new(policy),
            cache: VerdictCache::new(config.cache_capacity),
            config,
            trusted,
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            pending: Mutex::new(VecDeque::new()),
            pending_cv: Condvar::new(),
        });

        let mut responder = Self {
            shared: Arc::clone(&shared),
            wake: Some(wake_tx),
            reader: None,
            threads: Vec::new(),
        };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("fanotify-{name}"))
                .spawn(f)
        };
        // On an error below, dropping `responder` stops and joins what was started.
        let s = Arc::clone(&shared);
        let reader = spawn("reader", Box::new(move || reader_loop(&s, &wake_rx, tx)))
            .map_err(|e| Error::Spawn("reader", e))?;
        responder.reader = Some(reader);
        for _ in 0..workers {
            let (s, rx) = (Arc::clone(&shared), Arc::clone(&rx));
            let worker = spawn("worker", Box::new(move || worker_loop(&s, &rx)))
                .map_err(|e| Error::Spawn("worker", e))?;
            responder.threads.push(worker);
        }
        let s = Arc::clone(&shared);
        let watchdog = spawn("watchdog", Box::new(move || watchdog_loop(&s)))
            .map_err(|e| Error::Spawn("watchdog", e))?;
        responder.threads.push(watchdog);
        Ok(responder)
    }

    /// Watches `path` for [`Config::mask`], through that mount or in that whole filesystem.
    pub fn mark(&self, path: &Path, scope: MarkScope) -> Result<(), Error> {
        self.mark_mask(path, scope, self.shared.config.mask)
    }

    /// Adds `mask` to what is watched under `path` (a part of [`Config::mask`]: a mark per
    /// object can ask for less than the group handles).
    pub fn mark_mask(&self, path: &Path, scope: MarkScope, mask: MaskFlags) -> Result<(), Error> {
        self.mark_op(path, scope, MarkFlags::FAN_MARK_ADD, mask, "add")
    }

    /// Removes `mask` from what is watched under `path`.
    pub fn unmark_mask(&self, path: &Path, scope: MarkScope, mask: MaskFlags) -> Result<(), Error> {
        self.mark_op(path, scope, MarkFlags::FAN_MARK_REMOVE, mask, "remove")
    }

    /// Watches execs through the mount at (or containing) `path`: a container's rootfs.
    pub fn mark_mount(&self, path: &Path) -> Result<(), Error> {
        self.mark(path, MarkScope::Mount)
    }

    /// Watches execs anywhere on the filesystem `path` is on.
    pub fn mark_filesystem(&self, path: &Path) -> Result<(), Error> {
        self.mark(path, MarkScope::Filesystem)
    }

    /// Stops watching what [`mark`](Self::mark) with the same path and scope watched.
    pub fn unmark(&self, path: &Path, scope: MarkScope) -> Result<(), Error> {
        self.unmark_mask(path, scope, self.shared.config.mask)
    }

    fn mark_op(
        &self,
        path: &Path,
        scope: MarkScope,
        op: MarkFlags,
        mask: MaskFlags,
        name: &'static str,
    ) -> Result<(), Error> {
        if self.shared.stopping() {
            return Err(Error::ShutDown);
        }
        self.shared
            .fan
            .mark(op | scope.flag(), mask, AT_FDCWD, Some(path))
            .map_err(|source| Error::Mark {
                op: name,
                scope,
                path: path.to_path_buf(),
                source,
            })
    }

    /// Forgets every cached verdict: call it when the policy changes.
    pub fn clear_cache(&self) {
        self.shared.cache.clear();
        // The ignore marks are inode marks: flushing inode marks removes them (and only them;
        // mount and filesystem marks stay).
        let _ = self.shared.fan.mark(
            MarkFlags::FAN_MARK_FLUSH,
            MaskFlags::empty(),
            AT_FDCWD,
            None::<&Path>,
        );
    }

    /// Verdicts cached now.
    pub fn cached(&self) -> usize {
        self.shared.cache.len()
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Removes every mark, allows everything pending, joins the threads and closes the fd.
    /// Returns the final counters.
    ///
    /// Pending execs are released first; the join then waits for any policy call in progress
    /// to return (its verdict is discarded). Not to be called from the policy.
    pub fn shutdown(mut self) -> Stats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        let shared = &self.shared;
        if shared.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        // No new events: flush every mark of both scopes (and inode marks, never added).
        for scope in [MarkFlags::FAN_MARK_MOUNT, MarkFlags::FAN_MARK_FILESYSTEM] {
            let flush = MarkFlags::FAN_MARK_FLUSH | scope;
            if shared
                .fan
                .mark::<_, Path>(flush, MaskFlags::empty(), AT_FDCWD, None)
                .is_err()
            {
                bump(&shared.counters.errors);
            }
        }
        // Wake the reader; it drains the kernel queue, allowing, and exits. Closing the write
        // end wakes it too, should the write fail. Once it is gone nothing is queued any more.
        if let Some(wake) = self.wake.take() {
            let _ = nix::unistd::write(&wake, &[1u8]);
            drop(wake);
        }
        // A thread cannot panic short of a bug; there is nothing left to do about it then.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        // The watchdog allows everything still queued and exits; workers see `stop` and allow
        // what they take from the queue without asking the policy. A worker inside the policy
        // holds up its join, not the execs.
        {
            let _pending = lock(&shared.pending);
            shared.pending_cv.notify_all();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // Nothing should be left (the watchdog started after the reader stopped queueing),
        // but an unanswered event must never outlive the responder.
        let rest: Vec<EventSlot> = lock(&shared.pending).drain(..).collect();
        for slot in rest {
            shared.answer(&slot, Verdict::Allow);
        }
        // The fd closes when `shared` drops with `self`: the threads' references are gone.
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn reader_loop(shared: &Shared, wake: &OwnedFd, tx: SyncSender<Queued>) {
    loop {
        if shared.stopping() {
            break;
        }
        let mut fds = [
            PollFd::new(shared.fan.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => {
                bump(&shared.counters.errors);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if shared.stopping() {
            break;
        }
        match shared.fan.read_events() {
            Ok(events) => {
                for event in events {
                    handle_event(shared, &tx, event);
                }
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => {
                // EMFILE/ENFILE: no fd for the event; the kernel denies that one itself.
                bump(&shared.counters.errors);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    // Drain: marks are flushed, allow whatever the kernel still holds.
    while let Ok(events) = shared.fan.read_events() {
        if events.is_empty() {
            break;
        }
        for event in events {
            if let Some(event) = classify(shared, event) {
                shared.answer_now(event, Verdict::Allow);
            }
        }
    }
}

/// The events that wait for an answer.
const PERMISSION: MaskFlags = MaskFlags::FAN_OPEN_EXEC_PERM
    .union(MaskFlags::FAN_OPEN_PERM)
    .union(MaskFlags::FAN_ACCESS_PERM);

/// Counts an event; `Some` if it needs an answer. Notification events go to
/// [`Policy::observe`] here.
fn classify(shared: &Shared, event: FanotifyEvent) -> Option<FanotifyEvent> {
    if !event.check_version() {
        // Layout unknown: nothing in it can be trusted, not even the fd to answer.
        bump(&shared.counters.events);
        bump(&shared.counters.errors);
        std::mem::forget(event);
        return None;
    }
    if !event.mask().intersects(PERMISSION) {
        observe(shared, &event);
        return None;
    }
    bump(&shared.counters.events);
    if event.fd().is_none() {
        // FAN_Q_OVERFLOW, which the unlimited queue should rule out.
        bump(&shared.counters.errors);
        return None;
    }
    Some(event)
}

/// A notification event: to the policy unless it is ours; an ignore mark if it says so.
fn observe(shared: &Shared, event: &FanotifyEvent) {
    if event.fd().is_none() {
        // FAN_Q_OVERFLOW (ruled out by the unlimited queue).
        bump(&shared.counters.errors);
        return;
    }
    let pid = event.pid();
    if shared.trusted.contains(&pid) {
        bump(&shared.counters.trusted);
        return;
    }
    if shared.stopping() {
        return;
    }
    bump(&shared.counters.observed);
    let Ok(req) = examine(event, pid) else {
        bump(&shared.counters.errors);
        return;
    };
    match catch_unwind(AssertUnwindSafe(|| shared.policy.observe(&req))) {
        Ok(mask) => shared.ignore(event, mask),
        Err(_) => bump(&shared.counters.errors),
    }
}

fn handle_event(shared: &Shared, tx: &SyncSender<Queued>, event: FanotifyEvent) {
    let Some(event) = classify(shared, event) else {
        return;
    };
    let pid = event.pid();
    if shared.trusted.contains(&pid) {
        bump(&shared.counters.trusted);
        shared.answer_now(event, Verdict::Allow);
        return;
    }
    if shared.stopping() {
        // The rest of a batch read before the shutdown: allowed like the drain.
        shared.answer_now(event, Verdict::Allow);
        return;
    }
    let prepared = match cached(shared, &event, pid) {
        Lookup::Hit(verdict, ignorable) => {
            bump(&shared.counters.cache_hits);
            shared.ignore(&event, ignorable);
            shared.answer_now(event, verdict);
            return;
        }
        Lookup::Miss(prepared) => prepared,
    };
    let slot = Arc::new(Slot::new(
        event,
        pid,
        Instant::now() + shared.config.deadline,
    ));
    let queued = Queued {
        slot: Arc::clone(&slot),
        prepared,
    };
    match tx.try_send(queued) {
        Ok(()) => {
            let mut pending = lock(&shared.pending);
            let was_empty = pending.is_empty();
            pending.push_back(slot);
            if was_empty {
                shared.pending_cv.notify_all();
            }
        }
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            bump(&shared.counters.overflow);
            shared.answer(&slot, shared.config.overflow_verdict);
        }
    }
}

/// The reader's cache lookup.
enum Lookup {
    /// The verdict, and whether an allow may become an ignore mark.
    Hit(Verdict, MaskFlags),
    /// Not cached (or not looked up): what a worker can reuse, if anything.
    Miss(Option<Prepared>),
}

/// The reader's fast path ([`Config::hits_in_reader`]).
fn cached(shared: &Shared, event: &FanotifyEvent, pid: i32) -> Lookup {
    if !shared.config.hits_in_reader {
        return Lookup::Miss(None);
    }
    let Ok(req) = examine(event, pid) else {
        return Lookup::Miss(None); // the worker tries again, and counts the error
    };
    let Ok(key) = catch_unwind(AssertUnwindSafe(|| shared.key(&req))) else {
        return Lookup::Miss(None); // a panicking key: the worker calls it again, and counts it
    };
    match key.as_ref().and_then(|k| shared.cache.get(k)) {
        Some(verdict) => {
            let ignorable = if verdict == Verdict::Allow {
                catch_unwind(AssertUnwindSafe(|| shared.policy.ignorable(&req)))
                    .unwrap_or(MaskFlags::empty())
            } else {
                MaskFlags::empty()
            };
            Lookup::Hit(verdict, ignorable)
        }
        None => Lookup::Miss(Some((req, key))),
    }
}

fn worker_loop(shared: &Shared, rx: &Mutex<Receiver<Queued>>) {
    loop {
        let next = lock(rx).recv();
        let Ok(Queued { slot, prepared }) = next else {
            return; // the reader is gone and the queue is empty
        };
        if shared.stopping() {
            shared.answer(&slot, Verdict::Allow);
            continue;
        }
        decide(shared, &slot, prepared);
    }
}

/// The worker's part for one event: examine (unless the reader did), cache, policy, answer.
fn decide(shared: &Shared, slot: &Slot<FanotifyEvent>, prepared: Option<Prepared>) {
    let (req, key) = match prepared {
        Some((req, key)) => (req, Some(key)),
        None => match slot.with_event(|event| examine(event, slot.pid)) {
            None => return, // answered by the watchdog before we got to it
            Some(Ok(req)) => (req, None),
            Some(Err(_)) => {
                bump(&shared.counters.errors);
                shared.answer(slot, shared.config.stall_verdict);
                return;
            }
        },
    };
    let policy = &shared.policy;
    // (verdict, what an ignore mark may silence: for an allow decided under the current cache
    // epoch, what the policy says)
    let decided = catch_unwind(AssertUnwindSafe(|| {
        let key = key.unwrap_or_else(|| shared.key(&req));
        if let Some(key) = &key
            && let Some(verdict) = shared.cache.get(key)
        {
            bump(&shared.counters.cache_hits);
            let ignore = if verdict == Verdict::Allow {
                policy.ignorable(&req)
            } else {
                MaskFlags::empty()
            };
            return (verdict, ignore);
        }
        let epoch = shared.cache.epoch();
        let verdict = policy.decide(&req);
        if let Some(key) = key {
            shared.cache.insert(key, verdict, epoch);
        }
        let current = shared.cache.epoch() == epoch;
        let ignore = if verdict == Verdict::Allow && current {
            policy.ignorable(&req)
        } else {
            MaskFlags::empty()
        };
        (verdict, ignore)
    }));
    let (verdict, ignore) = decided.unwrap_or_else(|_| {
        bump(&shared.counters.errors);
        (shared.config.stall_verdict, MaskFlags::empty())
    });
    if !ignore.is_empty() {
        slot.with_event(|event| shared.ignore(event, ignore));
    }
    if !shared.answer(slot, verdict) {
        bump(&shared.counters.late);
    }
}

/// The request for an event: its file's identity and name, from its fd only.
fn examine(event: &FanotifyEvent, pid: i32) -> Result<Request, Errno> {
    let fd = event.fd().ok_or(Errno::EBADF)?;
    let st = nix::sys::stat::fstat(fd)?;
    let path = nix::fcntl::readlink(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str())?;
    Ok(Request {
        pid,
        access: Access::of(event.mask()),
        path: PathBuf::from(path),
        file: FileId {
            dev: st.st_dev,
            ino: st.st_ino,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        },
    })
}

fn watchdog_loop(shared: &Shared) {
    let mut pending = lock(&shared.pending);
    loop {
        if shared.stopping() {
            let rest: Vec<EventSlot> = pending.drain(..).collect();
            drop(pending);
            for slot in rest {
                shared.answer(&slot, Verdict::Allow);
            }
            return;
        }
        while pending.front().is_some_and(|s| s.is_answered()) {
            pending.pop_front();
        }
        let now = Instant::now();
        let wait = match pending.front() {
            None => None,
            Some(front) if front.deadline <= now => {
                let mut due = Vec::new();
                while let Some(front) = pending.front() {
                    if front.deadline > now {
                        break;
                    }
                    if let Some(slot) = pending.pop_front() {
                        due.push(slot);
                    }
                }
                drop(pending);
                for slot in due {
                    shared.answer_counting(
                        &slot,
                        shared.config.stall_verdict,
                        Some(&shared.counters.watchdog),
                    );
                }
                pending = lock(&shared.pending);
                continue;
            }
            Some(front) => Some(front.deadline - now),
        };
        pending = match wait {
            None => shared
                .pending_cv
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner),
            Some(d) => {
                shared
                    .pending_cv
                    .wait_timeout(pending, d)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn file(ino: u64, mtime: i64) -> FileId {
        FileId {
            dev: 7,
            ino,
            mtime: (mtime, 0),
            ctime: (mtime, 0),
        }
    }

    fn key(ino: u64, mtime: i64, policy: PolicyKey) -> CacheKey {
        CacheKey {
            file: file(ino, mtime),
            policy,
        }
    }

    #[test]
    fn cache_hits_only_the_same_file_and_policy_key() {
        let cache = VerdictCache::new(16);
        let e = cache.epoch();
        assert!(cache.insert(key(1, 100, 0), Verdict::Deny, e));
        assert_eq!(cache.get(&key(1, 100, 0)), Some(Verdict::Deny));
        assert_eq!(cache.get(&key(1, 101, 0)), None, "mtime changed");
        assert_eq!(cache.get(&key(2, 100, 0)), None, "other inode");
        assert_eq!(cache.get(&key(1, 100, 1)), None, "other policy key");
        let mut touched = key(1, 100, 0);
        touched.file.ctime.1 = 1;
        assert_eq!(cache.get(&touched), None, "ctime changed (mtime put back)");
        let mut other_dev = key(1, 100, 0);
        other_dev.file.dev = 8;
        assert_eq!(cache.get(&other_dev), None, "other filesystem");
    }

    #[test]
    fn clear_invalidates_and_rejects_decisions_from_before_it() {
        let cache = VerdictCache::new(16);
        let before = cache.epoch();
        assert!(cache.insert(key(1, 1, 0), Verdict::Allow, before));
        cache.clear();
        assert_eq!(cache.get(&key(1, 1, 0)), None);
        assert_eq!(cache.len(), 0);
        // A decision started before the clear (under the old policy) must not be cached.
        assert!(!cache.insert(key(2, 1, 0), Verdict::Allow, before));
        assert_eq!(cache.get(&key(2, 1, 0)), None);
        assert!(cache.insert(key(2, 1, 0), Verdict::Deny, cache.epoch()));
        assert_eq!(cache.get(&key(2, 1, 0)), Some(Verdict::Deny));
    }

    #[test]
    fn cache_is_bounded() {
        let cache = VerdictCache::new(4);
        let e = cache.epoch();
        for ino in 0..100 {
            cache.insert(key(ino, 0, 0), Verdict::Allow, e);
            assert!(cache.len() <= 4);
        }
        // The newest entry survives the start-over.
        assert_eq!(cache.get(&key(99, 0, 0)), Some(Verdict::Allow));
        // Overwriting an existing key at capacity keeps the others.
        let n = cache.len();
        cache.insert(key(99, 0, 0), Verdict::Deny, e);
        assert_eq!(cache.len(), n);
    }

    /// An event whose drop (its fd's close) is counted.
    #[derive(Debug)]
    struct Token {
        id: usize,
        closed: Arc<AtomicUsize>,
    }

    impl Drop for Token {
        fn drop(&mut self) {
            self.closed.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[derive(Debug, Default)]
    struct Recorder {
        answers: Mutex<Vec<(usize, Verdict)>>,
    }

    impl Sink<Token> for Recorder {
        fn respond(&self, event: &Token, verdict: Verdict) -> Result<(), Errno> {
            lock(&self.answers).push((event.id, verdict));
            Ok(())
        }
    }

    #[test]
    fn a_slot_is_answered_once_and_closed_after_the_answer() {
        let closed = Arc::new(AtomicUsize::new(0));
        let slot = Slot::new(
            Token {
                id: 1,
                closed: Arc::clone(&closed),
            },
            42,
            Instant::now(),
        );
        let sink = Recorder::default();
        assert_eq!(slot.with_event(|t| t.id), Some(1));
        assert!(!slot.is_answered());
        assert_eq!(slot.answer(&sink, Verdict::Deny), Some(Ok(())));
        assert!(slot.is_answered());
        assert_eq!(
            closed.load(Ordering::SeqCst),
            1,
            "closed right after the answer"
        );
        assert_eq!(slot.answer(&sink, Verdict::Allow), None, "a late decision");
        assert_eq!(slot.with_event(|t| t.id), None);
        assert_eq!(*lock(&sink.answers), vec![(1, Verdict::Deny)]);
        drop(slot);
        assert_eq!(closed.load(Ordering::SeqCst), 1, "never closed twice");
    }

    #[test]
    fn racing_answerers_answer_each_event_exactly_once() {
        const EVENTS: usize = 2000;
        let closed = Arc::new(AtomicUsize::new(0));
        let slots: Vec<Arc<Slot<Token>>> = (0..EVENTS)
            .map(|id| {
                Arc::new(Slot::new(
                    Token {
                        id,
                        closed: Arc::clone(&closed),
                    },
                    0,
                    Instant::now(),
                ))
            })
            .collect();
        let sink = Arc::new(Recorder::default());
        let wins = Arc::new(AtomicUsize::new(0));
        // A "worker", a "watchdog" and a "shutdown" answering the same slots concurrently.
        let handles: Vec<_> = [Verdict::Deny, Verdict::Allow, Verdict::Allow]
            .into_iter()
            .enumerate()
            .map(|(i, verdict)| {
                let (slots, sink, wins) = (slots.clone(), Arc::clone(&sink), Arc::clone(&wins));
                std::thread::spawn(move || {
                    let order: Box<dyn Iterator<Item = &Arc<Slot<Token>>>> = if i % 2 == 0 {
                        Box::new(slots.iter())
                    } else {
                        Box::new(slots.iter().rev())
                    };
                    for slot in order {
                        if slot.answer(&*sink, verdict).is_some() {
                            wins.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(wins.load(Ordering::SeqCst), EVENTS);
        assert_eq!(closed.load(Ordering::SeqCst), EVENTS);
        let mut ids: Vec<usize> = lock(&sink.answers).iter().map(|a| a.0).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..EVENTS).collect::<Vec<_>>());
    }

    #[test]
    fn a_closure_is_a_policy_with_one_cache_key() {
        let policy = |req: &Request| {
            if req.path.ends_with("sh") {
                Verdict::Deny
            } else {
                Verdict::Allow
            }
        };
        let req = Request {
            pid: 1,
            access: Access::Exec,
            path: PathBuf::from("/rootfs/bin/sh"),
            file: file(1, 1),
        };
        assert_eq!(policy.cache_key(&req), Some(0));
        assert_eq!(Policy::decide(&policy, &req), Verdict::Deny);
    }

    #[test]
    fn the_responder_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Responder>();
    }

    #[test]
    fn default_config_is_fail_open_with_the_documented_bounds() {
        let c = Config::default();
        assert_eq!(c.queue_capacity, 2048);
        assert_eq!(c.deadline, Duration::from_millis(200));
        assert_eq!(c.overflow_verdict, Verdict::Allow);
        assert_eq!(c.stall_verdict, Verdict::Allow);
    }
}
