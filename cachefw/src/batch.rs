//! Cache-aside for many keys at once: one read for all of them (pipelined
//! `GETRANGE`s, bounded by `max_value_size` as single reads are),
//! one loader call for the keys that missed, and their fills sent together.
//! Each missing key is still loaded once however many callers want it: in
//! this process through single-flight (a key another batch or call is
//! loading is waited for, not loaded again), across processes through the
//! lease (a key leased by another process is waited for, up to the lease
//! time, before the loader is called without it).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::clock::now_ms;
use crate::codec::Entry;
use crate::error::Error;
use crate::flight::{Follower, Join, Leader, Outcome};
use crate::inner::Inner;
use crate::lease::{self, Attempt, LeaseGuard, Polled, Watch};
use crate::options::Policy;
use crate::telemetry::meters::{LoadOutcome, WriteOp};

/// How a key of a batch is answered.
enum Slot<'a, T> {
    /// Found, or loaded by someone else.
    Done(Option<T>),
    /// Being loaded by another caller of this cache.
    Following(Follower),
    /// Ours to load; with the lease when we hold it.
    Leading(Leader<'a>, Option<LeaseGuard>),
    /// Leased by another process: its value is waited for, under the
    /// lease rules.
    Waiting(Leader<'a>, Watch),
}

/// What a read found for one key, and whether the near tier answered.
type Read = (Result<Option<Bytes>, Error>, bool);

/// Cache-aside for many keys at once, over the cache's shared state.
pub(crate) struct Batch<'a> {
    inner: &'a Arc<Inner>,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(inner: &'a Arc<Inner>) -> Self {
        Self { inner }
    }

    /// The fresh values at `fulls`, in order, read in one round trip. An
    /// entry that does not decode, or is past its TTL, is `None`.
    pub(crate) async fn get_many_full<T: DeserializeOwned>(
        &self,
        fulls: &[String],
    ) -> Result<Vec<Option<T>>, Error> {
        let span = self.batch_span(crate::telemetry::meters::NO_SITE, fulls.len());
        let values = self.get_many_in::<T>(fulls).instrument(span.clone()).await;
        if let Ok(values) = &values {
            let hits = values.iter().filter(|value| value.is_some()).count();
            span.record("hits", hits);
            span.record("misses", values.len() - hits);
        }
        values
    }

    /// The span of a batch call: its size, and how many keys hit and
    /// missed (each key's own outcome is in the metrics).
    fn batch_span(&self, site: &'static str, keys: usize) -> tracing::Span {
        tracing::debug_span!(
            "cachefw.get_many",
            namespace = self.inner.namespace(),
            function = site,
            keys,
            hits = tracing::field::Empty,
            misses = tracing::field::Empty,
            tier = self.inner.backend().name(),
        )
    }

    async fn get_many_in<T: DeserializeOwned>(
        &self,
        fulls: &[String],
    ) -> Result<Vec<Option<T>>, Error> {
        let now = now_ms();
        let mut values = Vec::with_capacity(fulls.len());
        for (full, (found, near)) in fulls.iter().zip(self.read_many(fulls).await) {
            let value = match self.inner.observe(found)? {
                Some(bytes) => self.fresh::<T>(full, &bytes, now),
                None => None,
            };
            match value {
                Some(_) => self
                    .inner
                    .telemetry()
                    .hit(crate::telemetry::meters::NO_SITE, near),
                None => self
                    .inner
                    .telemetry()
                    .miss(crate::telemetry::meters::NO_SITE),
            }
            values.push(value);
        }
        Ok(values)
    }

    /// The bytes for each key, and whether the near tier answered: keys
    /// whose eviction Redis has not confirmed read as missing, keys the near
    /// tier holds come from it, the rest from the backend in one round trip
    /// per slot group (offered to the near tier on the way).
    async fn read_many(&self, fulls: &[String]) -> Vec<Read> {
        fulls.iter().for_each(|full| self.inner.hot.note(full));
        let Some(near) = self.inner.near() else {
            // Decided once, before the read: a write confirmed meanwhile
            // changes what `skips` says, and must not shift the answers.
            let skipped: Vec<bool> = fulls.iter().map(|full| self.skips(full)).collect();
            let asked: Vec<String> = fulls
                .iter()
                .zip(&skipped)
                .filter(|(_, skip)| !**skip)
                .map(|(full, _)| full.clone())
                .collect();
            let found = self.backend_get_many(&asked).await;
            debug_assert_eq!(found.len(), asked.len());
            let mut found = found.into_iter();
            return skipped
                .into_iter()
                .map(|skip| match skip {
                    true => (Ok(None), false),
                    false => (found.next().unwrap_or(Ok(None)), false),
                })
                .collect();
        };
        let mut out: Vec<Option<Read>> = fulls
            .iter()
            .map(|full| {
                if self.skips(full) {
                    Some((Ok(None), false))
                } else {
                    near.get(full)
                        .map(|held| (Ok(Some(held.bytes.clone())), true))
                }
            })
            .collect();
        let missing: Vec<usize> = (0..fulls.len()).filter(|at| out[*at].is_none()).collect();
        if !missing.is_empty() {
            let keys: Vec<String> = missing.iter().map(|at| fulls[*at].clone()).collect();
            let tickets: Vec<_> = keys.iter().map(|key| near.ticket(key)).collect();
            let found = self.backend_get_many(&keys).await;
            let now = now_ms();
            for ((at, found), ticket) in missing.into_iter().zip(found).zip(tickets) {
                if let (Ok(Some(bytes)), Some(ticket)) = (&found, ticket) {
                    near.offer(&fulls[at], bytes, ticket, now);
                }
                out[at] = Some((found, false));
            }
        }
        out.into_iter()
            .map(|found| found.unwrap_or((Ok(None), false)))
            .collect()
    }

    /// A key a batch does not read from the cache: one with a pending
    /// eviction.
    fn skips(&self, full: &str) -> bool {
        self.inner.bypasses(full)
    }

    /// The backend's bytes at each of `fulls`; a value larger than
    /// `max_value_size` (never read in full) is counted, logged, and reads
    /// as missing, as [`Inner::backend_get`] does for one key.
    async fn backend_get_many(&self, fulls: &[String]) -> Vec<Result<Option<Bytes>, Error>> {
        let mut found = self.inner.backend().get_many(fulls).await;
        for read in &mut found {
            if let Err(error @ Error::ValueTooLarge { .. }) = read {
                self.inner.failure(error);
                *read = Ok(None);
            }
            // A tagged entry whose tags no longer hold is a miss.
            if let Ok(Some(bytes)) = read {
                match self.inner.tags_hold(bytes).await {
                    Ok(true) => {}
                    Ok(false) => *read = Ok(None),
                    Err(error) => *read = Err(error),
                }
            }
        }
        found
    }

    /// The value in `bytes` if it decodes as `T` and is within its TTL; a
    /// bad entry is counted and logged.
    fn fresh<T: DeserializeOwned>(&self, full: &str, bytes: &[u8], now: u64) -> Option<T> {
        self.fresh_entry(full, bytes, now).flatten()
    }

    /// [`fresh`](Self::fresh), with an entry cached as "none" (`cache_none`)
    /// read as `Some(None)`: an answer, not a miss.
    fn fresh_entry<T: DeserializeOwned>(
        &self,
        full: &str,
        bytes: &[u8],
        now: u64,
    ) -> Option<Option<T>> {
        match self
            .inner
            .codec()
            .decode::<T>(bytes, self.inner.max_value_size())
        {
            Ok(decoded) if decoded.meta.expires_ms > now => match decoded.entry {
                Entry::Value(value) => Some(Some(value)),
                Entry::Absent => Some(None),
                Entry::Leased => None,
            },
            Ok(_) => None,
            Err(reason) => {
                self.inner.failure(&Error::Decode {
                    key: full.to_owned(),
                    reason: reason.to_string(),
                });
                None
            }
        }
    }

    /// Cache-aside for many keys: see [`Cache::get_or_load_many`].
    ///
    /// [`Cache::get_or_load_many`]: crate::Cache::get_or_load_many
    pub(crate) async fn get_or_load_many_full<T, E, F, Fut>(
        &self,
        keys: &[&str],
        policy: &Policy,
        loader: F,
    ) -> Result<Vec<Option<T>>, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Result<HashMap<String, T>, E>>,
    {
        let span = self.batch_span(policy.site, keys.len());
        self.get_or_load_many_in(keys, policy, loader, &span)
            .instrument(span.clone())
            .await
    }

    async fn get_or_load_many_in<T, E, F, Fut>(
        &self,
        keys: &[&str],
        policy: &Policy,
        loader: F,
        span: &tracing::Span,
    ) -> Result<Vec<Option<T>>, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Result<HashMap<String, T>, E>>,
    {
        // Each distinct key once, in the order first given; `index` maps a
        // key to its place there.
        let mut distinct: Vec<&str> = Vec::with_capacity(keys.len());
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
        for key in keys {
            index.entry(key).or_insert_with(|| {
                distinct.push(key);
                distinct.len() - 1
            });
        }
        let fulls: Vec<String> = distinct
            .iter()
            .map(|key| self.inner.keys().full(key))
            .collect();
        let now = now_ms();
        let read = self.read_many(&fulls).await;
        // Keys whose read failed for an outage are loaded without the lease:
        // the commands that take it would fail alike. One outage fails a
        // whole group of keys with one error: it is counted once.
        let mut reachable = vec![true; fulls.len()];
        let mut outage_seen = false;
        let mut hits = 0usize;
        let mut slots: Vec<Option<Slot<'_, T>>> = Vec::with_capacity(fulls.len());
        for (at, (full, (found, near))) in fulls.iter().zip(read).enumerate() {
            let bytes = match found {
                Err(error) if error.is_outage() && outage_seen => {
                    reachable[at] = false;
                    None
                }
                found => match self.inner.observe(found) {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        if error.is_outage() {
                            outage_seen = true;
                            reachable[at] = false;
                        }
                        None
                    }
                },
            };
            // A cached "none" is a hit too: `None`, not given to the loader.
            if let Some(value) = bytes.and_then(|bytes| self.fresh_entry::<T>(full, &bytes, now)) {
                self.inner.telemetry().hit(policy.site, near);
                hits += 1;
                slots.push(Some(Slot::Done(value)));
                continue;
            }
            self.inner.telemetry().miss(policy.site);
            slots.push(Some(match self.inner.flights().join(full) {
                Join::Follower(follower) => {
                    self.inner.telemetry().stats().coalesced();
                    Slot::Following(follower)
                }
                Join::Leader(leader) => Slot::Leading(leader, None),
            }));
        }
        // Of the distinct keys (the span's `keys` counts them as given).
        span.record("hits", hits);
        span.record("misses", fulls.len() - hits);
        self.take_leases::<T>(&fulls, &reachable, &mut slots).await;
        // With nothing of our own to load, we can wait for the other
        // processes first: what they leave unresolved (a lease that lapsed,
        // a key released without a value) is then ours to load. With keys
        // of our own, our load starts at once and runs while we wait for
        // theirs: two processes whose batches overlap each wait for the
        // other's keys, and neither may hold its load back for that.
        let mut ours = take_ours(&mut slots, false);
        if ours.is_empty() {
            self.await_other_processes::<T>(&fulls, &mut slots, true)
                .await;
            ours = take_ours(&mut slots, true);
        }
        let mut values: Vec<Option<T>> = vec![None; fulls.len()];
        let followers = async {
            self.await_other_processes::<T>(&fulls, &mut slots, false)
                .await;
            let mut waited = Vec::new();
            for (at, slot) in slots.into_iter().enumerate() {
                match slot {
                    Some(Slot::Done(value)) => waited.push((at, value)),
                    // The other caller's load: its value, or none if it
                    // failed or left the key out.
                    Some(Slot::Following(follower)) => {
                        let value = match follower.wait().await {
                            // A batch does not load a voided key again
                            // (single-key calls do; see `aside.rs`).
                            Outcome::Value(shared) | Outcome::Voided(shared) => shared
                                .downcast_ref::<Entry<T>>()
                                .and_then(|entry| match entry {
                                    Entry::Value(value) => Some(value.clone()),
                                    Entry::Absent | Entry::Leased => None,
                                }),
                            Outcome::Failed | Outcome::Abandoned => None,
                        };
                        waited.push((at, value));
                    }
                    // Another process's lease that ended without a value
                    // while our loader was already called: the source has
                    // none for it (its loader left it out), or that process
                    // died mid-load (its lease lapsed).
                    Some(Slot::Leading(leader, _) | Slot::Waiting(leader, _)) => {
                        tracing::debug!(
                            key = %fulls[at],
                            "cachefw: a batch key leased elsewhere ended without a value"
                        );
                        leader.fail();
                        waited.push((at, None));
                    }
                    None => {}
                }
            }
            waited
        };
        let load = self.load_ours::<T, E, F, Fut>(&fulls, &distinct, ours, policy, loader);
        // Our load publishes (each value once its fill is answered) without
        // waiting on anyone, and waiting on others does not hold it up:
        // overlapping batches cannot deadlock.
        // A failed load returns at once (the waits are dropped, which frees
        // what they held).
        let (loaded, waited) = tokio::try_join!(load, async { Ok(followers.await) })?;
        for (at, value) in loaded.into_iter().chain(waited) {
            values[at] = value;
        }
        Ok(keys
            .iter()
            .map(|key| {
                index
                    .get(key)
                    .and_then(|at| values.get(*at).cloned().flatten())
            })
            .collect())
    }

    /// Takes the lease on every key we lead, all at once (through
    /// `lease.rs`, as a single call does). A key that holds a value now is
    /// answered with it; one leased by another process is waited for.
    async fn take_leases<T: DeserializeOwned + Clone + Send + Sync + 'static>(
        &self,
        fulls: &[String],
        reachable: &[bool],
        slots: &mut [Option<Slot<'_, T>>],
    ) {
        let wanted: Vec<usize> = slots
            .iter()
            .enumerate()
            .filter(|(at, slot)| {
                matches!(slot, Some(Slot::Leading(..)))
                    && reachable[*at]
                    && !self.inner.bypasses(&fulls[*at])
            })
            .map(|(at, _)| at)
            .collect();
        let lease_time = self.inner.lease_time();
        let attempts = wanted
            .iter()
            .map(|at| async move { (*at, lease::attempt(self.inner, &fulls[*at], None).await) });
        for (at, attempt) in futures_util::future::join_all(attempts).await {
            let Some(Slot::Leading(leader, _)) = slots[at].take() else {
                continue;
            };
            let watch = Watch::new(lease_time);
            slots[at] = Some(self.attempted(&fulls[at], leader, watch, attempt));
        }
    }

    /// The slot of a key we lead after an attempt at its lease.
    fn attempted<'l, T: DeserializeOwned + Clone + Send + Sync + 'static>(
        &self,
        full: &str,
        leader: Leader<'l>,
        mut watch: Watch,
        attempt: Attempt,
    ) -> Slot<'l, T> {
        match attempt {
            Attempt::Owned(guard) => Slot::Leading(leader, Some(guard)),
            Attempt::Leased(marker) => {
                if !watch.held_by(marker) {
                    watch.lapse();
                }
                Slot::Waiting(leader, watch)
            }
            Attempt::Found(bytes) => match self.fresh::<T>(full, &bytes, now_ms()) {
                Some(value) => {
                    leader.publish(Arc::new(Entry::Value(value.clone())));
                    Slot::Done(Some(value))
                }
                // Filled with something we cannot use: ours to load,
                // without storing over it.
                None => Slot::Leading(leader, None),
            },
            Attempt::Failed => Slot::Leading(leader, None),
        }
    }

    /// Polls the keys leased by other processes, each under the lease
    /// rules of `lease.rs` (a lease time per holder, a few holders at
    /// most), until each holds a value, is released, or its wait lapses.
    /// With `take_over`, a released key's lease is taken (as a single call
    /// does) and the key is ours to load and fill; without (our load has
    /// already started), it is ours to answer without a value. Keys whose
    /// wait lapsed stay `Waiting`.
    async fn await_other_processes<T: DeserializeOwned + Clone + Send + Sync + 'static>(
        &self,
        fulls: &[String],
        slots: &mut [Option<Slot<'_, T>>],
        take_over: bool,
    ) {
        loop {
            let now = Instant::now();
            let mut waiting = Vec::new();
            let mut pause: Option<Duration> = None;
            for (at, slot) in slots.iter_mut().enumerate() {
                if let Some(Slot::Waiting(_, watch)) = slot
                    && !watch.lapsed(now)
                {
                    let next = watch.next_pause(now);
                    pause = Some(pause.map_or(next, |pause| pause.min(next)));
                    waiting.push(at);
                }
            }
            let Some(pause) = pause else {
                return;
            };
            tokio::time::sleep(pause).await;
            let keys: Vec<String> = waiting.iter().map(|at| fulls[*at].clone()).collect();
            let mut retry = Vec::new();
            for (at, found) in waiting.into_iter().zip(self.backend_get_many(&keys).await) {
                let Some(Slot::Waiting(leader, watch)) = slots[at].take() else {
                    continue;
                };
                slots[at] = Some(match found.map(|found| watch.polled(found)) {
                    Ok(Polled::Waiting) => Slot::Waiting(leader, watch),
                    Ok(Polled::Found(bytes)) => match self.fresh::<T>(&fulls[at], &bytes, now_ms())
                    {
                        Some(value) => {
                            leader.publish(Arc::new(Entry::Value(value.clone())));
                            Slot::Done(Some(value))
                        }
                        // Unusable: ours to load, without storing.
                        None => Slot::Leading(leader, None),
                    },
                    Ok(Polled::Retry) if take_over && !self.inner.bypasses(&fulls[at]) => {
                        retry.push(at);
                        Slot::Waiting(leader, watch)
                    }
                    // Released without a value, or unreadable: ours to
                    // answer, without storing.
                    Ok(Polled::Retry) | Err(_) => Slot::Leading(leader, None),
                });
            }
            let attempts = retry.iter().map(|at| async move {
                (*at, lease::attempt(self.inner, &fulls[*at], None).await)
            });
            for (at, attempt) in futures_util::future::join_all(attempts).await {
                let Some(Slot::Waiting(leader, watch)) = slots[at].take() else {
                    continue;
                };
                slots[at] = Some(self.attempted(&fulls[at], leader, watch, attempt));
            }
        }
    }

    /// Calls the loader once with the keys we lead, fills what it returns
    /// (all fills sent at once) and shares each value with the key's
    /// followers. A key it leaves out is `None`, not stored.
    async fn load_ours<T, E, F, Fut>(
        &self,
        fulls: &[String],
        distinct: &[&str],
        ours: Vec<(usize, Leader<'_>, Option<LeaseGuard>)>,
        policy: &Policy,
        loader: F,
    ) -> Result<Vec<(usize, Option<T>)>, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Result<HashMap<String, T>, E>>,
    {
        if ours.is_empty() {
            return Ok(Vec::new());
        }
        // The keys as given: a long one's full key holds only its digest.
        let wanted: Vec<String> = ours
            .iter()
            .map(|(at, ..)| distinct[*at].to_owned())
            .collect();
        self.inner.telemetry().stats().load();
        let started = Instant::now();
        let loaded = loader(wanted)
            .instrument(tracing::debug_span!("cachefw.load", keys = ours.len()))
            .await;
        let took = started.elapsed();
        let mut found = match loaded {
            Ok(found) => {
                self.inner
                    .telemetry()
                    .meters()
                    .load(policy.site, LoadOutcome::Ok, took);
                found
            }
            Err(error) => {
                self.inner
                    .telemetry()
                    .meters()
                    .load(policy.site, LoadOutcome::Err, took);
                // Leases go back first, all at once, so that the callers
                // who load next find them free; then the followers learn
                // the load failed.
                let mut leaders = Vec::with_capacity(ours.len());
                let releases = ours.into_iter().filter_map(|(_, leader, guard)| {
                    leaders.push(leader);
                    guard.map(LeaseGuard::release)
                });
                futures_util::future::join_all(releases).await;
                leaders.into_iter().for_each(Leader::fail);
                return Err(error);
            }
        };
        let delta_ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
        let mut answers = Vec::with_capacity(ours.len());
        let mut writes = Vec::new();
        for (at, leader, guard) in ours {
            let value = found.remove(distinct[at]);
            let stored = match (&guard, &value) {
                (Some(_), Some(value)) => self.stored_bytes(&fulls[at], value, policy, delta_ms),
                _ => None,
            };
            // A value that is filled under our lease goes to the followers
            // once the fill is answered (as a single-key load's does, see
            // `aside.rs`): a fill refused because the key was evicted or
            // written meanwhile makes them load again.
            let leader = match (&value, &stored) {
                (Some(_), Some(_)) => Some(leader),
                (Some(value), None) => {
                    leader.publish(Arc::new(Entry::Value(value.clone())));
                    None
                }
                (None, _) => {
                    leader.fail();
                    None
                }
            };
            if let Some(guard) = guard {
                let entry = value.clone().map(Entry::Value);
                writes.push((at, guard, stored, leader, entry));
            }
            answers.push((at, value));
        }
        // Every fill, and every release of a lease with nothing to store,
        // sent at once on the multiplexed connection.
        let sent = writes
            .into_iter()
            .map(|(at, guard, stored, leader, entry)| async move {
                let Some((bytes, ttl_ms)) = stored else {
                    return guard.release().await;
                };
                let filled = self
                    .inner
                    .backend()
                    .fill(&fulls[at], guard.marker(), bytes, ttl_ms)
                    .await;
                let answered = Instant::now();
                self.inner.near_written(&fulls[at]);
                // Refused while the lease still ran: the key was evicted or
                // written meanwhile (see `aside.rs`).
                let voided = matches!(&filled, Ok(false)) && guard.live_at(answered);
                if let (Some(leader), Some(entry)) = (leader, entry) {
                    if voided {
                        leader.publish_voided(Arc::new(entry));
                    } else {
                        leader.publish(Arc::new(entry));
                    }
                }
                match self.inner.observe(filled) {
                    Ok(stored) => {
                        self.inner.telemetry().meters().write(
                            policy.site,
                            WriteOp::Store,
                            u64::from(stored),
                        );
                        guard.filled();
                    }
                    Err(_) => drop(guard),
                }
            });
        futures_util::future::join_all(sent).await;
        Ok(answers)
    }

    /// The bytes and backend TTL to store `value` under `policy`.
    fn stored_bytes<T: Serialize>(
        &self,
        full: &str,
        value: &T,
        policy: &Policy,
        delta_ms: u32,
    ) -> Option<(Bytes, u64)> {
        let ttl = policy.jittered(policy.ttl);
        let ttl_ms = crate::ttl::px(ttl.saturating_add(policy.stale_window()))?;
        let meta = crate::codec::Meta {
            expires_ms: now_ms().saturating_add(crate::clock::millis(ttl)),
            delta_ms,
        };
        match self.inner.encode(full, value, meta, None) {
            // Larger than the limit: not stored (counted and logged there).
            Ok(bytes) => self
                .inner
                .check_size(full, &bytes)
                .ok()
                .map(|()| (Bytes::from(bytes), ttl_ms)),
            Err(error) => {
                self.inner.failure(&error);
                None
            }
        }
    }
}

/// The keys we lead (with the lease or without), taken out of `slots`;
/// with `lapsed`, the keys still leased elsewhere too (their wait is over).
fn take_ours<'a, T>(
    slots: &mut [Option<Slot<'a, T>>],
    lapsed: bool,
) -> Vec<(usize, Leader<'a>, Option<LeaseGuard>)> {
    let mut ours = Vec::new();
    for (at, slot) in slots.iter_mut().enumerate() {
        match slot.take() {
            Some(Slot::Leading(leader, guard)) => ours.push((at, leader, guard)),
            Some(Slot::Waiting(leader, _)) if lapsed => ours.push((at, leader, None)),
            other => *slot = other,
        }
    }
    ours
}
