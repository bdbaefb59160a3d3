//! A deploy that changes a cached type never aborts, never allocates what a
//! stray length prefix claims, and never returns a wrong value: an entry of
//! another shape is a miss that the next load replaces, or reads as exactly
//! the value the new type would have.
//!
//! The largest single allocation while a read runs is recorded by this
//! binary's allocator (`main.rs`), to show decoding is bounded by the
//! entry's size.

use cachefw_tests::fixtures as common;

use std::time::Duration;

use cachefw::Cache;
use cachefw_tests::RedisServer;
use serde::{Deserialize, Serialize};

use crate::{SERIAL, watched};

const MINUTE: Duration = Duration::from_secs(60);

/// The type as the running release caches it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    note: String,
    total: u64,
}

/// The next release, fields reordered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Reordered {
    total: u64,
    note: String,
    id: u64,
}

/// The next release, a required field added.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Added {
    id: u64,
    note: String,
    total: u64,
    currency: String,
}

/// The next release, an optional field added (`#[serde(default)]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct AddedDefault {
    id: u64,
    note: String,
    total: u64,
    #[serde(default)]
    discount: u64,
}

/// The next release, a field retyped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Retyped {
    id: u64,
    note: Vec<u64>,
    total: u64,
}

fn old() -> Order {
    Order {
        id: 1,
        note: "first".into(),
        total: 300,
    }
}

/// Reads `order:1` as `T` through `get_or_load`, whose source now says
/// `fresh`; returns what the call returned and whether the source ran.
async fn read<T>(cache: &Cache, fresh: T) -> (T, bool)
where
    T: Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let loads = cache.stats().loads;
    let got = cache
        .get_or_load("order:1", MINUTE, || async {
            Ok::<_, std::convert::Infallible>(fresh)
        })
        .await;
    let Ok(got) = got;
    (got, cache.stats().loads > loads)
}

/// Each new shape over an entry written by `Order`.
async fn drift(cache: &Cache) {
    // A required field added: no value of `Added` can come from the old
    // entry, so it is a miss, counted, replaced.
    cache.set("order:1", &old(), MINUTE).await.expect("set");
    let errors = cache.stats().errors;
    let fresh = Added {
        id: 1,
        note: "first".into(),
        total: 300,
        currency: "EUR".into(),
    };
    assert_eq!(read(cache, fresh.clone()).await, (fresh.clone(), true));
    assert_eq!(cache.stats().errors, errors + 1, "the bad entry is counted");
    assert_eq!(read(cache, fresh.clone()).await, (fresh, false), "replaced");

    // A field retyped: a miss too.
    cache.set("order:1", &old(), MINUTE).await.expect("set");
    let fresh = Retyped {
        id: 1,
        note: vec![7],
        total: 300,
    };
    assert_eq!(read(cache, fresh.clone()).await, (fresh.clone(), true));
    assert_eq!(read(cache, fresh.clone()).await, (fresh, false));

    // Fields reordered: read by name, so exactly the old entry's values.
    cache.set("order:1", &old(), MINUTE).await.expect("set");
    let (got, loaded) = read(
        cache,
        Reordered {
            total: 0,
            note: String::new(),
            id: 0,
        },
    )
    .await;
    assert!(!loaded);
    assert_eq!(
        got,
        Reordered {
            total: 300,
            note: "first".into(),
            id: 1
        },
        "each field keeps its own value"
    );

    // An optional field added: the old entry reads with its default.
    cache.set("order:1", &old(), MINUTE).await.expect("set");
    let (got, loaded) = read(
        cache,
        AddedDefault {
            id: 0,
            note: String::new(),
            total: 0,
            discount: 9,
        },
    )
    .await;
    assert!(!loaded);
    assert_eq!(
        got,
        AddedDefault {
            id: 1,
            note: "first".into(),
            total: 300,
            discount: 0
        }
    );

    // And back: the old release reads what the new one wrote.
    let (got, loaded) = read(cache, old()).await;
    assert!(!loaded);
    assert_eq!(got, old());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_type_over_memory() {
    let _serial = SERIAL.lock().await;
    drift(&common::memory_cache("drift").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_type_over_redis() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    drift(&common::redis_cache(&redis, "drift").await).await;
}

/// A MessagePack entry's header and metadata (fresh for an hour), then
/// `payload`.
fn headed(payload: &[u8]) -> Vec<u8> {
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
        + 3_600_000;
    let mut bytes = vec![0xCF, 0x02, b'm'];
    bytes.extend_from_slice(&expires.to_be_bytes());
    bytes.extend_from_slice(&[0; 20]);
    bytes.extend_from_slice(payload);
    bytes
}

/// Bytes under a key that claim far more than they hold: each a miss then
/// a hit of the loaded value, with no allocation beyond a few KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_are_a_bounded_miss() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "drift").await;
    let mut random = headed(&[]);
    random.extend((0..1024).map(|_| fastrand::u8(..)));
    let mut unheaded = Vec::new();
    unheaded.extend((0..1024).map(|_| fastrand::u8(..)));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // A string of 4 GiB, a map of 4 billion entries, a blob of 4 GiB.
        ("str32", headed(b"\xdb\xff\xff\xff\xff rest")),
        ("map32", headed(b"\xdf\xff\xff\xff\xff\xa2id\x01")),
        ("bin32", headed(b"\xc6\xff\xff\xff\xffxx")),
        // The abort: an entry of format 1 (bincode) whose `note`
        // length prefix was read from another field.
        (
            "bincode",
            b"\xCF\x01b\x01\xfc\x00\x60\x6a\x81\x05first\xfb\x2c\x01".to_vec(),
        ),
        ("random with our header", random),
        ("random", unheaded),
    ];
    for (name, bytes) in cases {
        redis.raw_set("drift:v1:order:1", &bytes);
        let (miss, largest, _) = watched(cache.get::<Order>("order:1")).await;
        assert!(matches!(miss, Ok(None)), "{name}: {miss:?}");
        assert!(largest < 64 * 1024, "{name}: allocated {largest} bytes");
        assert_eq!(read(&cache, old()).await, (old(), true), "{name}");
        assert_eq!(
            read(&cache, old()).await,
            (old(), false),
            "{name}: replaced"
        );
    }
}
