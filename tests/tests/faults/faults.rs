//! Redis failures never fail a caller: Redis down at build, stopped and
//! restarted mid-run, and too slow to answer within the timeout.

use cachefw_tests::fixtures as common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefw::{BreakerState, Cache, Error};
use cachefw_tests::{DelayProxy, RedisServer};
use common::{MINUTE, SourceDown, User, load_user, user};

const TIMEOUT: Duration = Duration::from_millis(100);

async fn cache_on(redis: &RedisServer) -> Cache {
    Cache::builder()
        .redis(redis.url())
        .namespace("t")
        .timeout(TIMEOUT)
        .build()
        .await
        .expect("builds even when Redis is down")
}

/// Polls until a loaded value is served from Redis again.
async fn wait_for_caching(cache: &Cache, redis: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        load_user(cache, 1).await;
        if redis.is_running() && redis.raw_get("t:v1:user:1").is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "caching did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_build_degrades_then_recovers() {
    let mut redis = RedisServer::reserved();
    let cache = cache_on(&redis).await;
    for _ in 0..3 {
        assert_eq!(load_user(&cache, 1).await, user(1));
    }
    let stats = cache.stats();
    assert_eq!(stats.loads, 3, "nothing could be cached");
    assert!(stats.errors >= 3, "{stats:?}");
    assert!(matches!(
        cache.get::<User>("user:1").await,
        Err(Error::Redis { .. } | Error::Timeout { .. } | Error::Unavailable { .. })
    ));

    redis.restart();
    wait_for_caching(&cache, &redis).await;
    let loads = cache.stats().loads;
    assert_eq!(load_user(&cache, 1).await, user(1));
    assert_eq!(cache.stats().loads, loads, "served from Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_then_restarted() {
    let mut redis = RedisServer::start();
    let cache = cache_on(&redis).await;
    load_user(&cache, 1).await;
    load_user(&cache, 1).await;
    assert_eq!(cache.stats().loads, 1);

    redis.stop();
    let before = cache.stats();
    for _ in 0..20 {
        assert_eq!(load_user(&cache, 1).await, user(1));
    }
    let during = cache.stats();
    assert_eq!(
        during.loads - before.loads,
        20,
        "every call served by the loader"
    );
    assert!(during.errors - before.errors >= 20, "{during:?}");
    // Low-level calls report the failure to their caller.
    assert!(cache.set("k", &1u8, MINUTE).await.is_err());
    assert!(cache.delete("k").await.is_err());
    assert!(cache.ttl("other").await.is_err());
    assert!(cache.evict_prefix("").await.is_err());

    redis.restart();
    wait_for_caching(&cache, &redis).await;
    assert_eq!(
        cache.get::<User>("user:1").await.expect("get"),
        Some(user(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_during_a_restart_all_get_values() {
    let mut redis = RedisServer::start();
    let cache = cache_on(&redis).await;
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let callers: Vec<_> = (0..20)
        .map(|i| {
            let (cache, running) = (cache.clone(), running.clone());
            tokio::spawn(async move {
                let mut calls = 0u32;
                while running.load(std::sync::atomic::Ordering::SeqCst) {
                    assert_eq!(load_user(&cache, i % 4).await, user(i % 4));
                    calls += 1;
                    tokio::task::yield_now().await;
                }
                calls
            })
        })
        .collect();
    redis.stop();
    // Let the callers run into the outage before Redis comes back.
    let errors = cache.stats().errors;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.stats().errors < errors + 50 {
        assert!(Instant::now() < deadline, "{:?}", cache.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.restart();
    wait_for_caching(&cache, &redis).await;
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    for caller in callers {
        assert!(caller.await.expect("no caller panicked") > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_redis_costs_the_timeout_not_the_delay() {
    let redis = RedisServer::start();
    let cache = cache_on(&redis).await;
    load_user(&cache, 1).await;

    // Every client's commands now wait 3 s for an answer.
    redis.cmd::<()>("CLIENT", &[b"PAUSE", b"3000", b"ALL"]);
    let started = Instant::now();
    assert_eq!(load_user(&cache, 1).await, user(1));
    assert!(
        started.elapsed() < Duration::from_millis(2_000),
        "returned after {:?}, not at the {TIMEOUT:?} timeout",
        started.elapsed()
    );
    let stats = cache.stats();
    assert_eq!(stats.loads, 2, "served by the loader");
    assert!(stats.errors >= 1, "{stats:?}");
    assert!(matches!(
        cache.get::<User>("user:1").await,
        Err(Error::Timeout { after: TIMEOUT, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_stay_coalesced_while_redis_is_down() {
    let redis = RedisServer::reserved();
    let cache = cache_on(&redis).await;
    let loads = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let (cache, loads) = (cache.clone(), loads.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load("hot", MINUTE, || async move {
                        loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, SourceDown>(7u32)
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.expect("task"), Ok(7));
    }
    assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
}

async fn cache_at(url: String) -> Cache {
    Cache::builder()
        .redis(url)
        .namespace("t")
        .timeout(TIMEOUT)
        .build()
        .await
        .expect("builds")
}

/// Runs 1,000 cache-aside calls of one key and returns how long they took.
async fn thousand_calls(cache: &Cache) -> Duration {
    let started = Instant::now();
    for _ in 0..1_000 {
        assert_eq!(load_user(cache, 1).await, user(1));
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_costs_close_to_nothing_and_caching_resumes() {
    let mut redis = RedisServer::start();
    let cache = cache_on(&redis).await;
    load_user(&cache, 1).await;
    redis.stop();

    let took = thousand_calls(&cache).await;
    let stats = cache.stats();
    println!("1,000 calls with Redis stopped: {took:?}; {stats:?}");
    assert!(took < TIMEOUT * 1_000 / 20, "{took:?}");
    assert!(
        stats.short_circuited > 900,
        "the breaker skipped Redis: {stats:?}"
    );
    assert_eq!(stats.breaker, BreakerState::Open);

    redis.restart();
    let restarted = Instant::now();
    wait_for_caching(&cache, &redis).await;
    println!(
        "caching resumed {:?} after the restart",
        restarted.elapsed()
    );
    assert_eq!(cache.stats().breaker, BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_redis_costs_a_few_timeouts_not_one_per_call() {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port());
    let cache = cache_at(proxy.url()).await;
    load_user(&cache, 1).await;
    // Replies now never come within any timeout.
    proxy.set_delay(Duration::from_secs(3_600));

    let took = thousand_calls(&cache).await;
    let stats = cache.stats();
    println!("1,000 calls with Redis hanging: {took:?}; {stats:?}");
    // Without the breaker this would take 1,000 × 2 timeouts = 200 s.
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(stats.short_circuited > 900, "{stats:?}");
    assert_eq!(stats.loads, 1_001, "every call served by the loader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_costs_about_the_timeout() {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port());
    let cache = cache_at(proxy.url()).await;
    load_user(&cache, 1).await;
    proxy.set_delay(Duration::from_secs(2));
    let started = Instant::now();
    assert_eq!(load_user(&cache, 1).await, user(1));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}, not the 2 s delay");
    assert!(cache.stats().errors >= 1);

    // Once Redis is fast again, the cache is too.
    proxy.set_delay(Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(10);
    let loads = loop {
        let loads = cache.stats().loads;
        load_user(&cache, 1).await;
        if cache.stats().loads == loads {
            break loads;
        }
        assert!(Instant::now() < deadline, "never served from Redis again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(loads >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_scripts_and_a_restart_are_survived() {
    let mut redis = RedisServer::start();
    let cache = cache_on(&redis).await;
    load_user(&cache, 1).await;
    redis.cmd::<()>("SCRIPT", &[b"FLUSH"]);
    load_user(&cache, 2).await;
    assert!(
        redis.raw_get("t:v1:user:2").is_some(),
        "filled after SCRIPT FLUSH"
    );
    assert_eq!(cache.stats().errors, 0, "NOSCRIPT is answered by reloading");

    redis.stop();
    redis.restart();
    wait_for_caching(&cache, &redis).await;
    load_user(&cache, 3).await;
    assert!(
        redis.raw_get("t:v1:user:3").is_some(),
        "filled after a restart"
    );
}
