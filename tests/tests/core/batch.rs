//! Batch reads: `get_many` in one round trip, and `get_or_load_many` with
//! one loader call for the keys that missed, each key loaded once across
//! overlapping batches, and everything still answered with Redis down.

use cachefw_tests::fixtures as common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cachefw::Cache;
use cachefw_tests::{RedisCluster, RedisServer};
use common::{MINUTE, SourceDown};

/// The source: value of `item:N` is N; records every batch it is asked.
#[derive(Default)]
struct Source {
    calls: AtomicU64,
    asked: Mutex<Vec<Vec<String>>>,
}

impl Source {
    async fn load(&self, keys: Vec<String>) -> Result<HashMap<String, u64>, SourceDown> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.asked.lock().expect("lock").push(keys.clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(keys
            .into_iter()
            .filter_map(|key| {
                let id: u64 = key.strip_prefix("item:")?.parse().ok()?;
                // Multiples of 7 do not exist.
                (!id.is_multiple_of(7)).then_some((key, id))
            })
            .collect())
    }

    fn asked(&self) -> Vec<Vec<String>> {
        self.asked.lock().expect("lock").clone()
    }
}

fn keys(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|id| format!("item:{id}")).collect()
}

fn expected(range: std::ops::Range<u64>) -> Vec<Option<u64>> {
    range
        .map(|id| (!id.is_multiple_of(7)).then_some(id))
        .collect()
}

async fn batch(cache: &Cache, source: &Arc<Source>, keys: &[String]) -> Vec<Option<u64>> {
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    cache
        .get_or_load_many(&refs, MINUTE, |missing| source.load(missing))
        .await
        .expect("the source does not fail")
}

