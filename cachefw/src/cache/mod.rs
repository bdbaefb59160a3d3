//! [`Cache`]: the public handle and its operations; the work is `Inner`'s.

mod many;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aside::{Aside, Borrowed, Owned};
use crate::clock::now_ms;
use crate::codec::{Decoded, Entry, meta_of};
use crate::error::Error;
use crate::inner::Inner;
use crate::options::Policy;
use crate::shape::{ResultOptionShape, ResultShape};
use crate::stats::Stats;
use crate::telemetry::meters::{NO_SITE, WriteOp};

/// A cache: a cheap, cloneable handle over one backend (Redis or memory).
///
/// Clones share everything: the connection, the counters, and the
/// single-flight state that coalesces concurrent loads of one key. Caches
/// built by separate [`CacheBuilder::build`](crate::CacheBuilder::build) calls share none of it.
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
    handle: Arc<Handle>,
}

/// What the user's clones share. Background work (refreshes, loads past
/// their timeout) holds the `Inner` but not this: when the last `Cache`
/// goes, the handle aborts it, so no task outlives its cache unnoticed.
pub(crate) struct Handle {
    inner: Arc<Inner>,
    /// Set by `shutdown`, and closed when the last handle goes: the
    /// cache's own loops (stream followers, the hot-key flusher) end then.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.background().abort();
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner().backend().name())
            .field("namespace", &self.inner().namespace())
            .field("version", &self.inner().version())
            .field("codec", &self.inner().codec())
            .finish_non_exhaustive()
    }
}

