//! Process events from the kernel's netlink proc connector (`NETLINK_CONNECTOR`,
//! `CN_IDX_PROC`): exec, fork, exit, uid and gid changes of every process on the host.
//!
//! Written by hand on `libc` (a socket, two small `#[repr(C)]` headers and a bounds-checked
//! parser): the `proc-connector`-style crates on crates.io are unmaintained or set
//! `NETLINK_NO_ENOBUFS`, which hides loss — the one thing a process engine must not miss.
//!
//! **Loss.** The socket never sets `NETLINK_NO_ENOBUFS`: when the kernel could not queue
//! events for us, `recv` fails with `ENOBUFS`, [`Connector::next`] returns [`Batch::Lost`]
//! and counts it, and the caller rescans `/proc` to repair its state. The receive buffer is
//! raised (to `rmem_max`, or past it with `SO_RCVBUFFORCE` as root) so that bursts fit.
//!
//! **Threads** are not processes: a fork whose child is a thread (`child_pid !=
//! child_tgid`) and the exit of a thread are dropped in [`parse`]; an exec is always a
//! process (the kernel reports it for the thread group leader).
//!
//! **Namespaces.** The connector only works from the host's network namespace (elsewhere the
//! subscription is refused with `ECONNREFUSED`); [`Connector::self_test`] says so in plain
//! words. Unsubscribing (`PROC_CN_MCAST_IGNORE`) happens on drop.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `CN_IDX_PROC` / `CN_VAL_PROC` (linux/connector.h).
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// `enum proc_cn_mcast_op` (linux/cn_proc.h).
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_CN_MCAST_IGNORE: u32 = 2;
/// `NLMSG_DONE`: the connector sends every event as one.
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
/// `what`, `cpu`, `timestamp_ns`.
const PROC_EVENT_HDR: usize = 16;

/// `enum what` of `struct proc_event`.
mod what {
    pub const NONE: u32 = 0;
    pub const FORK: u32 = 0x1;
    pub const EXEC: u32 = 0x2;
    pub const UID: u32 = 0x4;
    pub const GID: u32 = 0x40;
    pub const EXIT: u32 = 0x8000_0000;
}

/// One process event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// `parent` forked the new process `child`.
    Fork {
        /// The parent's tgid.
        parent: u32,
        /// The child's pid (= tgid).
        child: u32,
    },
    /// `pid` executed a new program.
    Exec {
        /// Its pid.
        pid: u32,
    },
    /// `pid` changed its real/effective user ids.
    Uid {
        /// Its pid.
        pid: u32,
        /// Real uid.
        ruid: u32,
        /// Effective uid.
        euid: u32,
    },
    /// `pid` changed its real/effective group ids.
    Gid {
        /// Its pid.
        pid: u32,
        /// Real gid.
        rgid: u32,
        /// Effective gid.
        egid: u32,
    },
    /// `pid` exited.
    Exit {
        /// Its pid.
        pid: u32,
        /// Exit code as `wait` reports it.
        code: u32,
    },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Why a datagram was not (wholly) understood; counted, never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParseErrors {
    /// Messages cut short or with impossible lengths.
    pub malformed: u64,
}

/// The process events in one datagram (several netlink messages may share it), appended to
/// `out`. Bounds-checked: a short or malformed message ends the parse of that datagram and
/// counts as malformed; never panics.
pub fn parse(buf: &[u8], out: &mut Vec<ProcEvent>, errors: &mut ParseErrors) {
    let mut off = 0usize;
    while off + NLMSG_HDRLEN <= buf.len() {
        let (Some(len), Some(kind)) = (u32_at(buf, off), u16_at(buf, off + 4)) else {
            errors.malformed += 1;
            return;
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            errors.malformed += 1;
            return;
        }
        if kind == NLMSG_DONE {
            let msg = &buf[off + NLMSG_HDRLEN..off + len];
            match event(msg) {
                Some(Some(e)) => out.push(e),
                Some(None) => {}
                None => errors.malformed += 1,
            }
        }
        // NLMSG_ALIGN: messages start on 4-byte boundaries.
        off += (len + 3) & !3;
    }
}

