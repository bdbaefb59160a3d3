//! The user-facing test kit, `cachefw::testing::RedisServer`, does what its
//! recipes say: a private server per test, and the faults a test injects
//! (stop, restart, freeze, thaw) are the ones the cache then sees.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw::testing::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(100);

async fn cache(redis: &RedisServer) -> Cache {
    Cache::builder()
        .redis(redis.url())
        .namespace("kit")
        .timeout(TIMEOUT)
        .build()
        .await
        .expect("builds")
}

async fn answer(cache: &Cache) -> u32 {
    let load = || async { Ok::<_, std::io::Error>(42) };
    let got = cache
        .get_or_load("answer", Duration::from_secs(60), load)
        .await;
    got.expect("the loader does not fail")
}

/// Calls until a call is a hit, within `within`.
async fn until_hit(cache: &Cache, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let hits = cache.stats().hits;
        assert_eq!(answer(cache).await, 42);
        if cache.stats().hits > hits {
            return;
        }
        assert!(Instant::now() < deadline, "no hit within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_private_server_on_a_free_port() {
    let first = RedisServer::start();
    let second = RedisServer::start();
    assert_ne!(first.port(), second.port());
    assert_ne!(first.port(), 6379);
    assert_eq!(first.url(), format!("redis://127.0.0.1:{}", first.port()));
    assert!(first.is_running());

    let cache = cache(&first).await;
    assert_eq!(answer(&cache).await, 42);
    assert_eq!(answer(&cache).await, 42);
    let stats = cache.stats();
    assert_eq!(
        (stats.misses, stats.loads, stats.hits),
        (1, 1, 1),
        "{stats:?}"
    );
    assert_eq!(cache.get::<u32>("answer").await.expect("get"), Some(42));
    assert_eq!(stats.errors, 0);
}

#[tokio::test]
async fn stop_and_restart() {
    let mut redis = RedisServer::start();
    let cache = cache(&redis).await;
    assert_eq!(answer(&cache).await, 42);

    redis.stop();
    assert!(!redis.is_running());
    let addr = ("127.0.0.1", redis.port());
    assert!(TcpStream::connect(addr).is_err(), "refused while stopped");
    assert_eq!(answer(&cache).await, 42, "served by the loader");
    assert!(cache.stats().errors > 0, "{:?}", cache.stats());

    redis.restart();
    assert!(redis.is_running());
    let fresh = self::cache(&redis).await;
    assert_eq!(
        fresh.get::<u32>("answer").await.expect("get"),
        None,
        "a restarted server is empty"
    );
    until_hit(&cache, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn freeze_and_thaw() {
    let redis = RedisServer::start();
    let cache = cache(&redis).await;
    assert_eq!(answer(&cache).await, 42);

    redis.freeze();
    let errors = cache.stats().errors;
    let started = Instant::now();
    assert!(
        cache.get::<u32>("answer").await.is_err(),
        "no answer while frozen"
    );
    let took = started.elapsed();
    assert!(took >= TIMEOUT, "waited for the timeout: {took:?}");
    assert!(took < Duration::from_secs(5), "then gave up: {took:?}");
    assert_eq!(answer(&cache).await, 42, "served by the loader");
    assert!(cache.stats().errors > errors, "{:?}", cache.stats());

    redis.thaw();
    until_hit(&cache, Duration::from_secs(15)).await;
}

#[test]
fn dropping_the_server_kills_it() {
    let redis = RedisServer::start();
    let mut connection = TcpStream::connect(("127.0.0.1", redis.port())).expect("connects");
    connection
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    drop(redis);
    // The server's end closes: end of stream or a reset, not a wait.
    match connection.read(&mut [0u8; 16]) {
        Ok(0) => {}
        Ok(n) => panic!("{n} unexpected bytes"),
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}"),
    }
}