impl Cache {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        let (closing, _) = tokio::sync::watch::channel(false);
        Self {
            handle: Arc::new(Handle { inner, closing }),
        }
    }

    /// Flips to `true` at `shutdown`; closed when the last handle goes.
    pub(crate) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.handle.closing.subscribe()
    }

    pub(crate) fn from_handle(handle: Arc<Handle>) -> Self {
        Self { handle }
    }

    pub(crate) fn handle(&self) -> &Arc<Handle> {
        &self.handle
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    /// The namespace, the first part of every key.
    pub fn namespace(&self) -> &str {
        self.inner().namespace()
    }

    /// The key version, the second part of every key.
    pub fn version(&self) -> u32 {
        self.inner().version()
    }

    /// The TTL for callers that give none.
    pub fn default_ttl(&self) -> Duration {
        self.inner().defaults().ttl
    }

    /// `"redis"` or `"memory"`.
    pub fn backend_name(&self) -> &'static str {
        self.inner().backend().name()
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
        self.inner().keys().full(key)
    }

    /// One real round trip to Redis (on a cluster, to every primary, the
    /// slowest returned), made even while the circuit breaker is open and
    /// without changing it: for readiness probes. The in-memory backend
    /// answers `Ok(Duration::ZERO)`.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder().redis("redis://127.0.0.1:6379").build().await?;
    /// let round_trip = cache.ping().await?;
    /// println!("Redis answered in {round_trip:?}");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] past the cache's timeout, [`Error::Redis`] when a
    /// server fails or refuses (both name the server in `key`).
    pub async fn ping(&self) -> Result<Duration, Error> {
        self.inner().backend().ping().await
    }

    /// A snapshot of the counters (`Serialize`, e.g. for a status page).
    pub fn stats(&self) -> Stats {
        let pending = u64::try_from(self.inner().pending_evictions()).unwrap_or(u64::MAX);
        let mut stats = self
            .inner()
            .telemetry()
            .stats()
            .snapshot(self.inner().backend().breaker_for(), pending);
        stats.writes = self.inner().telemetry().meters().writes();
        stats
    }

    /// Counts `count` writes of `op` made through a `Cache` method, once
    /// they reached Redis or the journal took them.
    fn wrote<T>(&self, result: &Result<T, Error>, op: WriteOp, count: u64) {
        if result.is_ok() {
            self.inner().telemetry().meters().write(NO_SITE, op, count);
        }
    }

    /// Reads the value at `key`.
    ///
    /// An entry that does not decode as `T` (garbage, another codec's, or
    /// another type's), or is larger than
    /// [`max_value_size`](crate::CacheBuilder::max_value_size) (it is then
    /// never read in full), reads as `None`; it is counted in
    /// [`Stats::errors`] and logged. A key whose eviction Redis has not
    /// confirmed yet (see [`delete`](Self::delete)) reads as `None` too,
    /// without asking Redis, and so does an entry past its TTL (one kept for
    /// [`stale_while_revalidate`](crate::CacheBuilder::stale_while_revalidate)
    /// or [`stale_if_error`](crate::CacheBuilder::stale_if_error)).
    ///
    /// # Errors
    ///
    /// - Over Redis only: [`Error::Unavailable`] while the circuit breaker
    ///   is open after repeated failures (Redis is not asked),
    ///   [`Error::Timeout`] when Redis did not answer within the
    ///   [`timeout`](crate::CacheBuilder::timeout), [`Error::Redis`] when
    ///   the connection failed or Redis answered with an error.
    ///
    /// Never for an entry that does not decode or is too large: that is
    /// `None`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let inner = self.inner();
        let full = inner.keys().full(key);
        let span = tracing::debug_span!(
            crate::telemetry::GET_SPAN,
            namespace = inner.namespace(),
            function = crate::telemetry::meters::NO_SITE,
            key = full.as_str(),
            outcome = tracing::field::Empty,
            tier = inner.backend().name(),
        );
        tracing::Instrument::instrument(self.get_full(&full), span).await
    }

    async fn get_full<T: DeserializeOwned>(&self, full: &str) -> Result<Option<T>, Error> {
        match self.inner().read(full).await {
            Ok(Some((
                Decoded {
                    entry: Entry::Value(value),
                    meta,
                },
                near,
            ))) if meta.expires_ms > now_ms() => {
                self.inner()
                    .telemetry()
                    .hit(crate::telemetry::meters::NO_SITE, near);
                Ok(Some(value))
            }
            // A cached "no value" is no value to return, a key being loaded
            // has none yet, and a value past its TTL is none to `get`.
            Ok(Some(_) | None) => {
                self.inner()
                    .telemetry()
                    .miss(crate::telemetry::meters::NO_SITE);
                Ok(None)
            }
            Err(error) => {
                self.inner()
                    .telemetry()
                    .miss(crate::telemetry::meters::NO_SITE);
                Err(error)
            }
        }
    }

    /// Stores `value` at `key` for `ttl` (less the builder's
    /// [`ttl_jitter`](crate::CacheBuilder::ttl_jitter), if set), replacing
    /// what was there. A write that does not reach Redis leaves the old
    /// value there: it is then evicted as a failed [`delete`](Self::delete)
    /// is.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidTtl`]: a TTL under a millisecond or beyond what
    ///   Redis stores.
    /// - [`Error::Encode`]: `value` does not serialize with the codec.
    /// - [`Error::ValueTooLarge`]: its encoding is larger than
    ///   [`max_value_size`](crate::CacheBuilder::max_value_size) (counted in
    ///   [`Stats::errors`]; the old entry is evicted).
    /// - Over Redis only: [`Error::Unavailable`] while the breaker is open,
    ///   [`Error::Timeout`], [`Error::Redis`], as for [`get`](Self::get);
    ///   the old entry is then evicted as a failed
    ///   [`delete`](Self::delete) is.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), Error> {
        let ttl = Policy::with_ttl(ttl, None, self.inner().defaults()).jittered(ttl);
        let result = self
            .inner()
            .set_full(&self.inner().keys().full(key), value, ttl, None)
            .await;
        self.wrote(&result, WriteOp::Store, 1);
        result
    }

    /// Removes the entry at `key`; `true` if there was one.
    ///
    /// An eviction that cannot reach Redis (down, frozen, the breaker open,
    /// or this future dropped before Redis confirmed it) is not forgotten:
    /// it is kept and replayed as soon as Redis answers again, and until
    /// then reads of `key` through this cache bypass Redis. The journal
    /// lives in this process: a failover to a replica that never saw the
    /// delete is covered only while the process lives.
    ///
    /// # Errors
    ///
    /// - Over Redis only: [`Error::Unavailable`] while the breaker is open,
    ///   [`Error::Timeout`], [`Error::Redis`], as for [`get`](Self::get).
    ///   The eviction is then pending, as above: the error says that Redis
    ///   has not confirmed it yet, not that it is lost.
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        let result = self
            .inner()
            .delete_full(&self.inner().keys().full(key))
            .await;
        self.wrote(&result, WriteOp::Evict, 1);
        result
    }

    /// [`delete`](Self::delete) for many keys at once, in one round trip per
    /// batch (per node, on a cluster); how many existed.
    ///
    /// # Errors
    ///
    /// As [`delete`](Self::delete), for any of the keys; every key whose
    /// eviction failed is pending.
    pub async fn delete_many(&self, keys: &[&str]) -> Result<u64, Error> {
        let fulls: Vec<String> = keys
            .iter()
            .map(|key| self.inner().keys().full(key))
            .collect();
        let result = self.inner().delete_many_full(&fulls).await;
        self.wrote(&result, WriteOp::Evict, fulls.len() as u64);
        result
    }

    /// The time `key` has left to live: of its TTL itself, not of the
    /// stale windows it may be kept for beyond it. `None` when it does not
    /// exist, is past its TTL, or is not a cachefw entry.
    ///
    /// # Errors
    ///
    /// Over Redis, [`Error::Unavailable`] while the
    /// breaker is open, [`Error::Timeout`] or [`Error::Redis`]: as for
    /// [`get`](Self::get).
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, Error> {
        let inner = self.inner();
        let full = inner.keys().full(key);
        if inner.bypasses(&full) {
            return Ok(None);
        }
        let bytes = inner.backend_get(&full).await?;
        let now = now_ms();
        Ok(bytes
            .as_deref()
            .and_then(meta_of)
            .filter(|meta| meta.expires_ms > now)
            .map(|meta| Duration::from_millis(meta.expires_ms - now)))
    }

    /// Removes every entry whose key starts with `prefix`, taken literally
    /// (`*`, `?`, `[` and `\` match only themselves), and returns how many
    /// were removed. The empty prefix removes every entry of this namespace
    /// and version, as [`clear`](Self::clear) does (and nothing of other
    /// namespaces or versions, nor the write-behind streams of
    /// `cachefw-cassandra`, which live outside the version); `clear` also
    /// settles the evictions waiting for Redis, so prefer it. Over Redis this is `SCAN` + `UNLINK` in batches, never
    /// `KEYS`: it walks the whole keyspace of the server (every primary of
    /// a cluster), on the caller's time, so keep it off hot request paths.
    /// Entries written while it runs may survive it. In memory it runs on
    /// the blocking pool. A failed eviction is kept and replayed, as for
    /// [`delete`](Self::delete).
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
    /// - Over Redis only: [`Error::Unavailable`] while the breaker is open,
    ///   [`Error::Timeout`] or [`Error::Redis`] when Redis fails part-way
    ///   (entries removed before the failure stay removed);
    ///   [`Error::PartialEviction`] when a cluster primary could not be
    ///   reached. The eviction is then pending, as for
    ///   [`delete`](Self::delete).
    pub async fn evict_prefix(&self, prefix: &str) -> Result<u64, Error> {
        let inner = self.inner();
        let result = inner
            .evict_prefix_full(&inner.keys().prefixed(prefix))
            .await;
        self.wrote(&result, WriteOp::Evict, 1);
        result
    }

    /// Removes every entry of this namespace and version (what
    /// `evict_prefix("")` removes); how many. It also settles every eviction
    /// that was waiting for Redis, and lets reads use Redis again after the
    /// pending evictions overflowed their bound.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder().namespace("shop").build().await?;
    /// cache.set("user:1", &1, Duration::from_secs(60)).await?;
    /// cache.set("order:1", &2, Duration::from_secs(60)).await?;
    /// assert_eq!(cache.clear().await?, 2);
    /// assert_eq!(cache.get::<i32>("user:1").await?, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Over Redis only: [`Error::Unavailable`] while the breaker is open,
    /// [`Error::Timeout`], [`Error::Redis`] or [`Error::PartialEviction`],
    /// as for [`evict_prefix`](Self::evict_prefix).
    pub async fn clear(&self) -> Result<u64, Error> {
        let result = self.inner().clear().await;
        self.wrote(&result, WriteOp::Evict, 1);
        result
    }

    /// Cache-aside: returns the value at `key`, or calls `loader`, stores its
    /// `Ok` value for `ttl`, and returns it.
    ///
    /// - Concurrent misses of one key on this cache (and its clones) call the
    ///   loader once; the others wait and receive a clone of its value.
    /// - Concurrent misses of one key on other caches (other processes) on
    ///   the same Redis wait for the one load that holds the key's lease,
    ///   up to the lease time ([`CacheBuilder::lease_time`](crate::CacheBuilder::lease_time)).
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
    /// Only the loader's own error. A cache failure (any error
    /// [`get`](Self::get) or [`set`](Self::set) would return, such as
    /// [`Error::Unavailable`] while the breaker is open) is counted in [`Stats::errors`] and logged,
    /// and the loader's value is returned.
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
        let policy = Policy::with_ttl(ttl, None, self.inner().defaults());
        let full = self.inner().keys().full(key);
        Aside::new(self.inner())
            .through::<ResultShape<T, E>, _>(&full, &policy, Borrowed(loader, |_: &T| false))
            .await
    }

    /// [`get_or_load`](Self::get_or_load) with the TTL computed from the
    /// loaded value, once per store (as the macros' `ttl = <expr>`): a
    /// quote that may change any second for 5 s, a settled one for 10 min.
    /// [`Duration::ZERO`] stores nothing. Refreshes and stale windows
    /// follow the builder's defaults.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder().build().await?;
    /// let ttl_of = |p: &(u64, bool)| Duration::from_secs(if p.1 { 5 } else { 600 });
    /// let load = || async { Ok::<_, std::io::Error>((1999u64, true)) };
    /// let price = cache.get_or_load_with_ttl("price:1", ttl_of, load).await;
    /// assert_eq!(price.ok(), Some((1999, true)));
    /// assert!(cache.ttl("price:1").await?.is_some_and(|ttl| ttl <= Duration::from_secs(5)));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Only the loader's own error, as for [`get_or_load`](Self::get_or_load).
    pub async fn get_or_load_with_ttl<T, E, F, Fut>(
        &self,
        key: &str,
        ttl_of: impl FnOnce(&T) -> Duration,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = self.inner();
        let policy = Policy::with_ttl(inner.defaults().ttl, None, inner.defaults());
        let full = inner.keys().full(key);
        let keep = crate::keep::TtlFrom(|_: &T| false, |value: &T| Some(ttl_of(value)));
        Aside::new(inner)
            .through::<ResultShape<T, E>, _>(&full, &policy, Borrowed(loader, keep))
            .await
    }

    /// [`get_or_load`](Self::get_or_load) of an entry that carries `tags`:
    /// [`evict_tag`](Self::evict_tag) of any of them makes it a miss, in
    /// every process.
    ///
    /// A hit costs one round trip: the entry and its tags' tokens are read
    /// together (on a Cluster, alongside). A load that began before an
    /// `evict_tag` of one of its tags stores an entry that is a miss
    /// afterwards. Tagged entries are not kept in the near tier. While an
    /// eviction of one of its tags waits for Redis, the value is loaded and
    /// not stored.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder().build().await?;
    /// let ttl = Duration::from_secs(600);
    /// let load = || async { Ok::<_, std::io::Error>(vec![1u64, 2]) };
    /// let orders = cache.get_or_load_tagged("orders:42", ttl, &["user:42"], load).await;
    /// assert_eq!(orders.ok(), Some(vec![1, 2]));
    /// cache.evict_tag("user:42").await?;
    /// assert_eq!(cache.get::<Vec<u64>>("orders:42").await?, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Only the loader's own error, as for [`get_or_load`](Self::get_or_load).
    pub async fn get_or_load_tagged<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        tags: &[&str],
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let policy = Policy::with_ttl(ttl, None, self.inner().defaults());
        let full = self.inner().keys().full(key);
        let load = Borrowed(loader, |_: &T| false);
        crate::tags::through::<ResultShape<T, E>, _>(self.inner(), &full, policy, tags, load).await
    }

    /// [`set`](Self::set) of an entry that carries `tags`: an
    /// [`evict_tag`](Self::evict_tag) of any of them makes it a miss.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set); and when the tags' tokens cannot be read
    /// (Redis failing), that error, with the old entry evicted.
    pub async fn set_tagged<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
        tags: &[&str],
    ) -> Result<(), Error> {
        let ttl = Policy::with_ttl(ttl, None, self.inner().defaults()).jittered(ttl);
        let full = self.inner().keys().full(key);
        crate::tags::set(self.inner(), &full, value, ttl, tags).await
    }

    /// Makes every entry stored with `tag` (by
    /// [`set_tagged`](Self::set_tagged),
    /// [`get_or_load_tagged`](Self::get_or_load_tagged) or the macros'
    /// `tags = [...]`) before this call a miss, for every `Cache` of this
    /// namespace and version in any process, and drops nothing else.
    ///
    /// It costs one `DEL` of the tag's token however many entries carry
    /// it; the entries expire by their TTL. A load that began before it
    /// stores nothing readable under the tag afterwards. Against
    /// [`evict_prefix`](Self::evict_prefix), which `SCAN`s the namespace
    /// and needs related keys to share a prefix (rare, administrative
    /// evictions), a tag groups entries whatever their keys, in constant
    /// time, for a small key read per tagged hit (in the same round trip).
    ///
    /// # Errors
    ///
    /// As [`delete`](Self::delete): over Redis, [`Error::Unavailable`],
    /// [`Error::Timeout`] or [`Error::Redis`] when Redis did not confirm
    /// it. The eviction is then kept and replayed when Redis answers, and
    /// until then reads of entries carrying the tag bypass Redis.
    pub async fn evict_tag(&self, tag: &str) -> Result<(), Error> {
        crate::tags::evict(self.inner(), tag).await
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
        let policy = Policy::with_ttl(ttl, none_ttl, self.inner().defaults());
        let full = self.inner().keys().full(key);
        Aside::new(self.inner())
            .through::<ResultOptionShape<T, E>, _>(&full, &policy, Borrowed(loader, |_: &T| false))
            .await
    }

    /// [`get_or_load`](Self::get_or_load) with a loader the cache can own,
    /// so that work past the call can finish in the background: a refresh
    /// ahead of expiry ([`refresh_ahead`](crate::CacheBuilder::refresh_ahead)),
    /// a revalidation of a stale value
    /// ([`stale_while_revalidate`](crate::CacheBuilder::stale_while_revalidate)),
    /// and a load that outlasts the
    /// [`load_timeout`](crate::CacheBuilder::load_timeout) while a stale
    /// value answers the caller. With [`get_or_load`](Self::get_or_load),
    /// whose loader may borrow, the caller that triggers a refresh or a
    /// revalidation runs it itself (the other callers keep hitting), and a
    /// load past the timeout is cut off without a fill.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder()
    ///     .refresh_ahead(1.0)
    ///     .stale_while_revalidate(Duration::from_secs(30))
    ///     .build()
    ///     .await?;
    /// let sku = String::from("A1");
    /// let price = cache
    ///     .get_or_load_owned("price:A1", Duration::from_secs(60), move || async move {
    ///         Ok::<_, std::io::Error>(if sku == "A1" { 1_999u64 } else { 0 })
    ///     })
    ///     .await;
    /// assert_eq!(price.ok(), Some(1_999));
    /// cache.shutdown().await; // waits for background refreshes, if any
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Only the loader's own error; with
    /// [`stale_if_error`](crate::CacheBuilder::stale_if_error), a stale
    /// value answers instead while one is at hand.
    pub async fn get_or_load_owned<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let policy = Policy::with_ttl(ttl, None, self.inner().defaults());
        let full = self.inner().keys().full(key);
        Aside::new(self.inner())
            .through::<ResultShape<T, E>, _>(&full, &policy, Owned(loader, |_: &T| false))
            .await
    }

    /// Waits for this cache's background loads (refreshes, revalidations,
    /// loads past their timeout), at most the lease time, and aborts what is
    /// left then. Stream followers ([`follow_evictions`](Self::follow_evictions))
    /// stop. Dropping the last handle on the cache aborts them at once.
    pub async fn shutdown(&self) {
        self.handle.closing.send_replace(true);
        let inner = self.inner();
        inner.background().shutdown(inner.lease_time()).await;
    }
}
