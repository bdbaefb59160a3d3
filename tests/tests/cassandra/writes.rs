//! The write paths of the Cassandra adapter (write-through, write-behind,
//! patches) against kassandra and private redis-servers.
//!
//! kassandra applies writes in the order they arrive and ignores their
//! timestamps (checked in its source: it parses the protocol's default
//! timestamp and never stores it, so a later write of an older timestamp
//! wins there). So every test here orders its writes on purpose: rows
//! written once, or written by one task in sequence and flushed in stream
//! order. kassandra also drops a bound null instead of writing it (the old
//! value stays), so nulls written over values are tested live only. What
//! only timestamps decide (a replayed old record, a delete before an older
//! pending save, two flushers racing on one row) is in
//! `live.rs`.
//!
//! kassandra has no counters (a `counter` column in `CREATE TABLE` panics
//! its server thread, and it cannot parse `SET c = c + ?`) and no
//! lightweight transactions (it drops `IF NOT EXISTS`, writes the row and
//! answers without `[applied]`). So here the counters are the refusals
//! (every call that would set a counter's value, and an increment the
//! server refuses), and `insert_if_not_exists` is the answer without
//! `[applied]`; the counting itself, increments evicting the row (and
//! replayed when Redis was away), and applied and refused lightweight
//! transactions are in `live.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_cassandra::{Entity, Error, Repository};
use cachefw_tests::cassandra::{connect, repository, with_kassandra};
use cachefw_tests::eventually;
use cachefw_tests::{DelayProxy, RedisCluster, RedisServer};
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

/// The same table, invalidated on write: over an empty in-memory cache it
/// reads what Cassandra holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "carts", ttl = "10m")]
pub struct CartRow {
    #[partition_key]
    pub id: Uuid,
    pub items: Vec<String>,
    pub total: i64,
    pub note: Option<String>,
}

/// Written through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "accounts", ttl = "10m", write = "through")]
pub struct Account {
    #[partition_key]
    pub id: Uuid,
    pub owner: String,
    pub balance: i64,
    pub note: Option<String>,
}

/// Invalidated on write (the default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "profiles", ttl = "10m")]
pub struct Profile {
    #[partition_key]
    pub id: Uuid,
    pub name: String,
    pub city: String,
    pub bio: Option<String>,
}

/// A table of counters. Never created here: kassandra cannot hold one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "shop",
    table = "page_hits",
    ttl = "10m",
    cache_partitions = true
)]
pub struct PageHits {
    #[partition_key]
    pub site: String,
    #[clustering_key]
    pub path: String,
    #[counter]
    pub views: i64,
    #[counter]
    pub clicks: i64,
}

const CLAIM_IDLE: Duration = Duration::from_millis(500);
const MINUTE: Duration = Duration::from_secs(60);

async fn redis_cache(url: String) -> Cache {
    Cache::builder()
        .redis(url)
        .namespace("shop")
        .build()
        .await
        .expect("cache")
}

/// What Cassandra holds for each key: read through a fresh in-memory cache.
async fn in_cassandra<T: Entity>(session: &Arc<Session>, keys: &[T::Key]) -> Vec<Option<T>> {
    let empty = Cache::builder().in_memory().build().await.expect("cache");
    let rows: Repository<T> = Repository::new(session.clone(), empty)
        .await
        .expect("repository");
    rows.find_many(keys).await.expect("read Cassandra")
}

fn cart_row(cart: &Cart) -> CartRow {
    CartRow {
        id: cart.id,
        items: cart.items.clone(),
        total: cart.total,
        note: cart.note.clone(),
    }
}

