//! Tags: `evict_tag` makes every entry stored with the tag a miss, in every
//! process, in constant time (one `DEL`, no scan), with no stale fill from
//! a load that began before it, through the near tier, on a cluster, and
//! across an outage (journaled and replayed).

use cachefw_tests::fixtures as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_tests::eventually_async;
use cachefw_tests::{RedisCluster, RedisServer};
use common::{MINUTE, SourceDown};
use futures_util::StreamExt as _;

/// Stores `count` entries `{name}:{i}` carrying `tags`, many at a time.
async fn fill_tagged(cache: &Cache, name: &str, count: usize, tags: &[&str]) {
    futures_util::stream::iter(0..count)
        .for_each_concurrent(128, |i| async move {
            cache
                .set_tagged(&format!("{name}:{i}"), &(i as u64), MINUTE, tags)
                .await
                .expect("stored");
        })
        .await;
}

fn dbsize(redis: &RedisServer) -> i64 {
    redis.cmd("DBSIZE", &[])
}

/// Evicts the tag of `count` entries from one cache, and checks from
/// another: every tagged entry is a miss, the rest untouched, and Redis
/// deleted one key (the tag's), not the entries. Returns how long the
/// eviction took.
async fn evict_over(count: usize) -> Duration {
    let redis = RedisServer::start();
    let a = common::redis_cache(&redis, "tags").await;
    let b = common::redis_cache(&redis, "tags").await;
    fill_tagged(&a, "order", count, &["user:42", "orders"]).await;
    fill_tagged(&a, "other", 20, &["user:7"]).await;
    for i in 0..20u64 {
        a.set(&format!("plain:{i}"), &i, MINUTE)
            .await
            .expect("stored");
    }
    let sample: Vec<usize> = (0..count).step_by((count / 50).max(1)).collect();
    for i in &sample {
        assert_eq!(
            b.get::<u64>(&format!("order:{i}")).await.expect("reads"),
            Some(*i as u64)
        );
    }
    let before = dbsize(&redis);
    let started = Instant::now();
    a.evict_tag("user:42").await.expect("evicted");
    let took = started.elapsed();
    assert_eq!(
        dbsize(&redis),
        before - 1,
        "one key deleted: the tag's token, no entry"
    );
    for i in &sample {
        let key = format!("order:{i}");
        assert_eq!(
            b.get::<u64>(&key).await.expect("reads"),
            None,
            "{key} from another cache"
        );
        assert_eq!(a.get::<u64>(&key).await.expect("reads"), None, "{key}");
    }
    assert_eq!(
        b.get_many::<u64>(&["order:0", "other:3", "plain:4"])
            .await
            .expect("reads"),
        [None, Some(3), Some(4)],
        "batch reads check tags too; other tags and untagged entries stay"
    );
    for i in 0..20u64 {
        assert_eq!(
            b.get::<u64>(&format!("other:{i}")).await.expect("reads"),
            Some(i)
        );
        assert_eq!(
            b.get::<u64>(&format!("plain:{i}")).await.expect("reads"),
            Some(i)
        );
    }
    // The next load refills under a new token, and hits again.
    let calls = AtomicU32::new(0);
    for _ in 0..2 {
        let got = b
            .get_or_load_tagged("order:0", MINUTE, &["user:42", "orders"], || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, SourceDown>(100u64)
            })
            .await;
        assert_eq!(got, Ok(100));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "loaded once, then a hit");
    assert_eq!(a.get::<u64>("order:0").await.expect("reads"), Some(100));
    assert_eq!(b.stats().errors, 0, "{:?}", b.stats());
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_tag_over_200_and_20000_entries_costs_the_same_and_reaches_other_caches() {
    let small = evict_over(200).await;
    let large = evict_over(20_000).await;
    println!("evict_tag: 200 entries {small:?}, 20000 entries {large:?}");
    // Both are one DEL (asserted above through DBSIZE); the bound only
    // catches a scan, with slack for a loaded machine.
    assert!(
        large < small * 20 + Duration::from_millis(500),
        "{small:?} vs {large:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_began_before_evict_tag_is_not_served_after_it() {
    let redis = RedisServer::start();
    let a = common::redis_cache(&redis, "race").await;
    let b = common::redis_cache(&redis, "race").await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let loader_cache = a.clone();
    let load = tokio::spawn(async move {
        loader_cache
            .get_or_load_tagged("quote:1", MINUTE, &["sku:1"], || async move {
                let _ = started_tx.send(());
                let _ = release_rx.await;
                Ok::<_, SourceDown>("old".to_owned())
            })
            .await
    });
    tokio::time::timeout(Duration::from_secs(10), started_rx)
        .await
        .expect("the load starts")
        .expect("started");
    b.evict_tag("sku:1").await.expect("evicted");
    release_tx.send(()).expect("the load waits");
    let got = tokio::time::timeout(Duration::from_secs(10), load)
        .await
        .expect("the load ends")
        .expect("joins");
    assert_eq!(got.as_deref(), Ok("old"), "its own caller gets its value");
    for cache in [&a, &b] {
        assert_eq!(cache.get::<String>("quote:1").await.expect("reads"), None);
    }
    let got = b
        .get_or_load_tagged("quote:1", MINUTE, &["sku:1"], || async {
            Ok::<_, SourceDown>("new".to_owned())
        })
        .await;
    assert_eq!(got.as_deref(), Ok("new"), "the stale fill is not served");
    assert_eq!(
        a.get::<String>("quote:1").await.expect("reads").as_deref(),
        Some("new")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_evicted_by_another_process_empties_the_near_tiers() {
    let redis = RedisServer::start();
    let a = common::near_cache(&redis, "near").await;
    let b = common::near_cache(&redis, "near").await;
    a.set("plain", &1u64, MINUTE).await.expect("stored");
    a.set_tagged("tagged", &2u64, MINUTE, &["t"])
        .await
        .expect("stored");
    for _ in 0..3 {
        assert_eq!(a.get::<u64>("plain").await.expect("reads"), Some(1));
        assert_eq!(a.get::<u64>("tagged").await.expect("reads"), Some(2));
    }
    assert!(
        a.stats().near_hits >= 1,
        "untagged entries use the near tier"
    );
    b.evict_tag("t").await.expect("evicted");
    // Tagged entries are never held near: the very next read misses.
    assert_eq!(a.get::<u64>("tagged").await.expect("reads"), None);
    let calls = AtomicU32::new(0);
    let got = a
        .get_or_load_tagged("tagged", MINUTE, &["t"], || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, SourceDown>(3u64)
        })
        .await;
    assert_eq!((got, calls.load(Ordering::SeqCst)), (Ok(3), 1));
    assert_eq!(a.get::<u64>("plain").await.expect("reads"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_tag_while_redis_is_frozen_is_replayed_and_never_read_stale() {
    let redis = RedisServer::start();
    let build = || async {
        Cache::builder()
            .redis(redis.url())
            .namespace("frozen")
            .timeout(Duration::from_millis(200))
            .build()
            .await
            .expect("builds")
    };
    let (a, b) = (build().await, build().await);
    fill_tagged(&a, "row", 50, &["tenant:1"]).await;
    redis.freeze();
    assert!(a.evict_tag("tenant:1").await.is_err(), "Redis is frozen");
    assert_eq!(a.stats().pending_evictions, 1);
    // Meanwhile reads through A bypass Redis: the loader answers.
    let got = a
        .get_or_load_tagged("row:1", MINUTE, &["tenant:1"], || async {
            Ok::<_, SourceDown>(1_000u64)
        })
        .await;
    assert_eq!(got, Ok(1_000));
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.thaw();
    // From the thaw on, A never reads an entry from before its eviction.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.stats().pending_evictions > 0 {
        assert!(Instant::now() < deadline, "replayed: {:?}", a.stats());
        if let Ok(found) = a.get::<u64>("row:2").await {
            assert_eq!(found, None, "no stale read while the eviction waits");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..50 {
        let key = format!("row:{i}");
        assert_eq!(a.get::<u64>(&key).await.expect("reads"), None, "{key}");
        assert_eq!(
            b.get::<u64>(&key).await.expect("reads"),
            None,
            "{key} from B"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_on_a_cluster_span_slots() {
    let cluster = RedisCluster::start(3);
    let build = || async {
        Cache::builder()
            .redis_cluster(cluster.urls())
            .namespace("ctags")
            .build()
            .await
            .expect("builds")
    };
    let (a, b) = (build().await, build().await);
    // 200 keys land on every primary; the tag's key on one of them.
    fill_tagged(&a, "item", 200, &["shop:1"]).await;
    fill_tagged(&a, "keep", 20, &["shop:2"]).await;
    let calls = AtomicU32::new(0);
    for _ in 0..2 {
        let got = b
            .get_or_load_tagged("item:5", MINUTE, &["shop:1"], || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, SourceDown>(0u64)
            })
            .await;
        assert_eq!(got, Ok(5), "a hit");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    b.evict_tag("shop:1").await.expect("evicted");
    for i in 0..200 {
        assert_eq!(
            a.get::<u64>(&format!("item:{i}")).await.expect("reads"),
            None
        );
    }
    for i in 0..20u64 {
        assert_eq!(
            a.get::<u64>(&format!("keep:{i}")).await.expect("reads"),
            Some(i)
        );
    }
    assert_eq!(a.stats().errors, 0, "{:?}", a.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_in_memory_and_clear_removes_them() {
    let memory = common::memory_cache("mtags").await;
    memory
        .set_tagged("a", &1u64, MINUTE, &["t"])
        .await
        .expect("stored");
    memory.set("b", &2u64, MINUTE).await.expect("stored");
    memory.evict_tag("t").await.expect("evicted");
    assert_eq!(memory.get::<u64>("a").await.expect("reads"), None);
    assert_eq!(memory.get::<u64>("b").await.expect("reads"), Some(2));

    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "ctag").await;
    cache
        .set_tagged("a", &1u64, MINUTE, &["t", "u", "t"])
        .await
        .expect("stored");
    assert_eq!(
        redis.keys().len(),
        3,
        "the entry and two tags: {:?}",
        redis.keys()
    );
    cache.clear().await.expect("cleared");
    assert!(redis.keys().is_empty(), "{:?}", redis.keys());
    // A tag key lost (flushed, evicted by memory pressure) makes its
    // entries misses, never stale hits.
    cache
        .set_tagged("a", &1u64, MINUTE, &["t"])
        .await
        .expect("stored");
    let shared = Arc::new(cache);
    let _: () = redis.cmd("DEL", &[b"ctag:v1:%tag:t"]);
    eventually_async(Duration::from_secs(5), "a miss", async || {
        shared.get::<u64>("a").await.ok() == Some(None)
    })
    .await;
}
