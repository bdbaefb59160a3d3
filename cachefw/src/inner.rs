//! [`Inner`]: what one built cache holds (shared by its clones), and the
//! operations every public call and macro is made of: read, encode, write,
//! evict, and the replay of evictions that did not reach Redis.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::backend::Backend;
use crate::backend::breaker::BreakerState;
use crate::clock::now_ms;
use crate::codec::extended::{self, Stamp};
use crate::codec::{Codec, Decoded, Meta};
use crate::error::Error;
use crate::flight::Flights;
use crate::journal::{Journal, Pending, Target};
use crate::key::Keys;
use crate::meters::{Meters, Tier};
use crate::near::{Held, Near, NearTier};
use crate::policy::Defaults;
use crate::report::Reporter;
use crate::shape::Value;
use crate::stats::Counters;

/// While evictions wait, the replay tries them this often, whatever the
/// breaker's interval (its commands are the probes: see `breaker.rs`), so
/// that they land within about this long of Redis answering again. An
/// answer from Redis to another call hurries it.
const REPLAY_EVERY: Duration = Duration::from_millis(100);
/// After an answer woke it, the replay still waits this long: a Redis that
/// answers for some keys but not others must not spin it.
const WOKEN_PAUSE: Duration = Duration::from_millis(20);
/// A pass that scans (a prefix eviction, a clear after an overflow) and
/// fails waits longer each time, up to this.
const MAX_SCAN_PAUSE: Duration = Duration::from_secs(1);
/// Keys per replayed batch: a batch that reaches Redis is struck off even
/// if a later one does not.
const REPLAY_BATCH: usize = 500;

/// What a read found: the near tier's copy, or the backend's bytes.
enum Fetched {
    Near(Arc<Held>),
    Backend(Option<Bytes>),
}

/// What a built cache keeps of its builder.
pub(crate) struct Settings {
    pub(crate) namespace: String,
    pub(crate) version: u32,
    pub(crate) codec: Codec,
    pub(crate) defaults: Defaults,
    pub(crate) lease_time: Duration,
    pub(crate) journal_capacity: usize,
    /// The largest encoded value stored or read.
    pub(crate) max_value_size: u64,
    /// The longest rendered key stored as it is (longer ones are hashed).
    pub(crate) max_key_len: usize,
    /// Encoded values longer than this are stored compressed (0: never).
    pub(crate) compress_above: u64,
}

pub(crate) struct Inner {
    me: Weak<Inner>,
    backend: Backend,
    /// The in-process tier in front of Redis, when built with one.
    near: Option<NearTier>,
    keys: Keys,
    settings: Settings,
    stats: Counters,
    meters: Meters,
    flights: Flights,
    reporter: Reporter,
    journal: Journal,
    /// Whether a replay task runs; `wake` hurries it when Redis answers.
    replaying: AtomicBool,
    wake: Arc<Notify>,
    /// Loads the cache finishes on its own (refreshes, revalidations,
    /// loads past their timeout): aborted when the last handle drops.
    background: std::sync::Mutex<tokio::task::JoinSet<()>>,
    /// Per key, until when a failed source is spared (fail-safe).
    throttled: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// Keys the fail-safe throttle remembers before it forgets the expired.
const THROTTLE_KEYS: usize = 10_000;

/// An eviction in flight: struck off the journal by [`done`](Self::done);
/// dropped without it (failed, or cancelled at an await), it stays there
/// and the replay is started.
struct Evicting<'a> {
    inner: &'a Inner,
    pending: Option<Pending<'a>>,
}

impl Evicting<'_> {
    fn done(mut self) {
        if let Some(pending) = self.pending.take() {
            pending.done();
        }
    }
}

impl Drop for Evicting<'_> {
    fn drop(&mut self) {
        if self.pending.take().is_some() {
            self.inner.schedule_replay();
        }
    }
}

