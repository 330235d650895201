//! The dataplane: a packet pool, port pairs and the workers that forward between them.
//!
//! A pair of ports with `queues` queue pairs each is `queues` lanes: lane `q` forwards rx queue
//! `q` of each port to tx queue `q` of the other. Lanes are spread over the worker lcores, the
//! least loaded first; both directions of a lane go to the same worker (the PMD puts both
//! directions of a flow on the same queue index: symmetric RSS or fanout hash), so a flow
//! always meets one worker and one connection table. Adding a pair publishes a new assignment
//! to its workers; removing one publishes assignments without it and waits until every one of
//! them has acknowledged before the ports are stopped and their devices removed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::worker::{
    Assignment, Clock, IdlePolicy, Leg, PipelineStats, WorkerPipeline, WorkerShared,
};
use super::{DpdkError, Eal, LcoreId, Link, Mempool, Port, PortStats, worker};
use crate::config::{DataplaneConfig, Idle, PortConfig};
use crate::conntrack::{self, ConntrackSnapshot, Timeouts, Timestamp};
use crate::pipeline::{self, Pipeline, PipelineSnapshot};
use crate::policy::ActivePolicy;
use crate::report::{self, RecordConsumer};
use crate::stats::{PortCounters, PortSnapshot, WorkerSnapshot};
use arc_swap::ArcSwap;

/// Records each worker's report ring holds.
const REPORT_RING: usize = 1 << 16;

/// How long a removal waits for a worker to let go of a port.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Identifies a port pair for removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairId(pub u64);

/// Counters and state of one port.
#[derive(Debug, Clone)]
pub struct PortReport {
    /// Port name.
    pub name: String,
    /// DPDK port id.
    pub port_id: u16,
    /// The pair it belongs to.
    pub pair: PairId,
    /// Worker lcore of each of its queues.
    pub lcores: Vec<LcoreId>,
    /// Whether flows are spread over its queues by symmetric RSS (else by the PMD's own way).
    pub rss: bool,
    /// Dataplane counters (rx, tx, drops by reason, tx retries), summed over its queues.
    pub counters: PortSnapshot,
    /// The PMD's counters (missed, errors, no-mbuf); `None` when the PMD would not say.
    pub pmd: Option<PortStats>,
    /// Link state.
    pub link: Link,
}

/// Counters and state of one worker.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Its lcore.
    pub lcore: LcoreId,
    /// Pairs it serves.
    pub pairs: usize,
    /// Whether its loop runs.
    pub running: bool,
    /// Loop counters.
    pub counters: WorkerSnapshot,
    /// Its pipeline's counters (frames, malformed by reason, DPI).
    pub pipeline: PipelineSnapshot,
    /// Its connection table's counters.
    pub conntrack: ConntrackSnapshot,
    /// IP fragments followed, held, dropped, overlapping.
    pub fragments: FragSnapshot,
    /// Records pushed into its report ring.
    pub reports_pushed: u64,
    /// Records lost because the ring was full.
    pub reports_lost: u64,
}

/// A copy of a worker's fragment counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FragSnapshot {
    /// Later fragments that followed their first fragment's verdict.
    pub followed: u64,
    /// Fragments held for a late first fragment.
    pub held: u64,
    /// Held fragments released.
    pub released: u64,
    /// Held fragments dropped.
    pub dropped: u64,
    /// Overlapping fragments (teardrop).
    pub overlaps: u64,
}

/// One pair and where it runs.
#[derive(Debug, Clone)]
pub struct PairReport {
    /// Pair id.
    pub id: PairId,
    /// Its two port names.
    pub ports: [String; 2],
    /// Worker serving each of its queues (lanes).
    pub lcores: Vec<LcoreId>,
}

/// Queue `q` of both ports of a pair: the counter blocks its worker writes, and that worker.
#[derive(Debug)]
struct Lane {
    counters: [Arc<PortCounters>; 2],
    worker: usize,
}

#[derive(Debug)]
struct PairSlot {
    id: PairId,
    ports: [Port; 2],
    /// One per queue, in queue order.
    lanes: Vec<Lane>,
}

impl PairSlot {
    /// Workers serving some lane of this pair, without repeats.
    fn workers(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.lanes.iter().map(|l| l.worker).collect();
        w.sort_unstable();
        w.dedup();
        w
    }
}

