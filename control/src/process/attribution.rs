//! Who a process is: its container (from the cgroup, cached per pid and start time), program
//! name and path, command line, user and parent — read from `/proc` right after its exec.
//!
//! A process can be gone by then (short-lived programs often are): whatever could still be
//! read is kept and the rest is marked unknown; the caller records it anyway, never drops it.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::fcntl::{AT_FDCWD, OFlag, openat, readlinkat};

use crate::workload::cgroup;
use crate::workload::procfs;

/// Programs that are shells (a shell with a socket for stdin or stdout is a reverse shell).
pub const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "zsh", "ksh", "busybox"];

/// A process as far as `/proc` still shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcInfo {
    /// Its pid.
    pub pid: u32,
    /// Its parent, when known.
    pub ppid: Option<u32>,
    /// Start time (clock ticks after boot), when known: with `pid`, it names the process.
    pub start_time: Option<u64>,
    /// Program name (`comm`, at most 15 bytes), when known.
    pub name: Option<String>,
    /// Executable path (`/proc/<pid>/exe`, as the process's mount namespace names it), when
    /// known; ` (deleted)` is stripped and noted in `exe_deleted`.
    pub exe: Option<String>,
    /// The executable was deleted (or replaced) after it was started.
    pub exe_deleted: bool,
    /// Arguments, when known.
    pub cmdline: Vec<String>,
    /// Real and effective uid, when known.
    pub uid: Option<(u32, u32)>,
    /// Its container's id; `None` on the host (or when unknown, see `gone`).
    pub container: Option<String>,
    /// Standard input or output is a socket (a shell on a socket is a reverse shell).
    pub stdio_socket: bool,
    /// The process had exited before anything could be read.
    pub gone: bool,
}

impl ProcInfo {
    /// The program name to match profiles with: `comm`, else the executable's file name. A
    /// program executed through `/proc/self/exe` (busybox applets that run another applet do
    /// that) has the `comm` `exe`: its `argv[0]`'s file name names it then.
    pub fn program(&self) -> Option<&str> {
        match self.name.as_deref() {
            Some("exe") => self
                .cmdline
                .first()
                .and_then(|a| a.rsplit('/').next())
                .filter(|a| !a.is_empty())
                .or(Some("exe")),
            Some(n) => Some(n),
            None => self.exe.as_deref().and_then(|e| e.rsplit('/').next()),
        }
    }
}

/// An `exe` link's target: the path, and whether the file was deleted (` (deleted)`).
fn exe_target(target: &std::ffi::OsStr) -> (String, bool) {
    let t = target.to_string_lossy();
    match t.strip_suffix(" (deleted)") {
        Some(p) => (p.to_owned(), true),
        None => (t.into_owned(), false),
    }
}

