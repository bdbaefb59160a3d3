//! Stampede protection across processes and no stale fills: the Redis
//! lease. Each `Cache` built here stands for a process of its own (separate
//! `build()` calls share no in-process state).

use cachefw_tests::fixtures as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cachefw::{Cache, cache_evict, cacheable};
use cachefw_tests::{RedisServer, eventually};
use common::{MINUTE, SourceDown};
use tokio::sync::Notify;

async fn process(redis: &RedisServer) -> Cache {
    process_with(redis, false).await
}

/// A process, with a near tier in front of Redis when `near`.
async fn process_with(redis: &RedisServer, near: bool) -> Cache {
    let builder = Cache::builder()
        .redis(redis.url())
        .namespace("s")
        .lease_time(Duration::from_secs(5));
    let builder = match near {
        true => builder.near_cache(1 << 20),
        false => builder,
    };
    builder.build().await.expect("builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_fifty_callers_one_load() {
    let redis = RedisServer::start();
    let loads = Arc::new(AtomicU32::new(0));
    let mut callers = Vec::new();
    for _ in 0..4 {
        let cache = process(&redis).await;
        for _ in 0..50 {
            let (cache, loads) = (cache.clone(), loads.clone());
            callers.push(tokio::spawn(async move {
                cache
                    .get_or_load("cold", MINUTE, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, SourceDown>(42u32)
                    })
                    .await
            }));
        }
    }
    for caller in callers {
        assert_eq!(caller.await.expect("task"), Ok(42));
    }
    let loads = loads.load(Ordering::SeqCst);
    println!("4 caches x 50 callers of one cold key: {loads} load(s)");
    assert_eq!(loads, 1);
}

/// The source of truth of the stale-fill tests.
struct Source {
    value: std::sync::Mutex<&'static str>,
    /// Tells the test the slow reader has read the source.
    read: Notify,
    /// Lets the slow reader go on.
    resume: Notify,
}

impl Source {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            value: std::sync::Mutex::new("old"),
            read: Notify::new(),
            resume: Notify::new(),
        })
    }

    fn current(&self) -> &'static str {
        *self.value.lock().expect("source lock")
    }
}

/// A reader that reads the source, then stalls until resumed.
fn slow_reader(cache: &Cache, source: &Arc<Source>) -> tokio::task::JoinHandle<String> {
    let (cache, source) = (cache.clone(), source.clone());
    tokio::spawn(async move {
        cache
            .get_or_load("item", MINUTE, || async move {
                let seen = source.current().to_owned();
                source.read.notify_one();
                source.resume.notified().await;
                Ok::<_, SourceDown>(seen)
            })
            .await
            .expect("loads")
    })
}

/// Runs the race: a reader reads "old" and stalls; `write` changes the
/// source to "new" and invalidates the key; the reader then fills. The
/// cache must not be left holding "old".
///
/// Twice: with plain caches, and with near tiers in front of Redis.
async fn stale_fill_race<F, Fut>(write: F)
where
    F: Fn(Cache, Arc<Source>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for near in [false, true] {
        stale_fill_race_once(&write, near).await;
    }
}

