//! Field-level entities (issue 27): a 20-column row of about 4 KiB, cached
//! as a Redis hash (`layout = "hash"`) against one encoded value (the
//! blob layout), over kassandra (in process) and a private redis-server
//! on loopback.
//!
//! ```text
//! cargo bench -p cachefw-tests --bench fields
//! ```
//!
//! For each layout, in turn over `ROUNDS` rounds (so that the noise of a
//! shared machine hits both alike): `PATCHES` patches of one field of a
//! cached row, each followed by a `find` (the hash: a hit; the blob: a
//! miss, a Cassandra read and a re-encode), then `HITS` whole-row finds of
//! a cached row. Bytes sent to Redis are the server's
//! `total_net_input_bytes`, less what the `INFO` calls that read it cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_cassandra::{Entity, Repository};
use cachefw_tests::RedisServer;
use kassandra_tester::KassandraTester;
use kassandra_tester::kassandra::KassandraSession;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ROUNDS: usize = 5;
const PATCHES: usize = 200;
const HITS: usize = 1_000;
/// 20 columns of this many bytes: about 4 KiB.
const COLUMN: usize = 200;

macro_rules! wide {
    ($name:ident, $patch:ident, $table:literal, $layout:literal) => {
        #[derive(Clone, Debug, Serialize, Deserialize, Entity)]
        #[entity(keyspace = "bench", table = $table, ttl = "10m", layout = $layout)]
        pub struct $name {
            #[partition_key]
            pub id: Uuid,
            pub c01: String,
            pub c02: String,
            pub c03: String,
            pub c04: String,
            pub c05: String,
            pub c06: String,
            pub c07: String,
            pub c08: String,
            pub c09: String,
            pub c10: String,
            pub c11: String,
            pub c12: String,
            pub c13: String,
            pub c14: String,
            pub c15: String,
            pub c16: String,
            pub c17: String,
            pub c18: String,
            pub c19: String,
            pub visits: i64,
        }

        impl Wide for $name {
            fn new() -> Self {
                let text = |n: u8| char::from(b'a' + n).to_string().repeat(COLUMN);
                Self {
                    id: Uuid::new_v4(),
                    c01: text(1),
                    c02: text(2),
                    c03: text(3),
                    c04: text(4),
                    c05: text(5),
                    c06: text(6),
                    c07: text(7),
                    c08: text(8),
                    c09: text(9),
                    c10: text(10),
                    c11: text(11),
                    c12: text(12),
                    c13: text(13),
                    c14: text(14),
                    c15: text(15),
                    c16: text(16),
                    c17: text(17),
                    c18: text(18),
                    c19: text(19),
                    visits: 0,
                }
            }

            fn visits(visits: i64) -> $patch {
                $patch {
                    visits: Some(visits),
                    ..Default::default()
                }
            }
        }
    };
}

trait Wide: Entity {
    fn new() -> Self;
    fn visits(visits: i64) -> Self::Patch;
}

wide!(WideBlob, WideBlobPatch, "wide_blob", "blob");
wide!(WideHash, WideHashPatch, "wide_hash", "hash");

/// The samples of one layout.
#[derive(Default)]
struct Samples {
    patch: Vec<Duration>,
    next_read: Vec<Duration>,
    hit: Vec<Duration>,
    patch_bytes: Vec<u64>,
    read_bytes: Vec<u64>,
}

fn input_bytes(redis: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(redis).expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix("total_net_input_bytes:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_net_input_bytes")
}

/// What one `INFO stats` adds to `total_net_input_bytes`.
fn info_cost(redis: &mut redis::Connection) -> u64 {
    let first = input_bytes(redis);
    let second = input_bytes(redis);
    second - first
}

async fn round<T: Wide>(
    repo: &Repository<T>,
    redis: &mut redis::Connection,
    samples: &mut Samples,
) {
    let row = T::new();
    let key = row.key();
    repo.save(&row).await.expect("save");
    repo.find(&key).await.expect("find").expect("a row");
    let info = info_cost(redis);
    for n in 0..PATCHES {
        let before = input_bytes(redis);
        let started = Instant::now();
        repo.patch(&key, &T::visits(i64::try_from(n).unwrap_or(0)))
            .await
            .expect("patch");
        samples.patch.push(started.elapsed());
        let patched = input_bytes(redis);
        let started = Instant::now();
        repo.find(&key).await.expect("find").expect("a row");
        samples.next_read.push(started.elapsed());
        let read = input_bytes(redis);
        samples.patch_bytes.push(patched - before - info);
        samples.read_bytes.push(read - patched - info);
    }
    for _ in 0..HITS {
        let started = Instant::now();
        repo.find(&key).await.expect("find").expect("a row");
        samples.hit.push(started.elapsed());
    }
}

fn p50<T: Ord + Copy + Default>(values: &[T]) -> T {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn run(redis: &RedisServer, session: Arc<Session>, cache: Cache) {
    cachefw_cassandra::create_keyspace(&session, "bench", 1)
        .await
        .expect("keyspace");
    let blob: Repository<WideBlob> = Repository::new(session.clone(), cache.clone())
        .await
        .expect("repository");
    blob.create_table().await.expect("table");
    let hash: Repository<WideHash> = Repository::new(session, cache).await.expect("repository");
    hash.create_table().await.expect("table");
    let mut connection = redis::Client::open(redis.url())
        .and_then(|client| client.get_connection())
        .expect("connection");
    let (mut blobs, mut hashes) = (Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        round(&blob, &mut connection, &mut blobs).await;
        round(&hash, &mut connection, &mut hashes).await;
    }
    let size = rmp_serde::to_vec_named(&WideBlob::new()).map_or(0, |b| b.len());
    println!("row: 20 columns, {size} bytes of MessagePack; {ROUNDS} rounds, each layout in turn");
    println!(
        "{:<6} {:>12} {:>12} {:>14} {:>14} {:>12}",
        "layout", "patch p50", "bytes/patch", "next read p50", "bytes/next rd", "hit p50"
    );
    for (name, s) in [("blob", &blobs), ("hash", &hashes)] {
        println!(
            "{name:<6} {:>10.0}us {:>12} {:>12.0}us {:>14} {:>10.0}us",
            micros(p50(&s.patch)),
            p50(&s.patch_bytes),
            micros(p50(&s.next_read)),
            p50(&s.read_bytes),
            micros(p50(&s.hit)),
        );
    }
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "hash/blob: patch {:.2}x, next read {:.2}x, patch+next read bytes {:.2}x, hit {:.2}x",
        ratio(p50(&hashes.patch), p50(&blobs.patch)),
        ratio(p50(&hashes.next_read), p50(&blobs.next_read)),
        (p50(&hashes.patch_bytes) + p50(&hashes.read_bytes)) as f64
            / (p50(&blobs.patch_bytes) + p50(&blobs.read_bytes)).max(1) as f64,
        ratio(p50(&hashes.hit), p50(&blobs.hit)),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let redis = RedisServer::start();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace("bench")
        .build()
        .await
        .expect("cache");
    let mut once = Some(cache);
    let server = &redis;
    KassandraTester::new(KassandraSession::new())
        .in_scope(|addr| {
            let cache = once.take();
            async move {
                let cache = cache.expect("kassandra runs the bench once");
                let session = SessionBuilder::new()
                    .known_node(addr.to_string())
                    .auto_await_schema_agreement(false)
                    .build()
                    .await
                    .expect("the driver connects to kassandra");
                run(server, Arc::new(session), cache).await;
                Ok::<(), ()>(())
            }
        })
        .await
        .expect("kassandra serves");
    drop(redis);
}
