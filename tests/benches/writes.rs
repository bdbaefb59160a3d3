//! What each write mode costs a `save`, and how fast flushers drain a
//! write-behind backlog: kassandra (in process) and one private
//! redis-server on loopback, 8 tasks saving distinct rows.
//!
//! ```text
//! cargo bench -p cachefw-tests --bench writes
//! ```
//!
//! Each mode saves `SAVES` rows per round, in `ROUNDS` rounds taken in
//! turn (so that the noise of a shared machine hits every mode alike); each
//! row of the table is the median round. Write-behind saves run with no
//! flusher; the backlog they leave is then drained by one flusher, and
//! again (another round of saves) by two. Then the cost of self-describing
//! records (issue 23): the bytes a record takes in the stream, and one
//! flusher draining records of the format before (MessagePack of the row,
//! read through the type) against records of today's format, in turn.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_cassandra::{Entity, Repository};
use cachefw_tests::RedisServer;
use kassandra_tester::KassandraTester;
use kassandra_tester::kassandra::KassandraSession;
use redis::Value;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const TASKS: usize = 8;
const SAVES: usize = 2_000;
const ROUNDS: usize = 9;

macro_rules! entity {
    ($name:ident, $table:literal, $write:literal) => {
        #[derive(Clone, Debug, Serialize, Deserialize, Entity)]
        #[entity(keyspace = "bench", table = $table, ttl = "10m", write = $write)]
        pub struct $name {
            #[partition_key]
            pub id: Uuid,
            pub name: String,
            pub items: Vec<String>,
            pub total: i64,
        }

        impl From<u64> for $name {
            fn from(n: u64) -> Self {
                Self {
                    id: Uuid::new_v4(),
                    name: format!("customer {n}"),
                    items: vec!["tea".into(), "cake".into()],
                    total: i64::try_from(n).unwrap_or(0),
                }
            }
        }
    };
}

entity!(Invalidated, "invalidated", "invalidate");
entity!(Through, "through", "through");
entity!(Behind, "behind", "behind");