/// Waits until no record waits for a flusher, or fails after `deadline`.
async fn drained(carts: &Repository<Cart>, deadline: Duration) {
    let start = Instant::now();
    loop {
        let backlog = carts.backlog().await;
        if backlog
            .as_ref()
            .is_ok_and(|b| b.pending == 0 && b.oldest.is_none())
        {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "the backlog drains within {deadline:?}: {backlog:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether stored bytes are a cachefw lease marker (header `CF 02 'L'`).
fn is_lease(bytes: &[u8]) -> bool {
    bytes.len() > 3 && bytes[..3] == [0xCF, 0x02, b'L']
}

fn proxied(proxy: &DelayProxy) -> SocketAddr {
    let url = proxy.url();
    let port = url
        .rsplit(':')
        .next()
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no port in {url}"));
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn cart(total: i64) -> Cart {
    Cart {
        id: Uuid::new_v4(),
        items: vec![format!("item {total}")],
        total,
        note: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_over_an_in_memory_cache_is_refused() {
    with_kassandra(|_, session| async move {
        let memory = Cache::builder().in_memory().build().await.expect("cache");
        let refused = Repository::<Cart>::new(session.clone(), memory.clone()).await;
        let Err(error) = refused else {
            panic!("a write-behind repository over memory was built");
        };
        assert!(
            matches!(
                error,
                Error::WriteBehindNeedsRedis {
                    table: "carts",
                    backend: "memory"
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("needs a Redis cache"), "{error}");
        // Write-through works in memory.
        let accounts: Repository<Account> = repository(&session, &memory).await;
        let account = Account {
            id: Uuid::new_v4(),
            owner: "ada".into(),
            balance: 1,
            note: None,
        };
        accounts.save(&account).await.expect("save");
        assert_eq!(
            memory
                .get::<Account>(&Account::cache_key(&account.key()))
                .await
                .expect("get"),
            Some(account),
            "stored by the save"
        );
    })
    .await;
}

/// A reader misses, takes the lease and reads the old row; the save lands
/// while the reader's answer is held back by a proxy; the reader then
/// tries to fill the old row. The saved row must be what stays cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_the_old_row_never_fills_it_after_a_write_through_save() {
    with_kassandra(|addr, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let accounts: Repository<Account> = repository(&session, &cache).await;
        let proxy = DelayProxy::start(addr.port());
        let slow: Repository<Account> =
            Repository::new(connect(proxied(&proxy), None).await, cache.clone())
                .await
                .expect("repository");
        let old = Account {
            id: Uuid::new_v4(),
            owner: "ada".into(),
            balance: 10,
            note: None,
        };
        accounts.save(&old).await.expect("save");
        let entry = format!("shop:v1:{}", Account::cache_key(&old.key()));
        assert!(
            cache
                .delete(&Account::cache_key(&old.key()))
                .await
                .expect("delete")
        );

        proxy.set_delay(Duration::from_millis(500));
        let sent = proxy.requests();
        let key = old.key();
        let reader = tokio::spawn(async move { slow.find(&key).await });
        // The reader holds the lease, and its SELECT has reached kassandra.
        eventually(Duration::from_secs(5), "the reader leases the key", || {
            redis.raw_get(&entry).is_some_and(|bytes| is_lease(&bytes)) && proxy.requests() > sent
        })
        .await;
        let new = Account {
            balance: 20,
            ..old.clone()
        };
        accounts.save(&new).await.expect("save");
        let read = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("the reader finishes")
            .expect("the reader does not panic")
            .expect("find");
        assert_eq!(read, Some(old), "the reader read the old row");
        assert_eq!(
            cache
                .get::<Account>(&Account::cache_key(&new.key()))
                .await
                .expect("get"),
            Some(new.clone()),
            "the saved row stays cached"
        );
        assert_eq!(accounts.find(&new.key()).await.expect("find"), Some(new));
    })
    .await;
}

/// Save A takes its timestamp first but its answer is held back; save B
/// lands after it and returns; A's store comes last and must be dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_saves_never_leave_the_older_row_cached() {
    with_kassandra(|addr, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let accounts: Repository<Account> = repository(&session, &cache).await;
        let proxy = DelayProxy::start(addr.port());
        let slow: Repository<Account> =
            Repository::new(connect(proxied(&proxy), None).await, cache.clone())
                .await
                .expect("repository");
        let id = Uuid::new_v4();
        let first = Account {
            id,
            owner: "first".into(),
            balance: 1,
            note: None,
        };
        let second = Account {
            owner: "second".into(),
            balance: 2,
            ..first.clone()
        };
        proxy.set_delay(Duration::from_millis(400));
        let sent = proxy.requests();
        let older = {
            let first = first.clone();
            tokio::spawn(async move { slow.save(&first).await })
        };
        eventually(
            Duration::from_secs(5),
            "the first save reaches kassandra",
            || proxy.requests() > sent,
        )
        .await;
        accounts.save(&second).await.expect("second save");
        tokio::time::timeout(Duration::from_secs(10), older)
            .await
            .expect("the first save returns")
            .expect("no panic")
            .expect("first save");
        let key = Account::cache_key(&first.key());
        assert_eq!(
            cache.get::<Account>(&key).await.expect("get"),
            Some(second.clone()),
            "the newer save stays cached"
        );
        assert_eq!(
            in_cassandra::<Account>(&session, &[first.key()]).await,
            [Some(second)],
            "kassandra applied them in the order they came"
        );
        drop(redis);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_through_keeps_an_older_save_in_flight_out_of_the_cache() {
    with_kassandra(|addr, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let accounts: Repository<Account> = repository(&session, &cache).await;
        let proxy = DelayProxy::start(addr.port());
        let slow: Repository<Account> =
            Repository::new(connect(proxied(&proxy), None).await, cache.clone())
                .await
                .expect("repository");
        let account = Account {
            id: Uuid::new_v4(),
            owner: "ada".into(),
            balance: 1,
            note: None,
        };
        proxy.set_delay(Duration::from_millis(400));
        let sent = proxy.requests();
        let save = {
            let account = account.clone();
            tokio::spawn(async move { slow.save(&account).await })
        };
        eventually(Duration::from_secs(5), "the save reaches kassandra", || {
            proxy.requests() > sent
        })
        .await;
        accounts.delete(&account.key()).await.expect("delete");
        tokio::time::timeout(Duration::from_secs(10), save)
            .await
            .expect("the save returns")
            .expect("no panic")
            .expect("save");
        assert_eq!(
            cache
                .get::<Account>(&Account::cache_key(&account.key()))
                .await
                .expect("get"),
            None,
            "the save, older than the delete, did not store"
        );
        assert_eq!(
            in_cassandra::<Account>(&session, &[account.key()]).await,
            [None]
        );
        drop(redis);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_change_only_their_columns_in_every_write_mode() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;

        // Invalidate.
        let profiles: Repository<Profile> = repository(&session, &cache).await;
        let profile = Profile {
            id: Uuid::new_v4(),
            name: "Ada".into(),
            city: "London".into(),
            bio: Some("maths".into()),
        };
        profiles.save(&profile).await.expect("save");
        assert!(profiles.find(&profile.key()).await.expect("find").is_some());
        let key = profile.key();
        let rename = ProfilePatch {
            name: Some("Ada L.".into()),
            ..Default::default()
        };
        let relocate = ProfilePatch {
            city: Some("Paris".into()),
            bio: Some(Some("logic".into())),
            ..Default::default()
        };
        let (renamed, moved) = tokio::join!(
            profiles.patch(&key, &rename),
            profiles.patch(&key, &relocate)
        );
        renamed.expect("patch");
        moved.expect("patch");
        let expected = Profile {
            name: "Ada L.".into(),
            city: "Paris".into(),
            bio: Some("logic".into()),
            ..profile.clone()
        };
        assert_eq!(
            profiles.find(&profile.key()).await.expect("find"),
            Some(expected.clone()),
            "the cached row was evicted"
        );
        assert_eq!(
            in_cassandra::<Profile>(&session, &[profile.key()]).await,
            [Some(expected)]
        );
        // An empty patch writes nothing.
        profiles
            .patch(&profile.key(), &ProfilePatch::default())
            .await
            .expect("empty patch");

        // Through: read back and stored.
        let accounts: Repository<Account> = repository(&session, &cache).await;
        let account = Account {
            id: Uuid::new_v4(),
            owner: "ada".into(),
            balance: 5,
            note: Some("vip".into()),
        };
        accounts.save(&account).await.expect("save");
        let key = account.key();
        let pay = AccountPatch {
            balance: Some(7),
            ..Default::default()
        };
        let rename = AccountPatch {
            owner: Some("grace".into()),
            ..Default::default()
        };
        let (paid, renamed) =
            tokio::join!(accounts.patch(&key, &pay), accounts.patch(&key, &rename));
        paid.expect("patch");
        renamed.expect("patch");
        let expected = Account {
            owner: "grace".into(),
            balance: 7,
            ..account.clone()
        };
        assert_eq!(
            in_cassandra::<Account>(&session, &[account.key()]).await,
            [Some(expected.clone())]
        );
        let loads = cache.stats().loads;
        assert_eq!(
            accounts.find(&account.key()).await.expect("find"),
            Some(expected)
        );
        assert_eq!(
            cache.stats().loads,
            loads,
            "read back into the cache by the patch"
        );

        // Behind: the cached row is patched at once, Cassandra after the flush.
        let carts: Repository<Cart> = repository(&session, &cache).await;
        let flusher = carts.spawn_flusher();
        let saved = Cart {
            note: Some("gift".into()),
            ..cart(3)
        };
        carts.save(&saved).await.expect("save");
        let key = saved.key();
        let price = CartPatch {
            total: Some(12),
            ..Default::default()
        };
        let fill = CartPatch {
            items: Some(vec!["tea".into(), "cake".into()]),
            note: Some(Some("wrapped".into())),
            ..Default::default()
        };
        let (priced, noted) = tokio::join!(carts.patch(&key, &price), carts.patch(&key, &fill));
        priced.expect("patch");
        noted.expect("patch");
        let expected = Cart {
            items: vec!["tea".into(), "cake".into()],
            total: 12,
            note: Some("wrapped".into()),
            ..saved.clone()
        };
        assert_eq!(
            carts.find(&saved.key()).await.expect("find"),
            Some(expected.clone())
        );
        drained(&carts, Duration::from_secs(20)).await;
        assert_eq!(
            in_cassandra::<CartRow>(&session, &[CartRowKey { id: saved.id }]).await,
            [Some(cart_row(&expected))]
        );
        assert_eq!(
            carts.find(&saved.key()).await.expect("find"),
            Some(expected)
        );
        flusher.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_saves_live_in_redis_until_flushed() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let carts: Repository<Cart> = repository(&session, &cache).await;
        let saved: Vec<Cart> = (0..20).map(cart).collect();
        for cart in &saved {
            carts.save(cart).await.expect("save");
        }
        let backlog = carts.backlog().await.expect("backlog");
        assert_eq!(backlog.pending, 20);
        assert!(
            backlog
                .oldest
                .is_some_and(|age| age < Duration::from_secs(30)),
            "{backlog:?}"
        );
        let keys: Vec<CartRowKey> = saved.iter().map(|c| CartRowKey { id: c.id }).collect();
        assert!(
            in_cassandra::<CartRow>(&session, &keys)
                .await
                .iter()
                .all(Option::is_none),
            "nothing reached Cassandra before a flusher ran"
        );
        // Reads see the writes, from entries that do not expire before the flush.
        let entry = format!("shop:v1:{}", Cart::cache_key(&saved[0].key()));
        assert_eq!(redis.pttl(&entry), -1, "no expiry while unflushed");
        let found = carts
            .find_many(&saved.iter().map(Entity::key).collect::<Vec<_>>())
            .await
            .expect("find_many");
        assert_eq!(found, saved.iter().cloned().map(Some).collect::<Vec<_>>());
        assert_eq!(
            redis
                .keys()
                .iter()
                .filter(|k| k.starts_with("shop:wb:"))
                .collect::<Vec<_>>(),
            ["shop:wb:carts"],
            "one stream per table, outside the version"
        );
        // clear() leaves the stream alone.
        cache.clear().await.expect("clear");
        assert_eq!(carts.backlog().await.expect("backlog").pending, 20);

        let flusher = carts.spawn_flusher();
        drained(&carts, Duration::from_secs(20)).await;
        let expected: Vec<Option<CartRow>> = saved.iter().map(|c| Some(cart_row(c))).collect();
        assert_eq!(in_cassandra::<CartRow>(&session, &keys).await, expected);
        // Settled: entries that are still there expire like any other now.
        carts.save(&saved[0]).await.expect("save");
        drained(&carts, Duration::from_secs(20)).await;
        let pttl = redis.pttl(&entry);
        assert!(
            pttl > 0 && pttl <= 600_000,
            "the flushed entry expires: {pttl}"
        );
        flusher.abort();
    })
    .await;
}

/// 10,000 saves from 8 tasks, each saving its own 50 rows in turn. The
/// first flusher writes to Cassandra through a slow proxy, so that it
/// always holds records in flight; it is aborted halfway, and a second one
/// takes its records over. Every row ends as its last save, none lost.
///
/// The second flusher starts once the first one's records can be claimed:
/// it claims them before it reads newer records, so kassandra, which
/// applies writes in arrival order, sees each row's writes in order. (With
/// timestamps a live node needs no such care: `live.rs` starts
/// both at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_flusher_takes_over_from_an_aborted_one_and_nothing_is_lost() {
    with_kassandra(|addr, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let carts = Arc::new(
            repository::<Cart>(&session, &cache)
                .await
                .flusher_claim_idle(CLAIM_IDLE),
        );
        let proxy = DelayProxy::start(addr.port());
        let slow = Repository::<Cart>::new(connect(proxied(&proxy), None).await, cache.clone())
            .await
            .expect("repository")
            .flusher_claim_idle(CLAIM_IDLE);
        proxy.set_delay(Duration::from_millis(50));
        let mut first = slow.spawn_flusher();

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
                        items: vec![format!("item {n}")],
                        total: n,
                        note: Some(format!("note {n}")),
                    };
                    carts.save(&cart).await.expect("save");
                    last.insert(id, cart);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                last
            }));
        }

        eventually(Duration::from_secs(60), "half the saves", || {
            done.load(Ordering::Relaxed) >= 5_000
        })
        .await;
        // Aborted while it holds records (it can ack them all between the
        // look and the abort: then it is started again, a few times).
        let mut attempts = 0;
        loop {
            eventually(
                Duration::from_secs(10),
                "the first flusher holds records",
                || pending(&redis) > 0,
            )
            .await;
            first.abort();
            assert!(
                tokio::time::timeout(Duration::from_secs(5), first)
                    .await
                    .expect("the abort ends the task")
                    .is_err_and(|error| error.is_cancelled()),
                "aborted"
            );
            if pending(&redis) > 0 {
                break;
            }
            attempts += 1;
            assert!(
                attempts < 5,
                "the aborted flusher left records to take over"
            );
            first = slow.spawn_flusher();
        }
        eventually(
            Duration::from_secs(10),
            "its records idle past the claim time",
            || idle_pending(&redis, CLAIM_IDLE) == pending(&redis),
        )
        .await;
        let second = carts.spawn_flusher();

        let mut expected = HashMap::new();
        for task in tasks {
            expected.extend(
                tokio::time::timeout(Duration::from_secs(120), task)
                    .await
                    .expect("the saves finish")
                    .expect("no panic"),
            );
        }
        assert_eq!(done.load(Ordering::Relaxed), 10_000);
        assert_eq!(expected.len(), 400);
        drained(&carts, Duration::from_secs(60)).await;
        assert_eq!(pending(&redis), 0, "every record acknowledged");
        let dead: u64 = redis.cmd("XLEN", &[b"shop:wb:carts:dead"]);
        assert_eq!(dead, 0, "no dead letters");

        let ids: Vec<Uuid> = expected.keys().copied().collect();
        let rows = in_cassandra::<CartRow>(
            &session,
            &ids.iter().map(|&id| CartRowKey { id }).collect::<Vec<_>>(),
        )
        .await;
        let cached = carts
            .find_many(&ids.iter().map(|&id| CartKey { id }).collect::<Vec<_>>())
            .await
            .expect("find_many");
        for ((id, row), cached) in ids.iter().zip(rows).zip(cached) {
            let last = &expected[id];
            assert_eq!(
                row,
                Some(cart_row(last)),
                "Cassandra holds the last save of {id}"
            );
            assert_eq!(
                cached.as_ref(),
                Some(last),
                "the cache holds the last save of {id}"
            );
        }
        second.abort();
    })
    .await;
}

