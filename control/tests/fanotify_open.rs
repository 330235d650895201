//! The fanotify responder (`control::fanotify`) on opens and writes, as the file engine uses
//! it, against the real kernel (needs root; CI is root).
//!
//! Each test mounts its own tmpfs on a fresh temporary directory, creates its files there
//! before marking the mount, and opens them from **forked children**: the responder trusts
//! its own process (every open of ours would be allowed by the reader without asking the
//! policy, and no notification of ours reaches `Policy::observe`), so an open the policy sees
//! must come from another pid. A child runs one closure of plain system calls and `_exit`s
//! with the errno it met (0: fine); its latencies, when measured, go to a shared anonymous
//! mapping. Guards undo everything, also when an assertion fails: the responder (declared
//! after the mount, so dropped first) flushes its marks and allows whatever is pending, then
//! the tmpfs is lazily unmounted and its directory removed; every child is reaped.
//!
//! What it proves: `FAN_OPEN_PERM` denies an open (read or append) with EPERM and names the
//! file and the opening process; `FAN_OPEN` and `FAN_CLOSE_WRITE` reach `Policy::observe`
//! without any answer; what `observe` returns becomes an ignore mark that survives writes
//! (`ignore_survives_modify`) until `clear_cache`; what `ignorable` returns after an allow
//! decides which files keep asking; a stalled policy is overridden by the watchdog. It also
//! prints what a marked open costs (`PALISADE_OPEN_BENCH_N` opens each way, default 20,000).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::io::{self, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control::fanotify::{
    Access, Config, MarkScope, Policy, PolicyKey, Request, Responder, Stats, Verdict,
};
use nix::sys::fanotify::MaskFlags;
use palisade_tests::Tmpfs;

/// The test's own additions to the shared tmpfs.
trait Files {
    /// Creates `name` with `content` (this process is trusted: its own events are never
    /// handed to the policy).
    fn file(&self, name: &str, content: &[u8]) -> PathBuf;
}

impl Files for Tmpfs {
    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

/// A child's exit code when its closure panicked (no errno is that large).
const CHILD_PANICKED: i32 = 255;

/// Runs `f` in a forked child of this process and waits for it: the child's pid, and `f`'s
/// result (an errno travels back as the exit code).
///
/// Only this thread exists in the child, so `f` must not take a lock another thread of
/// this process (the responder's, the test harness's) may have held at the fork: plain file
/// system calls through std are fine (std converts a path shorter than 384 bytes on the stack,
/// without allocating), printing or allocating is not.
fn in_child(f: impl FnOnce() -> io::Result<()>) -> (i32, io::Result<()>) {
    // SAFETY: the child only runs `f` (which keeps to the system calls documented above) and
    // `_exit`s; the parent goes on as if it had spawned a process.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let code = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => e.raw_os_error().unwrap_or(CHILD_PANICKED - 1),
            Err(_) => CHILD_PANICKED,
        };
        // SAFETY: `_exit` ends the child without running the parent's atexit handlers or
        // flushing its copied stdio buffers, which belong to the parent.
        unsafe { libc::_exit(code) }
    }
    let mut status = 0;
    // SAFETY: `status` is a valid out pointer for the call; `pid` is our child.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid: {}", io::Error::last_os_error());
    assert!(libc::WIFEXITED(status), "child {pid}: status {status:#x}");
    let code = libc::WEXITSTATUS(status);
    assert_ne!(code, CHILD_PANICKED, "child {pid} panicked");
    let result = if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(code))
    };
    (pid, result)
}

/// Opens `path` for reading in a child, reading it through.
fn read_in_child(path: &Path) -> (i32, io::Result<()>) {
    in_child(|| {
        let mut buf = [0u8; 64];
        let mut file = std::fs::File::open(path)?;
        while file.read(&mut buf)? > 0 {}
        Ok(())
    })
}

/// Opens `path` for appending in a child, appending a byte.
fn append_in_child(path: &Path) -> (i32, io::Result<()>) {
    in_child(|| {
        let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
        file.write_all(b"x")
    })
}

