//! The poll-mode worker loop that runs on each worker lcore.
//!
//! A worker owns a set of forwarding legs (rx port -> tx port, one queue index on both; each
//! queue of a port pair gives two legs and both go to the same worker, and the PMD puts both
//! directions of a flow on the same queue index, so one flow always meets one worker). It
//! reads its assignment through an `ArcSwap` once per loop iteration and publishes the
//! generation it loaded; the control thread waits for that acknowledgement before it stops a
//! port it removed, so a port is never stopped under a worker that still polls it.
//!
//! Every received packet goes through the worker's own [`Pipeline`] (parse, fragments,
//! connection tracking, application identification): forwarded packets leave by the leg's tx
//! port, dropped ones are freed and counted by reason, later IP fragments whose first fragment
//! has not arrived are held by the pipeline and sent (or freed) when their fate is known.
//!
//! Per packet the loop does no allocation, takes no lock and makes no syscall: bursts of
//! [`BURST`] pointers live on the stack, counters are single-writer stores, the pipeline's
//! tables are preallocated.

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::mbuf::{BURST, Burst};
use super::{LcoreId, PortId};
use super::{Mbuf, Mempool};
use crate::conntrack::{ConntrackCounters, Timestamp};
use crate::pipeline::{Drop as PipelineDrop, Pipeline, PipelineCounters, Prepared, Step, Verdict};
use crate::policy::ActivePolicy;
use crate::report::RingCounters;
use crate::stats::{DropReason, PortCounters, WorkerCounters};
use crate::wire::frag::FragCounters;

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
    /// Queue index on both ports: this worker is the only one polling rx queue `queue` of `rx`
    /// and sending on tx queue `queue` of either port.
    pub(crate) queue: u16,
    pub(crate) rx_counters: Arc<PortCounters>,
    pub(crate) tx_counters: Arc<PortCounters>,
}

/// Everything a worker polls, with the generation it was published under.
#[derive(Debug, Default)]
pub(crate) struct Assignment {
    pub(crate) generation: u64,
    pub(crate) legs: Vec<Leg>,
}

/// A packet the pipeline holds (a later IP fragment waiting for its first fragment): owns
/// its mbuf, which is freed if the packet is dropped, and remembers its tx port.
#[derive(Debug)]
pub(crate) struct Held {
    mbuf: NonNull<ffi::rte_mbuf>,
    tx: PortId,
}

impl Held {
    /// Gives the mbuf back without freeing it.
    fn into_raw(self) -> *mut ffi::rte_mbuf {
        let m = self.mbuf.as_ptr();
        std::mem::forget(self);
        m
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: a Held owns its mbuf's one reference (it came from rx and was never sent).
        unsafe { ffi::rte_pktmbuf_free(self.mbuf.as_ptr()) };
    }
}

/// The pipeline a worker runs; its handles are held mbufs.
pub(crate) type WorkerPipeline = Pipeline<Held>;

/// Nanoseconds from TSC readings: `(tsc * mult) >> 32`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    mult: u128,
}

impl Clock {
    pub(crate) fn new(tsc_hz: u64) -> Self {
        Self {
            mult: (1_000_000_000u128 << 32) / u128::from(tsc_hz.max(1)),
        }
    }

    #[inline]
    pub(crate) fn now(self, tsc: u64) -> Timestamp {
        Timestamp::from_nanos(
            u64::try_from((u128::from(tsc) * self.mult) >> 32).unwrap_or(u64::MAX),
        )
    }
}

/// Counter blocks of a worker's pipeline, readable by the stats thread.
#[derive(Debug, Clone)]
pub(crate) struct PipelineStats {
    pub(crate) pipeline: Arc<PipelineCounters>,
    pub(crate) conntrack: Arc<ConntrackCounters>,
    pub(crate) frag: Arc<FragCounters>,
    pub(crate) ring: Option<Arc<RingCounters>>,
}

impl PipelineStats {
    pub(crate) fn of(p: &WorkerPipeline) -> Self {
        Self {
            pipeline: Arc::clone(&p.counters),
            conntrack: Arc::clone(p.sessions().counters()),
            frag: Arc::clone(p.frag_counters()),
            ring: p.ring_counters().cloned(),
        }
    }
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
    pub(crate) clock: Clock,
    pub(crate) counters: WorkerCounters,
    pub(crate) stats: PipelineStats,
    /// The policy every worker enforces (one for all), loaded once per loop iteration.
    pub(crate) policy: Arc<ArcSwap<ActivePolicy>>,
    /// Epoch of the policy the worker last loaded.
    pub(crate) policy_seen: AtomicU64,
    /// TSC when the worker first loaded that epoch (written before `policy_seen`): how long a
    /// publication took to reach it, independent of when the publisher looks.
    pub(crate) policy_seen_tsc: AtomicU64,
    /// Pool for the RSTs the worker sends.
    pub(crate) pool: Arc<Mempool>,
}

