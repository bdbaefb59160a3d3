//! Batch reads and the cost of metrics, each against an anchor in the same
//! run.
//!
//! 1. `get_or_load_many` of 100 keys (the anchor) against 100 sequential
//!    and 100 concurrent `get_or_load` calls, cold (every key missing: one
//!    loader call against 100) and warm (every key cached): wall time per
//!    100 keys, in interleaved rounds, over a private loopback redis-server;
//!    then, in one pass of each row through a `DelayProxy`, the Redis
//!    commands (`INFO commandstats`), the request writes that reached the
//!    server (the proxy's count: round trips, where pipelined commands
//!    travel together) and the source queries per 100 keys.
//! 2. The hit path of `#[cacheable]` with the `metrics-exporter-prometheus`
//!    recorder installed against none (the anchor): handles are registered
//!    when a cache is built and a call site first used, so a cache built
//!    and used before the recorder is installed keeps no-op handles, and
//!    one built after records. In memory (where a hit costs well under a
//!    microsecond, so the counters' cost shows) and over Redis.
//!
//! ```text
//! cargo bench -p cachefw-tests --bench batch
//! ```

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachefw::{Cache, cacheable};
use cachefw_tests::{DelayProxy, RedisServer};
use serde::{Deserialize, Serialize};

const KEYS: usize = 100;
const TTL: Duration = Duration::from_secs(3600);
/// Interleaved rounds of every row, for the batch tables.
const BATCH_ROUNDS: usize = 60;
/// Interleaved rounds of every row, and hits per row per round, for the
/// metrics tables.
const HIT_ROUNDS: usize = 40;
const HIT_CALLS: usize = 2_048;
const HIT_KEYS: u64 = 1_000;
const TASKS: usize = 64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    email: String,
    score: f64,
    active: bool,
}

fn profile(id: u64) -> Profile {
    Profile {
        id,
        name: format!("user {id}"),
        email: format!("user{id}@example.com"),
        score: id as f64 * 1.5,
        active: id.is_multiple_of(2),
    }
}

#[derive(Clone, Debug)]
struct SourceError;

/// Source queries made, whatever asked.
static QUERIES: AtomicU64 = AtomicU64::new(0);

fn id_of(key: &str) -> u64 {
    key.rsplit(':')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or(0)
}

async fn load_one(key: &str) -> Result<Profile, SourceError> {
    QUERIES.fetch_add(1, Ordering::Relaxed);
    Ok(profile(id_of(key)))
}

async fn load_many(keys: Vec<String>) -> Result<HashMap<String, Profile>, SourceError> {
    QUERIES.fetch_add(1, Ordering::Relaxed);
    Ok(keys
        .into_iter()
        .map(|key| {
            let value = profile(id_of(&key));
            (key, value)
        })
        .collect())
}

#[derive(Clone, Copy)]
enum Batch {
    Many,
    Sequential,
    Concurrent,
}

impl Batch {
    const ALL: [Self; 3] = [Self::Many, Self::Sequential, Self::Concurrent];

    fn name(self) -> &'static str {
        match self {
            Self::Many => "get_or_load_many(100) (anchor)",
            Self::Sequential => "100 sequential get_or_load",
            Self::Concurrent => "100 concurrent get_or_load",
        }
    }

    /// Reads `keys` through `cache` this way; every value must come back.
    async fn run(self, cache: &Cache, keys: &[String]) {
        match self {
            Self::Many => {
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                let values = cache
                    .get_or_load_many(&refs, TTL, load_many)
                    .await
                    .expect("the source does not fail");
                assert!(values.iter().all(Option::is_some));
                std::hint::black_box(values);
            }
            Self::Sequential => {
                for key in keys {
                    let value = cache
                        .get_or_load(key, TTL, || load_one(key))
                        .await
                        .expect("the source does not fail");
                    std::hint::black_box(value);
                }
            }
            Self::Concurrent => {
                let reads = keys
                    .iter()
                    .map(|key| cache.get_or_load(key, TTL, || load_one(key)));
                for value in futures_util::future::join_all(reads).await {
                    std::hint::black_box(value.expect("the source does not fail"));
                }
            }
        }
    }
}

