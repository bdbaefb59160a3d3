//! [`Inner`]: what one built cache holds (shared by its clones), and the
//! operations every public call and macro is made of: read, encode, write,
//! evict, and the replay of evictions that did not reach Redis.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::Backend;
use crate::backend::breaker::BreakerState;
use crate::background::Background;
use crate::clock::now_ms;
use crate::codec::extended::{self, Stamp};
use crate::codec::{Codec, Decoded, Meta};
use crate::error::Error;
use crate::flight::Flights;
use crate::journal::{Eviction, Journal, Pending, Replayer};
use crate::key::Keys;
use crate::near::{Near, NearCopy, NearTier};
use crate::options::{CacheOptions, Policy};
use crate::shape::Value;
use crate::telemetry::Telemetry;
use crate::telemetry::meters::Tier;

/// What a read found: the near tier's copy, or the backend's bytes.
enum Fetched {
    Near(Arc<NearCopy>),
    Backend(Option<Bytes>),
}

pub(crate) struct Inner {
    me: Weak<Inner>,
    backend: Backend,
    /// The in-process tier in front of Redis, when built with one.
    near: Option<NearTier>,
    keys: Keys,
    settings: CacheOptions,
    telemetry: Telemetry,
    flights: Flights,
    journal: Journal,
    /// Loads the cache finishes on its own, and the fail-safe throttle.
    background: Background,
    /// The sampled reads behind `Cache::hot_keys`.
    pub(crate) hot: crate::hot::sample::Hot,
}

impl Inner {
    pub(crate) fn new(
        backend: Backend,
        near: Option<NearTier>,
        settings: CacheOptions,
    ) -> Arc<Self> {
        let telemetry = Telemetry::new(
            &settings.namespace,
            settings.advice,
            Tier::of(backend.name()),
        );
        Arc::new_cyclic(|me: &Weak<Inner>| {
            let journal = Journal::new(settings.journal_capacity);
            let replayer: Weak<dyn Replayer> = me.clone();
            journal.replayed_by(replayer);
            Self {
                me: me.clone(),
                keys: Keys::with_limit(&settings.namespace, settings.version, settings.max_key_len),
                journal,
                backend,
                near,
                settings,
                telemetry,
                flights: Flights::default(),
                background: Background::default(),
                hot: crate::hot::sample::Hot::default(),
            }
        })
    }

    /// A weak handle on this cache, for tasks that must not keep it alive.
    pub(crate) fn me(&self) -> Weak<Inner> {
        self.me.clone()
    }

    pub(crate) fn background(&self) -> &Background {
        &self.background
    }

    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
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

    pub(crate) fn defaults(&self) -> &Policy {
        &self.settings.defaults
    }

    pub(crate) fn max_value_size(&self) -> u64 {
        self.settings.max_value_size
    }

    pub(crate) fn lease_time(&self) -> Duration {
        self.settings.lease_time
    }

    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The near tier, when the cache has one.
    pub(crate) fn near(&self) -> Option<&Near> {
        self.near.as_deref()
    }

    /// A write of `full` through this cache: its near copy goes, and reads
    /// of it in flight do not store what they got.
    pub(crate) fn near_written(&self, full: &str) {
        if let Some(near) = &self.near {
            near.evict(full);
        }
    }

    /// What is at `full`: the near tier's copy when it holds one, else the
    /// backend's bytes, offered to the near tier on the way.
    async fn fetch(&self, full: &str) -> Result<Fetched, Error> {
        self.hot.note(full);
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
                if self.telemetry.answered(self.backend.name()) {
                    self.telemetry
                        .meters()
                        .breaker(self.backend.breaker() != BreakerState::Closed);
                }
                if !self.journal.is_settled() {
                    self.journal.request_replay();
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
        self.telemetry.failure(self.backend.name(), error, || {
            self.backend.breaker() != BreakerState::Closed
        });
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
        #[cfg(feature = "memory")]
        #[allow(irrefutable_let_patterns)] // without the `redis` feature
        if let Backend::Memory(memory) = &self.backend {
            // Decoded once, by the first reader; cloned from then on.
            self.hot.note(full);
            let Some(found) = memory.read(full) else {
                return Ok(None);
            };
            // An entry of an evicted tag reads as missing (untagged: one
            // byte compare).
            if !self.tags_hold(&found.bytes).await? {
                return Ok(None);
            }
            if let Some(decoded) = found.decoded::<Decoded<T>>() {
                return Ok(Some((decoded.clone(), false)));
            }
            let decoded = self.decode::<T>(full, &found.bytes);
            if let Some(decoded) = &decoded {
                found.keep(decoded.clone());
            }
            return Ok(decoded.map(|d| (d, false)));
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

    /// Runs `write`, an eviction of `targets` (or a write that replaces
    /// them), under the journal: recorded before it is sent, struck off
    /// once Redis confirms it, kept for the replay otherwise (including
    /// when this future is dropped at the await).
    pub(crate) async fn evicting<T>(
        &self,
        targets: impl IntoIterator<Item = Eviction>,
        write: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let targets: Vec<Eviction> = targets.into_iter().collect();
        self.near_evict(&targets);
        let evictions: Vec<Pending<'_>> = targets
            .iter()
            .cloned()
            .map(|target| {
                match &target {
                    Eviction::Key(key) => self.flights.detach(key),
                    Eviction::Prefix(prefix) => self.flights.detach_prefix(prefix),
                }
                self.journal.record(target)
            })
            .collect();
        let result = self.observe(write.await);
        // Again once Redis answered: a read that got the old value while the
        // write was on its way must not keep it.
        self.near_evict(&targets);
        if result.is_ok() {
            evictions.into_iter().for_each(Pending::done);
        }
        result
    }

    /// Drops the near copies of `targets`: a key's, or for a prefix the
    /// whole tier (it holds only this cache's keys, and prefix evictions
    /// are rare).
    pub(crate) fn near_evict(&self, targets: &[Eviction]) {
        let Some(near) = &self.near else {
            return;
        };
        for target in targets {
            match target {
                Eviction::Key(key) => near.evict(key),
                Eviction::Prefix(_) => near.evict_all(),
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
        let encoded = crate::ttl::px(ttl)
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
        self.evicting([Eviction::Key(full.to_owned())], write).await
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
        self.evicting([Eviction::Key(full.to_owned())], write).await
    }

    /// [`delete_full`](Self::delete_full) for many keys, in one round trip
    /// per batch; how many existed.
    pub(crate) async fn delete_many_full(&self, fulls: &[String]) -> Result<u64, Error> {
        let targets = fulls.iter().map(|full| Eviction::Key(full.clone()));
        self.evicting(targets, self.backend.delete_many(fulls))
            .await
    }

    /// Removes every entry under a full key prefix.
    pub(crate) async fn evict_prefix_full(&self, prefix: &str) -> Result<u64, Error> {
        let write = self.backend.evict_prefix(prefix);
        self.evicting([Eviction::Prefix(prefix.to_owned())], write)
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
}
