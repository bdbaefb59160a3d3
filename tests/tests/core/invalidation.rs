//! No invalidation is lost: an eviction that meets a frozen or crashed
//! Redis is kept and replayed, and until then reads of its key bypass Redis.
//! Also the macros' evictions, a failed write, prefix evictions, and the
//! journal's bound.

use cachefw_tests::fixtures as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachefw::{Cache, cache_evict};
use cachefw_tests::RedisServer;
use common::{MINUTE, SourceDown};

const TIMEOUT: Duration = Duration::from_millis(100);

async fn cache_on(redis: &RedisServer, capacity: usize) -> Cache {
    Cache::builder()
        .redis(redis.url())
        .namespace("inv")
        .timeout(TIMEOUT)
        .eviction_journal_capacity(capacity)
        .build()
        .await
        .expect("builds")
}

/// A source of versioned values: `write` changes it, reads see the latest.
#[derive(Default)]
struct Source(AtomicU64);

impl Source {
    async fn read(&self, cache: &Cache, key: &str) -> u64 {
        cache
            .get_or_load(key, MINUTE, || async {
                Ok::<_, SourceDown>(self.0.load(Ordering::SeqCst))
            })
            .await
            .expect("the source does not fail")
    }
}

/// Reads `keys` for `period`, asserting each read returns `expected`.
async fn only_fresh_reads(
    cache: &Cache,
    source: &Source,
    keys: &[String],
    expected: u64,
    period: Duration,
) -> usize {
    let until = Instant::now() + period;
    let mut reads = 0;
    while Instant::now() < until {
        for key in keys {
            assert_eq!(source.read(cache, key).await, expected, "{key}");
            reads += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reads
}

async fn settled(cache: &Cache) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.stats().pending_evictions > 0 {
        assert!(Instant::now() < deadline, "{:?}", cache.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether raw entry bytes hold the value 0, the source's first version
/// (MessagePack `0x00` after the 31-byte header and metadata).
fn holds_the_old_value(raw: Option<Vec<u8>>) -> bool {
    raw.is_some_and(|bytes| bytes.len() == 32 && bytes[..3] == *b"\xCF\x02m" && bytes[31] == 0)
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("item:{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_during_a_freeze_are_replayed_after_the_thaw() {
    let redis = RedisServer::start();
    let cache = cache_on(&redis, 10_000).await;
    let source = Source::default();
    let keys = keys(30);
    for key in &keys {
        source.read(&cache, key).await;
    }
    source.0.store(1, Ordering::SeqCst);
    redis.freeze();
    for key in &keys {
        assert!(cache.delete(key).await.is_err(), "Redis is frozen");
    }
    assert_eq!(cache.stats().pending_evictions, keys.len() as u64);
    // Frozen: reads bypass Redis (no timeouts) and get the new value.
    let errors = cache.stats().errors;
    only_fresh_reads(&cache, &source, &keys, 1, Duration::from_millis(300)).await;
    assert_eq!(cache.stats().errors, errors, "bypassed");
    redis.thaw();
    let reads = only_fresh_reads(&cache, &source, &keys, 1, Duration::from_secs(2)).await;
    assert!(reads > keys.len(), "{reads}");
    settled(&cache).await;
    for key in &keys {
        assert!(
            !holds_the_old_value(redis.raw_get(&format!("inv:v1:{key}"))),
            "the old entry is gone"
        );
    }
    // And the cache works as a cache again.
    let loads = cache.stats().loads;
    only_fresh_reads(&cache, &source, &keys, 1, Duration::from_millis(100)).await;
    assert_eq!(cache.stats().loads, loads, "hits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_survive_a_crash_and_a_restart_from_the_snapshot() {
    let mut redis = RedisServer::start();
    let cache = cache_on(&redis, 10_000).await;
    let source = Source::default();
    let keys = keys(30);
    for key in &keys {
        source.read(&cache, key).await;
    }
    // The snapshot holds every entry (and a key no eviction touches, to
    // tell a restart from the snapshot: the replay of the pending evictions
    // may remove the entries themselves as soon as Redis answers); then the
    // source changes and Redis dies while the evictions are in flight.
    redis.raw_set("inv:snapshot-marker", b"1");
    redis.snapshot();
    source.0.store(1, Ordering::SeqCst);
    redis.freeze();
    for key in &keys {
        assert!(cache.delete(key).await.is_err());
    }
    redis.stop();
    redis.restart();
    assert!(
        redis.raw_get("inv:snapshot-marker").is_some(),
        "restarted from the snapshot"
    );
    only_fresh_reads(&cache, &source, &keys, 1, Duration::from_secs(2)).await;
    settled(&cache).await;
    for key in &keys {
        assert!(
            !holds_the_old_value(redis.raw_get(&format!("inv:v1:{key}"))),
            "the old entry is gone"
        );
    }
    only_fresh_reads(&cache, &source, &keys, 1, Duration::from_millis(200)).await;
}

#[cache_evict(key = "item:<id>", cache = cache)]
async fn update(cache: &Cache, source: &Source, id: u64) -> Result<(), SourceDown> {
    let _ = (cache, id);
    source.0.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macro_evictions_and_failed_writes_are_kept_too() {
    let redis = RedisServer::start();
    let cache = cache_on(&redis, 10_000).await;
    let source = Source::default();
    assert_eq!(source.read(&cache, "item:1").await, 0);
    cache.set("other", &0u64, MINUTE).await.expect("set");
    redis.freeze();
    // The write happened; its eviction did not reach Redis. The macro does
    // not fail the call.
    assert_eq!(update(&cache, &source, 1).await, Ok(()));
    // A `set` that did not reach Redis leaves the old value there: kept as
    // an eviction.
    assert!(cache.set("other", &1u64, MINUTE).await.is_err());
    assert_eq!(cache.stats().pending_evictions, 2);
    assert_eq!(cache.get::<u64>("other").await.expect("bypassed"), None);
    redis.thaw();
    only_fresh_reads(
        &cache,
        &source,
        &["item:1".to_owned()],
        1,
        Duration::from_millis(500),
    )
    .await;
    settled(&cache).await;
    assert_eq!(
        redis.raw_get("inv:v1:other"),
        None,
        "replayed as an eviction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_eviction_is_kept_and_covers_every_key_under_it() {
    let redis = RedisServer::start();
    let cache = cache_on(&redis, 10_000).await;
    let source = Source::default();
    let keys = keys(20);
    for key in &keys {
        source.read(&cache, key).await;
    }
    source.0.store(1, Ordering::SeqCst);
    redis.freeze();
    assert!(cache.evict_prefix("item:").await.is_err());
    only_fresh_reads(&cache, &source, &keys, 1, Duration::from_millis(200)).await;
    redis.thaw();
    only_fresh_reads(&cache, &source, &keys, 1, Duration::from_secs(1)).await;
    settled(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_journal_bypasses_redis_until_a_clear() {
    let redis = RedisServer::start();
    let cache = cache_on(&redis, 5).await;
    let source = Source::default();
    let keys = keys(10);
    for key in &keys {
        source.read(&cache, key).await;
    }
    source.read(&cache, "untouched").await;
    source.0.store(1, Ordering::SeqCst);
    redis.freeze();
    for key in &keys {
        assert!(cache.delete(key).await.is_err());
    }
    // Five are journaled; the rest overflowed. Nothing is dropped: every
    // read bypasses Redis, even of keys never evicted.
    assert_eq!(cache.stats().pending_evictions, 5);
    let errors = cache.stats().errors;
    only_fresh_reads(&cache, &source, &keys, 1, Duration::from_millis(100)).await;
    assert_eq!(source.read(&cache, "untouched").await, 1);
    assert_eq!(
        cache.stats().errors,
        errors,
        "no read tried the frozen Redis: they bypassed it"
    );
    redis.thaw();
    // The replay clears the namespace, then Redis serves again.
    settled(&cache).await;
    only_fresh_reads(&cache, &source, &keys, 1, Duration::from_millis(500)).await;
    let loads = cache.stats().loads;
    only_fresh_reads(&cache, &source, &keys, 1, Duration::from_millis(50)).await;
    assert_eq!(cache.stats().loads, loads, "hits again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_on_another_cache_see_the_replay() {
    // Another process (another cache on the same Redis) reads straight
    // from Redis: it sees the old value until the replay, and the new one
    // as soon as the replay lands after the thaw.
    let redis = RedisServer::start();
    let writer = cache_on(&redis, 100).await;
    let reader = Arc::new(cache_on(&redis, 100).await);
    let source = Source::default();
    source.read(&reader, "item:0").await;
    source.0.store(1, Ordering::SeqCst);
    redis.freeze();
    assert!(writer.delete("item:0").await.is_err());
    redis.thaw();
    settled(&writer).await;
    assert_eq!(source.read(&reader, "item:0").await, 1);
}
