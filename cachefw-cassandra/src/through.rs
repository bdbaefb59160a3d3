//! Cache-aside of rows that may expire: a row is cached for the entity's
//! TTL, or for less when it expires sooner, never past its expiry.
//!
//! The cache takes the TTL before the load and the row's life is known only
//! after it, so a load whose rows expire before the TTL gives its value
//! back as [`Miss::Shorter`], which the cache treats as a failed load (not
//! stored, not shared); the value is then loaded again, under the cache's
//! lease again so that a write in between is not undone, with the rows'
//! remaining life as the TTL.

use std::time::{Duration, Instant};

use cachefw::Cache;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::life;

/// What a read found, and the earliest its rows expire (`None`: never).
pub(crate) struct Read<V> {
    pub(crate) value: Option<V>,
    pub(crate) expiry: Option<Instant>,
}

/// Why a load did not give the cache a value to store.
enum Miss<V> {
    /// Cassandra failed.
    Failed(Error),
    /// The rows expire sooner than the entry would: returned, not stored.
    Shorter { value: Option<V>, life: Duration },
}

/// The value at `key`, from `cache` or from `load`, cached for `ttl` or
/// until the loaded rows expire, whichever comes first. A `None` is not
/// cached.
pub(crate) async fn read_through<V, F, Fut>(
    cache: &Cache,
    key: &str,
    ttl: Duration,
    load: F,
) -> Result<Option<V>, Error>
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Read<V>, Error>>,
{
    let (value, life) = match fill(cache, key, ttl, &load).await {
        Ok(value) => return Ok(value),
        Err(Miss::Failed(error)) => return Err(error),
        Err(Miss::Shorter { value, life }) => (value, life),
    };
    // The second read may find the row up to `REREAD_SLACK` closer to its
    // end than the first did; a row about to expire is not worth caching.
    let Some(ttl) = life
        .checked_sub(life::REREAD_SLACK)
        .filter(|ttl| *ttl >= life::MIN_LIFE)
    else {
        return Ok(value);
    };
    match fill(cache, key, ttl, &load).await {
        Ok(value) => Ok(value),
        Err(Miss::Failed(error)) => Err(error),
        Err(Miss::Shorter { value, .. }) => Ok(value),
    }
}

/// One cache-aside pass with `ttl`.
async fn fill<V, F, Fut>(
    cache: &Cache,
    key: &str,
    ttl: Duration,
    load: &F,
) -> Result<Option<V>, Miss<V>>
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Read<V>, Error>>,
{
    cache
        .get_or_load_optional(key, ttl, None, || async {
            let read = load().await.map_err(Miss::Failed)?;
            match life::remaining(read.expiry, Instant::now()) {
                Some(life) if life < ttl => Err(Miss::Shorter {
                    value: read.value,
                    life,
                }),
                _ => Ok(read.value),
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    async fn cache() -> Cache {
        Cache::builder().build().await.expect("in-memory cache")
    }

    fn read(value: &str, life: Option<Duration>) -> Result<Read<String>, Error> {
        Ok(Read {
            value: Some(value.to_owned()),
            expiry: life.map(|life| Instant::now() + life),
        })
    }

    #[tokio::test]
    async fn a_row_without_expiry_is_cached_for_the_ttl() {
        let cache = cache().await;
        let value = read_through(&cache, "k", TEN_MINUTES, || async { read("v", None) }).await;
        assert_eq!(value.expect("loaded").as_deref(), Some("v"));
        let ttl = cache.ttl("k").await.expect("ttl").expect("cached");
        assert!(
            ttl > Duration::from_secs(590) && ttl <= TEN_MINUTES,
            "{ttl:?}"
        );
    }

    #[tokio::test]
    async fn a_row_that_expires_sooner_is_cached_until_then_only() {
        let cache = cache().await;
        let loads = AtomicU32::new(0);
        let life = Duration::from_secs(30);
        let value = read_through(&cache, "k", TEN_MINUTES, || {
            loads.fetch_add(1, Ordering::SeqCst);
            async move { read("v", Some(life)) }
        })
        .await;
        assert_eq!(value.expect("loaded").as_deref(), Some("v"));
        assert_eq!(
            loads.load(Ordering::SeqCst),
            2,
            "loaded again with the row's life"
        );
        let ttl = cache.ttl("k").await.expect("ttl").expect("cached");
        assert!(ttl > Duration::from_secs(20) && ttl < life, "{ttl:?}");
        // Read from the cache now.
        let again = read_through(&cache, "k", TEN_MINUTES, || async { read("other", None) }).await;
        assert_eq!(again.expect("hit").as_deref(), Some("v"));
    }

    #[tokio::test]
    async fn a_row_about_to_expire_is_returned_uncached() {
        let cache = cache().await;
        let life = Duration::from_secs(2);
        let value = read_through(
            &cache,
            "k",
            TEN_MINUTES,
            || async move { read("v", Some(life)) },
        )
        .await;
        assert_eq!(value.expect("loaded").as_deref(), Some("v"));
        assert_eq!(cache.ttl("k").await.expect("ttl"), None);
    }

    #[tokio::test]
    async fn a_row_shorter_again_on_the_second_read_is_not_cached() {
        let cache = cache().await;
        let loads = AtomicU32::new(0);
        let value = read_through(&cache, "k", TEN_MINUTES, || {
            // 60 s on the first read, 10 s on the second: rewritten with a
            // shorter TTL in between.
            let first = loads.fetch_add(1, Ordering::SeqCst) == 0;
            let life = Duration::from_secs(if first { 60 } else { 10 });
            async move { read("v", Some(life)) }
        })
        .await;
        assert_eq!(value.expect("loaded").as_deref(), Some("v"));
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        assert_eq!(cache.ttl("k").await.expect("ttl"), None);
    }

    #[tokio::test]
    async fn a_failed_load_is_the_error_and_nothing_is_cached() {
        let cache = cache().await;
        let value: Result<Option<String>, Error> =
            read_through(&cache, "k", TEN_MINUTES, || async {
                Err(Error::NoApplied { statement: "test" })
            })
            .await;
        assert!(matches!(value, Err(Error::NoApplied { .. })), "{value:?}");
        assert_eq!(cache.ttl("k").await.expect("ttl"), None);
    }
}
