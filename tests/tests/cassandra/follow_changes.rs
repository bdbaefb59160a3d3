//! `Repository::follow_changes` (Debezium Server's Redis sink formats) and
//! `Repository::warm` (the hot rows of the old version, after a bump),
//! against kassandra and a private redis-server.
//!
//! Debezium cannot run here: entries are written as its Redis sink writes
//! them (extended: fields `key` and `value`; compact: the key document as
//! the field name), and rows are changed "behind the cache's back" by a
//! second repository whose cache is another process's memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_cassandra::{Entity, Repository};
use cachefw_tests::RedisServer;
use cachefw_tests::cassandra::{repository, with_kassandra};
use cachefw_tests::eventually_async;
use cachefw_tests::fixtures::memory_cache;
use scylla::client::session::Session;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "members", ttl = "10m")]
pub struct Member {
    #[partition_key]
    pub id: Uuid,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "shop",
    table = "visits",
    ttl = "10m",
    cache_partitions = true
)]
pub struct Visit {
    #[partition_key]
    pub user_id: Uuid,
    #[partition_key]
    pub day: i32,
    #[clustering_key]
    pub at: i64,
    pub page: String,
}

const GROUP: &str = "cachefw";
/// The issue asks for 500 ms; four builds share two cores here, so the
/// wait is generous and the figure printed.
const WITHIN: Duration = Duration::from_secs(5);

async fn redis_cache(redis: &RedisServer, version: u32) -> Cache {
    Cache::builder()
        .redis(redis.url())
        .namespace("cdc")
        .version(version)
        .build()
        .await
        .expect("cache builds")
}

/// Appends an entry as the sink writes it.
fn announce(redis: &RedisServer, stream: &str, fields: &[(&str, &str)]) {
    let mut add = redis::cmd("XADD");
    add.arg(stream).arg("*");
    for (name, value) in fields {
        add.arg(*name).arg(*value);
    }
    let _: String = add.query(&mut redis.connection()).expect("xadd");
}

