//! The aggregator: worker records in, rate-limited [`Event`]s out.
//!
//! Runs on one non-worker thread, owns every worker's [`RecordConsumer`] and is driven by the
//! caller with an injected clock ([`Now`]); sans-IO and deterministic: the same records and
//! clock readings give the same events in the same order.
//!
//! # Connections
//!
//! [`ConnectionDelta`]s are summed per key (client IP, server IP, server port, protocol,
//! application): sessions, packets, bytes, first and last seen. The verdict, rule and mode of
//! an aggregate are those of its latest record. An aggregate with new traffic becomes
//! *pending*; [`Aggregator::flush`] emits a pending aggregate as one [`Event::Connection`]
//!
//! - at once when the key has never been emitted (a new conversation shows up in the next
//!   flush);
//! - otherwise once [`Config::interval`] has passed since the key's previous event;
//! - in either case only while fewer than [`Config::max_connection_events`] connection events
//!   went out in the current one-second window. An aggregate held back by that cap stays
//!   pending (nothing is lost: its counts keep adding up) and is counted in
//!   [`AggregatorStats::connections_deferred`]; the ones waiting longest go first.
//!
//! Each event's counts are those since the key's previous event, and its first/last seen
//! span the records it covers: consumers add events up.
//!
//! Memory is bounded by [`Config::max_aggregates`]: a new key beyond it evicts the least
//! recently updated aggregate (counted in [`AggregatorStats::evicted`], and in
//! [`AggregatorStats::evicted_unreported`] when it still held counts no event carried). An
//! aggregate neither updated for [`Config::idle_timeout`] nor pending is forgotten (counted
//! `expired`).
//!
//! # Violations and threats
//!
//! Passed through as they come, at most one event per identical key per
//! [`Config::alert_interval`] (violation key: flow without the client port, rule, verdict;
//! threat key: kind, addresses, server port, protocol, verdict), and at most
//! [`Config::max_alerts`] per one-second window overall; the rest are counted
//! (`*_suppressed`, `alerts_capped`) and dropped.
//!
//! # Overflow
//!
//! [`Aggregator::poll`] reads each ring's overflow count before draining it and emits one
//! [`Event::Overflow`] with the records lost since the previous one, first in its output.
//!
//! # Endpoints
//!
//! Addresses become [`Endpoint`]s through the caller's [`Resolve`] when an event is emitted
//! (so a workload that appears later is named in later events); this module knows nothing of
//! the policy compiler.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::conntrack::Timestamp;
use crate::dpi::App;
use crate::policy::Mode;

use super::event::{ConnectionRecord, Endpoint, Event, Threat, ThreatKind, Verdict, Violation};
use super::record::{ConnectionDelta, ThreatRecord, ViolationRecord, WorkerRecord};
use super::ring::RecordConsumer;

/// Names an address for reports: `(workload id, group)`.
pub trait Resolve {
    /// The workload owning `ip` (if any) and the group it resolves to (`external`, `nodes`,
    /// an address group, or the workload's group).
    fn describe(&self, ip: IpAddr) -> (Option<String>, String);
}

impl<F: Fn(IpAddr) -> (Option<String>, String)> Resolve for F {
    fn describe(&self, ip: IpAddr) -> (Option<String>, String) {
        self(ip)
    }
}

/// The injected clock: a reading of the workers' monotonic clock and the wall-clock time at
/// that same moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// The workers' monotonic clock (the records' timestamps are on it).
    pub mono: Timestamp,
    /// Milliseconds since the Unix epoch at `mono`.
    pub unix_ms: u64,
}

impl Now {
    /// `t` (on the monotonic clock) in milliseconds since the Unix epoch.
    pub fn unix_ms_of(&self, t: Timestamp) -> u64 {
        let (now, t) = (self.mono.as_nanos(), t.as_nanos());
        if t <= now {
            self.unix_ms.saturating_sub((now - t) / 1_000_000)
        } else {
            self.unix_ms.saturating_add((t - now) / 1_000_000)
        }
    }
}

