//! `Cache::hot_keys`: reads sampled into `{namespace}:hot`, outside the
//! version, so a new version knows the old one's hot keys.

use std::collections::HashSet;
use std::time::Duration;

use cachefw::Cache;
use cachefw_tests::RedisServer;
use cachefw_tests::eventually_async;
use cachefw_tests::fixtures::{MINUTE, memory_cache};

/// Keys `0..20` are the true top 20 (300 to 680 reads each), the 180
/// others are read 10 times each.
fn reads_of(key: usize) -> usize {
    if key < 20 { 300 + 20 * (20 - key) } else { 10 }
}

async fn skewed_traffic(cache: &Cache) {
    for key in 0..200 {
        cache
            .set(&format!("item:{key}"), &(key as u64), MINUTE)
            .await
            .expect("set");
    }
    // Interleaved, as real traffic is.
    let mut left: Vec<usize> = (0..200).map(reads_of).collect();
    while left.iter().any(|n| *n > 0) {
        for (key, n) in left.iter_mut().enumerate() {
            if *n > 0 {
                *n -= 1;
                let got = cache.get::<u64>(&format!("item:{key}")).await.expect("get");
                assert_eq!(got, Some(key as u64));
            }
        }
    }
}

fn top_20() -> HashSet<String> {
    (0..20).map(|key| format!("item:{key}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_version_bump_hot_keys_names_the_old_top_20() {
    let server = RedisServer::start();
    let build = |version| {
        Cache::builder()
            .redis(server.url())
            .namespace("hot")
            .version(version)
            .build()
    };
    let old = build(1).await.expect("builds");
    skewed_traffic(&old).await;
    // Another process, on the new version: it sees the old one's reads
    // once its flusher ran (every 500 ms).
    let new = build(2).await.expect("builds");
    let mut named = Vec::new();
    let mut found = 0;
    // Visible within a second of the last read (the old process flushes
    // every 500 ms); the wait allows for the loaded machine.
    eventually_async(
        Duration::from_secs(5),
        "the old reads visible",
        async || {
            named = new.hot_keys(20).await.expect("hot keys");
            found = named.iter().filter(|key| top_20().contains(*key)).count();
            named.len() == 20 && found >= 16
        },
    )
    .await;
    println!("hot_keys(20) after a version bump names {found} of the true top 20");
    assert!(found >= 16, "{found} of the top 20 in {named:?}");
    assert!(
        named.iter().all(|key| !key.contains(":v1:")),
        "rendered keys: {named:?}"
    );
    // Hottest first: one of the true top 20 leads (sampling blurs the
    // order among them).
    let first: usize = named[0]["item:".len()..].parse().expect("a key of ours");
    assert!(first < 20, "{named:?}");
    // Outside the version: the set is `{namespace}:hot`, and `clear` of a
    // version leaves it.
    old.clear().await.expect("clear");
    assert_eq!(new.hot_keys(20).await.expect("hot keys").len(), 20);
    assert!(
        server.keys().contains(&"hot:hot".to_owned()),
        "{:?}",
        server.keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_backend_ranks_its_own_reads() {
    let cache = memory_cache("hot").await;
    skewed_traffic(&cache).await;
    let named = cache.hot_keys(20).await.expect("hot keys");
    let found = named.iter().filter(|key| top_20().contains(*key)).count();
    assert!(found >= 16, "{found} of the top 20 in {named:?}");
    assert!(cache.hot_keys(0).await.expect("hot keys").is_empty());
}

/// Reads through `get_or_load` (the macros' path, which on the in-memory
/// backend keeps a decoded copy and skips the plain read) count too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_backend_ranks_loaded_reads_too() {
    let cache = memory_cache("hot-loaded").await;
    let mut left: Vec<usize> = (0..200).map(reads_of).collect();
    while left.iter().any(|n| *n > 0) {
        for (key, n) in left.iter_mut().enumerate() {
            if *n > 0 {
                *n -= 1;
                let got = cache
                    .get_or_load(&format!("item:{key}"), MINUTE, || async {
                        Ok::<_, std::convert::Infallible>(key as u64)
                    })
                    .await;
                assert_eq!(got, Ok(key as u64));
            }
        }
    }
    let named = cache.hot_keys(20).await.expect("hot keys");
    let found = named.iter().filter(|key| top_20().contains(*key)).count();
    assert!(found >= 16, "{found} of the top 20 in {named:?}");
}
