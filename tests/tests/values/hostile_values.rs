//! A value too large for the cache, written into Redis by someone else, is
//! a miss that is never read in full: a 100 MiB garbage value costs the
//! reading process at most about `max_value_size`, and the next load
//! replaces it.
//!
//! The heap is watched by this binary's allocator (`main.rs`) while a read
//! runs: the largest allocation and the peak of live bytes.

use cachefw_tests::fixtures as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cachefw::Cache;
use cachefw_tests::RedisServer;
use common::{MINUTE, SourceDown, User, user};

use crate::{SERIAL, watched};

const MIB: usize = 1024 * 1024;

/// Appends `mib` MiB of pseudo-random bytes at `key`, a MiB at a time, so
/// that the test process never holds the whole value.
fn plant_garbage(redis: &RedisServer, key: &str, mib: usize) {
    let mut conn = redis.connection();
    let mut chunk = vec![0u8; MIB];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..mib {
        for byte in &mut chunk {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        redis::cmd("APPEND")
            .arg(key)
            .arg(&chunk)
            .query::<u64>(&mut conn)
            .expect("APPEND");
    }
    let len: u64 = redis.cmd("STRLEN", &[key.as_bytes()]);
    assert_eq!(len, (mib * MIB) as u64);
}

fn max_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

async fn cache(redis: &RedisServer, max_value_size: Option<u64>) -> Cache {
    let mut builder = Cache::builder().redis(redis.url()).namespace("hv");
    if let Some(max) = max_value_size {
        builder = builder.max_value_size(max);
    }
    let cache = builder.build().await.expect("builds");
    // The connection, the scripts and the logger set up before watching.
    assert_eq!(cache.get::<User>("warm").await.expect("get"), None);
    common::load_user(&cache, 0).await;
    cache
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_garbage_value_is_a_miss_with_memory_bounded() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    plant_garbage(&redis, "hv:v1:user:1", 100);
    let rss_before = max_rss_mib();

    // The default limit, 16 MiB.
    let cache = cache(&redis, None).await;
    let errors = cache.stats().errors;
    let (read, largest, peak) = watched(cache.get::<User>("user:1")).await;
    println!(
        "a 100 MiB value, max_value_size 16 MiB: largest allocation {:.1} MiB, peak live \
         heap {:.1} MiB; max RSS {} MiB before, {} MiB after",
        largest as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        rss_before,
        max_rss_mib()
    );
    assert_eq!(read.expect("a miss, not an error"), None);
    assert_eq!(cache.stats().errors, errors + 1, "{:?}", cache.stats());
    assert!(largest <= 40 * MIB, "largest allocation {largest}");
    assert!(peak <= 50 * MIB, "peak live heap {peak}");

    // A load reads it as a miss once more, then replaces it: the lease
    // script sizes it with STRLEN and never sends it back.
    let (loaded, largest, peak) = watched(common::load_user(&cache, 1)).await;
    assert_eq!(loaded, user(1));
    assert!(largest <= 40 * MIB, "largest allocation {largest}");
    assert!(peak <= 50 * MIB, "peak live heap {peak}");
    assert_eq!(
        cache.get::<User>("user:1").await.expect("a hit"),
        Some(user(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tight_limit_bounds_the_read_tightly() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    plant_garbage(&redis, "hv:v1:user:1", 100);
    let cache = cache(&redis, Some(MIB as u64)).await;
    let (read, largest, peak) = watched(cache.get::<User>("user:1")).await;
    println!(
        "a 100 MiB value, max_value_size 1 MiB: largest allocation {:.2} MiB, peak live heap \
         {:.2} MiB",
        largest as f64 / MIB as f64,
        peak as f64 / MIB as f64
    );
    assert_eq!(read.expect("a miss"), None);
    assert!(largest <= 3 * MIB, "largest allocation {largest}");
    assert!(peak <= 4 * MIB, "peak live heap {peak}");
    // get_or_load: a miss, loaded, stored over it.
    let (loaded, _, peak) = watched(common::load_user(&cache, 1)).await;
    assert_eq!(loaded, user(1));
    assert!(peak <= 4 * MIB, "peak live heap {peak}");
    assert!(
        redis
            .raw_get("hv:v1:user:1")
            .is_some_and(|v| v.len() < 1024)
    );
}

/// A valid entry followed by garbage past the limit is never decoded from
/// its valid start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_entry_padded_past_the_limit_is_a_miss() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let cache = cache(&redis, Some(64 * 1024)).await;
    cache.set("user:2", &user(2), MINUTE).await.expect("set");
    assert_eq!(
        cache.get::<User>("user:2").await.expect("hit"),
        Some(user(2))
    );
    redis::cmd("APPEND")
        .arg("hv:v1:user:2")
        .arg(vec![0u8; 64 * 1024])
        .query::<u64>(&mut redis.connection())
        .expect("APPEND");
    let errors = cache.stats().errors;
    assert_eq!(cache.get::<User>("user:2").await.expect("a miss"), None);
    assert_eq!(cache.stats().errors, errors + 1);
}

/// A lease holder loads slowly; meanwhile a value too large lands in the
/// key. The waiter polling it takes the lease over (never reading it), and
/// every caller gets the loader's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_too_large_landing_on_a_lease_is_replaced() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let holder = cache(&redis, Some(64 * 1024)).await;
    let waiter = cache(&redis, Some(64 * 1024)).await;
    let loads = Arc::new(AtomicU32::new(0));
    let slow = {
        let (holder, loads) = (holder.clone(), loads.clone());
        tokio::spawn(async move {
            holder
                .get_or_load("user:3", MINUTE, || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok::<_, SourceDown>(user(3))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = {
        let (waiter, loads) = (waiter.clone(), loads.clone());
        tokio::spawn(async move {
            waiter
                .get_or_load("user:3", MINUTE, || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, SourceDown>(user(3))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.raw_set("hv:v1:user:3", &vec![7u8; 256 * 1024]);
    assert_eq!(slow.await.expect("task"), Ok(user(3)));
    assert_eq!(waiting.await.expect("task"), Ok(user(3)));
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    assert_eq!(
        holder.get::<User>("user:3").await.expect("a hit"),
        Some(user(3))
    );
}
