//! Write-behind keeps every acknowledged write, whatever Cassandra answers
//! meanwhile (issue 23): refusals retried until written, dead letters kept
//! and replayed, each record judged alone, self-describing records across
//! two shapes of an entity, Redis's `maxmemory-policy`, and the races
//! between savers, patchers and flushers of two processes.
//!
//! Against kassandra (the in-memory CQL server) through the scylla driver,
//! and private redis-servers. Cassandra's refusals are real ones: writes
//! to a table that does not exist yet (`Invalid`, as a schema change
//! deployed before its migration gives), and a record naming a column the
//! table lacks. kassandra ignores write timestamps (it keeps the write
//! that arrives last), so the races below give each column of a row one
//! value that every write agrees on, except the columns one save alone
//! sets: Cassandra's answer then does not depend on the order the flushes
//! land in, and the cache must agree with it.
//!
//! A binary of its own, not a module of `cassandra/`: it installs a global
//! metrics recorder and tracing subscriber whose counts it asserts.
//!
//! `WRITE_BEHIND_LONG=1` runs the refusal scenario for 30 s of refusals
//! and 400 rows, and the races for 20 rounds (see `scripts/write-behind-long`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::StreamExt;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_cassandra::{Entity, Error, Repository};
use cachefw_tests::cassandra;
use cachefw_tests::{DelayProxy, RedisServer};
use scylla::client::session::Session;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Written behind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "carts", ttl = "10m", write = "behind")]
pub struct Cart {
    #[partition_key]
    pub id: Uuid,
    pub items: Vec<String>,
    pub total: i64,
    pub note: Option<String>,
}

/// The same table read straight from Cassandra (over an empty in-memory
/// cache).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "carts", ttl = "10m")]
pub struct CartRow {
    #[partition_key]
    pub id: Uuid,
    pub items: Vec<String>,
    pub total: i64,
    pub note: Option<String>,
}

/// The next shape of `Cart`: a field added, as a rolling deploy brings it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "carts", ttl = "10m", write = "behind")]
pub struct CartV2 {
    #[partition_key]
    pub id: Uuid,
    pub items: Vec<String>,
    pub total: i64,
    pub note: Option<String>,
    pub coupon: Option<String>,
}

/// `CartV2`'s table read straight from Cassandra.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "carts", ttl = "10m")]
pub struct CartV2Row {
    #[partition_key]
    pub id: Uuid,
    pub items: Vec<String>,
    pub total: i64,
    pub note: Option<String>,
    pub coupon: Option<String>,
}

/// A stream entry's fields, as Redis gives them.
type Fields = Vec<(String, Vec<u8>)>;

const CLAIM_IDLE: Duration = Duration::from_millis(500);
const TTL: Duration = Duration::from_secs(600);

fn long() -> bool {
    std::env::var_os("WRITE_BEHIND_LONG").is_some()
}

/// Runs `test` against a fresh kassandra (`cachefw_tests::cassandra`),
/// with keyspace `shop` (and no table), within a deadline: a hang (a call
/// that never returns) fails the test rather than the run.
async fn with_kassandra<F, Fut>(test: F)
where
    F: FnOnce(Arc<Session>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let deadline = Duration::from_secs(if long() { 900 } else { 180 });
    cassandra::with_kassandra(|_, session| async move {
        tokio::time::timeout(deadline, test(session))
            .await
            .expect("the test finishes within its deadline");
    })
    .await;
}

async fn redis_cache(url: String) -> Cache {
    Cache::builder()
        .redis(url)
        .namespace("shop")
        .build()
        .await
        .expect("cache")
}

async fn repository<T: Entity>(session: &Arc<Session>, cache: &Cache) -> Repository<T> {
    Repository::new(session.clone(), cache.clone())
        .await
        .expect("repository")
        .flusher_claim_idle(CLAIM_IDLE)
}

/// What Cassandra holds for each key.
async fn in_cassandra<T: Entity>(session: &Arc<Session>, keys: &[T::Key]) -> Vec<Option<T>> {
    let empty = Cache::builder().in_memory().build().await.expect("cache");
    let rows: Repository<T> = Repository::new(session.clone(), empty)
        .await
        .expect("repository");
    rows.find_many(keys).await.expect("read Cassandra")
}

/// Creates the table of `T`.
async fn create_table<T: Entity>(session: &Arc<Session>) {
    let empty = Cache::builder().in_memory().build().await.expect("cache");
    let rows: Repository<T> = Repository::new(session.clone(), empty)
        .await
        .expect("repository");
    rows.create_table().await.expect("create table");
}

