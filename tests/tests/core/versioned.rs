//! Versioned entries (`cachefw::__adapter::versioned`, what write-through
//! and write-behind stand on) over each backend and a Redis Cluster: the
//! Lua scripts against the in-memory implementation, and the lease a
//! versioned store voids.

use cachefw_tests::fixtures as common;
use cachefw_tests::on_each_backend;

use std::time::Duration;

use cachefw::__adapter::versioned::{self, Settled, Stored};
use cachefw::Cache;
use cachefw_tests::RedisCluster;
use common::MINUTE;

on_each_backend!(
    versions_order_writes_and_evictions,
    settling_keeps_the_own_write_only,
    a_versioned_store_voids_a_readers_lease,
);

async fn versions_order_writes_and_evictions(cache: Cache) {
    let store = |value: &'static str, version| {
        let cache = cache.clone();
        async move { versioned::store(&cache, "k", value, version, Some(MINUTE), None).await }
    };
    assert_eq!(store("b", 20).await.expect("store"), Stored::Stored);
    assert_eq!(store("a", 10).await.expect("store"), Stored::Superseded);
    assert_eq!(store("b", 20).await.expect("store"), Stored::Superseded);
    assert_eq!(
        cache.get::<String>("k").await.expect("get").as_deref(),
        Some("b")
    );
    // An eviction older than the stored write leaves it; a newer one wins
    // over writes older than itself that land later.
    assert!(
        !versioned::evict(&cache, "k", 15, MINUTE)
            .await
            .expect("evict")
    );
    assert!(cache.get::<String>("k").await.expect("get").is_some());
    assert!(
        versioned::evict(&cache, "k", 30, MINUTE)
            .await
            .expect("evict")
    );
    assert_eq!(store("c", 25).await.expect("store"), Stored::Superseded);
    assert_eq!(cache.get::<String>("k").await.expect("get"), None);
    // Versions compare as numbers, whatever their length.
    assert_eq!(store("d", 100).await.expect("store"), Stored::Stored);
    assert_eq!(store("e", 99).await.expect("store"), Stored::Superseded);
    assert_eq!(store("f", u64::MAX).await.expect("store"), Stored::Stored);
    // A fill that replaced the version's own write is removed by an older
    // write, which may have read the source before it.
    cache.set("k", "filled", MINUTE).await.expect("set");
    assert_eq!(store("g", 1).await.expect("store"), Stored::Superseded);
    assert_eq!(cache.get::<String>("k").await.expect("get"), None);
    // A read-modify-write expects the version it read.
    let seen = versioned::peek::<String>(&cache, "n").await.expect("peek");
    assert_eq!((seen.value, seen.version), (None, None));
    versioned::store(&cache, "n", "1", 1, Some(MINUTE), None)
        .await
        .expect("store");
    let seen = versioned::peek::<String>(&cache, "n").await.expect("peek");
    assert_eq!((seen.value.as_deref(), seen.version), (Some("1"), Some(1)));
    let stale = versioned::store(&cache, "n", "2", 3, Some(MINUTE), Some(0)).await;
    assert_eq!(stale.expect("store"), Stored::Conflict);
    let fresh = versioned::store(&cache, "n", "2", 3, Some(MINUTE), Some(1)).await;
    assert_eq!(fresh.expect("store"), Stored::Stored);
}

async fn settling_keeps_the_own_write_only(cache: Cache) {
    versioned::store(&cache, "k", "pending", 5, None, None)
        .await
        .expect("store");
    let ttl = cache.ttl("k").await.expect("ttl");
    assert!(
        ttl.is_none_or(|left| left > Duration::from_secs(3_600)),
        "no expiry before it is settled: {ttl:?}"
    );
    let settle = |version, ttl| {
        let cache = cache.clone();
        async move { versioned::settle(&cache, "k", version, ttl).await }
    };
    assert_eq!(
        settle(4, Some(MINUTE)).await.expect("settle"),
        Settled::Newer
    );
    assert_eq!(
        settle(5, Some(MINUTE)).await.expect("settle"),
        Settled::Kept
    );
    let left = cache.ttl("k").await.expect("ttl").expect("present");
    assert!(left <= MINUTE && left > Duration::from_secs(50), "{left:?}");
    cache.set("k", "filled", MINUTE).await.expect("set");
    assert_eq!(
        settle(5, Some(MINUTE)).await.expect("settle"),
        Settled::Removed
    );
    assert_eq!(cache.get::<String>("k").await.expect("get"), None);
    versioned::store(&cache, "k", "refused", 6, None, None)
        .await
        .expect("store");
    assert_eq!(settle(6, None).await.expect("settle"), Settled::Removed);
    assert_eq!(cache.get::<String>("k").await.expect("get"), None);
}

/// A load begins (and takes the lease), a versioned write lands, then the
/// load tries to fill its older value.
async fn a_versioned_store_voids_a_readers_lease(cache: Cache) {
    let (loaded, load) = tokio::sync::oneshot::channel::<()>();
    let (leased, lease) = tokio::sync::oneshot::channel::<()>();
    let reader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("row", MINUTE, || async move {
                    let _ = leased.send(());
                    let _ = load.await;
                    Ok::<_, std::io::Error>("old".to_owned())
                })
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(5), lease)
        .await
        .expect("the load starts")
        .expect("the reader runs");
    let stored = versioned::store(&cache, "row", "new", 1, Some(MINUTE), None).await;
    assert_eq!(stored.expect("store"), Stored::Stored);
    let _ = loaded.send(());
    let read = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the reader ends")
        .expect("no panic");
    assert_eq!(
        read.ok().as_deref(),
        Some("old"),
        "the reader got its own load"
    );
    assert_eq!(
        cache.get::<String>("row").await.expect("get").as_deref(),
        Some("new"),
        "and did not fill it over the versioned write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioned_entries_over_a_cluster() {
    let cluster = RedisCluster::start(3);
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace("v")
        .build()
        .await
        .expect("cache");
    for n in 0..30_u64 {
        let key = format!("row:{n}");
        assert_eq!(
            versioned::store(&cache, &key, &n, 2, Some(MINUTE), None)
                .await
                .expect("store"),
            Stored::Stored
        );
        assert_eq!(
            versioned::store(&cache, &key, &0_u64, 1, Some(MINUTE), None)
                .await
                .expect("store"),
            Stored::Superseded
        );
        assert_eq!(cache.get::<u64>(&key).await.expect("get"), Some(n));
    }
    // A hash tag keeps the record with its entry.
    versioned::store(&cache, "{user1}:cart", "x", 1, Some(MINUTE), None)
        .await
        .expect("store");
    // A key with a `}` and no tag cannot share a slot with its record.
    let refused = versioned::store(&cache, "a}b", "x", 1, Some(MINUTE), None).await;
    assert!(
        matches!(&refused, Err(cachefw::Error::Config { setting: "key", .. })),
        "{refused:?}"
    );
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
}