/// One round of saves: throughput and latencies.
struct Round {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn saves<T: Entity + From<u64>>(repo: &Arc<Repository<T>>) -> Round {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(SAVES / TASKS);
            for n in 0..SAVES / TASKS {
                let row = T::from((task * SAVES + n) as u64);
                let sent = Instant::now();
                repo.save(&row).await.expect("save");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(SAVES);
    for task in tasks {
        latencies.extend(task.await.expect("no panic"));
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Round {
        per_second: SAVES as f64 / elapsed.as_secs_f64(),
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
    }
}

/// Spawns `flushers` and times them until the backlog is empty.
async fn drain(repo: &Repository<Behind>, flushers: usize) -> (u64, Duration) {
    let pending = repo.backlog().await.expect("backlog").pending;
    let started = Instant::now();
    let handles: Vec<_> = (0..flushers).map(|_| repo.spawn_flusher()).collect();
    loop {
        let backlog = repo.backlog().await.expect("backlog");
        if backlog.pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "drained in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    for handle in handles {
        handle.abort();
    }
    (pending, elapsed)
}

fn median(mut rounds: Vec<Round>) -> Round {
    rounds.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    rounds.swap_remove(rounds.len() / 2)
}

/// Appends `SAVES` records of format 1 (before issue 23: the row as
/// MessagePack with field names) to the stream of `Behind`.
fn legacy_records(redis: &RedisServer) {
    let mut connection = redis.connection();
    let mut pipeline = redis::pipe();
    for n in 0..SAVES {
        let row = Behind::from(n as u64);
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_micros()
            .to_string();
        let data = rmp_serde::to_vec_named(&row).expect("encode");
        pipeline
            .cmd("XADD")
            .arg("bench:wb:behind")
            .arg("*")
            .arg("f")
            .arg("1")
            .arg("k")
            .arg("s")
            .arg("t")
            .arg(at)
            .arg("d")
            .arg(data)
            .ignore();
    }
    let () = pipeline.query(&mut connection).expect("XADD");
}

/// A stream entry's fields and values.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Bytes per record of the stream of `Behind`: its fields and values, and
/// what Redis's `MEMORY USAGE` gives per record.
fn record_bytes(redis: &RedisServer) -> (usize, f64) {
    let first: Vec<(String, Fields)> =
        redis.cmd("XRANGE", &[b"bench:wb:behind", b"-", b"+", b"COUNT", b"1"]);
    let payload = first
        .first()
        .map(|(_, fields)| fields.iter().map(|(n, v)| n.len() + v.len()).sum())
        .unwrap_or(0);
    let length: u64 = redis.cmd("XLEN", &[b"bench:wb:behind"]);
    let usage: Value = redis.cmd("MEMORY", &[b"USAGE", b"bench:wb:behind", b"SAMPLES", b"0"]);
    let usage = match usage {
        Value::Int(bytes) => bytes as f64,
        _ => 0.0,
    };
    (payload, usage / length.max(1) as f64)
}

async fn run(redis: &RedisServer, session: Arc<Session>, cache: Cache) {
    cachefw_cassandra::create_keyspace(&session, "bench", 1)
        .await
        .expect("keyspace");
    let invalidated = Arc::new(repository::<Invalidated>(&session, &cache).await);
    let through = Arc::new(repository::<Through>(&session, &cache).await);
    let behind = Arc::new(repository::<Behind>(&session, &cache).await);
    // Warm up connections, statements and scripts.
    saves(&invalidated).await;
    saves(&through).await;
    saves(&behind).await;
    drain(&behind, 1).await;

    let (mut inv, mut thr, mut beh, mut drains) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        inv.push(saves(&invalidated).await);
        thr.push(saves(&through).await);
        beh.push(saves(&behind).await);
        drains.push(drain(&behind, 1).await);
    }
    beh.push(saves(&behind).await);
    let two = drain(&behind, 2).await;

    let (inv, thr, beh) = (median(inv), median(thr), median(beh));
    println!("{TASKS} tasks, {SAVES} saves of distinct rows per round; median of {ROUNDS} rounds");
    println!(
        "{:<14} {:>10} {:>9} {:>9} {:>14}",
        "mode", "saves/s", "p50", "p99", "vs invalidate"
    );
    for (name, round) in [
        ("invalidate", &inv),
        ("write-through", &thr),
        ("write-behind", &beh),
    ] {
        println!(
            "{name:<14} {:>10.0} {:>9.2?} {:>9.2?} {:>13.2}x",
            round.per_second,
            round.p50,
            round.p99,
            round.per_second / inv.per_second
        );
    }
    drains.sort_by_key(|(_, elapsed)| *elapsed);
    let (records, elapsed) = drains[drains.len() / 2];
    println!(
        "flush, 1 flusher:  {records} records in {elapsed:.2?} = {:.0} records/s",
        records as f64 / elapsed.as_secs_f64()
    );
    let (records, elapsed) = two;
    println!(
        "flush, 2 flushers: {records} records in {elapsed:.2?} = {:.0} records/s",
        records as f64 / elapsed.as_secs_f64()
    );

    // Self-describing records against the format before, in turn.
    let (mut today, mut before) = (vec![], vec![]);
    let (mut sizes, mut old_sizes) = (None, None);
    for round in 0..ROUNDS {
        saves(&behind).await;
        if round == 0 {
            sizes = Some(record_bytes(redis));
        }
        today.push(drain(&behind, 1).await);
        legacy_records(redis);
        if round == 0 {
            old_sizes = Some(record_bytes(redis));
        }
        before.push(drain(&behind, 1).await);
    }
    let rate = |mut drains: Vec<(u64, Duration)>| {
        drains.sort_by_key(|(_, elapsed)| *elapsed);
        let (records, elapsed) = drains[drains.len() / 2];
        records as f64 / elapsed.as_secs_f64()
    };
    let (today, before) = (rate(today), rate(before));
    println!("one flusher, median of {ROUNDS} drains of {SAVES} records:");
    println!("  format 1 (MessagePack of the row): {before:>7.0} records/s (anchor)");
    println!(
        "  format 2 (self-describing):        {today:>7.0} records/s = {:.2}x",
        today / before
    );
    if let Some(((payload, usage), (old_payload, old_usage))) = sizes.zip(old_sizes) {
        println!(
            "  bytes per record: format 2 {payload} B of fields and values, {usage:.0} B in Redis; \
             format 1 {old_payload} B, {old_usage:.0} B"
        );
    }
}

async fn repository<T: Entity>(session: &Arc<Session>, cache: &Cache) -> Repository<T> {
    let repository = Repository::new(session.clone(), cache.clone())
        .await
        .expect("repository");
    repository.create_table().await.expect("create table");
    repository
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
