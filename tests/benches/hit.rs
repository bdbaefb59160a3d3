//! The cost of a cached read, against its anchors, in one run: the
//! `#[cacheable]` hit over Redis against a raw redis-rs `GET` + bincode
//! decode (and the `cached` crate's Redis macro, the peer users would pick),
//! the `#[cacheable]` hit in memory against `moka` itself, and the miss path
//! against a plain `GET` + `SET`. One task in sequence, then 64 concurrent
//! tasks; 1,000 keys of a five-field struct; a private loopback
//! redis-server. Rows are interleaved in 40 rounds of a few hundred calls
//! each, so that the machine's drift hits every row alike.
//!
//! The size-bounded read cachefw makes (`GETRANGE key 0 <max>`) is set
//! against a plain `GET` and against a server-side size check in Lua
//! (`EVALSHA`: `STRLEN`, then `GET`), and the same rows run over TLS
//! (`rediss://`, a second private redis-server with `--tls-port`), for the
//! cost of TLS on the hit path.
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
use cachefw_tests::{RedisServer, TestPki};
use serde::{Deserialize, Serialize};

/// Counts heap allocations, to report how many one hit makes.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not freed yet, for memory per entry.
static LIVE: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(new_size as u64, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEYS: u64 = 1_000;
/// Rounds of every row in turn.
const SEGMENTS: usize = 40;
/// Calls per row per round, in one task over Redis.
const SEGMENT_CALLS: usize = 512;
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

static REDIS_CACHE: OnceLock<Cache> = OnceLock::new();
static MEMORY_CACHE: OnceLock<Cache> = OnceLock::new();
static NEAR_CACHE: OnceLock<Cache> = OnceLock::new();
static REDIS_URL: OnceLock<String> = OnceLock::new();
static RAW: OnceLock<redis::aio::MultiplexedConnection> = OnceLock::new();
static RAW_TLS: OnceLock<redis::aio::MultiplexedConnection> = OnceLock::new();
static TLS_CACHE: OnceLock<Cache> = OnceLock::new();
/// A `GET` that returns nothing for a value over `ARGV[1]` bytes, checked
/// on the server: the alternative to `GETRANGE` that sends nothing of a
/// value too large, at the price of a script per read.
static SIZED_GET: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[1]) then return false end
return redis.call('GET', KEYS[1])
",
    )
});
const MAX_VALUE_SIZE: u64 = cachefw::DEFAULT_MAX_VALUE_SIZE;
static MOKA: LazyLock<moka::sync::Cache<String, Profile>> =
    LazyLock::new(|| moka::sync::Cache::new(10_000));

#[cacheable(key = "p:<id>", ttl = "1h", cache = REDIS_CACHE.get().cloned())]
async fn cachefw_redis(id: u64) -> Result<Profile, SourceError> {
    Ok(profile(id))
}

#[cacheable(key = "p:<id>", ttl = "1h", cache = TLS_CACHE.get().cloned())]
async fn cachefw_tls(id: u64) -> Result<Profile, SourceError> {
    Ok(profile(id))
}

#[cacheable(key = "p:<id>", ttl = "1h", cache = MEMORY_CACHE.get().cloned())]
async fn cachefw_memory(id: u64) -> Result<Profile, SourceError> {
    Ok(profile(id))
}

