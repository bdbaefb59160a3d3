//! A Redis Cluster of 3 primaries and 3 replicas (1 s node timeout) under
//! the faults of production: a primary killed, manual failovers back and
//! forth (what rolling upgrades do), an eviction while a primary is frozen
//! and then replaced, and a prefix eviction with a primary unreachable.
//! Each time: no caller fails, the healthy primaries keep serving their
//! keys, hits come back within seconds of the promotion, and no evicted
//! value is served.

use cachefw_tests::fixtures as common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachefw::{Cache, Error};
use cachefw_tests::RedisCluster;
use common::{MINUTE, SourceDown};

const KEYS: u64 = 90;
/// How soon after a promotion the cache must hit again.
const RECOVERY: Duration = Duration::from_secs(15);

async fn cache_on(cluster: &RedisCluster) -> Cache {
    Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace("cf")
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .expect("builds")
}

/// A versioned source per key.
struct Source(Vec<AtomicU64>);

impl Source {
    fn new() -> Self {
        Self((0..KEYS).map(|_| AtomicU64::new(0)).collect())
    }

    fn bump(&self, id: u64) {
        self.0[id as usize].fetch_add(1, Ordering::SeqCst);
    }

    fn version(&self, id: u64) -> u64 {
        self.0[id as usize].load(Ordering::SeqCst)
    }

    /// Reads `item:<id>` through the cache and checks it is not older than
    /// the source was when the read began.
    async fn read(&self, cache: &Cache, id: u64) -> u64 {
        let floor = self.version(id);
        let got = cache
            .get_or_load(&format!("item:{id}"), MINUTE, || async {
                Ok::<_, SourceDown>(self.version(id))
            })
            .await
            .expect("the source never fails");
        assert!(
            got >= floor,
            "item:{id}: served {got}, the source had {floor}"
        );
        got
    }

    /// Reads every key once; how many reads loaded, among `ids`.
    async fn pass(&self, cache: &Cache, ids: impl Iterator<Item = u64>) -> u64 {
        let mut loaded = 0;
        for id in ids {
            let loads = cache.stats().loads;
            self.read(cache, id).await;
            loaded += cache.stats().loads - loads;
        }
        loaded
    }
}

/// The ids whose keys live on the node at `node`.
fn ids_on(cluster: &RedisCluster, node: usize) -> HashSet<u64> {
    cluster.nodes()[node]
        .keys()
        .iter()
        .filter_map(|key| key.strip_prefix("cf:v1:item:")?.parse().ok())
        .collect()
}

/// Passes over every key until one is all hits; how long that took.
async fn until_all_hits(source: &Source, cache: &Cache) -> Duration {
    let started = Instant::now();
    loop {
        if source.pass(cache, 0..KEYS).await == 0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < RECOVERY,
            "hits did not resume: {:?}",
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_costs_only_its_own_keys() {
    let mut cluster = RedisCluster::start_with_replicas(3, 1);
    let cache = cache_on(&cluster).await;
    let source = Source::new();
    source.pass(&cache, 0..KEYS).await;
    until_all_hits(&source, &cache).await;
    let victim = cluster.primaries()[0];
    let lost = ids_on(&cluster, victim);
    assert!(!lost.is_empty() && lost.len() < KEYS as usize);
    cluster.nodes_mut()[victim].stop();

    // Until the replica takes over, the other primaries keep hitting.
    let healthy = || (0..KEYS).filter(|id| !lost.contains(id));
    let mut healthy_loads = 0;
    let mut healthy_reads = 0;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_millis(800) {
        healthy_loads += source.pass(&cache, healthy()).await;
        healthy_reads += healthy().count() as u64;
        source.pass(&cache, lost.iter().copied()).await;
    }
    println!(
        "primary down: {healthy_loads} loads in {healthy_reads} reads of healthy primaries' keys; {:?}",
        cache.stats()
    );
    assert!(
        healthy_loads * 10 <= healthy_reads,
        "{healthy_loads} of {healthy_reads} reads of healthy keys went to the loader"
    );
    cluster.wait_for_promotion(victim);
    let took = until_all_hits(&source, &cache).await;
    println!("hits everywhere {took:?} after the promotion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failovers_back_and_forth() {
    let cluster = RedisCluster::start_with_replicas(3, 1);
    let cache = cache_on(&cluster).await;
    let source = Source::new();
    source.pass(&cache, 0..KEYS).await;
    let mut primary = cluster.primaries()[0];
    // 3 rounds in CI; `CACHEFW_ROUNDS` runs more (`scripts/soak`).
    for round in 0..common::rounds(3) as u64 {
        let replica = cluster.wait_for_replica_of(primary);
        cluster.failover_to(replica);
        let took = until_all_hits(&source, &cache).await;
        println!("failover {round}: hits everywhere {took:?} after it");
        // Writes go through too: an update is seen at once.
        let id = round;
        source.bump(id);
        cache.delete(&format!("item:{id}")).await.ok();
        assert_eq!(source.read(&cache, id).await, source.version(id));
        primary = replica;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_while_a_primary_is_frozen_then_replaced_is_not_lost() {
    let cluster = RedisCluster::start_with_replicas(3, 1);
    let cache = cache_on(&cluster).await;
    let source = Source::new();
    source.pass(&cache, 0..KEYS).await;
    let victim = cluster.primaries()[0];
    let on_victim: Vec<u64> = ids_on(&cluster, victim).into_iter().collect();
    // The replica holds every entry, old values included.
    cluster.wait_for_replicas(victim);
    cluster.nodes()[victim].freeze();
    for id in &on_victim {
        source.bump(*id);
        assert!(
            cache.delete(&format!("item:{id}")).await.is_err(),
            "the primary is frozen"
        );
    }
    // Its replica takes over, holding the old entries; no read may see them.
    let promoted = Instant::now();
    cluster.wait_for_promotion(victim);
    println!("replica promoted after {:?}", promoted.elapsed());
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        source.pass(&cache, on_victim.iter().copied()).await;
    }
    let deadline = Instant::now() + RECOVERY;
    while cache.stats().pending_evictions > 0 {
        assert!(Instant::now() < deadline, "{:?}", cache.stats());
        source.pass(&cache, on_victim.iter().copied()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.nodes()[victim].thaw();
    until_all_hits(&source, &cache).await;
    for id in &on_victim {
        assert_eq!(source.read(&cache, *id).await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_eviction_with_a_primary_unreachable_is_an_error() {
    let mut cluster = RedisCluster::start_with_replicas(3, 1);
    let cache = cache_on(&cluster).await;
    let source = Source::new();
    source.pass(&cache, 0..KEYS).await;
    let victim = cluster.primaries()[0];
    let address = format!("127.0.0.1:{}", cluster.nodes()[victim].port());
    cluster.nodes_mut()[victim].stop();
    for id in 0..KEYS {
        source.bump(id);
    }
    match cache.evict_prefix("item:").await {
        Err(Error::PartialEviction { unreachable, .. }) => {
            assert_eq!(
                unreachable,
                std::slice::from_ref(&address),
                "names the primary"
            );
        }
        other => panic!("a partial eviction is an error, got {other:?}"),
    }
    // Nothing evicted is served while the eviction waits for the primary's
    // replacement, nor after.
    source.pass(&cache, 0..KEYS).await;
    cluster.wait_for_promotion(victim);
    let deadline = Instant::now() + RECOVERY;
    while cache.stats().pending_evictions > 0 {
        assert!(Instant::now() < deadline, "{:?}", cache.stats());
        source.pass(&cache, 0..KEYS).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_all_hits(&source, &cache).await;
}
