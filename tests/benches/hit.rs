//! The cost of a cached read, against its anchors, in one run: the
//! `#[cacheable]` hit over Redis against a raw redis-rs `GET` + bincode
//! decode (and the `cached` crate's Redis macro, the peer users would pick),
//! the `#[cacheable]` hit in memory against `moka` itself, and the miss path
//! against a plain `GET` + `SET`. One task in sequence, then 64 concurrent
//! tasks; 1,000 keys of a five-field struct; a private loopback
//! redis-server.
//!
//! ```text
//! cargo bench -p cachefw-tests --bench hit
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use cachefw::{Cache, cacheable};
use cachefw_tests::RedisServer;
use serde::{Deserialize, Serialize};

/// Counts heap allocations, to report how many one hit makes.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEYS: u64 = 1_000;
const SEQUENTIAL: usize = 20_000;
const TASKS: usize = 64;
const PER_TASK: usize = 1_000;

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

static REDIS_CACHE: OnceLock<Cache> = OnceLock::new();
static MEMORY_CACHE: OnceLock<Cache> = OnceLock::new();
static REDIS_URL: OnceLock<String> = OnceLock::new();
static RAW: OnceLock<redis::aio::MultiplexedConnection> = OnceLock::new();
static MOKA: LazyLock<moka::sync::Cache<String, Profile>> =
    LazyLock::new(|| moka::sync::Cache::new(10_000));

#[cacheable(key = "p:<id>", ttl = "1h", cache = REDIS_CACHE.get().cloned())]
async fn cachefw_redis(id: u64) -> Result<Profile, SourceError> {
    Ok(profile(id))
}

#[cacheable(key = "p:<id>", ttl = "1h", cache = MEMORY_CACHE.get().cloned())]
async fn cachefw_memory(id: u64) -> Result<Profile, SourceError> {
    Ok(profile(id))
}

#[cached::macros::concurrent_cached(
    map_error = r##"|_| SourceError"##,
    ty = "cached::AsyncRedisCache<u64, Profile>",
    create = r##" {
        cached::AsyncRedisCache::builder("bench-cached")
            .ttl(Duration::from_secs(3600))
            .connection_string(REDIS_URL.get().map(String::as_str).unwrap_or_default())
            .build()
            .await
            .expect("the cached crate connects")
    } "##
)]
async fn cached_crate(id: u64) -> Result<Profile, SourceError> {
    Ok(profile(id))
}

async fn raw_get(id: u64) -> Result<Profile, SourceError> {
    let mut conn = RAW.get().cloned().ok_or(SourceError)?;
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(format!("raw:p:{id}"))
        .query_async(&mut conn)
        .await
        .map_err(|_| SourceError)?;
    bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
        .map(|(profile, _)| profile)
        .map_err(|_| SourceError)
}

async fn moka_get(id: u64) -> Result<Profile, SourceError> {
    MOKA.get(&format!("p:{id}")).ok_or(SourceError)
}

struct Row {
    name: &'static str,
    p50: Duration,
    p99: Duration,
    mean: Duration,
    per_second: f64,
}