#[cacheable(key = "p:<id>", ttl = "1h", cache = NEAR_CACHE.get().cloned())]
async fn cachefw_near(id: u64) -> Result<Profile, SourceError> {
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

/// How an anchor reads its bytes.
#[derive(Clone, Copy)]
enum Read {
    Get,
    GetRange,
    SizedScript,
}

async fn raw_read(
    conn: &OnceLock<redis::aio::MultiplexedConnection>,
    read: Read,
    id: u64,
) -> Result<Profile, SourceError> {
    let mut conn = conn.get().cloned().ok_or(SourceError)?;
    let key = format!("raw:p:{id}");
    let bytes: Vec<u8> = match read {
        Read::Get => redis::cmd("GET").arg(key).query_async(&mut conn).await,
        Read::GetRange => {
            redis::cmd("GETRANGE")
                .arg(key)
                .arg(0)
                .arg(MAX_VALUE_SIZE)
                .query_async(&mut conn)
                .await
        }
        Read::SizedScript => {
            SIZED_GET
                .key(key)
                .arg(MAX_VALUE_SIZE)
                .invoke_async(&mut conn)
                .await
        }
    }
    .map_err(|_| SourceError)?;
    bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
        .map(|(profile, _)| profile)
        .map_err(|_| SourceError)
}

async fn raw_get(id: u64) -> Result<Profile, SourceError> {
    raw_read(&RAW, Read::Get, id).await
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

/// The rows of a table, by what they call.
#[derive(Clone, Copy)]
enum Op {
    RawGet,
    RawGetRange,
    RawSizedScript,
    CachedCrate,
    CachefwRedis,
    RawGetTls,
    CachefwTls,
    Moka,
    CachefwMemory,
    CachefwNear,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::RawGet => "redis-rs GET + decode (anchor)",
            Self::RawGetRange => "redis-rs GETRANGE 0 16MiB + decode",
            Self::RawSizedScript => "redis-rs EVALSHA sized GET+decode",
            Self::RawGetTls => "TLS: redis-rs GET + decode",
            Self::CachefwTls => "TLS: #[cacheable] over Redis",
            Self::CachedCrate => "cached crate #[concurrent_cached]",
            Self::CachefwRedis => "#[cacheable] over Redis",
            Self::Moka => "moka get (anchor)",
            Self::CachefwMemory => "#[cacheable] in memory",
            Self::CachefwNear => "#[cacheable] near tier (Redis)",
        }
    }

    async fn call(self, id: u64) -> Result<Profile, SourceError> {
        match self {
            Self::RawGet => raw_get(id).await,
            Self::RawGetRange => raw_read(&RAW, Read::GetRange, id).await,
            Self::RawSizedScript => raw_read(&RAW, Read::SizedScript, id).await,
            Self::RawGetTls => raw_read(&RAW_TLS, Read::Get, id).await,
            Self::CachefwTls => cachefw_tls(id).await,
            Self::CachedCrate => cached_crate(id).await,
            Self::CachefwRedis => cachefw_redis(id).await,
            Self::Moka => moka_get(id).await,
            Self::CachefwMemory => cachefw_memory(id).await,
            Self::CachefwNear => cachefw_near(id).await,
        }
    }
}

/// Per row, every call's latency and the time its segments took.
struct Samples {
    latencies: Vec<Duration>,
    took: Duration,
}

/// The rows of `ops`, measured in `SEGMENTS` rounds: in each round every
/// row runs `per_segment` calls in turn, in one task or spread over `TASKS`
/// tasks. Interleaving this finely makes drift in the machine (other load,
/// frequency, the server's own housekeeping) hit every row alike.
async fn measure(ops: &[Op], tasks: usize, per_segment: usize) -> Vec<Row> {
    for op in ops {
        for id in 0..KEYS {
            op.call(id).await.expect("warm-up");
        }
    }
    let mut samples: Vec<Samples> = ops
        .iter()
        .map(|_| Samples {
            latencies: Vec::new(),
            took: Duration::ZERO,
        })
        .collect();
    for segment in 0..SEGMENTS {
        for (op, samples) in ops.iter().zip(&mut samples) {
            let started = Instant::now();
            let workers: Vec<_> = (0..tasks)
                .map(|t| {
                    let op = *op;
                    tokio::spawn(async move {
                        let mut latencies = Vec::with_capacity(per_segment);
                        for i in 0..per_segment {
                            let id = ((segment * tasks + t) * per_segment + i) as u64 * 7 % KEYS;
                            let at = Instant::now();
                            std::hint::black_box(op.call(id).await.expect("hit"));
                            latencies.push(at.elapsed());
                        }
                        latencies
                    })
                })
                .collect();
            for worker in workers {
                samples.latencies.extend(worker.await.expect("task"));
            }
            samples.took += started.elapsed();
        }
    }
    ops.iter()
        .zip(samples)
        .map(|(op, samples)| row(op.name(), samples))
        .collect()
}

fn row(name: &'static str, samples: Samples) -> Row {
    let Samples {
        mut latencies,
        took,
    } = samples;
    latencies.sort_unstable();
    let ops = latencies.len();
    Row {
        name,
        p50: latencies[ops / 2],
        p99: latencies[ops * 99 / 100],
        mean: latencies.iter().sum::<Duration>() / ops as u32,
        per_second: ops as f64 / took.as_secs_f64(),
    }
}

