use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::breaker::BreakerState;

/// A snapshot of a cache's counters, from [`Cache::stats`](crate::Cache::stats).
///
/// Counters start at zero when the cache is built and are shared by its clones.
/// It serializes with serde as an object of its fields, the breaker as
/// `"closed"`, `"open"` or `"half_open"` (for a stats endpoint).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = cachefw::Cache::builder().build().await?;
/// let stats = cache.stats();
/// assert_eq!(stats.hits + stats.misses, 0);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Reads that found a usable value.
    pub hits: u64,
    /// Reads that found nothing, a value that did not decode, or could not
    /// reach the backend.
    pub misses: u64,
    /// Loader calls made by [`Cache::get_or_load`](crate::Cache::get_or_load).
    pub loads: u64,
    /// Backend failures: errors, timeouts, and values that did not decode.
    pub errors: u64,
    /// Misses that waited for a load already running on this cache instead of
    /// calling their own loader.
    pub coalesced: u64,
    /// Of `errors`, the calls that skipped Redis because the circuit breaker
    /// was open.
    pub short_circuited: u64,
    /// The circuit breaker's state now (on a Redis Cluster, `Open` while
    /// any node's breaker is open).
    pub breaker: BreakerState,
    /// Of `hits`, reads answered with a value past its TTL:
    /// stale-while-revalidate, fail-safe (`stale_if_error`) and load
    /// timeouts.
    pub stale_served: u64,
    /// Background loads: refreshes ahead of expiry and revalidations of
    /// stale entries.
    pub refreshes: u64,
    /// Evictions that have not reached Redis yet (it was down, slow, or the
    /// caller was cancelled); they are replayed when Redis answers, and
    /// reads of their keys bypass Redis until then.
    pub pending_evictions: u64,
    /// Of `hits`, reads answered by the near tier (no round trip to Redis;
    /// see `CacheBuilder::near_cache`).
    pub near_hits: u64,
    /// How long the breaker has been in its state (`breaker`): closed since
    /// it last closed, open since it opened, half open since its interval
    /// ended. Serialized as `breaker_for_secs`, in (fractional) seconds.
    #[serde(rename = "breaker_for_secs", serialize_with = "seconds")]
    pub breaker_for: Duration,
    /// Misses that joined a load on this cache whose fill was refused
    /// because its key was evicted or written while it ran (perhaps by
    /// another process, perhaps before they asked), and so loaded again,
    /// once: the loads they started anew. Read your writes across
    /// processes costs this many extra loads.
    pub reloads: u64,
    /// Writes to the cache: values stored (fills, `set`, `#[cache_put]`)
    /// and evictions (`delete`, `evict_prefix`, `#[cache_evict]`, a
    /// followed stream's entries). Over the source's writes, the write
    /// amplification; see also `cachefw_writes_total{op}`.
    pub writes: u64,
}

fn seconds<S: serde::Serializer>(duration: &Duration, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_f64(duration.as_secs_f64())
}

impl Stats {
    /// Hits over all reads, or `None` before the first read.
    #[must_use]
    pub fn hit_ratio(&self) -> Option<f64> {
        let reads = self.hits + self.misses;
        (reads > 0).then(|| self.hits as f64 / reads as f64)
    }
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    errors: AtomicU64,
    coalesced: AtomicU64,
    short_circuited: AtomicU64,
    stale_served: AtomicU64,
    refreshes: AtomicU64,
    near_hits: AtomicU64,
    reloads: AtomicU64,
}

impl Counters {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A read answered by the near tier: a hit, and one of these.
    pub(crate) fn near_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.near_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn load(&self) {
        self.loads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn coalesced(&self) {
        self.coalesced.fetch_add(1, Ordering::Relaxed);
    }

    /// A read answered with a stale value: a hit, and one of these.
    pub(crate) fn stale_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.stale_served.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refresh(&self) {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reload(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn short_circuited(&self) {
        self.short_circuited.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        (breaker, breaker_for): (BreakerState, Duration),
        pending_evictions: u64,
    ) -> Stats {
        Stats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            short_circuited: self.short_circuited.load(Ordering::Relaxed),
            breaker,
            stale_served: self.stale_served.load(Ordering::Relaxed),
            refreshes: self.refreshes.load(Ordering::Relaxed),
            pending_evictions,
            near_hits: self.near_hits.load(Ordering::Relaxed),
            breaker_for,
            reloads: self.reloads.load(Ordering::Relaxed),
            writes: 0,
        }
    }
}
