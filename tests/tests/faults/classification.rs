//! Redis errors are classified by what they mean: a server that became a
//! replica (`READONLY`, what the old primary answers after a failover) is
//! an outage of that server, which opens the breaker at once; an answer
//! about one command (`OOM`, `WRONGTYPE`) is not, and never trips it.

use cachefw_tests::fixtures as common;

use std::time::{Duration, Instant};

use cachefw::{BreakerState, Cache};
use cachefw_tests::RedisServer;
use common::{MINUTE, SourceDown, load_user, user};

async fn cache_on(redis: &RedisServer) -> Cache {
    Cache::builder()
        .redis(redis.url())
        .namespace("cls")
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .expect("builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_turned_replica_opens_the_breaker_and_calls_still_succeed() {
    let primary = RedisServer::start();
    let other = RedisServer::start();
    let cache = cache_on(&primary).await;
    for id in 0..5 {
        load_user(&cache, id).await;
    }
    // A failover demotes our server: it now follows another primary, and
    // answers every write with READONLY.
    primary.replicate(&other);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut calls = 0;
    while cache.stats().breaker == BreakerState::Closed {
        assert!(Instant::now() < deadline, "{:?}", cache.stats());
        assert_eq!(load_user(&cache, 100 + calls).await, user(100 + calls));
        calls += 1;
    }
    assert!(
        calls <= 3,
        "READONLY opens the breaker at once, took {calls} calls"
    );
    for id in 0..50 {
        assert_eq!(
            load_user(&cache, id).await,
            user(id),
            "served by the loader"
        );
    }
    let stats = cache.stats();
    assert!(stats.errors >= 1, "{stats:?}");
    assert_ne!(stats.breaker, BreakerState::Closed, "{stats:?}");

    // Promoted back: probes find it writable and caching resumes.
    primary.promote();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let loads = cache.stats().loads;
        load_user(&cache, 7).await;
        if cache.stats().loads == loads && cache.stats().breaker == BreakerState::Closed {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", cache.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_is_not_an_outage() {
    let redis = RedisServer::start();
    let cache = cache_on(&redis).await;
    load_user(&cache, 1).await;
    // Every write is refused with OOM; reads still work.
    redis.cmd::<()>("CONFIG", &[b"SET", b"maxmemory-policy", b"noeviction"]);
    redis.cmd::<()>("CONFIG", &[b"SET", b"maxmemory", b"1"]);
    for id in 2..40 {
        assert_eq!(load_user(&cache, id).await, user(id));
        // The entry written before still hits.
        let loads = cache.stats().loads;
        assert_eq!(load_user(&cache, 1).await, user(1));
        assert_eq!(cache.stats().loads, loads, "a hit while writes fail");
    }
    let stats = cache.stats();
    assert!(
        stats.errors >= 38,
        "each refused write is counted: {stats:?}"
    );
    assert_eq!(stats.breaker, BreakerState::Closed, "{stats:?}");
    assert_eq!(stats.short_circuited, 0, "{stats:?}");
    let error = cache.set("k", &1u8, MINUTE).await.expect_err("OOM");
    assert!(error.to_string().contains("OOM"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_is_not_an_outage() {
    let redis = RedisServer::start();
    let cache = cache_on(&redis).await;
    for i in 0..20 {
        let key = format!("cls:v1:list:{i}");
        redis.cmd::<()>("RPUSH", &[key.as_bytes(), b"x"]);
        // GET of a list answers WRONGTYPE: a miss, replaced by the load.
        let got = cache
            .get_or_load(&format!("list:{i}"), MINUTE, || async {
                Ok::<_, SourceDown>(i)
            })
            .await;
        assert_eq!(got, Ok(i));
    }
    let stats = cache.stats();
    assert!(stats.errors >= 20, "{stats:?}");
    assert_eq!(stats.breaker, BreakerState::Closed, "{stats:?}");
    assert_eq!(cache.get::<i32>("list:3").await.expect("replaced"), Some(3));
}