impl Inner {
    pub(crate) fn new(backend: Backend, near: Option<NearTier>, settings: Settings) -> Arc<Self> {
        let meters = Meters::new(
            &settings.namespace,
            match backend {
                #[cfg(feature = "memory")]
                Backend::Memory(_) => Tier::Memory,
                #[cfg(feature = "redis")]
                Backend::Redis(_) => Tier::Redis,
            },
        );
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            keys: Keys::with_limit(&settings.namespace, settings.version, settings.max_key_len),
            journal: Journal::new(settings.journal_capacity),
            backend,
            near,
            settings,
            stats: Counters::default(),
            meters,
            flights: Flights::default(),
            reporter: Reporter::new(),
            replaying: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            background: std::sync::Mutex::new(tokio::task::JoinSet::new()),
            throttled: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    pub(crate) fn version(&self) -> u32 {
        self.settings.version
    }

    pub(crate) fn codec(&self) -> Codec {
        self.settings.codec
    }

    pub(crate) fn defaults(&self) -> Defaults {
        self.settings.defaults
    }

    pub(crate) fn max_value_size(&self) -> u64 {
        self.settings.max_value_size
    }

    pub(crate) fn lease_time(&self) -> Duration {
        self.settings.lease_time
    }

    pub(crate) fn stats(&self) -> &Counters {
        &self.stats
    }

    pub(crate) fn meters(&self) -> &Meters {
        &self.meters
    }

    /// A read answered from the backend (or, with `near`, from the near
    /// tier), counted everywhere.
    pub(crate) fn count_hit(&self, site: &'static str, near: bool) {
        if near {
            self.stats.near_hit();
            self.meters.near_hit(site);
            record_outcome("tier", "near");
        } else {
            self.stats.hit();
            self.meters.hit(site);
        }
        record_outcome("outcome", "hit");
    }

    /// The near tier, when the cache has one.
    pub(crate) fn near(&self) -> Option<&Near> {
        self.near.as_deref()
    }

    /// A write of `full` through this cache: its near copy goes, and reads
    /// of it in flight do not store what they got.
    pub(crate) fn near_written(&self, full: &str) {
        if let Some(near) = &self.near {
            near.invalidate(full);
        }
    }

    /// What is at `full`: the near tier's copy when it holds one, else the
    /// backend's bytes, offered to the near tier on the way.
    async fn fetch(&self, full: &str) -> Result<Fetched, Error> {
        let Some(near) = &self.near else {
            return Ok(Fetched::Backend(self.backend_get(full).await?));
        };
        if let Some(held) = near.get(full) {
            return Ok(Fetched::Near(held));
        }
        let ticket = near.ticket(full);
        let bytes = self.backend_get(full).await?;
        if let (Some(bytes), Some(ticket)) = (&bytes, ticket) {
            near.offer(full, bytes, ticket, now_ms());
        }
        Ok(Fetched::Backend(bytes))
    }

    /// The backend's bytes at `full`; a value larger than `max_value_size`
    /// (never read in full) is counted, logged, and reads as missing.
    pub(crate) async fn backend_get(&self, full: &str) -> Result<Option<Bytes>, Error> {
        match self.observe(self.backend.get(full).await) {
            Err(error @ Error::ValueTooLarge { .. }) => {
                self.failure(&error);
                Ok(None)
            }
            found => found,
        }
    }

    /// A read answered with a value past its TTL.
    pub(crate) fn count_stale_hit(&self, site: &'static str) {
        self.stats.stale_hit();
        self.meters.stale_hit(site);
        record_outcome("outcome", "stale");
    }

    /// A read that went to the loader or waited for one.
    pub(crate) fn count_miss(&self, site: &'static str) {
        self.stats.miss();
        self.meters.miss(site);
        record_outcome("outcome", "miss");
    }

    /// A read that skipped the cache for the loader: a key too long to
    /// cache, Redis out, or a pending eviction of the key. Counted as a
    /// miss; its span says `bypass`.
    pub(crate) fn count_bypass(&self, site: &'static str) {
        self.stats.miss();
        self.meters.miss(site);
        record_outcome("outcome", "bypass");
    }

    pub(crate) fn flights(&self) -> &Flights {
        &self.flights
    }

    /// How many evictions wait for Redis.
    pub(crate) fn pending_evictions(&self) -> usize {
        self.journal.len()
    }

    /// Notes the backend's answer on its way to the caller: a failure is
    /// counted and logged, an answer after failures logged as a recovery
    /// (and hurries the replay of pending evictions).
    pub(crate) fn observe<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        match &result {
            Ok(_) => {
                if self.reporter.answered(self.backend.name()) {
                    self.meters
                        .breaker(self.backend.breaker() != BreakerState::Closed);
                }
                if !self.journal.is_settled() {
                    self.schedule_replay();
                }
            }
            Err(error) if error.is_backend_failure() => self.failure(error),
            // A mistake in the call, returned to the caller as it is.
            Err(_) => {}
        }
        result
    }

