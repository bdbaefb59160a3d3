//! The repository against a real Cassandra or ScyllaDB node, for what
//! kassandra cannot show: row TTLs (`USING TTL`, `TTL()`, the cache TTL
//! bounded by the row's), lightweight transactions, clustering order, page
//! sizes, `tinyint`/`smallint`, reserved-word and mixed-case identifiers,
//! `frozen<…>` DDL, and the missing-table error as Cassandra words it.
//!
//! Every test here is `#[ignore]`d: run them with a node named by
//! `CACHEFW_CASSANDRA_URI` (`host:port`):
//!
//! ```text
//! CACHEFW_CASSANDRA_URI=127.0.0.1:9042 cargo test -p cachefw-tests --test cassandra_live -- --ignored
//! ```
//!
//! Run without the variable, they fail: they never pass without a node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_cassandra::{Entity, Error, Repository};
use cachefw_tests::RedisServer;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const KEYSPACE: &str = "cachefw_live";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "cachefw_live", table = "users", ttl = "10m")]
pub struct User {
    #[partition_key]
    pub id: Uuid,
    pub name: String,
    pub age: i16,
    pub level: i8,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "cachefw_live",
    table = "events",
    ttl = "1m",
    cache_partitions = true
)]
pub struct Event {
    #[partition_key]
    pub user_id: Uuid,
    #[clustering_key(order = "desc")]
    pub at: i64,
    pub kind: String,
}

/// Reserved words and capitals as table and column names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "cachefw_live",
    table = "order",
    ttl = "1m",
    cache_partitions = true
)]
pub struct Order {
    #[partition_key]
    #[column(name = "from")]
    pub source: String,
    #[clustering_key]
    #[column(name = "order")]
    pub rank: i32,
    #[column(name = "userId")]
    pub user_id: Uuid,
    pub select: String,
}

/// Collections of collections, `frozen<…>` inside.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "cachefw_live", table = "nested", ttl = "1m")]
pub struct Nested {
    #[partition_key]
    pub id: Uuid,
    pub matrix: Vec<Vec<String>>,
    pub by_name: BTreeMap<String, Vec<i32>>,
}

/// An entity whose table nobody creates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "cachefw_live", table = "never_created", ttl = "1m")]
pub struct Missing {
    #[partition_key]
    pub id: i64,
    pub name: String,
}

/// The node to test against; without it, the test fails (it was asked to
/// run with `--ignored`).
fn uri() -> String {
    std::env::var("CACHEFW_CASSANDRA_URI")
        .expect("set CACHEFW_CASSANDRA_URI=host:port to run the live Cassandra tests")
}

async fn session() -> Arc<Session> {
    let uri = uri();
    let session = SessionBuilder::new()
        .known_node(&uri)
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {uri}: {e}"));
    cachefw_cassandra::create_keyspace(&session, KEYSPACE, 1)
        .await
        .expect("keyspace");
    Arc::new(session)
}

/// A private redis-server and a cache on it, namespace `live`.
async fn cache() -> (Cache, RedisServer) {
    let redis = RedisServer::start();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace("live")
        .build()
        .await
        .expect("cache");
    (cache, redis)
}

async fn repository<T: Entity>(session: &Arc<Session>, cache: &Cache) -> Repository<T> {
    let repository = Repository::new(session.clone(), cache.clone())
        .await
        .expect("repo");
    repository.create_table().await.expect("create table");
    repository
}

/// The least `TTL()` Cassandra reports for the user's `name`, in seconds.
async fn name_ttl(session: &Session, id: Uuid) -> i32 {
    let rows = session
        .query_unpaged(
            "SELECT TTL(name) FROM cachefw_live.users WHERE id = ?",
            (id,),
        )
        .await
        .expect("select TTL")
        .into_rows_result()
        .expect("rows");
    let (ttl,) = rows.single_row::<(Option<i32>,)>().expect("one row");
    ttl.expect("the row has a TTL")
}

