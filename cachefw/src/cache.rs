//! [`Cache`]: the handle, its low-level operations, and the cache-aside
//! orchestration of [`Cache::get_or_load`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aside::Policy;
use crate::backend::Backend;
use crate::builder::Settings;
use crate::codec::Entry;
use crate::flight::Flights;
use crate::key::Keys;
use crate::report::Reporter;
use crate::shape::{Fallible, FallibleOptional};
use crate::stats::Counters;
use crate::{CacheBuilder, Codec, Error, Stats};

/// A cache: a cheap, cloneable handle over one backend (Redis or memory).
///
/// Clones share everything: the connection, the counters, and the
/// single-flight state that coalesces concurrent loads of one key. Caches
/// built by separate [`CacheBuilder::build`] calls share none of it.
///
/// ```
/// use std::time::Duration;
/// use cachefw::Cache;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = Cache::builder().namespace("shop").build().await?;
///
/// let name: Result<String, std::io::Error> = cache
///     .get_or_load("user:42:name", Duration::from_secs(60), || async {
///         Ok("Ada".to_string()) // the source: a database, a service…
///     })
///     .await;
/// assert_eq!(name.ok().as_deref(), Some("Ada"));
/// assert_eq!(cache.get::<String>("user:42:name").await?.as_deref(), Some("Ada"));
/// assert_eq!(cache.stats().loads, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) backend: Backend,
    pub(crate) keys: Keys,
    namespace: String,
    version: u32,
    pub(crate) codec: Codec,
    default_ttl: Duration,
    pub(crate) lease_time: Duration,
    pub(crate) jitter: f64,
    pub(crate) stats: Counters,
    pub(crate) flights: Flights,
    reporter: Reporter,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend.name())
            .field("namespace", &self.inner.namespace)
            .field("version", &self.inner.version)
            .field("codec", &self.inner.codec)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Starts configuring a cache. With no backend named, it is in memory.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    pub(crate) fn new(backend: Backend, settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                keys: Keys::new(&settings.namespace, settings.version),
                namespace: settings.namespace,
                version: settings.version,
                codec: settings.codec,
                default_ttl: settings.default_ttl,
                lease_time: settings.lease_time,
                jitter: settings.jitter,
                stats: Counters::default(),
                flights: Flights::default(),
                reporter: Reporter::new(),
            }),
        }
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The full key whose user part `render` appends, in one allocation.
    pub(crate) fn render_key(&self, capacity: usize, render: impl FnOnce(&mut String)) -> String {
        self.inner.keys.render(capacity, render)
    }

    /// The namespace, the first part of every key.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The key version, the second part of every key.
    pub fn version(&self) -> u32 {
        self.inner.version
    }

    /// The TTL for callers that give none.
    pub fn default_ttl(&self) -> Duration {
        self.inner.default_ttl
    }

    /// `"redis"` or `"memory"`.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// The backend key of `key`: `{namespace}:v{version}:{key}`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder().namespace("shop").build().await?;
    /// assert_eq!(cache.full_key("user:42"), "shop:v1:user:42");
    /// # Ok(()) }
    /// ```
    pub fn full_key(&self, key: &str) -> String {
        self.inner.keys.full(key)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot(self.inner.backend.breaker())
    }

    /// Reads the value at `key`.
    ///
    /// An entry that does not decode as `T` (garbage, another codec's, or
    /// another type's) reads as `None`; it is counted in [`Stats::errors`]
    /// and logged.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] or [`Error::Timeout`] when Redis fails.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.inner.read(&self.inner.keys.full(key)).await {
            Ok(Some(Entry::Value(value))) => {
                self.inner.stats.hit();
                Ok(Some(value))
            }
            // A cached "no value" is no value to return, and a key being
            // loaded has none yet.
            Ok(Some(Entry::Absent | Entry::Leased) | None) => {
                self.inner.stats.miss();
                Ok(None)
            }
            Err(error) => {
                self.inner.stats.miss();
                Err(error)
            }
        }
    }

    /// Stores `value` at `key` for `ttl`, replacing what was there.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTtl`] for a TTL under a millisecond, [`Error::Encode`]
    /// when `value` does not serialize, [`Error::Redis`] or
    /// [`Error::Timeout`] when Redis fails.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.inner
            .set_full(&self.inner.keys.full(key), value, ttl)
            .await
    }

    /// Removes the entry at `key`; `true` if there was one.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] or [`Error::Timeout`] when Redis fails.
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.inner.delete_full(&self.inner.keys.full(key)).await
    }

    /// The time `key` has left to live; `None` when it does not exist (or,
    /// in Redis, was stored by someone else without an expiry).
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] or [`Error::Timeout`] when Redis fails.
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, Error> {
        let inner = &self.inner;
        inner.observe(inner.backend.ttl(&inner.keys.full(key)).await)
    }

    /// Removes every entry whose key starts with `prefix`, taken literally
    /// (`*`, `?`, `[` and `\` match only themselves), and returns how many
    /// were removed. Over Redis this is `SCAN` + `UNLINK` in batches, never
    /// `KEYS`; entries written while it runs may survive it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder().build().await?;
    /// let ttl = Duration::from_secs(60);
    /// cache.set("user:1", &1, ttl).await?;
    /// cache.set("user:2", &2, ttl).await?;
    /// cache.set("order:1", &3, ttl).await?;
    /// assert_eq!(cache.evict_prefix("user:").await?, 2);
    /// assert_eq!(cache.get::<i32>("order:1").await?, Some(3));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] or [`Error::Timeout`] when Redis fails part-way;
    /// entries removed before the failure stay removed.
    pub async fn evict_prefix(&self, prefix: &str) -> Result<u64, Error> {
        let inner = &self.inner;
        inner.flights.detach_prefix(&inner.keys.full(prefix));
        inner.observe(inner.backend.evict_prefix(&inner.keys, prefix).await)
    }

    /// Cache-aside: returns the value at `key`, or calls `loader`, stores its
    /// `Ok` value for `ttl`, and returns it.
    ///
    /// - Concurrent misses of one key on this cache (and its clones) call the
    ///   loader once; the others wait and receive a clone of its value.
    /// - Concurrent misses of one key on other caches (other processes) on
    ///   the same Redis wait for the one load that holds the key's lease,
    ///   up to the lease time ([`CacheBuilder::lease_time`]).
    /// - An `Err` from the loader is returned unchanged and never stored. It
    ///   reaches only the caller whose loader produced it; callers that were
    ///   waiting on that load then try again: one loads, the others get its
    ///   value.
    /// - A value loaded before a `delete`, `set` or eviction of its key is
    ///   returned but not stored (no stale fill).
    /// - A cache failure (Redis down or slow, an entry that does not decode,
    ///   a value that does not encode) never becomes an `Err`: it is counted
    ///   in [`Stats::errors`], logged, and the loader's value is returned.
    ///
    /// # Errors
    ///
    /// Only the loader's own error.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let policy = Policy {
            ttl,
            absent_ttl: None,
            jitter: self.inner.jitter,
        };
        let full = self.inner.keys.full(key);
        self.inner
            .through::<Fallible<T, E>, _, _>(&full, &policy, |_| false, loader)
            .await
    }

    /// [`get_or_load`](Self::get_or_load) for a source that may have no
    /// value: `Ok(Some(T))` is stored for `ttl`; `Ok(None)` is stored for
    /// `none_ttl` when given (so absent rows are not looked up again and
    /// again), otherwise not at all; an `Err` never.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder().build().await?;
    /// let minute = Duration::from_secs(60);
    /// let found = cache
    ///     .get_or_load_optional("user:7", minute, Some(minute), || async {
    ///         Ok::<Option<String>, std::io::Error>(None) // no such user
    ///     })
    ///     .await;
    /// assert!(matches!(found, Ok(None)));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Only the loader's own error.
    pub async fn get_or_load_optional<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        none_ttl: Option<Duration>,
        loader: F,
    ) -> Result<Option<T>, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let policy = Policy {
            ttl,
            absent_ttl: none_ttl,
            jitter: self.inner.jitter,
        };
        let full = self.inner.keys.full(key);
        self.inner
            .through::<FallibleOptional<T, E>, _, _>(&full, &policy, |_| false, loader)
            .await
    }
}