/// Settings that shape a [`Dataplane`] besides its ports.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Packet pool size.
    pub mbufs: u32,
    /// Per-lcore pool cache.
    pub mbuf_cache: u32,
    /// Rx descriptors per queue.
    pub rx_desc: u16,
    /// Tx descriptors per queue.
    pub tx_desc: u16,
    /// Idle policy.
    pub idle: Idle,
    /// Longest adaptive sleep.
    pub idle_sleep_us: u32,
    /// Connection-table capacity per worker.
    pub sessions: u32,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// Answer TCP segments dropped by policy with a RST.
    pub tcp_reset: bool,
}

impl Settings {
    /// The settings part of a validated config.
    pub fn from_config(cfg: &DataplaneConfig) -> Self {
        Self {
            mbufs: cfg.mbufs,
            mbuf_cache: cfg.mbuf_cache,
            rx_desc: cfg.rx_desc,
            tx_desc: cfg.tx_desc,
            idle: cfg.idle,
            idle_sleep_us: cfg.idle_sleep_us,
            sessions: cfg.sessions,
            timeouts: cfg.timeouts,
            tcp_reset: cfg.tcp_reset,
        }
    }
}

/// A running dataplane. Dropping it stops the workers, then the ports, then frees the pool;
/// the EAL is cleaned up when its last handle goes.
#[derive(Debug)]
pub struct Dataplane {
    // Field order is drop order: ports before the pool they draw from.
    pairs: Vec<PairSlot>,
    /// Ports whose worker never acknowledged their removal: kept (not freed) to stay safe.
    stranded: Vec<Port>,
    workers: Vec<Arc<WorkerShared>>,
    /// Each worker's pipeline until the worker is launched and takes it.
    pipelines: Vec<Option<WorkerPipeline>>,
    /// The consumer ends of the workers' report rings (drained by the aggregator).
    reports: Vec<RecordConsumer>,
    /// The policy all workers enforce.
    policy: Arc<ArcSwap<ActivePolicy>>,
    clock: Clock,
    pool: Arc<Mempool>,
    settings: Settings,
    next_pair: u64,
    generation: u64,
    launched: bool,
    eal: Eal,
}

impl Dataplane {
    /// A dataplane with no ports yet: the packet pool and one worker per worker lcore, not
    /// launched.
    pub fn new(eal: &Eal, settings: Settings) -> Result<Self, DpdkError> {
        if eal.worker_lcores().is_empty() {
            return Err(DpdkError {
                op: "create dataplane".into(),
                code: libc::EINVAL,
                reason: "the EAL has no worker lcore".into(),
                hint: Some(
                    "give `lcores` at least two lcores: the first serves control, the others run workers",
                ),
                log: Vec::new(),
            });
        }
        let pool = Arc::new(Mempool::new(
            eal,
            "palisade_pkts",
            settings.mbufs,
            settings.mbuf_cache,
        )?);
        let idle = match settings.idle {
            Idle::Busy => IdlePolicy::Busy,
            Idle::Adaptive => IdlePolicy::Adaptive {
                max_sleep_us: u64::from(settings.idle_sleep_us.max(1)),
            },
        };
        let clock = Clock::new(eal.tsc_hz());
        let mut ct = conntrack::Config::with_capacity(settings.sessions as usize);
        ct.timeouts = settings.timeouts;
        let mut pcfg = pipeline::Config::with_capacity(settings.sessions as usize);
        pcfg.conntrack = ct;
        pcfg.tcp_reset = settings.tcp_reset;
        let empty = ActivePolicy::empty().map_err(|e| DpdkError {
            op: "compile the empty policy".into(),
            code: libc::EINVAL,
            reason: e.to_string(),
            hint: None,
            log: Vec::new(),
        })?;
        let policy = Arc::new(ArcSwap::from_pointee(empty));
        let mut reports = Vec::new();
        let mut workers = Vec::new();
        let mut pipelines = Vec::new();
        for &l in eal.worker_lcores() {
            let (producer, consumer) = report::ring(REPORT_RING).map_err(|e| DpdkError {
                op: format!("create the report ring of {l}"),
                code: libc::ENOMEM,
                reason: e.to_string(),
                hint: None,
                log: Vec::new(),
            })?;
            reports.push(consumer);
            let p: WorkerPipeline = Pipeline::new(pcfg, Some(producer)).map_err(|e| DpdkError {
                op: format!("create the pipeline of {l}"),
                code: libc::ENOMEM,
                reason: e.to_string(),
                hint: Some("lower `sessions`"),
                log: Vec::new(),
            })?;
            workers.push(Arc::new(WorkerShared::new(
                l,
                idle,
                clock,
                PipelineStats::of(&p),
                Arc::clone(&policy),
                Arc::clone(&pool),
            )));
            pipelines.push(Some(p));
        }
        Ok(Self {
            pairs: Vec::new(),
            stranded: Vec::new(),
            workers,
            pipelines,
            reports,
            policy,
            clock,
            pool,
            settings,
            next_pair: 1,
            generation: 0,
            launched: false,
            eal: eal.clone(),
        })
    }

