//! The exec permission responder (`control::fanotify`) against the real kernel
//! (needs root; CI is root).
//!
//! Each test mounts its own tmpfs on a fresh temporary directory, copies a binary into it
//! (busybox, static, else `/bin/true`), marks the mount and execs the copy. Guards undo
//! everything, also when an assertion fails: the responder (declared after the mount, so
//! dropped first) flushes its marks and allows whatever is pending, then the tmpfs is lazily
//! unmounted. Children are exec'd from plain threads that hold no responder state.
//!
//! What it proves: allow lets the exec run and repeated execs are cache hits; deny fails the
//! exec with EPERM, and a cleared cache takes a changed policy; unmarking stops the watching;
//! a policy slower than the deadline is overridden by the watchdog; a full queue is answered
//! with the overflow default; 10,000 denied execs in a row all fail; the responder's own
//! process is trusted. It also prints what a marked exec costs (`FANOTIFY_EXECS` execs each,
//! default 10,000).

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::ffi::CString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control::fanotify::{Config, MarkScope, Policy, Request, Responder, Stats, Verdict};
use palisade_tests::{Tmpfs, sh};

/// The test's own additions to the shared tmpfs.
trait Install {
    /// Copies the test binary in as `name`, a relative path (busybox runs the applet its file
    /// is named after: `true`).
    fn install(&self, name: &str) -> PathBuf;
}

impl Install for Tmpfs {
    fn install(&self, name: &str) -> PathBuf {
        let source = ["/usr/bin/busybox", "/bin/busybox", "/bin/true"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("no busybox or /bin/true");
        let dest = self.path().join(name);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(source, &dest).unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).unwrap();
        dest
    }
}

/// A policy with a switchable verdict and an optional delay, counting its calls and keeping
/// every request.
#[derive(Clone, Default)]
struct TestPolicy {
    deny: Arc<AtomicBool>,
    delay: Duration,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl TestPolicy {
    fn verdict(v: Verdict) -> Self {
        let p = Self::default();
        p.deny.store(v == Verdict::Deny, Ordering::SeqCst);
        p
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Policy for TestPolicy {
    fn decide(&self, req: &Request) -> Verdict {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(req.clone());
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        if self.deny.load(Ordering::SeqCst) {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    }
}

/// Execs `path` once from a fresh thread.
fn exec(path: &Path) -> io::Result<ExitStatus> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        Command::new(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    })
    .join()
    .unwrap()
}

/// Execs `path` `n` times in a row from a fresh thread: (succeeded, EPERM, elapsed).
fn exec_loop(path: &Path, n: usize) -> (usize, usize, Duration) {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let (mut ok, mut eperm) = (0, 0);
        let start = Instant::now();
        for _ in 0..n {
            match Command::new(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
            {
                Ok(s) if s.success() => ok += 1,
                Ok(s) => panic!("{} exited with {s}", path.display()),
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => eperm += 1,
                Err(e) => panic!("exec {}: {e}", path.display()),
            }
        }
        (ok, eperm, start.elapsed())
    })
    .join()
    .unwrap()
}

fn execs() -> usize {
    std::env::var("FANOTIFY_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn assert_denied(result: io::Result<ExitStatus>) {
    let err = result.expect_err("the exec should have been denied");
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
}

/// The default settings without ignore marks: these tests watch every exec's event.
fn no_ignore() -> Config {
    Config {
        ignore_allowed: false,
        ..Config::default()
    }
}

fn delta(after: Stats, before: Stats) -> Stats {
    Stats {
        events: after.events - before.events,
        allowed: after.allowed - before.allowed,
        denied: after.denied - before.denied,
        trusted: after.trusted - before.trusted,
        cache_hits: after.cache_hits - before.cache_hits,
        overflow: after.overflow - before.overflow,
        watchdog: after.watchdog - before.watchdog,
        late: after.late - before.late,
        errors: after.errors - before.errors,
        ignored: after.ignored - before.ignored,
        observed: after.observed - before.observed,
    }
}

#[test]
fn allow_lets_the_exec_run_and_repeats_are_cache_hits() {
    let fs = Tmpfs::new("palisade-fan");
    let bin = fs.install("true");
    let policy = TestPolicy::verdict(Verdict::Allow);
    let responder = Responder::start(no_ignore(), policy.clone()).unwrap();
    responder.mark_mount(fs.path()).unwrap();

    let s0 = responder.stats();
    assert!(exec(&bin).unwrap().success());
    let first = delta(responder.stats(), s0);
    println!(
        "one exec raised {} permission event(s): {first:?}",
        first.events
    );
    assert!(first.events >= 1);
    assert_eq!(first.allowed, first.events, "every event answered allow");
    assert_eq!((first.denied, first.errors, first.watchdog), (0, 0, 0));
    assert_eq!(policy.calls(), 1, "the exec's later events hit the cache");
    assert_eq!(first.cache_hits, first.events - 1);

    let req = policy.seen.lock().unwrap()[0].clone();
    assert_eq!(req.path, bin, "the path from the event's fd");
    assert_ne!(req.pid, std::process::id() as i32, "the child, not us");
    let meta = std::fs::metadata(&bin).unwrap();
    assert_eq!(req.file.ino, std::os::unix::fs::MetadataExt::ino(&meta));

    let s1 = responder.stats();
    assert!(exec(&bin).unwrap().success());
    let second = delta(responder.stats(), s1);
    assert_eq!(policy.calls(), 1, "a repeated exec skips the policy");
    assert_eq!(second.cache_hits, second.events);
    assert_eq!(second.allowed, second.events);

    let end = responder.shutdown();
    assert_eq!(end.errors, 0, "{end:?}");
}

/// Copies `/bin/true` and the libraries `ldd` lists into `fs` at their own paths: a
/// miniature container rootfs with a dynamic binary.
fn install_dynamic_true(fs: &Tmpfs) {
    let ldd = sh(&["ldd", "/bin/true"]);
    let mut files = vec![PathBuf::from("/bin/true")];
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') {
            files.push(PathBuf::from(word));
        }
    }
    for file in files {
        let dest = fs.path().join(file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&file, &dest).unwrap();
    }
}