/// Records taken and not acknowledged, in the flushers' group.
fn pending(redis: &RedisServer) -> u64 {
    let summary: redis::Value = redis.cmd("XPENDING", &[b"shop:wb:carts", b"cachefw-flushers"]);
    match summary {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(count)) => u64::try_from(*count).unwrap_or(0),
            other => panic!("XPENDING count: {other:?}"),
        },
        other => panic!("XPENDING: {other:?}"),
    }
}

/// Of those, how many stayed unacknowledged for `idle` at least.
fn idle_pending(redis: &RedisServer, idle: Duration) -> u64 {
    let idle = idle.as_millis().to_string();
    let entries: Vec<redis::Value> = redis.cmd(
        "XPENDING",
        &[
            b"shop:wb:carts",
            b"cachefw-flushers",
            b"IDLE",
            idle.as_bytes(),
            b"-",
            b"+",
            b"100000",
        ],
    );
    entries.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_while_redis_is_down_goes_to_cassandra() {
    with_kassandra(|_, session| async move {
        let mut redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let carts: Repository<Cart> = repository(&session, &cache).await;
        let before = cart(1);
        carts.save(&before).await.expect("save");
        redis.stop();

        let during = cart(2);
        tokio::time::timeout(Duration::from_secs(5), carts.save(&during))
            .await
            .expect("the save does not hang")
            .expect("a save while Redis is down succeeds");
        assert_eq!(
            in_cassandra::<CartRow>(&session, &[CartRowKey { id: during.id }]).await,
            [Some(cart_row(&during))],
            "written to Cassandra directly"
        );
        assert_eq!(
            carts.find(&during.key()).await.expect("find"),
            Some(during.clone())
        );
        assert!(
            matches!(
                carts.backlog().await,
                Err(Error::Stream { table: "carts", .. })
            ),
            "the backlog cannot be read without Redis"
        );
        // Rewritten directly while a record of it waits: Cassandra has it
        // now, and the entry of the older write is not served.
        let rewritten = Cart {
            total: 3,
            ..before.clone()
        };
        carts.save(&rewritten).await.expect("save");
        assert_eq!(
            in_cassandra::<CartRow>(&session, &[CartRowKey { id: before.id }]).await,
            [Some(cart_row(&rewritten))]
        );

        redis.restart();
        // Without persistence the restarted Redis lost the record of
        // `before` (which Cassandra never saw): the durability of the
        // Redis that took it.
        let flusher = carts.spawn_flusher();
        let start = Instant::now();
        while carts.backlog().await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "Redis answers again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            carts.find(&rewritten.key()).await.expect("find"),
            Some(rewritten)
        );
        flusher.abort();
    })
    .await;
}

