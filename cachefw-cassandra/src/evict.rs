//! The eviction that follows a write, held by a guard from before the
//! request is sent: a caller cut off while the write is in flight (a
//! timeout, a dropped future) may leave a changed row behind, so the guard
//! still evicts, from a task, when it is dropped armed.

use cachefw::Cache;

/// The cache entries a write may change, evicted exactly once unless the
/// write was refused.
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

    /// Evicts now, every key in one call of the cache. A cache failure is
    /// the cache's to count, log and replay; it never fails the write.
    pub(crate) async fn run(mut self) {
        evict(&self.cache, &self.keys).await;
        self.armed = false;
    }

    /// The write was refused: the row is as it was, the entries stay.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

async fn evict(cache: &Cache, keys: &[String]) {
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    // The cache journals an eviction it cannot deliver and replays it; the
    // error is already counted and logged there.
    let _ = cache.delete_many(&keys).await;
}

impl Drop for Eviction {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (cache, keys) = (self.cache.clone(), std::mem::take(&mut self.keys));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { evict(&cache, &keys).await });
            }
            // Dropped outside any runtime (at shutdown): nothing can run the
            // eviction any more; say which entries may be stale.
            Err(_) => tracing::warn!(
                ?keys,
                "cachefw-cassandra: a write was cut off outside a runtime; its entries were not evicted"
            ),
        }
    }
}
