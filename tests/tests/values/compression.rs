//! Compression: values past `compress_above` are stored LZ4-compressed and
//! read back equal; the limit on values is on their size before
//! compression; an entry that inflates past `max_value_size` is a miss
//! that is never decompressed into memory.

use cachefw_tests::fixtures as common;

use cachefw::Cache;
use cachefw_tests::RedisServer;
use common::MINUTE;
use serde::{Deserialize, Serialize};

/// A JSON-like document: mostly redundancy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Catalog {
    items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    sku: String,
    title: String,
    price_cents: u64,
    in_stock: bool,
}

/// About `kib` KiB of catalog.
fn catalog(kib: usize) -> Catalog {
    let items = (0..kib * 1024 / 64)
        .map(|i| Item {
            sku: format!("SKU-{i:08}"),
            title: format!("Stainless steel kettle, 1.7 l, model {}", i % 13),
            price_cents: 1_999 + (i as u64 % 7) * 100,
            in_stock: i % 3 != 0,
        })
        .collect();
    Catalog { items }
}

async fn build(redis: &RedisServer, compress_above: u64, max_value_size: u64) -> Cache {
    Cache::builder()
        .redis(redis.url())
        .namespace("z")
        .compress_above(compress_above)
        .max_value_size(max_value_size)
        .build()
        .await
        .expect("builds")
}

fn strlen(redis: &RedisServer, key: &str) -> i64 {
    redis.cmd("STRLEN", &[key.as_bytes()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressible_100_kib_value_is_stored_small_and_read_equal() {
    let redis = RedisServer::start();
    let value = catalog(100);
    let compressed = common::redis_cache(&redis, "z").await;
    let plain = build(&redis, 0, 16 << 20).await;
    compressed
        .set("c:on", &value, MINUTE)
        .await
        .expect("stored");
    plain.set("c:off", &value, MINUTE).await.expect("stored");
    let (on, off) = (strlen(&redis, "z:v1:c:on"), strlen(&redis, "z:v1:c:off"));
    println!("100 KiB catalog: {off} bytes plain, {on} compressed");
    assert!(off > 90 * 1024, "{off}");
    assert!(on * 3 < off, "compressed {on} vs plain {off}");
    // Each cache reads both kinds: the header says which.
    for cache in [&compressed, &plain] {
        for key in ["c:on", "c:off"] {
            assert_eq!(
                cache.get::<Catalog>(key).await.expect("reads").as_ref(),
                Some(&value)
            );
        }
        assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
    }
    // Small values stay plain: the header's codec tag is MessagePack's.
    compressed
        .set("small", &"tiny", MINUTE)
        .await
        .expect("stored");
    assert_eq!(redis.raw_get("z:v1:small").expect("stored")[2], b'm');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_is_on_the_value_before_compression() {
    let redis = RedisServer::start();
    let cache = build(&redis, 1024, 64 * 1024).await;
    let value = catalog(100);
    assert!(matches!(
        cache.set("big", &value, MINUTE).await,
        Err(cachefw::Error::ValueTooLarge { .. })
    ));
    assert!(
        redis.keys().is_empty(),
        "not stored, though it would compress under the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_inflating_past_max_value_size_is_a_miss() {
    let redis = RedisServer::start();
    let writer = build(&redis, 1024, 16 << 20).await;
    // 4 MiB of zeros compresses to about 16 KiB.
    let zeros = vec![0u8; 4 << 20];
    writer.set("zeros", &zeros, MINUTE).await.expect("stored");
    let stored = redis.raw_get("z:v1:zeros").expect("stored");
    assert!(stored.len() < 64 * 1024, "{}", stored.len());
    // A reader with a 1 MiB limit: the small entry claims 4 MiB.
    let reader = build(&redis, 1024, 1 << 20).await;
    assert_eq!(reader.get::<Vec<u8>>("zeros").await.expect("reads"), None);
    assert_eq!(reader.stats().errors, 1, "{:?}", reader.stats());
    // A crafted entry claiming 4 GiB behind a few bytes: a miss, read by a
    // cache with the default 16 MiB limit (an allocation of the claim
    // would abort the test process).
    let mut crafted = stored[..31 + 2].to_vec();
    crafted.extend_from_slice(&u32::MAX.to_le_bytes());
    crafted.extend_from_slice(&stored[31 + 2 + 4..]);
    redis.raw_set("z:v1:crafted", &crafted);
    assert_eq!(writer.get::<Vec<u8>>("crafted").await.expect("reads"), None);
    // get_or_load replaces it with the loader's value.
    let got = writer
        .get_or_load("crafted", MINUTE, || async {
            Ok::<_, common::SourceDown>(vec![1u8])
        })
        .await;
    assert_eq!(got, Ok(vec![1u8]));
    assert_eq!(
        writer.get::<Vec<u8>>("crafted").await.expect("reads"),
        Some(vec![1u8])
    );
}