impl WorkerShared {
    pub(crate) fn new(
        lcore: LcoreId,
        idle: IdlePolicy,
        clock: Clock,
        stats: PipelineStats,
        policy: Arc<ArcSwap<ActivePolicy>>,
        pool: Arc<Mempool>,
    ) -> Self {
        Self {
            lcore,
            assignment: ArcSwap::from_pointee(Assignment::default()),
            seen: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            running: AtomicBool::new(false),
            idle,
            clock,
            counters: WorkerCounters::default(),
            stats,
            policy,
            policy_seen: AtomicU64::new(0),
            policy_seen_tsc: AtomicU64::new(0),
            pool,
        }
    }
}

/// What a launched worker owns: the shared state and its pipeline.
struct WorkerCtx {
    shared: Arc<WorkerShared>,
    pipeline: WorkerPipeline,
}

/// The CPU's time-stamp counter (what DPDK's `rte_rdtsc` reads); read once per loop
/// iteration (it costs tens of cycles on a VM).
#[inline]
pub(crate) fn tsc() -> u64 {
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

/// Per-iteration scratch of a worker, allocated once.
struct Scratch {
    burst: Burst,
    /// Held fragments released by a late first fragment, to send after the burst.
    released: Vec<(Held, Verdict)>,
}

/// Receives one burst on `leg.rx`, runs every packet through the pipeline, sends what it
/// forwards out of `leg.tx` and frees what it drops; returns packets received.
#[inline]
fn forward(
    leg: &Leg,
    pipeline: &mut WorkerPipeline,
    now: Timestamp,
    policy: &ActivePolicy,
    pool: &Mempool,
    sc: &mut Scratch,
    wc: &WorkerCounters,
) -> usize {
    let burst = &mut sc.burst;
    // SAFETY: the port is started and stays so while it is in our assignment (the control
    // thread waits for our acknowledgement before stopping it); `ptrs` has room for BURST.
    let n = usize::from(unsafe {
        ffi::rte_eth_rx_burst(leg.rx.0, leg.queue, burst.ptrs.as_mut_ptr(), BURST as u16)
    });
    if n == 0 {
        return 0;
    }
    burst.len = n;
    leg.rx_counters.rx_packets.add(n as u64);
    leg.rx_counters.rx_bytes.add(burst.bytes(0..n));
    wc.rx_packets.add(n as u64);

    // Software pipelining over the burst: prefetch every packet's index bucket, then every
    // packet's session, then judge them, so the burst's cache misses overlap (with 10k flows in
    // a 1M-session table each lookup otherwise waits for two misses in turn).
    // Each frame is parsed once, here.
    let mut prepared = [None::<Prepared<'_>>; BURST];
    for (slot, &m) in prepared.iter_mut().zip(&burst.ptrs[..n]) {
        *slot = Some(pipeline.prepare(frame_data(m)));
    }
    for p in prepared[..n].iter().flatten() {
        pipeline.prefetch_session(p);
    }
    // Judge every packet; forwarded ones are compacted to the front of the burst.
    let mut keep = 0usize;
    let mut dropped: [*mut ffi::rte_mbuf; BURST] = [std::ptr::null_mut(); BURST];
    let mut ndropped = 0usize;
    let released = &mut sc.released;
    for (i, prep) in prepared.iter().enumerate().take(n) {
        let m = burst.ptrs[i];
        let Some(mbuf) = NonNull::new(m) else {
            continue;
        };
        let data = frame_data(m);
        let held = Held { mbuf, tx: leg.tx };
        let step = match prep {
            Some(p) => pipeline.process_prepared(
                data,
                p,
                now,
                policy,
                held,
                |h, v| released.push((h, v)),
                drop,
            ),
            None => pipeline.process(data, now, policy, held, |h, v| released.push((h, v)), drop),
        };
        match step {
            Step::Done(Verdict::Forward, h) => {
                burst.ptrs[keep] = h.into_raw();
                keep += 1;
            }
            Step::Done(v @ (Verdict::Drop(why) | Verdict::Reject(why)), h) => {
                if matches!(v, Verdict::Reject(_)) {
                    send_reset(leg, data, pool, wc);
                }
                dropped[ndropped] = h.into_raw();
                ndropped += 1;
                leg.rx_counters.count_drop(drop_reason(why), 1);
            }
            Step::Held => {}
        }
    }
    // Everything in [0, n) is now either kept in [0, keep), in `dropped`, or held.
    burst.len = keep;
    if ndropped > 0 {
        // SAFETY: `dropped[..ndropped]` are valid mbufs we own and no longer reference.
        unsafe { ffi::rte_pktmbuf_free_bulk(dropped.as_mut_ptr(), ndropped as u32) };
        wc.dropped.add(ndropped as u64);
    }
    if keep > 0 {
        transmit(leg, burst, wc);
    }
    n
}

/// The frame an mbuf of the current burst holds (empty for a null pointer).
#[inline]
fn frame_data<'a>(m: *mut ffi::rte_mbuf) -> &'a [u8] {
    if m.is_null() {
        return &[];
    }
    // The slice is read-only and used only within `forward`, before the mbuf is sent or freed;
    // the pipeline keeps no reference to it (only the `Held` handle).
    // SAFETY: `m` is a valid single-segment mbuf of the burst: `data_len` bytes at
    // `buf_addr + data_off`, alive while the slice is used.
    unsafe {
        let h = &*m;
        std::slice::from_raw_parts(
            h.buf_addr.cast::<u8>().add(usize::from(h.data_off)),
            usize::from(h.data_len),
        )
    }
}

fn drop_reason(why: PipelineDrop) -> DropReason {
    match why {
        PipelineDrop::Malformed(_) => DropReason::Malformed,
        PipelineDrop::Fragment => DropReason::Fragment,
        PipelineDrop::Policy => DropReason::Policy,
        PipelineDrop::Threat(_) => DropReason::Threat,
    }
}

/// Answers the dropped frame `data` (received on `leg.rx`) with a TCP RST back out of the same
/// port (a rare path: one packet, one allocation from the pool).
fn send_reset(leg: &Leg, data: &[u8], pool: &Mempool, wc: &WorkerCounters) {
    let Ok(pkt) = crate::wire::parse(data) else {
        return;
    };
    let Some(mut m) = Mbuf::alloc(pool) else {
        return;
    };
    let Some(buf) = m.append(crate::wire::rst::MAX_RST_FRAME) else {
        return;
    };
    let Some(len) = crate::wire::rst::build_rst(&pkt, buf) else {
        return;
    };
    m.truncate(len);
    let mut raw = m.into_raw().as_ptr();
    // SAFETY: `raw` is a valid mbuf we own; the rx port is started and this worker is the
    // only one transmitting on its queue `leg.queue` (both legs of a lane run here); the PMD
    // takes the mbuf if it reports it sent.
    let sent = unsafe { ffi::rte_eth_tx_burst(leg.rx.0, leg.queue, &mut raw, 1) };
    if sent == 1 {
        leg.rx_counters.tx_packets.add(1);
        leg.rx_counters.tx_bytes.add(len as u64);
        wc.tx_packets.add(1);
    } else {
        // SAFETY: not sent, so still ours; freed once.
        unsafe { ffi::rte_pktmbuf_free(raw) };
        leg.rx_counters.count_drop(DropReason::TxFull, 1);
    }
}

/// Sends `burst` out of `leg.tx`, retrying a partial send, then freeing and counting the rest.
#[inline]
fn transmit(leg: &Leg, burst: &mut Burst, wc: &WorkerCounters) {
    let n = burst.len;
    let bytes = burst.bytes(0..n);
    let mut sent = 0usize;
    let mut attempts = 0u32;
    loop {
        let rest = u16::try_from(n - sent).unwrap_or(0);
        // SAFETY: [sent, n) are valid mbufs this burst owns; the PMD takes ownership of the
        // ones it reports as sent. The tx port is started (see `forward`).
        let done = unsafe {
            ffi::rte_eth_tx_burst(leg.tx.0, leg.queue, burst.ptrs[sent..].as_mut_ptr(), rest)
        };
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
}

/// Sends fragments released by a late first fragment, one by one (a rare path), to their
/// port if it is still one of ours; otherwise, or when dropped, they are freed.
fn send_released(legs: &[Leg], released: &mut Vec<(Held, Verdict)>, wc: &WorkerCounters) {
    for (h, v) in released.drain(..) {
        let Some(leg) = legs.iter().find(|l| l.tx == h.tx) else {
            wc.dropped.add(1);
            continue; // its port was removed: `h` frees the mbuf
        };
        match v {
            Verdict::Forward => {
                let mut m = h.into_raw();
                // SAFETY: `m` is a valid mbuf we own; the tx port is started (it is in our
                // current assignment); the PMD takes it if it reports it sent.
                let sent = unsafe { ffi::rte_eth_tx_burst(leg.tx.0, leg.queue, &mut m, 1) };
                if sent == 1 {
                    leg.tx_counters.tx_packets.add(1);
                    wc.tx_packets.add(1);
                } else {
                    // SAFETY: not sent, so still ours; freed once.
                    unsafe { ffi::rte_pktmbuf_free(m) };
                    leg.tx_counters.count_drop(DropReason::TxFull, 1);
                    wc.dropped.add(1);
                }
            }
            Verdict::Drop(why) | Verdict::Reject(why) => {
                leg.tx_counters.count_drop(drop_reason(why), 1);
                wc.dropped.add(1);
            }
        }
    }
}

fn run(shared: &WorkerShared, pipeline: &mut WorkerPipeline) {
    // Short sleeps must stay short: the default 50 µs timer slack would stretch every one.
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack; no pointers.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0u64, 0u64, 0u64) };
    let mut sc = Scratch {
        burst: Burst::new(),
        released: Vec::with_capacity(4 * crate::wire::frag::MAX_HELD),
    };
    let mut seen = u64::MAX;
    let mut policy_seen = 0u64;
    let mut idle_streak = 0u32;
    let mut sleep_us = FIRST_SLEEP_US;
    let wc = &shared.counters;
    let clock = shared.clock;
    // Expiry runs about every millisecond of TSC time (its cost is per call, not per packet).
    let expire_every = (1_000_000u128 * 4_294_967_296 / shared.clock.mult.max(1)) as u64;
    tracing::info!(lcore = shared.lcore.0, "worker started");
    // One TSC read per iteration: it is the pipeline's clock, and an iteration that carried
    // packets adds its whole duration (every leg's poll included) to busy_cycles.
    let mut iteration_start = tsc();
    let mut last_expiry = iteration_start;
    while !shared.stop.load(Ordering::Acquire) {
        let a = shared.assignment.load();
        if a.generation != seen {
            seen = a.generation;
            shared.seen.store(seen, Ordering::Release);
        }
        let policy = shared.policy.load();
        if policy.epoch != policy_seen {
            policy_seen = policy.epoch;
            shared.policy_seen_tsc.store(tsc(), Ordering::Relaxed);
            shared.policy_seen.store(policy_seen, Ordering::Release);
        }
        let now = clock.now(iteration_start);
        let mut got = 0usize;
        for leg in &a.legs {
            got += forward(leg, pipeline, now, &policy, &shared.pool, &mut sc, wc);
        }
        drop(policy);
        if !sc.released.is_empty() {
            send_released(&a.legs, &mut sc.released, wc);
        }
        drop(a);
        wc.loops.add(1);
        let t = tsc();
        if got > 0 {
            wc.busy_cycles.add(t.wrapping_sub(iteration_start));
        }
        iteration_start = t;
        if t.wrapping_sub(last_expiry) > expire_every {
            pipeline.expire(clock.now(t), drop);
            last_expiry = t;
        }
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

/// Entry point handed to `rte_eal_remote_launch`; `arg` is a `Box<WorkerCtx>` turned into a
/// raw pointer by [`launch`]. Unwinding must not cross into C, so a panic is caught, logged
/// and turned into a non-zero return.
extern "C" fn worker_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` came from `Box::into_raw` in `launch`, exactly once per launch, and
    // nothing else uses it after the launch succeeded.
    let ctx = unsafe { Box::from_raw(arg.cast::<WorkerCtx>()) };
    let WorkerCtx {
        shared,
        mut pipeline,
    } = *ctx;
    shared.running.store(true, Ordering::Release);
    let res =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&shared, &mut pipeline)));
    // Held fragments still in the pipeline are freed here, before the pool goes away (the
    // dataplane waits for every worker to return before it frees its ports and pool).
    drop(pipeline);
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
pub(crate) fn launch(
    shared: &Arc<WorkerShared>,
    pipeline: WorkerPipeline,
) -> Result<(), super::DpdkError> {
    let ctx = Box::new(WorkerCtx {
        shared: Arc::clone(shared),
        pipeline,
    });
    let arg = Box::into_raw(ctx).cast::<c_void>();
    let mark = super::log::mark();
    // Mark it running before it actually is, so an acknowledgement wait right after launch
    // does not mistake a not-yet-scheduled worker for a dead one.
    shared.running.store(true, Ordering::Release);
    // SAFETY: `worker_main` matches lcore_function_t and never unwinds; `arg` is a leaked Box
    // that `worker_main` takes back; the lcore is a worker lcore in WAIT state (launched once).
    // The pipeline inside moves to the worker thread and is used by it alone.
    let rc = unsafe { ffi::rte_eal_remote_launch(Some(worker_main), arg, shared.lcore.0) };
    if rc != 0 {
        shared.running.store(false, Ordering::Release);
        // SAFETY: the launch failed, so `worker_main` will never take the Box back: we do.
        drop(unsafe { Box::from_raw(arg.cast::<WorkerCtx>()) });
        return Err(super::DpdkError::from_code(
            format!("launch worker on {}", shared.lcore),
            rc,
            mark,
        ));
    }
    Ok(())
}