impl Inner {
    /// Notes the backend's answer on its way to the caller: a failure is
    /// counted and logged, an answer after failures logged as a recovery.
    pub(crate) fn observe<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        match &result {
            Ok(_) => self.reporter.answered(self.backend.name()),
            Err(error) if error.is_backend_failure() => self.failure(error),
            // A mistake in the call, returned to the caller as it is.
            Err(_) => {}
        }
        result
    }

    pub(crate) fn failure(&self, error: &Error) {
        self.reporter
            .failure(&self.stats, self.backend.name(), error);
    }

    /// The entry at `full`. A miss, a failure and an entry that does not
    /// decode are not counted here but as the caller interprets them; the
    /// failure and the bad entry are reported.
    pub(crate) async fn read<T: DeserializeOwned>(
        &self,
        full: &str,
    ) -> Result<Option<Entry<T>>, Error> {
        let Some(bytes) = self.observe(self.backend.get(full).await)? else {
            return Ok(None);
        };
        match self.codec.decode(&bytes) {
            Ok(entry) => Ok(Some(entry)),
            Err(reason) => {
                self.failure(&Error::Decode {
                    key: full.to_owned(),
                    reason: reason.to_string(),
                });
                Ok(None)
            }
        }
    }

    /// The bytes that store `value`: header and payload.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        full: &str,
        value: &T,
    ) -> Result<Vec<u8>, Error> {
        self.codec.encode(value).map_err(|reason| Error::Encode {
            key: full.to_owned(),
            codec: self.codec,
            reason,
        })
    }

    /// Stores `value` at a full key over whatever it holds. The write
    /// replaces any lease on the key, so a load that began before it cannot
    /// fill over it; loads joining now start afresh. A backend failure is
    /// counted and logged.
    async fn set_full<T: Serialize + ?Sized>(
        &self,
        full: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.flights.detach(full);
        let written = async {
            let ttl_ms = crate::ttl::millis(full, ttl)?;
            let bytes = self.encode(full, value)?;
            self.backend.set(full, Bytes::from(bytes), ttl_ms).await
        };
        self.observe(written.await)
    }

    /// Removes the entry at a full key, and with it any lease: a load that
    /// began before cannot fill it, and later callers start a new load.
    pub(crate) async fn delete_full(&self, full: &str) -> Result<bool, Error> {
        self.flights.detach(full);
        self.observe(self.backend.delete(full).await)
    }

    /// [`set_full`](Self::set_full) for a `#[cache_put]`: every failure is
    /// counted and logged, none returned.
    pub(crate) async fn put_full<V: Serialize>(&self, full: &str, value: &V, ttl: Duration) {
        if let Err(error) = self.set_full(full, value, ttl).await
            && !error.is_backend_failure()
        {
            self.failure(&error);
        }
    }
}
