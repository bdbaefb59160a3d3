//! The repository against a real Cassandra or ScyllaDB node, for what
//! kassandra cannot show: row TTLs (`USING TTL`, `TTL()`, the cache TTL
//! bounded by the row's), lightweight transactions, clustering order, page
//! sizes, `tinyint`/`smallint`, reserved-word and mixed-case identifiers,
//! `frozen<…>` DDL, the missing-table error as Cassandra words it; and of
//! the write paths, what write timestamps decide (kassandra ignores them):
//! a replayed old write-behind record, a delete before an older pending
//! save, flushers racing on one row, and nulls written over values. And
//! what kassandra has not at all: counters (their table, increments, the
//! eviction that follows, replayed when Redis was away) and lightweight
//! transactions applied or not, with what each leaves in the cache.
//!
//! Every test here is `#[ignore]`d: run them with a node named by
//! `CACHEFW_CASSANDRA_URI` (`host:port`):
//!
//! ```text
//! CACHEFW_CASSANDRA_URI=127.0.0.1:9042 cargo test -p cachefw-tests --test cassandra live:: -- --ignored
//! ```
//!
//! Run without the variable, they fail: they never pass without a node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_cassandra::{Entity, Error, Repository};
use cachefw_tests::RedisServer;
use cachefw_tests::cassandra::repository;
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

/// Written behind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "cachefw_live",
    table = "carts",
    ttl = "10m",
    write = "behind"
)]
pub struct Cart {
    #[partition_key]
    pub id: Uuid,
    pub total: i64,
    pub note: Option<String>,
}

/// The same table, invalidated on write: over an empty in-memory cache it
/// reads what Cassandra holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "cachefw_live", table = "carts", ttl = "10m")]
pub struct CartRow {
    #[partition_key]
    pub id: Uuid,
    pub total: i64,
    pub note: Option<String>,
}

/// Written through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "cachefw_live",
    table = "accounts",
    ttl = "10m",
    write = "through"
)]
pub struct Account {
    #[partition_key]
    pub id: Uuid,
    pub owner: String,
    pub note: Option<String>,
}

fn row(cart: &Cart) -> CartRow {
    CartRow {
        id: cart.id,
        total: cart.total,
        note: cart.note.clone(),
    }
}

/// What Cassandra holds for the carts with `ids`.
async fn in_cassandra(session: &Arc<Session>, ids: &[Uuid]) -> Vec<Option<CartRow>> {
    let empty = Cache::builder().in_memory().build().await.expect("cache");
    let rows: Repository<CartRow> = Repository::new(session.clone(), empty).await.expect("repo");
    let keys: Vec<CartRowKey> = ids.iter().map(|&id| CartRowKey { id }).collect();
    rows.find_many(&keys).await.expect("read Cassandra")
}

async fn redis_cache(redis: &RedisServer) -> Cache {
    Cache::builder()
        .redis(redis.url())
        .namespace("live")
        .build()
        .await
        .expect("cache")
}