/// Saves acknowledged by a Redis with `appendfsync always`, no flusher
/// running; Redis crashes (SIGKILL) and comes back from its append-only
/// file; a flusher started then writes every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_redis_crash_with_aof() {
    with_kassandra(|_, session| async move {
        let mut redis = RedisServer::start_durable("always");
        let cache = redis_cache(redis.url()).await;
        let carts = Arc::new(repository::<Cart>(&session, &cache).await);
        let mut tasks = Vec::new();
        for task in 0..4_i64 {
            let carts = carts.clone();
            tasks.push(tokio::spawn(async move {
                let mut saved = Vec::new();
                for n in 0..125 {
                    let cart = cart(task * 1_000 + n);
                    carts.save(&cart).await.expect("save");
                    saved.push(cart);
                }
                saved
            }));
        }
        let mut saved = Vec::new();
        for task in tasks {
            saved.extend(task.await.expect("no panic"));
        }
        assert_eq!(carts.backlog().await.expect("backlog").pending, 500);
        tokio::task::block_in_place(|| redis.restart());

        let flusher = carts.spawn_flusher();
        drained(&carts, Duration::from_secs(30)).await;
        let keys: Vec<CartRowKey> = saved.iter().map(|c| CartRowKey { id: c.id }).collect();
        let rows = in_cassandra::<CartRow>(&session, &keys).await;
        let expected: Vec<Option<CartRow>> = saved.iter().map(|c| Some(cart_row(c))).collect();
        assert_eq!(rows, expected, "every acknowledged save was flushed");
        flusher.abort();
    })
    .await;
}