/// Runs `/bin/true` chrooted into `root`, from a fresh thread (chroot itself is the host's,
/// not watched).
fn chroot_true(root: &Path) -> ExitStatus {
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        Command::new("chroot")
            .arg(root)
            .arg("/bin/true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    })
    .join()
    .unwrap()
}

#[test]
fn a_dynamic_exec_raises_two_events_and_both_are_answered() {
    let fs = Tmpfs::new("palisade-fan");
    install_dynamic_true(&fs);

    // The binary and its interpreter (`PT_INTERP`, which the kernel opens for exec too).
    let policy = TestPolicy::verdict(Verdict::Allow);
    let responder = Responder::start(no_ignore(), policy.clone()).unwrap();
    responder.mark_mount(fs.path()).unwrap();
    assert!(chroot_true(fs.path()).success());
    let s = responder.shutdown();
    let seen: Vec<PathBuf> = policy
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    println!("a dynamic exec: {seen:?}, {s:?}");
    assert_eq!(s.events, 2, "{s:?}");
    assert_eq!(s.allowed, 2, "{s:?}");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], fs.path().join("bin/true"));
    assert!(seen[1].starts_with(fs.path().join("lib64")), "{seen:?}");

    // Denying the second event alone fails the exec: it is answered on its own. A closure is
    // a policy.
    let deny_interp = |req: &Request| {
        if req.path.to_string_lossy().contains("ld-linux") {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    };
    let responder = Responder::start(no_ignore(), deny_interp).unwrap();
    responder.mark_mount(fs.path()).unwrap();
    let status = chroot_true(fs.path());
    let s = responder.shutdown();
    assert!(
        !status.success(),
        "chroot could not exec /bin/true: {status}"
    );
    assert_eq!((s.events, s.allowed, s.denied), (2, 1, 1), "{s:?}");
}

