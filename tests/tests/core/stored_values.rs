//! What is stored in Redis, and what happens when the bytes there are not a
//! value this cache wrote: a miss that the next load replaces, counted.

use cachefw_tests::fixtures as common;

use cachefw::{Cache, Codec};
use cachefw_tests::RedisServer;
use common::{MINUTE, User, load_user, user};

#[tokio::test]
async fn garbage_reads_as_a_miss_that_is_replaced() {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "t").await;
    let cases: [(&str, &[u8]); 6] = [
        ("empty", b""),
        ("text", b"not a cachefw value"),
        ("json", br#"{"id":1,"name":"x"}"#),
        ("truncated", b"\xCF\x02m\x85\xa2id"),
        ("other-codec", b"\xCF\x02z\x00\x00"),
        ("format-1-bincode", b"\xCF\x01b\x01\x05user1"),
    ];
    for (i, (name, bytes)) in cases.iter().enumerate() {
        let key = format!("t:v1:user:{i}");
        redis.raw_set(&key, bytes);
        assert_eq!(
            cache.get::<User>(&format!("user:{i}")).await.expect("get"),
            None,
            "{name}"
        );
        assert_eq!(load_user(&cache, i as u64).await, user(i as u64), "{name}");
        let stored = redis.raw_get(&key).expect("replaced");
        assert_eq!(
            &stored[..3],
            b"\xCF\x02m",
            "{name} replaced by a cachefw value"
        );
        assert_eq!(
            cache.get::<User>(&format!("user:{i}")).await.expect("get"),
            Some(user(i as u64)),
            "{name}"
        );
    }
    let stats = cache.stats();
    // Each bad entry was counted twice: by `get` and by `get_or_load`;
    // except the empty one, which reads as no entry (entries are read with
    // `GETRANGE`, which answers a missing key with an empty string too).
    assert_eq!(stats.errors, 2 * (cases.len() as u64 - 1));
    assert_eq!(stats.loads, cases.len() as u64);
}

#[tokio::test]
async fn a_key_of_another_redis_type_is_replaced() {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "t").await;
    redis.cmd::<()>("RPUSH", &[b"t:v1:user:1", b"a list, not a string"]);
    assert_eq!(load_user(&cache, 1).await, user(1));
    assert_eq!(cache.stats().errors, 1, "the WRONGTYPE reply is counted");
    assert_eq!(
        cache.get::<User>("user:1").await.expect("get"),
        Some(user(1))
    );
}

#[tokio::test]
async fn a_value_of_another_type_is_not_misread() {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "t").await;
    cache.set("k", &user(1), MINUTE).await.expect("set");
    assert_eq!(cache.get::<u8>("k").await.expect("get"), None);
    assert_eq!(cache.stats().errors, 1);
}

#[tokio::test]
async fn json_codec_is_readable_with_redis_cli_and_isolated_from_msgpack() {
    let redis = RedisServer::start();
    let json = Cache::builder()
        .redis(redis.url())
        .namespace("t")
        .codec(Codec::Json)
        .build()
        .await
        .expect("builds");
    json.set("user:7", &user(7), MINUTE).await.expect("set");
    let raw = redis.raw_get("t:v1:user:7").expect("stored");
    assert_eq!(&raw[..3], b"\xCF\x02j");
    let text = std::str::from_utf8(&raw[31..]).expect("utf-8");
    assert!(text.starts_with(r#"{"id":7,"name":"user 7""#), "{text}");

    // A MessagePack cache on the same keys reads the JSON entry as a miss.
    let msgpack = common::redis_cache(&redis, "t").await;
    assert_eq!(msgpack.get::<User>("user:7").await.expect("get"), None);
    assert_eq!(msgpack.stats().errors, 1);
    assert_eq!(
        json.get::<User>("user:7").await.expect("get"),
        Some(user(7))
    );
}