fn keys(prefix: &str) -> Vec<String> {
    (0..KEYS).map(|id| format!("{prefix}:{id}")).collect()
}

struct Row {
    name: &'static str,
    p50: Duration,
    mean: Duration,
}

fn row(name: &'static str, mut took: Vec<Duration>) -> Row {
    took.sort_unstable();
    Row {
        name,
        p50: took[took.len() / 2],
        mean: took.iter().sum::<Duration>() / took.len() as u32,
    }
}

/// Wall time per 100 keys of each row, in interleaved rounds: cold reads
/// fresh keys each round, warm reads the same cached keys.
async fn time_batches(cache: &Cache, cold: bool) -> Vec<Row> {
    let mut took: Vec<Vec<Duration>> = Batch::ALL.iter().map(|_| Vec::new()).collect();
    for round in 0..BATCH_ROUNDS {
        for (at, batch) in Batch::ALL.iter().enumerate() {
            let keys = match cold {
                true => keys(&format!("cold:{at}:{round}")),
                false => keys(&format!("warm:{at}")),
            };
            if !cold && round == 0 {
                batch.run(cache, &keys).await;
            }
            let started = Instant::now();
            batch.run(cache, &keys).await;
            took[at].push(started.elapsed());
        }
    }
    Batch::ALL
        .iter()
        .zip(took)
        .map(|(batch, took)| row(batch.name(), took))
        .collect()
}

fn print_times(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!(
        "| {:<32} | {:>10} | {:>10} | {:>13} | {:>14} |",
        "row", "p50", "mean", "p50 / anchor", "mean / anchor"
    );
    println!(
        "|{:-<34}|{:->12}|{:->12}|{:->15}|{:->16}|",
        "", "", "", "", ""
    );
    let anchor = &rows[0];
    for row in rows {
        println!(
            "| {:<32} | {:>10.1?} | {:>10.1?} | {:>12.2}x | {:>13.2}x |",
            row.name,
            row.p50,
            row.mean,
            row.p50.as_secs_f64() / anchor.p50.as_secs_f64(),
            row.mean.as_secs_f64() / anchor.mean.as_secs_f64(),
        );
    }
}

/// Calls of every command the server has run, `INFO` excluded.
fn commands_run(redis: &RedisServer) -> u64 {
    let info: String = redis.cmd("INFO", &[b"commandstats"]);
    info.lines()
        .filter(|line| line.starts_with("cmdstat_") && !line.starts_with("cmdstat_info:"))
        .filter_map(|line| {
            line.split(['=', ','])
                .nth(1)
                .and_then(|calls| calls.parse::<u64>().ok())
        })
        .sum()
}

/// One run of each row through the proxy: commands, request writes and
/// source queries per 100 keys, cold and warm.
async fn count_round_trips() -> Result<(), Box<dyn std::error::Error>> {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port());
    let cache = Cache::builder()
        .redis(proxy.url())
        .namespace("bench-count")
        .build()
        .await?;
    cache.get::<u64>("connect").await?;
    println!(
        "\nper 100 keys, one run each through a proxy (commands: INFO commandstats; writes: \
         request chunks that reached Redis, i.e. round trips on one connection)"
    );
    println!(
        "| {:<32} | {:>5} | {:>9} | {:>7} | {:>14} |",
        "row", "keys", "commands", "writes", "source queries"
    );
    println!(
        "|{:-<34}|{:->7}|{:->11}|{:->9}|{:->16}|",
        "", "", "", "", ""
    );
    for cold in [true, false] {
        for (at, batch) in Batch::ALL.iter().enumerate() {
            let keys = keys(&format!("count:{at}"));
            if !cold {
                batch.run(&cache, &keys).await;
            }
            // Let replies of the warm-up settle before counting.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (commands, writes, queries) = (
                commands_run(&redis),
                proxy.requests(),
                QUERIES.load(Ordering::Relaxed),
            );
            batch.run(&cache, &keys).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            println!(
                "| {:<32} | {:>5} | {:>9} | {:>7} | {:>14} |",
                batch.name(),
                if cold { "cold" } else { "warm" },
                commands_run(&redis) - commands,
                proxy.requests() - writes,
                QUERIES.load(Ordering::Relaxed) - queries,
            );
        }
    }
    Ok(())
}