/// Aggregator limits. Every field has a documented default ([`Config::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Least time between two connection events of one key. Default 1 s.
    pub interval: Duration,
    /// Connection events per one-second window, all keys together. Default 10 000.
    pub max_connection_events: u32,
    /// Aggregates tracked at once. Default 65 536 (about 10 MiB).
    pub max_aggregates: usize,
    /// An aggregate not updated for this long, with nothing pending, is forgotten. Default
    /// 300 s.
    pub idle_timeout: Duration,
    /// Least time between two events of one violation or threat key. Default 1 s.
    pub alert_interval: Duration,
    /// Violation and threat events per one-second window together. Default 1 000.
    pub max_alerts: u32,
    /// Violation and threat keys remembered for [`Config::alert_interval`]. Default 65 536.
    pub max_alert_keys: usize,
    /// Records taken from one ring per [`Aggregator::poll`]. Default 65 536.
    pub drain_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: Duration::from_secs(1),
            max_connection_events: 10_000,
            max_aggregates: 65_536,
            idle_timeout: Duration::from_secs(300),
            alert_interval: Duration::from_secs(1),
            max_alerts: 1_000,
            max_alert_keys: 65_536,
            drain_batch: 65_536,
        }
    }
}

/// What the aggregator did (it has one owner: plain integers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregatorStats {
    /// Records taken in.
    pub records: u64,
    /// Connection events emitted.
    pub connection_events: u64,
    /// Due connection events held back by the global cap (each flush counts each held key).
    pub connections_deferred: u64,
    /// Aggregates evicted to make room.
    pub evicted: u64,
    /// Evicted aggregates that held counts no event had carried (those counts are lost).
    pub evicted_unreported: u64,
    /// Idle aggregates forgotten.
    pub expired: u64,
    /// Violation events emitted.
    pub violations: u64,
    /// Violations dropped because their key had an event less than `alert_interval` ago.
    pub violations_suppressed: u64,
    /// Threat events emitted.
    pub threats: u64,
    /// Threats dropped because their key had an event less than `alert_interval` ago.
    pub threats_suppressed: u64,
    /// Violations and threats dropped by the global cap.
    pub alerts_capped: u64,
    /// Records the rings dropped, as reported in overflow events.
    pub overflow_lost: u64,
}

/// Aggregation key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    client: IpAddr,
    server: IpAddr,
    server_port: u16,
    proto: u8,
    app: App,
}

#[derive(Debug)]
struct Aggregate {
    /// Counts since the key's previous event.
    sessions: u64,
    packets: u64,
    bytes: u64,
    first: Timestamp,
    last: Timestamp,
    verdict: Verdict,
    rule: Option<u32>,
    mode: Mode,
    /// Some session covered since the previous event was answered by its server.
    answered: bool,
    /// Counts above are not yet in an event.
    pending: bool,
    /// When the key's previous event went out.
    emitted: Option<Timestamp>,
    /// Aggregator time of the latest update (for idle expiry).
    touched: Timestamp,
    /// Position in the recency order (`Aggregator::lru`).
    seq: u64,
    /// Creation order: the deterministic tie-break.
    born: u64,
}

/// Violation and threat rate-limit keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AlertKey {
    Violation {
        client: IpAddr,
        server: IpAddr,
        server_port: u16,
        proto: u8,
        app: App,
        rule: Option<u32>,
        verdict: Verdict,
    },
    Threat {
        kind: ThreatKind,
        client: IpAddr,
        server: IpAddr,
        server_port: u16,
        proto: u8,
        verdict: Verdict,
    },
}

/// A one-second window with a count.
#[derive(Debug, Default)]
struct Window {
    start: Option<Timestamp>,
    count: u32,
}

impl Window {
    /// Whether one more fits under `cap` at `now`; counts it if so.
    fn admit(&mut self, now: Timestamp, cap: u32) -> bool {
        let fresh = self
            .start
            .is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1));
        if fresh {
            self.start = Some(now);
            self.count = 0;
        }
        if self.count < cap {
            self.count += 1;
            true
        } else {
            false
        }
    }
}

