//! The eviction that follows a write, held by a guard from before the
//! request is sent.
//!
//! After a success the entries are evicted once. After a write whose
//! outcome is unknown (a timeout, a lost connection, a caller cut off while
//! the request was in flight) the write may still be in a coordinator's
//! queue: evicting at once is not enough, since a read between the eviction
//! and the late write would cache the old row. Those entries are evicted at
//! once and again [`SETTLE`] later, by which time Cassandra has applied or
//! dropped the write (a replica drops a mutation that waited past the write
//! timeout, 2 s by default on Cassandra and ScyllaDB).

use std::time::Duration;

use cachefw::Cache;

/// How long after an unknown outcome the entries are evicted again.
const SETTLE: Duration = Duration::from_secs(3);

/// The cache entries a write may change: evicted unless the write was
/// refused, even when the caller is cut off.
pub(crate) struct Eviction {
    cache: Cache,
    keys: Vec<String>,
    armed: bool,
}

impl Eviction {
    /// Arms the eviction of `keys` (duplicates are dropped).
    pub(crate) fn new(cache: &Cache, mut keys: Vec<String>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        Self {
            cache: cache.clone(),
            keys,
            armed: true,
        }
    }

    /// The write succeeded: evicts now, every key in one call of the cache.
    pub(crate) async fn run(mut self) {
        evict(&self.cache, &self.keys).await;
        self.armed = false;
    }

    /// The write may or may not have happened: evicts now, and again after
    /// [`SETTLE`] from a task.
    pub(crate) async fn run_unsettled(mut self) {
        evict(&self.cache, &self.keys).await;
        self.armed = false;
        self.settle_later(false);
    }

    /// The write was refused: the row is as it was, the entries stay.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }

    /// Spawns the eviction after [`SETTLE`] (`now`: at once too).
    fn settle_later(&mut self, now: bool) {
        if self.keys.is_empty() {
            return;
        }
        let (cache, keys) = (self.cache.clone(), std::mem::take(&mut self.keys));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if now {
                        evict(&cache, &keys).await;
                    }
                    tokio::time::sleep(SETTLE).await;
                    evict(&cache, &keys).await;
                });
            }
            // Outside any runtime (dropped at shutdown) nothing can run the
            // eviction any more: say which entries may be stale.
            Err(_) => tracing::warn!(
                ?keys,
                "cachefw-cassandra: a write with an unknown outcome could not be evicted \
                 outside a tokio runtime"
            ),
        }
    }
}

/// Evicts `keys` in one call. A cache failure is the cache's to count, log
/// and replay (it journals an eviction it cannot deliver); it never fails
/// the write.
async fn evict(cache: &Cache, keys: &[String]) {
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let _ = cache.delete_many(&keys).await;
}

impl Drop for Eviction {
    fn drop(&mut self) {
        // Armed: the caller was cut off between arming and settling, while
        // the request may have been in flight.
        if self.armed {
            self.settle_later(true);
        }
    }
}