fn assert_eperm(result: io::Result<()>) {
    let err = result.expect_err("the open should have been denied");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
}

/// Polls `cond` until it holds; fails after 10 s (notifications reach the responder
/// asynchronously: this bounds a hang, it measures nothing).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A policy for open events: denies paths ending in `deny` (if any), optionally after a
/// delay; lets paths ending in `watched` (if any) never become ignore marks; `observe`
/// returns `observe_ignorable` for paths ending in `quiet`. Keeps every request it is given.
#[derive(Clone, Default)]
struct OpenPolicy {
    deny: Option<&'static str>,
    watched: Option<&'static str>,
    quiet: Option<&'static str>,
    /// `cache_key` returns `None`: every event asks `decide`.
    uncached: bool,
    delay: Duration,
    calls: Arc<AtomicUsize>,
    decided: Arc<Mutex<Vec<Request>>>,
    observed: Arc<Mutex<Vec<Request>>>,
    /// Set by the benchmark: skip recording (20,000 requests would only cost memory).
    quiet_bench: Arc<AtomicBool>,
}

impl OpenPolicy {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn decided(&self) -> Vec<Request> {
        self.decided.lock().unwrap().clone()
    }

    /// The observed requests for `path`.
    fn observed_for(&self, path: &Path) -> Vec<Request> {
        let seen = self.observed.lock().unwrap();
        seen.iter().filter(|r| r.path == path).cloned().collect()
    }

    fn observed_count(&self) -> usize {
        self.observed.lock().unwrap().len()
    }
}

impl Policy for OpenPolicy {
    fn cache_key(&self, _req: &Request) -> Option<PolicyKey> {
        if self.uncached { None } else { Some(0) }
    }

    fn decide(&self, req: &Request) -> Verdict {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.quiet_bench.load(Ordering::Relaxed) {
            self.decided.lock().unwrap().push(req.clone());
        }
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        match self.deny {
            Some(suffix) if req.path.ends_with(suffix) => Verdict::Deny,
            _ => Verdict::Allow,
        }
    }

    fn ignorable(&self, req: &Request) -> MaskFlags {
        match self.watched {
            Some(suffix) if req.path.ends_with(suffix) => MaskFlags::empty(),
            _ => MaskFlags::all(),
        }
    }

    fn observe(&self, req: &Request) -> MaskFlags {
        self.observed.lock().unwrap().push(req.clone());
        match self.quiet {
            Some(suffix) if req.path.ends_with(suffix) => MaskFlags::all(),
            _ => MaskFlags::empty(),
        }
    }
}

/// The file engine's block mode alone: every open asks, no ignore marks.
fn open_perm() -> Config {
    Config {
        mask: MaskFlags::FAN_OPEN_PERM,
        ignore_allowed: false,
        ..Config::default()
    }
}

/// The file engine's monitor mode: notifications only.
fn notifications() -> Config {
    Config {
        mask: MaskFlags::FAN_CLOSE_WRITE | MaskFlags::FAN_OPEN,
        ignore_allowed: true,
        ignore_survives_modify: true,
        ..Config::default()
    }
}

/// Counters that must stay zero in a healthy run.
fn assert_healthy(s: &Stats) {
    assert_eq!(
        (s.errors, s.overflow, s.watchdog, s.late),
        (0, 0, 0, 0),
        "{s:?}"
    );
}

