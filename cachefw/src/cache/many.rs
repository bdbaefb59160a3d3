//! `Cache`'s batch reads: many keys in one round trip, and cache-aside
//! for many keys with one loader call (the flow is `batch.rs`).

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cache;
use crate::batch::Batch;
use crate::error::Error;
use crate::options::Policy;

impl Cache {
    /// The values at `keys`, in order, read in one round trip (pipelined
    /// `GETRANGE`s; one pipeline per slot on a Redis Cluster, all sent at
    /// once). A key that is missing, past its TTL, holds an entry that does
    /// not decode as `T`, or a value larger than `max_value_size` (never
    /// read in full) is `None` (a bad or oversized entry is counted in
    /// [`Stats::errors`](crate::Stats::errors)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder().build().await?;
    /// cache.set("user:1", &"Ada", Duration::from_secs(60)).await?;
    /// let names = cache.get_many::<String>(&["user:1", "user:2"]).await?;
    /// assert_eq!(names, [Some("Ada".to_owned()), None]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// - Over Redis only: [`Error::Unavailable`] while the breaker is open,
    ///   [`Error::Timeout`] or [`Error::Redis`] when Redis fails for any of
    ///   the keys, as for [`get`](Self::get).
    pub async fn get_many<T: DeserializeOwned>(
        &self,
        keys: &[&str],
    ) -> Result<Vec<Option<T>>, Error> {
        let fulls: Vec<String> = keys
            .iter()
            .map(|key| self.inner().keys().full(key))
            .collect();
        Batch::new(self.inner()).get_many_full(&fulls).await
    }

    /// Cache-aside for many keys: the cached values, and one call of
    /// `loader` for the keys that missed.
    ///
    /// - One read for all keys ([`get_many`](Self::get_many)); then the
    ///   loader is called once, with the keys that missed, deduplicated, in
    ///   the order first given. It is not called when nothing missed.
    /// - A key another caller of this cache is loading (a concurrent
    ///   `get_or_load` or batch) is waited for, not loaded twice; a key
    ///   another process holds the lease on is waited for up to the lease
    ///   time. So overlapping batches load each key once.
    /// - The loader returns a map from key to value. Values are stored for
    ///   `ttl` (all fills sent at once, each under its key's lease: a value
    ///   loaded before an eviction of its key is not stored). A key the
    ///   loader leaves out is `None` in the result and is not cached.
    /// - The loader is called once (`FnOnce`), at once when the batch has
    ///   keys of its own to load, while it waits for the others (two
    ///   batches that wait on each other's keys must not hold their loads
    ///   back). So a key waited for that ends without a value is `None` in
    ///   this result, not cached, and worth asking again: its load by another
    ///   caller failed or was cancelled, or another process's lease on it
    ///   lapsed (that process died or its load outlasted the lease time).
    ///   When the batch has no keys of its own, it waits first and loads
    ///   those keys itself.
    /// - The result is aligned with `keys` (a key given twice appears twice).
    /// - Redis down: every key goes to the loader, and its values are
    ///   returned; the outage is counted once per batch in
    ///   [`Stats::errors`](crate::Stats::errors), not once per key.
    /// - The freshness options of the builder apply to the values stored
    ///   (the entry is kept for `ttl` plus the stale windows), but a batch
    ///   serves no stale value and has no `load_timeout`: an entry past its
    ///   TTL is a miss, and the loader's error is returned as it is.
    /// - Tracing: one `cachefw.get_many` span (debug) with the number of
    ///   keys, hits and misses, and the loader in a `cachefw.load` span.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder().build().await?;
    /// let ids = ["user:1", "user:2", "user:3"];
    /// let users = cache
    ///     .get_or_load_many(&ids, Duration::from_secs(60), |missing| async move {
    ///         // One query for all the missing users; user:3 does not exist.
    ///         Ok::<_, std::io::Error>(
    ///             missing.into_iter().filter(|k| k != "user:3").map(|k| (k.clone(), k)).collect::<HashMap<_, _>>(),
    ///         )
    ///     })
    ///     .await;
    /// let users = users.expect("the loader does not fail");
    /// assert_eq!(users, [Some("user:1".to_owned()), Some("user:2".to_owned()), None]);
    /// # Ok(()) }
    /// ```
    ///
    /// **Keys of an annotated function.** Never rebuild a `#[cacheable]`
    /// function's keys with `format!`: a placeholder's value is escaped
    /// (`:` becomes `%3A`), so a hand-built key of a string id can miss the
    /// function's entry. Each `#[cacheable]` free function `name` comes with
    /// `name_key(..)`, which renders its key from the parameters the
    /// template names (each by reference), exactly as the macro does; use
    /// it for batch reads and manual evictions. An entry the function cached
    /// as "none" (`cache_none`) is a hit of the batch: `None`, not given to
    /// the loader.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::time::Duration;
    /// use cachefw::{Cache, cacheable};
    ///
    /// #[cacheable(key = "product:<sku>", ttl = "10m", cache = cache)]
    /// async fn product(cache: &Cache, sku: &str) -> Result<u64, std::io::Error> {
    ///     Ok(sku.len() as u64)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = Cache::builder().build().await?;
    /// product(&cache, "a:1").await.ok();
    /// let keys: Vec<String> = ["a:1", "b:2"].into_iter().map(product_key).collect();
    /// assert_eq!(keys[0], "product:a%3A1");
    /// let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    /// let found = cache
    ///     .get_or_load_many(&refs, Duration::from_secs(600), |missing| async move {
    ///         Ok::<_, std::io::Error>(missing.into_iter().map(|k| (k, 0u64)).collect::<HashMap<_, _>>())
    ///     })
    ///     .await;
    /// assert_eq!(found.ok(), Some(vec![Some(3), Some(0)]));
    /// cache.delete(&product_key("b:2")).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Only the loader's own error, returned as soon as the loader fails
    /// (nothing is stored then; single calls waiting on its keys load them
    /// themselves, batches waiting on them get `None` for them).
    pub async fn get_or_load_many<T, E, F, Fut>(
        &self,
        keys: &[&str],
        ttl: Duration,
        loader: F,
    ) -> Result<Vec<Option<T>>, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Result<std::collections::HashMap<String, T>, E>>,
    {
        let policy = Policy::with_ttl(ttl, None, self.inner().defaults());
        Batch::new(self.inner())
            .get_or_load_many_full(keys, &policy, loader)
            .await
    }
}