/// Turns worker records into events; see the module documentation.
#[derive(Debug)]
pub struct Aggregator {
    cfg: Config,
    aggs: HashMap<Key, Aggregate>,
    /// Recency order: update sequence number -> key; the first entry is the least recently
    /// updated.
    lru: BTreeMap<u64, Key>,
    seq: u64,
    born: u64,
    /// Keys that became pending since they were last looked at by `flush` (may hold keys
    /// since evicted, or twice: `flush` sorts them out).
    dirty: Vec<Key>,
    conn_window: Window,
    alert_window: Window,
    alert_last: HashMap<AlertKey, Timestamp>,
    /// When `alert_last` was last swept.
    alert_pruned: Option<Timestamp>,
    lost: u64,
    stats: AggregatorStats,
}

impl Aggregator {
    /// An aggregator with these limits. Zeroes are taken literally: `max_aggregates: 0`
    /// tracks no connection, `max_connection_events: 0` or `max_alerts: 0` emits no event of
    /// that kind (all counted), `max_alert_keys: 0` remembers no key (only the global cap
    /// limits alerts). Nothing is allocated until records arrive.
    pub fn new(cfg: Config) -> Aggregator {
        Aggregator {
            cfg,
            aggs: HashMap::new(),
            lru: BTreeMap::new(),
            seq: 0,
            born: 0,
            dirty: Vec::new(),
            conn_window: Window::default(),
            alert_window: Window::default(),
            alert_last: HashMap::new(),
            alert_pruned: None,
            lost: 0,
            stats: AggregatorStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> AggregatorStats {
        self.stats
    }

    /// Aggregates tracked.
    pub fn len(&self) -> usize {
        self.aggs.len()
    }

    /// Whether no aggregate is tracked.
    pub fn is_empty(&self) -> bool {
        self.aggs.is_empty()
    }

    /// Drains every ring (up to [`Config::drain_batch`] records each, in ring order), then
    /// flushes. Output order: the overflow event (if any ring dropped records since the last
    /// one), violations and threats in the order taken, then connection events. Returns the
    /// number of records taken.
    pub fn poll(
        &mut self,
        rings: &mut [RecordConsumer],
        now: Now,
        resolve: &impl Resolve,
        out: &mut Vec<Event>,
    ) -> usize {
        for r in rings.iter_mut() {
            self.note_overflow(r.take_overflow());
        }
        self.emit_overflow(out);
        let mut taken = 0;
        let batch = self.cfg.drain_batch;
        for r in rings.iter_mut() {
            taken += r.drain(batch, |rec| self.ingest(rec, now, resolve, out));
        }
        self.flush(now, resolve, out);
        taken
    }

    /// Adds `lost` records dropped by a ring; reported by the next overflow event.
    pub fn note_overflow(&mut self, lost: u64) {
        self.lost = self.lost.saturating_add(lost);
    }

    /// Takes one record: a connection delta is summed into its aggregate, a violation or
    /// threat goes to `out` at once unless rate-limited.
    pub fn ingest(
        &mut self,
        rec: WorkerRecord,
        now: Now,
        resolve: &impl Resolve,
        out: &mut Vec<Event>,
    ) {
        self.stats.records += 1;
        match rec {
            WorkerRecord::Connection(c) => self.add_connection(&c, now.mono),
            WorkerRecord::Violation(v) => self.violation(&v, now, resolve, out),
            WorkerRecord::Threat(t) => self.threat(&t, now, resolve, out),
        }
    }

    /// Emits what is due: the overflow event, then the connection events (see the module
    /// documentation), then forgets idle aggregates.
    pub fn flush(&mut self, now: Now, resolve: &impl Resolve, out: &mut Vec<Event>) {
        self.emit_overflow(out);
        self.flush_connections(now, resolve, out);
        self.expire_idle(now.mono);
    }

    fn emit_overflow(&mut self, out: &mut Vec<Event>) {
        if self.lost > 0 {
            out.push(Event::Overflow { lost: self.lost });
            self.stats.overflow_lost = self.stats.overflow_lost.saturating_add(self.lost);
            self.lost = 0;
        }
    }

    fn add_connection(&mut self, c: &ConnectionDelta, now: Timestamp) {
        let f = &c.flow;
        let key = Key {
            client: f.client,
            server: f.server,
            server_port: f.server_port,
            proto: f.proto,
            app: f.app,
        };
        self.seq += 1;
        let seq = self.seq;
        if let Some(a) = self.aggs.get_mut(&key) {
            self.lru.remove(&a.seq);
            a.seq = seq;
            self.lru.insert(seq, key);
            if !a.pending {
                a.pending = true;
                a.first = c.first;
                a.last = c.last;
                self.dirty.push(key);
            }
            a.sessions += u64::from(c.new_session);
            a.packets = a.packets.saturating_add(c.packets);
            a.bytes = a.bytes.saturating_add(c.bytes);
            a.first = a.first.min(c.first);
            a.last = a.last.max(c.last);
            a.verdict = c.verdict;
            a.rule = c.rule;
            a.mode = c.mode;
            a.answered |= c.answered;
            a.touched = now;
            return;
        }
        if self.cfg.max_aggregates == 0 {
            return;
        }
        while self.aggs.len() >= self.cfg.max_aggregates {
            let Some((_, old)) = self.lru.pop_first() else {
                break;
            };
            if let Some(a) = self.aggs.remove(&old) {
                self.stats.evicted += 1;
                if a.pending {
                    self.stats.evicted_unreported += 1;
                }
            }
        }
        self.born += 1;
        self.aggs.insert(
            key,
            Aggregate {
                sessions: u64::from(c.new_session),
                packets: c.packets,
                bytes: c.bytes,
                first: c.first,
                last: c.last,
                verdict: c.verdict,
                rule: c.rule,
                mode: c.mode,
                answered: c.answered,
                pending: true,
                emitted: None,
                touched: now,
                seq,
                born: self.born,
            },
        );
        self.lru.insert(seq, key);
        self.dirty.push(key);
    }

    fn flush_connections(&mut self, now: Now, resolve: &impl Resolve, out: &mut Vec<Event>) {
        // Pending keys, longest waiting first: never emitted (newest conversations) by age,
        // then by the time of their previous event; `born` breaks ties and is unique per
        // aggregate, so duplicates in `dirty` sort next to each other.
        let mut due: Vec<(bool, Timestamp, u64, Key)> = Vec::with_capacity(self.dirty.len());
        let mut waiting = Vec::new();
        for key in self.dirty.drain(..) {
            let Some(a) = self.aggs.get(&key) else {
                continue; // evicted
            };
            if !a.pending {
                continue;
            }
            let ready = a
                .emitted
                .is_none_or(|t| now.mono.saturating_duration_since(t) >= self.cfg.interval);
            if ready {
                due.push((
                    a.emitted.is_some(),
                    a.emitted.unwrap_or(Timestamp::ZERO),
                    a.born,
                    key,
                ));
            } else {
                waiting.push((a.born, key));
            }
        }
        due.sort_unstable_by_key(|&(old, at, born, _)| (old, at, born));
        due.dedup_by_key(|&mut (_, _, born, _)| born);
        waiting.sort_unstable_by_key(|&(born, _)| born);
        waiting.dedup_by_key(|&mut (born, _)| born);
        self.dirty.extend(waiting.into_iter().map(|(_, k)| k));
        for (_, _, _, key) in due {
            if !self
                .conn_window
                .admit(now.mono, self.cfg.max_connection_events)
            {
                self.stats.connections_deferred += 1;
                self.dirty.push(key);
                continue;
            }
            let Some(a) = self.aggs.get_mut(&key) else {
                continue;
            };
            let rec = ConnectionRecord {
                client: endpoint(resolve, key.client, 0),
                server: endpoint(resolve, key.server, key.server_port),
                proto: key.proto,
                app: key.app.name().to_owned(),
                sessions: a.sessions,
                packets: a.packets,
                bytes: a.bytes,
                first_seen_ms: now.unix_ms_of(a.first),
                last_seen_ms: now.unix_ms_of(a.last),
                verdict: a.verdict,
                rule: a.rule,
                mode: a.mode,
                answered: a.answered,
            };
            a.answered = false;
            a.sessions = 0;
            a.packets = 0;
            a.bytes = 0;
            a.pending = false;
            a.emitted = Some(now.mono);
            self.stats.connection_events += 1;
            out.push(Event::Connection(rec));
        }
    }

    fn expire_idle(&mut self, now: Timestamp) {
        while let Some((&seq, &key)) = self.lru.first_key_value() {
            let Some(a) = self.aggs.get(&key) else {
                self.lru.remove(&seq);
                continue;
            };
            if a.pending || now.saturating_duration_since(a.touched) < self.cfg.idle_timeout {
                break;
            }
            self.lru.remove(&seq);
            self.aggs.remove(&key);
            self.stats.expired += 1;
        }
    }

    /// Whether an alert with `key` may go out at `now`; records it if so.
    fn admit_alert(&mut self, key: AlertKey, now: Timestamp) -> Result<(), Refused> {
        let interval = self.cfg.alert_interval;
        if let Some(&t) = self.alert_last.get(&key)
            && now.saturating_duration_since(t) < interval
        {
            return Err(Refused::Repeat);
        }
        if !self.alert_window.admit(now, self.cfg.max_alerts) {
            self.stats.alerts_capped += 1;
            return Err(Refused::Capped);
        }
        let full = self.alert_last.len() >= self.cfg.max_alert_keys;
        if full
            && !self.alert_last.contains_key(&key)
            && self
                .alert_pruned
                .is_none_or(|p| now.saturating_duration_since(p) >= interval)
        {
            // Keys older than the interval no longer suppress anything. At most one sweep
            // per interval: a table full of fresh keys is not swept per alert.
            self.alert_last
                .retain(|_, t| now.saturating_duration_since(*t) < interval);
            self.alert_pruned = Some(now);
        }
        if self.alert_last.contains_key(&key) || self.alert_last.len() < self.cfg.max_alert_keys {
            self.alert_last.insert(key, now);
        }
        // Otherwise every remembered key is recent: this one goes out unremembered, bounded
        // by the global cap.
        Ok(())
    }

    fn violation(
        &mut self,
        v: &ViolationRecord,
        now: Now,
        resolve: &impl Resolve,
        out: &mut Vec<Event>,
    ) {
        let f = &v.flow;
        let key = AlertKey::Violation {
            client: f.client,
            server: f.server,
            server_port: f.server_port,
            proto: f.proto,
            app: f.app,
            rule: v.rule,
            verdict: v.verdict,
        };
        match self.admit_alert(key, now.mono) {
            Ok(()) => {}
            Err(Refused::Repeat) => {
                self.stats.violations_suppressed += 1;
                return;
            }
            Err(Refused::Capped) => return,
        }
        self.stats.violations += 1;
        out.push(Event::Violation(Violation {
            at_ms: now.unix_ms_of(v.at),
            client: endpoint(resolve, f.client, f.client_port),
            server: endpoint(resolve, f.server, f.server_port),
            proto: f.proto,
            app: f.app.name().to_owned(),
            rule: v.rule,
            mode: v.mode,
            verdict: v.verdict,
        }));
    }

    fn threat(&mut self, t: &ThreatRecord, now: Now, resolve: &impl Resolve, out: &mut Vec<Event>) {
        let f = &t.flow;
        let key = AlertKey::Threat {
            kind: t.kind,
            client: f.client,
            server: f.server,
            server_port: f.server_port,
            proto: f.proto,
            verdict: t.verdict,
        };
        match self.admit_alert(key, now.mono) {
            Ok(()) => {}
            Err(Refused::Repeat) => {
                self.stats.threats_suppressed += 1;
                return;
            }
            Err(Refused::Capped) => return,
        }
        self.stats.threats += 1;
        out.push(Event::Threat(Threat {
            at_ms: now.unix_ms_of(t.at),
            kind: t.kind,
            id: t.kind.id(),
            name: t.kind.name().to_owned(),
            client: endpoint(resolve, f.client, f.client_port),
            server: endpoint(resolve, f.server, f.server_port),
            proto: f.proto,
            verdict: t.verdict,
            detail: t.detail.to_string(),
        }));
    }
}

/// Why an alert did not go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Its key had an event less than `alert_interval` ago.
    Repeat,
    /// The global cap.
    Capped,
}

fn endpoint(resolve: &impl Resolve, ip: IpAddr, port: u16) -> Endpoint {
    let (workload, group) = resolve.describe(ip);
    Endpoint {
        addr: SocketAddr::new(ip, port),
        workload,
        group,
    }
}

#[cfg(test)]
mod tests;