/// A Redis with `appendfsync everysec` restarted gracefully (SIGTERM) while
/// 4 tasks save and a flusher runs: saves during the restart go to
/// Cassandra, the others through the stream; every one arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_during_write_behind_loses_no_acknowledged_write() {
    with_kassandra(|_, session| async move {
        let mut redis = RedisServer::start_durable("everysec");
        let cache = redis_cache(redis.url()).await;
        let carts = Arc::new(repository::<Cart>(&session, &cache).await);
        let flusher = carts.spawn_flusher();
        let done = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for task in 0..4_i64 {
            let (carts, done) = (carts.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut saved = Vec::new();
                for n in 0..500 {
                    let cart = cart(task * 1_000 + n);
                    carts.save(&cart).await.expect("every save succeeds");
                    saved.push(cart);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                saved
            }));
        }
        eventually(Duration::from_secs(60), "a quarter of the saves", || {
            done.load(Ordering::Relaxed) >= 500
        })
        .await;
        let errors = cache.stats().errors;
        tokio::task::block_in_place(|| redis.restart_gracefully());
        let mut saved = Vec::new();
        for task in tasks {
            saved.extend(
                tokio::time::timeout(Duration::from_secs(120), task)
                    .await
                    .expect("the saves finish")
                    .expect("no panic"),
            );
        }
        assert!(
            cache.stats().errors > errors,
            "saves met the restart: {:?}",
            cache.stats()
        );
        drained(&carts, Duration::from_secs(60)).await;
        let keys: Vec<CartRowKey> = saved.iter().map(|c| CartRowKey { id: c.id }).collect();
        let rows = in_cassandra::<CartRow>(&session, &keys).await;
        let missing = rows.iter().filter(|row| row.is_none()).count();
        assert_eq!(missing, 0, "of {} saves", saved.len());
        let expected: Vec<Option<CartRow>> = saved.iter().map(|c| Some(cart_row(c))).collect();
        assert_eq!(rows, expected);
        flusher.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_read_becomes_a_dead_letter() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        // Left pending (a newer flusher may read it) until it has not read
        // for dead_letter_after.
        let carts: Repository<Cart> = repository::<Cart>(&session, &cache)
            .await
            .flusher_claim_idle(CLAIM_IDLE)
            .dead_letter_after(Duration::from_millis(300));
        let good = cart(1);
        carts.save(&good).await.expect("save");
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
                b"1",
                b"d",
                b"\xc1garbage",
            ],
        );
        assert_eq!(carts.backlog().await.expect("backlog").pending, 2);
        let flusher = carts.spawn_flusher();
        drained(&carts, Duration::from_secs(20)).await;
        let dead: u64 = redis.cmd("XLEN", &[b"shop:wb:carts:dead"]);
        assert_eq!(dead, 1, "the garbage record is kept as a dead letter");
        assert_eq!(carts.backlog().await.expect("backlog").dead, 1);
        assert_eq!(
            in_cassandra::<CartRow>(&session, &[CartRowKey { id: good.id }]).await,
            [Some(cart_row(&good))]
        );
        flusher.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_behind_delete_goes_to_cassandra_at_once() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let carts: Repository<Cart> = repository(&session, &cache).await;
        let flusher = carts.spawn_flusher();
        let kept = cart(1);
        carts.save(&kept).await.expect("save");
        drained(&carts, Duration::from_secs(20)).await;
        flusher.abort();
        carts.delete(&kept.key()).await.expect("delete");
        assert_eq!(
            in_cassandra::<CartRow>(&session, &[CartRowKey { id: kept.id }]).await,
            [None]
        );
        assert_eq!(carts.find(&kept.key()).await.expect("find"), None);
        assert!(
            redis
                .raw_get(&format!("shop:v1:{}", Cart::cache_key(&kept.key())))
                .is_none()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_over_a_redis_cluster() {
    with_kassandra(|_, session| async move {
        let cluster = RedisCluster::start(3);
        let cache = Cache::builder()
            .redis_cluster(cluster.urls())
            .namespace("shop")
            .build()
            .await
            .expect("cache");
        let carts: Repository<Cart> = repository(&session, &cache).await;
        let saved: Vec<Cart> = (0..30).map(cart).collect();
        for cart in &saved {
            carts.save(cart).await.expect("save");
        }
        assert_eq!(carts.backlog().await.expect("backlog").pending, 30);
        let nodes_with_entries = cluster
            .nodes()
            .iter()
            .filter(|node| {
                node.keys()
                    .iter()
                    .any(|key| key.starts_with("shop:v1:carts:"))
            })
            .count();
        assert!(nodes_with_entries > 1, "entries spread over the primaries");
        let flusher = carts.spawn_flusher();
        drained(&carts, Duration::from_secs(20)).await;
        let keys: Vec<CartRowKey> = saved.iter().map(|c| CartRowKey { id: c.id }).collect();
        let expected: Vec<Option<CartRow>> = saved.iter().map(|c| Some(cart_row(c))).collect();
        assert_eq!(in_cassandra::<CartRow>(&session, &keys).await, expected);
        let found = carts
            .find_many(&saved.iter().map(Entity::key).collect::<Vec<_>>())
            .await
            .expect("find_many");
        assert_eq!(found, saved.into_iter().map(Some).collect::<Vec<_>>());
        assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
        flusher.abort();
    })
    .await;
}

/// Polls `future` until it has been pending `polls` times, then drops it
/// there; its output if it finished first.
async fn cut_after<F: std::future::Future>(polls: usize, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut pending = 0;
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        std::task::Poll::Ready(output) => std::task::Poll::Ready(Some(output)),
        std::task::Poll::Pending if pending == polls => std::task::Poll::Ready(None),
        std::task::Poll::Pending => {
            pending += 1;
            std::task::Poll::Pending
        }
    })
    .await
}