/// One `cn_msg` + `proc_event`: `None` when malformed, `Some(None)` when not of interest.
fn event(msg: &[u8]) -> Option<Option<ProcEvent>> {
    let idx = u32_at(msg, 0)?;
    let val = u32_at(msg, 4)?;
    let data_len = usize::from(u16_at(msg, 16)?);
    if idx != CN_IDX_PROC || val != CN_VAL_PROC {
        return Some(None);
    }
    let ev = msg.get(CN_MSG_LEN..CN_MSG_LEN + data_len)?;
    let w = u32_at(ev, 0)?;
    let d = ev.get(PROC_EVENT_HDR..)?;
    let e = match w {
        what::NONE => None, // the subscription's acknowledgement
        what::FORK => {
            let (parent_tgid, child_pid, child_tgid) =
                (u32_at(d, 4)?, u32_at(d, 8)?, u32_at(d, 12)?);
            (child_pid == child_tgid).then_some(ProcEvent::Fork {
                parent: parent_tgid,
                child: child_tgid,
            })
        }
        what::EXEC => Some(ProcEvent::Exec { pid: u32_at(d, 4)? }),
        what::UID => Some(ProcEvent::Uid {
            pid: u32_at(d, 4)?,
            ruid: u32_at(d, 8)?,
            euid: u32_at(d, 12)?,
        }),
        what::GID => Some(ProcEvent::Gid {
            pid: u32_at(d, 4)?,
            rgid: u32_at(d, 8)?,
            egid: u32_at(d, 12)?,
        }),
        what::EXIT => {
            let (pid, tgid, code) = (u32_at(d, 0)?, u32_at(d, 4)?, u32_at(d, 8)?);
            (pid == tgid).then_some(ProcEvent::Exit { pid: tgid, code })
        }
        _ => None, // sid, ptrace, comm, coredump, non-leader events
    };
    Some(e)
}

/// What one receive gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    /// Events (possibly none: a message of no interest, or a timeout).
    Events(Vec<ProcEvent>),
    /// The kernel dropped events for us (`ENOBUFS`): rescan `/proc`.
    Lost,
}

/// Counters, readable from any thread.
#[derive(Debug, Default)]
pub struct ConnectorCounters {
    /// Events delivered.
    pub events: AtomicU64,
    /// `ENOBUFS` reports (each is one or more lost events).
    pub lost: AtomicU64,
    /// Malformed messages.
    pub malformed: AtomicU64,
}

/// Why the connector could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A system call failed.
    #[error("proc connector: cannot {what}")]
    Io {
        /// The step.
        what: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The subscription was refused: not in the host's network namespace.
    #[error(
        "proc connector: the kernel refused the subscription (ECONNREFUSED); it only works from the host's network namespace — run palisade with the host network"
    )]
    NotHostNetns,
    /// No event arrived for a process we started.
    #[error(
        "proc connector: no exec event for a test process within {0:?} (kernel without CONFIG_PROC_EVENTS?)"
    )]
    Silent(Duration),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> ConnectorError {
    move |source| ConnectorError::Io { what, source }
}

/// A subscribed proc-connector socket.
#[derive(Debug)]
pub struct Connector {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// A loss was seen after events that were returned first: reported by the next call.
    lost_pending: bool,
    /// Counters.
    pub counters: ConnectorCounters,
}

/// Datagrams read into one batch at most (the observer looks at its stop flag between
/// batches).
const DRAIN: usize = 256;

