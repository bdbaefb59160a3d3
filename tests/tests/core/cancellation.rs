//! Every await is a cancellation point: a caller dropped at any of them
//! (a `timeout`, a disconnect, `select!`) leaves no breaker probe, lease,
//! flight or eviction behind. Each test cuts calls off at a range of
//! moments and then checks that the cache recovers: hits resume, and no
//! stale value is served.

use cachefw_tests::fixtures as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachefw::{BreakerState, Cache};
use cachefw_tests::{DelayProxy, RedisServer, eventually, eventually_async};
use common::{MINUTE, SourceDown};

const TIMEOUT: Duration = Duration::from_millis(200);

async fn cache_at(url: String, namespace: &str) -> Cache {
    Cache::builder()
        .redis(url)
        .namespace(namespace)
        .timeout(TIMEOUT)
        .lease_time(Duration::from_secs(5))
        .build()
        .await
        .expect("builds")
}

async fn read(cache: &Cache, key: &str, source: &AtomicU64) -> u64 {
    cache
        .get_or_load(key, MINUTE, || async {
            Ok::<_, SourceDown>(source.load(Ordering::SeqCst))
        })
        .await
        .expect("the source does not fail")
}

/// The breaker's probe cut off at every moment of its round trip: the next
/// call probes instead, and the breaker closes within a probe interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_probe_never_sticks_the_breaker() {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port());
    let cache = cache_at(proxy.url(), "probe").await;
    let source = AtomicU64::new(1);
    for cut_ms in [0, 1, 2, 5, 10, 20, 40, 60, 100, 150] {
        // Redis hangs: the breaker opens.
        proxy.set_delay(Duration::from_secs(3_600));
        eventually_async(Duration::from_secs(10), "the breaker opens", async || {
            read(&cache, "k", &source).await;
            cache.stats().breaker == BreakerState::Open
        })
        .await;
        // Redis answers slowly (within the timeout); the probe is cut off.
        proxy.set_delay(Duration::from_millis(80));
        eventually(Duration::from_secs(10), "the breaker half-opens", || {
            cache.stats().breaker == BreakerState::HalfOpen
        })
        .await;
        let cut = tokio::time::timeout(Duration::from_millis(cut_ms), cache.get::<u64>("k")).await;
        assert!(cut.is_err(), "cut off at {cut_ms}ms: {cut:?}");
        // The next calls probe and close it; a stuck probe would leave it
        // half-open for good.
        eventually_async(
            Duration::from_secs(10),
            &format!("the breaker closes after a probe cut off at {cut_ms}ms"),
            async || {
                let _ = cache.get::<u64>("k").await;
                cache.stats().breaker == BreakerState::Closed
            },
        )
        .await;
    }
    proxy.set_delay(Duration::ZERO);
    read(&cache, "k", &source).await;
    let loads = cache.stats().loads;
    assert_eq!(read(&cache, "k", &source).await, 1);
    assert_eq!(cache.stats().loads, loads, "hits resume");
}

/// A lease holder cut off while it fills (or loads): its lease is released,
/// so another process's caller gets a value long before the lease time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_lease_holder_releases_its_lease() {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port());
    let holder = cache_at(proxy.url(), "lease").await;
    let other = cache_at(redis.url(), "lease").await;
    let source = Arc::new(AtomicU64::new(7));
    for (round, cut_ms) in [0u64, 5, 20, 50, 90, 120, 170].into_iter().enumerate() {
        let key = format!("k{round}");
        proxy.set_delay(Duration::from_millis(60));
        let loader_source = source.clone();
        let cut = tokio::time::timeout(
            Duration::from_millis(cut_ms),
            holder.get_or_load(&key, MINUTE, || async move {
                Ok::<_, SourceDown>(loader_source.load(Ordering::SeqCst))
            }),
        )
        .await;
        proxy.set_delay(Duration::ZERO);
        let started = Instant::now();
        assert_eq!(read(&other, &key, &source).await, 7, "round {round}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "cut at {cut_ms}ms ({cut:?}): the other process waited {:?}, near the 5 s lease",
            started.elapsed()
        );
        // Hits resume for both.
        let loads = other.stats().loads;
        assert_eq!(read(&other, &key, &source).await, 7);
        assert_eq!(other.stats().loads, loads, "round {round}: a hit");
    }
}

/// An eviction cut off before Redis confirmed it is replayed: no read
/// returns the evicted value afterwards, whether or not the cut-off command
/// reached Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_eviction_is_not_lost() {
    let redis = RedisServer::start();
    let cache = cache_at(redis.url(), "evict").await;
    let source = AtomicU64::new(1);
    for (round, cut_ms) in [0u64, 1, 5, 50].into_iter().enumerate() {
        let key = format!("k{round}");
        source.store(1, Ordering::SeqCst);
        assert_eq!(read(&cache, &key, &source).await, 1);
        // The source changes; its eviction is cut off while Redis is frozen.
        source.store(2, Ordering::SeqCst);
        redis.freeze();
        let cut = tokio::time::timeout(Duration::from_millis(cut_ms), cache.delete(&key)).await;
        assert!(cut.is_err() || matches!(cut, Ok(Err(_))), "{cut:?}");
        // While Redis is out, reads of the key bypass it.
        assert_eq!(read(&cache, &key, &source).await, 2, "round {round}");
        redis.thaw();
        for _ in 0..50 {
            assert_eq!(read(&cache, &key, &source).await, 2, "round {round}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eventually(Duration::from_secs(10), "the eviction is replayed", || {
            cache.stats().pending_evictions == 0
        })
        .await;
        assert_eq!(read(&cache, &key, &source).await, 2);
        let loads = cache.stats().loads;
        assert_eq!(read(&cache, &key, &source).await, 2);
        assert_eq!(cache.stats().loads, loads, "round {round}: hits resume");
    }
}

/// A single-flight leader cut off at each moment: followers neither hang
/// nor stampede, and the flight is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_strands_no_follower() {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port());
    let cache = cache_at(proxy.url(), "flight").await;
    let loads = Arc::new(AtomicU64::new(0));
    for (round, cut_ms) in [0u64, 2, 10, 30, 60].into_iter().enumerate() {
        let key = format!("k{round}");
        proxy.set_delay(Duration::from_millis(20));
        let value = round as u64;
        let load = move |loads: Arc<AtomicU64>| async move {
            loads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(40)).await;
            Ok::<_, SourceDown>(value)
        };
        let leader = {
            let (cache, key, loads) = (cache.clone(), key.clone(), loads.clone());
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(cut_ms),
                    cache.get_or_load(&key, MINUTE, || load(loads)),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let followers: Vec<_> = (0..10)
            .map(|_| {
                let (cache, key, loads) = (cache.clone(), key.clone(), loads.clone());
                tokio::spawn(async move { cache.get_or_load(&key, MINUTE, || load(loads)).await })
            })
            .collect();
        let _ = leader.await.expect("no panic");
        for follower in followers {
            let got = tokio::time::timeout(Duration::from_secs(5), follower)
                .await
                .expect("a follower hung")
                .expect("no panic");
            assert_eq!(got, Ok(round as u64));
        }
    }
    proxy.set_delay(Duration::ZERO);
    let total = loads.load(Ordering::SeqCst);
    assert!(
        total <= 5 * 3,
        "followers did not stampede: {total} loads in 5 rounds"
    );
}
