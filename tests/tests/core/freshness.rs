//! Freshness under load: refresh ahead of expiry (XFetch), serving stale
//! values while revalidating, the fail-safe (stale if error) with its
//! throttle, load timeouts, and the interplay with evictions.

use cachefw_tests::fixtures as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_tests::{RedisServer, eventually};
use common::SourceDown;

/// A source: a version counter and a switch to make it fail.
#[derive(Default)]
struct Source {
    version: AtomicU64,
    loads: AtomicU64,
    down: AtomicBool,
    /// How long a load takes.
    delay_ms: AtomicU64,
}

impl Source {
    fn new(delay: Duration) -> Arc<Self> {
        let source = Arc::new(Self::default());
        source
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        source
    }

    async fn load(&self) -> Result<u64, SourceDown> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        if self.down.load(Ordering::SeqCst) {
            return Err(SourceDown(0));
        }
        Ok(self.version.load(Ordering::SeqCst))
    }

    fn loads(&self) -> u64 {
        self.loads.load(Ordering::SeqCst)
    }
}

/// Reads `key` with an owned loader.
async fn read(
    cache: &Cache,
    source: &Arc<Source>,
    key: &str,
    ttl: Duration,
) -> Result<u64, SourceDown> {
    let source = source.clone();
    cache
        .get_or_load_owned(key, ttl, move || async move { source.load().await })
        .await
}

async fn redis_cache(
    redis: &RedisServer,
    build: impl FnOnce(cachefw::CacheBuilder) -> cachefw::CacheBuilder,
) -> Cache {
    build(Cache::builder().redis(redis.url()).namespace("fresh"))
        .build()
        .await
        .expect("builds")
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() as f64 - 1.0) * p) as usize]
}