/// Sends the multicast `op` (listen or ignore) to the connector.
fn send_op(fd: &OwnedFd, op: u32) -> io::Result<()> {
    let total = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&u32::try_from(total).unwrap_or(0).to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes()); // nlmsg_type
    m.extend_from_slice(&0u16.to_ne_bytes()); // nlmsg_flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq
    m.extend_from_slice(&std::process::id().to_ne_bytes()); // nlmsg_pid
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // ack
    m.extend_from_slice(&4u16.to_ne_bytes()); // len
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&op.to_ne_bytes());
    // SAFETY: `m` is a valid buffer of `m.len()` bytes for the duration of the call; the fd
    // is an open netlink socket bound to the connector.
    let n = unsafe { libc::send(fd.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_int_opt(fd: &OwnedFd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` lives across the call and its size is passed; the fd is a socket.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Connector {
    /// Opens, binds and subscribes. `rcvbuf` is the receive buffer asked for (bytes).
    pub fn open(rcvbuf: usize) -> Result<Self, ConnectorError> {
        // SAFETY: plain socket(2); the result is checked and owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(io_err("open a NETLINK_CONNECTOR socket")(
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
        // Root may go past rmem_max; otherwise take what rmem_max allows.
        if set_int_opt(&fd, libc::SO_RCVBUFFORCE, size).is_err() {
            let _ = set_int_opt(&fd, libc::SO_RCVBUF, size);
        }
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_pid = 0; // the kernel picks a unique port id
        addr.nl_groups = CN_IDX_PROC;
        // SAFETY: `addr` is a valid sockaddr_nl and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io_err("bind to the proc connector group")(
                io::Error::last_os_error(),
            ));
        }
        send_op(&fd, PROC_CN_MCAST_LISTEN).map_err(|e| {
            if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                ConnectorError::NotHostNetns
            } else {
                io_err("subscribe to process events")(e)
            }
        })?;
        Ok(Self {
            fd,
            buf: vec![0u8; 64 * 1024],
            lost_pending: false,
            counters: ConnectorCounters::default(),
        })
    }

    /// Waits up to `timeout` for events and returns what has arrived: up to [`DRAIN`]
    /// datagrams in one batch, read without waiting while there are more (the connector sends
    /// one datagram per event; polling before each would double the system calls).
    pub fn next(&mut self, timeout: Duration) -> Result<Batch, ConnectorError> {
        if self.lost_pending {
            self.lost_pending = false;
            return Ok(Batch::Lost);
        }
        let mut out = Vec::new();
        let mut errors = ParseErrors::default();
        let mut waited = false;
        let mut got = 0;
        while got < DRAIN {
            // SAFETY: `buf` is valid for writes of its length; the fd is our socket.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::ENOBUFS) => {
                        self.counters.lost.fetch_add(1, Ordering::Relaxed);
                        if out.is_empty() {
                            return Ok(Batch::Lost);
                        }
                        // The events before the loss first, then the loss.
                        self.lost_pending = true;
                        break;
                    }
                    Some(libc::EAGAIN | libc::EINTR) if got > 0 || waited => break,
                    Some(libc::EAGAIN | libc::EINTR) => {
                        waited = true;
                        if !self.wait(timeout)? {
                            break;
                        }
                        continue;
                    }
                    _ => return Err(io_err("receive process events")(e)),
                }
            }
            got += 1;
            let n = usize::try_from(n).unwrap_or(0);
            parse(&self.buf[..n], &mut out, &mut errors);
        }
        self.counters
            .malformed
            .fetch_add(errors.malformed, Ordering::Relaxed);
        self.counters
            .events
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(Batch::Events(out))
    }

    /// Waits up to `timeout` for the socket to be readable; `false` on timeout or a signal.
    fn wait(&self, timeout: Duration) -> Result<bool, ConnectorError> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(io_err("wait for process events")(e));
        }
        Ok(rc > 0)
    }

    /// Opens a connector (receive buffer `rcvbuf` bytes) and proves it works: a child process
    /// is started and its exec must be seen within `within`. The connector returned is
    /// subscribed and ready.
    pub fn self_test(within: Duration, rcvbuf: usize) -> Result<Self, ConnectorError> {
        let mut c = Self::open(rcvbuf)?;
        let child = std::process::Command::new("/bin/true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(io_err("start a test process"))?;
        let pid = child.id();
        let mut child = child;
        let deadline = Instant::now() + within;
        let mut seen = false;
        while !seen && Instant::now() < deadline {
            seen = match c.next(Duration::from_millis(50))? {
                Batch::Events(evs) => evs.contains(&ProcEvent::Exec { pid }),
                // Events are flowing (more than the buffer holds): the connector works; the
                // loss stays counted.
                Batch::Lost => true,
            };
        }
        let _ = child.wait();
        if seen {
            Ok(c)
        } else {
            Err(ConnectorError::Silent(within))
        }
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = send_op(&self.fd, PROC_CN_MCAST_IGNORE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One datagram with one proc event: `what` and its data words.
    fn msg(w: u32, words: &[u32]) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&w.to_ne_bytes());
        ev.extend_from_slice(&0u32.to_ne_bytes());
        ev.extend_from_slice(&0u64.to_ne_bytes());
        for x in words {
            ev.extend_from_slice(&x.to_ne_bytes());
        }
        let mut m = Vec::new();
        let total = NLMSG_HDRLEN + CN_MSG_LEN + ev.len();
        m.extend_from_slice(&(total as u32).to_ne_bytes());
        m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        m.extend_from_slice(&[0u8; 8]);
        m.extend_from_slice(&(ev.len() as u16).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&ev);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn parsed(buf: &[u8]) -> (Vec<ProcEvent>, u64) {
        let mut out = Vec::new();
        let mut e = ParseErrors::default();
        parse(buf, &mut out, &mut e);
        (out, e.malformed)
    }

    #[test]
    fn every_kind_of_event() {
        let mut buf = msg(what::FORK, &[10, 10, 11, 11]);
        buf.extend(msg(what::EXEC, &[11, 11]));
        buf.extend(msg(what::UID, &[11, 11, 1000, 0]));
        buf.extend(msg(what::GID, &[11, 11, 1000, 0]));
        buf.extend(msg(what::EXIT, &[11, 11, 256, 17, 10, 10]));
        buf.extend(msg(what::NONE, &[0]));
        assert_eq!(
            parsed(&buf),
            (
                vec![
                    ProcEvent::Fork {
                        parent: 10,
                        child: 11
                    },
                    ProcEvent::Exec { pid: 11 },
                    ProcEvent::Uid {
                        pid: 11,
                        ruid: 1000,
                        euid: 0
                    },
                    ProcEvent::Gid {
                        pid: 11,
                        rgid: 1000,
                        egid: 0
                    },
                    ProcEvent::Exit { pid: 11, code: 256 },
                ],
                0
            )
        );
    }

    #[test]
    fn threads_are_not_processes() {
        // A new thread 12 in process 11, and its exit.
        let mut buf = msg(what::FORK, &[11, 11, 12, 11]);
        buf.extend(msg(what::EXIT, &[12, 11, 0, 0]));
        assert_eq!(parsed(&buf), (vec![], 0));
    }

    #[test]
    fn truncated_and_garbage_input_is_counted_not_fatal() {
        let good = msg(what::EXEC, &[5, 5]);
        for cut in 0..good.len() {
            let (evs, bad) = parsed(&good[..cut]);
            assert!(evs.is_empty(), "cut {cut}");
            assert!(bad <= 1, "cut {cut}");
        }
        // A length that runs past the buffer, and one below the header size.
        let mut long = good.clone();
        long[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(parsed(&long), (vec![], 1));
        let mut short = good.clone();
        short[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert_eq!(parsed(&short), (vec![], 1));
        // Another connector index is ignored.
        let mut other = good;
        other[NLMSG_HDRLEN..NLMSG_HDRLEN + 4].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(parsed(&other), (vec![], 0));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parsed(&bytes);
        }
    }
}