#[test]
fn open_perm_denies_reads_and_appends_with_eperm() {
    let fs = Tmpfs::new("palisade-fopen");
    let secret = fs.file("secret", b"the secret\n");
    let other = fs.file("other", b"the other\n");
    let policy = OpenPolicy {
        deny: Some("secret"),
        ..OpenPolicy::default()
    };
    let responder = Responder::start(open_perm(), policy.clone()).unwrap();
    responder.mark(fs.path(), MarkScope::Mount).unwrap();

    let (reader, read) = read_in_child(&secret);
    assert_eperm(read);
    let (appender, append) = append_in_child(&secret);
    assert_eperm(append);
    let (_, ok) = read_in_child(&other);
    ok.unwrap();

    let s = responder.stats();
    println!("two denied opens and an allowed one: {s:?}");
    assert_eq!((s.events, s.denied, s.allowed), (3, 2, 1), "{s:?}");
    assert_eq!(s.cache_hits, 1, "the append hit the cached deny: {s:?}");
    assert_eq!((s.trusted, s.observed, s.ignored), (0, 0, 0), "{s:?}");
    assert_healthy(&s);
    // Our own open (trusted: allowed by the reader) shows the denied append wrote nothing.
    assert_eq!(std::fs::read(&secret).unwrap(), b"the secret\n");
    let s = responder.stats();
    assert_eq!((s.events, s.allowed, s.trusted), (4, 2, 1), "{s:?}");

    let decided = policy.decided();
    assert_eq!(decided.len(), 2, "{decided:?}");
    assert_eq!(policy.calls(), 2);
    assert_eq!(decided[0].path, secret);
    assert_eq!(decided[0].pid, reader);
    assert_eq!(decided[1].path, other);
    assert!(
        decided.iter().all(|r| r.access == Access::Open),
        "{decided:?}"
    );
    assert_ne!(reader, appender);
    let meta = std::fs::metadata(&secret).unwrap();
    assert_eq!(
        decided[0].file.ino,
        std::os::unix::fs::MetadataExt::ino(&meta)
    );

    let end = responder.shutdown();
    assert_eq!(end.errors, 0, "{end:?}");
}

#[test]
fn the_policy_sees_which_process_opens() {
    let fs = Tmpfs::new("palisade-fopen");
    let file = fs.file("data", b"hello from the tmpfs\n");
    let cat = ["/bin/cat", "/usr/bin/cat"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("no cat");
    let policy = OpenPolicy::default();
    let responder = Responder::start(open_perm(), policy.clone()).unwrap();
    responder.mark(fs.path(), MarkScope::Mount).unwrap();

    let child = Command::new(cat)
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", out.status);
    assert_eq!(out.stdout, b"hello from the tmpfs\n");
    let decided = policy.decided();
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0].pid, pid, "cat's pid");
    assert_eq!(decided[0].path, file);
    assert_eq!(decided[0].access, Access::Open);

    // Our own open raises the event too, and the reader allows it without asking.
    let before = responder.stats();
    assert_eq!(before.trusted, 0, "{before:?}");
    std::fs::read(&file).unwrap();
    let s = responder.stats();
    assert_eq!((s.events, s.allowed, s.trusted), (2, 2, 1), "{s:?}");
    assert_eq!(policy.calls(), 1, "not asked about our own open");
    assert_healthy(&s);
    responder.shutdown();
}

#[test]
fn notifications_reach_observe_and_need_no_answer() {
    let fs = Tmpfs::new("palisade-fopen");
    let written = fs.file("written", b"");
    let readme = fs.file("readme", b"read me\n");
    let policy = OpenPolicy::default();
    let responder = Responder::start(notifications(), policy.clone()).unwrap();
    responder.mark(fs.path(), MarkScope::Mount).unwrap();

    let (writer, w) = in_child(|| std::fs::write(&written, b"new content\n"));
    w.unwrap();
    let (reader, r) = read_in_child(&readme);
    r.unwrap();
    // The kernel queues events in order: once the reader's open is observed, the writer's
    // events have been too.
    wait_for("the read to be observed", || {
        !policy.observed_for(&readme).is_empty()
    });

    let writes = policy.observed_for(&written);
    println!("the write raised {writes:?}");
    // FAN_OPEN and FAN_CLOSE_WRITE of one process and file may merge into one event (then its
    // access is Write).
    assert!(
        (1..=2).contains(&writes.len()),
        "an open and a close-write: {writes:?}"
    );
    assert!(
        writes.iter().any(|r| r.access == Access::Write),
        "{writes:?}"
    );
    assert!(writes.iter().all(|r| r.pid == writer), "{writes:?}");
    assert!(
        writes
            .iter()
            .all(|r| matches!(r.access, Access::Open | Access::Write)),
        "{writes:?}"
    );
    let reads = policy.observed_for(&readme);
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!((reads[0].pid, reads[0].access), (reader, Access::Open));

    let s = responder.stats();
    assert_eq!(s.observed as usize, policy.observed_count(), "{s:?}");
    assert_eq!(s.observed as usize, writes.len() + 1, "{s:?}");
    assert_eq!(
        (s.events, s.allowed, s.denied),
        (0, 0, 0),
        "nothing answered: {s:?}"
    );
    assert_eq!((s.ignored, policy.calls()), (0, 0), "{s:?}");
    assert_healthy(&s);
    responder.shutdown();
}