static PLAIN_MEMORY: OnceLock<Cache> = OnceLock::new();
static RECORDED_MEMORY: OnceLock<Cache> = OnceLock::new();
static PLAIN_REDIS: OnceLock<Cache> = OnceLock::new();
static RECORDED_REDIS: OnceLock<Cache> = OnceLock::new();

#[cacheable(key = "p:<id>", ttl = "1h", cache = PLAIN_MEMORY.get().cloned())]
async fn plain_memory(id: u64) -> Result<Profile, SourceError> {
    Ok(profile(id))
}

#[cacheable(key = "p:<id>", ttl = "1h", cache = RECORDED_MEMORY.get().cloned())]
async fn recorded_memory(id: u64) -> Result<Profile, SourceError> {
    Ok(profile(id))
}

#[cacheable(key = "p:<id>", ttl = "1h", cache = PLAIN_REDIS.get().cloned())]
async fn plain_redis(id: u64) -> Result<Profile, SourceError> {
    Ok(profile(id))
}

#[cacheable(key = "p:<id>", ttl = "1h", cache = RECORDED_REDIS.get().cloned())]
async fn recorded_redis(id: u64) -> Result<Profile, SourceError> {
    Ok(profile(id))
}

#[derive(Clone, Copy)]
enum Hit {
    PlainMemory,
    RecordedMemory,
    PlainRedis,
    RecordedRedis,
}

impl Hit {
    fn name(self) -> &'static str {
        match self {
            Self::PlainMemory => "memory, no recorder (anchor)",
            Self::RecordedMemory => "memory, Prometheus recorder",
            Self::PlainRedis => "Redis, no recorder (anchor)",
            Self::RecordedRedis => "Redis, Prometheus recorder",
        }
    }

    async fn call(self, id: u64) -> Result<Profile, SourceError> {
        match self {
            Self::PlainMemory => plain_memory(id).await,
            Self::RecordedMemory => recorded_memory(id).await,
            Self::PlainRedis => plain_redis(id).await,
            Self::RecordedRedis => recorded_redis(id).await,
        }
    }
}

struct HitRow {
    name: &'static str,
    p50: Duration,
    mean: Duration,
    per_second: f64,
}

/// Hits of each row in `HIT_ROUNDS` interleaved rounds of `per_round`
/// calls, spread over `tasks` tasks.
async fn time_hits(rows: &[Hit], tasks: usize, per_round: usize) -> Vec<HitRow> {
    let mut latencies: Vec<Vec<Duration>> = rows.iter().map(|_| Vec::new()).collect();
    let mut took = vec![Duration::ZERO; rows.len()];
    for round in 0..HIT_ROUNDS {
        for (at, hit) in rows.iter().enumerate() {
            let started = Instant::now();
            let workers: Vec<_> = (0..tasks)
                .map(|task| {
                    let hit = *hit;
                    tokio::spawn(async move {
                        let mut latencies = Vec::with_capacity(per_round / tasks);
                        for i in 0..per_round / tasks {
                            let id = ((round * tasks + task) * per_round + i) as u64 * 7 % HIT_KEYS;
                            let at = Instant::now();
                            std::hint::black_box(hit.call(id).await.expect("hit"));
                            latencies.push(at.elapsed());
                        }
                        latencies
                    })
                })
                .collect();
            for worker in workers {
                latencies[at].extend(worker.await.expect("task"));
            }
            took[at] += started.elapsed();
        }
    }
    rows.iter()
        .zip(latencies)
        .zip(took)
        .map(|((hit, mut latencies), took)| {
            latencies.sort_unstable();
            HitRow {
                name: hit.name(),
                p50: latencies[latencies.len() / 2],
                mean: latencies.iter().sum::<Duration>() / latencies.len() as u32,
                per_second: latencies.len() as f64 / took.as_secs_f64(),
            }
        })
        .collect()
}