/// A save dropped at its first await, its second, … until one finishes:
/// wherever it was cut, the cache and Cassandra end up agreeing (the write
/// happened or not, and the entry follows), with no later save to set
/// them right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_cut_off_at_any_await_leave_the_cache_and_cassandra_agreeing() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let accounts: Repository<Account> = repository(&session, &cache).await;
        let carts: Repository<Cart> = repository(&session, &cache).await;
        let flusher = carts.spawn_flusher();
        // How many of a save's awaits are pending depends on timing (on a
        // loaded machine a reply can be there before it is awaited): sweep
        // until some cuts happened, a bounded number of times.
        let (mut through_cuts, mut behind_cuts) = (0, 0);
        for _ in 0..20 {
            through_cuts += sweep_through(&session, &cache, &accounts).await;
            behind_cuts += sweep_behind(&session, &carts).await;
            if through_cuts >= 3 && behind_cuts >= 3 {
                break;
            }
        }
        assert!(
            through_cuts >= 1,
            "write-through saves were cut {through_cuts} times"
        );
        assert!(
            behind_cuts >= 1,
            "write-behind saves were cut {behind_cuts} times"
        );
        flusher.abort();
    })
    .await;
}

/// Cuts a write-through save at its first await, its second, … until one
/// finishes; how many were cut.
async fn sweep_through(
    session: &Arc<Session>,
    cache: &Cache,
    accounts: &Repository<Account>,
) -> usize {
    let mut polls = 0;
    loop {
        let account = Account {
            id: Uuid::new_v4(),
            owner: "ada".into(),
            balance: 1,
            note: None,
        };
        accounts.save(&account).await.expect("save");
        let changed = Account {
            balance: 2,
            ..account.clone()
        };
        if cut_after(polls, accounts.save(&changed)).await.is_some() {
            return polls;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stored = in_cassandra::<Account>(session, &[account.key()]).await;
            let cached = cache
                .get::<Account>(&Account::cache_key(&account.key()))
                .await
                .expect("get");
            if cached.is_none() || [cached.clone()] == stored.as_slice() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cut at await {polls}: cached {cached:?}, Cassandra {stored:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        polls += 1;
    }
}

/// [`sweep_through`] for write-behind: after the flush, reads and Cassandra
/// agree.
async fn sweep_behind(session: &Arc<Session>, carts: &Repository<Cart>) -> usize {
    let mut polls = 0;
    loop {
        let cart = cart(1);
        carts.save(&cart).await.expect("save");
        let changed = Cart {
            total: 2,
            ..cart.clone()
        };
        let finished = cut_after(polls, carts.save(&changed)).await.is_some();
        drained(carts, Duration::from_secs(20)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stored = in_cassandra::<CartRow>(session, &[CartRowKey { id: cart.id }]).await;
            let read = carts.find(&cart.key()).await.expect("find");
            if read.as_ref().map(cart_row) == stored[0] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cut at await {polls}: read {read:?}, Cassandra {stored:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if finished {
            return polls;
        }
        polls += 1;
    }
}

/// Every call that would give a counter a value (an INSERT, a TTL, a
/// lightweight transaction) is refused before anything is sent, naming the
/// table, its counters and `increment`; the cached entries stay as they
/// were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_counters_refuses_every_write_that_sets_a_value() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let hits = Repository::<PageHits>::new(session.clone(), cache.clone())
            .await
            .expect("repository");
        let row = PageHits {
            site: "example.org".into(),
            path: "/".into(),
            views: 3,
            clicks: 1,
        };
        let key = row.key();
        let entry = PageHits::cache_key(&key);
        let partition = PageHits::partition_cache_key(&PageHits::partition_of(&key));
        cache.set(&entry, &row, MINUTE).await.expect("set");
        cache.set(&partition, &[&row], MINUTE).await.expect("set");

        let refusals = [
            ("save", hits.save(&row).await.err()),
            (
                "save_all",
                hits.save_all(std::slice::from_ref(&row)).await.err(),
            ),
            (
                "save_with_ttl",
                hits.save_with_ttl(&row, MINUTE).await.err(),
            ),
            (
                "insert_if_not_exists",
                hits.insert_if_not_exists(&row).await.err(),
            ),
        ];
        for (call, error) in refusals {
            let Some(error) = error else {
                panic!("`{call}` on a table of counters succeeded");
            };
            let message = error.to_string();
            assert!(
                matches!(
                    &error,
                    Error::CounterTable { table: "page_hits", call: named, counters, .. }
                        if *named == call && counters == "views, clicks"
                ),
                "{call}: {error:?}"
            );
            assert!(message.contains("Repository::increment"), "{message}");
        }
        // A patch of a table of counters has no field: it writes nothing.
        hits.patch(&key, &PageHitsPatch::default())
            .await
            .expect("an empty patch");
        assert_eq!(
            cache.get::<PageHits>(&entry).await.expect("get"),
            Some(row.clone()),
            "nothing was sent, so nothing was evicted"
        );
        assert_eq!(
            cache.get::<Vec<PageHits>>(&partition).await.expect("get"),
            Some(vec![row])
        );
    })
    .await;
}

/// kassandra cannot parse `SET views = views + ?`: the increment is
/// refused before anything is applied, so the error names the statement
/// and the row's entries stay (an increment that may have been applied
/// evicts them; see `live.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increment_the_server_refuses_is_an_error_and_leaves_the_entries() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let hits = Repository::<PageHits>::new(session.clone(), cache.clone())
            .await
            .expect("repository");
        let row = PageHits {
            site: "example.org".into(),
            path: "/about".into(),
            views: 1,
            clicks: 0,
        };
        let entry = PageHits::cache_key(&row.key());
        cache.set(&entry, &row, MINUTE).await.expect("set");
        let error = hits
            .increment(&row.key(), PageHitsCounter::Views, 1)
            .await
            .expect_err("kassandra cannot parse an increment");
        assert!(
            error.to_string().contains(
                "UPDATE shop.page_hits SET views = views + ? WHERE site = ? AND path = ?"
            ),
            "{error}"
        );
        assert_eq!(cache.get::<PageHits>(&entry).await.expect("get"), Some(row));
    })
    .await;
}