    /// A launched dataplane with every port and pair of `cfg` attached and started.
    pub fn from_config(eal: &Eal, cfg: &DataplaneConfig) -> Result<Self, DpdkError> {
        let mut dp = Self::new(eal, Settings::from_config(cfg))?;
        for [a, b] in &cfg.pairs {
            dp.attach_pair(&cfg.ports[*a], &cfg.ports[*b])?;
        }
        dp.launch()?;
        Ok(dp)
    }

    /// Starts every worker loop (once).
    pub fn launch(&mut self) -> Result<(), DpdkError> {
        if self.launched {
            return Ok(());
        }
        for (w, p) in self.workers.iter().zip(self.pipelines.iter_mut()) {
            if let Some(p) = p.take() {
                worker::launch(w, p)?;
            }
        }
        self.launched = true;
        Ok(())
    }

    /// The EAL handle.
    pub fn eal(&self) -> &Eal {
        &self.eal
    }

    /// The packet pool every port receives into.
    pub fn pool(&self) -> &Arc<Mempool> {
        &self.pool
    }

    /// Attaches the two ports a config describes and forwards between them.
    pub fn attach_pair(&mut self, a: &PortConfig, b: &PortConfig) -> Result<PairId, DpdkError> {
        let pa = Port::attach(&self.eal, a)?;
        let pb = Port::attach(&self.eal, b)?;
        self.add_pair(pa, pb)
    }

    /// Configures and starts two ports and forwards between them, each lane (queue) on the
    /// least loaded worker. On error both ports are released again.
    pub fn add_pair(&mut self, mut a: Port, mut b: Port) -> Result<PairId, DpdkError> {
        if a.queues() != b.queues() {
            return Err(DpdkError {
                op: format!("pair {} with {}", a.name(), b.name()),
                code: libc::EINVAL,
                reason: format!(
                    "{} has {} queues and {} has {}; queue i of one forwards to queue i of the other",
                    a.name(),
                    a.queues(),
                    b.name(),
                    b.queues()
                ),
                hint: Some("give both ports of a pair the same `queues`"),
                log: Vec::new(),
            });
        }
        for p in [&mut a, &mut b] {
            p.configure(
                Arc::clone(&self.pool),
                self.settings.rx_desc,
                self.settings.tx_desc,
            )?;
        }
        a.start()?;
        b.start()?;
        let mut load: Vec<usize> = (0..self.workers.len())
            .map(|w| {
                self.pairs
                    .iter()
                    .flat_map(|p| &p.lanes)
                    .filter(|l| l.worker == w)
                    .count()
            })
            .collect();
        let lanes: Vec<Lane> = (0..a.queues())
            .map(|_| {
                let worker = (0..load.len()).min_by_key(|&w| load[w]).unwrap_or(0);
                if let Some(n) = load.get_mut(worker) {
                    *n += 1;
                }
                Lane {
                    counters: [Arc::default(), Arc::default()],
                    worker,
                }
            })
            .collect();
        let id = PairId(self.next_pair);
        self.next_pair += 1;
        let lcores: Vec<u32> = lanes
            .iter()
            .map(|l| self.workers[l.worker].lcore.0)
            .collect();
        tracing::info!(
            pair = id.0,
            a = a.name(),
            b = b.name(),
            queues = a.queues(),
            rss = a.rss() && b.rss(),
            lcores = ?lcores,
            "pair added"
        );
        self.pairs.push(PairSlot {
            id,
            ports: [a, b],
            lanes,
        });
        if let Some(slot) = self.pairs.last() {
            for w in slot.workers() {
                self.publish(w);
            }
        }
        Ok(id)
    }

