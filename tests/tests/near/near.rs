//! The near tier against real Redis servers and a real Redis Cluster: hits
//! with no round trip, writes by anyone (another cache, a plain connection)
//! seen by every near tier within about one round trip, nothing stale after
//! a restart, a `FLUSHALL`, a killed tracking connection, a read overtaken
//! by an invalidation, a slot migration or a failover; and a soak that
//! counts stale reads.

use cachefw_tests::fixtures as common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachefw::{Cache, Error};
use cachefw_tests::{DelayProxy, RedisCluster, RedisServer};
use common::MINUTE;

/// How long after a write acknowledged elsewhere a near read may still
/// return the value before it: the invalidation's trip, with ample slack
/// for a loaded 2-core machine. Reads that start later than this after a
/// write must see it.
const GRACE: Duration = Duration::from_millis(100);

async fn near(url: &str, namespace: &str) -> Cache {
    Cache::builder()
        .redis(url)
        .namespace(namespace)
        .near_cache(16 << 20)
        .build()
        .await
        .expect("cache builds")
}

async fn near_cluster(cluster: &RedisCluster, namespace: &str) -> Cache {
    Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(namespace)
        .near_cache(16 << 20)
        .build()
        .await
        .expect("cache builds")
}

/// Reads `key` until it answers `want`, for at most `within`; how long that
/// took, and whether the first read already did.
async fn until_seen(
    cache: &Cache,
    key: &str,
    want: Option<u64>,
    within: Duration,
) -> (Duration, bool) {
    let start = Instant::now();
    let mut reads = 0;
    loop {
        let got = cache.get::<u64>(key).await.expect("Redis is up");
        reads += 1;
        if got == want {
            return (start.elapsed(), reads == 1);
        }
        assert!(
            start.elapsed() < within,
            "{key} still reads {got:?}, not {want:?}, {:?} after the write",
            start.elapsed()
        );
        tokio::task::yield_now().await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// Reads `key` until the near tier answers it (the tracking link may still
/// be coming up).
async fn until_near(cache: &Cache, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = cache.stats().near_hits;
        let _ = cache.get::<u64>(key).await;
        if cache.stats().near_hits > before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never reached the near tier: {:?}",
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_hit_costs_no_round_trip() {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port());
    let cache = near(&proxy.url(), "hits").await;
    cache.set("k", &7u64, MINUTE).await.expect("set");
    until_near(&cache, "k").await;
    // Every reply from Redis now takes 300 ms; near hits take none.
    proxy.set_delay(Duration::from_millis(300));
    let start = Instant::now();
    for _ in 0..1_000 {
        assert_eq!(cache.get::<u64>("k").await.ok(), Some(Some(7)));
    }
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "1,000 near hits took {:?}: some went to Redis",
        start.elapsed()
    );
    let stats = cache.stats();
    assert!(stats.near_hits >= 1_000, "{stats:?}");
    assert!(
        stats.hits >= stats.near_hits,
        "near hits are hits: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_by_anyone_reach_every_near_tier() {
    let redis = RedisServer::start();
    let writer = near(&redis.url(), "anyone").await;
    let reader = near(&redis.url(), "anyone").await;
    let plain = common::redis_cache(&redis, "anyone").await;
    let full = reader.full_key("k");
    let mut delays = Vec::with_capacity(1_000);
    let mut stale_next_reads = 0;
    let mut version = 0u64;
    for round in 0..1_000u32 {
        version += 1;
        reader.set("k", &version, MINUTE).await.expect("set");
        until_near(&reader, "k").await;
        version += 1;
        // A third of the writes through another near cache, a third as raw
        // bytes through a plain connection (as redis-cli would: copied from
        // an entry written elsewhere), a third raw DELs.
        let want = match round % 3 {
            0 => {
                writer.set("k", &version, MINUTE).await.expect("set");
                Some(version)
            }
            1 => {
                plain.set("shadow", &version, MINUTE).await.expect("set");
                let bytes = redis
                    .raw_get(&plain.full_key("shadow"))
                    .expect("the shadow entry");
                redis.raw_set(&full, &bytes);
                Some(version)
            }
            _ => {
                redis.cmd::<()>("DEL", &[full.as_bytes()]);
                None
            }
        };
        let (delay, at_once) = until_seen(&reader, "k", want, Duration::from_secs(2)).await;
        if !at_once {
            stale_next_reads += 1;
        }
        delays.push(delay);
    }
    delays.sort();
    println!(
        "near invalidation delay over 1,000 writes: p50 {:?}, p99 {:?}, max {:?}; \
         next read after the write still old: {stale_next_reads}",
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays[delays.len() - 1],
    );
    assert!(
        percentile(&delays, 0.99) < GRACE,
        "p99 {:?}",
        percentile(&delays, 0.99)
    );
    // The near tier was in play: every round hit it before the write.
    assert!(reader.stats().near_hits >= 1_000, "{:?}", reader.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_leave_the_near_tier_before_they_return() {
    let redis = RedisServer::start();
    let cache = near(&redis.url(), "own").await;
    for version in 0..200u64 {
        cache.set("k", &version, MINUTE).await.expect("set");
        assert_eq!(cache.get::<u64>("k").await.ok(), Some(Some(version)));
        assert_eq!(cache.get::<u64>("k").await.ok(), Some(Some(version)));
        if version % 10 == 0 {
            assert_eq!(cache.delete("k").await.ok(), Some(true));
            assert_eq!(cache.get::<u64>("k").await.ok(), Some(None));
        }
    }
    cache.set("p:1", &1u64, MINUTE).await.expect("set");
    until_near(&cache, "p:1").await;
    cache.evict_prefix("p:").await.expect("evict");
    assert_eq!(cache.get::<u64>("p:1").await.ok(), Some(None));
    cache.set("c", &1u64, MINUTE).await.expect("set");
    until_near(&cache, "c").await;
    cache.clear().await.expect("clear");
    assert_eq!(cache.get::<u64>("c").await.ok(), Some(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_overtaken_by_an_invalidation_is_not_kept() {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port());
    // The reader's data and tracking connections both go through the proxy,
    // which holds back only replies carrying the old value: the reply to
    // its GET then arrives after the invalidation of the write that
    // followed the GET.
    let reader = near(&proxy.url(), "race").await;
    let writer = common::redis_cache(&redis, "race").await;
    writer
        .set("k", "OLD-VALUE-MARK", MINUTE)
        .await
        .expect("set");
    // Held for less than the cache's 250 ms timeout: the read answers.
    proxy.hold_replies_containing(b"OLD-VALUE-MARK", Duration::from_millis(150));
    let read = tokio::spawn({
        let reader = reader.clone();
        async move { reader.get::<String>("k").await }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.held() == 0 {
        assert!(Instant::now() < deadline, "the GET reply never came");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Redis has answered the GET; this write comes after it.
    writer.set("k", "new", MINUTE).await.expect("set");
    let old = read.await.expect("the read task");
    // The read began before the write: the old value is a correct answer.
    assert_eq!(old.ok(), Some(Some("OLD-VALUE-MARK".to_owned())));
    // But it must not have been kept: the write came after it.
    for _ in 0..100 {
        assert_eq!(
            reader.get::<String>("k").await.ok(),
            Some(Some("new".to_owned()))
        );
    }
    assert!(proxy.held() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_stale_after_a_restart_a_flush_or_a_killed_link() {
    let mut redis = RedisServer::start();
    let reader = near(&redis.url(), "faults").await;
    let full = reader.full_key("k");

    // A restart (empty), then a new value written by someone else.
    reader.set("k", &1u64, MINUTE).await.expect("set");
    until_near(&reader, "k").await;
    redis.restart();
    let other = common::redis_cache(&redis, "faults").await;
    other.set("k", &2u64, MINUTE).await.expect("set");
    tokio::time::sleep(GRACE).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Until the reader reconnects it may fail, never answer 1.
        match reader.get::<u64>("k").await {
            Ok(Some(2)) => break,
            Ok(got) => panic!("after the restart, k read {got:?}"),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("Redis never came back for the reader: {error}"),
        }
    }
    until_near(&reader, "k").await;

    // FLUSHALL.
    redis.cmd::<()>("FLUSHALL", &[]);
    tokio::time::sleep(GRACE).await;
    assert_eq!(
        reader.get::<u64>("k").await.ok(),
        Some(None),
        "after FLUSHALL"
    );

    // The tracking connection killed, then a write it cannot hear of.
    other.set("k", &3u64, MINUTE).await.expect("set");
    until_seen(&reader, "k", Some(3), Duration::from_secs(2)).await;
    until_near(&reader, "k").await;
    let list: String = redis.cmd("CLIENT", &[b"LIST"]);
    let id = list
        .lines()
        .find(|line| line.contains("name=cachefw-near"))
        .and_then(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .expect("a connection named cachefw-near")
        .to_owned();
    redis.cmd::<()>("CLIENT", &[b"KILL", b"ID", id.as_bytes()]);
    let bytes = {
        other.set("shadow", &4u64, MINUTE).await.expect("set");
        redis.raw_get(&other.full_key("shadow")).expect("shadow")
    };
    redis.raw_set(&full, &bytes);
    tokio::time::sleep(GRACE).await;
    assert_eq!(
        reader.get::<u64>("k").await.ok(),
        Some(Some(4)),
        "after CLIENT KILL"
    );
    // And the tier comes back.
    until_near(&reader, "k").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_stops_the_near_tier() {
    let redis = RedisServer::start();
    let reader = near(&redis.url(), "frozen").await;
    reader.set("k", &1u64, MINUTE).await.expect("set");
    until_near(&reader, "k").await;
    redis.freeze();
    // Within a probe (1 s) and a bit, the tier stops answering: reads go to
    // Redis and fail (or time out) rather than answer from a tier nobody
    // can invalidate.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let before = reader.stats().near_hits;
    let _ = reader.get::<u64>("k").await;
    assert_eq!(reader.stats().near_hits, before, "{:?}", reader.stats());
    redis.thaw();
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.get::<u64>("k").await.ok() != Some(Some(1)) {
        assert!(Instant::now() < deadline, "Redis never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_near(&reader, "k").await;
}

/// Per key, the versions acknowledged and when.
struct Acks {
    keys: Vec<Mutex<VecDeque<(Instant, u64)>>>,
}

impl Acks {
    fn new(keys: usize) -> Self {
        Self {
            keys: (0..keys).map(|_| Mutex::new(VecDeque::new())).collect(),
        }
    }

    fn acked(&self, key: usize, version: u64) {
        let mut acks = self.keys[key].lock().expect("lock");
        acks.push_back((Instant::now(), version));
        while acks.len() > 64 {
            acks.pop_front();
        }
    }

    /// The newest version acknowledged before `at`.
    fn floor(&self, key: usize, at: Instant) -> u64 {
        let acks = self.keys[key].lock().expect("lock");
        acks.iter()
            .filter(|(when, _)| *when <= at)
            .map(|(_, version)| *version)
            .max()
            .unwrap_or(0)
    }
}

/// 4 near caches, 16 writers and 64 readers on 1,000 keys for `run`, with
/// `fault` in the middle; every read must return a value no older than the
/// last write acknowledged `GRACE` before it started.
async fn soak(caches: Vec<Cache>, run: Duration, fault: impl FnOnce() + Send + 'static) {
    const KEYS: usize = 1_000;
    const WRITERS: usize = 16;
    let caches = Arc::new(caches);
    let acks = Arc::new(Acks::new(KEYS));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (caches, acks, stop, writes) =
            (caches.clone(), acks.clone(), stop.clone(), writes.clone());
        tasks.push(tokio::spawn(async move {
            // Each key has one writer, so its versions only grow.
            let mine: Vec<usize> = (writer..KEYS).step_by(WRITERS).collect();
            let mut versions = vec![0u64; KEYS];
            let mut turn = writer;
            while !stop.load(Ordering::Relaxed) {
                turn = turn.wrapping_mul(31).wrapping_add(7);
                let key = mine[turn % mine.len()];
                versions[key] += 1;
                let cache = &caches[turn % caches.len()];
                if cache
                    .set(&format!("k{key}"), &versions[key], MINUTE)
                    .await
                    .is_ok()
                {
                    acks.acked(key, versions[key]);
                    writes.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for reader in 0..64usize {
        let (caches, acks, stop, reads, violations) = (
            caches.clone(),
            acks.clone(),
            stop.clone(),
            reads.clone(),
            violations.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut turn = reader;
            while !stop.load(Ordering::Relaxed) {
                turn = turn.wrapping_mul(17).wrapping_add(3);
                // Mostly a hot tenth of the keys, so the near tier holds them.
                let key = if turn % 4 == 0 {
                    turn % KEYS
                } else {
                    turn % (KEYS / 10)
                };
                let cache = &caches[(turn / 7) % caches.len()];
                let started = Instant::now();
                let floor = started
                    .checked_sub(GRACE)
                    .map_or(0, |at| acks.floor(key, at));
                if let Ok(Some(version)) = cache.get::<u64>(&format!("k{key}")).await {
                    reads.fetch_add(1, Ordering::Relaxed);
                    if version < floor {
                        violations.fetch_add(1, Ordering::Relaxed);
                        eprintln!("k{key}: read {version}, {floor} was acknowledged before");
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    tokio::time::sleep(run / 2).await;
    tokio::task::spawn_blocking(fault).await.expect("the fault");
    tokio::time::sleep(run / 2).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("a soak task stopped in time")
            .expect("a soak task");
    }
    let near_hits: u64 = caches.iter().map(|cache| cache.stats().near_hits).sum();
    let hits: u64 = caches.iter().map(|cache| cache.stats().hits).sum();
    let (reads, writes, violations) = (
        reads.load(Ordering::Relaxed),
        writes.load(Ordering::Relaxed),
        violations.load(Ordering::Relaxed),
    );
    println!(
        "near soak: {reads} reads with a value ({near_hits} near hits of {hits} hits), \
         {writes} writes acknowledged, {violations} stale reads"
    );
    assert_eq!(violations, 0, "stale reads");
    assert!(reads > 10_000, "the soak read too little: {reads}");
    assert!(writes > 1_000, "the soak wrote too little: {writes}");
    assert!(
        near_hits > hits / 10,
        "the near tier was hardly used: {near_hits} of {hits}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_a_restart_reads_nothing_stale() {
    let redis = Arc::new(Mutex::new(RedisServer::start()));
    let url = redis.lock().expect("lock").url();
    let mut caches = Vec::new();
    for _ in 0..4 {
        caches.push(near(&url, "soak").await);
    }
    let server = redis.clone();
    let run = common::soak_time(Duration::from_secs(8));
    soak(caches, run, move || {
        server.lock().expect("lock").restart();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_soak_with_a_failover_reads_nothing_stale() {
    let cluster = Arc::new(RedisCluster::start_with_replicas(3, 1));
    let mut caches = Vec::new();
    for _ in 0..4 {
        caches.push(near_cluster(&cluster, "csoak").await);
    }
    let key = caches[0].full_key("k1");
    let cluster_for_fault = cluster.clone();
    let run = common::soak_time(Duration::from_secs(8));
    soak(caches, run, move || {
        let primary = cluster_for_fault.owner_of(&key);
        let replica = cluster_for_fault.wait_for_replica_of(primary);
        cluster_for_fault.failover_to(replica);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_writes_flushes_and_a_slot_migration_reach_the_near_tier() {
    let cluster = RedisCluster::start(3);
    let reader = near_cluster(&cluster, "cl").await;
    let writer = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace("cl")
        .build()
        .await
        .expect("cache builds");
    // Keys on every primary: a write through another cache reaches the
    // reader's near tier, whichever node holds the key.
    let keys: Vec<String> = (0..30).map(|n| format!("k{n}")).collect();
    let owners: std::collections::HashSet<usize> = keys
        .iter()
        .map(|key| cluster.owner_of(&reader.full_key(key)))
        .collect();
    assert_eq!(owners.len(), 3, "the keys span the three primaries");
    for key in &keys {
        writer.set(key, &1u64, MINUTE).await.expect("set");
        until_near(&reader, key).await;
    }
    let mut delays = Vec::new();
    for key in &keys {
        writer.set(key, &2u64, MINUTE).await.expect("set");
        delays.push(
            until_seen(&reader, key, Some(2), Duration::from_secs(2))
                .await
                .0,
        );
    }
    delays.sort();
    println!(
        "cluster near invalidation delay: p50 {:?}, max {:?}",
        percentile(&delays, 0.5),
        delays[delays.len() - 1]
    );

    // A slot migration: the key moves to another primary, and a write there
    // reaches the reader.
    let key = &keys[0];
    let full = reader.full_key(key);
    until_near(&reader, key).await;
    let from = cluster.owner_of(&full);
    let to = (0..3).find(|node| *node != from).expect("another primary");
    // While the slot is marked as moving, keys go through `ASK` to a node
    // whose writes the tier might not hear of: it serves nothing.
    let slot: i64 = cluster.nodes()[from].cmd("CLUSTER", &[b"KEYSLOT", full.as_bytes()]);
    let slot = slot.to_string();
    let from_id: String = cluster.nodes()[from].cmd("CLUSTER", &[b"MYID"]);
    let to_id: String = cluster.nodes()[to].cmd("CLUSTER", &[b"MYID"]);
    cluster.nodes()[to].cmd::<()>(
        "CLUSTER",
        &[
            b"SETSLOT",
            slot.as_bytes(),
            b"IMPORTING",
            from_id.as_bytes(),
        ],
    );
    cluster.nodes()[from].cmd::<()>(
        "CLUSTER",
        &[b"SETSLOT", slot.as_bytes(), b"MIGRATING", to_id.as_bytes()],
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = reader.stats().near_hits;
    for _ in 0..20 {
        let _ = reader.get::<u64>(key).await;
    }
    assert_eq!(
        reader.stats().near_hits,
        before,
        "the near tier served while a slot was migrating"
    );
    cluster.migrate_slot_of(&full, to);
    writer
        .set(key, &3u64, MINUTE)
        .await
        .expect("set after the migration");
    tokio::time::sleep(GRACE).await;
    until_seen(&reader, key, Some(3), Duration::from_secs(5)).await;
    until_near(&reader, key).await;
    writer.set(key, &4u64, MINUTE).await.expect("set");
    tokio::time::sleep(GRACE).await;
    assert_eq!(reader.get::<u64>(key).await.ok(), Some(Some(4)));

    // FLUSHALL on one primary empties what the reader holds of it.
    let victim = &keys[1];
    until_near(&reader, victim).await;
    let owner = cluster.owner_of(&reader.full_key(victim));
    cluster.nodes()[owner].cmd::<()>("FLUSHALL", &[]);
    tokio::time::sleep(GRACE).await;
    assert_eq!(
        reader.get::<u64>(victim).await.ok(),
        Some(None),
        "after FLUSHALL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_leaves_nothing_stale() {
    let cluster = RedisCluster::start_with_replicas(3, 1);
    let reader = near_cluster(&cluster, "fo").await;
    let writer = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace("fo")
        .build()
        .await
        .expect("cache builds");
    let key = "k";
    let full = reader.full_key(key);
    writer.set(key, &1u64, MINUTE).await.expect("set");
    until_near(&reader, key).await;
    let primary = cluster.owner_of(&full);
    let replica = cluster.replica_of(primary).expect("a replica");
    cluster.failover_to(replica);
    // Written on the new primary, which the reader had no link to before.
    let deadline = Instant::now() + Duration::from_secs(10);
    while writer.set(key, &2u64, MINUTE).await.is_err() {
        assert!(Instant::now() < deadline, "no write after the failover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(GRACE).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match reader.get::<u64>(key).await {
            Ok(Some(2)) => break,
            Ok(got) => panic!("after the failover, {key} read {got:?}"),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("the reader never came back: {error}"),
        }
    }
    until_near(&reader, key).await;
    writer.set(key, &3u64, MINUTE).await.expect("set");
    tokio::time::sleep(GRACE).await;
    assert_eq!(reader.get::<u64>(key).await.ok(), Some(Some(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_tier_needs_redis() {
    let error = Cache::builder()
        .in_memory()
        .near_cache(1 << 20)
        .build()
        .await
        .expect_err("refused");
    assert!(
        matches!(
            error,
            Error::Config {
                setting: "near_cache",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("near_cache"), "{error}");
    let error = Cache::builder()
        .in_memory()
        .near_ttl(MINUTE)
        .build()
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("near_ttl"), "{error}");
}