/// Waits until no record waits for a flusher, or fails after `deadline`.
async fn drained<T: Entity>(repo: &Repository<T>, deadline: Duration) {
    let start = Instant::now();
    loop {
        let backlog = repo.backlog().await.expect("backlog");
        if backlog.pending == 0 {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "backlog not drained within {deadline:?}: {backlog:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn row(cart: &Cart) -> CartRow {
    CartRow {
        id: cart.id,
        items: cart.items.clone(),
        total: cart.total,
        note: cart.note.clone(),
    }
}

fn cart(id: Uuid, total: i64) -> Cart {
    Cart {
        id,
        items: vec![format!("item {total}")],
        total,
        note: Some(format!("note {total}")),
    }
}

/// The counters of this binary, through a recorder installed on first
/// call (tests running at once share it).
type Store = Registry<Key, AtomicStorage>;

struct Recorded(Arc<Store>);

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |counter| Counter::from_arc(counter.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |gauge| Gauge::from_arc(gauge.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |histogram| Histogram::from_arc(histogram.clone()))
    }
}

fn store() -> &'static Store {
    static STORE: OnceLock<Arc<Store>> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = Arc::new(Registry::atomic());
        metrics::set_global_recorder(Recorded(store.clone()))
            .expect("no other recorder in this binary");
        store
    })
}

/// The refusals of `kind` counted for table `carts` so far.
fn refusals(kind: &str) -> u64 {
    store()
        .get_counter_handles()
        .into_iter()
        .filter(|(key, _)| {
            key.name() == "cachefw_writebehind_refusals_total"
                && key
                    .labels()
                    .any(|label| label.key() == "kind" && label.value() == kind)
                && key
                    .labels()
                    .any(|label| label.key() == "table" && label.value() == "carts")
        })
        .map(|(_, value)| value.load(Ordering::SeqCst))
        .sum()
}

/// Every key of `redis` under `prefix` that has no expiry.
fn without_expiry(redis: &RedisServer, prefix: &str) -> Vec<String> {
    redis
        .keys()
        .into_iter()
        .filter(|key| key.starts_with(prefix) && redis.pttl(key) == -1)
        .collect()
}

