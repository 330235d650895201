//! The table: a slab of sessions, the index over their keys and the wheel over their deadlines.

use std::fmt;
use std::sync::Arc;

use super::counters::ConntrackCounters;
use super::index::Index;
use super::key::{FlowKey, Seed, Side};
use super::session::{Dir, DirCounters, Kind, Session, class};
use super::tcp::{self, Event, Opening, Step, TcpState};
use super::wheel::{NIL, Wheel};
use super::{Config, ConfigError, MAX_CAPACITY, PacketMeta, Timestamp, Tracked, Untracked, nanos};

/// One worker's connection table. See the module documentation for the contract.
pub struct Table<T> {
    /// The slab; a slot is in use iff its session is `live`.
    sessions: Vec<Session<T>>,
    /// Free slab slots (a stack, preallocated to the capacity).
    free: Vec<u32>,
    index: Index,
    wheel: Wheel,
    /// Timeouts in nanoseconds, by `session::class`.
    timeouts: [u64; class::COUNT],
    seed: Seed,
    eviction_sample: usize,
    /// Wheel tick at which an eviction scan found no victim; no new scan in that tick unless
    /// a session is freed meanwhile.
    no_victim_at: Option<u64>,
    len: usize,
    counters: Arc<ConntrackCounters>,
}

