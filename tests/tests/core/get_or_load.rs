//! `get_or_load`: cache-aside over each backend, single-flight of concurrent
//! misses, and what happens when loaders fail or are cancelled.

use cachefw_tests::fixtures as common;
use cachefw_tests::on_each_backend;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cachefw::Cache;
use cachefw_tests::eventually;
use common::{MINUTE, SourceDown, User, user};
use tokio::sync::Notify;

on_each_backend!(
    miss_loads_and_stores_then_hits,
    loader_error_is_returned_and_not_cached,
    concurrent_misses_load_once,
    followers_of_a_failed_load_do_not_hang,
    cancelled_leader_does_not_strand_followers,
    panicking_loader_does_not_strand_followers,
    keys_load_independently,
);

async fn miss_loads_and_stores_then_hits(cache: Cache) {
    let loads = AtomicU32::new(0);
    for _ in 0..3 {
        let got = cache
            .get_or_load("user:1", MINUTE, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, SourceDown>(user(1))
            })
            .await;
        assert_eq!(got, Ok(user(1)));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(
        cache.get::<User>("user:1").await.expect("get"),
        Some(user(1))
    );
    let left = cache.ttl("user:1").await.expect("ttl").expect("stored");
    assert!(left > Duration::from_secs(55), "{left:?}");
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.loads, stats.errors),
        (3, 1, 1, 0)
    );
}

async fn loader_error_is_returned_and_not_cached(cache: Cache) {
    let got: Result<User, _> = cache
        .get_or_load("user:1", MINUTE, || async { Err(SourceDown(7)) })
        .await;
    assert_eq!(got, Err(SourceDown(7)));
    assert_eq!(cache.get::<User>("user:1").await.expect("get"), None);
    let got = cache
        .get_or_load("user:1", MINUTE, || async { Ok::<_, SourceDown>(user(1)) })
        .await;
    assert_eq!(got, Ok(user(1)));
    assert_eq!(
        cache.stats().errors,
        0,
        "a loader error is not a cache error"
    );
}

async fn concurrent_misses_load_once(cache: Cache) {
    let loads = Arc::new(AtomicU32::new(0));
    let release = Arc::new(Notify::new());
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let (cache, loads, release) = (cache.clone(), loads.clone(), release.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load("hot", MINUTE, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        Ok::<_, SourceDown>(user(9))
                    })
                    .await
            })
        })
        .collect();
    // Every caller has missed and all but the leader wait on its load.
    eventually(
        Duration::from_secs(10),
        "cache.stats().coalesced == 99",
        || cache.stats().coalesced == 99,
    )
    .await;
    release.notify_one();
    for caller in callers {
        assert_eq!(caller.await.expect("task"), Ok(user(9)));
    }
    let stats = cache.stats();
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!((stats.loads, stats.coalesced), (1, 99));
}

async fn followers_of_a_failed_load_do_not_hang(cache: Cache) {
    let release = Arc::new(Notify::new());
    let leader = spawn_gated(&cache, &release, || Err(SourceDown(1)));
    eventually(Duration::from_secs(10), "cache.stats().loads == 1", || {
        cache.stats().loads == 1
    })
    .await;
    let followers: Vec<_> = (0..5).map(|i| spawn_load(&cache, "k", i)).collect();
    eventually(
        Duration::from_secs(10),
        "cache.stats().coalesced == 5",
        || cache.stats().coalesced == 5,
    )
    .await;
    release.notify_one();
    // The error goes to the caller whose loader failed; the followers then
    // try again under the lease: one of them loads, the others get its value.
    assert_eq!(leader.await.expect("task"), Err(SourceDown(1)));
    let mut values = Vec::new();
    for follower in followers {
        values.push(follower.await.expect("task").expect("a value"));
    }
    values.dedup();
    assert_eq!(values.len(), 1, "{values:?}");
    assert_eq!(cache.stats().loads, 2);
}

async fn cancelled_leader_does_not_strand_followers(cache: Cache) {
    let never = Arc::new(Notify::new());
    let leader = spawn_gated(&cache, &never, || Ok(0));
    eventually(Duration::from_secs(10), "cache.stats().loads == 1", || {
        cache.stats().loads == 1
    })
    .await;
    let follower = spawn_load(&cache, "k", 5);
    eventually(
        Duration::from_secs(10),
        "cache.stats().coalesced == 1",
        || cache.stats().coalesced == 1,
    )
    .await;
    leader.abort();
    // The follower takes over the load and stores it.
    assert_eq!(follower.await.expect("task"), Ok(5));
    assert_eq!(cache.get::<u32>("k").await.expect("get"), Some(5));
}

async fn panicking_loader_does_not_strand_followers(cache: Cache) {
    let release = Arc::new(Notify::new());
    let leader = spawn_gated(&cache, &release, || panic!("the loader's own bug"));
    eventually(Duration::from_secs(10), "cache.stats().loads == 1", || {
        cache.stats().loads == 1
    })
    .await;
    let follower = spawn_load(&cache, "k", 5);
    eventually(
        Duration::from_secs(10),
        "cache.stats().coalesced == 1",
        || cache.stats().coalesced == 1,
    )
    .await;
    release.notify_one();
    assert!(leader.await.is_err_and(|e| e.is_panic()));
    assert_eq!(follower.await.expect("task"), Ok(5));
}

async fn keys_load_independently(cache: Cache) {
    let a = cache.get_or_load("a", MINUTE, || async { Ok::<_, SourceDown>(1u8) });
    let b = cache.get_or_load("b", MINUTE, || async { Ok::<_, SourceDown>(2u8) });
    assert_eq!(tokio::join!(a, b), (Ok(1), Ok(2)));
    assert_eq!(cache.stats().loads, 2);
}

/// A caller of `key` whose loader would return `value`.
fn spawn_load(
    cache: &Cache,
    key: &'static str,
    value: u32,
) -> tokio::task::JoinHandle<Result<u32, SourceDown>> {
    let cache = cache.clone();
    tokio::spawn(async move {
        cache
            .get_or_load(key, MINUTE, || async move { Ok(value) })
            .await
    })
}

/// A caller of `"k"` whose loader waits for `release`, then returns what
/// `outcome` gives.
fn spawn_gated(
    cache: &Cache,
    release: &Arc<Notify>,
    outcome: impl FnOnce() -> Result<u32, SourceDown> + Send + 'static,
) -> tokio::task::JoinHandle<Result<u32, SourceDown>> {
    let (cache, release) = (cache.clone(), release.clone());
    tokio::spawn(async move {
        cache
            .get_or_load("k", MINUTE, || async move {
                release.notified().await;
                outcome()
            })
            .await
    })
}