#[test]
fn observe_silences_a_file_until_the_cache_is_cleared() {
    const REPEATS: usize = 20;
    let fs = Tmpfs::new("palisade-fopen");
    let quiet = fs.file("quiet", b"quiet\n");
    let noisy = fs.file("noisy", b"noisy\n");
    let policy = OpenPolicy {
        quiet: Some("quiet"),
        ..OpenPolicy::default()
    };
    let responder = Responder::start(notifications(), policy.clone()).unwrap();
    responder.mark(fs.path(), MarkScope::Mount).unwrap();

    // The first open is observed; the ignore mark follows `observe` on the reader.
    read_in_child(&quiet).1.unwrap();
    wait_for("the ignore mark", || responder.stats().ignored == 1);
    assert_eq!(policy.observed_for(&quiet).len(), 1);

    // Opens and writes of the quiet file raise nothing (the mark survives the writes); each
    // round ends with an open of the noisy file, observed after anything queued before it.
    for round in 1..=REPEATS {
        read_in_child(&quiet).1.unwrap();
        append_in_child(&quiet).1.unwrap();
        read_in_child(&noisy).1.unwrap();
        wait_for("the noisy open", || {
            policy.observed_for(&noisy).len() == round
        });
    }
    let s = responder.stats();
    println!("{REPEATS} rounds: {s:?}");
    assert_eq!(policy.observed_for(&quiet).len(), 1, "silenced");
    assert_eq!(policy.observed_for(&noisy).len(), REPEATS, "keeps raising");
    assert_eq!(s.observed as usize, 1 + REPEATS, "{s:?}");
    assert_eq!((s.ignored, s.events), (1, 0), "{s:?}");
    assert_eq!(
        std::fs::read(&quiet).unwrap().len(),
        6 + REPEATS,
        "the appends ran"
    );

    // A policy change flushes the ignore marks: observed once more, then silent again.
    responder.clear_cache();
    read_in_child(&quiet).1.unwrap();
    wait_for("the second ignore mark", || responder.stats().ignored == 2);
    for _ in 0..5 {
        append_in_child(&quiet).1.unwrap();
    }
    read_in_child(&noisy).1.unwrap();
    wait_for("the last noisy open", || {
        policy.observed_for(&noisy).len() == REPEATS + 1
    });
    let s = responder.stats();
    assert_eq!(policy.observed_for(&quiet).len(), 2, "once after the clear");
    assert_eq!(s.observed as usize, REPEATS + 3, "{s:?}");
    assert!(
        policy
            .observed_for(&quiet)
            .iter()
            .all(|r| r.access == Access::Open)
    );
    assert_healthy(&s);
    responder.shutdown();
}

#[test]
fn ignorable_decides_which_allowed_files_keep_asking() {
    const OPENS: usize = 10;
    let fs = Tmpfs::new("palisade-fopen");
    let watched = fs.file("watched", b"w\n");
    let other = fs.file("other", b"o\n");
    let policy = OpenPolicy {
        watched: Some("watched"),
        uncached: true,
        ..OpenPolicy::default()
    };
    let config = Config {
        ignore_allowed: true,
        ..open_perm()
    };
    let responder = Responder::start(config, policy.clone()).unwrap();
    responder.mark(fs.path(), MarkScope::Mount).unwrap();

    for _ in 0..OPENS {
        read_in_child(&watched).1.unwrap();
        read_in_child(&other).1.unwrap();
    }
    let s = responder.stats();
    println!("{OPENS} opens each of a watched and an unwatched file: {s:?}");
    let decided = policy.decided();
    let asked = |p: &Path| decided.iter().filter(|r| r.path == p).count();
    assert_eq!(asked(&watched), OPENS, "the watched file asks every time");
    assert_eq!(asked(&other), 1, "the other is asked once, then ignored");
    assert_eq!(s.events as usize, OPENS + 1, "{s:?}");
    assert_eq!(s.allowed, s.events, "{s:?}");
    assert_eq!((s.ignored, s.cache_hits, s.denied), (1, 0, 0), "{s:?}");
    assert_healthy(&s);
    responder.shutdown();
}

