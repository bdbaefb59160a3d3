//! `ttl = <expr>`: the TTL computed from the value about to be stored,
//! checked with `PTTL`; `Duration::ZERO` stores nothing; the low-level
//! `get_or_load_with_ttl` does the same.

use cachefw_tests::fixtures as common;

use std::time::Duration;

use cachefw::{Cache, cache_put, cacheable};
use cachefw_tests::RedisServer;
use common::SourceDown;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Quote {
    sku: String,
    volatile: bool,
    cents: u64,
}

fn quote_of(sku: &str) -> Quote {
    Quote {
        sku: sku.to_owned(),
        volatile: sku.starts_with('v'),
        cents: if sku == "free" { 0 } else { 100 },
    }
}

#[cacheable(
    key = "quote:<sku>",
    ttl = if result.cents == 0 {
        Duration::ZERO
    } else if result.volatile {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(600)
    },
    cache = cache
)]
async fn quote(cache: &Cache, sku: &str) -> Result<Quote, SourceDown> {
    Ok(quote_of(sku))
}

#[cache_put(key = "quote:<sku>", ttl = Duration::from_secs(if result.volatile { 7 } else { 700 }), cache = cache)]
async fn reprice(cache: &Cache, sku: &str) -> Option<Quote> {
    Some(quote_of(sku))
}

/// The PTTL of `key`, in seconds rounded up.
fn ttl_secs(redis: &RedisServer, key: &str) -> i64 {
    let pttl = redis.pttl(key);
    assert!(pttl > 0, "{key}: PTTL {pttl}");
    (pttl + 999) / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_results_two_ttls_and_zero_stores_nothing() {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "ttl").await;
    assert_eq!(quote(&cache, "v1").await, Ok(quote_of("v1")));
    assert_eq!(quote(&cache, "s1").await, Ok(quote_of("s1")));
    assert_eq!(quote(&cache, "free").await, Ok(quote_of("free")));
    assert_eq!(ttl_secs(&redis, "ttl:v1:quote:v1"), 5);
    assert_eq!(ttl_secs(&redis, "ttl:v1:quote:s1"), 600);
    assert_eq!(redis.pttl("ttl:v1:quote:free"), -2, "not stored");
    assert_eq!(cache.stats().hits, 0);
    assert_eq!(quote(&cache, "v1").await, Ok(quote_of("v1")));
    assert_eq!(cache.stats().hits, 1);

    reprice(&cache, "v2").await;
    reprice(&cache, "s2").await;
    assert_eq!(ttl_secs(&redis, "ttl:v1:quote:v2"), 7);
    assert_eq!(ttl_secs(&redis, "ttl:v1:quote:s2"), 700);

    let ttl_of = |q: &Quote| Duration::from_secs(if q.volatile { 9 } else { 900 });
    for sku in ["v3", "s3"] {
        let got = cache
            .get_or_load_with_ttl(&format!("quote:{sku}"), ttl_of, || async {
                Ok::<_, SourceDown>(quote_of(sku))
            })
            .await;
        assert_eq!(got, Ok(quote_of(sku)));
    }
    assert_eq!(ttl_secs(&redis, "ttl:v1:quote:v3"), 9);
    assert_eq!(ttl_secs(&redis, "ttl:v1:quote:s3"), 900);
}
