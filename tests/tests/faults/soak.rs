//! A soak (9 s in CI; `CACHEFW_SOAK_SECS`, as `scripts/soak` sets it, runs
//! it longer): writers change the source and evict, readers read
//! through the cache, and Redis is frozen for a moment every few seconds.
//! No call fails; no read returns a value older than the last write
//! acknowledged before the read began; and once the faults stop, every key
//! read through the cache equals the source.
//!
//! One process (one `Cache`): the journal of evictions that missed Redis
//! lives in the process that made them. Another process reading the same
//! Redis between a thaw and the replay (tens of milliseconds) can see the
//! old value; `invalidation.rs` shows it sees the new one after the replay.

use cachefw_tests::fixtures as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_tests::RedisServer;
use common::SourceDown;

const KEYS: usize = 50;
/// How long the soak runs in CI: `CACHEFW_SOAK_SECS` runs it longer.
const SOAK: Duration = Duration::from_secs(9);
const FREEZE_EVERY: Duration = Duration::from_secs(3);
const FREEZE_FOR: Duration = Duration::from_millis(700);

/// The source of truth: a version per key, bumped by each write.
struct Source {
    versions: Vec<AtomicU64>,
    /// Per key, the version of the last write whose eviction returned.
    acknowledged: Vec<AtomicU64>,
}

impl Source {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            versions: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
            acknowledged: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
        })
    }
}

async fn read(cache: &Cache, source: &Source, key: usize) -> u64 {
    cache
        .get_or_load(&format!("k:{key}"), Duration::from_secs(600), || async {
            // A source read takes a moment, so loads overlap writes.
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, SourceDown>(source.versions[key].load(Ordering::SeqCst))
        })
        .await
        .expect("the source never fails")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_freezes_serves_no_stale_value() {
    let redis = RedisServer::start();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace("soak")
        .timeout(Duration::from_millis(100))
        .build()
        .await
        .expect("builds");
    let caches = [cache];
    let source = Source::new();
    let running = Arc::new(AtomicBool::new(true));
    let stale = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (cache, source, running, writes) = (
            caches[w % caches.len()].clone(),
            source.clone(),
            running.clone(),
            writes.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while running.load(Ordering::SeqCst) {
                let key = fastrand::usize(..KEYS);
                let version = source.versions[key].fetch_add(1, Ordering::SeqCst) + 1;
                // The eviction may fail (Redis frozen); it is not lost.
                let _ = cache.delete(&format!("k:{key}")).await;
                source.acknowledged[key].fetch_max(version, Ordering::SeqCst);
                writes.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(fastrand::u64(2..20))).await;
            }
        }));
    }
    for r in 0..16 {
        let (cache, source, running, stale, reads) = (
            caches[r % caches.len()].clone(),
            source.clone(),
            running.clone(),
            stale.clone(),
            reads.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while running.load(Ordering::SeqCst) {
                let key = fastrand::usize(..KEYS);
                let floor = source.acknowledged[key].load(Ordering::SeqCst);
                let got = read(&cache, &source, key).await;
                // A write is acknowledged once its eviction returned:
                // confirmed by Redis, or kept in the journal, which makes
                // reads of the key bypass Redis until it is replayed.
                if got < floor {
                    stale.fetch_add(1, Ordering::Relaxed);
                }
                reads.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }));
    }
    let soak = common::soak_time(SOAK);
    let started = Instant::now();
    let mut freezes = 0u32;
    while started.elapsed() < soak {
        tokio::time::sleep(FREEZE_EVERY - FREEZE_FOR).await;
        redis.freeze();
        tokio::time::sleep(FREEZE_FOR).await;
        redis.thaw();
        freezes += 1;
    }
    running.store(false, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("no caller panicked");
    }
    // Settle: every cache replays what Redis missed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while caches.iter().any(|c| c.stats().pending_evictions > 0) {
        assert!(Instant::now() < deadline, "evictions still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut wrong = Vec::new();
    for cache in &caches {
        for key in 0..KEYS {
            let got = read(cache, &source, key).await;
            let truth = source.versions[key].load(Ordering::SeqCst);
            if got != truth {
                wrong.push((key, got, truth));
            }
        }
    }
    let stats: Vec<_> = caches.iter().map(Cache::stats).collect();
    println!(
        "soak: {} reads, {} writes, {freezes} freezes, {} stale reads; {stats:?}",
        reads.load(Ordering::Relaxed),
        writes.load(Ordering::Relaxed),
        stale.load(Ordering::Relaxed),
    );
    // Every round takes at least FREEZE_EVERY; a loaded machine loses one.
    let rounds = (soak.as_millis() / FREEZE_EVERY.as_millis()).saturating_sub(1);
    assert!(u128::from(freezes) >= rounds.max(1), "{freezes}");
    assert!(reads.load(Ordering::Relaxed) > 1_000);
    assert!(
        stats.iter().all(|s| s.hits > 0),
        "the cache served hits between the freezes: {stats:?}"
    );
    assert_eq!(
        wrong,
        [],
        "keys that differ from the source after the faults"
    );
    assert_eq!(stale.load(Ordering::Relaxed), 0, "stale reads");
}