/// Every entry key of `redis` under `prefix` whose expiry is not within
/// `TTL` (no expiry, or longer).
fn entries_outside_ttl(redis: &RedisServer, prefix: &str) -> Vec<(String, i64)> {
    let ttl = i64::try_from(TTL.as_millis()).expect("ms");
    redis
        .keys()
        .into_iter()
        .filter(|key| key.starts_with(prefix) && !key.contains("%version:"))
        .map(|key| {
            let left = redis.pttl(&key);
            (key, left)
        })
        .filter(|(_, left)| *left < 0 || *left > ttl)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_refused_for_seconds_are_all_written_and_never_read_stale() {
    let (rows, refusal) = if long() {
        (400, Duration::from_secs(30))
    } else {
        (40, Duration::from_secs(3))
    };
    with_kassandra(|session| async move {
        let refused_before = refusals("invalid");
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        // The table does not exist yet: every write is refused (`Invalid`).
        let carts: Repository<Cart> = repository(&session, &cache).await;
        let ids: Vec<Uuid> = (0..rows).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            carts.save(&cart(*id, 1)).await.expect("save");
        }
        let flusher = carts.spawn_flusher();
        let refused_from = Instant::now();
        let mut stale = 0;
        let mut reads = 0;
        let mut saved = 0;
        for id in &ids {
            carts
                .save(&cart(*id, 2))
                .await
                .expect("save during the refusal");
            saved += 1;
        }
        // Reads during the refusal see the acknowledged writes, and the
        // backlog says every record waits.
        while refused_from.elapsed() < refusal {
            for id in &ids {
                let found = carts.find(&CartKey { id: *id }).await.expect("find");
                reads += 1;
                if found.map(|c| c.total) != Some(2) {
                    stale += 1;
                }
            }
            let backlog = carts.backlog().await.expect("backlog");
            assert_eq!(backlog.pending, 2 * rows as u64, "{backlog:?}");
            assert_eq!(backlog.dead, 0, "{backlog:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        create_table::<CartRow>(&session).await;
        // The backoff is at most 30 s; with a few seconds of refusals the
        // next try comes within about as long again.
        drained(&carts, refusal + Duration::from_secs(40)).await;
        let flushed_after = refused_from.elapsed();
        for id in &ids {
            let found = carts.find(&CartKey { id: *id }).await.expect("find");
            reads += 1;
            if found.map(|c| c.total) != Some(2) {
                stale += 1;
            }
        }
        let keys: Vec<CartRowKey> = ids.iter().map(|id| CartRowKey { id: *id }).collect();
        let written = in_cassandra::<CartRow>(&session, &keys).await;
        let expected: Vec<Option<CartRow>> =
            ids.iter().map(|id| Some(row(&cart(*id, 2)))).collect();
        let backlog = carts.backlog().await.expect("backlog");
        println!(
            "refusal {refusal:?}: {saved} saves acknowledged during it over {rows} cached rows, \
             {reads} reads ({stale} stale), drained {flushed_after:?} after the refusal began, \
             backlog after {backlog:?}"
        );
        // Each of the records was refused at least once, and counted by kind
        // (other tests of this binary only add to the count).
        let refused = refusals("invalid") - refused_before;
        println!("refusals counted (kind invalid): {refused}");
        assert!(refused >= 2 * rows as u64, "{refused} refusals counted");
        assert_eq!(stale, 0, "reads of the old rows, of {reads}");
        assert_eq!(written, expected, "every save reaches Cassandra");
        assert_eq!(backlog.dead, 0);
        assert_eq!(entries_outside_ttl(&redis, "shop:v1:"), Vec::new());
        flusher.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_refused_past_dead_letter_after_is_kept_and_replayed() {
    with_kassandra(|session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let carts: Repository<Cart> = repository::<Cart>(&session, &cache)
            .await
            .dead_letter_after(Duration::from_millis(600));
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            carts.save(&cart(*id, 7)).await.expect("save");
        }
        let flusher = carts.spawn_flusher();
        let start = Instant::now();
        loop {
            let backlog = carts.backlog().await.expect("backlog");
            if backlog.dead == 3 {
                assert_eq!(backlog.pending, 0, "dead letters are not pending");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "dead letters within 20 s: {backlog:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Not before dead_letter_after.
        assert!(start.elapsed() >= Duration::from_millis(600));
        // The entries stay, and expire by the entity's TTL.
        for id in &ids {
            let found = carts.find(&CartKey { id: *id }).await.expect("find");
            assert_eq!(found, Some(cart(*id, 7)));
        }
        assert_eq!(entries_outside_ttl(&redis, "shop:v1:"), Vec::new());
        let letters: u64 = redis.cmd("XLEN", &[b"shop:wb:carts:dead"]);
        assert_eq!(letters, 3);

        // The operator creates the table, then replays.
        create_table::<CartRow>(&session).await;
        assert_eq!(carts.replay_dead().await.expect("replay"), 3);
        drained(&carts, Duration::from_secs(20)).await;
        let keys: Vec<CartRowKey> = ids.iter().map(|id| CartRowKey { id: *id }).collect();
        let expected: Vec<Option<CartRow>> =
            ids.iter().map(|id| Some(row(&cart(*id, 7)))).collect();
        assert_eq!(in_cassandra::<CartRow>(&session, &keys).await, expected);
        assert_eq!(carts.backlog().await.expect("backlog").dead, 0);
        assert_eq!(carts.replay_dead().await.expect("replay"), 0);
        flusher.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_never_holds_back_the_valid_records_of_its_row() {
    with_kassandra(|session| async move {
        create_table::<CartRow>(&session).await;
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let carts: Repository<Cart> = repository::<Cart>(&session, &cache)
            .await
            .dead_letter_after(Duration::from_secs(1));
        // A process of the next deploy, whose migration (the `coupon`
        // column) has not run: its records name a column the table lacks.
        let next: Repository<CartV2> = repository(&session, &cache).await;
        let id = Uuid::new_v4();
        let base = cart(id, 1);
        carts.save(&base).await.expect("save");
        let flusher = carts.spawn_flusher();
        drained(&carts, Duration::from_secs(20)).await;
        flusher.abort();

        let key = CartKey { id };
        let total = CartPatch {
            total: Some(5),
            ..Default::default()
        };
        carts.patch(&key, &total).await.expect("valid patch");
        let poison = CartV2 {
            id,
            items: vec!["poison".into()],
            total: 99,
            note: None,
            coupon: Some("HALF".into()),
        };
        next.save(&poison).await.expect("poison save");
        let items = CartPatch {
            items: Some(vec!["tea".into()]),
            ..Default::default()
        };
        carts.patch(&key, &items).await.expect("valid patch");
        assert_eq!(carts.backlog().await.expect("backlog").pending, 3);

        let flusher = carts.spawn_flusher();
        let start = Instant::now();
        loop {
            let backlog = carts.backlog().await.expect("backlog");
            if backlog.pending == 0 && backlog.dead == 1 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "one dead letter within 20 s: {backlog:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let letter: Vec<(String, Fields)> =
            redis.cmd("XRANGE", &[b"shop:wb:carts:dead", b"-", b"+"]);
        let fields = &letter[0].1;
        assert!(
            fields.iter().any(|(name, _)| name == "+coupon"),
            "the dead letter is the record that names coupon: {fields:?}"
        );
        let in_db = in_cassandra::<CartRow>(&session, &[CartRowKey { id }]).await;
        assert_eq!(
            in_db,
            [Some(CartRow {
                id,
                items: vec!["tea".into()],
                total: 5,
                note: base.note.clone(),
            })],
            "both valid patches are written"
        );
        flusher.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushers_of_two_shapes_write_each_others_records_whole() {
    with_kassandra(|session| async move {
        // kassandra has no ALTER TABLE: the wider table, as after the
        // migration of the deploy that adds `coupon`.
        create_table::<CartV2Row>(&session).await;
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let old: Repository<Cart> = repository(&session, &cache).await;
        let new: Repository<CartV2> = repository(&session, &cache).await;

        // Saved by the new shape, flushed by an old flusher: the coupon is
        // written.
        let saved = CartV2 {
            id: Uuid::new_v4(),
            items: vec!["tea".into()],
            total: 4,
            note: None,
            coupon: Some("HALF".into()),
        };
        new.save(&saved).await.expect("save");
        let patched = CartV2Patch {
            coupon: Some(Some("THIRD".into())),
            ..Default::default()
        };
        let other = Uuid::new_v4();
        new.save(&CartV2 {
            id: other,
            items: Vec::new(),
            total: 1,
            note: None,
            coupon: None,
        })
        .await
        .expect("save");
        new.patch(&CartV2Key { id: other }, &patched)
            .await
            .expect("patch");
        let old_flusher = old.spawn_flusher();
        drained(&old, Duration::from_secs(20)).await;
        old_flusher.abort();

        // Saved by the old shape, flushed by a new flusher: written, not
        // dead-lettered.
        let legacy = cart(Uuid::new_v4(), 3);
        old.save(&legacy).await.expect("save");
        old.patch(
            &CartKey { id: legacy.id },
            &CartPatch {
                total: Some(30),
                ..Default::default()
            },
        )
        .await
        .expect("patch");
        let new_flusher = new.spawn_flusher();
        drained(&new, Duration::from_secs(20)).await;
        new_flusher.abort();

        let rows = in_cassandra::<CartV2Row>(
            &session,
            &[
                CartV2RowKey { id: saved.id },
                CartV2RowKey { id: other },
                CartV2RowKey { id: legacy.id },
            ],
        )
        .await;
        assert_eq!(
            rows,
            [
                Some(CartV2Row {
                    id: saved.id,
                    items: saved.items.clone(),
                    total: 4,
                    note: None,
                    coupon: Some("HALF".into()),
                }),
                Some(CartV2Row {
                    id: other,
                    items: Vec::new(),
                    total: 1,
                    note: None,
                    coupon: Some("THIRD".into()),
                }),
                Some(CartV2Row {
                    id: legacy.id,
                    items: legacy.items.clone(),
                    total: 30,
                    note: legacy.note.clone(),
                    coupon: None,
                }),
            ]
        );
        assert_eq!(new.backlog().await.expect("backlog").dead, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_written_before_a_key_version_change_are_settled_where_they_are() {
    with_kassandra(|session| async move {
        create_table::<CartRow>(&session).await;
        let redis = RedisServer::start();
        let v1 = redis_cache(redis.url()).await;
        let carts: Repository<Cart> = repository(&session, &v1).await;
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            carts.save(&cart(*id, 1)).await.expect("save");
        }
        // Pending: no expiry until flushed.
        assert_eq!(without_expiry(&redis, "shop:v1:").len(), 2 * ids.len());
        // The next deploy bumps the key version; only its flushers run.
        let v2 = Cache::builder()
            .redis(redis.url())
            .namespace("shop")
            .version(2)
            .build()
            .await
            .expect("cache");
        let next: Repository<Cart> = repository(&session, &v2).await;
        let flusher = next.spawn_flusher();
        drained(&next, Duration::from_secs(20)).await;
        flusher.abort();
        assert_eq!(without_expiry(&redis, "shop:v1:"), Vec::<String>::new());
        assert_eq!(without_expiry(&redis, "shop:v2:"), Vec::<String>::new());
        assert_eq!(entries_outside_ttl(&redis, "shop:v1:"), Vec::new());
    })
    .await;
}

/// Every `tracing` event of this binary, from the first call on.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer(log.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        log
    })
}

#[derive(Clone)]
struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(needle: &str) -> usize {
    let log = log()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    String::from_utf8_lossy(&log).matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_needs_a_policy_that_never_evicts_keys_without_expiry() {
    let _ = log();
    with_kassandra(|session| async move {
        let evicting = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
        let cache = redis_cache(evicting.url()).await;
        let refused = Repository::<Cart>::new(session.clone(), cache.clone()).await;
        match refused {
            Err(error @ Error::EvictionPolicy { .. }) => {
                let text = error.to_string();
                for needle in ["maxmemory-policy", "allkeys-lru", "noeviction", "volatile-"] {
                    assert!(text.contains(needle), "{needle} in {text}");
                }
            }
            Err(other) => panic!("not the policy's error: {other}"),
            Ok(_) => panic!("allkeys-lru accepted for write-behind"),
        }
        // Entities that are not written behind do not care.
        assert!(
            Repository::<CartRow>::new(session.clone(), cache)
                .await
                .is_ok()
        );
        for policy in ["volatile-lru", "noeviction"] {
            let redis = RedisServer::start_with(&["--maxmemory-policy", policy]);
            let cache = redis_cache(redis.url()).await;
            assert!(
                Repository::<Cart>::new(session.clone(), cache)
                    .await
                    .is_ok(),
                "{policy} accepted"
            );
        }
        // A user that may not run CONFIG: accepted, with one warning.
        let redis = RedisServer::start();
        redis.acl_setuser("app", &["on", ">secret", "~*", "&*", "+@all", "-config"]);
        let needle = "could not check Redis's maxmemory-policy";
        let before = logged(needle);
        for _ in 0..2 {
            let cache = Cache::builder()
                .redis(redis.url())
                .credentials("app", "secret")
                .namespace("shop")
                .build()
                .await
                .expect("cache");
            assert!(
                Repository::<Cart>::new(session.clone(), cache)
                    .await
                    .is_ok()
            );
        }
        assert_eq!(logged(needle) - before, 1, "one warning");
    })
    .await;
}

/// The row every write of the race agrees on, but for the columns only
/// the save sets.
fn raced(id: Uuid) -> Cart {
    Cart {
        id,
        items: vec![format!("new {id}")],
        total: 1,
        note: Some(format!("note {id}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_two_processes_race_every_entry_equals_its_row_and_expires() {
    let (rounds, rows) = if long() { (20, 60) } else { (3, 30) };
    with_kassandra(|session| async move {
        create_table::<CartRow>(&session).await;
        let redis = RedisServer::start();
        // Process A reaches Redis through a proxy that delays its replies:
        // its saves store their entries late, and its flusher is slow.
        let proxy = DelayProxy::start(redis.port());
        proxy.set_delay(Duration::from_millis(15));
        let a: Repository<Cart> = repository(&session, &redis_cache(proxy.url()).await).await;
        let b: Repository<Cart> = repository(&session, &redis_cache(redis.url()).await).await;
        let flushers = [a.spawn_flusher(), b.spawn_flusher()];
        let superseded = AtomicUsize::new(0);
        for round in 0..rounds {
            let ids: Vec<Uuid> = (0..rows).map(|_| Uuid::new_v4()).collect();
            for id in &ids {
                let base = Cart {
                    id: *id,
                    items: vec!["base".into()],
                    total: 0,
                    note: None,
                };
                b.save(&base).await.expect("seed");
            }
            drained(&b, Duration::from_secs(30)).await;
            for id in &ids {
                // Cached as the base row.
                assert!(b.find(&CartKey { id: *id }).await.expect("find").is_some());
            }
            let mut order_a = ids.clone();
            let mut order_b = ids.clone();
            fastrand::shuffle(&mut order_a);
            fastrand::shuffle(&mut order_b);
            let saves = futures_util::stream::iter(order_a.iter().map(|id| {
                let a = &a;
                async move { a.save(&raced(*id)).await.expect("save") }
            }))
            .buffer_unordered(4)
            .collect::<Vec<()>>();
            let patches = futures_util::stream::iter(order_b.iter().map(|id| {
                let b = &b;
                async move {
                    let patch = CartPatch {
                        note: Some(raced(*id).note),
                        ..Default::default()
                    };
                    b.patch(&CartKey { id: *id }, &patch).await.expect("patch");
                }
            }))
            .buffer_unordered(4)
            .collect::<Vec<()>>();
            let reads = async {
                for _ in 0..3 {
                    for id in &ids {
                        let key = CartKey { id: *id };
                        let _ = a.find(&key).await.expect("find");
                        let _ = b.find(&key).await.expect("find");
                    }
                }
            };
            tokio::join!(saves, patches, reads);
            drained(&a, Duration::from_secs(60)).await;

            let keys: Vec<CartRowKey> = ids.iter().map(|id| CartRowKey { id: *id }).collect();
            let in_db = in_cassandra::<CartRow>(&session, &keys).await;
            let expected: Vec<Option<CartRow>> =
                ids.iter().map(|id| Some(row(&raced(*id)))).collect();
            assert_eq!(in_db, expected, "round {round}: Cassandra has every write");
            for id in &ids {
                let key = Cart::cache_key(&CartKey { id: *id });
                let cached = b.cache().get::<Cart>(&key).await.expect("cache read");
                match cached {
                    Some(cached) => assert_eq!(cached, raced(*id), "round {round}: {key}"),
                    None => {
                        superseded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            assert_eq!(
                without_expiry(&redis, "shop:v1:"),
                Vec::<String>::new(),
                "round {round}"
            );
            assert_eq!(
                entries_outside_ttl(&redis, "shop:v1:"),
                Vec::new(),
                "round {round}"
            );
        }
        println!(
            "{rounds} rounds of {rows} rows: {} entries evicted rather than cached after the \
             drain",
            superseded.load(Ordering::Relaxed)
        );
        for flusher in flushers {
            flusher.abort();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_an_older_write_removes_a_fill_and_a_late_store_of_it() {
    use cachefw::__adapter::versioned::{self, Settled, Stored};
    let redis = RedisServer::start();
    let cache = redis_cache(redis.url()).await;
    // A slow flusher settles version 10 after version 20 was settled, and
    // a reader filled the entry from a row that lacked version 10.
    versioned::store(&cache, "row", "v20", 20, None, None)
        .await
        .expect("store");
    versioned::settle(&cache, "row", 20, Some(TTL))
        .await
        .expect("settle");
    assert_eq!(
        versioned::settle(&cache, "row", 10, Some(TTL)).await.ok(),
        Some(Settled::Newer),
        "a newer version's own write stays"
    );
    assert_eq!(
        cache.get::<String>("row").await.ok().flatten().as_deref(),
        Some("v20")
    );
    cache.set("row", "partial fill", TTL).await.expect("fill");
    assert_eq!(
        versioned::settle(&cache, "row", 10, Some(TTL)).await.ok(),
        Some(Settled::Newer)
    );
    assert_eq!(
        cache.get::<String>("row").await.ok().flatten(),
        None,
        "the fill goes"
    );

    // A flusher settles version 30 before its saver stored the entry: the
    // store, landing late, is dropped rather than kept with no expiry.
    assert_eq!(
        versioned::settle(&cache, "late", 30, Some(TTL)).await.ok(),
        Some(Settled::Removed)
    );
    assert_eq!(
        versioned::store(&cache, "late", "pending", 30, None, None)
            .await
            .ok(),
        Some(Stored::Superseded)
    );
    assert_eq!(cache.get::<String>("late").await.ok().flatten(), None);
    assert_eq!(without_expiry(&redis, "shop:v1:"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_the_format_before_are_still_written() {
    with_kassandra(|session| async move {
        create_table::<CartRow>(&session).await;
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let carts: Repository<Cart> = repository(&session, &cache).await;
        // As a flusher before issue 23 left them: MessagePack of the row,
        // or of the key and the patch.
        let saved = cart(Uuid::new_v4(), 8);
        let at = |offset: u64| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_micros();
            (now + u128::from(offset)).to_string()
        };
        let data = rmp_serde::to_vec_named(&saved).expect("encode");
        let t = at(0);
        let _: String = redis.cmd(
            "XADD",
            &[
                b"shop:wb:carts",
                b"*",
                b"f",
                b"1",
                b"k",
                b"s",
                b"t",
                t.as_bytes(),
                b"d",
                &data,
            ],
        );
        let patch = CartPatch {
            total: Some(80),
            ..Default::default()
        };
        let data = rmp_serde::to_vec_named(&(CartKey { id: saved.id }, &patch)).expect("encode");
        let t = at(10);
        let _: String = redis.cmd(
            "XADD",
            &[
                b"shop:wb:carts",
                b"*",
                b"f",
                b"1",
                b"k",
                b"p",
                b"t",
                t.as_bytes(),
                b"d",
                &data,
            ],
        );
        let flusher = carts.spawn_flusher();
        drained(&carts, Duration::from_secs(20)).await;
        flusher.abort();
        let mut expected = row(&saved);
        expected.total = 80;
        assert_eq!(
            in_cassandra::<CartRow>(&session, &[CartRowKey { id: saved.id }]).await,
            [Some(expected)]
        );
        assert_eq!(carts.backlog().await.expect("backlog").dead, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_naming_a_foreign_key_prefix_never_touches_keys_outside_the_cache() {
    with_kassandra(|session| async move {
        create_table::<CartRow>(&session).await;
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let carts: Repository<Cart> = repository(&session, &cache).await;
        // Another application's key, and a record someone else appended
        // that names it through its prefix `p` and row `r`.
        let _: () = redis.cmd("SET", &[b"billing:invoice", b"keep me"]);
        let id = Uuid::new_v4();
        let mut cell = 16_i32.to_be_bytes().to_vec();
        cell.extend_from_slice(id.as_bytes());
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_micros()
            .to_string();
        let _: String = redis.cmd(
            "XADD",
            &[
                b"shop:wb:carts",
                b"*",
                b"f",
                b"2",
                b"k",
                b"s",
                b"t",
                t.as_bytes(),
                b"r",
                b"invoice",
                b"p",
                b"billing:",
                b"=id",
                &cell,
            ],
        );
        let flusher = carts.spawn_flusher();
        drained(&carts, Duration::from_secs(20)).await;
        flusher.abort();
        let kept: Option<String> = redis.cmd("GET", &[b"billing:invoice"]);
        assert_eq!(kept.as_deref(), Some("keep me"));
        assert_eq!(redis.pttl("billing:invoice"), -1, "no expiry given to it");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_with_their_own_flushers_keep_every_write_through_a_refusal() {
    let (rows, refusal) = if long() {
        (200, Duration::from_secs(30))
    } else {
        (20, Duration::from_secs(3))
    };
    with_kassandra(|session| async move {
        let redis = RedisServer::start();
        // Two processes, each with its own cache and flusher; the table
        // does not exist yet, so Cassandra refuses every write of both.
        let a: Repository<Cart> = repository(&session, &redis_cache(redis.url()).await).await;
        let b: Repository<Cart> = repository(&session, &redis_cache(redis.url()).await).await;
        let flushers = [a.spawn_flusher(), b.spawn_flusher()];
        let refused_from = Instant::now();
        let ids: Vec<Uuid> = (0..rows).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            a.save(&raced(*id)).await.expect("save");
            let patch = CartPatch {
                note: Some(raced(*id).note),
                ..Default::default()
            };
            b.patch(&CartKey { id: *id }, &patch).await.expect("patch");
        }
        let mut reads = 0;
        let mut stale = 0;
        while refused_from.elapsed() < refusal {
            for id in &ids {
                for repo in [&a, &b] {
                    reads += 1;
                    if repo.find(&CartKey { id: *id }).await.expect("find") != Some(raced(*id)) {
                        stale += 1;
                    }
                }
            }
            for repo in [&a, &b] {
                let backlog = repo.backlog().await.expect("backlog");
                assert_eq!(backlog.pending, 2 * rows as u64, "{backlog:?}");
                assert_eq!(backlog.dead, 0, "{backlog:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        create_table::<CartRow>(&session).await;
        drained(&a, refusal + Duration::from_secs(40)).await;
        for flusher in flushers {
            flusher.abort();
        }
        let keys: Vec<CartRowKey> = ids.iter().map(|id| CartRowKey { id: *id }).collect();
        let expected: Vec<Option<CartRow>> = ids.iter().map(|id| Some(row(&raced(*id)))).collect();
        assert_eq!(in_cassandra::<CartRow>(&session, &keys).await, expected);
        for id in &ids {
            let key = Cart::cache_key(&CartKey { id: *id });
            let cached = a.cache().get::<Cart>(&key).await.expect("cache read");
            assert!(
                cached.is_none() || cached == Some(raced(*id)),
                "cache = Cassandra for {key}: {cached:?}"
            );
        }
        assert_eq!(
            stale, 0,
            "reads of a row without its pending writes, of {reads}"
        );
        assert_eq!(a.backlog().await.expect("backlog").dead, 0);
        assert_eq!(without_expiry(&redis, "shop:v1:"), Vec::<String>::new());
        assert_eq!(entries_outside_ttl(&redis, "shop:v1:"), Vec::new());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_dates_a_foreign_first_entry_by_its_id() {
    with_kassandra(|session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let carts: Repository<Cart> = repository(&session, &cache).await;
        // No flusher runs: an entry someone else appended, with no
        // timestamp, then a record.
        let _: String = redis.cmd("XADD", &[b"shop:wb:carts", b"*", b"junk", b"1"]);
        carts.save(&cart(Uuid::new_v4(), 1)).await.expect("save");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let backlog = carts.backlog().await.expect("backlog");
        assert_eq!(backlog.pending, 2);
        let oldest = backlog.oldest.expect("an age while records wait");
        assert!(oldest >= Duration::from_millis(50), "{backlog:?}");
        assert!(oldest < Duration::from_secs(60), "{backlog:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushers_aborted_at_any_point_lose_no_record() {
    let rows = if long() { 400 } else { 60 };
    with_kassandra(|session| async move {
        let redis = RedisServer::start();
        let a: Repository<Cart> = repository(&session, &redis_cache(redis.url()).await).await;
        let b: Repository<Cart> = repository(&session, &redis_cache(redis.url()).await).await;
        let ids: Vec<Uuid> = (0..rows).map(|_| Uuid::new_v4()).collect();
        // Refused first: a flusher takes every record, then is aborted
        // while it holds them.
        for id in &ids {
            a.save(&raced(*id)).await.expect("save");
        }
        let holder = a.spawn_flusher();
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder.abort();
        create_table::<CartRow>(&session).await;
        // Then flushers of both processes, each aborted after a random
        // while (at whatever await it is in), while patches keep coming.
        let mut aborted = 0;
        for (n, id) in ids.iter().enumerate() {
            let repo = if n % 2 == 0 { &a } else { &b };
            let patch = CartPatch {
                note: Some(raced(*id).note),
                ..Default::default()
            };
            repo.patch(&CartKey { id: *id }, &patch)
                .await
                .expect("patch");
            let flusher = repo.spawn_flusher();
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..30))).await;
            flusher.abort();
            aborted += 1;
        }
        let last = [a.spawn_flusher(), b.spawn_flusher()];
        drained(&a, Duration::from_secs(60)).await;
        for flusher in last {
            flusher.abort();
        }
        println!("{aborted} flushers aborted");
        let keys: Vec<CartRowKey> = ids.iter().map(|id| CartRowKey { id: *id }).collect();
        let expected: Vec<Option<CartRow>> = ids.iter().map(|id| Some(row(&raced(*id)))).collect();
        assert_eq!(in_cassandra::<CartRow>(&session, &keys).await, expected);
        assert_eq!(a.backlog().await.expect("backlog").dead, 0);
        assert_eq!(without_expiry(&redis, "shop:v1:"), Vec::<String>::new());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_dead_letters_while_flushers_bury_them_loses_none() {
    with_kassandra(|session| async move {
        let redis = RedisServer::start();
        let a: Repository<Cart> = repository::<Cart>(&session, &redis_cache(redis.url()).await)
            .await
            .dead_letter_after(Duration::from_millis(200));
        let b: Repository<Cart> = repository::<Cart>(&session, &redis_cache(redis.url()).await)
            .await
            .dead_letter_after(Duration::from_millis(200));
        let ids: Vec<Uuid> = (0..30).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            a.save(&raced(*id)).await.expect("save");
        }
        let flushers = [a.spawn_flusher(), b.spawn_flusher()];
        // While the table is missing, records go dead and come back, over
        // and over, from two processes at once.
        let start = Instant::now();
        let mut replayed = 0;
        while start.elapsed() < Duration::from_secs(3) {
            let (x, y) = tokio::join!(a.replay_dead(), b.replay_dead());
            replayed += x.expect("replay") + y.expect("replay");
            // Each record once (twice for the moment a flusher has copied
            // it to the dead letters and not yet acknowledged it).
            let backlog = a.backlog().await.expect("backlog");
            assert!(
                backlog.pending + backlog.dead <= 2 * ids.len() as u64,
                "records copied by concurrent replays: {backlog:?}"
            );
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..100))).await;
        }
        assert!(replayed > 0, "the race ran: some letters were replayed");
        create_table::<CartRow>(&session).await;
        let start = Instant::now();
        loop {
            a.replay_dead().await.expect("replay");
            let backlog = a.backlog().await.expect("backlog");
            if backlog.pending == 0 && backlog.dead == 0 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "drained within 60 s: {backlog:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for flusher in flushers {
            flusher.abort();
        }
        println!("{replayed} letters replayed during the refusal");
        let keys: Vec<CartRowKey> = ids.iter().map(|id| CartRowKey { id: *id }).collect();
        let expected: Vec<Option<CartRow>> = ids.iter().map(|id| Some(row(&raced(*id)))).collect();
        assert_eq!(in_cassandra::<CartRow>(&session, &keys).await, expected);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_of_another_type_does_not_hold_its_record_back() {
    with_kassandra(|session| async move {
        create_table::<CartRow>(&session).await;
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let carts: Repository<Cart> = repository(&session, &cache).await;
        let id = Uuid::new_v4();
        carts.save(&cart(id, 3)).await.expect("save");
        // Someone else's hash where the pending entry was.
        let entry = format!("shop:v1:{}", Cart::cache_key(&CartKey { id }));
        let _: () = redis.cmd("DEL", &[entry.as_bytes()]);
        let _: () = redis.cmd("HSET", &[entry.as_bytes(), b"a", b"b"]);
        let flusher = carts.spawn_flusher();
        drained(&carts, Duration::from_secs(20)).await;
        flusher.abort();
        assert_eq!(
            in_cassandra::<CartRow>(&session, &[CartRowKey { id }]).await,
            [Some(row(&cart(id, 3)))]
        );
    })
    .await;
}

/// How many times `redis` was sent `command` so far, refused calls too.
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let info: String = redis.cmd("INFO", &[b"commandstats"]);
    let stat = format!("cmdstat_{command}:");
    info.lines()
        .filter_map(|line| line.strip_prefix(&stat))
        .flat_map(|fields| fields.split(','))
        .filter_map(|field| {
            let (name, value) = field.split_once('=')?;
            matches!(name, "calls" | "rejected_calls").then(|| value.parse::<u64>().ok())?
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flusher_that_cannot_settle_retries_at_a_pace() {
    with_kassandra(|session| async move {
        create_table::<CartRow>(&session).await;
        let redis = RedisServer::start();
        let carts: Repository<Cart> = repository(&session, &redis_cache(redis.url()).await).await;
        carts.save(&cart(Uuid::new_v4(), 4)).await.expect("save");
        // A flusher whose user may read the stream but not touch the
        // entries: its written record cannot be settled.
        redis.acl_setuser("flusher", &["on", ">secret", "~shop:wb:*", "&*", "+@all"]);
        let cache = Cache::builder()
            .redis(redis.url())
            .credentials("flusher", "secret")
            .namespace("shop")
            .build()
            .await
            .expect("cache");
        let flushing: Repository<Cart> = repository(&session, &cache).await;
        let flusher = flushing.spawn_flusher();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = calls(&redis, "evalsha") + calls(&redis, "xreadgroup");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let during = calls(&redis, "evalsha") + calls(&redis, "xreadgroup") - before;
        flusher.abort();
        // Tried again about every 100 ms (the longest poll), not in a
        // loop (which sent tens of thousands of calls in 2 s).
        assert!(during <= 400, "{during} settles and reads in 2 s");
        assert_eq!(carts.backlog().await.expect("backlog").pending, 1);
    })
    .await;
}