    /// Counts and logs a failure that no caller sees.
    pub(crate) fn failure(&self, error: &Error) {
        self.reporter
            .failure(&self.stats, self.backend.name(), error);
        self.meters.error(error.kind());
        if error.is_backend_failure() {
            self.meters
                .breaker(self.backend.breaker() != BreakerState::Closed);
        }
    }

    /// Refuses encoded bytes larger than the limit: the error is counted
    /// and logged here, and returned.
    pub(crate) fn check_size(&self, full: &str, bytes: &[u8]) -> Result<(), Error> {
        let size = bytes.len() as u64;
        if size <= self.settings.max_value_size {
            return Ok(());
        }
        let error = Error::ValueTooLarge {
            key: full.to_owned(),
            size: Some(size),
            max: self.settings.max_value_size,
        };
        self.failure(&error);
        Err(error)
    }

    /// Whether reads of `full` must bypass the backend: an eviction of it
    /// has not reached Redis yet.
    pub(crate) fn bypasses(&self, full: &str) -> bool {
        self.journal.bypasses(full)
    }

    /// The entry at `full`, with its metadata. A miss, a failure and an
    /// entry that does not decode are not counted here but as the caller
    /// interprets them; the failure and the bad entry are reported. A key
    /// with a pending eviction reads as missing.
    ///
    /// With the entry, whether the near tier answered.
    pub(crate) async fn read<T: DeserializeOwned>(
        &self,
        full: &str,
    ) -> Result<Option<(Decoded<T>, bool)>, Error> {
        if self.bypasses(full) {
            return Ok(None);
        }
        Ok(match self.fetch(full).await? {
            Fetched::Near(held) => self.decode(full, &held.bytes).map(|d| (d, true)),
            Fetched::Backend(Some(bytes)) if !self.tags_hold(&bytes).await? => None,
            Fetched::Backend(Some(bytes)) => self.decode(full, &bytes).map(|d| (d, false)),
            Fetched::Backend(None) => None,
        })
    }

    /// [`read`](Self::read) for a value type that clones: a near hit is
    /// decoded once and cloned from then on.
    pub(crate) async fn read_value<T: Value>(
        &self,
        full: &str,
    ) -> Result<Option<(Decoded<T>, bool)>, Error> {
        if self.bypasses(full) {
            return Ok(None);
        }
        Ok(match self.fetch(full).await? {
            Fetched::Near(held) => {
                if let Some(decoded) = held.decoded::<Decoded<T>>() {
                    return Ok(Some((decoded.clone(), true)));
                }
                let decoded = self.decode::<T>(full, &held.bytes);
                if let (Some(decoded), Some(near)) = (&decoded, &self.near) {
                    // What the value holds beyond its inline size (which
                    // `keep` counts with the rest of the decoded entry).
                    let heap = match &decoded.entry {
                        crate::codec::Entry::Value(value) => {
                            crate::near::size::of(value).saturating_sub(std::mem::size_of::<T>())
                        }
                        _ => 0,
                    };
                    near.keep(full, &held, decoded.clone(), heap);
                }
                decoded.map(|d| (d, true))
            }
            Fetched::Backend(Some(bytes)) if !self.tags_hold(&bytes).await? => None,
            Fetched::Backend(Some(bytes)) => self.decode(full, &bytes).map(|d| (d, false)),
            Fetched::Backend(None) => None,
        })
    }

    /// `bytes` decoded; a bad entry is reported and reads as missing.
    fn decode<T: DeserializeOwned>(&self, full: &str, bytes: &[u8]) -> Option<Decoded<T>> {
        match self
            .settings
            .codec
            .decode(bytes, self.settings.max_value_size)
        {
            Ok(decoded) => Some(decoded),
            Err(reason) => {
                self.failure(&Error::Decode {
                    key: full.to_owned(),
                    reason: reason.to_string(),
                });
                None
            }
        }
    }