/// kassandra writes an `INSERT … IF NOT EXISTS` unconditionally and answers
/// without `[applied]`: in every write mode that is `Error::NoApplied`, and
/// the row's entry (which may hold the old row) is evicted, so reads see
/// what Cassandra holds. With write-behind, a row whose save waits in the
/// stream exists: the answer is `false`, and neither Cassandra nor the
/// entry changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_if_not_exists_caches_only_what_it_wrote_in_every_mode() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;

        let profiles: Repository<Profile> = repository(&session, &cache).await;
        let old = Profile {
            id: Uuid::new_v4(),
            name: "old".into(),
            city: "Oslo".into(),
            bio: None,
        };
        profiles.save(&old).await.expect("save");
        assert_eq!(
            profiles.find(&old.key()).await.expect("find"),
            Some(old.clone())
        );
        let new = Profile {
            name: "new".into(),
            ..old.clone()
        };
        let answer = profiles.insert_if_not_exists(&new).await;
        assert!(matches!(answer, Err(Error::NoApplied { .. })), "{answer:?}");
        assert_eq!(profiles.find(&old.key()).await.expect("find"), Some(new));

        let accounts: Repository<Account> = repository(&session, &cache).await;
        let old = Account {
            id: Uuid::new_v4(),
            owner: "ada".into(),
            balance: 1,
            note: None,
        };
        accounts.save(&old).await.expect("save");
        let new = Account {
            balance: 2,
            ..old.clone()
        };
        let answer = accounts.insert_if_not_exists(&new).await;
        assert!(matches!(answer, Err(Error::NoApplied { .. })), "{answer:?}");
        assert_eq!(
            cache
                .get::<Account>(&Account::cache_key(&old.key()))
                .await
                .expect("get"),
            None,
            "the stored row was evicted"
        );
        assert_eq!(accounts.find(&old.key()).await.expect("find"), Some(new));

        let carts: Repository<Cart> = repository(&session, &cache).await;
        let pending = cart(1);
        carts.save(&pending).await.expect("save");
        let other = Cart {
            total: 2,
            ..pending.clone()
        };
        assert!(
            !carts.insert_if_not_exists(&other).await.expect("answered"),
            "a row saved behind exists"
        );
        assert_eq!(
            in_cassandra::<CartRow>(&session, &[CartRowKey { id: pending.id }]).await,
            [None],
            "Cassandra was not asked"
        );
        assert_eq!(
            carts.find(&pending.key()).await.expect("find"),
            Some(pending)
        );
        let fresh = cart(3);
        let answer = carts.insert_if_not_exists(&fresh).await;
        assert!(matches!(answer, Err(Error::NoApplied { .. })), "{answer:?}");
        assert_eq!(carts.find(&fresh.key()).await.expect("find"), Some(fresh));
        assert_eq!(carts.backlog().await.expect("backlog").pending, 1);
    })
    .await;
}