/// `ops` calls of `op` in one task, then `TASKS` tasks of `PER_TASK` calls.
async fn measure<F, Fut>(name: &'static str, op: F) -> (Row, Row)
where
    F: Fn(u64) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Profile, SourceError>> + Send,
{
    for id in 0..KEYS {
        op(id).await.expect("warm-up");
    }
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        let at = Instant::now();
        std::hint::black_box(op(i as u64 % KEYS).await.expect("hit"));
        samples.push(at.elapsed());
    }
    let sequential = row(name, samples, SEQUENTIAL, started.elapsed());

    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(PER_TASK);
                for i in 0..PER_TASK {
                    let at = Instant::now();
                    std::hint::black_box(
                        op(((t * PER_TASK + i) as u64 * 7) % KEYS)
                            .await
                            .expect("hit"),
                    );
                    samples.push(at.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(TASKS * PER_TASK);
    for task in tasks {
        samples.extend(task.await.expect("task"));
    }
    let concurrent = row(name, samples, TASKS * PER_TASK, started.elapsed());
    (sequential, concurrent)
}

fn row(name: &'static str, mut samples: Vec<Duration>, ops: usize, took: Duration) -> Row {
    samples.sort_unstable();
    Row {
        name,
        p50: samples[samples.len() / 2],
        p99: samples[samples.len() * 99 / 100],
        mean: samples.iter().sum::<Duration>() / samples.len() as u32,
        per_second: ops as f64 / took.as_secs_f64(),
    }
}

fn print(title: &str, rows: &[&Row]) {
    println!("\n{title}");
    println!(
        "| {:<34} | {:>9} | {:>9} | {:>9} | {:>11} | {:>13} | {:>13} |",
        "row", "p50", "p99", "mean", "ops/s", "p50 / anchor", "ops/s / anchor"
    );
    println!(
        "|{:-<36}|{:->11}|{:->11}|{:->11}|{:->13}|{:->15}|{:->15}|",
        "", "", "", "", "", "", ""
    );
    let anchor = rows[0];
    for row in rows {
        println!(
            "| {:<34} | {:>9.1?} | {:>9.1?} | {:>9.1?} | {:>11.0} | {:>12.2}x | {:>12.2}x |",
            row.name,
            row.p50,
            row.p99,
            row.mean,
            row.per_second,
            row.p50.as_secs_f64() / anchor.p50.as_secs_f64(),
            row.per_second / anchor.per_second,
        );
    }
}

/// Heap allocations per call of `op` on warm keys, in one task.
async fn allocations<F, Fut>(op: F) -> f64
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Profile, SourceError>>,
{
    const CALLS: u64 = 10_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..CALLS {
        std::hint::black_box(op(i % KEYS).await.expect("hit"));
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / CALLS as f64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = RedisServer::start();
    let url = redis.url();
    let _ = REDIS_URL.set(url.clone());
    let client = redis::Client::open(url.as_str())?;
    let mut raw = client.get_multiplexed_async_connection().await?;
    for id in 0..KEYS {
        let bytes = bincode::serde::encode_to_vec(profile(id), bincode::config::standard())?;
        redis::cmd("SET")
            .arg(format!("raw:p:{id}"))
            .arg(bytes)
            .query_async::<()>(&mut raw)
            .await?;
        MOKA.insert(format!("p:{id}"), profile(id));
    }
    let _ = RAW.set(raw);
    let _ = REDIS_CACHE.set(
        Cache::builder()
            .redis(url.as_str())
            .namespace("bench")
            .build()
            .await?,
    );
    let _ = MEMORY_CACHE.set(Cache::builder().namespace("bench").build().await?);

    // Rows run in rotation, three rounds; each row reports its best round
    // (lowest p50), so that warm-up and scheduling noise hit all rows alike.
    let mut best: Vec<Option<(Row, Row)>> = (0..5).map(|_| None).collect();
    for _ in 0..3 {
        let rounds = [
            measure("redis-rs GET + decode (anchor)", raw_get).await,
            measure("cached crate #[concurrent_cached]", cached_crate).await,
            measure("#[cacheable] over Redis", cachefw_redis).await,
            measure("moka get (anchor)", moka_get).await,
            measure("#[cacheable] in memory", cachefw_memory).await,
        ];
        for (slot, (one, many)) in best.iter_mut().zip(rounds) {
            let keep_one = slot.as_ref().is_none_or(|(kept, _)| one.p50 < kept.p50);
            let keep_many = slot
                .as_ref()
                .is_none_or(|(_, kept)| many.per_second > kept.per_second);
            *slot = Some(match slot.take() {
                None => (one, many),
                Some((old_one, old_many)) => (
                    if keep_one { one } else { old_one },
                    if keep_many { many } else { old_many },
                ),
            });
        }
    }
    let [raw, cached, ours, moka, mem] =
        <[Option<(Row, Row)>; 5]>::try_from(best).map_err(|_| "five rows")?;
    let (
        (raw_1, raw_64),
        (cached_1, cached_64),
        (ours_1, ours_64),
        (moka_1, moka_64),
        (mem_1, mem_64),
    ) = (
        raw.ok_or("measured")?,
        cached.ok_or("measured")?,
        ours.ok_or("measured")?,
        moka.ok_or("measured")?,
        mem.ok_or("measured")?,
    );

    println!(
        "hit path: {KEYS} keys of a 5-field struct, bincode, loopback redis-server, 2 worker threads"
    );
    print("Redis, one task", &[&raw_1, &cached_1, &ours_1]);
    print(
        &format!("Redis, {TASKS} tasks"),
        &[&raw_64, &cached_64, &ours_64],
    );
    print("memory, one task", &[&moka_1, &mem_1]);
    print(&format!("memory, {TASKS} tasks"), &[&moka_64, &mem_64]);

    println!("\nheap allocations per hit (one task, warm keys):");
    println!(
        "  redis-rs GET + decode (anchor)  {:.2}",
        allocations(raw_get).await
    );
    println!(
        "  #[cacheable] over Redis         {:.2}",
        allocations(cachefw_redis).await
    );
    println!(
        "  moka get (anchor)               {:.2}",
        allocations(moka_get).await
    );
    println!(
        "  #[cacheable] in memory          {:.2}",
        allocations(cachefw_memory).await
    );

    let stats = REDIS_CACHE.get().map(Cache::stats);
    println!("\n#[cacheable] over Redis: {stats:?}");
    Ok(())
}
