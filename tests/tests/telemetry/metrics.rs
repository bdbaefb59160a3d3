//! Metrics through the `metrics` facade, read back from a recorder
//! installed for this binary: the counters of a hit, a miss, a load that
//! fails or runs past its timeout, a near-tier hit, a batch, a Redis
//! outage (errors by kind and the breaker gauge, there and back), the
//! `function` label of an annotated fn, and labels that never hold a key
//! or a value.
//!
//! The recorder is global (handles are registered on a cache's first use,
//! on whatever thread runs it), so tests that run at once in this binary
//! share it: each test uses a namespace of its own and reads only the
//! series labelled with it.

use cachefw_tests::fixtures as common;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cachefw::{Cache, cacheable};
use cachefw_tests::{RedisServer, eventually_async};
use common::{MINUTE, SourceDown};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// What the recorder keeps: metrics-util's registry, the storage its
/// `DebuggingRecorder` uses too. That recorder's snapshots reset what they
/// read (counters and gauges swap to zero), so a gauge could not be read
/// twice and tests running at once would consume each other's counts;
/// this one is read in place.
type Store = Registry<Key, AtomicStorage>;

struct Recorded(Arc<Store>);

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |counter| Counter::from_arc(counter.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |gauge| Gauge::from_arc(gauge.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |histogram| Histogram::from_arc(histogram.clone()))
    }
}

/// The store of the recorder, installed on first call: call it before
/// building a cache, whose handles are registered with the recorder of the
/// moment.
fn store() -> &'static Store {
    static STORE: OnceLock<Arc<Store>> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = Arc::new(Registry::atomic());
        metrics::set_global_recorder(Recorded(store.clone()))
            .expect("no other recorder in this binary");
        store
    })
}

/// A series: its name and labels other than `namespace`, sorted.
type Series = (String, Vec<(String, String)>);

fn series_of(key: &Key, namespace: &str) -> Option<Series> {
    let mut labels: Vec<(String, String)> = key
        .labels()
        .map(|label| (label.key().to_owned(), label.value().to_owned()))
        .collect();
    let at = labels
        .iter()
        .position(|(key, value)| key == "namespace" && value == namespace)?;
    labels.remove(at);
    labels.sort();
    Some((key.name().to_owned(), labels))
}

