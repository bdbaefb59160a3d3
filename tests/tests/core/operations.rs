//! The low-level operations, over each backend: get, set, delete, ttl, the
//! key layout and the version bump.

use cachefw_tests::fixtures as common;
use cachefw_tests::on_each_backend;

use std::time::Duration;

use cachefw::{Cache, Error};
use cachefw_tests::RedisServer;
use common::{MINUTE, User, user};

on_each_backend!(
    set_then_get_round_trips,
    delete_reports_whether_it_existed,
    ttl_reports_time_left,
    entries_expire,
    set_replaces_value_and_ttl,
    invalid_ttl_is_refused,
    stats_count_hits_and_misses,
    clones_share_state,
    keys_may_hold_any_text,
    large_values_round_trip,
    unserializable_value_is_refused_and_never_fails_a_load,
);

async fn set_then_get_round_trips(cache: Cache) {
    assert_eq!(cache.get::<User>("user:1").await.expect("get"), None);
    cache.set("user:1", &user(1), MINUTE).await.expect("set");
    assert_eq!(
        cache.get::<User>("user:1").await.expect("get"),
        Some(user(1))
    );
    // Unsized values work too.
    cache
        .set("greeting", "hello", MINUTE)
        .await
        .expect("set str");
    assert_eq!(
        cache
            .get::<String>("greeting")
            .await
            .expect("get")
            .as_deref(),
        Some("hello")
    );
}

async fn delete_reports_whether_it_existed(cache: Cache) {
    cache.set("user:2", &user(2), MINUTE).await.expect("set");
    assert!(cache.delete("user:2").await.expect("delete"));
    assert!(!cache.delete("user:2").await.expect("delete again"));
    assert_eq!(cache.get::<User>("user:2").await.expect("get"), None);
}

async fn ttl_reports_time_left(cache: Cache) {
    assert_eq!(cache.ttl("absent").await.expect("ttl"), None);
    cache
        .set("k", &1u8, Duration::from_secs(90))
        .await
        .expect("set");
    let left = cache.ttl("k").await.expect("ttl").expect("present");
    assert!(
        left > Duration::from_secs(85) && left <= Duration::from_secs(90),
        "{left:?}"
    );
}

async fn entries_expire(cache: Cache) {
    cache
        .set("brief", &1u8, Duration::from_millis(50))
        .await
        .expect("set");
    cache.set("lasting", &2u8, MINUTE).await.expect("set");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cache.get::<u8>("brief").await.expect("get").is_some() {
        assert!(std::time::Instant::now() < deadline, "entry never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cache.get::<u8>("lasting").await.expect("get"), Some(2));
}

async fn set_replaces_value_and_ttl(cache: Cache) {
    cache.set("k", &1u32, MINUTE).await.expect("set");
    cache
        .set("k", &2u32, Duration::from_secs(5))
        .await
        .expect("set");
    assert_eq!(cache.get::<u32>("k").await.expect("get"), Some(2));
    let left = cache.ttl("k").await.expect("ttl").expect("present");
    assert!(left <= Duration::from_secs(5), "{left:?}");
}

async fn invalid_ttl_is_refused(cache: Cache) {
    let err = cache
        .set("k", &1u8, Duration::ZERO)
        .await
        .expect_err("zero TTL refused");
    assert!(matches!(err, Error::InvalidTtl { .. }), "{err}");
    assert!(err.to_string().contains("between 1ms and"), "{err}");
    assert_eq!(cache.get::<u8>("k").await.expect("get"), None);
    // A mistake in the call is not a backend failure.
    assert_eq!(cache.stats().errors, 0);
}

async fn stats_count_hits_and_misses(cache: Cache) {
    cache.get::<u8>("a").await.expect("get");
    cache.set("a", &1u8, MINUTE).await.expect("set");
    cache.get::<u8>("a").await.expect("get");
    cache.get::<u8>("a").await.expect("get");
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.errors), (2, 1, 0));
    assert_eq!(stats.hit_ratio(), Some(2.0 / 3.0));
}

async fn clones_share_state(cache: Cache) {
    let clone = cache.clone();
    clone.set("k", &5u8, MINUTE).await.expect("set");
    assert_eq!(cache.get::<u8>("k").await.expect("get"), Some(5));
    assert_eq!(cache.stats(), clone.stats());
}