fn print_hits(title: &str, rows: &[HitRow]) {
    println!("\n{title}");
    println!(
        "| {:<30} | {:>9} | {:>9} | {:>11} | {:>13} | {:>14} |",
        "row", "p50", "mean", "ops/s", "mean / anchor", "ops/s / anchor"
    );
    println!(
        "|{:-<32}|{:->11}|{:->11}|{:->13}|{:->15}|{:->16}|",
        "", "", "", "", "", ""
    );
    let anchor = &rows[0];
    for row in rows {
        println!(
            "| {:<30} | {:>9.1?} | {:>9.1?} | {:>11.0} | {:>12.2}x | {:>13.2}x |",
            row.name,
            row.p50,
            row.mean,
            row.per_second,
            row.mean.as_secs_f64() / anchor.mean.as_secs_f64(),
            row.per_second / anchor.per_second,
        );
    }
}

async fn warm(hit: Hit) {
    for id in 0..HIT_KEYS {
        hit.call(id).await.expect("warm-up");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = RedisServer::start();
    let url = redis.url();

    // 1. Batch reads (no recorder installed yet).
    let cache = Cache::builder()
        .redis(url.as_str())
        .namespace("bench-batch")
        .build()
        .await?;
    cache.get::<u64>("connect").await?;
    let cold = time_batches(&cache, true).await;
    let warm_rows = time_batches(&cache, false).await;
    println!(
        "batch reads: {KEYS} keys of a 5-field struct, loopback redis-server, 2 worker threads, \
         a source that answers at once, {BATCH_ROUNDS} interleaved rounds"
    );
    print_times("cold (every key missing), wall time per 100 keys", &cold);
    print_times(
        "warm (every key cached), wall time per 100 keys",
        &warm_rows,
    );
    count_round_trips().await?;

    // 2. Metrics on the hit path: caches built and used before the recorder
    // keep no-op handles.
    let _ = PLAIN_MEMORY.set(Cache::builder().namespace("bench-plain").build().await?);
    let _ = PLAIN_REDIS.set(
        Cache::builder()
            .redis(url.as_str())
            .namespace("bench-plain")
            .build()
            .await?,
    );
    warm(Hit::PlainMemory).await;
    warm(Hit::PlainRedis).await;
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let _ = RECORDED_MEMORY.set(Cache::builder().namespace("bench-recorded").build().await?);
    let _ = RECORDED_REDIS.set(
        Cache::builder()
            .redis(url.as_str())
            .namespace("bench-recorded")
            .build()
            .await?,
    );
    warm(Hit::RecordedMemory).await;
    warm(Hit::RecordedRedis).await;
    let memory = [Hit::PlainMemory, Hit::RecordedMemory];
    let over_redis = [Hit::PlainRedis, Hit::RecordedRedis];
    let memory_1 = time_hits(&memory, 1, HIT_CALLS * 4).await;
    let memory_64 = time_hits(&memory, TASKS, HIT_CALLS * 4).await;
    let redis_1 = time_hits(&over_redis, 1, HIT_CALLS / 4).await;
    let redis_64 = time_hits(&over_redis, TASKS, HIT_CALLS).await;
    println!(
        "\nmetrics on the hit path: #[cacheable] hits of {HIT_KEYS} keys, {HIT_ROUNDS} \
         interleaved rounds; the recorder is metrics-exporter-prometheus"
    );
    print_hits("memory, one task", &memory_1);
    print_hits(&format!("memory, {TASKS} tasks"), &memory_64);
    print_hits("Redis, one task", &redis_1);
    print_hits(&format!("Redis, {TASKS} tasks"), &redis_64);
    // The recorder did record: the hits of the recorded caches are there.
    let text = prometheus.render();
    let recorded = text
        .lines()
        .any(|line| line.starts_with("cachefw_hits_total{namespace=\"bench-recorded\""));
    assert!(recorded, "the recorder saw no hit:\n{text}");
    let leaked: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("bench-plain"))
        .collect();
    assert!(
        leaked.is_empty(),
        "the anchor's handles recorded:\n{}",
        leaked.join("\n")
    );
    Ok(())
}