    /// Stops forwarding between a pair's ports, waits until its workers have let go of them,
    /// then stops them and removes their devices.
    pub fn remove_pair(&mut self, id: PairId) -> Result<(), DpdkError> {
        let Some(idx) = self.pairs.iter().position(|p| p.id == id) else {
            return Err(DpdkError {
                op: format!("remove pair {}", id.0),
                code: libc::ENOENT,
                reason: "no such pair".into(),
                hint: None,
                log: Vec::new(),
            });
        };
        let slot = self.pairs.remove(idx);
        let published: Vec<(usize, u64)> = slot
            .workers()
            .into_iter()
            .map(|w| (w, self.publish(w)))
            .collect();
        for (w, generation) in published {
            if !self.wait_ack(w, generation, ACK_TIMEOUT) {
                let lcore = self.workers[w].lcore;
                tracing::error!(%lcore, pair = id.0, "worker did not let go of the pair; keeping its ports");
                self.stranded.extend(slot.ports);
                return Err(DpdkError {
                    op: format!("remove pair {}", id.0),
                    code: libc::ETIMEDOUT,
                    reason: format!("{lcore} did not acknowledge within {ACK_TIMEOUT:?}"),
                    hint: None,
                    log: Vec::new(),
                });
            }
        }
        tracing::info!(pair = id.0, "pair removed");
        drop(slot); // stops the ports and removes the devices
        Ok(())
    }

    /// Publishes worker `w`'s legs (both directions of each of its lanes) under a new
    /// generation and returns it.
    fn publish(&mut self, w: usize) -> u64 {
        self.generation += 1;
        let mut legs = Vec::new();
        for p in &self.pairs {
            let [a, b] = &p.ports;
            for (q, lane) in p.lanes.iter().enumerate() {
                if lane.worker != w {
                    continue;
                }
                let queue = u16::try_from(q).unwrap_or(u16::MAX);
                let [ca, cb] = &lane.counters;
                legs.push(Leg {
                    rx: a.id(),
                    tx: b.id(),
                    queue,
                    rx_counters: Arc::clone(ca),
                    tx_counters: Arc::clone(cb),
                });
                legs.push(Leg {
                    rx: b.id(),
                    tx: a.id(),
                    queue,
                    rx_counters: Arc::clone(cb),
                    tx_counters: Arc::clone(ca),
                });
            }
        }
        self.workers[w].assignment.store(Arc::new(Assignment {
            generation: self.generation,
            legs,
        }));
        self.generation
    }