/// 64 callers on one key (TTL 1 s, a 50 ms load) over three caches for 6
/// s: with refresh ahead, no caller waits for a load after the first, and
/// the loads stay about one per TTL period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_keeps_a_hot_key_hot() {
    let redis = RedisServer::start();
    let source = Source::new(Duration::from_millis(50));
    let mut caches = Vec::new();
    // The first two with a near tier: hits there still refresh ahead.
    for near in [true, true, false] {
        caches.push(
            redis_cache(&redis, |b| match near {
                true => b.refresh_ahead(1.0).near_cache(1 << 20),
                false => b.refresh_ahead(1.0),
            })
            .await,
        );
    }
    let ttl = Duration::from_secs(1);
    // Warm up: the first load.
    read(&caches[0], &source, "hot", ttl).await.expect("loads");
    let run = Duration::from_secs(6);
    let started = Instant::now();
    let callers: Vec<_> = (0..64)
        .map(|i| {
            let (cache, source) = (caches[i % 3].clone(), source.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while started.elapsed() < run {
                    let at = Instant::now();
                    read(&cache, &source, "hot", ttl)
                        .await
                        .expect("never fails");
                    latencies.push(at.elapsed());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for caller in callers {
        latencies.extend(caller.await.expect("no panic"));
    }
    let loads = source.loads() - 1;
    let periods = run.as_secs_f64() / ttl.as_secs_f64();
    let (p50, p99, max) = (
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99),
        percentile(&mut latencies, 1.0),
    );
    let refreshes: u64 = caches.iter().map(|c| c.stats().refreshes).sum();
    let near_hits: u64 = caches.iter().map(|c| c.stats().near_hits).sum();
    println!(
        "refresh ahead: {} calls ({near_hits} near hits), p50 {p50:?}, p99 {p99:?}, max {max:?}; {loads} loads in {periods} TTL periods; {refreshes} refreshes",
        latencies.len()
    );
    assert!(near_hits > 0, "the near tiers answered");
    assert!(
        max < Duration::from_millis(45),
        "a caller waited for a 50 ms load: max {max:?}"
    );
    assert!(
        loads as f64 <= periods * 1.5 + 1.0,
        "{loads} loads in {periods} periods"
    );
    assert!(
        loads as f64 >= periods * 0.5,
        "refreshed: {loads} loads in {periods} periods"
    );
    for cache in &caches {
        cache.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_at_once_then_the_new_value() {
    let redis = RedisServer::start();
    let cache = redis_cache(&redis, |b| {
        b.stale_while_revalidate(Duration::from_secs(30))
    })
    .await;
    let source = Source::new(Duration::from_millis(300));
    let ttl = Duration::from_millis(200);
    assert_eq!(read(&cache, &source, "k", ttl).await, Ok(0));
    source.version.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Expired: the old value at once, while one load runs.
    let at = Instant::now();
    assert_eq!(read(&cache, &source, "k", ttl).await, Ok(0));
    assert!(
        at.elapsed() < Duration::from_millis(150),
        "{:?}",
        at.elapsed()
    );
    assert_eq!(read(&cache, &source, "k", ttl).await, Ok(0), "still stale");
    assert_eq!(cache.stats().stale_served, 2);
    eventually(Duration::from_secs(5), "the revalidation lands", || {
        cache.stats().refreshes == 1 && source.loads() == 2
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if read(&cache, &source, "k", Duration::from_secs(60)).await == Ok(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the new value never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(source.loads(), 2, "one revalidation");
    // `get` and `ttl` see only the TTL, not the stale window.
    assert!(cache.ttl("k").await.expect("ttl").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_stale_value_and_spares_the_source() {
    let redis = RedisServer::start();
    let cache = redis_cache(&redis, |b| {
        b.stale_if_error(Duration::from_secs(60))
            .fail_safe_throttle(Duration::from_millis(500))
    })
    .await;
    let source = Source::new(Duration::ZERO);
    let ttl = Duration::from_millis(100);
    assert_eq!(read(&cache, &source, "k", ttl).await, Ok(0));
    tokio::time::sleep(Duration::from_millis(150)).await;
    source.down.store(true, Ordering::SeqCst);
    // The database is down: the stale value, and the source is called at
    // most once per throttle window however many callers ask.
    let loads = source.loads();
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_millis(1_200) {
        assert_eq!(read(&cache, &source, "k", ttl).await, Ok(0));
        calls += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let tried = source.loads() - loads;
    assert!(calls > 50);
    assert!(
        (1..=4).contains(&tried),
        "{tried} source calls in 1.2 s with a 0.5 s throttle"
    );
    assert!(cache.stats().stale_served >= calls - tried);
    // Past the window, the error comes back.
    let cache = redis_cache(&redis, |b| b.stale_if_error(Duration::from_millis(200))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(read(&cache, &source, "k", ttl).await, Err(SourceDown(0)));
    // `get` never returns an expired value.
    assert_eq!(cache.get::<u64>("k").await.expect("get"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_load_with_a_stale_value_returns_within_the_timeout() {
    let redis = RedisServer::start();
    let cache = redis_cache(&redis, |b| {
        b.stale_if_error(Duration::from_secs(60))
            .load_timeout(Duration::from_millis(100))
    })
    .await;
    let source = Source::new(Duration::ZERO);
    let ttl = Duration::from_millis(100);
    assert_eq!(read(&cache, &source, "k", ttl).await, Ok(0));
    tokio::time::sleep(Duration::from_millis(150)).await;
    source.version.store(1, Ordering::SeqCst);
    source.delay_ms.store(2_000, Ordering::SeqCst);
    let at = Instant::now();
    assert_eq!(
        read(&cache, &source, "k", Duration::from_secs(60)).await,
        Ok(0)
    );
    let took = at.elapsed();
    println!("load past its timeout: the stale value after {took:?}");
    assert!(took < Duration::from_millis(1_000), "{took:?}");
    // The load goes on in the background and fills the cache.
    eventually(Duration::from_secs(6), "the load fills the cache", || {
        source.loads() == 2
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        if cache.get::<u64>("k").await.expect("get") == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "never filled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Without a stale value, the caller waits for the load.
    source.delay_ms.store(300, Ordering::SeqCst);
    let at = Instant::now();
    assert_eq!(read(&cache, &source, "fresh-key", ttl).await, Ok(1));
    assert!(at.elapsed() >= Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_value_is_never_served_as_stale() {
    let redis = RedisServer::start();
    let cache = redis_cache(&redis, |b| {
        b.stale_while_revalidate(Duration::from_secs(60))
            .stale_if_error(Duration::from_secs(60))
    })
    .await;
    let source = Source::new(Duration::from_millis(100));
    let ttl = Duration::from_millis(100);
    assert_eq!(read(&cache, &source, "k", ttl).await, Ok(0));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // A revalidation starts; the source changes and the key is evicted
    // while it runs.
    assert_eq!(read(&cache, &source, "k", ttl).await, Ok(0));
    source.version.store(1, Ordering::SeqCst);
    assert!(cache.delete("k").await.expect("delete"));
    // The evicted value is gone for good: the revalidation that read the
    // old version must not fill, and no stale copy answers.
    for _ in 0..30 {
        let got = read(&cache, &source, "k", Duration::from_secs(60)).await;
        assert_eq!(got, Ok(1));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cache.shutdown().await;
    assert_eq!(cache.get::<u64>("k").await.expect("get"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_borrowing_loader_refreshes_itself_while_others_hit() {
    // get_or_load's loader may borrow: the caller that triggers the
    // revalidation runs it; the other callers keep getting the stale value.
    let cache = Cache::builder()
        .stale_while_revalidate(Duration::from_secs(30))
        .build()
        .await
        .expect("builds");
    let source = Source::new(Duration::from_millis(200));
    let ttl = Duration::from_millis(100);
    let load = || async { source.load().await };
    assert_eq!(cache.get_or_load("k", ttl, load).await, Ok(0));
    source.version.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (revalidator, other) = tokio::join!(
        cache.get_or_load("k", ttl, || async { source.load().await }),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let at = Instant::now();
            let got = cache
                .get_or_load("k", ttl, || async { source.load().await })
                .await;
            (got, at.elapsed())
        }
    );
    assert_eq!(revalidator, Ok(1), "the triggering caller ran the load");
    assert_eq!(other.0, Ok(0), "the other caller got the stale value");
    assert!(other.1 < Duration::from_millis(100), "{:?}", other.1);
    assert_eq!(source.loads(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_aborts_background_work() {
    let redis = RedisServer::start();
    let cache = redis_cache(&redis, |b| {
        b.stale_while_revalidate(Duration::from_secs(30))
    })
    .await;
    let source = Source::new(Duration::ZERO);
    let ttl = Duration::from_millis(50);
    assert_eq!(read(&cache, &source, "k", ttl).await, Ok(0));
    tokio::time::sleep(Duration::from_millis(100)).await;
    source.delay_ms.store(60_000, Ordering::SeqCst);
    assert_eq!(read(&cache, &source, "k", ttl).await, Ok(0));
    eventually(Duration::from_secs(5), "the revalidation starts", || {
        source.loads() == 2
    })
    .await;
    let held = Arc::strong_count(&source);
    drop(cache);
    // The aborted task drops its loader, and with it its clone of the
    // source.
    eventually(
        Duration::from_secs(5),
        "the background load is aborted",
        || Arc::strong_count(&source) < held,
    )
    .await;
}

/// The macros with background options: the body runs in a loader made of
/// owned copies of the arguments (`&self` cloned, `&str` owned), so the
/// revalidation finishes in the background while the caller gets the stale
/// value at once.
#[derive(Clone)]
struct Prices {
    cache: Cache,
    source: Arc<Source>,
}

impl Prices {
    #[cachefw::cacheable(key = "price:<sku>", ttl = "200ms", cache = self.cache,
                         stale_while_revalidate = "30s", unless = *result == 99)]
    async fn price(&self, sku: &str) -> Result<u64, SourceDown> {
        assert_eq!(sku, "A1");
        self.source.load().await
    }
}

#[cachefw::cacheable(key = "slow:<sku>", ttl = "100ms", cache = cache,
                     stale_if_error = "1m", load_timeout = "100ms", refresh_ahead = 2.0)]
async fn slow_price(cache: &Cache, source: &Arc<Source>, sku: String) -> Result<u64, SourceDown> {
    assert_eq!(sku, "B2");
    source.load().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macros_with_background_options_finish_loads_in_the_background() {
    let redis = RedisServer::start();
    let cache = redis_cache(&redis, |b| b).await;
    let prices = Prices {
        cache: cache.clone(),
        source: Source::new(Duration::from_millis(300)),
    };
    assert_eq!(prices.price("A1").await, Ok(0));
    prices.source.version.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let at = Instant::now();
    assert_eq!(prices.price("A1").await, Ok(0), "stale, at once");
    assert!(
        at.elapsed() < Duration::from_millis(150),
        "{:?}",
        at.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while prices.price("A1").await != Ok(1) {
        assert!(Instant::now() < deadline, "the revalidation never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cache.stats().refreshes, 1);

    let source = Source::new(Duration::ZERO);
    assert_eq!(slow_price(&cache, &source, "B2".into()).await, Ok(0));
    tokio::time::sleep(Duration::from_millis(150)).await;
    source.version.store(1, Ordering::SeqCst);
    source.delay_ms.store(1_000, Ordering::SeqCst);
    let at = Instant::now();
    assert_eq!(slow_price(&cache, &source, "B2".into()).await, Ok(0));
    assert!(
        at.elapsed() < Duration::from_millis(700),
        "{:?}",
        at.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.get::<u64>("slow:B2").await.expect("get") != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the load past its timeout never filled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