impl<T> fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.len)
            .field("capacity", &self.sessions.len())
            .field("counters", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl<T: Default> Table<T> {
    /// Allocates every structure for `cfg.capacity` sessions; nothing is allocated afterwards.
    pub fn with_capacity(cfg: Config) -> Result<Table<T>, ConfigError> {
        if cfg.capacity == 0 || cfg.capacity > MAX_CAPACITY {
            return Err(ConfigError::Capacity(cfg.capacity));
        }
        let mut timeouts = [0; class::COUNT];
        for (t, (name, d)) in timeouts.iter_mut().zip(cfg.timeouts.named()) {
            *t = nanos(d);
            if *t == 0 {
                return Err(ConfigError::ZeroTimeout(name));
            }
        }
        let wheel = Wheel::new(cfg.wheel_slots, nanos(cfg.tick), cfg.capacity)?;
        let index = Index::new(cfg.capacity)?;
        let mut sessions = Vec::new();
        sessions
            .try_reserve_exact(cfg.capacity)
            .map_err(|_| ConfigError::OutOfMemory)?;
        crate::hugemem::advise(&sessions);
        sessions.resize_with(cfg.capacity, Session::default);
        let mut free = Vec::new();
        free.try_reserve_exact(cfg.capacity)
            .map_err(|_| ConfigError::OutOfMemory)?;
        // Capacity is at most 2^31, so every index fits a u32. Reversed: slots are handed out
        // from 0 upwards.
        free.extend((0..cfg.capacity as u32).rev());
        Ok(Table {
            sessions,
            free,
            index,
            wheel,
            timeouts,
            seed: Seed::new(cfg.hash_seed),
            eviction_sample: cfg.eviction_sample,
            no_victim_at: None,
            len: 0,
            counters: Arc::new(ConntrackCounters::default()),
        })
    }

    /// First step of a burst's software pipeline (what DPDK's `rte_hash_lookup_bulk` does):
    /// hashes `key` and prefetches its index bucket; returns the hash for
    /// [`Table::prefetch_session`]. Run it over a whole burst, then `prefetch_session`, then
    /// `track`: the cache misses of the burst's lookups overlap instead of following each
    /// other.
    #[inline]
    pub fn prefetch_bucket(&self, key: &FlowKey) -> u64 {
        let hash = key.hash(&self.seed);
        self.index.prefetch(hash);
        hash
    }

    /// Second step: prefetches the session the index most likely holds for `hash` (its
    /// bucket should be in cache by now).
    #[inline]
    pub fn prefetch_session(&self, hash: u64) {
        if let Some(s) = self
            .index
            .guess(hash)
            .and_then(|i| self.sessions.get(i as usize))
        {
            let p = std::ptr::from_ref(s).cast::<u8>();
            let mut off = 0;
            while off < size_of::<Session<T>>() {
                crate::hugemem::prefetch(p.wrapping_add(off));
                off += 64;
            }
        }
    }

    /// Finds or creates the session of `pkt` and accounts the packet to it.
    ///
    /// On success the session's TCP state, counters, last-seen time and deadline already
    /// include this packet. Fails for a TCP segment of an unknown flow that cannot open one
    /// (counted `stray`) or when the table is full and nothing can be evicted (`refused`);
    /// see the module documentation.
    #[inline]
    pub fn track(&mut self, pkt: &PacketMeta, now: Timestamp) -> Result<Tracked<'_, T>, Untracked> {
        let hash = pkt.key.hash(&self.seed);
        self.track_hashed(pkt, hash, now)
    }

    /// [`Table::track`] with the key's hash as [`Table::prefetch_bucket`] returned it for
    /// `pkt.key` (not hashed again).
    #[inline]
    pub fn track_hashed(
        &mut self,
        pkt: &PacketMeta,
        hash: u64,
        now: Timestamp,
    ) -> Result<Tracked<'_, T>, Untracked> {
        debug_assert_eq!(hash, pkt.key.hash(&self.seed), "a hash of another key");
        let sessions = &self.sessions;
        let found = self
            .index
            .find(hash, |i| sessions[i as usize].key == pkt.key);
        let Some(idx) = found else {
            self.counters.misses.add(1);
            return self.create(pkt, hash, now);
        };
        let timeouts = &self.timeouts;
        if !self.sessions[idx as usize].is_expired(now) {
            let s = &mut self.sessions[idx as usize];
            self.counters.hits.add(1);
            let mut dir = s.dir_of(pkt.from);
            let mut is_new = false;
            let mut prev_tcp = None;
            if let Kind::Tcp { state, fins } = s.kind {
                prev_tcp = Some(state);
                match tcp::step(state, fins, Event::of(pkt.tcp_flags), dir) {
                    Step::To(state, fins) => s.kind = Kind::Tcp { state, fins },
                    Step::Reopen => {
                        let kind = Kind::Tcp {
                            state: TcpState::SynSent,
                            fins: 0,
                        };
                        restart(s, pkt.key, kind, pkt.from, false, now);
                        s.ext = T::default();
                        self.counters.reopened.add(1);
                        dir = Dir::ClientToServer;
                        is_new = true;
                        prev_tcp = None;
                    }
                }
            }
            let before = s.deadline;
            account(s, dir, pkt.len, now, timeouts);
            if s.deadline < before {
                // A shorter timeout (FIN, RST) or a clock that went back: the wheel re-files
                // lazily only deadlines that moved later, so file this one again now. Rare:
                // once or twice per connection.
                self.wheel.refile(idx, s.deadline.as_nanos());
            }
            return Ok(Tracked {
                session: s,
                dir,
                is_new,
                prev_tcp,
            });
        }
        // Dead but not reaped yet: the packet sees an unknown flow.
        self.counters.misses.add(1);
        self.counters.expired.add(1);
        match opening(pkt) {
            Err(why) => {
                self.free(idx, true);
                self.counters.stray.add(1);
                Err(why)
            }
            Ok((kind, client, picked_up)) => {
                // Reuse the slot in place: same key, index entry and wheel filing (the wheel
                // re-files it under the new deadline when it comes by).
                let s = &mut self.sessions[idx as usize];
                restart(s, pkt.key, kind, client, picked_up, now);
                s.ext = T::default();
                self.counters.created.add(1);
                self.counters.picked_up.add(u64::from(picked_up));
                let dir = s.dir_of(pkt.from);
                account(s, dir, pkt.len, now, timeouts);
                Ok(Tracked {
                    session: s,
                    dir,
                    is_new: true,
                    prev_tcp: None,
                })
            }
        }
    }

    /// Slow path of [`Self::track`]: a flow with no session.
    fn create(
        &mut self,
        pkt: &PacketMeta,
        hash: u64,
        now: Timestamp,
    ) -> Result<Tracked<'_, T>, Untracked> {
        let (kind, client, picked_up) = opening(pkt).inspect_err(|_| {
            self.counters.stray.add(1);
        })?;
        let idx = self.alloc(now)?;
        let s = &mut self.sessions[idx as usize];
        restart(s, pkt.key, kind, client, picked_up, now);
        let dir = s.dir_of(pkt.from);
        account(s, dir, pkt.len, now, &self.timeouts);
        self.wheel.insert(idx, s.deadline.as_nanos());
        self.index.insert(hash, idx);
        self.len += 1;
        self.counters.created.add(1);
        self.counters.picked_up.add(u64::from(picked_up));
        self.counters.active.set(self.len as u64);
        Ok(Tracked {
            session: s,
            dir,
            is_new: true,
            prev_tcp: None,
        })
    }

    /// A free slab slot, making room if needed (module documentation, "When the table is
    /// full").
    fn alloc(&mut self, now: Timestamp) -> Result<u32, Untracked> {
        if let Some(i) = self.free.pop() {
            return Ok(i);
        }
        self.expire(now);
        if self.free.is_empty() {
            self.make_room(now);
        }
        self.free.pop().ok_or_else(|| {
            self.counters.refused.add(1);
            Untracked::TableFull
        })
    }

    /// Frees one session (dead, else the earliest-deadline unassured one of a bounded sample
    /// in wheel order).
    fn make_room(&mut self, now: Timestamp) {
        let tick = self.wheel.processed();
        if self.eviction_sample == 0 || self.no_victim_at == Some(tick) {
            return;
        }
        let mut victim: Option<(u32, Timestamp)> = None;
        let mut examined = 0;
        'scan: for k in 1..=self.wheel.slots() {
            let mut i = self.wheel.head(tick.wrapping_add(k));
            while i != NIL {
                let s = &self.sessions[i as usize];
                if s.is_expired(now) {
                    self.free(i, true);
                    self.counters.expired.add(1);
                    return;
                }
                if !s.is_assured() && victim.is_none_or(|(_, d)| s.deadline < d) {
                    victim = Some((i, s.deadline));
                }
                examined += 1;
                if examined >= self.eviction_sample {
                    break 'scan;
                }
                i = self.wheel.next(i);
            }
        }
        match victim {
            Some((i, _)) => {
                self.free(i, true);
                self.counters.evicted.add(1);
            }
            None => self.no_victim_at = Some(tick),
        }
    }

    /// Returns slot `idx` to the slab: out of the index and (if `linked`) the wheel, `ext`
    /// dropped.
    fn free(&mut self, idx: u32, linked: bool) {
        let s = &mut self.sessions[idx as usize];
        self.index.remove(s.key.hash(&self.seed), idx);
        if linked {
            self.wheel.remove(idx);
        } else {
            self.wheel.forget(idx);
        }
        s.live = false;
        s.ext = T::default();
        self.free.push(idx);
        self.len = self.len.saturating_sub(1);
        self.no_victim_at = None;
        self.counters.active.set(self.len as u64);
    }

    /// Frees every session whose deadline has passed, as far as the wheel has ticked (see the
    /// module documentation); returns how many. Call once per burst: between ticks it is a
    /// single comparison.
    #[inline]
    pub fn expire(&mut self, now: Timestamp) -> usize {
        self.expire_with(now, |_| {})
    }

    /// [`Self::expire`], handing each expired session to `report` before it is freed (for
    /// connection reports).
    pub fn expire_with(&mut self, now: Timestamp, mut report: impl FnMut(&Session<T>)) -> usize {
        let Some(span) = self.wheel.advance(now.as_nanos()) else {
            return 0;
        };
        let mut freed = 0;
        for k in 0..span.count {
            let mut i = self.wheel.take(span.first.wrapping_add(k));
            while i != NIL {
                // Read the successor first: freeing or re-filing `i` rewrites its links.
                let next = self.wheel.next(i);
                let s = &self.sessions[i as usize];
                if s.is_expired(now) {
                    report(s);
                    self.free(i, false);
                    freed += 1;
                } else {
                    self.wheel.insert(i, s.deadline.as_nanos());
                }
                i = next;
            }
        }
        self.wheel.finish(span.last);
        self.counters.expired.add(freed as u64);
        freed
    }
}

