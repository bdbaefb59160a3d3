//! Long keys: a rendered key over 512 bytes is stored under its first 256
//! bytes, `#` and its hex SHA-256, and every path (low-level calls, the
//! macros, batch reads, prefix evictions) reaches the same entry.

use cachefw_tests::fixtures as common;

use std::sync::atomic::{AtomicU32, Ordering};

use cachefw::{Cache, cache_evict, cache_put, cacheable};
use cachefw_tests::RedisServer;
use common::{MINUTE, SourceDown};

static LOADS: AtomicU32 = AtomicU32::new(0);

#[cacheable(key = "doc:<path>", ttl = "10m", cache = cache)]
async fn document(cache: &Cache, path: &str) -> Result<usize, SourceDown> {
    LOADS.fetch_add(1, Ordering::SeqCst);
    Ok(path.len())
}

#[cache_evict(key = "doc:<path>", cache = cache)]
async fn forget(cache: &Cache, path: &str) -> Result<(), SourceDown> {
    let _ = (cache, path);
    Ok(())
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Doc {
    path: String,
}

/// A key completed from the result gets its digest once complete.
#[cache_put(key = "doc:<result.path>", ttl = "10m", cache = cache)]
async fn save(cache: &Cache, path: String) -> Result<Doc, SourceDown> {
    let _ = cache;
    Ok(Doc { path })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_key_completed_from_the_result_reaches_the_same_entry() {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "lkr").await;
    let path = "q/".repeat(400);
    save(&cache, path.clone()).await.expect("saved");
    let key = format!("doc:{path}");
    assert_eq!(redis.keys(), [cache.full_key(&key)]);
    assert_eq!(
        cache.get::<Doc>(&key).await.expect("reads"),
        Some(Doc { path })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1500_byte_key_is_cached_read_and_deleted_under_a_short_redis_key() {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "lk").await;
    let key = format!("report:{}", "r".repeat(1_500 - "report:".len()));
    assert_eq!(key.len(), 1_500);
    cache.set(&key, &"body", MINUTE).await.expect("stored");
    let stored = redis.keys();
    assert_eq!(stored.len(), 1);
    let short = &stored[0];
    assert_eq!(short.len(), "lk:v1:".len() + 256 + 1 + 64, "{short}");
    assert_eq!(short, &cache.full_key(&key));
    assert!(short.starts_with(&format!("lk:v1:{}#", &key[..256])));
    assert_eq!(
        cache.get::<String>(&key).await.expect("reads").as_deref(),
        Some("body")
    );
    assert_eq!(
        cache.get_many::<String>(&[&key]).await.expect("reads"),
        [Some("body".to_owned())]
    );
    // A prefix within the kept head still finds it.
    assert_eq!(cache.evict_prefix("report:rrr").await.expect("evicts"), 1);
    assert!(redis.keys().is_empty());
    cache.set(&key, &"again", MINUTE).await.expect("stored");
    assert!(cache.delete(&key).await.expect("deletes"));
    assert!(redis.keys().is_empty());
    // Another key with the same head is another entry.
    let twin = format!("{}s", &key[..1_499]);
    cache.set(&key, &"one", MINUTE).await.expect("stored");
    cache.set(&twin, &"two", MINUTE).await.expect("stored");
    assert_eq!(redis.keys().len(), 2);
    assert_eq!(
        cache.get::<String>(&key).await.expect("reads").as_deref(),
        Some("one")
    );
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_macros_cache_and_evict_a_long_key() {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "lkm").await;
    let path = "p/".repeat(700);
    let before = LOADS.load(Ordering::SeqCst);
    assert_eq!(document(&cache, &path).await, Ok(1_400));
    assert_eq!(document(&cache, &path).await, Ok(1_400));
    assert_eq!(
        LOADS.load(Ordering::SeqCst) - before,
        1,
        "the second is a hit"
    );
    let key = format!("doc:{path}");
    assert_eq!(redis.keys(), [cache.full_key(&key)]);
    assert_eq!(cache.get::<usize>(&key).await.expect("reads"), Some(1_400));
    forget(&cache, &path).await.expect("evicts");
    assert!(redis.keys().is_empty(), "{:?}", redis.keys());
}