#[test]
fn deny_fails_the_exec_with_eperm_until_the_cache_is_cleared() {
    let fs = Tmpfs::new("palisade-fan");
    let bin = fs.install("true");
    let policy = TestPolicy::verdict(Verdict::Deny);
    let responder = Responder::start(no_ignore(), policy.clone()).unwrap();
    responder.mark_mount(fs.path()).unwrap();

    let s0 = responder.stats();
    assert_denied(exec(&bin));
    let d = delta(responder.stats(), s0);
    assert!(d.denied >= 1, "{d:?}");
    assert_eq!(d.denied, d.events, "{d:?}");

    // The policy changes: cached denials hold until the cache is cleared.
    policy.deny.store(false, Ordering::SeqCst);
    assert_denied(exec(&bin));
    responder.clear_cache();
    assert_eq!(responder.cached(), 0);
    assert!(exec(&bin).unwrap().success());

    // Modifying the binary changes its identity: the new content is decided afresh.
    policy.deny.store(true, Ordering::SeqCst);
    let calls = policy.calls();
    let mut data = std::fs::read(&bin).unwrap();
    data.push(0);
    std::thread::sleep(Duration::from_millis(10));
    std::fs::write(&bin, data).unwrap();
    assert_denied(exec(&bin));
    assert!(policy.calls() > calls);

    let end = responder.shutdown();
    assert_eq!(end.errors, 0, "{end:?}");
}

#[test]
fn unmark_and_filesystem_marks() {
    let fs = Tmpfs::new("palisade-fan");
    let bin = fs.install("true");
    let responder = Responder::start(no_ignore(), TestPolicy::verdict(Verdict::Deny)).unwrap();

    responder.mark_mount(fs.path()).unwrap();
    assert_denied(exec(&bin));
    responder.unmark(fs.path(), MarkScope::Mount).unwrap();
    assert!(exec(&bin).unwrap().success(), "unmarked: not watched");

    responder.mark_filesystem(fs.path()).unwrap();
    assert_denied(exec(&bin));
    responder.unmark(fs.path(), MarkScope::Filesystem).unwrap();
    assert!(exec(&bin).unwrap().success());

    let missing = fs.path().join("missing");
    assert!(responder.mark_mount(&missing).is_err());
    drop(responder);
}

#[test]
fn shutdown_removes_the_marks() {
    let fs = Tmpfs::new("palisade-fan");
    let bin = fs.install("true");
    let responder = Responder::start(no_ignore(), TestPolicy::verdict(Verdict::Deny)).unwrap();
    responder.mark_mount(fs.path()).unwrap();
    assert_denied(exec(&bin));
    responder.shutdown();
    assert!(
        exec(&bin).unwrap().success(),
        "nothing watches after shutdown"
    );
}

#[test]
fn the_watchdog_answers_a_policy_slower_than_the_deadline() {
    let fs = Tmpfs::new("palisade-fan");
    let bin = fs.install("true");
    let mut policy = TestPolicy::verdict(Verdict::Deny);
    policy.delay = Duration::from_secs(2);
    let config = Config {
        deadline: Duration::from_millis(100),
        stall_verdict: Verdict::Allow,
        ..no_ignore()
    };
    let responder = Responder::start(config, policy.clone()).unwrap();
    responder.mark_mount(fs.path()).unwrap();

    let start = Instant::now();
    let status = exec(&bin);
    let took = start.elapsed();
    println!("a 2 s policy with a 100 ms deadline: the exec took {took:?}");
    assert!(status.unwrap().success(), "the stall default (allow) won");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let s = responder.stats();
    assert!(s.watchdog >= 1, "{s:?}");
    assert_eq!(s.denied, 0, "the late deny was discarded: {s:?}");

    // Shutdown joins the worker once its 2 s policy returns: the late decision is counted.
    let end = responder.shutdown();
    println!("watchdog stats: {end:?}");
    assert!(end.late >= 1, "{end:?}");
    assert_eq!(end.denied, 0, "{end:?}");
}