impl<T> Table<T> {
    /// The session of `key`, if the table holds one. It may be dead but not yet reaped: check
    /// [`Session::is_expired`] when that matters.
    #[inline]
    pub fn get(&self, key: &FlowKey) -> Option<&Session<T>> {
        let sessions = &self.sessions;
        let idx = self
            .index
            .find(key.hash(&self.seed), |i| sessions[i as usize].key == *key)?;
        self.sessions.get(idx as usize)
    }

    /// Mutable [`Self::get`] (to update `ext` outside the packet path).
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Session<T>> {
        let sessions = &self.sessions;
        let idx = self
            .index
            .find(key.hash(&self.seed), |i| sessions[i as usize].key == *key)?;
        self.sessions.get_mut(idx as usize)
    }

    /// Sessions in the table (live or dead but not reaped yet).
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no session.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most sessions the table holds.
    pub fn capacity(&self) -> usize {
        self.sessions.len()
    }

    /// The counter block, to share with readers.
    pub fn counters(&self) -> &Arc<ConntrackCounters> {
        &self.counters
    }

    /// Every session in the table, in slab order (deterministic; a full pass over the slab, for
    /// reports rather than the packet path).
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            inner: self.sessions.iter(),
        }
    }

    /// Mutable [`Self::iter`].
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Session<T>> {
        self.sessions.iter_mut().filter(|s| s.live)
    }
}