async fn stale_fill_race_once<F, Fut>(write: &F, near: bool)
where
    F: Fn(Cache, Arc<Source>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let redis = RedisServer::start();
    let reader_process = process_with(&redis, near).await;
    let writer_process = process_with(&redis, near).await;
    let source = Source::new();

    let reader = slow_reader(&reader_process, &source);
    source.read.notified().await;
    write(writer_process.clone(), source.clone()).await;
    source.resume.notify_one();
    assert_eq!(
        reader.await.expect("task"),
        "old",
        "the reader returns what it read"
    );

    let stored = writer_process.get::<String>("item").await.expect("get");
    assert_ne!(
        stored.as_deref(),
        Some("old"),
        "a stale fill stored the old value"
    );
    let fresh = reader_process
        .get_or_load("item", MINUTE, || async {
            Ok::<_, SourceDown>(source.current().to_owned())
        })
        .await;
    assert_eq!(fresh.as_deref(), Ok("new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_fill_after_delete() {
    stale_fill_race(|cache, source| async move {
        *source.value.lock().expect("lock") = "new";
        cache.delete("item").await.expect("delete");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_fill_after_set() {
    stale_fill_race(|cache, source| async move {
        *source.value.lock().expect("lock") = "new";
        cache.set("item", "new", MINUTE).await.expect("set");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_fill_after_prefix_eviction() {
    stale_fill_race(|cache, source| async move {
        *source.value.lock().expect("lock") = "new";
        cache.evict_prefix("it").await.expect("evict");
    })
    .await;
}

#[cache_evict(key = "item", cache = cache)]
async fn update_item(cache: &Cache, source: &Source) -> Result<(), SourceDown> {
    *source.value.lock().expect("lock") = "new";
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_fill_after_cache_evict() {
    stale_fill_race(|cache, source| async move {
        update_item(&cache, &source).await.expect("update");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_fill_within_one_process() {
    let redis = RedisServer::start();
    let cache = process(&redis).await;
    let source = Source::new();
    let reader = slow_reader(&cache, &source);
    source.read.notified().await;
    *source.value.lock().expect("lock") = "new";
    cache.delete("item").await.expect("delete");
    // A caller after the delete does not join the load that began before it.
    let after = cache
        .get_or_load("item", MINUTE, || async {
            Ok::<_, SourceDown>(source.current().to_owned())
        })
        .await;
    assert_eq!(after.as_deref(), Ok("new"));
    source.resume.notify_one();
    assert_eq!(reader.await.expect("task"), "old");
    assert_eq!(
        cache.get::<String>("item").await.expect("get").as_deref(),
        Some("new")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_lease_holder_releases_its_lease() {
    let redis = RedisServer::start();
    let holder_process = process(&redis).await;
    let other_process = process(&redis).await;
    let holder = {
        let cache = holder_process.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("k", MINUTE, || {
                    std::future::pending::<Result<u32, SourceDown>>()
                })
                .await
        })
    };
    eventually(
        Duration::from_secs(10),
        "holder_process.stats().loads == 1",
        || holder_process.stats().loads == 1,
    )
    .await;
    holder.abort();
    let started = Instant::now();
    let got = other_process
        .get_or_load("k", MINUTE, || async { Ok::<_, SourceDown>(7u32) })
        .await;
    assert_eq!(got, Ok(7));
    // The lease time is 5 s; a released lease is not waited out.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_dead_process_blocks_others_no_longer_than_the_lease_time() {
    let redis = RedisServer::start();
    let lease_time = Duration::from_millis(800);
    let build = || {
        Cache::builder()
            .redis(redis.url())
            .namespace("s")
            .lease_time(lease_time)
            .build()
    };
    // A process that takes the lease, then dies without releasing it.
    let doomed = tokio::runtime::Runtime::new().expect("runtime");
    let holder = doomed.block_on(build()).expect("builds");
    doomed.spawn({
        let holder = holder.clone();
        async move {
            holder
                .get_or_load("k", MINUTE, || {
                    std::future::pending::<Result<u32, SourceDown>>()
                })
                .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while holder.stats().loads == 0 {
        assert!(Instant::now() < deadline, "the holder never loaded");
        std::thread::sleep(Duration::from_millis(2));
    }
    doomed.shutdown_background();
    assert!(
        redis.raw_get("s:v1:k").is_some(),
        "the dead process's lease is left behind"
    );

    let survivor = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let got = survivor.block_on(async {
        build()
            .await
            .expect("builds")
            .get_or_load("k", MINUTE, || async { Ok::<_, SourceDown>(9u32) })
            .await
    });
    let waited = started.elapsed();
    assert_eq!(got, Ok(9));
    assert!(
        waited < lease_time + Duration::from_secs(2),
        "waited {waited:?} with a lease time of {lease_time:?}"
    );
    assert_eq!(redis.raw_get("s:v1:k").map(|v| v.len() > 3), Some(true));
}

#[cacheable(key = "j:<i>", ttl = "100s", jitter = "50%", cache = cache)]
async fn jittered(cache: &Cache, i: u32) -> u32 {
    i
}

#[tokio::test]
async fn jitter_spreads_expiry_below_the_ttl() {
    let redis = RedisServer::start();
    let cache = process(&redis).await;
    let mut ttls = Vec::new();
    for i in 0..20 {
        jittered(&cache, i).await;
        ttls.push(redis.pttl(&format!("s:v1:j:{i}")));
    }
    assert!(
        ttls.iter().all(|ttl| (50_000..=100_000).contains(ttl)),
        "{ttls:?}"
    );
    ttls.sort_unstable();
    ttls.dedup_by(|a, b| (*a - *b).abs() < 1_000);
    assert!(ttls.len() > 5, "expiries are spread: {ttls:?}");

    // The builder default applies to get_or_load; none by default.
    let spread = Cache::builder()
        .redis(redis.url())
        .namespace("t")
        .ttl_jitter(0.5)
        .build()
        .await
        .expect("builds");
    for i in 0..10 {
        spread
            .get_or_load(&format!("k{i}"), Duration::from_secs(100), || async {
                Ok::<_, SourceDown>(i)
            })
            .await
            .expect("loads");
    }
    let ttls: Vec<i64> = (0..10).map(|i| redis.pttl(&format!("t:v1:k{i}"))).collect();
    assert!(
        ttls.iter().all(|ttl| (50_000..=100_000).contains(ttl)),
        "{ttls:?}"
    );
    assert!(Cache::builder().ttl_jitter(1.0).build().await.is_err());
}