    /// The bytes that store `value`: header, metadata (and `stamp`, its
    /// tags), payload, compressed past `compress_above`. An encoding over
    /// `max_value_size` stays as it is, for `check_size` to refuse.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        full: &str,
        value: &T,
        meta: Meta,
        stamp: Option<&Stamp>,
    ) -> Result<Vec<u8>, Error> {
        let plain = self
            .settings
            .codec
            .encode(value, meta)
            .map_err(|reason| Error::Encode {
                key: full.to_owned(),
                codec: self.settings.codec,
                reason,
            })?;
        if plain.len() as u64 > self.settings.max_value_size {
            return Ok(plain);
        }
        Ok(extended::build(plain, stamp, self.settings.compress_above))
    }

    /// Runs `task` as the cache's own background work: it is aborted when
    /// the last handle on the cache is dropped, and waited for by
    /// `shutdown`.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut background = self
            .background
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Finished tasks are reaped here, so the set holds only live ones.
        while background.try_join_next().is_some() {}
        background.spawn_on(task, &runtime);
    }

    /// Aborts the background work (the last handle was dropped).
    pub(crate) fn abort_background(&self) {
        self.background
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .abort_all();
    }

    /// Waits for the background work, at most `patience`; aborts what is
    /// left then.
    pub(crate) async fn shutdown(&self, patience: Duration) {
        let mut tasks = std::mem::take(
            &mut *self
                .background
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let drained = tokio::time::timeout(patience, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
        }
    }

    /// Whether `full`'s source is spared after a failed load (fail-safe).
    pub(crate) fn throttled(&self, full: &str) -> bool {
        self.throttled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(full)
            .is_some_and(|until| *until > std::time::Instant::now())
    }

    /// Spares `full`'s source for `period`.
    pub(crate) fn throttle(&self, full: &str, period: Duration) {
        let now = std::time::Instant::now();
        let mut throttled = self
            .throttled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if throttled.len() >= THROTTLE_KEYS {
            throttled.retain(|_, until| *until > now);
        }
        throttled.insert(full.to_owned(), now + period);
    }

    /// Runs `write`, an eviction of `targets` (or a write that replaces
    /// them), under the journal: recorded before it is sent, struck off
    /// once Redis confirms it, kept for the replay otherwise (including
    /// when this future is dropped at the await).
    pub(crate) async fn evicting<T>(
        &self,
        targets: impl IntoIterator<Item = Target>,
        write: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let targets: Vec<Target> = targets.into_iter().collect();
        self.near_evict(&targets);
        let evictions: Vec<Evicting<'_>> = targets
            .iter()
            .cloned()
            .map(|target| {
                match &target {
                    Target::Key(key) => self.flights.detach(key),
                    Target::Prefix(prefix) => self.flights.detach_prefix(prefix),
                }
                Evicting {
                    inner: self,
                    pending: Some(self.journal.record(target)),
                }
            })
            .collect();
        let result = self.observe(write.await);
        // Again once Redis answered: a read that got the old value while the
        // write was on its way must not keep it.
        self.near_evict(&targets);
        if result.is_ok() {
            evictions.into_iter().for_each(Evicting::done);
        }
        result
    }

    /// Drops the near copies of `targets`: a key's, or for a prefix the
    /// whole tier (it holds only this cache's keys, and prefix evictions
    /// are rare).
    fn near_evict(&self, targets: &[Target]) {
        let Some(near) = &self.near else {
            return;
        };
        for target in targets {
            match target {
                Target::Key(key) => near.invalidate(key),
                Target::Prefix(_) => near.flush(),
            }
        }
    }

    /// Stores `value` at a full key over whatever it holds, for `ttl` (which
    /// the caller has jittered). The write replaces any lease on the key, so
    /// a load that began before it cannot fill over it; loads joining now
    /// start afresh. A write that does not reach Redis, or a value that
    /// cannot be stored (it does not encode, the TTL is invalid), must not
    /// leave the old entry there: it is then evicted (at once, or as soon as
    /// Redis answers). A backend failure is counted and logged.
    /// The entry carries `stamp`'s tags, if given.
    pub(crate) async fn set_full<T: Serialize + ?Sized>(
        &self,
        full: &str,
        value: &T,
        ttl: Duration,
        stamp: Option<&Stamp>,
    ) -> Result<(), Error> {
        let encoded = crate::ttl::millis(ttl)
            .ok_or_else(|| Error::InvalidTtl {
                key: full.to_owned(),
                ttl,
            })
            .and_then(|ttl_ms| {
                let meta = Meta {
                    expires_ms: now_ms().saturating_add(ttl_ms),
                    delta_ms: 0,
                };
                Ok((self.encode(full, value, meta, stamp)?, ttl_ms))
            })
            .and_then(|(bytes, ttl_ms)| {
                self.check_size(full, &bytes)?;
                Ok((bytes, ttl_ms))
            });
        let (bytes, ttl_ms) = match encoded {
            Ok(encoded) => encoded,
            Err(error) => {
                // Failures of the eviction are the cache's to count; the
                // caller learns why its value was not stored.
                let _ = self.delete_full(full).await;
                return Err(error);
            }
        };
        let write = self.backend.set(full, Bytes::from(bytes), ttl_ms);
        self.evicting([Target::Key(full.to_owned())], write).await
    }

    /// [`set_full`](Self::set_full) for a `#[cache_put]`: every failure is
    /// counted and logged, none returned.
    pub(crate) async fn put_full<V: Serialize>(&self, full: &str, value: &V, ttl: Duration) {
        if let Err(error) = self.set_full(full, value, ttl, None).await
            && !error.is_counted()
        {
            self.failure(&error);
        }
    }

    /// Removes the entry at a full key, and with it any lease: a load that
    /// began before cannot fill it, and later callers start a new load.
    pub(crate) async fn delete_full(&self, full: &str) -> Result<bool, Error> {
        let write = self.backend.delete(full);
        self.evicting([Target::Key(full.to_owned())], write).await
    }

    /// [`delete_full`](Self::delete_full) for many keys, in one round trip
    /// per batch; how many existed.
    pub(crate) async fn delete_many_full(&self, fulls: &[String]) -> Result<u64, Error> {
        let targets = fulls.iter().map(|full| Target::Key(full.clone()));
        self.evicting(targets, self.backend.delete_many(fulls))
            .await
    }

    /// Removes every entry under a full key prefix.
    pub(crate) async fn evict_prefix_full(&self, prefix: &str) -> Result<u64, Error> {
        let write = self.backend.evict_prefix(prefix);
        self.evicting([Target::Prefix(prefix.to_owned())], write)
            .await
    }

    /// Removes every entry of this namespace and version; evictions pending
    /// before it are covered by it.
    pub(crate) async fn clear(&self) -> Result<u64, Error> {
        let up_to = self.journal.next_seq();
        let removed = self.evict_prefix_full(self.keys.prefix()).await?;
        self.journal.cleared(up_to);
        Ok(removed)
    }

    /// Gives up our lease on `full`; a failure is counted and logged.
    pub(crate) async fn release(&self, full: &str, marker: &Bytes) {
        let result = self.backend.release(full, marker).await;
        let _ = self.observe(result);
    }

    /// Makes sure a replay of pending evictions runs, or hurries it.
    fn schedule_replay(&self) {
        if self.replaying.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
            return;
        }
        // The guard exists before the task does: a task dropped unpolled
        // (its runtime is shutting down) still clears the flag.
        let flag = Replaying {
            me: self.me.clone(),
            finished: false,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(replay(flag))),
            Err(_) => drop(flag),
        }
    }

    /// One pass over the pending evictions. A failure is not counted
    /// again: it is the same outage the original eviction met.
    async fn replay_pass(&self) -> Pass {
        let backlog = self.journal.backlog();
        if backlog.overflowed {
            self.flights.detach_prefix(self.keys.prefix());
            let cleared = self.backend.evict_prefix(self.keys.prefix()).await.is_ok();
            if cleared {
                if let Some(near) = &self.near {
                    near.flush();
                }
                self.journal.cleared(backlog.up_to);
            }
            return Pass {
                progressed: cleared,
                scans: true,
            };
        }
        let mut progressed = false;
        let (keys, prefixes): (Vec<_>, Vec<_>) = backlog
            .targets
            .into_iter()
            .partition(|(target, _)| matches!(target, Target::Key(_)));
        let prefixes_empty = prefixes.is_empty();
        for (target, seq) in prefixes {
            if let Target::Prefix(prefix) = &target
                && self.backend.evict_prefix(prefix).await.is_ok()
            {
                self.near_evict(std::slice::from_ref(&target));
                self.journal.settle(&target, seq);
                progressed = true;
            }
        }
        for batch in keys.chunks(REPLAY_BATCH) {
            let fulls: Vec<String> = batch
                .iter()
                .filter_map(|(target, _)| match target {
                    Target::Key(key) => Some(key.clone()),
                    Target::Prefix(_) => None,
                })
                .collect();
            if self.backend.delete_many(&fulls).await.is_ok() {
                // A near copy read while the eviction waited goes too.
                fulls.iter().for_each(|full| self.near_written(full));
                for (target, seq) in batch {
                    self.journal.settle(target, *seq);
                }
                progressed = true;
            }
        }
        if progressed {
            tracing::info!(
                left = self.journal.len(),
                "cachefw: replayed evictions that had not reached Redis"
            );
        }
        Pass {
            progressed,
            scans: !prefixes_empty,
        }
    }
}