impl<T: Default> Table<T> {
    /// Removes the session of `key`, returning its `ext` (counted `removed`).
    pub fn remove(&mut self, key: &FlowKey) -> Option<T> {
        let sessions = &self.sessions;
        let idx = self
            .index
            .find(key.hash(&self.seed), |i| sessions[i as usize].key == *key)?;
        let ext = std::mem::take(&mut self.sessions[idx as usize].ext);
        self.free(idx, true);
        self.counters.removed.add(1);
        Some(ext)
    }
}

/// Iterator over a table's sessions, from [`Table::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    inner: std::slice::Iter<'a, Session<T>>,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a Session<T>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.by_ref().find(|s| s.live)
    }
}

/// How a packet of an unknown flow starts a session: its kind, which side is the client and
/// whether it is a mid-stream pickup; or why it starts none.
#[inline]
fn opening(pkt: &PacketMeta) -> Result<(Kind, Side, bool), Untracked> {
    let kind = Kind::of_proto(pkt.key.proto());
    if !matches!(kind, Kind::Tcp { .. }) {
        return Ok((kind, pkt.from, false));
    }
    match Opening::of(Event::of(pkt.tcp_flags)) {
        Opening::Syn => Ok((kind, pkt.from, false)),
        Opening::PickUp => {
            // Clients use ephemeral (high) ports, servers well-known (low) ones.
            let mine = pkt.key.port(pkt.from);
            let theirs = pkt.key.port(pkt.from.opposite());
            let client = if mine >= theirs {
                pkt.from
            } else {
                pkt.from.opposite()
            };
            let kind = Kind::Tcp {
                state: TcpState::Established,
                fins: 0,
            };
            Ok((kind, client, true))
        }
        Opening::Stray(why) => Err(why),
    }
}

/// Starts a new connection in slot `s` (`ext` is the caller's to reset).
#[inline]
fn restart<T>(
    s: &mut Session<T>,
    key: FlowKey,
    kind: Kind,
    client: Side,
    picked_up: bool,
    now: Timestamp,
) {
    s.key = key;
    s.kind = kind;
    s.client = client;
    s.picked_up = picked_up;
    s.live = true;
    s.first_seen = now;
    s.counters = [DirCounters::default(); 2];
}

/// Counts the packet and sets the deadline for the session's (new) state.
#[inline]
fn account<T>(s: &mut Session<T>, dir: Dir, len: u32, now: Timestamp, timeouts: &[u64]) {
    let c = &mut s.counters[dir.index()];
    c.packets = c.packets.wrapping_add(1);
    c.bytes = c.bytes.wrapping_add(u64::from(len));
    s.last_seen = now;
    let timeout = timeouts.get(s.kind.class()).copied().unwrap_or(0);
    s.deadline = Timestamp::from_nanos(now.as_nanos().saturating_add(timeout));
}