#[test]
fn the_watchdog_answers_an_open_the_policy_stalls() {
    let fs = Tmpfs::new("palisade-fopen");
    let file = fs.file("slow", b"slow\n");
    let policy = OpenPolicy {
        deny: Some("slow"),
        delay: Duration::from_secs(2),
        ..OpenPolicy::default()
    };
    let config = Config {
        deadline: Duration::from_millis(100),
        stall_verdict: Verdict::Allow,
        ..open_perm()
    };
    let responder = Responder::start(config, policy.clone()).unwrap();
    responder.mark(fs.path(), MarkScope::Mount).unwrap();

    let start = Instant::now();
    let (_, opened) = read_in_child(&file);
    let took = start.elapsed();
    println!("a 2 s policy with a 100 ms deadline: the open took {took:?}");
    // The policy denies: only the watchdog's stall verdict can have let the open through.
    opened.unwrap();
    let s = responder.stats();
    assert!(s.watchdog >= 1, "{s:?}");
    assert_eq!((s.events, s.allowed, s.denied), (1, 1, 0), "{s:?}");

    // The worker is inside the policy; shutdown waits for it and discards its deny.
    wait_for("the policy call", || policy.calls() == 1);
    let end = responder.shutdown();
    println!("watchdog stats: {end:?}");
    assert!(end.late >= 1, "{end:?}");
    assert_eq!((end.watchdog, end.denied, end.errors), (1, 0, 0), "{end:?}");
}

/// Memory a forked child writes and its parent reads after reaping it: an anonymous shared
/// mapping of `len` `u64`s, zeroed by the kernel.
struct SharedBuf {
    ptr: NonNull<u64>,
    len: usize,
}

impl SharedBuf {
    fn new(len: usize) -> Self {
        let bytes = len.max(1) * size_of::<u64>();
        // SAFETY: a fresh anonymous mapping: no address hint, no fd; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "{}", io::Error::last_os_error());
        Self {
            ptr: NonNull::new(ptr.cast::<u64>()).unwrap(),
            len,
        }
    }

    fn as_slice(&self) -> &[u64] {
        // SAFETY: the mapping holds `len` zero-initialised `u64`s, page-aligned, alive until
        // drop; the only other writer is a child that has exited by the time we read.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u64] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only reference in this process
        // (a child writes its own view while the parent waits for it).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SharedBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, with its size; no slice of it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len.max(1) * size_of::<u64>());
        }
    }
}

/// Opens and closes `path` `n` times in a child: each open+close's latency in ns, and the
/// whole loop's.
fn open_loop(path: &Path, n: usize) -> (Vec<u64>, Duration) {
    let mut buf = SharedBuf::new(n + 1);
    let out = buf.as_mut_slice();
    let (_, result) = in_child(|| {
        let start = Instant::now();
        for slot in out[..n].iter_mut() {
            let t = Instant::now();
            drop(std::fs::File::open(path)?);
            *slot = t.elapsed().as_nanos() as u64;
        }
        out[n] = start.elapsed().as_nanos() as u64;
        Ok(())
    });
    result.unwrap();
    let v = buf.as_slice();
    (v[..n].to_vec(), Duration::from_nanos(v[n]))
}