/// The arguments in a `cmdline` file's text (NUL-separated).
fn cmdline_args(text: &str) -> Vec<String> {
    text.split('\0')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The program of `pid` as [`ProcInfo::program`] names it, and its executable, read from
/// `/proc` now (the command line only when the name is `exe`). For callers without an
/// [`Attributor`] (the file engine's fanotify policy, shared between threads).
pub fn program_of(pid: i32) -> (Option<String>, Option<String>) {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let name = std::fs::read_to_string(dir.join("comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_owned());
    let exe = std::fs::read_link(dir.join("exe"))
        .ok()
        .map(|t| exe_target(t.as_os_str()).0);
    let cmdline = match name.as_deref() {
        Some("exe") => std::fs::read(dir.join("cmdline"))
            .map(|b| cmdline_args(&String::from_utf8_lossy(&b)))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let info = ProcInfo {
        name,
        exe,
        cmdline,
        ..ProcInfo::default()
    };
    (info.program().map(str::to_owned), info.exe)
}

/// `Uid:` of `/proc/<pid>/status`: (real, effective).
pub fn parse_status_uid(status: &str) -> Option<(u32, u32)> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let mut f = line["Uid:".len()..].split_ascii_whitespace();
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// Reads what is there of process `pid` under `proc_root`, with its container looked up in
/// (and stored into) `cache`.
#[derive(Debug)]
pub struct Attributor {
    proc_root: PathBuf,
    /// pid -> (start time, container id); only processes found in a container.
    cache: HashMap<u32, (u64, Option<String>)>,
    /// Lookups served from the cache.
    pub hits: u64,
    /// Reused read buffers.
    buf: Vec<u8>,
    text: String,
}

impl Attributor {
    /// Over `/proc` (or a test tree).
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        Self {
            proc_root: proc_root.into(),
            cache: HashMap::new(),
            hits: 0,
            buf: Vec::with_capacity(4096),
            text: String::with_capacity(4096),
        }
    }

    /// Forgets an exited process.
    pub fn exited(&mut self, pid: u32) {
        self.cache.remove(&pid);
    }

    /// Forgets everything (after lost events: pids may have been reused unseen).
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    /// Entries cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The container of `pid`: `Some(None)` on the host, `None` if its cgroup could not be
    /// read (it is gone).
    fn container(
        &mut self,
        dir: &OwnedFd,
        pid: u32,
        start_time: Option<u64>,
    ) -> Option<Option<String>> {
        if let Some(st) = start_time
            && let Some((cached_st, id)) = self.cache.get(&pid)
            && *cached_st == st
        {
            self.hits += 1;
            return Some(id.clone());
        }
        let id = self
            .read_at(dir, "cgroup")
            .map(|text| cgroup::container_id(text).map(|c| c.id));
        // Only containers are cached: a host process can still be moved into a container's
        // cgroup (runc puts its `runc init` there, then it executes the container's program
        // under the same pid and start time).
        match (start_time, &id) {
            (Some(st), Some(Some(id))) => {
                self.cache.insert(pid, (st, Some(id.clone())));
            }
            _ => {
                self.cache.remove(&pid);
            }
        }
        id
    }

    /// What identifies `pid` while it is still readable: for a process in a container, its
    /// container, parent, start time, name, executable and command line (the rest comes from
    /// [`Attributor::details`]); for one outside, only its parent and start time (nothing
    /// judges host processes). Files are opened relative to one descriptor of `/proc/<pid>` into a reused
    /// buffer: this runs for every exec on the host.
    pub fn read(&mut self, pid: u32) -> ProcInfo {
        let mut info = ProcInfo {
            pid,
            ..ProcInfo::default()
        };
        let Some(dirfd) = self.open_dir(pid) else {
            info.gone = true;
            return info;
        };
        let stat = self.read_at(&dirfd, "stat").and_then(procfs::parse_stat);
        info.ppid = stat.map(|s| s.ppid);
        info.start_time = stat.map(|s| s.start_time);
        let container = self.container(&dirfd, pid, info.start_time);
        // Gone before its stat or cgroup could be read: keep looking, a name may still be
        // there.
        let mut gone = stat.is_none() || container.is_none();
        info.container = container.flatten();
        if info.container.is_none() && !gone {
            return info;
        }
        match self.read_at(&dirfd, "comm") {
            Some(c) => info.name = Some(c.trim_end_matches('\n').to_owned()),
            None => gone = true,
        }
        if let Ok(target) = readlinkat(&dirfd, "exe") {
            let (path, deleted) = exe_target(&target);
            info.exe = Some(path);
            info.exe_deleted = deleted;
        }
        if let Some(c) = self.read_at(&dirfd, "cmdline") {
            info.cmdline = cmdline_args(c);
        }
        // Effective uid 0 (the owner of /proc/<pid>, or a non-dumpable process): the uids
        // now, a setuid exec by a non-root user is a finding whatever the profile says.
        if nix::sys::stat::fstat(&dirfd).is_ok_and(|st| st.st_uid == 0)
            && let Some(s) = self.read_at(&dirfd, "status")
        {
            info.uid = parse_status_uid(s);
        }
        info.gone = gone;
        info
    }

    /// What only a report or a finding needs, read after the judgement: the uids and, for a
    /// shell, whether its standard input or output is a socket. Left unknown if it is gone.
    pub fn details(&mut self, info: &mut ProcInfo) {
        let Some(dirfd) = self.open_dir(info.pid) else {
            return;
        };
        // The same process still (not a reused pid)?
        let start = self
            .read_at(&dirfd, "stat")
            .and_then(procfs::parse_stat)
            .map(|s| s.start_time);
        if start.is_none() || start != info.start_time {
            return;
        }
        if info.uid.is_none()
            && let Some(s) = self.read_at(&dirfd, "status")
        {
            info.uid = parse_status_uid(s);
        }
        if info.program().is_some_and(|p| SHELLS.contains(&p)) {
            info.stdio_socket = ["fd/0", "fd/1"].iter().any(|f| {
                readlinkat(&dirfd, *f).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
            });
        }
    }

    /// A descriptor of `/proc/<pid>` (`O_PATH`), the files below opened relative to it.
    fn open_dir(&self, pid: u32) -> Option<OwnedFd> {
        openat(
            AT_FDCWD,
            &self.proc_root.join(pid.to_string()),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()
    }

    /// `name` under the process directory `dir`, as text (lossy), from the reused buffer;
    /// `None` if it cannot be opened or read (the process is gone).
    fn read_at(&mut self, dir: &OwnedFd, name: &str) -> Option<&str> {
        let fd = openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        // A plain read loop: `read_to_end` would stat and seek the file first, two more
        // system calls per file for nothing on /proc.
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            match nix::unistd::read(&fd, &mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return None,
            }
        }
        self.text.clear();
        self.text.push_str(&String::from_utf8_lossy(&self.buf));
        Some(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;

    const STATUS: &str = "Name:\tsh\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\nPid:\t7\nPPid:\t1\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";

    fn stat(pid: u32, ppid: u32, start: u64) -> String {
        format!(
            "{pid} (sh) S {ppid} 7 7 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {start} 1 1 1 1 1 1 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
        )
    }

    fn fake_proc(root: &Path, pid: u32, cgroup_line: &str, start: u64) {
        let d = root.join(pid.to_string());
        fs::create_dir_all(d.join("fd")).unwrap();
        fs::write(d.join("stat"), stat(pid, 1, start)).unwrap();
        fs::write(d.join("status"), STATUS).unwrap();
        fs::write(d.join("comm"), "sh\n").unwrap();
        fs::write(d.join("cgroup"), cgroup_line).unwrap();
        fs::write(d.join("cmdline"), b"/bin/sh\0-c\0echo hi\0").unwrap();
        std::os::unix::fs::symlink("/bin/busybox (deleted)", d.join("exe")).unwrap();
        std::os::unix::fs::symlink("socket:[1234]", d.join("fd/0")).unwrap();
        std::os::unix::fs::symlink("/dev/null", d.join("fd/1")).unwrap();
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn reads_everything_and_caches_the_container_per_start_time() {
        let dir = tempfile::tempdir().unwrap();
        let cg = format!("0::/machine.slice/libpod-{ID}.scope\n");
        fake_proc(dir.path(), 7, &cg, 100);
        let mut a = Attributor::new(dir.path());
        let mut i = a.read(7);
        a.details(&mut i);
        assert_eq!(i.container.as_deref(), Some(ID));
        assert_eq!(i.ppid, Some(1));
        assert_eq!(i.start_time, Some(100));
        assert_eq!(i.program(), Some("sh"));
        assert_eq!(i.exe.as_deref(), Some("/bin/busybox"));
        assert!(i.exe_deleted);
        assert_eq!(i.cmdline, vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(i.uid, Some((1000, 0)));
        assert!(i.stdio_socket);
        assert!(!i.gone);
        assert_eq!(a.read(7).container.as_deref(), Some(ID));
        assert_eq!(a.hits, 1);
        // Same pid, another process (a new start time): looked up again.
        fs::write(dir.path().join("7/cgroup"), "0::/user.slice\n").unwrap();
        fs::write(dir.path().join("7/stat"), stat(7, 1, 200)).unwrap();
        assert_eq!(a.read(7).container, None);
        assert_eq!(a.cached(), 0, "a host process is not cached");
        // ... because runc moves its init into the container before the program's exec.
        fs::write(dir.path().join("7/cgroup"), &cg).unwrap();
        assert_eq!(a.read(7).container.as_deref(), Some(ID));
        a.exited(7);
        assert_eq!(a.cached(), 0);
    }

    #[test]
    fn a_gone_process_is_kept_with_what_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Attributor::new(dir.path());
        let i = a.read(4242);
        assert!(i.gone);
        assert_eq!(i.pid, 4242);
        assert_eq!(i.program(), None);
        // Half gone: the directory is there but stat is not (it exited mid-read).
        fs::create_dir_all(dir.path().join("43")).unwrap();
        fs::write(dir.path().join("43/comm"), "true\n").unwrap();
        let i = a.read(43);
        assert!(i.gone);
        assert_eq!(i.program(), Some("true"));
    }

    #[test]
    fn a_program_run_through_proc_self_exe_is_named_by_its_argv0() {
        let mut i = ProcInfo {
            name: Some("exe".into()),
            exe: Some("/bin/busybox".into()),
            cmdline: vec!["tail".into(), "-f".into()],
            ..ProcInfo::default()
        };
        assert_eq!(i.program(), Some("tail"));
        i.cmdline = vec!["/usr/bin/tail".into()];
        assert_eq!(i.program(), Some("tail"));
        i.cmdline.clear();
        assert_eq!(i.program(), Some("exe"));
        i.name = None;
        assert_eq!(i.program(), Some("busybox"));
    }

    #[test]
    fn status_uid_lines() {
        assert_eq!(parse_status_uid(STATUS), Some((1000, 0)));
        assert_eq!(parse_status_uid("Uid:\tx\t0\n"), None);
        assert_eq!(parse_status_uid(""), None);
    }
}