/// A writer that bypasses the followed cache.
async fn other_writer<T: Entity>(session: &Arc<Session>) -> Repository<T> {
    Repository::new(session.clone(), memory_cache("elsewhere").await)
        .await
        .expect("repository")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_announced_in_each_format_are_read_fresh() {
    let redis = RedisServer::start();
    with_kassandra(|_, session| async move {
        let cache = redis_cache(&redis, 1).await;
        let members: Repository<Member> = repository(&session, &cache).await;
        let writer: Repository<Member> = other_writer(&session).await;
        let stream = "cdc.shop.members";
        let follower = members
            .follow_changes(stream, GROUP)
            .await
            .expect("follows");
        let change = r#"{"before":null,"after":{},"op":"u"}"#;
        let formats: [(&str, Box<Entry>); 4] = [
            (
                "extended, plain key",
                Box::new(|doc| vec![("key".into(), doc.into()), ("value".into(), change.into())]),
            ),
            (
                "extended, schema and payload",
                Box::new(|doc| {
                    vec![
                        ("key".into(), with_schema(doc)),
                        ("value".into(), change.into()),
                    ]
                }),
            ),
            (
                "compact, plain key",
                Box::new(|doc| vec![(doc.into(), change.into())]),
            ),
            (
                "compact, schema and payload",
                Box::new(|doc| vec![(with_schema(doc), change.into())]),
            ),
        ];
        for (format, entry) in &formats {
            let id = Uuid::new_v4();
            let old = Member {
                id,
                name: "old".into(),
            };
            members.save(&old).await.expect("save");
            assert_eq!(
                members.find(&MemberKey { id }).await.expect("find"),
                Some(old)
            );
            let new = Member {
                id,
                name: "new".into(),
            };
            writer.save(&new).await.expect("save elsewhere");
            assert_eq!(
                members
                    .find(&MemberKey { id })
                    .await
                    .expect("find")
                    .map(|m| m.name),
                Some("old".into()),
                "the cache still holds the old row"
            );
            let started = Instant::now();
            let fields = entry(&format!(r#"{{"id":"{id}"}}"#));
            let fields: Vec<(&str, &str)> = fields
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            announce(&redis, stream, &fields);
            eventually_async(WITHIN, format, async || {
                members.find(&MemberKey { id }).await.expect("find") == Some(new.clone())
            })
            .await;
            println!(
                "{format}: read fresh {:?} after the announcement",
                started.elapsed()
            );
        }
        follower.abort();
    })
    .await;
}

/// The fields of an entry that announces the key document given.
type Entry = dyn Fn(&str) -> Vec<(String, String)>;

/// The key document under `payload`, beside the schema of a JSON key.
fn with_schema(doc: &str) -> String {
    format!(
        r#"{{"schema":{{"type":"struct","fields":[{{"type":"string","optional":false,"field":"id"}}],"optional":false,"name":"cdc.shop.key"}},"payload":{doc}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_key_evicts_its_row_and_a_partition_key_every_row() {
    let redis = RedisServer::start();
    with_kassandra(|_, session| async move {
        let cache = redis_cache(&redis, 1).await;
        let visits: Repository<Visit> = repository(&session, &cache).await;
        let stream = "cdc.shop.visits";
        let follower = visits.follow_changes(stream, GROUP).await.expect("follows");
        let user_id = Uuid::new_v4();
        for at in 0..3 {
            let visit = Visit {
                user_id,
                day: 20,
                at,
                page: "/".into(),
            };
            visits.save(&visit).await.expect("save");
            visits
                .find(&VisitKey {
                    user_id,
                    day: 20,
                    at,
                })
                .await
                .expect("find");
        }
        let partition = VisitPartition { user_id, day: 20 };
        assert_eq!(
            visits
                .find_partition(&partition)
                .await
                .expect("partition")
                .len(),
            3
        );
        let row = |at| {
            cache.full_key(&Visit::cache_key(&VisitKey {
                user_id,
                day: 20,
                at,
            }))
        };
        let partition_entry = cache.full_key(&Visit::partition_cache_key(&partition));
        assert!(redis.raw_get(&row(1)).is_some());

        // One row: its entry and the cached partition go, the others stay.
        let doc = format!(r#"{{"user_id":"{user_id}","day":20,"at":1}}"#);
        announce(&redis, stream, &[("key", &doc), ("value", "{}")]);
        eventually_async(WITHIN, "the row's entry evicted", async || {
            redis.raw_get(&row(1)).is_none()
        })
        .await;
        assert!(
            redis.raw_get(&partition_entry).is_none(),
            "its partition too"
        );
        assert!(redis.raw_get(&row(0)).is_some() && redis.raw_get(&row(2)).is_some());

        // The partition columns alone: every row of the partition.
        visits.find_partition(&partition).await.expect("partition");
        let doc = format!(r#"{{"user_id":"{user_id}","day":20}}"#);
        announce(&redis, stream, &[(&doc, "{}")]);
        eventually_async(WITHIN, "every row of the partition evicted", async || {
            redis.raw_get(&row(0)).is_none()
                && redis.raw_get(&row(2)).is_none()
                && redis.raw_get(&partition_entry).is_none()
        })
        .await;

        // Unreadable entries are counted and skipped; the stream goes on.
        let errors = cache.stats().errors;
        announce(&redis, stream, &[("key", "not json"), ("value", "{}")]);
        announce(&redis, stream, &[("key", r#"{"day":20}"#), ("value", "{}")]);
        announce(
            &redis,
            stream,
            &[("key", r#"{"user_id":"x","day":20,"at":1}"#)],
        );
        visits
            .find(&VisitKey {
                user_id,
                day: 20,
                at: 2,
            })
            .await
            .expect("find");
        let doc = format!(r#"{{"user_id":"{user_id}","day":20,"at":2}}"#);
        announce(&redis, stream, &[("key", &doc), ("value", "{}")]);
        eventually_async(WITHIN, "the entry after the bad ones", async || {
            redis.raw_get(&row(2)).is_none()
        })
        .await;
        assert!(cache.stats().errors >= errors + 3, "{:?}", cache.stats());
        follower.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_throughput_for_10_000_entries() {
    let redis = RedisServer::start();
    with_kassandra(|_, session| async move {
        let cache = redis_cache(&redis, 1).await;
        let members: Repository<Member> = repository(&session, &cache).await;
        let stream = "cdc.shop.members";
        const ENTRIES: u64 = 10_000;
        // Published first, in pipelines, so the follower is measured alone.
        let mut conn = redis.connection();
        for chunk in 0..ENTRIES / 1_000 {
            let mut pipe = redis::pipe();
            for i in 0..1_000 {
                let id = Uuid::from_u128(u128::from(chunk * 1_000 + i));
                pipe.cmd("XADD")
                    .arg(stream)
                    .arg("*")
                    .arg("key")
                    .arg(format!(r#"{{"id":"{id}"}}"#))
                    .arg("value")
                    .arg("{}")
                    .ignore();
            }
            let () = pipe.query(&mut conn).expect("xadd");
        }
        let writes = cache.stats().writes;
        let started = Instant::now();
        let follower = members
            .follow_changes(stream, GROUP)
            .await
            .expect("follows");
        eventually_async(
            Duration::from_secs(120),
            "every entry applied",
            async || cache.stats().writes - writes >= ENTRIES,
        )
        .await;
        let took = started.elapsed();
        println!(
            "follow_changes: {ENTRIES} entries in {took:?}, {:.0} entries/s",
            ENTRIES as f64 / took.as_secs_f64()
        );
        follower.abort();
    })
    .await;
}

/// The true top 20 of 200 members: read 300 to 680 times each, the others
/// 10 times.
fn reads_of(rank: usize) -> usize {
    if rank < 20 {
        300 + 20 * (20 - rank)
    } else {
        10
    }
}

async fn skewed_traffic(members: &Repository<Member>, ids: &[Uuid]) {
    let mut left: Vec<usize> = (0..ids.len()).map(reads_of).collect();
    while left.iter().any(|n| *n > 0) {
        for (rank, n) in left.iter_mut().enumerate() {
            if *n > 0 {
                *n -= 1;
                let found = members
                    .find(&MemberKey { id: ids[rank] })
                    .await
                    .expect("find");
                assert!(found.is_some());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_warm_the_hottest_rows_cost_no_cassandra_read() {
    let redis = RedisServer::start();
    with_kassandra(|_, session| async move {
        let old_cache = redis_cache(&redis, 1).await;
        let old: Repository<Member> = repository(&session, &old_cache).await;
        let ids: Vec<Uuid> = (0..200).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            old.save(&Member {
                id: *id,
                name: format!("m{id}"),
            })
            .await
            .expect("save");
        }
        skewed_traffic(&old, &ids).await;
        // The old process's last reads, sent now rather than at its next
        // flush (within 500 ms).
        old_cache.hot_keys(0).await.expect("flush");

        // The deploy: a new version, warmed, then traffic.
        let new_cache = redis_cache(&redis, 2).await;
        let new: Repository<Member> = repository(&session, &new_cache).await;
        let mut loaded = 0;
        eventually_async(WITHIN, "the old traffic visible and warmed", async || {
            loaded += new.warm(20).await.expect("warm");
            loaded >= 20
        })
        .await;
        println!("warm(20) read {loaded} rows");
        let loads = new_cache.stats().loads;
        let mut served = 0;
        for id in &ids[..20] {
            let before = new_cache.stats().loads;
            new.find(&MemberKey { id: *id }).await.expect("find");
            served += usize::from(new_cache.stats().loads == before);
        }
        println!("after warm(20): {served} of the true top 20 served with no Cassandra read");
        assert!(served >= 16, "{served} of 20 warmed; loads {loads}");
        // Warming again loads nothing: they are cached.
        assert_eq!(new.warm(20).await.expect("warm"), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_warming_at_once_load_each_row_once() {
    let redis = RedisServer::start();
    with_kassandra(|_, session| async move {
        let old_cache = redis_cache(&redis, 1).await;
        let old: Repository<Member> = repository(&session, &old_cache).await;
        let ids: Vec<Uuid> = (0..200).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            old.save(&Member {
                id: *id,
                name: format!("m{id}"),
            })
            .await
            .expect("save");
        }
        skewed_traffic(&old, &ids).await;
        // The old process's last reads, sent now rather than at its next
        // flush (within 500 ms).
        old_cache.hot_keys(0).await.expect("flush");
        // Both see the old traffic before they start.
        let probe = redis_cache(&redis, 2).await;
        eventually_async(WITHIN, "the old traffic visible", async || {
            probe.hot_keys(20).await.expect("hot keys").len() == 20
        })
        .await;

        let first: Repository<Member> = repository(&session, &redis_cache(&redis, 2).await).await;
        let second: Repository<Member> = repository(&session, &redis_cache(&redis, 2).await).await;
        let (a, b) = tokio::join!(first.warm(20), second.warm(20));
        let (a, b) = (a.expect("warm"), b.expect("warm"));
        println!("two processes warming 20 rows at once loaded {a} and {b}");
        assert_eq!(a + b, 20, "each row loaded once: {a} + {b}");
    })
    .await;
}

/// The figure of BENCHMARKS.md ("Change streams, warming (issue 29)"):
/// Cassandra reads in the first 10 s after a version bump, for a skewed
/// workload, with and without `warm`. Scaled to this machine: 20,000 rows
/// (not 100,000; kassandra holds them in memory, in a debug build), Zipf
/// (s = 1) over their ranks, so that the 1,000 hottest take about 70 % of
/// the reads; 8 concurrent readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo test -p cachefw-tests --test cassandra warm_figure -- --ignored --nocapture"]
async fn warm_figure_cassandra_reads_after_a_version_bump() {
    const ROWS: usize = 20_000;
    const HOTTEST: usize = 1_000;
    const READERS: usize = 8;
    let redis = RedisServer::start();
    with_kassandra(|_, session| async move {
        let old_cache = redis_cache(&redis, 1).await;
        let old: Arc<Repository<Member>> = Arc::new(repository(&session, &old_cache).await);
        let ids: Vec<Uuid> = (0..ROWS).map(|i| Uuid::from_u128(i as u128 + 1)).collect();
        let rows: Vec<Member> = ids
            .iter()
            .map(|id| Member { id: *id, name: format!("m{id}") })
            .collect();
        for chunk in rows.chunks(1_000) {
            old.save_all(chunk).await.expect("save");
        }
        // Zipf, s = 1: rank r is read in proportion to 1 / (r + 1).
        let mut cumulative = Vec::with_capacity(ROWS);
        let mut total = 0.0;
        for rank in 0..ROWS {
            total += 1.0 / (rank as f64 + 1.0);
            cumulative.push(total);
        }
        let hot_share = cumulative[HOTTEST - 1] / total;
        let cumulative = Arc::new(cumulative);
        let ids = Arc::new(ids);
        let traffic = |repo: Arc<Repository<Member>>, until: Instant| {
            let (cumulative, ids) = (cumulative.clone(), ids.clone());
            async move {
                let mut rng = fastrand::Rng::new();
                let mut reads = 0u64;
                while Instant::now() < until {
                    let at = rng.f64() * total;
                    let rank = cumulative.partition_point(|c| *c < at).min(ROWS - 1);
                    repo.find(&MemberKey { id: ids[rank] }).await.expect("find");
                    reads += 1;
                }
                reads
            }
        };
        let run = async |repo: &Arc<Repository<Member>>, seconds: u64| {
            let until = Instant::now() + Duration::from_secs(seconds);
            let readers: Vec<_> = (0..READERS)
                .map(|_| tokio::spawn(traffic(repo.clone(), until)))
                .collect();
            let mut reads = 0;
            for reader in readers {
                reads += reader.await.expect("reader");
            }
            reads
        };
        // The old version's traffic, long enough to rank the hot set.
        let warmup = run(&old, 20).await;
        tokio::time::sleep(Duration::from_secs(1)).await;

        for (version, warm) in [(2, false), (3, true)] {
            let cache = redis_cache(&redis, version).await;
            let repo: Arc<Repository<Member>> = Arc::new(repository(&session, &cache).await);
            let started = Instant::now();
            let warmed = if warm { repo.warm(HOTTEST).await.expect("warm") } else { 0 };
            let warm_took = started.elapsed();
            let before = cache.stats().loads;
            // Cassandra reads per second of the ten.
            let watched = cache.clone();
            let per_second = tokio::spawn(async move {
                let mut seen = before;
                let mut series = Vec::new();
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let now = watched.stats().loads;
                    series.push(now - seen);
                    seen = now;
                }
                series
            });
            let reads = run(&repo, 10).await;
            let loads = cache.stats().loads - before;
            let series = per_second.await.expect("watcher");
            println!(
                "version {version}, warm {warm}: warm read {warmed} rows in {warm_took:?}; then \
                 10 s of traffic: {reads} reads, {loads} from Cassandra ({:.1} %), per second \
                 {series:?}",
                100.0 * loads as f64 / reads as f64
            );
        }
        println!(
            "{ROWS} rows, the {HOTTEST} hottest take {:.0} % of reads; old version warm-up {warmup} reads",
            100.0 * hot_share
        );
    })
    .await;
}