#[test]
fn shutdown_releases_an_exec_waiting_on_a_slow_policy() {
    let fs = Tmpfs::new("palisade-fan");
    let bin = fs.install("true");
    let mut policy = TestPolicy::verdict(Verdict::Deny);
    policy.delay = Duration::from_secs(2);
    let config = Config {
        deadline: Duration::from_secs(60),
        ..no_ignore()
    };
    let responder = Responder::start(config, policy.clone()).unwrap();
    responder.mark_mount(fs.path()).unwrap();

    let start = Instant::now();
    let child = {
        let bin = bin.clone();
        std::thread::spawn(move || {
            let status = exec(&bin);
            (status, start.elapsed())
        })
    };
    while policy.calls() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the policy was never called"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = responder.shutdown();
    let stopped = start.elapsed();
    let (status, released) = child.join().unwrap();
    println!("exec released after {released:?}, shutdown returned after {stopped:?}: {s:?}");
    assert!(status.unwrap().success(), "shutdown allows what is pending");
    assert!(released < Duration::from_millis(1500), "{released:?}");
    assert_eq!((s.watchdog, s.denied), (0, 0), "{s:?}");
    assert!(
        s.late >= 1,
        "the policy's deny came after the shutdown's allow: {s:?}"
    );
}

#[test]
fn a_panicking_policy_is_answered_with_the_stall_default() {
    let fs = Tmpfs::new("palisade-fan");
    let bin = fs.install("true");
    let panics = |_: &Request| -> Verdict { panic!("a buggy policy") };
    // A deadline no panic (backtrace printing included) outlasts on a loaded machine: the
    // worker itself answers each one, so the count below does not depend on timing.
    let config = Config {
        deadline: Duration::from_secs(30),
        ..no_ignore()
    };
    let responder = Responder::start(config, panics).unwrap();
    responder.mark_mount(fs.path()).unwrap();
    for _ in 0..3 {
        assert!(exec(&bin).unwrap().success(), "stall default: allow");
    }
    let s = responder.shutdown();
    assert_eq!(s.errors, 3, "one per exec, and the worker lives on: {s:?}");
    assert_eq!(s.allowed, 3, "{s:?}");
    // Printing a panic's backtrace can outlast the deadline: then the watchdog answered first.
    assert_eq!(s.watchdog, s.late, "{s:?}");
}

#[test]
fn a_full_queue_is_answered_with_the_overflow_default() {
    let fs = Tmpfs::new("palisade-fan");
    let bins: Vec<PathBuf> = (0..8).map(|i| fs.install(&format!("{i}/true"))).collect();
    let mut policy = TestPolicy::verdict(Verdict::Deny);
    policy.delay = Duration::from_millis(300);
    let config = Config {
        queue_capacity: 1,
        deadline: Duration::from_secs(30),
        overflow_verdict: Verdict::Allow,
        ..no_ignore()
    };
    let responder = Responder::start(config, policy.clone()).unwrap();
    responder.mark_mount(fs.path()).unwrap();

    let start = Instant::now();
    let threads: Vec<_> = bins
        .into_iter()
        .map(|bin| std::thread::spawn(move || exec(&bin)))
        .collect();
    let results: Vec<io::Result<ExitStatus>> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    let took = start.elapsed();
    let s = responder.stats();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    println!("8 concurrent execs, queue of 1, 300 ms policy: {took:?}, {ok} ran, {s:?}");
    assert!(s.overflow >= 1, "{s:?}");
    assert_eq!(s.watchdog, 0, "{s:?}");
    assert_eq!(s.errors, 0, "{s:?}");
    assert_eq!(
        s.allowed + s.denied,
        s.events,
        "every event answered: {s:?}"
    );
    assert!(s.allowed >= s.overflow, "overflow answered allow: {s:?}");
    for r in &results {
        match r {
            Ok(status) => assert!(status.success(), "{status}"),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
        }
    }
    // 8 execs, 2 events each, at most 2 of which can wait on one 300 ms policy each at any
    // time: far below the 30 s deadline.
    assert!(took < Duration::from_secs(10), "{took:?}");
    responder.shutdown();
}

