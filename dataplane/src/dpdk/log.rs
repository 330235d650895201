//! DPDK's log, routed into `tracing` (target `dpdk`) and kept in a short tail so that a failed
//! call's error can quote what DPDK printed while it ran.
//!
//! DPDK writes each message with `vfprintf` on the stream given to `rte_openlog_stream`, then
//! flushes it; the stream here is a `fopencookie` stream whose write callback splits lines.

use std::collections::VecDeque;
use std::ffi::{c_char, c_int, c_void};
use std::sync::{Mutex, Once};

/// Lines kept for error messages.
const TAIL_LINES: usize = 64;

struct Tail {
    next_seq: u64,
    lines: VecDeque<(u64, String)>,
    partial: Vec<u8>,
}

static TAIL: Mutex<Tail> = Mutex::new(Tail {
    next_seq: 1,
    lines: VecDeque::new(),
    partial: Vec::new(),
});

/// Sequence number of the next log line: pass it to [`since`] after a call.
pub(crate) fn mark() -> u64 {
    TAIL.lock().map_or(0, |t| t.next_seq)
}

/// Lines logged since `mark` (at most the last [`TAIL_LINES`]).
pub(crate) fn since(mark: u64) -> Vec<String> {
    TAIL.lock().map_or_else(
        |_| Vec::new(),
        |t| {
            t.lines
                .iter()
                .filter(|(s, _)| *s >= mark)
                .map(|(_, l)| l.clone())
                .collect()
        },
    )
}

fn emit(level: c_int, line: &str) {
    let line = line.trim_end();
    if line.is_empty() {
        return;
    }
    // DPDK levels: 1 emerg .. 4 err, 5 warning, 6 notice, 7 info, 8 debug.
    match level {
        ..=4 => tracing::error!(target: "dpdk", "{line}"),
        5 => tracing::warn!(target: "dpdk", "{line}"),
        6 | 7 => tracing::info!(target: "dpdk", "{line}"),
        _ => tracing::debug!(target: "dpdk", "{line}"),
    }
}

fn write_bytes(buf: &[u8]) {
    // SAFETY: reads DPDK's per-thread "current message" level; no pointers involved.
    let level = unsafe { ffi::rte_log_cur_msg_loglevel() };
    let Ok(mut t) = TAIL.lock() else { return };
    t.partial.extend_from_slice(buf);
    while let Some(nl) = t.partial.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = t.partial.drain(..=nl).collect();
        let line = String::from_utf8_lossy(&line).trim_end().to_owned();
        emit(level, &line);
        let seq = t.next_seq;
        t.next_seq += 1;
        if t.lines.len() == TAIL_LINES {
            t.lines.pop_front();
        }
        t.lines.push_back((seq, line));
    }
}

/// `fopencookie` write callback. Catches any unwind: it is called from C.
unsafe extern "C" fn cookie_write(_cookie: *mut c_void, buf: *const c_char, size: usize) -> isize {
    if buf.is_null() || size == 0 {
        return 0;
    }
    // SAFETY: glibc passes `size` readable bytes at `buf` for the duration of this call.
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) };
    let _ = std::panic::catch_unwind(|| write_bytes(bytes));
    size.try_into().unwrap_or(isize::MAX)
}

/// Points DPDK's log at `tracing`. Idempotent; call before `rte_eal_init`.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `cookie_write` is an `extern "C"` function with fopencookie's write
        // signature that lives for the whole program and never unwinds; the stream it backs is
        // never closed, so it outlives every DPDK log call.
        let rc = unsafe { ffi::shim_rte_openlog_cookie(Some(cookie_write)) };
        if rc != 0 {
            tracing::warn!("cannot route DPDK's log into tracing; it goes to stderr");
        }
    });
}
