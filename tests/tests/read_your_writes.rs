//! Read your writes across processes (issue 24): two `Cache`s built
//! separately on one `redis-server` are two processes. A read that starts
//! after a write was acknowledged (the row written, then its key evicted)
//! never returns the row from before it: not by joining a load that began
//! before the write, not from a near tier whose link went silent, and not
//! from Redis after an outage (beyond the documented windows).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_tests::RedisServer;

const MINUTE: Duration = Duration::from_secs(60);

async fn cache(redis: &RedisServer, namespace: &str, near: bool) -> Cache {
    let builder = Cache::builder().redis(redis.url()).namespace(namespace);
    let builder = if near {
        builder.near_cache(8 << 20)
    } else {
        builder
    };
    builder.build().await.expect("cache builds")
}

/// The late reader: process B starts a load of a key (its loader reads the
/// row, then takes 300 ms); process A writes the row and evicts the key;
/// 20 ms after that acknowledgement, new requests on B ask for the key and
/// would join B's load. None of them may get the row from before the
/// write; the entry afterwards is the new row.
async fn late_readers_get_the_new_row(near: bool) {
    const ROUNDS: u64 = 5;
    const LATE: usize = 8;
    let redis = RedisServer::start();
    let namespace = if near { "late-near" } else { "late" };
    let a = cache(&redis, namespace, near).await;
    let b = cache(&redis, namespace, near).await;
    let row = Arc::new(AtomicU64::new(1));
    let mut early_old = 0;
    for round in 0..ROUNDS {
        let key = format!("row:{round}");
        let before = row.load(Ordering::SeqCst);
        let (read_tx, read_rx) = tokio::sync::oneshot::channel();
        let early = {
            let (b, row, key) = (b.clone(), row.clone(), key.clone());
            tokio::spawn(async move {
                b.get_or_load(&key, MINUTE, move || async move {
                    let seen = row.load(Ordering::SeqCst);
                    let _ = read_tx.send(());
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, std::io::Error>(seen)
                })
                .await
                .expect("the loader does not fail")
            })
        };
        tokio::time::timeout(Duration::from_secs(5), read_rx)
            .await
            .expect("the early load started")
            .expect("the early loader read the row");
        // A writes the row, then evicts the key: acknowledged.
        row.store(before + 1, Ordering::SeqCst);
        a.delete(&key).await.expect("Redis is up");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let late: Vec<_> = (0..LATE)
            .map(|_| {
                let (b, row, key) = (b.clone(), row.clone(), key.clone());
                tokio::spawn(async move {
                    b.get_or_load(&key, MINUTE, move || async move {
                        Ok::<_, std::io::Error>(row.load(Ordering::SeqCst))
                    })
                    .await
                    .expect("the loader does not fail")
                })
            })
            .collect();
        for late in late {
            let got = tokio::time::timeout(Duration::from_secs(10), late)
                .await
                .expect("a late reader finished")
                .expect("a late reader");
            assert_eq!(
                got,
                before + 1,
                "round {round}: a late reader got the row from before the write"
            );
        }
        let early = tokio::time::timeout(Duration::from_secs(10), early)
            .await
            .expect("the early reader finished")
            .expect("the early reader");
        if early == before {
            early_old += 1;
        }
        // The entry afterwards is the new row, in both processes.
        for cache in [&a, &b] {
            assert_eq!(
                cache.get::<u64>(&key).await.expect("Redis is up"),
                Some(before + 1),
                "round {round}: the entry afterwards"
            );
        }
    }
    let stats = b.stats();
    println!(
        "late readers (near tier: {near}): 0 of {} late readers got the old row; the early \
         caller did in {early_old} of {ROUNDS} rounds; B reloaded {} times, called its \
         loaders {} times",
        ROUNDS as usize * LATE,
        stats.reloads,
        stats.loads
    );
    assert!(
        stats.reloads >= ROUNDS,
        "each round's late readers loaded again: {stats:?}"
    );
    // One reload per round, single-flight: the early load and one more.
    assert!(stats.loads <= ROUNDS * 2, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_readers_never_get_the_row_from_before_a_write() {
    late_readers_get_the_new_row(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_readers_never_get_the_row_from_before_a_write_near() {
    late_readers_get_the_new_row(true).await;
}

/// A fill refused because the lease lapsed (the load outlasted the lease
/// time) is not a write: the followers take the value, nobody reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_does_not_reload() {
    let redis = RedisServer::start();
    let b = Cache::builder()
        .redis(redis.url())
        .namespace("lapsed")
        .lease_time(Duration::from_millis(100))
        .build()
        .await
        .expect("cache builds");
    let loads = Arc::new(AtomicU64::new(0));
    let read = |b: Cache, loads: Arc<AtomicU64>| async move {
        b.get_or_load("k", MINUTE, move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, std::io::Error>(7u64)
        })
        .await
        .expect("the loader does not fail")
    };
    let early = tokio::spawn(read(b.clone(), loads.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late: Vec<_> = (0..4)
        .map(|_| tokio::spawn(read(b.clone(), loads.clone())))
        .collect();
    assert_eq!(early.await.expect("early"), 7);
    for late in late {
        assert_eq!(late.await.expect("late"), 7);
    }
    let stats = b.stats();
    assert_eq!(stats.reloads, 0, "{stats:?}");
    assert_eq!(loads.load(Ordering::SeqCst), 1, "{stats:?}");
}

/// A reload happens at most once: a second voided load hands its value to
/// the callers that already loaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_loads_again_at_most_once() {
    let redis = RedisServer::start();
    let a = cache(&redis, "twice", false).await;
    let b = cache(&redis, "twice", false).await;
    let row = Arc::new(AtomicU64::new(1));
    let loads = Arc::new(AtomicU64::new(0));
    let read = |b: Cache, row: Arc<AtomicU64>, loads: Arc<AtomicU64>| async move {
        b.get_or_load("k", MINUTE, move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            let seen = row.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, std::io::Error>(seen)
        })
        .await
        .expect("the loader does not fail")
    };
    let early = tokio::spawn(read(b.clone(), row.clone(), loads.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = tokio::spawn(read(b.clone(), row.clone(), loads.clone()));
    let other = tokio::spawn(read(b.clone(), row.clone(), loads.clone()));
    // Evict during the first load, and again during the reload.
    let evict = async |version: u64| {
        row.store(version, Ordering::SeqCst);
        a.delete("k").await.expect("Redis is up");
    };
    evict(2).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while loads.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the late caller never reloaded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    evict(3).await;
    assert_eq!(
        early.await.expect("early"),
        1,
        "the early caller's own load"
    );
    // One of the two late callers led the reload and takes its value; the
    // other followed it, and takes it too although it was voided again.
    for late in [late, other] {
        assert_eq!(
            late.await.expect("late"),
            2,
            "the reload's value, voided too: no second reload"
        );
    }
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    assert_eq!(b.stats().reloads, 1, "{:?}", b.stats());
}
