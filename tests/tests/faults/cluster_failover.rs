//! Promotions on a Redis Cluster of 3 primaries and 3 replicas (1 s node
//! timeout), under callers that keep reading: six manual failovers
//! (`CLUSTER FAILOVER` on the replica, as rolling upgrades do) seconds
//! apart, and a primary killed with SIGKILL, brought back as a replica and
//! failed over to again. Each switch: the moved slots hit and fill again
//! within 5 s, no read of a key whose slot did not move goes to the loader,
//! and no caller sees an error.
//!
//! `scripts/failover-runs` runs the six switches 20 times in a row and
//! prints each run's worst switch.

use cachefw_tests::fixtures as common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_tests::RedisCluster;
use common::SourceDown;

const KEYS: u64 = 200;
const CALLERS: usize = 64;
const TTL: Duration = Duration::from_secs(600);
/// The bound of the contract: after a promotion, the moved slots hit and
/// fill again within this.
const SWITCH_WITHIN: Duration = Duration::from_secs(5);
/// Time between two switches.
const APART: Duration = Duration::from_millis(2500);
const NAMESPACE: &str = "sw";
/// The bound of one Redis operation. A failover is followed by `MOVED`,
/// whatever this is; it only has to keep a loaded two-core CI machine's
/// stalls from counting as failures of the unmoved primaries.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Six servers and 64 callers per test: one test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cache_on(cluster: &RedisCluster) -> Cache {
    // RUST_LOG=cachefw=debug shows the layout reads and failures.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(NAMESPACE)
        .timeout(TIMEOUT)
        .build()
        .await
        .expect("builds")
}

/// What the callers saw: every loader call (key id, when), and errors.
struct Log {
    loads: Mutex<Vec<(u64, Instant)>>,
    errors: AtomicU64,
    reads: AtomicU64,
}