    /// Waits until worker `w` runs `generation` (or does not run at all).
    fn wait_ack(&self, w: usize, generation: u64, timeout: Duration) -> bool {
        let shared = &self.workers[w];
        let deadline = Instant::now() + timeout;
        loop {
            if !self.launched
                || !shared.running.load(Ordering::Acquire)
                || shared.seen.load(Ordering::Acquire) >= generation
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// Now, on the workers' clock (the timestamps in their records).
    pub fn now(&self) -> Timestamp {
        self.clock.now(worker::tsc())
    }

    /// The policy the workers enforce now.
    pub fn policy(&self) -> Arc<ActivePolicy> {
        self.policy.load_full()
    }

    /// Publishes `policy` to every worker and waits until each runs it (or does not run at
    /// all); returns how long that took: from just before the publication until the last
    /// worker loaded it, by the workers' own TSC readings (so a publisher descheduled while
    /// it waits, e.g. beside a busy generator on a 2-core box, does not count), or the
    /// publisher's wait when no worker runs. Its epoch must be higher than the current one.
    ///
    /// The previous snapshot is freed here, on the calling (control) thread, after every
    /// worker has moved on: were a worker's guard the last reference, that worker would free
    /// the whole old table between two bursts (milliseconds for 100k rules, packets lost).
    pub fn publish_policy(&self, policy: ActivePolicy) -> Result<Duration, DpdkError> {
        let epoch = policy.epoch;
        let start = Instant::now();
        let start_tsc = worker::tsc();
        let previous = self.policy.swap(Arc::new(policy));
        let result = self.wait_policy_ack(epoch, start);
        drop(previous);
        let waited = result?;
        let last = self
            .workers
            .iter()
            .filter(|w| self.launched && w.running.load(Ordering::Acquire))
            .filter(|w| w.policy_seen.load(Ordering::Acquire) >= epoch)
            .map(|w| (w.policy_seen_tsc.load(Ordering::Relaxed), w.clock))
            .max_by_key(|(t, _)| *t);
        Ok(match last {
            Some((t, clock)) if t >= start_tsc => Duration::from_nanos(
                clock
                    .now(t)
                    .as_nanos()
                    .saturating_sub(clock.now(start_tsc).as_nanos()),
            ),
            // Loaded before `start_tsc` was read: it took no measurable time.
            Some(_) => Duration::ZERO,
            None => waited,
        })
    }

    /// Spins until every running worker has loaded epoch `epoch`, up to `ACK_TIMEOUT`.
    fn wait_policy_ack(&self, epoch: u64, start: Instant) -> Result<Duration, DpdkError> {
        let deadline = start + ACK_TIMEOUT;
        for w in &self.workers {
            loop {
                if !self.launched
                    || !w.running.load(Ordering::Acquire)
                    || w.policy_seen.load(Ordering::Acquire) >= epoch
                {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(DpdkError {
                        op: format!("publish policy epoch {epoch}"),
                        code: libc::ETIMEDOUT,
                        reason: format!("{} did not acknowledge within {ACK_TIMEOUT:?}", w.lcore),
                        hint: None,
                        log: Vec::new(),
                    });
                }
                std::hint::spin_loop();
            }
        }
        Ok(start.elapsed())
    }

    /// The consumer ends of the workers' report rings, for the aggregator.
    pub fn reports(&mut self) -> &mut [RecordConsumer] {
        &mut self.reports
    }

    /// Pairs and their workers.
    pub fn pairs(&self) -> Vec<PairReport> {
        self.pairs
            .iter()
            .map(|p| PairReport {
                id: p.id,
                ports: [p.ports[0].name().to_owned(), p.ports[1].name().to_owned()],
                lcores: self.lane_lcores(p),
            })
            .collect()
    }

    fn lane_lcores(&self, p: &PairSlot) -> Vec<LcoreId> {
        p.lanes
            .iter()
            .map(|l| self.workers[l.worker].lcore)
            .collect()
    }

    /// Every port's counters (summed over its queues) and state.
    pub fn port_reports(&self) -> Vec<PortReport> {
        let mut out = Vec::new();
        for p in &self.pairs {
            let lcores = self.lane_lcores(p);
            for (i, port) in p.ports.iter().enumerate() {
                let counters = p
                    .lanes
                    .iter()
                    .filter_map(|l| l.counters.get(i))
                    .map(|c| c.snapshot())
                    .fold(PortSnapshot::default(), |acc, s| acc.plus(&s));
                out.push(PortReport {
                    name: port.name().to_owned(),
                    port_id: port.id().0,
                    pair: p.id,
                    lcores: lcores.clone(),
                    rss: port.rss(),
                    counters,
                    pmd: port.stats().ok(),
                    link: port.link(),
                });
            }
        }
        out
    }

    /// Counters of the port called `name`.
    pub fn port_report(&self, name: &str) -> Option<PortReport> {
        self.port_reports().into_iter().find(|r| r.name == name)
    }

    /// Every worker's counters and state.
    pub fn worker_reports(&self) -> Vec<WorkerReport> {
        self.workers
            .iter()
            .enumerate()
            .map(|(i, w)| WorkerReport {
                lcore: w.lcore,
                pairs: self
                    .pairs
                    .iter()
                    .filter(|p| p.lanes.iter().any(|l| l.worker == i))
                    .count(),
                running: w.running.load(Ordering::Acquire),
                counters: w.counters.snapshot(),
                pipeline: w.stats.pipeline.snapshot(),
                conntrack: w.stats.conntrack.snapshot(),
                fragments: FragSnapshot {
                    followed: w.stats.frag.followed.get(),
                    held: w.stats.frag.held.get(),
                    released: w.stats.frag.released.get(),
                    dropped: w.stats.frag.dropped.get(),
                    overlaps: w.stats.frag.overlaps.get(),
                },
                reports_pushed: w.stats.ring.as_ref().map_or(0, |r| r.pushed.get()),
                reports_lost: w.stats.ring.as_ref().map_or(0, |r| r.overflow.get()),
            })
            .collect()
    }

    /// Stops every worker loop and waits for them to return.
    fn stop_workers(&mut self) {
        for w in &self.workers {
            w.stop.store(true, Ordering::Release);
        }
        if self.launched {
            // SAFETY: waits for every worker lcore to return to WAIT; called from the main
            // lcore, and the loops return promptly once `stop` is set.
            unsafe { ffi::rte_eal_mp_wait_lcore() };
            self.launched = false;
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop_workers();
        // Now no worker polls anything: ports may stop (field drop order does the rest).
        self.pairs.clear();
        self.stranded.clear();
    }
}