async fn keys_may_hold_any_text(cache: Cache) {
    let keys = ["with space", "new\nline", "ünïcødé:键", "", "::", "a\0b"];
    for (i, key) in keys.iter().enumerate() {
        cache.set(key, &i, MINUTE).await.expect("set");
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            cache.get::<usize>(key).await.expect("get"),
            Some(i),
            "{key:?}"
        );
    }
}

async fn large_values_round_trip(cache: Cache) {
    let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    cache.set("big", &big, MINUTE).await.expect("set");
    assert_eq!(cache.get::<Vec<u8>>("big").await.expect("get"), Some(big));
}

/// A value whose serialization always fails.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
struct Unserializable(u8);

impl serde::Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to be serialized"))
    }
}

async fn unserializable_value_is_refused_and_never_fails_a_load(cache: Cache) {
    let err = cache
        .set("k", &Unserializable(1), MINUTE)
        .await
        .expect_err("encode fails");
    assert!(matches!(err, Error::Encode { .. }), "{err}");
    assert!(
        err.to_string().contains("refuses to be serialized"),
        "{err}"
    );

    let got = cache
        .get_or_load("k", MINUTE, || async {
            Ok::<_, common::SourceDown>(Unserializable(2))
        })
        .await;
    assert_eq!(got, Ok(Unserializable(2)));
    assert_eq!(cache.stats().errors, 1, "the failed fill is counted");
}

#[tokio::test]
async fn memory_backend_is_bounded_by_capacity() {
    let cache = Cache::builder()
        .in_memory()
        .memory_capacity(64 * 1024)
        .build()
        .await
        .expect("builds");
    let value = vec![7u8; 1024];
    for i in 0..1_000 {
        cache
            .set(&format!("k{i}"), &value, MINUTE)
            .await
            .expect("set");
    }
    // Eviction is applied by the store's housekeeping; poll until it has.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut present = 0;
        for i in 0..1_000 {
            if cache
                .get::<Vec<u8>>(&format!("k{i}"))
                .await
                .expect("get")
                .is_some()
            {
                present += 1;
            }
        }
        if present <= 64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{present} entries of 1 KiB in 64 KiB"
        );
    }
}

#[tokio::test]
async fn redis_key_is_namespace_version_key() {
    let redis = RedisServer::start();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace("shop")
        .version(1)
        .build()
        .await
        .expect("builds");
    assert_eq!(cache.full_key("user:42"), "shop:v1:user:42");
    cache.set("user:42", &user(42), MINUTE).await.expect("set");
    assert_eq!(redis.keys(), ["shop:v1:user:42"]);
    let pttl = redis.pttl("shop:v1:user:42");
    assert!(pttl > 55_000 && pttl <= 60_000, "{pttl}");
}

#[tokio::test]
async fn version_bump_hides_old_entries() {
    let redis = RedisServer::start();
    let build = |version| {
        Cache::builder()
            .redis(redis.url())
            .namespace("shop")
            .version(version)
            .build()
    };
    let v1 = build(1).await.expect("builds");
    v1.set("user:1", &user(1), MINUTE).await.expect("set");
    let v2 = build(2).await.expect("builds");
    assert_eq!(v2.get::<User>("user:1").await.expect("get"), None);
    v2.set("user:1", &user(2), MINUTE).await.expect("set");
    assert_eq!(redis.keys(), ["shop:v1:user:1", "shop:v2:user:1"]);
    // The old entry still ages out by its own TTL.
    assert!(redis.pttl("shop:v1:user:1") > 0);
}

#[tokio::test]
async fn namespaces_do_not_see_each_other() {
    let redis = RedisServer::start();
    let shop = common::redis_cache(&redis, "shop").await;
    let blog = common::redis_cache(&redis, "blog").await;
    shop.set("k", &1u8, MINUTE).await.expect("set");
    assert_eq!(blog.get::<u8>("k").await.expect("get"), None);
    assert!(!blog.delete("k").await.expect("delete"));
    assert_eq!(shop.get::<u8>("k").await.expect("get"), Some(1));
}
