//! A hot key that expires every second: 64 tasks read it in a loop, its
//! load takes 20 ms. Without help, every expiry makes the callers wait for
//! the reload; with `refresh_ahead` the entry is recomputed before it
//! expires, and with `stale_while_revalidate` the expired value answers while
//! it reloads. The anchor is the same 64 tasks reading a key that never
//! expires (a plain hit). Two more rows have another cache (another
//! process) evict the key every 100 ms and every 20 ms, as writes of a hot
//! row would: a load that an eviction voids sends the callers that joined
//! it to load again, once (read your writes across processes), and these
//! rows show what that costs. Reported: caller p50 / p99 / p999, their
//! ratio to the plain hit's, loads per TTL period, and those reloads.
//!
//! ```text
//! cargo bench -p cachefw-tests --bench hotkey
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachefw::{Cache, CacheBuilder};
use cachefw_tests::RedisServer;

const TASKS: usize = 64;
const TTL: Duration = Duration::from_secs(1);
const LOAD: Duration = Duration::from_millis(20);
const RUN: Duration = Duration::from_secs(8);

struct Row {
    name: &'static str,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    calls: usize,
    loads: u64,
    reloads: u64,
}

/// 64 tasks reading `key` with `ttl` for `RUN`, while `writer`, if any,
/// evicts it at that interval.
async fn measure(
    name: &'static str,
    cache: Cache,
    key: &'static str,
    ttl: Duration,
    writer: Option<(Cache, Duration)>,
) -> Row {
    let loads = Arc::new(AtomicU64::new(0));
    let read = {
        let (cache, loads) = (cache.clone(), loads.clone());
        move || {
            let (cache, loads) = (cache.clone(), loads.clone());
            async move {
                cache
                    .get_or_load_owned(key, ttl, move || async move {
                        loads.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(LOAD).await;
                        Ok::<_, std::io::Error>(42u64)
                    })
                    .await
            }
        }
    };
    read().await.expect("warm-up");
    loads.store(0, Ordering::Relaxed);
    let reloads_before = cache.stats().reloads;
    let started = Instant::now();
    let evictions = writer.map(|(writer, every)| {
        tokio::spawn(async move {
            while started.elapsed() < RUN {
                tokio::time::sleep(every).await;
                let _ = writer.delete(key).await;
            }
        })
    });
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let read = read.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while started.elapsed() < RUN {
                    let at = Instant::now();
                    std::hint::black_box(read().await.expect("the source never fails"));
                    latencies.push(at.elapsed());
                    // A service does other work between reads.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    if let Some(evictions) = evictions {
        evictions.await.expect("the writer");
    }
    cache.shutdown().await;
    latencies.sort_unstable();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    Row {
        name,
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        calls: latencies.len(),
        loads: loads.load(Ordering::Relaxed),
        reloads: cache.stats().reloads - reloads_before,
    }
}

async fn cache(redis: &RedisServer, configure: impl FnOnce(CacheBuilder) -> CacheBuilder) -> Cache {
    configure(Cache::builder().redis(redis.url()).namespace("hot"))
        .build()
        .await
        .expect("builds")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let redis = RedisServer::start();
    let rows = [
        measure(
            "plain hit, no expiry (anchor)",
            cache(&redis, |b| b).await,
            "steady",
            Duration::from_secs(3_600),
            None,
        )
        .await,
        measure(
            "TTL 1 s, no help",
            cache(&redis, |b| b).await,
            "plain",
            TTL,
            None,
        )
        .await,
        measure(
            "TTL 1 s, refresh_ahead (beta 1)",
            cache(&redis, |b| b.refresh_ahead(1.0)).await,
            "ahead",
            TTL,
            None,
        )
        .await,
        measure(
            "TTL 1 s, stale_while_revalidate 30 s",
            cache(&redis, |b| {
                b.stale_while_revalidate(Duration::from_secs(30))
            })
            .await,
            "swr",
            TTL,
            None,
        )
        .await,
        measure(
            "TTL 1 s, evicted every 100 ms elsewhere",
            cache(&redis, |b| b).await,
            "written",
            TTL,
            Some((cache(&redis, |b| b).await, Duration::from_millis(100))),
        )
        .await,
        measure(
            "TTL 1 s, evicted every 20 ms elsewhere",
            cache(&redis, |b| b).await,
            "hammered",
            TTL,
            Some((cache(&redis, |b| b).await, Duration::from_millis(20))),
        )
        .await,
    ];
    println!(
        "hot key: {TASKS} tasks, one key, TTL {TTL:?}, load {LOAD:?}, {RUN:?} each, loopback redis-server, 2 worker threads"
    );
    println!(
        "| {:<40} | {:>9} | {:>9} | {:>9} | {:>8} | {:>10} | {:>10} | {:>16} | {:>8} |",
        "row", "p50", "p99", "p999", "calls", "p99 / hit", "loads/s", "loads per TTL", "reloads"
    );
    println!(
        "|{:-<42}|{:->11}|{:->11}|{:->11}|{:->10}|{:->12}|{:->12}|{:->18}|{:->10}|",
        "", "", "", "", "", "", "", "", ""
    );
    let anchor = rows[0].p99;
    for row in &rows {
        let per_second = row.loads as f64 / RUN.as_secs_f64();
        println!(
            "| {:<40} | {:>9.1?} | {:>9.1?} | {:>9.1?} | {:>8} | {:>9.2}x | {:>10.2} | {:>16.2} | {:>8} |",
            row.name,
            row.p50,
            row.p99,
            row.p999,
            row.calls,
            row.p99.as_secs_f64() / anchor.as_secs_f64(),
            per_second,
            per_second * TTL.as_secs_f64(),
            row.reloads,
        );
    }
}