fn wanted(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

/// The counter `name` of `namespace` with exactly `labels` besides the
/// namespace; `None` while it is not registered.
fn counter(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    let wanted = wanted(name, labels);
    store()
        .get_counter_handles()
        .into_iter()
        .find(|(key, _)| series_of(key, namespace).as_ref() == Some(&wanted))
        .map(|(_, value)| value.load(std::sync::atomic::Ordering::SeqCst))
}

fn gauge(namespace: &str, name: &str) -> Option<f64> {
    let wanted = wanted(name, &[]);
    store()
        .get_gauge_handles()
        .into_iter()
        .find(|(key, _)| series_of(key, namespace).as_ref() == Some(&wanted))
        .map(|(_, bits)| f64::from_bits(bits.load(std::sync::atomic::Ordering::SeqCst)))
}

/// The samples of the histogram `name` of `namespace` with `labels`.
fn samples(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    let wanted = wanted(name, labels);
    store()
        .get_histogram_handles()
        .into_iter()
        .find(|(key, _)| series_of(key, namespace).as_ref() == Some(&wanted))
        .map(|(_, bucket)| bucket.data())
        .unwrap_or_default()
}

/// The sum of the counter `name` of `namespace` over every label value.
fn total(namespace: &str, name: &str) -> u64 {
    store()
        .get_counter_handles()
        .into_iter()
        .filter(|(key, _)| series_of(key, namespace).is_some_and(|(n, _)| n == name))
        .map(|(_, value)| value.load(std::sync::atomic::Ordering::SeqCst))
        .sum()
}

/// Every label of every series of `namespace` is one of the contract's,
/// with a value from a closed set (a call site is a Rust path): never a
/// key, never a value.
fn assert_bounded_labels(namespace: &str) {
    let mut keys: Vec<Key> = store().get_counter_handles().into_keys().collect();
    keys.extend(store().get_gauge_handles().into_keys());
    keys.extend(store().get_histogram_handles().into_keys());
    let mut seen = 0;
    for key in keys {
        let Some((name, labels)) = series_of(&key, namespace) else {
            continue;
        };
        seen += 1;
        assert!(name.starts_with("cachefw_"), "{name}");
        for (label, value) in labels {
            let allowed = match label.as_str() {
                "function" => value == "-" || is_rust_path(&value),
                "tier" => ["near", "redis", "memory"].contains(&value.as_str()),
                "outcome" => ["ok", "err", "timeout"].contains(&value.as_str()),
                "kind" => ["timeout", "unavailable", "redis", "decode"].contains(&value.as_str()),
                // `cachefw_writes_total` (issue 29).
                "op" => ["store", "evict"].contains(&value.as_str()),
                _ => false,
            };
            assert!(allowed, "{name}: label {label}={value:?}");
        }
    }
    assert!(seen > 0, "no series of namespace {namespace}");
}

fn is_rust_path(text: &str) -> bool {
    text.split("::")
        .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

async fn memory_cache(namespace: &str) -> Cache {
    store();
    common::memory_cache(namespace).await
}

async fn redis_cache(redis: &RedisServer, namespace: &str) -> Cache {
    store();
    common::redis_cache(redis, namespace).await
}

async fn load(cache: &Cache, key: &str, value: u64) -> Result<u64, SourceDown> {
    cache
        .get_or_load(key, MINUTE, || async move { Ok(value) })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_loads_and_then_hits_on_each_backend() {
    let redis = RedisServer::start();
    for (namespace, tier) in [("m-memory", "memory"), ("m-redis", "redis")] {
        let cache = match tier {
            "memory" => memory_cache(namespace).await,
            _ => redis_cache(&redis, namespace).await,
        };
        let site = [("function", "-")];
        assert_eq!(load(&cache, "user:1", 1).await, Ok(1));
        assert_eq!(counter(namespace, "cachefw_misses_total", &site), Some(1));
        assert_eq!(
            counter(
                namespace,
                "cachefw_loads_total",
                &[("function", "-"), ("outcome", "ok")]
            ),
            Some(1)
        );
        let took = samples(namespace, "cachefw_load_seconds", &site);
        assert_eq!(took.len(), 1, "{took:?}");
        assert!(took[0] >= 0.0 && took[0] < 5.0, "{took:?}");
        let hits = [("function", "-"), ("tier", tier)];
        assert_eq!(counter(namespace, "cachefw_hits_total", &hits), Some(0));

        assert_eq!(load(&cache, "user:1", 2).await, Ok(1));
        assert_eq!(counter(namespace, "cachefw_hits_total", &hits), Some(1));
        assert_eq!(counter(namespace, "cachefw_misses_total", &site), Some(1));
        // A plain `get` is a read through `Cache` methods too.
        assert_eq!(cache.get::<u64>("user:1").await.expect("get"), Some(1));
        assert_eq!(counter(namespace, "cachefw_hits_total", &hits), Some(2));
        assert_eq!(total(namespace, "cachefw_errors_total"), 0);
        assert_eq!(gauge(namespace, "cachefw_breaker_open"), Some(0.0));
        assert_bounded_labels(namespace);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_is_counted_err_and_not_a_hit() {
    let namespace = "m-err";
    let cache = memory_cache(namespace).await;
    let failed: Result<u64, _> = cache
        .get_or_load("user:1", MINUTE, || async { Err(SourceDown(3)) })
        .await;
    assert_eq!(failed, Err(SourceDown(3)));
    let outcome = |outcome| {
        counter(
            namespace,
            "cachefw_loads_total",
            &[("function", "-"), ("outcome", outcome)],
        )
    };
    assert_eq!(outcome("err"), Some(1));
    assert_eq!(outcome("ok"), Some(0));
    assert_eq!(
        samples(namespace, "cachefw_load_seconds", &[("function", "-")]).len(),
        1
    );
    // Not cached: the next call misses and loads again.
    assert_eq!(load(&cache, "user:1", 1).await, Ok(1));
    assert_eq!(outcome("ok"), Some(1));
    assert_eq!(
        counter(namespace, "cachefw_misses_total", &[("function", "-")]),
        Some(2)
    );
    assert_eq!(total(namespace, "cachefw_hits_total"), 0);
    assert_bounded_labels(namespace);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_past_its_timeout_is_counted_timeout_and_the_stale_value_served() {
    let namespace = "m-timeout";
    let redis = RedisServer::start();
    store();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace(namespace)
        .stale_if_error(MINUTE)
        .load_timeout(Duration::from_millis(100))
        .build()
        .await
        .expect("builds");
    let short = Duration::from_millis(100);
    let first: Result<u64, SourceDown> = cache
        .get_or_load("price:1", short, || async { Ok(1) })
        .await;
    assert_eq!(first, Ok(1));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // A borrowing loader past the timeout is cut off: the stale value.
    let slow: Result<u64, SourceDown> = cache
        .get_or_load("price:1", short, || async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(2)
        })
        .await;
    assert_eq!(slow, Ok(1));
    let site = [("function", "-")];
    assert_eq!(
        counter(
            namespace,
            "cachefw_loads_total",
            &[("function", "-"), ("outcome", "timeout")]
        ),
        Some(1)
    );
    assert_eq!(
        counter(namespace, "cachefw_stale_served_total", &site),
        Some(1)
    );
    // A stale value served is a hit, from Redis.
    assert_eq!(
        counter(
            namespace,
            "cachefw_hits_total",
            &[("function", "-"), ("tier", "redis")]
        ),
        Some(1)
    );
    assert_eq!(
        samples(namespace, "cachefw_load_seconds", &site).len(),
        2,
        "the first load and the one cut off"
    );
    assert_bounded_labels(namespace);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_tier_hit_is_labelled_near() {
    let namespace = "m-near";
    let redis = RedisServer::start();
    store();
    let cache = common::near_cache(&redis, namespace).await;
    assert_eq!(load(&cache, "user:1", 1).await, Ok(1));
    let near = [("function", "-"), ("tier", "near")];
    // The near tier takes an entry from a Redis read, once its tracking
    // link is up: read until one is answered from it.
    eventually_async(Duration::from_secs(10), "a near hit", async || {
        assert_eq!(load(&cache, "user:1", 2).await, Ok(1));
        counter(namespace, "cachefw_hits_total", &near).is_some_and(|hits| hits >= 1)
    })
    .await;
    assert_eq!(
        cache.stats().near_hits,
        counter(namespace, "cachefw_hits_total", &near).unwrap_or(0)
    );
    assert_eq!(
        counter(namespace, "cachefw_misses_total", &[("function", "-")]),
        Some(1)
    );
    assert_bounded_labels(namespace);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_counts_each_key_and_one_load() {
    let namespace = "m-batch";
    let cache = memory_cache(namespace).await;
    cache.set("item:1", &1u64, MINUTE).await.expect("set");
    let got = cache
        .get_or_load_many(
            &["item:1", "item:2", "item:3"],
            MINUTE,
            |missing| async move {
                Ok::<_, SourceDown>(
                    missing
                        .into_iter()
                        .map(|key| (key, 9u64))
                        .collect::<HashMap<_, _>>(),
                )
            },
        )
        .await;
    assert_eq!(got, Ok(vec![Some(1), Some(9), Some(9)]));
    let site = [("function", "-")];
    assert_eq!(
        counter(
            namespace,
            "cachefw_hits_total",
            &[("function", "-"), ("tier", "memory")]
        ),
        Some(1)
    );
    assert_eq!(counter(namespace, "cachefw_misses_total", &site), Some(2));
    assert_eq!(
        counter(
            namespace,
            "cachefw_loads_total",
            &[("function", "-"), ("outcome", "ok")]
        ),
        Some(1),
        "one loader call for both missing keys"
    );
    assert_bounded_labels(namespace);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_counts_errors_by_kind_and_the_breaker_goes_and_comes_back() {
    let namespace = "m-outage";
    let mut redis = RedisServer::start();
    store();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace(namespace)
        .timeout(Duration::from_millis(100))
        .build()
        .await
        .expect("builds");
    assert_eq!(load(&cache, "user:1", 1).await, Ok(1));
    assert_eq!(gauge(namespace, "cachefw_breaker_open"), Some(0.0));
    assert_eq!(total(namespace, "cachefw_errors_total"), 0);

    redis.stop();
    // Every call still answers, from the loader; the failures open the
    // breaker.
    eventually_async(Duration::from_secs(10), "the breaker opens", async || {
        assert_eq!(load(&cache, "user:1", 2).await, Ok(2));
        gauge(namespace, "cachefw_breaker_open") == Some(1.0)
    })
    .await;
    let kind = |kind| {
        counter(
            namespace,
            "cachefw_errors_total",
            &[("function", "-"), ("kind", kind)],
        )
        .unwrap_or(0)
    };
    // A refused connection is `redis` (an outage the client reports), a
    // hung one `timeout`: which one a stopped server gives depends on the
    // moment it was stopped.
    assert!(kind("redis") + kind("timeout") >= 1, "{}", kind("redis"));
    // With the breaker open, calls skip Redis: `unavailable`.
    let skipped = kind("unavailable");
    assert_eq!(load(&cache, "user:1", 3).await, Ok(3));
    assert!(kind("unavailable") > skipped, "{skipped}");
    assert_eq!(kind("decode"), 0);
    assert_eq!(
        total(namespace, "cachefw_errors_total"),
        cache.stats().errors,
        "every error counted in stats is a series"
    );

    redis.restart();
    eventually_async(Duration::from_secs(20), "the breaker closes", async || {
        assert_eq!(load(&cache, "user:2", 4).await.map(|_| ()), Ok(()));
        gauge(namespace, "cachefw_breaker_open") == Some(0.0)
    })
    .await;
    assert_bounded_labels(namespace);
}

mod users {
    use super::*;

    /// An annotated function: its metrics carry its path.
    #[cacheable(key = "user:<id>", ttl = "1m", cache = cache)]
    pub async fn find_user(cache: &Cache, id: u64) -> Result<String, SourceDown> {
        Ok(format!("secret-value-{id}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotated_fn_is_labelled_with_its_path_and_no_key_or_value() {
    let namespace = "m-macro";
    let redis = RedisServer::start();
    let cache = redis_cache(&redis, namespace).await;
    let function = "telemetry::metrics::users::find_user";
    assert_eq!(concat!(module_path!(), "::users::find_user"), function);
    for _ in 0..3 {
        assert_eq!(
            users::find_user(&cache, 4242).await,
            Ok("secret-value-4242".to_owned())
        );
    }
    let site = [("function", function)];
    assert_eq!(counter(namespace, "cachefw_misses_total", &site), Some(1));
    assert_eq!(
        counter(
            namespace,
            "cachefw_hits_total",
            &[("function", function), ("tier", "redis")]
        ),
        Some(2)
    );
    assert_eq!(
        counter(
            namespace,
            "cachefw_loads_total",
            &[("function", function), ("outcome", "ok")]
        ),
        Some(1)
    );
    assert_eq!(samples(namespace, "cachefw_load_seconds", &site).len(), 1);
    // Nothing of the call under `function = "-"`.
    assert_eq!(
        counter(namespace, "cachefw_misses_total", &[("function", "-")]),
        None
    );
    // The key (user:4242) and the value appear in no label.
    let mut keys: Vec<Key> = store().get_counter_handles().into_keys().collect();
    keys.extend(store().get_histogram_handles().into_keys());
    for key in keys {
        for label in key.labels() {
            assert!(
                !label.value().contains("4242") && !label.value().contains("secret"),
                "{key:?}"
            );
        }
    }
    assert_bounded_labels(namespace);
}