/// `save_all` with write-through and write-behind goes to Cassandra and
/// stores each row as the version of the call, over a fill, but never over
/// a newer write: with write-through a newer entry is a whole row and
/// stays; with write-behind it may be a patch applied to an older row, and
/// is evicted. No stream record is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_all_stores_its_rows_as_versions_but_never_over_a_newer_write() {
    use cachefw::__adapter::versioned;

    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;

        let accounts: Repository<Account> = repository(&session, &cache).await;
        let rows: Vec<Account> = (0..5)
            .map(|balance| Account {
                id: Uuid::new_v4(),
                owner: "ada".into(),
                balance,
                note: None,
            })
            .collect();
        let entries: Vec<String> = rows.iter().map(|r| Account::cache_key(&r.key())).collect();
        let newer = Account {
            balance: 100,
            ..rows[0].clone()
        };
        versioned::store(&cache, &entries[0], &newer, u64::MAX, Some(MINUTE), None)
            .await
            .expect("a newer version");
        let filled = Account {
            balance: -1,
            ..rows[1].clone()
        };
        cache
            .set(&entries[1], &filled, MINUTE)
            .await
            .expect("a fill");
        accounts.save_all(&rows).await.expect("save_all");
        let mut expected: Vec<Option<Account>> = rows.iter().cloned().map(Some).collect();
        expected[0] = Some(newer);
        for (entry, expected) in entries.iter().zip(&expected) {
            assert_eq!(&cache.get::<Account>(entry).await.expect("get"), expected);
            let pttl = redis.pttl(&format!("shop:v1:{entry}"));
            assert!(pttl > 0 && pttl <= 600_000, "{entry} expires: {pttl}");
        }
        let keys: Vec<AccountKey> = rows.iter().map(Entity::key).collect();
        assert_eq!(
            in_cassandra::<Account>(&session, &keys).await,
            rows.iter().cloned().map(Some).collect::<Vec<_>>()
        );
        // Two rows of one key in a batch: which one Cassandra keeps is its
        // choice (same timestamp), so neither is stored.
        let twice = [
            Account {
                balance: 7,
                ..rows[2].clone()
            },
            Account {
                balance: 8,
                ..rows[2].clone()
            },
        ];
        accounts.save_all(&twice).await.expect("save_all");
        assert_eq!(cache.get::<Account>(&entries[2]).await.expect("get"), None);
        assert_eq!(
            cache.get::<Account>(&entries[3]).await.expect("get"),
            Some(rows[3].clone()),
            "other entries untouched"
        );

        let carts: Repository<Cart> = repository(&session, &cache).await;
        let rows: Vec<Cart> = (0..5).map(cart).collect();
        let entries: Vec<String> = rows.iter().map(|r| Cart::cache_key(&r.key())).collect();
        let newer = Cart {
            total: 100,
            ..rows[0].clone()
        };
        versioned::store(&cache, &entries[0], &newer, u64::MAX, None, None)
            .await
            .expect("a newer version");
        carts.save_all(&rows).await.expect("save_all");
        assert_eq!(cache.get::<Cart>(&entries[0]).await.expect("get"), None);
        for (entry, row) in entries.iter().zip(&rows).skip(1) {
            assert_eq!(
                cache.get::<Cart>(entry).await.expect("get").as_ref(),
                Some(row)
            );
        }
        assert_eq!(carts.backlog().await.expect("backlog").pending, 0);
        let keys: Vec<CartRowKey> = rows.iter().map(|c| CartRowKey { id: c.id }).collect();
        assert_eq!(
            in_cassandra::<CartRow>(&session, &keys).await,
            rows.iter().map(|c| Some(cart_row(c))).collect::<Vec<_>>()
        );
    })
    .await;
}

/// [`saves_cut_off_at_any_await_leave_the_cache_and_cassandra_agreeing`]
/// for `save_all` with write-through and write-behind, whose rows are
/// stored in the cache after the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_cut_off_at_any_await_leave_the_cache_and_cassandra_agreeing() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let accounts: Repository<Account> = repository(&session, &cache).await;
        let carts: Repository<Cart> = repository(&session, &cache).await;
        let mut cuts = 0;
        for _ in 0..20 {
            cuts += sweep_batches(&session, &cache, &accounts, &carts).await;
            if cuts >= 6 {
                break;
            }
        }
        assert!(cuts >= 1, "batches were cut {cuts} times");
    })
    .await;
}

/// Cuts a second `save_all` of three accounts and three carts at its
/// first await, its second, … until both finish; how many were cut.
async fn sweep_batches(
    session: &Arc<Session>,
    cache: &Cache,
    accounts: &Repository<Account>,
    carts: &Repository<Cart>,
) -> usize {
    let mut polls = 0;
    loop {
        let first: Vec<Account> = (0..3)
            .map(|balance| Account {
                id: Uuid::new_v4(),
                owner: "ada".into(),
                balance,
                note: None,
            })
            .collect();
        accounts.save_all(&first).await.expect("save_all");
        let changed: Vec<Account> = first
            .iter()
            .map(|a| Account {
                balance: a.balance + 10,
                ..a.clone()
            })
            .collect();
        let carts_first: Vec<Cart> = (0..3).map(cart).collect();
        carts.save_all(&carts_first).await.expect("save_all");
        let carts_changed: Vec<Cart> = carts_first
            .iter()
            .map(|c| Cart {
                total: c.total + 10,
                ..c.clone()
            })
            .collect();
        let through = cut_after(polls, accounts.save_all(&changed))
            .await
            .is_some();
        let behind = cut_after(polls, carts.save_all(&carts_changed))
            .await
            .is_some();
        let deadline = Instant::now() + Duration::from_secs(10);
        let keys: Vec<AccountKey> = first.iter().map(Entity::key).collect();
        let cart_keys: Vec<CartRowKey> = carts_first
            .iter()
            .map(|c| CartRowKey { id: c.id })
            .collect();
        loop {
            let stored = in_cassandra::<Account>(session, &keys).await;
            let stored_carts = in_cassandra::<CartRow>(session, &cart_keys).await;
            let mut agree = true;
            for (key, stored) in keys.iter().zip(&stored) {
                let cached = cache
                    .get::<Account>(&Account::cache_key(key))
                    .await
                    .expect("get");
                agree &= cached.is_none() || &cached == stored;
            }
            for (cart, stored) in carts_first.iter().zip(&stored_carts) {
                let cached = cache
                    .get::<Cart>(&Cart::cache_key(&cart.key()))
                    .await
                    .expect("get");
                agree &= cached.is_none() || cached.as_ref().map(cart_row) == *stored;
            }
            if agree {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cut at await {polls}: Cassandra {stored:?} and {stored_carts:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if through && behind {
            return polls;
        }
        polls += 1;
    }
}