async fn drained(carts: &Repository<Cart>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let backlog = carts.backlog().await;
        if backlog.as_ref().is_ok_and(|b| b.pending == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "the backlog drains: {backlog:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn a_replayed_old_record_does_not_overwrite_a_newer_row() {
    let session = session().await;
    let mut redis = RedisServer::start_durable("always");
    let cache = redis_cache(&redis).await;
    let carts: Repository<Cart> = repository(&session, &cache).await;
    let id = Uuid::new_v4();
    let old = Cart {
        id,
        total: 1,
        note: Some("old".into()),
    };
    carts.save(&old).await.expect("save");
    let record: redis::Value = redis.cmd("XRANGE", &[b"live:wb:carts", b"-", b"+"]);
    // Redis goes away: the newer save goes to Cassandra with its timestamp.
    redis.stop();
    let new = Cart {
        total: 2,
        note: Some("new".into()),
        ..old.clone()
    };
    carts.save(&new).await.expect("save while Redis is down");
    // Back with the old record from its append-only file.
    tokio::task::block_in_place(|| redis.restart());
    let flusher = carts.spawn_flusher();
    drained(&carts).await;
    assert_eq!(in_cassandra(&session, &[id]).await, [Some(row(&new))]);
    // The same old record once more, as a replay would append it.
    let redis::Value::Array(entries) = record else {
        panic!("XRANGE: {record:?}");
    };
    let Some(redis::Value::Array(entry)) = entries.first() else {
        panic!("no record: {entries:?}");
    };
    let Some(redis::Value::Array(fields)) = entry.get(1) else {
        panic!("no fields: {entry:?}");
    };
    let mut replay = redis::cmd("XADD");
    replay.arg("live:wb:carts").arg("*");
    for field in fields {
        let redis::Value::BulkString(bytes) = field else {
            panic!("a field that is not a bulk string: {field:?}");
        };
        replay.arg(bytes.as_slice());
    }
    let _: String = replay
        .query(&mut redis.connection())
        .expect("replay the record");
    drained(&carts).await;
    assert_eq!(
        in_cassandra(&session, &[id]).await,
        [Some(row(&new))],
        "the replayed older record lost to the newer row"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while carts.find(&new.key()).await.expect("find") != Some(new.clone()) {
        assert!(Instant::now() < deadline, "reads see the newer row");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    flusher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn a_delete_keeps_an_older_pending_save_from_bringing_the_row_back() {
    let session = session().await;
    let redis = RedisServer::start();
    let cache = redis_cache(&redis).await;
    let carts: Repository<Cart> = repository(&session, &cache).await;
    let cart = Cart {
        id: Uuid::new_v4(),
        total: 7,
        note: None,
    };
    carts.save(&cart).await.expect("save");
    carts.delete(&cart.key()).await.expect("delete");
    let flusher = carts.spawn_flusher();
    drained(&carts).await;
    assert_eq!(in_cassandra(&session, &[cart.id]).await, [None]);
    assert_eq!(carts.find(&cart.key()).await.expect("find"), None);
    flusher.abort();
}

/// 10,000 saves from 8 tasks; two flushers from the start, one aborted
/// halfway: records of one row are flushed in any order, by either, and
/// the timestamps keep each row's last save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn flushers_in_any_order_keep_each_rows_last_save() {
    let session = session().await;
    let redis = RedisServer::start();
    let cache = redis_cache(&redis).await;
    let carts = Arc::new(
        repository::<Cart>(&session, &cache)
            .await
            .flusher_claim_idle(Duration::from_millis(500)),
    );
    let first = carts.spawn_flusher();
    let second = carts.spawn_flusher();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (carts, done) = (carts.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let ids: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
            let mut last = HashMap::new();
            for n in 0..1_250_i64 {
                let id = ids[usize::try_from(n).expect("small") % ids.len()];
                let cart = Cart {
                    id,
                    total: n,
                    note: (n % 2 == 0).then(|| format!("note {n}")),
                };
                carts.save(&cart).await.expect("save");
                last.insert(id, cart);
                done.fetch_add(1, Ordering::Relaxed);
            }
            last
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::Relaxed) < 5_000 {
        assert!(Instant::now() < deadline, "half the saves within 60 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.abort();
    let mut expected = HashMap::new();
    for task in tasks {
        expected.extend(task.await.expect("no panic"));
    }
    drained(&carts).await;
    let ids: Vec<Uuid> = expected.keys().copied().collect();
    let rows = in_cassandra(&session, &ids).await;
    for (id, found) in ids.iter().zip(rows) {
        assert_eq!(found, Some(row(&expected[id])), "the last save of {id}");
    }
    second.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn nulls_written_over_values_clear_them() {
    let session = session().await;
    let (cache, _redis) = cache().await;
    let accounts: Repository<Account> = repository(&session, &cache).await;
    let account = Account {
        id: Uuid::new_v4(),
        owner: "ada".into(),
        note: Some("vip".into()),
    };
    accounts.save(&account).await.expect("save");
    let clear = AccountPatch {
        note: Some(None),
        ..Default::default()
    };
    accounts.patch(&account.key(), &clear).await.expect("patch");
    let cleared = Account {
        note: None,
        ..account.clone()
    };
    assert_eq!(
        accounts.find(&account.key()).await.expect("find"),
        Some(cleared)
    );

    let carts: Repository<Cart> = repository(&session, &cache).await;
    let flusher = carts.spawn_flusher();
    let cart = Cart {
        id: Uuid::new_v4(),
        total: 1,
        note: Some("gift".into()),
    };
    carts.save(&cart).await.expect("save");
    let unnoted = Cart {
        note: None,
        ..cart.clone()
    };
    carts.save(&unnoted).await.expect("save");
    drained(&carts).await;
    assert_eq!(
        in_cassandra(&session, &[cart.id]).await,
        [Some(row(&unnoted))]
    );
    flusher.abort();
}

/// A table of counters, its partitions cached too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "cachefw_live",
    table = "hits",
    ttl = "10m",
    cache_partitions = true
)]
pub struct Hits {
    #[partition_key]
    pub site: String,
    #[clustering_key]
    pub path: String,
    #[counter]
    pub views: i64,
    #[counter]
    pub clicks: i64,
}

/// A table of counters written through: an increment reads the totals back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "cachefw_live",
    table = "hits_through",
    ttl = "10m",
    write = "through"
)]
pub struct HitsThrough {
    #[partition_key]
    pub site: String,
    #[counter]
    pub views: i64,
}

fn hits(site: &str, views: i64, clicks: i64) -> Hits {
    Hits {
        site: site.to_owned(),
        path: "/".into(),
        views,
        clicks,
    }
}

/// Waits until the cache has delivered every eviction it kept.
async fn settled(cache: &Cache) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.stats().pending_evictions > 0 {
        assert!(Instant::now() < deadline, "{:?}", cache.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn counters_count_and_each_increment_evicts_the_row_and_its_partition() {
    let session = session().await;
    let (cache, _redis) = cache().await;
    let repo: Repository<Hits> = repository(&session, &cache).await;
    let site = Uuid::new_v4().to_string();
    let key = HitsKey {
        site: site.clone(),
        path: "/".into(),
    };
    let partition = HitsPartition { site: site.clone() };
    let (entry, partition_entry) = (Hits::cache_key(&key), Hits::partition_cache_key(&partition));
    assert_eq!(
        repo.find(&key).await.expect("find"),
        None,
        "no row before a counter was incremented"
    );
    repo.increment(&key, HitsCounter::Views, 3)
        .await
        .expect("increment");
    assert_eq!(
        repo.find(&key).await.expect("find"),
        Some(hits(&site, 3, 0)),
        "a counter never incremented reads 0"
    );
    assert_eq!(
        repo.find_partition(&partition).await.expect("partition"),
        [hits(&site, 3, 0)]
    );
    assert!(cache.get::<Hits>(&entry).await.expect("get").is_some());
    assert!(
        cache
            .get::<Vec<Hits>>(&partition_entry)
            .await
            .expect("get")
            .is_some()
    );
    repo.increment(&key, HitsCounter::Clicks, 2)
        .await
        .expect("increment");
    assert_eq!(cache.get::<Hits>(&entry).await.expect("get"), None);
    assert_eq!(
        cache.get::<Vec<Hits>>(&partition_entry).await.expect("get"),
        None
    );
    repo.increment(&key, HitsCounter::Views, -1)
        .await
        .expect("decrement");
    assert_eq!(
        repo.find(&key).await.expect("find"),
        Some(hits(&site, 2, 2))
    );
    assert_eq!(
        repo.find_partition(&partition).await.expect("partition"),
        [hits(&site, 2, 2)]
    );

    // 8 tasks of 25 increments each: none lost, none counted twice.
    let repo = Arc::new(repo);
    let busy = HitsKey {
        site: site.clone(),
        path: "/busy".into(),
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (repo, busy) = (repo.clone(), busy.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                repo.increment(&busy, HitsCounter::Views, 1)
                    .await
                    .expect("increment");
                repo.find(&busy).await.expect("find");
            }
        }));
    }
    for task in tasks {
        task.await.expect("no panic");
    }
    let total = repo.find(&busy).await.expect("find").map(|row| row.views);
    assert_eq!(total, Some(200));

    repo.delete(&key).await.expect("delete");
    assert_eq!(repo.find(&key).await.expect("find"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn an_increment_whose_eviction_cannot_reach_redis_is_replayed() {
    let session = session().await;
    let redis = RedisServer::start();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace("live")
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .expect("cache");
    let repo: Repository<Hits> = repository(&session, &cache).await;
    let site = Uuid::new_v4().to_string();
    let key = HitsKey {
        site: site.clone(),
        path: "/".into(),
    };
    repo.increment(&key, HitsCounter::Views, 1)
        .await
        .expect("increment");
    assert_eq!(
        repo.find(&key).await.expect("find"),
        Some(hits(&site, 1, 0))
    );
    redis.freeze();
    repo.increment(&key, HitsCounter::Views, 1)
        .await
        .expect("a cache failure never fails the increment");
    assert!(cache.stats().pending_evictions >= 1, "{:?}", cache.stats());
    assert_eq!(
        repo.find(&key).await.expect("find"),
        Some(hits(&site, 2, 0)),
        "reads of the row skip Redis until the eviction is delivered"
    );
    redis.thaw();
    settled(&cache).await;
    let cached = cache
        .get::<Hits>(&Hits::cache_key(&key))
        .await
        .expect("get");
    assert!(
        cached.is_none() || cached == Some(hits(&site, 2, 0)),
        "the old total is gone from Redis: {cached:?}"
    );
    assert_eq!(
        repo.find(&key).await.expect("find"),
        Some(hits(&site, 2, 0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn write_through_increments_read_the_new_totals_back() {
    let session = session().await;
    let (cache, _redis) = cache().await;
    let repo: Repository<HitsThrough> = repository(&session, &cache).await;
    let site = Uuid::new_v4().to_string();
    let key = HitsThroughKey { site: site.clone() };
    let entry = HitsThrough::cache_key(&key);
    for (by, total) in [(5, 5), (2, 7), (-10, -3)] {
        repo.increment(&key, HitsThroughCounter::Views, by)
            .await
            .expect("increment");
        assert_eq!(
            cache.get::<HitsThrough>(&entry).await.expect("get"),
            Some(HitsThrough {
                site: site.clone(),
                views: total
            }),
            "cached right after the increment"
        );
    }
}

/// Applied, an `INSERT … IF NOT EXISTS` evicts the entry (invalidate) or
/// stores the row (through, behind); not applied, it leaves the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn lightweight_transactions_cache_only_what_they_applied() {
    let session = session().await;
    let redis = RedisServer::start();
    let cache = redis_cache(&redis).await;

    let users: Repository<User> = repository(&session, &cache).await;
    let ada = ada();
    let entry = User::cache_key(&ada.key());
    cache
        .set(&entry, &ada, Duration::from_secs(60))
        .await
        .expect("set");
    assert!(users.insert_if_not_exists(&ada).await.expect("lwt"));
    assert_eq!(
        cache.get::<User>(&entry).await.expect("get"),
        None,
        "evicted"
    );
    assert_eq!(
        users.find(&ada.key()).await.expect("find"),
        Some(ada.clone())
    );
    let other = User {
        name: "Other".into(),
        ..ada.clone()
    };
    assert!(!users.insert_if_not_exists(&other).await.expect("lwt"));
    assert_eq!(
        cache.get::<User>(&entry).await.expect("get"),
        Some(ada),
        "not applied: the entry stays"
    );

    let accounts: Repository<Account> = repository(&session, &cache).await;
    let account = Account {
        id: Uuid::new_v4(),
        owner: "ada".into(),
        note: None,
    };
    let entry = Account::cache_key(&account.key());
    assert!(accounts.insert_if_not_exists(&account).await.expect("lwt"));
    assert_eq!(
        cache.get::<Account>(&entry).await.expect("get"),
        Some(account.clone()),
        "stored by the write-through insert"
    );
    let other = Account {
        owner: "other".into(),
        ..account.clone()
    };
    assert!(!accounts.insert_if_not_exists(&other).await.expect("lwt"));
    assert_eq!(
        cache.get::<Account>(&entry).await.expect("get"),
        Some(account.clone())
    );
    assert_eq!(
        accounts.find(&account.key()).await.expect("find"),
        Some(account)
    );

    let carts: Repository<Cart> = repository(&session, &cache).await;
    let cart = Cart {
        id: Uuid::new_v4(),
        total: 1,
        note: None,
    };
    assert!(carts.insert_if_not_exists(&cart).await.expect("lwt"));
    let entry = format!("live:v1:{}", Cart::cache_key(&cart.key()));
    let pttl = redis.pttl(&entry);
    assert!(
        pttl > 0 && pttl <= 600_000,
        "stored, and in Cassandra: {pttl}"
    );
    assert_eq!(in_cassandra(&session, &[cart.id]).await, [Some(row(&cart))]);
    assert_eq!(carts.backlog().await.expect("backlog").pending, 0);
    // A save waiting in the stream: the row exists, Cassandra is not asked.
    let pending = Cart {
        id: Uuid::new_v4(),
        total: 2,
        note: None,
    };
    carts.save(&pending).await.expect("save");
    let other = Cart {
        total: 3,
        ..pending.clone()
    };
    assert!(!carts.insert_if_not_exists(&other).await.expect("answered"));
    assert_eq!(in_cassandra(&session, &[pending.id]).await, [None]);
    let flusher = carts.spawn_flusher();
    drained(&carts).await;
    assert_eq!(
        in_cassandra(&session, &[pending.id]).await,
        [Some(row(&pending))]
    );
    flusher.abort();
}

/// A TTL save with write-through records its version as it evicts: a save
/// that took its timestamp before it and stores afterwards is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn a_ttl_save_keeps_an_older_save_in_flight_out_of_the_cache() {
    use cachefw::__adapter::versioned::{self, Stored};

    let session = session().await;
    let (cache, _redis) = cache().await;
    let accounts: Repository<Account> = repository(&session, &cache).await;
    let old = Account {
        id: Uuid::new_v4(),
        owner: "old".into(),
        note: None,
    };
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_micros();
    let before = u64::try_from(before).expect("µs fit");
    let new = Account {
        owner: "new".into(),
        ..old.clone()
    };
    accounts
        .save_with_ttl(&new, Duration::from_secs(3600))
        .await
        .expect("save_with_ttl");
    let entry = Account::cache_key(&old.key());
    let late = versioned::store(
        &cache,
        &entry,
        &old,
        before,
        Some(Duration::from_secs(60)),
        None,
    )
    .await
    .expect("store");
    assert_eq!(late, Stored::Superseded);
    assert_eq!(accounts.find(&old.key()).await.expect("find"), Some(new));
}

/// With write-behind, `save_all` goes to Cassandra at once with the call's
/// timestamp: an older save still in the stream, flushed afterwards, loses
/// to it in Cassandra as in the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn save_all_wins_over_an_older_save_still_in_the_stream() {
    let session = session().await;
    let redis = RedisServer::start();
    let cache = redis_cache(&redis).await;
    let carts: Repository<Cart> = repository(&session, &cache).await;
    let old = Cart {
        id: Uuid::new_v4(),
        total: 1,
        note: Some("old".into()),
    };
    carts.save(&old).await.expect("save");
    let new = Cart {
        total: 2,
        note: Some("new".into()),
        ..old.clone()
    };
    carts
        .save_all(std::slice::from_ref(&new))
        .await
        .expect("save_all");
    assert_eq!(
        cache
            .get::<Cart>(&Cart::cache_key(&new.key()))
            .await
            .expect("get"),
        Some(new.clone())
    );
    let flusher = carts.spawn_flusher();
    drained(&carts).await;
    assert_eq!(in_cassandra(&session, &[new.id]).await, [Some(row(&new))]);
    assert_eq!(carts.find(&new.key()).await.expect("find"), Some(new));
    flusher.abort();
}
