//! The poll-mode worker loop that runs on each worker lcore.
//!
//! A worker owns a set of forwarding legs (rx port -> tx port, queue 0 of each; a port pair
//! gives two legs and both go to the same worker, so one flow always meets one worker). It
//! reads its assignment through an `ArcSwap` once per loop iteration and publishes the
//! generation it loaded; the control thread waits for that acknowledgement before it stops a
//! port it removed, so a port is never stopped under a worker that still polls it.
//!
//! Per packet the loop does no allocation, takes no lock and makes no syscall: bursts of
//! [`BURST`] pointers live on the stack, counters are single-writer stores.

use std::ffi::{c_int, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::mbuf::{BURST, Burst};
use super::{LcoreId, PortId};
use crate::stats::{DropReason, PortCounters, WorkerCounters};

/// Extra transmit attempts for the unsent tail of a burst before it is freed and counted.
pub(crate) const TX_RETRIES: u32 = 4;
/// Idle loop iterations before the adaptive policy starts to sleep.
const SPIN_LOOPS: u32 = 64;
/// First adaptive sleep; doubles up to the configured maximum.
const FIRST_SLEEP_US: u64 = 2;

/// One direction of a port pair.
#[derive(Debug)]
pub(crate) struct Leg {
    pub(crate) rx: PortId,
    pub(crate) tx: PortId,
    pub(crate) rx_counters: Arc<PortCounters>,
    pub(crate) tx_counters: Arc<PortCounters>,
}

/// Everything a worker polls, with the generation it was published under.
#[derive(Debug, Default)]
pub(crate) struct Assignment {
    pub(crate) generation: u64,
    pub(crate) legs: Vec<Leg>,
}

/// Idle behaviour of a worker.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdlePolicy {
    Busy,
    Adaptive { max_sleep_us: u64 },
}

/// State shared between a worker and the control thread.
#[derive(Debug)]
pub(crate) struct WorkerShared {
    pub(crate) lcore: LcoreId,
    pub(crate) assignment: ArcSwap<Assignment>,
    /// Generation of the assignment the worker last loaded.
    pub(crate) seen: AtomicU64,
    pub(crate) stop: AtomicBool,
    pub(crate) running: AtomicBool,
    pub(crate) idle: IdlePolicy,
    pub(crate) counters: WorkerCounters,
}

impl WorkerShared {
    pub(crate) fn new(lcore: LcoreId, idle: IdlePolicy) -> Self {
        Self {
            lcore,
            assignment: ArcSwap::from_pointee(Assignment::default()),
            seen: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            running: AtomicBool::new(false),
            idle,
            counters: WorkerCounters::default(),
        }
    }
}

/// The CPU's time-stamp counter (what DPDK's `rte_rdtsc` reads); read once per loop
/// iteration (it costs tens of cycles on a VM).
#[inline]
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64; it only reads the counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Receives one burst on `leg.rx` and sends it out of `leg.tx`; returns packets received.
#[inline]
fn forward(leg: &Leg, burst: &mut Burst, wc: &WorkerCounters) -> usize {
    // SAFETY: the port is started and stays so while it is in our assignment (the control
    // thread waits for our acknowledgement before stopping it); `ptrs` has room for BURST.
    let n = usize::from(unsafe {
        ffi::rte_eth_rx_burst(leg.rx.0, 0, burst.ptrs.as_mut_ptr(), BURST as u16)
    });
    if n == 0 {
        return 0;
    }
    burst.len = n;
    let bytes = burst.bytes(0..n);
    leg.rx_counters.rx_packets.add(n as u64);
    leg.rx_counters.rx_bytes.add(bytes);
    wc.rx_packets.add(n as u64);

    let mut sent = 0usize;
    let mut attempts = 0u32;
    loop {
        let rest = u16::try_from(n - sent).unwrap_or(0);
        // SAFETY: [sent, n) are valid mbufs this burst owns; the PMD takes ownership of the
        // ones it reports as sent. The tx port is started (same argument as rx above).
        let done =
            unsafe { ffi::rte_eth_tx_burst(leg.tx.0, 0, burst.ptrs[sent..].as_mut_ptr(), rest) };
        sent += usize::from(done);
        if sent == n || attempts == TX_RETRIES {
            break;
        }
        attempts += 1;
    }
    let unsent = n - sent;
    let unsent_bytes = if unsent > 0 { burst.bytes(sent..n) } else { 0 };
    // [0, sent) now belong to the PMD; free the rest and forget them all.
    burst.free_from(sent);
    leg.tx_counters.tx_retries.add(u64::from(attempts));
    leg.tx_counters.tx_packets.add(sent as u64);
    leg.tx_counters.tx_bytes.add(bytes - unsent_bytes);
    wc.tx_packets.add(sent as u64);
    if unsent > 0 {
        leg.tx_counters
            .count_drop(DropReason::TxFull, unsent as u64);
        wc.dropped.add(unsent as u64);
    }
    n
}