/// How a replay pass went.
struct Pass {
    /// Whether any eviction reached Redis.
    progressed: bool,
    /// Whether it had to scan the keyspace (a prefix eviction, or a clear
    /// after an overflow): a pass not to repeat faster than the backoff.
    scans: bool,
}

/// Clears the replay flag however the task ends: done, or dropped with its
/// runtime (even before it first ran). A task that finished restarts the
/// replay when evictions were stranded after its last look; one dropped by
/// a shutting-down runtime does not (the next failure or answer will).
struct Replaying {
    me: Weak<Inner>,
    finished: bool,
}

impl Drop for Replaying {
    fn drop(&mut self) {
        if let Some(inner) = self.me.upgrade() {
            // Nobody probes for the replay now: the breakers' own probes
            // resume.
            inner.backend.replay_first(false);
            inner.replaying.store(false, Ordering::Release);
            if self.finished && !inner.journal.is_settled() {
                inner.schedule_replay();
            }
        }
    }
}

/// Replays pending evictions until none is left or the cache is dropped,
/// every [`REPLAY_EVERY`] while Redis does not take them: while evictions
/// wait, an open breaker lets only the replay through (and its first
/// answered command closes it), so they land before this cache's reads
/// go to Redis again. Holds the cache only while a pass runs.
async fn replay(mut flag: Replaying) {
    let mut scan_pause = REPLAY_EVERY;
    loop {
        let Some(inner) = flag.me.upgrade() else {
            return;
        };
        if inner.journal.is_settled() {
            flag.finished = true;
            return;
        }
        inner.backend.replay_first(true);
        let pass = crate::backend::breaker::replaying(inner.replay_pass()).await;
        if inner.journal.is_settled() {
            flag.finished = true;
            return;
        }
        let wake = inner.wake.clone();
        drop(inner);
        if pass.scans && !pass.progressed {
            // A scan that failed (a primary still unreachable) waits out a
            // growing pause: answers from the other nodes must not repeat
            // it.
            scan_pause = (scan_pause * 2).min(MAX_SCAN_PAUSE);
            tokio::time::sleep(scan_pause).await;
            continue;
        }
        scan_pause = REPLAY_EVERY;
        tokio::select! {
            () = tokio::time::sleep(REPLAY_EVERY) => {}
            () = async {
                wake.notified().await;
                tokio::time::sleep(WOKEN_PAUSE).await;
            } => {}
        }
    }
}

/// Records `field` on the current span when it is a cached call's
/// (`cachefw.get`): a span of the caller's own that happens to have a field
/// of that name is left alone.
fn record_outcome(field: &'static str, value: &'static str) {
    let span = tracing::Span::current();
    if span
        .metadata()
        .is_some_and(|metadata| metadata.name() == GET_SPAN)
    {
        span.record(field, value);
    }
}

/// The name of a cached call's span.
pub(crate) const GET_SPAN: &str = "cachefw.get";
