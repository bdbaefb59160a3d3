//! Everything over a real Redis Cluster of three primaries: keys spread over
//! slots, the lease scripts (one key each), prefix eviction on every
//! primary, stale fills, and flushed scripts.

use cachefw_tests::fixtures as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cachefw::Cache;
use cachefw_tests::RedisCluster;
use common::{MINUTE, SourceDown, User, load_user, user};

async fn cluster_cache(cluster: &RedisCluster) -> Cache {
    Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace("c")
        .build()
        .await
        .expect("builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_aside_over_a_cluster() {
    let cluster = RedisCluster::start(3);
    let cache = cluster_cache(&cluster).await;
    for id in 0..60 {
        assert_eq!(load_user(&cache, id).await, user(id));
        assert_eq!(load_user(&cache, id).await, user(id));
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.loads, stats.hits, stats.errors),
        (60, 60, 0),
        "{stats:?}"
    );
    let spread = cluster
        .nodes()
        .iter()
        .filter(|node| !node.keys().is_empty())
        .count();
    assert_eq!(spread, 3, "keys live on every primary");

    cache.set("plain", &1u8, MINUTE).await.expect("set");
    assert_eq!(cache.get::<u8>("plain").await.expect("get"), Some(1));
    assert!(cache.ttl("plain").await.expect("ttl").is_some());
    assert!(cache.delete("plain").await.expect("delete"));

    assert_eq!(cache.evict_prefix("user:1").await.expect("evict"), 11);
    assert_eq!(cache.evict_prefix("user:").await.expect("evict"), 49);
    assert!(cluster.keys().is_empty(), "{:?}", cluster.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_load_across_processes_and_no_stale_fill() {
    let cluster = RedisCluster::start(3);
    let loads = Arc::new(AtomicU32::new(0));
    let mut callers = Vec::new();
    for _ in 0..3 {
        let cache = cluster_cache(&cluster).await;
        for _ in 0..20 {
            let (cache, loads) = (cache.clone(), loads.clone());
            callers.push(tokio::spawn(async move {
                cache
                    .get_or_load("hot", MINUTE, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, SourceDown>(5u32)
                    })
                    .await
            }));
        }
    }
    for caller in callers {
        assert_eq!(caller.await.expect("task"), Ok(5));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    // A load that began before a delete does not store its value after it.
    let reader = cluster_cache(&cluster).await;
    let writer = cluster_cache(&cluster).await;
    let resume = Arc::new(tokio::sync::Notify::new());
    let slow = {
        let (reader, resume) = (reader.clone(), resume.clone());
        tokio::spawn(async move {
            reader
                .get_or_load("user:1", MINUTE, || async move {
                    resume.notified().await;
                    Ok::<_, SourceDown>(user(0))
                })
                .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while reader.stats().loads == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the reader never loaded"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    writer.delete("user:1").await.expect("delete");
    resume.notify_one();
    assert_eq!(slow.await.expect("task"), Ok(user(0)));
    assert_eq!(writer.get::<User>("user:1").await.expect("get"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_scripts_are_reloaded_on_every_node() {
    let cluster = RedisCluster::start(3);
    let cache = cluster_cache(&cluster).await;
    load_user(&cache, 1).await;
    for node in cluster.nodes() {
        node.cmd::<()>("SCRIPT", &[b"FLUSH"]);
    }
    for id in 2..20 {
        load_user(&cache, id).await;
    }
    assert_eq!(cache.stats().errors, 0);
    assert_eq!(cluster.keys().len(), 19);
}