fn run(shared: &WorkerShared) {
    // Short sleeps must stay short: the default 50 µs timer slack would stretch every one.
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack; no pointers.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0u64, 0u64, 0u64) };
    let mut burst = Burst::new();
    let mut seen = u64::MAX;
    let mut idle_streak = 0u32;
    let mut sleep_us = FIRST_SLEEP_US;
    let wc = &shared.counters;
    tracing::info!(lcore = shared.lcore.0, "worker started");
    // One TSC read per iteration: an iteration that carried packets adds its whole duration
    // (every leg's poll included) to busy_cycles; idle iterations and sleeps add nothing.
    let mut iteration_start = tsc();
    while !shared.stop.load(Ordering::Acquire) {
        let a = shared.assignment.load();
        if a.generation != seen {
            seen = a.generation;
            shared.seen.store(seen, Ordering::Release);
        }
        let mut got = 0usize;
        for leg in &a.legs {
            got += forward(leg, &mut burst, wc);
        }
        drop(a);
        wc.loops.add(1);
        let now = tsc();
        if got > 0 {
            wc.busy_cycles.add(now.wrapping_sub(iteration_start));
        }
        iteration_start = now;
        if got > 0 {
            idle_streak = 0;
            sleep_us = FIRST_SLEEP_US;
            continue;
        }
        wc.idle_loops.add(1);
        if let IdlePolicy::Adaptive { max_sleep_us } = shared.idle {
            idle_streak = idle_streak.saturating_add(1);
            if idle_streak >= SPIN_LOOPS {
                std::thread::sleep(Duration::from_micros(sleep_us));
                wc.sleeps.add(1);
                iteration_start = tsc();
                sleep_us = (sleep_us * 2).min(max_sleep_us);
            }
        }
    }
    tracing::info!(lcore = shared.lcore.0, "worker stopped");
}

/// Entry point handed to `rte_eal_remote_launch`; `arg` is an `Arc<WorkerShared>` turned into
/// a raw pointer by [`launch`]. Unwinding must not cross into C, so a panic is caught, logged
/// and turned into a non-zero return.
extern "C" fn worker_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` came from `Arc::into_raw` in `launch`, exactly once per launch.
    let shared = unsafe { Arc::from_raw(arg.cast_const().cast::<WorkerShared>()) };
    shared.running.store(true, Ordering::Release);
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&shared)));
    shared.running.store(false, Ordering::Release);
    match res {
        Ok(()) => 0,
        Err(_) => {
            tracing::error!(lcore = shared.lcore.0, "worker panicked and stopped");
            -1
        }
    }
}

/// Starts the worker loop on its lcore.
pub(crate) fn launch(shared: &Arc<WorkerShared>) -> Result<(), super::DpdkError> {
    let arg = Arc::into_raw(Arc::clone(shared))
        .cast_mut()
        .cast::<c_void>();
    let mark = super::log::mark();
    // Mark it running before it actually is, so an acknowledgement wait right after launch
    // does not mistake a not-yet-scheduled worker for a dead one.
    shared.running.store(true, Ordering::Release);
    // SAFETY: `worker_main` matches lcore_function_t and never unwinds; `arg` is a leaked Arc
    // that `worker_main` takes back; the lcore is a worker lcore in WAIT state (launched once).
    let rc = unsafe { ffi::rte_eal_remote_launch(Some(worker_main), arg, shared.lcore.0) };
    if rc != 0 {
        shared.running.store(false, Ordering::Release);
        // SAFETY: the launch failed, so `worker_main` will never take the Arc back: we do.
        drop(unsafe { Arc::from_raw(arg.cast_const().cast::<WorkerShared>()) });
        return Err(super::DpdkError::from_code(
            format!("launch worker on {}", shared.lcore),
            rc,
            mark,
        ));
    }
    Ok(())
}
