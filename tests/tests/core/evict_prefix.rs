//! `evict_prefix`: literal prefixes, over each backend, in batches.

use cachefw_tests::fixtures as common;
use cachefw_tests::on_each_backend;

use cachefw::Cache;
use cachefw_tests::RedisServer;
use common::MINUTE;

on_each_backend!(
    removes_only_the_prefix,
    glob_characters_match_only_themselves,
    empty_prefix_clears_this_cache,
);

async fn removes_only_the_prefix(cache: Cache) {
    for key in ["user:1", "user:2", "user:10", "users", "order:1"] {
        cache.set(key, &1u8, MINUTE).await.expect("set");
    }
    assert_eq!(cache.evict_prefix("user:").await.expect("evict"), 3);
    for (key, kept) in [
        ("user:1", false),
        ("user:2", false),
        ("user:10", false),
        ("users", true),
        ("order:1", true),
    ] {
        let present = cache.get::<u8>(key).await.expect("get").is_some();
        assert_eq!(present, kept, "{key}");
    }
    assert_eq!(cache.evict_prefix("user:").await.expect("evict"), 0);
}

async fn glob_characters_match_only_themselves(cache: Cache) {
    for key in [
        "a*", "a*b", "ab", "a?", "ac", "a[b]", "ab]", "a\\", "a\\b", "ax",
    ] {
        cache.set(key, &1u8, MINUTE).await.expect("set");
    }
    assert_eq!(cache.evict_prefix("a*").await.expect("evict"), 2);
    assert_eq!(cache.evict_prefix("a?").await.expect("evict"), 1);
    assert_eq!(cache.evict_prefix("a[b").await.expect("evict"), 1);
    assert_eq!(cache.evict_prefix("a\\").await.expect("evict"), 2);
    for key in ["ab", "ac", "ab]", "ax"] {
        assert!(cache.get::<u8>(key).await.expect("get").is_some(), "{key}");
    }
}

async fn empty_prefix_clears_this_cache(cache: Cache) {
    for i in 0..10 {
        cache
            .set(&format!("k{i}"), &1u8, MINUTE)
            .await
            .expect("set");
    }
    assert_eq!(cache.evict_prefix("").await.expect("evict"), 10);
}

#[tokio::test]
async fn redis_eviction_scans_in_batches_and_spares_other_namespaces() {
    let redis = RedisServer::start();
    let shop = common::redis_cache(&redis, "shop").await;
    let other = common::redis_cache(&redis, "shop2").await;
    // More than one SCAN page and one UNLINK batch.
    for i in 0..2_345 {
        shop.set(&format!("item:{i}"), &i, MINUTE)
            .await
            .expect("set");
    }
    shop.set("keep", &1u8, MINUTE).await.expect("set");
    other.set("item:1", &1u8, MINUTE).await.expect("set");
    redis.raw_set("shop:v1:item:raw", b"foreign bytes count too");

    assert_eq!(shop.evict_prefix("item:").await.expect("evict"), 2_346);
    assert_eq!(redis.keys(), ["shop2:v1:item:1", "shop:v1:keep"]);
}

#[tokio::test]
async fn redis_eviction_escapes_globs_in_the_namespace() {
    let redis = RedisServer::start();
    let starred = common::redis_cache(&redis, "s*").await;
    let plain = common::redis_cache(&redis, "sx").await;
    starred.set("k", &1u8, MINUTE).await.expect("set");
    plain.set("k", &1u8, MINUTE).await.expect("set");
    assert_eq!(starred.evict_prefix("").await.expect("evict"), 1);
    assert_eq!(redis.keys(), ["sx:v1:k"]);
}

/// `evict_prefix("")` is defined as `clear()`: every entry of this
/// namespace and version, and nothing of another version, another
/// namespace, or outside the versioned prefix.
#[tokio::test]
async fn an_empty_prefix_removes_this_namespace_and_version_as_clear_does() {
    let redis = RedisServer::start();
    let build = |version: u32, namespace: &'static str| {
        Cache::builder()
            .redis(redis.url())
            .namespace(namespace)
            .version(version)
            .build()
    };
    let v1 = build(1, "shop").await.expect("builds");
    let v2 = build(2, "shop").await.expect("builds");
    let other = build(1, "shopx").await.expect("builds");
    let caches = [&v1, &v2, &other];
    fill(&caches, &redis).await;
    assert_eq!(v1.evict_prefix("").await.expect("evict"), 3);
    let left = [
        "shop:v2:",
        "shop:v2:a",
        "shop:v2:b:1",
        "shop:wb:carts",
        "shopx:v1:",
        "shopx:v1:a",
        "shopx:v1:b:1",
    ];
    assert_eq!(redis.keys(), left);

    fill(&caches, &redis).await;
    assert_eq!(v1.clear().await.expect("clear"), 3);
    assert_eq!(redis.keys(), left);
}

async fn fill(caches: &[&Cache], redis: &RedisServer) {
    for cache in caches {
        for key in ["a", "b:1", ""] {
            cache.set(key, &1u8, MINUTE).await.expect("set");
        }
    }
    redis.raw_set("shop:wb:carts", b"not under the version");
}
