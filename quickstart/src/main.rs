//! cachefw quick start: a `#[cacheable]` repository function shows a miss,
//! a hit, an eviction by `#[cache_evict]`, and 100 concurrent callers that
//! cause one load.
//!
//! ```text
//! cargo run --bin quickstart                                   # in-memory cache
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --bin quickstart  # Redis
//! ```

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cachefw::{Cache, cache_evict, cacheable};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

#[derive(Debug)]
struct DbError;

/// The source of truth: slow, and counting how often it is asked.
#[derive(Default)]
struct Database {
    queries: AtomicU32,
}

impl Database {
    const LATENCY: Duration = Duration::from_millis(150);

    async fn fetch_user(&self, id: u64) -> Result<User, DbError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Self::LATENCY).await;
        Ok(User {
            id,
            name: format!("User {id}"),
            email: format!("user{id}@example.com"),
        })
    }

    async fn update_email(&self, id: u64, email: &str) -> Result<(), DbError> {
        let _ = (id, email); // an UPDATE would go here
        Ok(())
    }
}

/// The repository functions: the cache around the database is declared,
/// not written.
#[cacheable(key = "user:<id>", ttl = "10m")]
async fn get_user(db: &Database, id: u64) -> Result<User, DbError> {
    db.fetch_user(id).await
}

#[cache_evict(key = "user:<id>")]
async fn update_email(db: &Database, id: u64, email: &str) -> Result<(), DbError> {
    db.update_email(id, email).await
}

/// Calls `get_user` and describes what happened: where the user came from
/// and how long it took.
async fn timed(db: &Database, id: u64) -> Result<(User, String), DbError> {
    let queries = db.queries.load(Ordering::SeqCst);
    let started = Instant::now();
    let user = get_user(db, id).await?;
    let took = started.elapsed();
    let what = if db.queries.load(Ordering::SeqCst) == queries {
        format!("hit:  from the cache in {took:.2?}")
    } else {
        format!("miss: from the source in {took:.2?}")
    };
    Ok((user, what))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // RUST_LOG as one level (`debug`, `info`, …); warnings by default.
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|level| level.parse().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::WARN);
    tracing_subscriber::fmt().with_max_level(level).init();

    let builder = Cache::builder().namespace("quickstart");
    let cache = match std::env::var("REDIS_URL") {
        Ok(url) => {
            // The URL may hold a password: never print it.
            println!("backend: Redis (from REDIS_URL)");
            builder.redis(url).build().await?
        }
        Err(_) => {
            println!("backend: in-memory (set REDIS_URL=redis://host:port to use Redis)");
            builder.in_memory().build().await?
        }
    };
    cachefw::install(cache.clone());
    // A clean slate for this demo's keys, in case an earlier run left some in Redis.
    if let Err(error) = cache.evict_prefix("user:").await {
        println!("(could not clear old demo entries: {error})");
    }
    let db = Arc::new(Database::default());
    println!("source latency: {:?}\n", Database::LATENCY);

    let (user, what) = timed(&db, 42).await.map_err(|_| "source failed")?;
    println!("1. first call   {what}  ({user:?})");
    let (_, what) = timed(&db, 42).await.map_err(|_| "source failed")?;
    println!("2. second call  {what}");

    update_email(&db, 42, "ada@example.com")
        .await
        .map_err(|_| "source failed")?;
    println!("3. update_email(42) evicted user:42");
    let (_, what) = timed(&db, 42).await.map_err(|_| "source failed")?;
    println!("   next call    {what}");

    let before = db.queries.load(Ordering::SeqCst);
    let started = Instant::now();
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { get_user(&db, 7).await.is_ok() })
        })
        .collect();
    let mut served = 0;
    for caller in callers {
        if caller.await? {
            served += 1;
        }
    }
    let loads = db.queries.load(Ordering::SeqCst) - before;
    println!(
        "4. {served} concurrent callers of cold user:7 served in {:.2?} by {loads} load(s) of the source",
        started.elapsed()
    );

    let stats = cache.stats();
    println!(
        "\nstats: {} hits, {} misses, {} loads, {} coalesced, {} errors",
        stats.hits, stats.misses, stats.loads, stats.coalesced, stats.errors
    );
    Ok(())
}