#[test]
fn concurrent_execs_of_allowed_and_denied_binaries() {
    const THREADS: usize = 4;
    const EACH: usize = 300;
    let fs = Tmpfs::new("palisade-fan");
    let allowed = fs.install("allowed/true");
    let denied = fs.install("denied/true");
    let by_name = |req: &Request| {
        if req.path.parent().is_some_and(|p| p.ends_with("denied")) {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    };
    let responder = Responder::start(no_ignore(), by_name).unwrap();
    responder.mark_mount(fs.path()).unwrap();

    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let bin = if i % 2 == 0 { &allowed } else { &denied }.clone();
            std::thread::spawn(move || exec_loop(&bin, EACH))
        })
        .collect();
    let results: Vec<(usize, usize, Duration)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    let took = start.elapsed();
    let s = responder.shutdown();
    println!("{THREADS} threads x {EACH} execs in {took:?}: {s:?}");
    for (i, (ok, eperm, _)) in results.into_iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!((ok, eperm), (EACH, 0), "thread {i}");
        } else {
            assert_eq!((ok, eperm), (0, EACH), "thread {i}");
        }
    }
    let n = (THREADS * EACH) as u64;
    assert_eq!(s.events, n, "{s:?}");
    assert_eq!((s.allowed, s.denied), (n / 2, n / 2), "{s:?}");
    assert_eq!((s.errors, s.watchdog, s.overflow), (0, 0, 0), "{s:?}");
    assert!(s.cache_hits >= n - 4, "{s:?}");
}

#[test]
fn ten_thousand_denied_execs_all_fail() {
    let fs = Tmpfs::new("palisade-fan");
    let bin = fs.install("true");
    let policy = TestPolicy::verdict(Verdict::Deny);
    let responder = Responder::start(no_ignore(), policy.clone()).unwrap();
    responder.mark_mount(fs.path()).unwrap();

    let n = execs();
    let (ok, eperm, took) = exec_loop(&bin, n);
    let s = responder.stats();
    println!(
        "{n} denied execs: {ok} ran, {eperm} EPERM, {took:?} ({:.1} us each), policy called {} \
         time(s), {s:?}",
        took.as_secs_f64() * 1e6 / n as f64,
        policy.calls()
    );
    assert_eq!(ok, 0);
    assert_eq!(eperm, n);
    assert_eq!(s.denied, s.events, "{s:?}");
    assert_eq!(s.errors, 0, "{s:?}");
    assert_eq!(s.watchdog, 0, "{s:?}");
    responder.shutdown();
}

/// `execveat(fd, "", AT_EMPTY_PATH | AT_EXECVE_CHECK)` (Linux 6.14): the exec checks,
/// fanotify's included, without the exec. `None` if the kernel lacks the flag.
fn execve_check(path: &Path) -> Option<io::Result<()>> {
    const AT_EXECVE_CHECK: libc::c_int = 0x10000;
    let file = std::fs::File::open(path).unwrap();
    let empty = CString::new("").unwrap();
    let argv: [*const libc::c_char; 2] = [empty.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the fd is open for the call; the path, argv and envp are NUL-terminated strings
    // and NULL-terminated arrays that outlive it; with AT_EXECVE_CHECK the call returns
    // instead of replacing the process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_execveat,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH | AT_EXECVE_CHECK,
        )
    };
    if rc == 0 {
        return Some(Ok(()));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINVAL) {
        return None;
    }
    Some(Err(err))
}

#[test]
fn the_responders_own_process_is_trusted() {
    let fs = Tmpfs::new("palisade-fan");
    let bin = fs.install("true");
    let policy = TestPolicy::verdict(Verdict::Deny);
    let responder = Responder::start(no_ignore(), policy.clone()).unwrap();
    responder.mark_mount(fs.path()).unwrap();

    let checked = {
        let bin = bin.clone();
        std::thread::spawn(move || execve_check(&bin))
            .join()
            .unwrap()
    };
    let Some(result) = checked else {
        println!("no AT_EXECVE_CHECK in this kernel: skipped");
        return;
    };
    result.unwrap();
    let s = responder.stats();
    assert!(s.trusted >= 1, "{s:?}");
    assert_eq!(s.trusted, s.events, "{s:?}");
    assert_eq!(policy.calls(), 0);
    // A child is not trusted.
    assert_denied(exec(&bin));
    responder.shutdown();
}