async fn each_backend(test: impl AsyncFn(Cache)) {
    test(common::memory_cache("batch").await).await;
    let redis = RedisServer::start();
    test(common::redis_cache(&redis, "batch").await).await;
    let redis = RedisServer::start();
    test(common::near_cache(&redis, "batch").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_keys_with_forty_cached_make_one_load_of_sixty() {
    each_backend(async |cache: Cache| {
        let source = Arc::new(Source::default());
        for id in 0..40u64 {
            cache
                .set(&format!("item:{id}"), &id, MINUTE)
                .await
                .expect("set");
        }
        let wanted = keys(0..100);
        let mut with_duplicates = wanted.clone();
        with_duplicates.push("item:50".into());
        let got = batch(&cache, &source, &with_duplicates).await;
        let mut want: Vec<Option<u64>> = (0..40).map(Some).collect();
        want.extend(expected(40..100));
        want.push(Some(50));
        assert_eq!(got, want);
        assert_eq!(
            source.asked(),
            [keys(40..100)],
            "one call, the 60 missing keys"
        );
        // Stored, except what the loader left out.
        let again = batch(&cache, &source, &wanted).await;
        assert_eq!(&again[..], &want[..100]);
        let asked = source.asked();
        assert_eq!(asked.len(), 2);
        let left_out: Vec<String> = (40..100)
            .filter(|id: &u64| id.is_multiple_of(7))
            .map(|id| format!("item:{id}"))
            .collect();
        assert_eq!(asked[1], left_out, "only the absent keys are asked again");
        // And `get_many` reads them in one go.
        let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let read = cache.get_many::<u64>(&refs).await.expect("get_many");
        assert_eq!(&read[40..], &expected(40..100)[..]);
        assert_eq!(&read[..40], &(0..40).map(Some).collect::<Vec<_>>()[..]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_batches_load_each_key_once() {
    each_backend(async |cache: Cache| {
        let source = Arc::new(Source::default());
        // Two caches on one backend would be two processes; here two
        // concurrent batches on one cache, and a single get_or_load among
        // them.
        let (first, second) = (keys(0..60), keys(30..90));
        let (a, b, single) = tokio::join!(
            batch(&cache, &source, &first),
            batch(&cache, &source, &second),
            cache.get_or_load("item:45", MINUTE, || async {
                source.calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, SourceDown>(45u64)
            })
        );
        assert_eq!(a, expected(0..60));
        assert_eq!(b, expected(30..90));
        assert_eq!(single, Ok(45));
        let mut loaded: Vec<String> = source.asked().concat();
        let total = loaded.len();
        loaded.sort();
        loaded.dedup();
        assert_eq!(total, loaded.len(), "a key was loaded twice");
        assert!(total <= 90, "{total}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_overlapping_load_each_key_once() {
    let redis = RedisServer::start();
    let one = common::redis_cache(&redis, "batch").await;
    let two = common::redis_cache(&redis, "batch").await;
    let source = Arc::new(Source::default());
    let (first, second) = (keys(0..60), keys(30..90));
    let (a, b) = tokio::join!(batch(&one, &source, &first), batch(&two, &source, &second),);
    assert_eq!(a, expected(0..60));
    assert_eq!(b, expected(30..90));
    // Keys the source has no value for are not cached, so a process that
    // waited on the other's lease of one loads it again; every other key
    // is loaded once.
    let mut loaded: Vec<String> = source
        .asked()
        .concat()
        .into_iter()
        .filter(|key| {
            key.strip_prefix("item:")
                .and_then(|id| id.parse::<u64>().ok())
                .is_some_and(|id| !id.is_multiple_of(7))
        })
        .collect();
    let total = loaded.len();
    loaded.sort();
    loaded.dedup();
    assert_eq!(total, loaded.len(), "a key was loaded twice across caches");
    assert_eq!(total, 90 - 13, "every existing key loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_loader_gets_every_key() {
    let redis = RedisServer::reserved();
    let cache = Cache::builder()
        .redis(redis.url())
        .timeout(Duration::from_millis(100))
        .build()
        .await
        .expect("builds");
    let source = Arc::new(Source::default());
    assert_eq!(batch(&cache, &source, &keys(0..20)).await, expected(0..20));
    assert_eq!(source.asked(), [keys(0..20)]);
    let errors = cache.stats().errors;
    // One refused connection fails the whole read: counted once, not once
    // per key (a retry of the connection may add one).
    assert!((1..=3).contains(&errors), "{:?}", cache.stats());
    assert!(cache.get_many::<u64>(&["item:1"]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_key_is_cached_under_its_digest_as_a_single_read_would() {
    let redis = RedisServer::start();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace("batch")
        .max_key_len(20)
        .build()
        .await
        .expect("builds");
    // "item:1" is stored as it is; this one, over 20 bytes, under its digest.
    let long = "item:1234567890123457".to_owned();
    let wanted = ["item:1".to_owned(), long.clone()];
    let source = Arc::new(Source::default());
    let got = batch(&cache, &source, &wanted).await;
    assert_eq!(got, [Some(1), Some(1_234_567_890_123_457)]);
    assert_eq!(source.asked(), [wanted.to_vec()]);
    let mut keys = redis.keys();
    keys.sort();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], "batch:v1:item:1");
    assert_eq!(
        keys[1],
        cache.full_key(&long),
        "one rendering for every path"
    );
    assert!(
        keys[1].starts_with("batch:v1:item:123456789012345#"),
        "{keys:?}"
    );
    assert_eq!(
        cache
            .get_many::<u64>(&["item:1", &long])
            .await
            .expect("reads"),
        [Some(1), Some(1_234_567_890_123_457)]
    );
    assert_eq!(
        cache.get::<u64>(&long).await.expect("reads"),
        Some(1_234_567_890_123_457),
        "a single read finds what the batch stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_returns_without_waiting_for_another_process() {
    let redis = RedisServer::start();
    let lease = Duration::from_secs(20);
    let build = || async {
        Cache::builder()
            .redis(redis.url())
            .namespace("batch")
            .lease_time(lease)
            .build()
            .await
            .expect("builds")
    };
    let (here, there) = (build().await, build().await);
    // The other process holds item:1's lease with a load that does not end.
    let (started, mut running) = tokio::sync::mpsc::channel::<()>(1);
    let slow = tokio::spawn(async move {
        there
            .get_or_load_many::<u64, SourceDown, _, _>(&["item:1"], MINUTE, |_| async move {
                let _ = started.send(()).await;
                std::future::pending::<()>().await;
                Ok(HashMap::new())
            })
            .await
    });
    tokio::time::timeout(Duration::from_secs(10), running.recv())
        .await
        .expect("the other load starts");
    let failed = tokio::time::timeout(
        lease / 2,
        here.get_or_load_many::<u64, _, _, _>(&["item:1", "item:2"], MINUTE, |_| async {
            Err(SourceDown(3))
        }),
    )
    .await
    .expect("the error comes back without waiting out the other lease");
    assert_eq!(failed, Err(SourceDown(3)));
    slow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_dropped_mid_load_frees_its_keys() {
    let redis = RedisServer::start();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace("batch")
        .lease_time(Duration::from_secs(30))
        .build()
        .await
        .expect("builds");
    let (started, mut running) = tokio::sync::mpsc::channel::<()>(1);
    let stuck = cache.get_or_load_many::<u64, SourceDown, _, _>(
        &["item:1", "item:2", "item:9"],
        MINUTE,
        |_| async move {
            let _ = started.send(()).await;
            std::future::pending::<()>().await;
            Ok(HashMap::new())
        },
    );
    tokio::select! {
        _ = stuck => panic!("the stuck load ended"),
        _ = running.recv() => {}
    }
    // Dropped mid-load: its flights go at once, its leases are released in
    // the background, well before their 30 s. (A batch that started before
    // a release lands gets None for that key: its loader, called once, was
    // already under way; see `Cache::get_or_load_many`.)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !redis.keys().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "leases left behind: {:?}",
            redis.keys()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let source = Arc::new(Source::default());
    let next = tokio::time::timeout(Duration::from_secs(10), batch(&cache, &source, &keys(1..3)))
        .await
        .expect("the keys were freed");
    assert_eq!(next, expected(1..3));
    assert_eq!(source.asked(), [keys(1..3)]);
    let single = tokio::time::timeout(
        Duration::from_secs(10),
        cache.get_or_load("item:9", MINUTE, || async { Ok::<_, SourceDown>(9u64) }),
    )
    .await
    .expect("a single call too");
    assert_eq!(single, Ok(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_returns_the_error_and_stores_nothing() {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "batch").await;
    let refs = ["item:1", "item:2"];
    let failed = cache
        .get_or_load_many::<u64, _, _, _>(&refs, MINUTE, |_| async { Err(SourceDown(9)) })
        .await;
    assert_eq!(failed, Err(SourceDown(9)));
    assert!(redis.keys().is_empty(), "{:?}", redis.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_a_cluster() {
    let cluster = RedisCluster::start(3);
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace("batch")
        .build()
        .await
        .expect("builds");
    let source = Arc::new(Source::default());
    assert_eq!(
        batch(&cache, &source, &keys(0..100)).await,
        expected(0..100)
    );
    assert_eq!(
        batch(&cache, &source, &keys(0..100)).await,
        expected(0..100)
    );
    assert_eq!(
        source.calls.load(Ordering::SeqCst),
        2,
        "the second asks only the absent"
    );
    let refs: Vec<String> = keys(0..100);
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    assert_eq!(
        cache.get_many::<u64>(&refs).await.expect("get_many"),
        expected(0..100)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_max_value_size_is_a_counted_miss_and_reloaded() {
    for near in [false, true] {
        let redis = RedisServer::start();
        let mut builder = Cache::builder()
            .redis(redis.url())
            .namespace("batch")
            .max_value_size(64);
        if near {
            builder = builder.near_cache(1 << 20);
        }
        let cache = builder.build().await.expect("builds");
        // A valid entry of 200 bytes, written by a cache without the limit:
        // read in full it would decode.
        let writer = common::redis_cache(&redis, "batch").await;
        writer
            .set("item:2", &"x".repeat(200), MINUTE)
            .await
            .expect("set");
        cache.set("item:1", &"one", MINUTE).await.expect("set");
        let before = cache.stats().errors;
        let read = cache
            .get_many::<String>(&["item:1", "item:2", "item:3"])
            .await
            .expect("get_many");
        assert_eq!(read, [Some("one".to_owned()), None, None], "near: {near}");
        assert_eq!(
            cache.stats().errors,
            before + 1,
            "the oversized value is counted (near: {near})"
        );
        let asked = Mutex::new(Vec::new());
        let got = cache
            .get_or_load_many(&["item:1", "item:2"], MINUTE, |missing| async {
                asked.lock().expect("lock").push(missing.clone());
                Ok::<_, SourceDown>(
                    missing
                        .into_iter()
                        .map(|key| (key.clone(), format!("v:{key}")))
                        .collect::<HashMap<_, _>>(),
                )
            })
            .await
            .expect("the loader does not fail");
        assert_eq!(got, [Some("one".to_owned()), Some("v:item:2".to_owned())]);
        assert_eq!(
            *asked.lock().expect("lock"),
            [vec!["item:2".to_owned()]],
            "the oversized entry is loaded again (near: {near})"
        );
        // The reload replaced it: a hit now.
        let read = cache
            .get_many::<String>(&["item:2"])
            .await
            .expect("get_many");
        assert_eq!(read, [Some("v:item:2".to_owned())], "near: {near}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_fails_alone() {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "batch").await;
    cache.set("item:1", &1u64, MINUTE).await.expect("set");
    // Not a string: GETRANGE answers WRONGTYPE for this key only.
    redis.cmd::<()>("HSET", &[b"batch:v1:item:2", b"field", b"value"]);
    let source = Arc::new(Source::default());
    let got = batch(&cache, &source, &keys(1..4)).await;
    assert_eq!(got, expected(1..4));
    assert_eq!(
        source.asked(),
        [keys(2..4)],
        "the other keys are answered as usual"
    );
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (1, 2), "{stats:?}");
    assert!(stats.errors >= 1, "the WRONGTYPE answer is counted");
}