fn print(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!(
        "| {:<34} | {:>9} | {:>9} | {:>9} | {:>11} | {:>13} | {:>13} |",
        "row", "p50", "p99", "mean", "ops/s", "p50 / anchor", "ops/s / anchor"
    );
    println!(
        "|{:-<36}|{:->11}|{:->11}|{:->11}|{:->13}|{:->15}|{:->15}|",
        "", "", "", "", "", "", ""
    );
    let anchor = &rows[0];
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

/// The TLS rows against their plain-TCP twins.
fn tls_ratio(rows: &[Row]) {
    let find = |name: &str| rows.iter().find(|row| row.name == name);
    let pairs = [
        (Op::RawGetTls.name(), Op::RawGet.name()),
        (Op::CachefwTls.name(), Op::CachefwRedis.name()),
    ];
    for (tls, plain) in pairs {
        if let (Some(tls), Some(plain)) = (find(tls), find(plain)) {
            println!(
                "  {} / plain: p50 {:.2}x, mean {:.2}x, ops/s {:.2}x",
                tls.name,
                tls.p50.as_secs_f64() / plain.p50.as_secs_f64(),
                tls.mean.as_secs_f64() / plain.mean.as_secs_f64(),
                tls.per_second / plain.per_second,
            );
        }
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

const HELD: u64 = 20_000;

/// Heap bytes a `moka::sync::Cache<String, Profile>` holds per entry.
fn moka_bytes_per_entry() -> f64 {
    let before = LIVE.load(Ordering::Relaxed);
    let moka = moka::sync::Cache::new(HELD * 2);
    for id in 0..HELD {
        moka.insert(format!("p:{id}"), profile(id));
    }
    moka.run_pending_tasks();
    let held = LIVE.load(Ordering::Relaxed) - before;
    std::hint::black_box(&moka);
    held as f64 / HELD as f64
}

/// Heap bytes the near tier holds per entry: the growth while `HELD`
/// entries are read into it (their Redis copies written before).
async fn near_bytes_per_entry(url: &str) -> Result<f64, Box<dyn std::error::Error>> {
    let cache = Cache::builder()
        .redis(url)
        .namespace("bench-near-memory")
        .near_cache(1 << 30)
        .build()
        .await?;
    for id in 0..HELD {
        cache
            .set(&format!("p:{id}"), &profile(id), Duration::from_secs(3600))
            .await?;
    }
    let before = LIVE.load(Ordering::Relaxed);
    // The first read brings each entry in; the second (a near hit, through
    // the macro's path) keeps its decoded copy beside the bytes.
    for id in 0..HELD {
        std::hint::black_box(cache.get::<Profile>(&format!("p:{id}")).await?);
    }
    let near = cache.stats().near_hits;
    for id in 0..HELD {
        let key = format!("p:{id}");
        std::hint::black_box(
            cache
                .get_or_load(&key, Duration::from_secs(3600), || async {
                    Ok::<_, SourceError>(profile(id))
                })
                .await
                .map_err(|_| "a hit")?,
        );
    }
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    assert!(
        cache.stats().near_hits - near >= HELD * 9 / 10,
        "the entries were held"
    );
    Ok(held as f64 / HELD as f64)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = RedisServer::start();
    let url = redis.url();
    let _ = REDIS_URL.set(url.clone());
    let pki = TestPki::generate();
    let tls = RedisServer::start_tls(&pki, false);
    let client = redis::Client::open(url.as_str())?;
    let mut raw = client.get_multiplexed_async_connection().await?;
    let tls_client = redis::Client::build_with_tls(
        tls.url(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pki.ca_pem.clone().into_bytes()),
        },
    )?;
    let mut raw_tls = tls_client.get_multiplexed_async_connection().await?;
    for id in 0..KEYS {
        let bytes = bincode::serde::encode_to_vec(profile(id), bincode::config::standard())?;
        for conn in [&mut raw, &mut raw_tls] {
            redis::cmd("SET")
                .arg(format!("raw:p:{id}"))
                .arg(&bytes)
                .query_async::<()>(conn)
                .await?;
        }
        MOKA.insert(format!("p:{id}"), profile(id));
    }
    let _ = RAW.set(raw);
    let _ = RAW_TLS.set(raw_tls);
    let _ = TLS_CACHE.set(
        Cache::builder()
            .redis(tls.url())
            .tls_root_cert(&pki.ca_pem)
            .namespace("bench")
            .build()
            .await?,
    );
    let _ = REDIS_CACHE.set(
        Cache::builder()
            .redis(url.as_str())
            .namespace("bench")
            .build()
            .await?,
    );
    let _ = MEMORY_CACHE.set(Cache::builder().namespace("bench").build().await?);
    let _ = NEAR_CACHE.set(
        Cache::builder()
            .redis(url.as_str())
            .namespace("bench-near")
            .near_cache(64 << 20)
            .build()
            .await?,
    );

    // `HIT_PROFILE=1 valgrind --tool=callgrind <bench binary>`: 20,000 calls
    // of each row in one task, for instruction counts per call.
    if std::env::var("HIT_PROFILE").is_ok() {
        for op in [
            Op::RawGet,
            Op::RawGetRange,
            Op::CachefwRedis,
            Op::RawGetTls,
            Op::CachefwTls,
            Op::Moka,
            Op::CachefwMemory,
            Op::CachefwNear,
        ] {
            for i in 0..20_000u64 {
                std::hint::black_box(op.call(i % KEYS).await.expect("hit"));
            }
        }
        return Ok(());
    }
    let redis_rows = [
        Op::RawGet,
        Op::RawGetRange,
        Op::RawSizedScript,
        Op::CachedCrate,
        Op::CachefwRedis,
        Op::RawGetTls,
        Op::CachefwTls,
    ];
    let memory_rows = [Op::Moka, Op::CachefwMemory, Op::CachefwNear];
    let redis_1 = measure(&redis_rows, 1, SEGMENT_CALLS).await;
    let redis_64 = measure(&redis_rows, TASKS, SEGMENT_CALLS / TASKS * 8).await;
    let memory_1 = measure(&memory_rows, 1, SEGMENT_CALLS * 20).await;
    let memory_64 = measure(&memory_rows, TASKS, SEGMENT_CALLS).await;

    println!(
        "hit path: {KEYS} keys of a 5-field struct (bincode for the anchor, MessagePack with \
         field names for cachefw), loopback redis-server, 2 worker threads, {SEGMENTS} \
         interleaved rounds"
    );
    print("Redis, one task", &redis_1);
    tls_ratio(&redis_1);
    print(&format!("Redis, {TASKS} tasks"), &redis_64);
    tls_ratio(&redis_64);
    print("memory, one task", &memory_1);
    print(&format!("memory, {TASKS} tasks"), &memory_64);
    // The near tier against a Redis hit, from the tables above (interleaved
    // runs of their own).
    for (title, redis, memory) in [
        ("one task", &redis_1, &memory_1),
        ("64 tasks", &redis_64, &memory_64),
    ] {
        let over_redis = redis
            .iter()
            .find(|row| row.name == Op::CachefwRedis.name())
            .expect("the Redis row");
        let near = &memory[2];
        println!(
            "near tier vs #[cacheable] over Redis, {title}: p50 {:.0}x faster, {:.0}x the ops/s",
            over_redis.p50.as_secs_f64() / near.p50.as_secs_f64(),
            near.per_second / over_redis.per_second,
        );
    }

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
        "  #[cacheable] over Redis TLS     {:.2}",
        allocations(cachefw_tls).await
    );
    println!(
        "  moka get (anchor)               {:.2}",
        allocations(moka_get).await
    );
    println!(
        "  #[cacheable] in memory          {:.2}",
        allocations(cachefw_memory).await
    );

    println!(
        "  #[cacheable] near tier          {:.2}",
        allocations(cachefw_near).await
    );

    println!(
        "\nheap bytes per entry (20,000 entries held; the near tier holds bytes and a decoded copy):"
    );
    println!(
        "  moka<String, Profile> (anchor)  {:.0}",
        moka_bytes_per_entry()
    );
    println!(
        "  near tier                       {:.0}",
        near_bytes_per_entry(&url).await?
    );

    let stats = REDIS_CACHE.get().map(Cache::stats);
    println!("\n#[cacheable] over Redis: {stats:?}");
    let stats = NEAR_CACHE.get().map(Cache::stats);
    println!("#[cacheable] near tier: {stats:?}");
    Ok(())
}