/// Prints (does not assert) what the mark costs an exec: `FANOTIFY_EXECS` fork+exec
/// unmarked, as many marked with a cached allow answered by the reader (the default), and as
/// many answered by a worker (`hits_in_reader: false`), interleaved in ten rounds so that load
/// from elsewhere on the machine hits all three alike.
#[test]
fn cost_of_a_marked_exec() {
    const ROUNDS: usize = 10;
    let fs = Tmpfs::new("palisade-fan");
    let bin = fs.install("true");
    let batch = (execs() / ROUNDS).max(1);
    let n = batch * ROUNDS;

    let policy = TestPolicy::verdict(Verdict::Allow);
    let reader = Responder::start(no_ignore(), policy.clone()).unwrap();
    let worker_config = Config {
        hits_in_reader: false,
        ..no_ignore()
    };
    let worker = Responder::start(worker_config, policy.clone()).unwrap();
    let ignoring = Responder::start(Config::default(), policy.clone()).unwrap();
    let mut times: [Vec<Duration>; 4] = Default::default();
    for _ in 0..ROUNDS {
        let (ok, _, t) = exec_loop(&bin, batch);
        assert_eq!(ok, batch);
        times[0].push(t);
        for (i, responder) in [(1, &reader), (2, &worker), (3, &ignoring)] {
            responder.mark_mount(fs.path()).unwrap();
            let (ok, _, t) = exec_loop(&bin, batch);
            assert_eq!(ok, batch);
            times[i].push(t);
            responder.unmark(fs.path(), MarkScope::Mount).unwrap();
        }
    }
    let (sr, sw, si) = (reader.shutdown(), worker.shutdown(), ignoring.shutdown());

    let us = |d: Duration| d.as_secs_f64() * 1e6 / batch as f64;
    let mean = |v: &[Duration]| us(v.iter().sum::<Duration>()) / ROUNDS as f64;
    let best = |v: &[Duration]| us(v.iter().copied().min().unwrap());
    println!(
        "{n} fork+exec of {} each way, {ROUNDS} interleaved rounds, us/exec mean (best round): \
         unmarked {:.1} ({:.1}); marked, cached allow from the reader {:.1} ({:.1}); from a \
         worker {:.1} ({:.1}); with ignore marks {:.1} ({:.1}); policy called {} time(s); reader \
         {sr:?}; worker {sw:?}; ignoring {si:?}",
        bin.display(),
        mean(&times[0]),
        best(&times[0]),
        mean(&times[1]),
        best(&times[1]),
        mean(&times[2]),
        best(&times[2]),
        mean(&times[3]),
        best(&times[3]),
        policy.calls()
    );
    for s in [sr, sw] {
        assert_eq!(s.events as usize, n);
        assert_eq!(s.allowed, s.events);
        assert_eq!(s.cache_hits, s.events - 1);
    }
    // With ignore marks the kernel asks at most once per round (an ignore mark can outlive the
    // unmark and mark again: then fewer).
    assert!(si.events as usize <= ROUNDS, "{si:?}");
    assert_eq!(policy.calls(), 3, "one miss per responder");
}

#[test]
fn an_allowed_file_raises_no_more_events_until_it_changes_or_the_cache_is_cleared() {
    let fs = Tmpfs::new("palisade-fan");
    let bin = fs.install("true");
    let policy = TestPolicy::verdict(Verdict::Allow);
    let responder = Responder::start(Config::default(), policy.clone()).unwrap();
    responder.mark_mount(fs.path()).unwrap();
    let (ok, _, _) = exec_loop(&bin, 50);
    assert_eq!(ok, 50);
    let s = responder.stats();
    assert_eq!(
        (s.events, s.ignored),
        (1, 1),
        "asked once, then ignored: {s:?}"
    );
    // A policy change flushes the ignore marks: asked again.
    responder.clear_cache();
    let (ok, _, _) = exec_loop(&bin, 5);
    assert_eq!(ok, 5);
    assert_eq!(responder.stats().events, 2, "{:?}", responder.stats());
    // Writing the file drops its ignore mark (the kernel's doing): asked again.
    let data = std::fs::read(&bin).unwrap();
    std::fs::write(&bin, data).unwrap();
    let (ok, _, _) = exec_loop(&bin, 5);
    assert_eq!(ok, 5);
    assert_eq!(responder.stats().events, 3, "{:?}", responder.stats());
    responder.shutdown();
}
