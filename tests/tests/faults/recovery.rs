//! How fast caching comes back after Redis restarts, and how long a call
//! may take while Redis is frozen: one operation timeout, however many
//! Redis commands the call needs, plus the loader.

use cachefw_tests::fixtures as common;

use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_tests::RedisServer;
use common::{MINUTE, SourceDown};

const TIMEOUT: Duration = Duration::from_millis(200);
const LOAD: Duration = Duration::from_millis(50);

async fn cache_on(redis: &RedisServer) -> Cache {
    Cache::builder()
        .redis(redis.url())
        .namespace("recovery")
        .timeout(TIMEOUT)
        .build()
        .await
        .expect("builds")
}

async fn load(cache: &Cache, key: &str) -> u64 {
    cache
        .get_or_load(key, MINUTE, || async {
            tokio::time::sleep(LOAD).await;
            Ok::<_, SourceDown>(7)
        })
        .await
        .expect("the loader does not fail")
}

/// Calls that reached Redis and failed (not those the breaker turned away).
fn failed_calls(cache: &Cache) -> u64 {
    let stats = cache.stats();
    stats.errors - stats.short_circuited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_first_probe_brings_caching_back() {
    let mut redis = RedisServer::start();
    let cache = cache_on(&redis).await;
    assert_eq!(load(&cache, "k").await, 7);
    redis.stop();
    // Long enough for the breaker to open and its interval to grow.
    let down = Instant::now();
    while down.elapsed() < Duration::from_millis(2_500) {
        assert_eq!(load(&cache, "k").await, 7);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.stats().short_circuited > 0, "{:?}", cache.stats());
    let redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .expect("the restart");
    let restarted = Instant::now();
    let failed_before = failed_calls(&cache);
    let hits_before = cache.stats().hits;
    // The breaker's interval is at most 5 s (plus its jitter).
    let deadline = restarted + Duration::from_secs(8);
    while cache.stats().hits == hits_before {
        assert!(
            Instant::now() < deadline,
            "no hit {:?} after the restart: {:?}",
            restarted.elapsed(),
            cache.stats()
        );
        assert_eq!(load(&cache, "k").await, 7);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let recovery = restarted.elapsed();
    let failed = failed_calls(&cache) - failed_before;
    println!("caching back {recovery:?} after the restart; {failed} calls failed since");
    assert_eq!(
        failed, 0,
        "a probe after the restart failed: recovery took more than one interval"
    );
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_during_a_freeze_costs_one_timeout_at_most() {
    let redis = RedisServer::start();
    let cache = cache_on(&redis).await;
    assert_eq!(load(&cache, "warm").await, 7);
    for id in 0..20 {
        cache
            .set(&format!("k{id}"), &1u64, MINUTE)
            .await
            .expect("set");
    }
    redis.freeze();
    let mut worst = Duration::ZERO;
    // One timeout, and slack for a loaded machine.
    let bound = TIMEOUT + Duration::from_millis(150);
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(3) {
        calls += 1;
        let key = format!("k{}", calls % 20);
        // Each kind of call on its own clock; loads subtract the loader.
        let mut timed = Vec::new();
        let at = Instant::now();
        assert!([1, 7].contains(&load(&cache, &key).await));
        timed.push(at.elapsed().saturating_sub(LOAD));
        let at = Instant::now();
        assert_eq!(load(&cache, &format!("cold{calls}")).await, 7);
        timed.push(at.elapsed().saturating_sub(LOAD));
        let at = Instant::now();
        let _ = cache.get::<u64>(&key).await;
        timed.push(at.elapsed());
        let at = Instant::now();
        let _ = cache.delete(&key).await;
        timed.push(at.elapsed());
        let at = Instant::now();
        let _ = cache.set(&key, &2u64, MINUTE).await;
        timed.push(at.elapsed());
        let at = Instant::now();
        let many = cache
            .get_or_load_many(&["a", "b", "c"], MINUTE, |missing| async move {
                tokio::time::sleep(LOAD).await;
                Ok::<_, SourceDown>(missing.into_iter().map(|key| (key, 1u64)).collect())
            })
            .await
            .expect("the loader does not fail");
        timed.push(at.elapsed().saturating_sub(LOAD));
        assert_eq!(many, vec![Some(1); 3]);
        worst = timed.into_iter().fold(worst, Duration::max);
    }
    println!(
        "frozen Redis: worst call {worst:?} beyond its loader over {calls} rounds (timeout \
         {TIMEOUT:?})"
    );
    redis.thaw();
    assert!(worst <= bound, "a call took {worst:?}, over {bound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_makes_a_round_trip_even_while_the_breaker_is_open() {
    let mut redis = RedisServer::start();
    let cache = cache_on(&redis).await;
    let round_trip = cache.ping().await.expect("Redis is up");
    assert!(round_trip < TIMEOUT, "{round_trip:?}");
    redis.stop();
    while cache.stats().breaker != cachefw::BreakerState::Open {
        assert_eq!(load(&cache, "k").await, 7);
    }
    let error = cache.ping().await.expect_err("Redis is down");
    assert!(
        error.to_string().contains(&redis.port().to_string()),
        "the error names the server: {error}"
    );
    let redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .expect("the restart");
    // Still open (the interval has not passed), and ping goes through.
    assert!(cache.ping().await.is_ok(), "{:?}", cache.stats());
    let stats = cache.stats();
    assert_ne!(
        stats.breaker,
        cachefw::BreakerState::Closed,
        "ping leaves the breaker to the calls"
    );
    let json = serde_json::to_value(stats).expect("Stats serializes");
    assert!(
        json["breaker"] == "open" || json["breaker"] == "half_open",
        "{json}"
    );
    assert!(json["breaker_for_secs"].as_f64().is_some(), "{json}");
    assert_eq!(json["errors"].as_u64(), Some(stats.errors), "{json}");
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_say_how_long_the_breaker_has_held_its_state() {
    let redis = RedisServer::start();
    let cache = cache_on(&redis).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let closed = cache.stats();
    assert_eq!(closed.breaker, cachefw::BreakerState::Closed);
    assert!(
        closed.breaker_for >= Duration::from_millis(250),
        "{closed:?}"
    );
    redis.freeze();
    while cache.stats().breaker != cachefw::BreakerState::Open {
        assert_eq!(load(&cache, "k").await, 7);
    }
    let opened = cache.stats();
    assert!(
        opened.breaker_for < Duration::from_millis(250),
        "{opened:?}"
    );
    redis.thaw();
    let memory = Cache::builder().build().await.expect("builds");
    assert_eq!(memory.ping().await.ok(), Some(Duration::ZERO));
    let json = serde_json::to_string(&memory.stats()).expect("serializes");
    assert!(
        json.contains("\"hits\":0") && json.contains("\"breaker\":\"closed\""),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_on_a_cluster_reaches_every_primary() {
    let mut cluster = cachefw_tests::RedisCluster::start(3);
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace("recovery")
        .timeout(TIMEOUT)
        .build()
        .await
        .expect("builds");
    // The layout is read in the background: until then one PING answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the cluster never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in 0..30 {
        load(&cache, &format!("k{id}")).await;
    }
    assert!(cache.ping().await.is_ok());
    let stopped = cluster.primaries()[1];
    let port = cluster.nodes()[stopped].port();
    cluster.nodes_mut()[stopped].stop();
    let error = cache.ping().await.expect_err("a primary is down");
    assert!(
        error.to_string().contains(&port.to_string()),
        "the error names the stopped primary: {error}"
    );
}
