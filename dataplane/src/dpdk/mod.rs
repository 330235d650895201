//! The DPDK runtime: the only module that touches `ffi`.
//!
//! Safe wrappers over the EAL ([`Eal`]), packet pools ([`Mempool`]), packet buffers
//! ([`Mbuf`]), rings ([`Ring`]) and ethernet ports ([`Port`]), and on top of them the poll-mode
//! [`Dataplane`]: worker lcores that forward between port pairs, with pairs hotplugged while
//! running.
//!
//! Ownership rules the types enforce: an [`Mbuf`] owns exactly one reference and frees it on
//! drop (it is never `Clone`); a [`Port`] keeps the pool its queues draw from and the rings it
//! was built on alive; the [`Eal`] is initialised once per process and cleaned up last.

mod control;
mod eal;
mod log;
mod mbuf;
mod mempool;
mod port;
mod ring;
mod runtime;
mod worker;

use std::ffi::CStr;

pub use control::DpBackend;
pub use eal::{Eal, LcoreId};
pub use mbuf::{BURST, Mbuf};
pub use mempool::Mempool;
pub use port::{Link, Port, PortId, PortStats, QueueId};
pub use ring::Ring;
pub use runtime::{
    Dataplane, FragSnapshot, PairId, PairReport, PortReport, Settings, WorkerReport,
};

/// A DPDK call failed.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {reason} (DPDK error {code}){}{}", hint_text(.hint), log_text(.log))]
pub struct DpdkError {
    /// What was being done (`"EAL initialisation"`, `"start port a"`).
    pub op: String,
    /// The positive errno DPDK reported.
    pub code: i32,
    /// `rte_strerror(code)`.
    pub reason: String,
    /// What the operator can do about it, where we know.
    pub hint: Option<&'static str>,
    /// DPDK's own log lines printed while the call ran.
    pub log: Vec<String>,
}

fn hint_text(h: &Option<&'static str>) -> String {
    h.map(|h| format!("; {h}")).unwrap_or_default()
}

fn log_text(log: &[String]) -> String {
    if log.is_empty() {
        return String::new();
    }
    let mut s = String::from("\nDPDK said:");
    for l in log {
        s.push_str("\n  ");
        s.push_str(l);
    }
    s
}

impl DpdkError {
    /// An error for `op` from a DPDK return value (`-errno` or a negative with `rte_errno` set)
    /// and the log lines printed since `mark`.
    pub(crate) fn from_code(op: impl Into<String>, code: i32, mark: u64) -> Self {
        let code = code.unsigned_abs().try_into().unwrap_or(i32::MAX);
        Self {
            op: op.into(),
            code,
            reason: strerror(code),
            hint: None,
            log: log::since(mark),
        }
    }

    /// Like [`DpdkError::from_code`], with the code taken from `rte_errno`.
    pub(crate) fn from_errno(op: impl Into<String>, mark: u64) -> Self {
        // SAFETY: reads this thread's `rte_errno`; no pointers involved.
        let code = unsafe { ffi::rte_errno() };
        Self::from_code(op, code, mark)
    }

    /// Adds an operator hint.
    pub(crate) fn with_hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }
}

/// `rte_strerror`, copied out of DPDK's buffer.
fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a NUL-terminated string, either static or in a
    // per-thread buffer that stays valid until the next call on this thread; we copy it at once.
    let p = unsafe { ffi::rte_strerror(code) };
    if p.is_null() {
        return format!("error {code}");
    }
    // SAFETY: `p` is non-null and NUL-terminated (see above), and only read before any other
    // DPDK call on this thread.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}