impl Log {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            loads: Mutex::new(Vec::new()),
            errors: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        })
    }

    async fn read(&self, cache: &Cache, id: u64) {
        let got = cache
            .get_or_load(&format!("item:{id}"), TTL, || async {
                self.loads
                    .lock()
                    .expect("not poisoned")
                    .push((id, Instant::now()));
                Ok::<_, SourceDown>(id)
            })
            .await;
        self.reads.fetch_add(1, Ordering::Relaxed);
        if got != Ok(id) {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Loader calls since `from`, split into keys of `moved` and others,
    /// and the last one of `moved`.
    fn since(&self, from: Instant, moved: &HashSet<u64>) -> (usize, usize, Option<Instant>) {
        let loads = self.loads.lock().expect("not poisoned");
        let mut of_moved = 0;
        let mut of_others = 0;
        let mut last = None;
        for (id, at) in loads.iter().filter(|(_, at)| *at >= from) {
            if moved.contains(id) {
                of_moved += 1;
                last = last.max(Some(*at));
            } else {
                of_others += 1;
            }
        }
        (of_moved, of_others, last)
    }
}

/// Callers reading the keys at random until `stop`.
fn callers(
    cache: &Cache,
    log: &Arc<Log>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CALLERS)
        .map(|_| {
            let (cache, log, stop) = (cache.clone(), log.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    log.read(&cache, fastrand::u64(0..KEYS)).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect()
}

/// The ids of the keys the primary at `node` serves.
fn ids_on(cluster: &RedisCluster, node: usize) -> HashSet<u64> {
    (0..KEYS)
        .filter(|id| cluster.owner_of(&format!("{NAMESPACE}:v1:item:{id}")) == node)
        .collect()
}

/// A key that no caller reads, in a slot of the primary at `node`.
fn probe_on(cluster: &RedisCluster, node: usize) -> String {
    (0..)
        .map(|n| format!("probe:{n}"))
        .find(|key| cluster.owner_of(&format!("{NAMESPACE}:v1:{key}")) == node)
        .expect("some key hashes there")
}

/// Evicts `probe`, loads it, and reads it again until that second read is
/// a hit (the slot fills and hits); how long from `from` that took.
async fn fills_and_hits(cache: &Cache, probe: &str, from: Instant) -> Duration {
    loop {
        let loads = AtomicU64::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, SourceDown>(7u64)
        };
        if cache.delete(probe).await.is_ok() {
            cache.get_or_load(probe, TTL, load).await.expect("loads");
            cache.get_or_load(probe, TTL, load).await.expect("loads");
            if loads.load(Ordering::SeqCst) == 1 {
                return from.elapsed();
            }
        }
        assert!(
            from.elapsed() < SWITCH_WITHIN * 2,
            "the moved slots did not fill and hit again: {:?}",
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every key is on the replicas too (a manual failover waits
/// for the replica anyway; this makes the first switch like the others).
async fn warm(cache: &Cache, log: &Log) {
    for id in 0..KEYS {
        log.read(cache, id).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// One switch of the primary at `primary` to `replica`: how long until the
/// moved slots hit and fill, and the loader calls for moved and unmoved
/// keys meanwhile.
struct Switch {
    took: Duration,
    moved_loads: usize,
    unmoved_loads: usize,
}

async fn switch(
    cluster: &RedisCluster,
    cache: &Cache,
    log: &Log,
    promote: impl FnOnce(&RedisCluster),
    primary: usize,
) -> Switch {
    let moved = ids_on(cluster, primary);
    let probe = probe_on(cluster, primary);
    let started = Instant::now();
    tokio::task::block_in_place(|| promote(cluster));
    let filled = fills_and_hits(cache, &probe, started).await;
    // Reads of the moved keys keep hitting from here on: give the callers
    // time to meet any that does not, then count.
    tokio::time::sleep(APART.saturating_sub(started.elapsed())).await;
    let (moved_loads, unmoved_loads, last) = log.since(started, &moved);
    let took = filled.max(last.map_or(Duration::ZERO, |at| at - started));
    Switch {
        took,
        moved_loads,
        unmoved_loads,
    }
}

fn check(round: usize, switch: &Switch, log: &Log, cache: &Cache) {
    println!("{:?}", cache.stats());
    println!(
        "switch {round}: moved slots hit and fill {:?} after it began; loader calls: {} for \
         moved keys, {} for unmoved keys",
        switch.took, switch.moved_loads, switch.unmoved_loads
    );
    assert!(
        switch.took < SWITCH_WITHIN,
        "switch {round} took {:?}",
        switch.took
    );
    assert_eq!(
        switch.unmoved_loads, 0,
        "switch {round}: reads of keys whose slots did not move went to the loader"
    );
    assert_eq!(log.errors.load(Ordering::Relaxed), 0, "callers saw errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_manual_failovers_in_a_row_each_recover_within_five_seconds() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start_with_replicas(3, 1);
    let cache = cache_on(&cluster).await;
    let log = Log::new();
    warm(&cache, &log).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = callers(&cache, &log, &stop);
    let mut worst = Duration::ZERO;
    let mut unmoved = 0;
    for round in 0..6 {
        // Each shard in turn, so every shard switches over and back.
        let primary = cluster.primaries()[round % 3];
        let replica = cluster.wait_for_replica_of(primary);
        let switch = switch(&cluster, &cache, &log, |c| c.failover_to(replica), primary).await;
        check(round, &switch, &log, &cache);
        worst = worst.max(switch.took);
        unmoved += switch.unmoved_loads;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a caller panicked");
    }
    println!(
        "FAILOVER-RUN worst switch {worst:?}; loader calls for unmoved slots {unmoved}; \
         caller errors {}; reads {}; {:?}",
        log.errors.load(Ordering::Relaxed),
        log.reads.load(Ordering::Relaxed),
        cache.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_comes_back_as_a_replica_and_is_failed_over_to_again() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // While a failed primary is not replaced yet, every node answers
    // CLUSTERDOWN unless it may serve reads meanwhile: what a cluster
    // that must keep its healthy shards readable sets.
    let mut cluster =
        RedisCluster::start_with_replicas_and(3, 1, &["--cluster-allow-reads-when-down", "yes"]);
    let victim = cluster.primaries()[0];
    let replica = cluster.replica_of(victim).expect("a replica");
    let cache = cache_on(&cluster).await;
    let log = Log::new();
    warm(&cache, &log).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = callers(&cache, &log, &stop);

    // SIGKILL: the replica takes over once the cluster marks the primary
    // failed (1 s node timeout), so that switch has a bound of its own;
    // the other primaries' keys never go to the loader meanwhile.
    let moved = ids_on(&cluster, victim);
    let probe = probe_on(&cluster, victim);
    let started = Instant::now();
    tokio::task::block_in_place(|| {
        cluster.nodes_mut()[victim].stop();
        cluster.wait_for_promotion(victim);
    });
    let promoted = started.elapsed();
    let recovered = fills_and_hits(&cache, &probe, started).await;
    tokio::time::sleep(APART).await;
    let (_, unmoved_loads, _) = log.since(started, &moved);
    println!(
        "killed primary: promoted after {promoted:?}, hits and fills after {recovered:?}; \
         {unmoved_loads} loader calls for unmoved keys"
    );
    assert!(
        recovered - promoted < SWITCH_WITHIN,
        "hits and fills came back {:?} after the promotion",
        recovered - promoted
    );
    assert_eq!(
        unmoved_loads, 0,
        "keys of healthy primaries went to the loader"
    );

    // The old primary comes back, as a replica of its replacement, and a
    // manual failover makes it the primary again.
    tokio::task::block_in_place(|| {
        cluster.nodes_mut()[victim].restart();
        cluster.wait_until("the old primary to rejoin as a replica", |c| {
            c.replica_of(replica) == Some(victim)
        });
        cluster.wait_for_sync(victim);
    });
    let back = switch(&cluster, &cache, &log, |c| c.failover_to(victim), replica).await;
    check(1, &back, &log, &cache);
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a caller panicked");
    }
    assert_eq!(cluster.owner_of(&format!("{NAMESPACE}:v1:{probe}")), victim);
}