fn ada() -> User {
    User {
        id: Uuid::new_v4(),
        name: "Ada".into(),
        age: 36,
        level: -3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn save_find_delete_and_small_integers() {
    let session = session().await;
    let (cache, _redis) = cache().await;
    let users: Repository<User> = repository(&session, &cache).await;
    let ada = ada();
    let key = ada.key();
    users.save(&ada).await.expect("save");
    assert_eq!(users.find(&key).await.expect("find"), Some(ada.clone()));
    assert_eq!(
        cache
            .get::<User>(&User::cache_key(&key))
            .await
            .expect("get"),
        Some(ada)
    );
    users.delete(&key).await.expect("delete");
    assert_eq!(
        cache
            .get::<User>(&User::cache_key(&key))
            .await
            .expect("get"),
        None
    );
    assert_eq!(users.find(&key).await.expect("find"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn lightweight_transactions_apply_once() {
    let session = session().await;
    let (cache, _redis) = cache().await;
    let users: Repository<User> = repository(&session, &cache).await;
    let ada = ada();
    assert!(users.insert_if_not_exists(&ada).await.expect("lwt"));
    let other = User {
        name: "Other".into(),
        ..ada.clone()
    };
    assert!(!users.insert_if_not_exists(&other).await.expect("lwt"));
    assert_eq!(users.find(&ada.key()).await.expect("find"), Some(ada));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn a_cached_row_never_outlives_its_ttl() {
    let session = session().await;
    let (cache, redis) = cache().await;
    let users: Repository<User> = repository(&session, &cache).await;

    // A row that lives 20 s, read through an entity TTL of 10 minutes.
    let brief = ada();
    users
        .save_with_ttl(&brief, Duration::from_secs(20))
        .await
        .expect("save with ttl");
    let entry = format!("live:v1:users:{}", brief.id);
    assert!(redis.raw_get(&entry).is_none(), "the write evicts");
    assert_eq!(
        users.find(&brief.key()).await.expect("find"),
        Some(brief.clone())
    );
    let row_ttl = name_ttl(&session, brief.id).await;
    let pttl = redis.pttl(&entry);
    assert!(
        pttl > 5_000 && pttl <= i64::from(row_ttl) * 1_000,
        "the entry lives {pttl} ms, the row {row_ttl} s"
    );

    // A row that outlives the entity TTL is cached for the entity TTL.
    let long = ada();
    users
        .save_with_ttl(&long, Duration::from_secs(3_600))
        .await
        .expect("save with ttl");
    assert!(users.find(&long.key()).await.expect("find").is_some());
    let pttl = redis.pttl(&format!("live:v1:users:{}", long.id));
    assert!(
        pttl > 9 * 60_000 && pttl <= 10 * 60_000,
        "the entry lives {pttl} ms"
    );

    // The short row disappears, from Cassandra and from the cache, by the
    // end of its 20 s.
    let deadline = Instant::now() + Duration::from_secs(40);
    while users.find(&brief.key()).await.expect("find").is_some() {
        assert!(Instant::now() < deadline, "the row outlived its TTL");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(redis.raw_get(&entry).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn a_cached_partition_never_outlives_its_rows() {
    let session = session().await;
    let (cache, redis) = cache().await;
    let events: Repository<Event> = repository(&session, &cache).await;
    let user_id = Uuid::new_v4();
    let lasting = Event {
        user_id,
        at: 1,
        kind: "lasting".into(),
    };
    let brief = Event {
        user_id,
        at: 2,
        kind: "brief".into(),
    };
    events.save(&lasting).await.expect("save");
    events
        .save_with_ttl(&brief, Duration::from_secs(20))
        .await
        .expect("save with ttl");
    let partition = EventPartition { user_id };
    let rows = events.find_partition(&partition).await.expect("partition");
    assert_eq!(rows, [brief, lasting], "clustering order desc");
    let pttl = redis.pttl(&format!("live:v1:events:{user_id}:%partition"));
    assert!(
        pttl > 5_000 && pttl <= 20_000,
        "the partition entry lives {pttl} ms, its brief row 20 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn clustering_order_batches_and_page_sizes() {
    let session = session().await;
    let (cache, redis) = cache().await;
    let events: Repository<Event> = repository(&session, &cache).await;
    let user_id = Uuid::new_v4();
    let batch: Vec<Event> = (0..100)
        .map(|at| Event {
            user_id,
            at,
            kind: format!("k{at}"),
        })
        .collect();
    // Four batches of 32, 32, 32 and 4 rows.
    events.save_all(&batch).await.expect("batch");
    let partition = EventPartition { user_id };
    let rows = events.find_partition(&partition).await.expect("partition");
    let order: Vec<i64> = rows.iter().map(|e| e.at).collect();
    assert_eq!(
        order,
        (0..100).rev().collect::<Vec<_>>(),
        "clustering order desc"
    );
    let changed: Vec<Event> = batch
        .iter()
        .map(|e| Event {
            kind: "changed".into(),
            ..e.clone()
        })
        .collect();
    events.save_all(&changed).await.expect("batch");
    assert!(redis.keys().is_empty(), "{:?}", redis.keys());

    let mut pages = Vec::new();
    let mut token = None;
    let mut last_page = false;
    for _ in 0..20 {
        let page = events
            .find_partition_page(&partition, 10, token.as_ref())
            .await
            .expect("page");
        assert!(page.rows.len() <= 10);
        pages.push(page.rows.len());
        match page.next {
            Some(next) => token = Some(next),
            None => {
                last_page = true;
                break;
            }
        }
    }
    assert!(last_page, "the pages end: {pages:?}");
    assert_eq!(pages.iter().sum::<usize>(), 100, "{pages:?}");
    assert!(pages.len() >= 10, "{pages:?}");
    let one = events
        .find(&EventKey { user_id, at: 7 })
        .await
        .expect("find");
    assert_eq!(one.map(|e| e.kind).as_deref(), Some("changed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn reserved_words_and_capitals_round_trip() {
    let session = session().await;
    let (cache, redis) = cache().await;
    let orders: Repository<Order> = repository(&session, &cache).await;
    let rows: Vec<Order> = (0..3)
        .map(|rank| Order {
            source: "web:eu".into(),
            rank,
            user_id: Uuid::new_v4(),
            select: format!("pick {rank}"),
        })
        .collect();
    orders.save_all(&rows).await.expect("save");
    assert_eq!(
        orders.find(&rows[1].key()).await.expect("find").as_ref(),
        Some(&rows[1])
    );
    assert!(redis.raw_get("live:v1:order:web%3Aeu:1").is_some());
    let partition = OrderPartition {
        source: "web:eu".into(),
    };
    assert_eq!(
        orders.find_partition(&partition).await.expect("partition"),
        rows
    );
    orders.delete(&rows[1].key()).await.expect("delete");
    assert_eq!(orders.find(&rows[1].key()).await.expect("find"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn nested_collections_are_frozen() {
    let session = session().await;
    let (cache, _redis) = cache().await;
    let nested: Repository<Nested> = repository(&session, &cache).await;
    let row = Nested {
        id: Uuid::new_v4(),
        matrix: vec![vec!["a".into()], vec![], vec!["b".into(), "c".into()]],
        by_name: BTreeMap::from([("x".into(), vec![1, 2])]),
    };
    nested.save(&row).await.expect("save");
    assert_eq!(nested.find(&row.key()).await.expect("find"), Some(row));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn a_missing_table_is_an_error_naming_create_table() {
    let session = session().await;
    let (cache, _redis) = cache().await;
    let missing: Repository<Missing> = Repository::new(session, cache)
        .await
        .expect("`new` does not need the table");
    let found = missing.find(&MissingKey { id: 1 }).await;
    let Err(error) = found else {
        panic!("a find on a missing table succeeded: {found:?}");
    };
    assert!(matches!(error, Error::MissingTable { .. }), "{error:?}");
    assert!(error.to_string().contains("create_table()"), "{error}");
}
