//! Tags and compression (issue 28), each against its anchor in the same
//! run, over a private loopback redis-server:
//!
//! 1. `evict_tag` against `evict_prefix` (the anchor) for 1k, 10k and 100k
//!    entries: wall time of one eviction.
//! 2. A hit of an entry with one tag (`get_or_load_tagged`) against an
//!    untagged hit (`get_or_load`, the anchor): p50 and mean, interleaved
//!    rounds, and Redis commands per hit (`INFO commandstats`).
//! 3. A 64 KiB JSON-like value: hit p50 and stored bytes with compression
//!    (the 4 KiB default) and without (`compress_above(0)`, the anchor).
//!
//! ```text
//! cargo bench -p cachefw-tests --bench tags
//! ```

use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_tests::RedisServer;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

const TTL: Duration = Duration::from_secs(3600);
const ROUNDS: usize = 20;
const HITS_PER_ROUND: usize = 500;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    sku: String,
    title: String,
    price_cents: u64,
    in_stock: bool,
}

fn catalog(kib: usize) -> Vec<Item> {
    (0..kib * 1024 / 64)
        .map(|i| Item {
            sku: format!("SKU-{i:08}"),
            title: format!("Stainless steel kettle, 1.7 l, model {}", i % 13),
            price_cents: 1_999 + (i as u64 % 7) * 100,
            in_stock: i % 3 != 0,
        })
        .collect()
}

#[derive(Debug)]
struct Never;

async fn cache(redis: &RedisServer, namespace: &str, compress_above: u64) -> Cache {
    Cache::builder()
        .redis(redis.url())
        .namespace(namespace)
        .compress_above(compress_above)
        .build()
        .await
        .expect("builds")
}

async fn fill(cache: &Cache, count: usize) {
    futures_util::stream::iter(0..count)
        .for_each_concurrent(256, |i| async move {
            cache
                .set_tagged(&format!("p:{i}"), &(i as u64), TTL, &["t"])
                .await
                .expect("stored");
        })
        .await;
}

fn p50(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn mean(samples: &[Duration]) -> Duration {
    samples.iter().sum::<Duration>() / samples.len().max(1) as u32
}

fn commands(redis: &RedisServer) -> u64 {
    let info: String = redis.cmd("INFO", &[b"commandstats"]);
    info.lines()
        .filter_map(|line| line.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
        .sum()
}

async fn evictions(redis: &RedisServer) {
    println!("## evict_tag against evict_prefix (one eviction, wall time)");
    println!("| entries | evict_prefix | evict_tag | ratio |");
    println!("| --- | --- | --- | --- |");
    for count in [1_000, 10_000, 100_000] {
        let cache = cache(redis, &format!("ev{count}"), 4096).await;
        fill(&cache, count).await;
        let started = Instant::now();
        cache.evict_tag("t").await.expect("evicts");
        let tag = started.elapsed();
        let started = Instant::now();
        let removed = cache.evict_prefix("p:").await.expect("evicts");
        let prefix = started.elapsed();
        assert_eq!(removed, count as u64);
        println!(
            "| {count} | {prefix:?} | {tag:?} | {:.0}x |",
            prefix.as_secs_f64() / tag.as_secs_f64()
        );
        cache.clear().await.expect("clears");
    }
}

async fn tagged_hits(redis: &RedisServer) {
    let cache = cache(redis, "hits", 4096).await;
    let value = catalog(1);
    let load = || async { Ok::<_, Never>(value.clone()) };
    let _ = cache.get_or_load("plain", TTL, load).await;
    let _ = cache
        .get_or_load_tagged("tagged", TTL, &["user:42"], load)
        .await;
    let (mut plain, mut tagged) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for _ in 0..HITS_PER_ROUND {
            let started = Instant::now();
            let _ = cache.get_or_load("plain", TTL, load).await;
            plain.push(started.elapsed());
            let started = Instant::now();
            let _ = cache
                .get_or_load_tagged("tagged", TTL, &["user:42"], load)
                .await;
            tagged.push(started.elapsed());
        }
    }
    let before = commands(redis);
    for _ in 0..100 {
        let _ = cache.get_or_load("plain", TTL, load).await;
    }
    let plain_commands = commands(redis) - before - 1;
    let before = commands(redis);
    for _ in 0..100 {
        let _ = cache
            .get_or_load_tagged("tagged", TTL, &["user:42"], load)
            .await;
    }
    let tagged_commands = commands(redis) - before - 1;
    assert_eq!(cache.stats().loads, 2, "every timed call is a hit");
    let (pm, tm) = (mean(&plain), mean(&tagged));
    let (pp, tp) = (p50(&mut plain), p50(&mut tagged));
    println!("## tagged against untagged hit (one Redis, ~1 KiB value)");
    println!("| hit | p50 | mean | Redis commands per 100 hits |");
    println!("| --- | --- | --- | --- |");
    println!("| untagged (anchor) | {pp:?} | {pm:?} | {plain_commands} |");
    println!("| 1 tag | {tp:?} | {tm:?} | {tagged_commands} |");
    println!(
        "ratio p50 {:.2}x, mean {:.2}x",
        tp.as_secs_f64() / pp.as_secs_f64(),
        tm.as_secs_f64() / pm.as_secs_f64()
    );
}

async fn compression(redis: &RedisServer) {
    let value = catalog(64);
    let mut rows = Vec::new();
    for (name, above) in [("off (anchor)", 0), ("4 KiB (default)", 4096)] {
        let cache = cache(redis, &format!("z{above}"), above).await;
        cache.set("v", &value, TTL).await.expect("stored");
        let bytes: i64 = redis.cmd("STRLEN", &[format!("z{above}:v1:v").as_bytes()]);
        let mut samples = Vec::new();
        for _ in 0..ROUNDS * 50 {
            let started = Instant::now();
            let got = cache.get::<Vec<Item>>("v").await.expect("reads");
            samples.push(started.elapsed());
            assert!(got.is_some());
        }
        rows.push((name, bytes, p50(&mut samples), mean(&samples)));
    }
    println!("## 64 KiB value: hit and stored bytes");
    println!("| compression | stored bytes | hit p50 | hit mean |");
    println!("| --- | --- | --- | --- |");
    for (name, bytes, p, m) in &rows {
        println!("| {name} | {bytes} | {p:?} | {m:?} |");
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let redis = RedisServer::start();
    runtime.block_on(async {
        tagged_hits(&redis).await;
        compression(&redis).await;
        evictions(&redis).await;
    });
}