fn bench_n() -> usize {
    std::env::var("PALISADE_OPEN_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// The `q` quantile (0..1) of sorted latencies, in µs.
fn quantile_us(sorted: &[u64], q: f64) -> f64 {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

/// Prints (does not assert the speed of) what a `FAN_OPEN_PERM` mark costs an open+close:
/// unmarked; marked with every open decided by a worker (`cache_key` `None`, nothing
/// ignorable: the file engine's cost for a file a block rule watches); marked with an ignore
/// mark after the first allow (the cost for a file no rule watches). The three alternate in
/// rounds so that load from elsewhere hits them alike. The opens run in a child (our own would
/// be trusted); the responders run in this process.
#[test]
fn cost_of_a_marked_open() {
    const ROUNDS: usize = 3;
    let fs = Tmpfs::new("palisade-fopen");
    let file = fs.file("bench", b"bench\n");
    let batch = bench_n().div_ceil(ROUNDS).max(1);
    let n = batch * ROUNDS;

    // Nothing competes for the responders: a generous deadline, so any watchdog or overflow
    // answer is a fault, not a slow machine.
    let config = Config {
        deadline: Duration::from_secs(10),
        ignore_allowed: true,
        ..open_perm()
    };
    let every = OpenPolicy {
        watched: Some("bench"),
        uncached: true,
        ..OpenPolicy::default()
    };
    every.quiet_bench.store(true, Ordering::SeqCst);
    let once = OpenPolicy {
        uncached: true,
        ..OpenPolicy::default()
    };
    let asking = Responder::start(config.clone(), every.clone()).unwrap();
    let ignoring = Responder::start(config, once.clone()).unwrap();

    let names = [
        "unmarked",
        "marked, every open decided (nothing ignorable)",
        "marked, ignore mark after the first allow",
    ];
    let mut lat: [Vec<u64>; 3] = Default::default();
    let mut wall = [Duration::ZERO; 3];
    let mut record = |i: usize, (l, t): (Vec<u64>, Duration)| {
        lat[i].extend(l);
        wall[i] += t;
    };
    for _ in 0..ROUNDS {
        record(0, open_loop(&file, batch));
        for (i, responder) in [(1, &asking), (2, &ignoring)] {
            responder.mark(fs.path(), MarkScope::Mount).unwrap();
            record(i, open_loop(&file, batch));
            responder.unmark(fs.path(), MarkScope::Mount).unwrap();
        }
    }
    let (sa, si) = (asking.shutdown(), ignoring.shutdown());

    println!(
        "{n} open+close of a tmpfs file each way, {ROUNDS} interleaved rounds (per-open \
         latency in the opening child; responders in this test process)"
    );
    println!("| variant | opens | p50 µs | p99 µs | p99.9 µs | opens/s |");
    println!("|---|---|---|---|---|---|");
    for (i, name) in names.iter().enumerate() {
        let mut v = lat[i].clone();
        v.sort_unstable();
        println!(
            "| {name} | {n} | {:.1} | {:.1} | {:.1} | {:.0} |",
            quantile_us(&v, 0.50),
            quantile_us(&v, 0.99),
            quantile_us(&v, 0.999),
            n as f64 / wall[i].as_secs_f64()
        );
    }
    println!(
        "every open decided: {} policy calls, {:.0} decisions/s; {sa:?}",
        every.calls(),
        every.calls() as f64 / wall[1].as_secs_f64()
    );
    println!("ignore mark: {} policy call(s); {si:?}", once.calls());

    assert_eq!(sa.events as usize, n, "one event per open: {sa:?}");
    assert_eq!(every.calls(), n, "every open asked the policy");
    assert_eq!(sa.allowed, sa.events, "{sa:?}");
    assert_eq!((sa.ignored, sa.cache_hits), (0, 0), "{sa:?}");
    assert_healthy(&sa);
    // The ignore mark is an inode mark: it outlives the mount mark's removal, so at most
    // one event per round.
    assert!((1..=ROUNDS as u64).contains(&si.events), "{si:?}");
    assert_eq!(once.calls() as u64, si.events, "{si:?}");
    assert_eq!(
        si.ignored, si.events,
        "every allow became an ignore mark: {si:?}"
    );
    assert_healthy(&si);
}
