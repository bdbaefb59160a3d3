//! Field-level entities (`layout = "hash"`, issue 27) against kassandra
//! and a private redis-server: the entry of a row is a Redis hash, a
//! patch sets only its fields, `find_fields` reads only the asked ones.
//!
//! What Redis was sent is read from `INFO commandstats` (commands run by
//! scripts are counted too), and what Cassandra was sent from a
//! [`DelayProxy`] in front of kassandra. kassandra has no counters and
//! ignores `USING TIMESTAMP`: increments of a hash entity, and the order
//! Cassandra keeps between two writes of one column, are tested live only
//! (`increments_add_to_the_cached_counter`, ignored without
//! `CACHEFW_CASSANDRA_URI`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cachefw::Cache;
use cachefw_cassandra::{Entity, Layout, Repository};
use cachefw_tests::cassandra::{connect, repository, with_kassandra};
use cachefw_tests::{DelayProxy, RedisServer, eventually};
use redis::Commands;
use scylla::client::session::Session;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Invalidated on write, cached field by field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "hprofiles", ttl = "10m", layout = "hash")]
pub struct Profile {
    #[partition_key]
    pub id: Uuid,
    pub name: String,
    pub city: String,
    pub bio: Option<String>,
    pub visits: i64,
    pub tags: Vec<String>,
}

/// The same table as a blob entity: reads what Cassandra holds through an
/// empty in-memory cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "hprofiles", ttl = "10m")]
pub struct ProfileRow {
    #[partition_key]
    pub id: Uuid,
    pub name: String,
    pub city: String,
    pub bio: Option<String>,
    pub visits: i64,
    pub tags: Vec<String>,
}

/// Written through, cached field by field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "shop",
    table = "haccounts",
    ttl = "10m",
    write = "through",
    layout = "hash"
)]
pub struct Account {
    #[partition_key]
    pub id: Uuid,
    pub owner: String,
    pub balance: i64,
}

/// Written behind, cached field by field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "shop",
    table = "hcarts",
    ttl = "10m",
    write = "behind",
    layout = "hash"
)]
pub struct Cart {
    #[partition_key]
    pub id: Uuid,
    pub items: Vec<String>,
    pub total: i64,
}

/// A table of counters, cached field by field (live only: kassandra has
/// no counters).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "cachefw_live",
    table = "hhits",
    ttl = "10m",
    layout = "hash"
)]
pub struct Hits {
    #[partition_key]
    pub page: String,
    #[counter]
    pub views: i64,
    #[counter]
    pub clicks: i64,
}

const WAIT: Duration = Duration::from_secs(10);

async fn redis_cache(url: String) -> Cache {
    Cache::builder()
        .redis(url)
        .namespace("shop")
        .build()
        .await
        .expect("cache")
}

fn profile(name: &str) -> Profile {
    Profile {
        id: Uuid::new_v4(),
        name: name.into(),
        city: "London".into(),
        bio: Some("x".repeat(200)),
        visits: 3,
        tags: vec!["maths".into(), "engines".into()],
    }
}

/// The hash entry's full key.
fn entry<T: Entity>(key: &T::Key) -> String {
    format!("shop:v1:{}", T::cache_key(key))
}

fn connection(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .and_then(|client| client.get_connection())
        .expect("a raw connection")
}

/// Every field of the hash at `key` (a test's own look, not the
/// adapter's read).
fn fields(redis: &RedisServer, key: &str) -> HashMap<Vec<u8>, Vec<u8>> {
    connection(redis).hgetall(key).expect("HGETALL")
}

fn key_type(redis: &RedisServer, key: &str) -> String {
    redis::cmd("TYPE")
        .arg(key)
        .query(&mut connection(redis))
        .expect("TYPE")
}

/// How many times each command ran since the last reset.
fn command_calls(redis: &RedisServer) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut connection(redis))
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

fn reset_stats(redis: &RedisServer) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut connection(redis))
        .expect("CONFIG RESETSTAT");
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

/// What Cassandra holds for `key`.
async fn in_cassandra(session: &Arc<Session>, key: &ProfileKey) -> Option<ProfileRow> {
    let empty = Cache::builder().in_memory().build().await.expect("cache");
    let rows: Repository<ProfileRow> = Repository::new(session.clone(), empty)
        .await
        .expect("repository");
    rows.find(&ProfileRowKey { id: key.id })
        .await
        .expect("read Cassandra")
}

fn as_row(profile: &Profile) -> ProfileRow {
    ProfileRow {
        id: profile.id,
        name: profile.name.clone(),
        city: profile.city.clone(),
        bio: profile.bio.clone(),
        visits: profile.visits,
        tags: profile.tags.clone(),
    }
}

#[test]
fn the_derive_names_the_layout_and_the_fields() {
    assert_eq!(Profile::LAYOUT, Layout::Hash);
    assert_eq!(ProfileRow::LAYOUT, Layout::Blob);
    assert_eq!(
        Profile::HASH_COLUMNS,
        ["name", "city", "bio", "visits", "tags"]
    );
    assert_eq!(Profile::field_column(ProfileField::Visits), "visits");
    assert_eq!(Hits::counter_column(HitsCounter::Clicks), "clicks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_entity_over_an_in_memory_cache_is_refused() {
    with_kassandra(|_, session| async move {
        let memory = Cache::builder().in_memory().build().await.expect("cache");
        let refused = Repository::<Profile>::new(session, memory).await;
        assert!(
            matches!(
                refused,
                Err(cachefw_cassandra::Error::HashNeedsRedis {
                    table: "hprofiles",
                    ..
                })
            ),
            "{:?}",
            refused.err()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_sets_only_its_field_and_the_next_find_is_a_hit() {
    with_kassandra(|addr, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let proxy = DelayProxy::start(addr.port());
        let counted = connect(proxied(&proxy), None).await;
        let profiles: Repository<Profile> = repository(&counted, &cache).await;
        let row = profile("Ada");
        let key = row.key();
        profiles.save(&row).await.expect("save");
        assert_eq!(profiles.find(&key).await.expect("find"), Some(row.clone()));
        let at = entry::<Profile>(&key);
        assert_eq!(key_type(&redis, &at), "hash");
        let before = fields(&redis, &at);
        for column in Profile::HASH_COLUMNS {
            assert!(before.contains_key(column.as_bytes()), "{column} cached");
        }

        reset_stats(&redis);
        let patch = ProfilePatch {
            bio: Some(Some("logic".into())),
            ..Default::default()
        };
        profiles.patch(&key, &patch).await.expect("patch");
        let calls = command_calls(&redis);
        for command in ["set", "del", "getset", "hdel", "unlink", "rename"] {
            assert_eq!(
                calls.get(command),
                None,
                "{command} during a patch: {calls:?}"
            );
        }
        assert!(calls.get("hset").is_some_and(|n| *n >= 1), "{calls:?}");

        let after = fields(&redis, &at);
        assert_eq!(after.len(), before.len(), "no field added or removed");
        for (field, bytes) in &before {
            if field.as_slice() != b"bio" {
                assert_eq!(after.get(field), Some(bytes), "field {field:?} untouched");
            }
        }
        assert_ne!(after.get(b"bio".as_slice()), before.get(b"bio".as_slice()));
        let expected = Profile {
            bio: Some("logic".into()),
            ..row.clone()
        };
        assert_eq!(
            in_cassandra(&session, &key).await,
            Some(as_row(&expected)),
            "Cassandra has the patch"
        );

        let sent = proxy.requests();
        assert_eq!(profiles.find(&key).await.expect("find"), Some(expected));
        assert_eq!(
            proxy.requests(),
            sent,
            "the find after a patch sent no SELECT"
        );
        let stats = cache.stats();
        assert!(stats.hits >= 1, "{stats:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_patch_different_fields_of_the_same_rows() {
    with_kassandra(|addr, session| async move {
        let redis = RedisServer::start();
        // Two processes: their own caches, sessions and repositories.
        let first: Repository<Profile> =
            repository(&session, &redis_cache(redis.url()).await).await;
        let other_session = connect(addr, None).await;
        let second: Repository<Profile> =
            repository(&other_session, &redis_cache(redis.url()).await).await;
        let rows: Vec<Profile> = (0..4).map(|n| profile(&format!("row {n}"))).collect();
        for row in &rows {
            first.save(row).await.expect("save");
            assert!(first.find(&row.key()).await.expect("find").is_some());
        }
        let rounds = cachefw_tests::fixtures::rounds(40);
        let names = async {
            for round in 0..rounds {
                for row in &rows {
                    let patch = ProfilePatch {
                        name: Some(format!("name {round}")),
                        ..Default::default()
                    };
                    first.patch(&row.key(), &patch).await.expect("patch");
                }
                let _ = first.find(&rows[round % rows.len()].key()).await;
            }
        };
        let cities = async {
            for round in 0..rounds {
                for row in rows.iter().rev() {
                    let patch = ProfilePatch {
                        city: Some(format!("city {round}")),
                        ..Default::default()
                    };
                    second.patch(&row.key(), &patch).await.expect("patch");
                }
                let _ = second.find(&rows[round % rows.len()].key()).await;
            }
        };
        tokio::join!(names, cities);
        let last = rounds - 1;
        for row in &rows {
            let expected = Profile {
                name: format!("name {last}"),
                city: format!("city {last}"),
                ..row.clone()
            };
            let at = entry::<Profile>(&row.key());
            assert!(
                fields(&redis, &at).contains_key(b"\xffr".as_slice()),
                "{at} is cached whole after the patches"
            );
            assert_eq!(
                first.find(&row.key()).await.expect("find"),
                Some(expected.clone())
            );
            assert_eq!(
                second.find(&row.key()).await.expect("find"),
                Some(expected.clone())
            );
            assert_eq!(
                in_cassandra(&session, &row.key()).await,
                Some(as_row(&expected))
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_read_before_a_patch_never_brings_its_old_value_back() {
    with_kassandra(|addr, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let profiles: Repository<Profile> = repository(&session, &cache).await;
        let proxy = DelayProxy::start(addr.port());
        let slow: Repository<Profile> =
            repository(&connect(proxied(&proxy), None).await, &cache).await;
        for round in 0..cachefw_tests::fixtures::rounds(3) {
            let row = profile(&format!("old {round}"));
            let key = row.key();
            profiles.save(&row).await.expect("save");
            // The reader's SELECT answer comes back late: it read the old row.
            proxy.set_delay(Duration::from_millis(400));
            let reader = {
                let key = key.clone();
                let slow =
                    Repository::<Profile>::new(connect(proxied(&proxy), None).await, cache.clone())
                        .await
                        .expect("repository");
                tokio::spawn(async move { slow.find(&key).await })
            };
            let at = entry::<Profile>(&key);
            eventually(WAIT, "the reader holds the lease", || {
                fields(&redis, &at).contains_key(b"\xffl".as_slice())
            })
            .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let patch = ProfilePatch {
                name: Some(format!("new {round}")),
                ..Default::default()
            };
            profiles.patch(&key, &patch).await.expect("patch");
            let read = reader.await.expect("reader").expect("find");
            assert!(read.is_some());
            proxy.set_delay(Duration::ZERO);
            let found = profiles.find(&key).await.expect("find");
            assert_eq!(
                found.map(|row| row.name),
                Some(format!("new {round}")),
                "round {round}: the old name came back"
            );
        }
        drop(slow);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_fields_reads_only_the_asked_fields_on_a_hit() {
    with_kassandra(|addr, _| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let proxy = DelayProxy::start(addr.port());
        let counted = connect(proxied(&proxy), None).await;
        let profiles: Repository<Profile> = repository(&counted, &cache).await;
        let row = profile("Ada");
        let key = row.key();
        profiles.save(&row).await.expect("save");

        // A miss: loads the row and caches it whole.
        let asked = [ProfileField::Name, ProfileField::Visits];
        let fields_read = profiles
            .find_fields(&key, &asked)
            .await
            .expect("find_fields");
        let expected = ProfilePatch {
            name: Some("Ada".into()),
            visits: Some(3),
            ..Default::default()
        };
        assert_eq!(fields_read, Some(expected.clone()));
        let at = entry::<Profile>(&key);
        assert!(
            fields(&redis, &at).contains_key(b"\xffr".as_slice()),
            "cached whole"
        );

        // A hit: one HMGET, nothing else.
        reset_stats(&redis);
        let sent = proxy.requests();
        let hit = profiles
            .find_fields(&key, &asked)
            .await
            .expect("find_fields");
        assert_eq!(hit, Some(expected));
        assert_eq!(proxy.requests(), sent, "a hit sends no SELECT");
        let calls = command_calls(&redis);
        let reads: Vec<&String> = calls.keys().filter(|c| !c.starts_with("config")).collect();
        assert_eq!(reads, ["hmget"], "{calls:?}");
        assert_eq!(calls.get("hmget"), Some(&1));

        // Every field, and none.
        let all = [
            ProfileField::Name,
            ProfileField::City,
            ProfileField::Bio,
            ProfileField::Visits,
            ProfileField::Tags,
        ];
        let whole = profiles.find_fields(&key, &all).await.expect("find_fields");
        assert_eq!(whole, Some(row.to_patch(&all)));
        assert_eq!(
            profiles.find_fields(&key, &[]).await.expect("find_fields"),
            Some(ProfilePatch::default())
        );

        // A missing row.
        let missing = ProfileKey { id: Uuid::new_v4() };
        assert_eq!(
            profiles
                .find_fields(&missing, &asked)
                .await
                .expect("find_fields"),
            None
        );
        assert_eq!(key_type(&redis, &entry::<Profile>(&missing)), "none");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_entries_read_as_misses() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = Cache::builder()
            .redis(redis.url())
            .namespace("shop")
            .max_value_size(600)
            .build()
            .await
            .expect("cache");
        let profiles: Repository<Profile> = repository(&session, &cache).await;
        let row = profile("Ada");
        let key = row.key();
        profiles.save(&row).await.expect("save");
        assert_eq!(profiles.find(&key).await.expect("find"), Some(row.clone()));
        let at = entry::<Profile>(&key);
        assert!(fields(&redis, &at).contains_key(b"\xffr".as_slice()));

        // A field of garbage: a miss of the row, never a wrong value.
        let _: () = connection(&redis)
            .hset(&at, "name", b"garbage".as_slice())
            .expect("HSET");
        assert_eq!(profiles.find(&key).await.expect("find"), Some(row.clone()));
        // Another Redis type at the key.
        let _: () = connection(&redis).del(&at).expect("DEL");
        let _: () = connection(&redis).set(&at, "a string").expect("SET");
        assert_eq!(profiles.find(&key).await.expect("find"), Some(row.clone()));
        assert_eq!(profiles.find(&key).await.expect("find"), Some(row.clone()));
        assert_eq!(key_type(&redis, &at), "hash");

        // Grown past max_value_size: read from Cassandra, not from Redis.
        let _: () = connection(&redis)
            .hset(&at, "bio", vec![0_u8; 4096])
            .expect("HSET");
        assert_eq!(profiles.find(&key).await.expect("find"), Some(row.clone()));
        let stats = cache.stats();
        assert!(stats.errors >= 1, "{stats:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_stores_and_patches_the_hash() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let accounts: Repository<Account> = repository(&session, &cache).await;
        let account = Account {
            id: Uuid::new_v4(),
            owner: "ada".into(),
            balance: 5,
        };
        let key = account.key();
        accounts.save(&account).await.expect("save");
        let at = entry::<Account>(&key);
        let stored = fields(&redis, &at);
        assert!(
            stored.contains_key(b"\xffr".as_slice()),
            "stored by the save"
        );
        let pay = AccountPatch {
            balance: Some(9),
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
            balance: 9,
            ..account.clone()
        };
        assert!(
            fields(&redis, &at).contains_key(b"\xffr".as_slice()),
            "still cached"
        );
        assert_eq!(
            accounts.find(&key).await.expect("find"),
            Some(expected.clone())
        );
        // Invalidate on a save: the TTL save and the delete evict.
        accounts.delete(&key).await.expect("delete");
        assert_eq!(key_type(&redis, &at), "none");
        assert_eq!(accounts.find(&key).await.expect("find"), None);
        // A late save older than the delete stores nothing.
        let record = format!("shop:v1:%fields:{}:{{{at}}}", Account::cache_key(&key));
        assert_eq!(
            key_type(&redis, &record),
            "hash",
            "the record outlives the entry"
        );
        let ttl: i64 = connection(&redis).pttl(&record).expect("PTTL");
        assert!(ttl > 600_000, "record TTL {ttl}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_patches_the_hash_until_the_flush_settles_it() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let carts: Repository<Cart> = repository(&session, &cache).await;
        let cart = Cart {
            id: Uuid::new_v4(),
            items: vec!["tea".into()],
            total: 4,
        };
        let key = cart.key();
        carts.save(&cart).await.expect("save");
        let at = entry::<Cart>(&key);
        let ttl: i64 = connection(&redis).pttl(&at).expect("PTTL");
        assert_eq!(ttl, -1, "no expiry before the flush");
        let patch = CartPatch {
            total: Some(12),
            ..Default::default()
        };
        reset_stats(&redis);
        carts.patch(&key, &patch).await.expect("patch");
        let calls = command_calls(&redis);
        assert_eq!(calls.get("del"), None, "{calls:?}");
        assert_eq!(calls.get("set"), None, "{calls:?}");
        let expected = Cart {
            total: 12,
            ..cart.clone()
        };
        assert_eq!(
            carts.find(&key).await.expect("find"),
            Some(expected.clone())
        );
        assert_eq!(carts.backlog().await.expect("backlog").pending, 2);

        let flusher = carts.spawn_flusher();
        let mut settled = false;
        for _ in 0..200 {
            let ttl: i64 = connection(&redis).pttl(&at).expect("PTTL");
            if ttl > 0 && carts.backlog().await.expect("backlog").pending == 0 {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        flusher.abort();
        assert!(settled, "the flush gave the entry its TTL");
        assert_eq!(
            carts.find(&key).await.expect("find"),
            Some(expected.clone())
        );
        let empty = Cache::builder().in_memory().build().await.expect("cache");
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
        #[entity(keyspace = "shop", table = "hcarts", ttl = "10m")]
        pub struct CartRow {
            #[partition_key]
            pub id: Uuid,
            pub items: Vec<String>,
            pub total: i64,
        }
        let rows: Repository<CartRow> = Repository::new(session.clone(), empty)
            .await
            .expect("repository");
        let flushed = rows.find(&CartRowKey { id: cart.id }).await.expect("find");
        assert_eq!(
            flushed.map(|row| row.total),
            Some(12),
            "Cassandra has the patch"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_saves_evict_and_reads_fill_the_hash_again() {
    with_kassandra(|_, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let profiles: Repository<Profile> = repository(&session, &cache).await;
        let rows: Vec<Profile> = (0..3).map(|n| profile(&format!("p{n}"))).collect();
        profiles.save_all(&rows).await.expect("save_all");
        let keys: Vec<ProfileKey> = rows.iter().map(Entity::key).collect();
        let found = profiles.find_many(&keys).await.expect("find_many");
        assert_eq!(found, rows.iter().cloned().map(Some).collect::<Vec<_>>());
        for key in &keys {
            assert_eq!(key_type(&redis, &entry::<Profile>(key)), "hash");
        }
        let changed = Profile {
            city: "Paris".into(),
            ..rows[0].clone()
        };
        profiles.save(&changed).await.expect("save");
        assert_eq!(key_type(&redis, &entry::<Profile>(&keys[0])), "none");
        assert_eq!(profiles.find(&keys[0]).await.expect("find"), Some(changed));
        profiles.delete(&keys[1]).await.expect("delete");
        assert_eq!(profiles.find(&keys[1]).await.expect("find"), None);
        assert_eq!(key_type(&redis, &entry::<Profile>(&keys[1])), "none");
        // A patch of a row that is not cached sets nothing in Redis.
        let patch = ProfilePatch {
            visits: Some(99),
            ..Default::default()
        };
        profiles.patch(&keys[1], &patch).await.expect("patch");
        assert_eq!(key_type(&redis, &entry::<Profile>(&keys[1])), "none");
    })
    .await;
}

/// Counters: kassandra has none, so only against a real node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "set CACHEFW_CASSANDRA_URI"]
async fn increments_add_to_the_cached_counter() {
    let uri = std::env::var("CACHEFW_CASSANDRA_URI").expect("set CACHEFW_CASSANDRA_URI");
    let session = Arc::new(
        scylla::client::session_builder::SessionBuilder::new()
            .known_node(&uri)
            .build()
            .await
            .expect("session"),
    );
    cachefw_cassandra::create_keyspace(&session, "cachefw_live", 1)
        .await
        .expect("keyspace");
    let redis = RedisServer::start();
    let cache = redis_cache(redis.url()).await;
    let hits: Repository<Hits> = repository(&session, &cache).await;
    let key = HitsKey {
        page: Uuid::new_v4().to_string(),
    };
    hits.increment(&key, HitsCounter::Views, 2)
        .await
        .expect("increment");
    let read = hits.find(&key).await.expect("find").expect("a row");
    assert_eq!((read.views, read.clicks), (2, 0));
    let at = entry::<Hits>(&key);
    assert_eq!(
        fields(&redis, &at).get(b"views".as_slice()),
        Some(&b"2".to_vec())
    );
    reset_stats(&redis);
    let counted = async {
        for _ in 0..10 {
            hits.increment(&key, HitsCounter::Clicks, 1)
                .await
                .expect("increment");
        }
    };
    let reads = async {
        for _ in 0..10 {
            let _ = hits.find(&key).await;
        }
    };
    tokio::join!(counted, reads);
    let read = hits.find(&key).await.expect("find").expect("a row");
    assert_eq!((read.views, read.clicks), (2, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_tier_holds_hash_rows_and_drops_them_on_any_field_write() {
    with_kassandra(|addr, session| async move {
        let redis = RedisServer::start();
        let near = cachefw_tests::fixtures::near_cache(&redis, "shop").await;
        let profiles: Repository<Profile> = repository(&session, &near).await;
        let other_session = connect(addr, None).await;
        let elsewhere: Repository<Profile> =
            repository(&other_session, &redis_cache(redis.url()).await).await;
        let row = profile("Ada");
        let key = row.key();
        profiles.save(&row).await.expect("save");
        let mut near_hits = 0;
        for _ in 0..200 {
            assert_eq!(profiles.find(&key).await.expect("find"), Some(row.clone()));
            near_hits = near.stats().near_hits;
            if near_hits > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(near_hits > 0, "the near tier answered a whole-row read");
        reset_stats(&redis);
        let fields_read = profiles
            .find_fields(&key, &[ProfileField::City])
            .await
            .expect("find_fields");
        assert_eq!(fields_read.and_then(|f| f.city), Some("London".into()));
        let calls = command_calls(&redis);
        // The tier's heartbeat (`PING`) runs beside it.
        assert!(
            calls
                .keys()
                .all(|c| c.starts_with("config") || c.as_str() == "ping"),
            "find_fields from the near copy read nothing from Redis: {calls:?}"
        );

        // Another process patches one field: tracking drops the copy.
        let patch = ProfilePatch {
            city: Some("Paris".into()),
            ..Default::default()
        };
        elsewhere.patch(&key, &patch).await.expect("patch");
        let mut seen = None;
        for _ in 0..100 {
            seen = profiles.find(&key).await.expect("find").map(|p| p.city);
            if seen.as_deref() == Some("Paris") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen.as_deref(), Some("Paris"), "the near copy was dropped");

        // This process patches: its own copy goes at once.
        let _ = profiles.find(&key).await.expect("find");
        let rename = ProfilePatch {
            name: Some("Grace".into()),
            ..Default::default()
        };
        profiles.patch(&key, &rename).await.expect("patch");
        assert_eq!(
            profiles.find(&key).await.expect("find").map(|p| p.name),
            Some("Grace".into())
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_patch_is_refused_only_by_a_newer_write_of_its_own_field() {
    with_kassandra(|addr, session| async move {
        let redis = RedisServer::start();
        let cache = redis_cache(redis.url()).await;
        let profiles: Repository<Profile> = repository(&session, &cache).await;
        let proxy = DelayProxy::start(addr.port());
        let slow: Arc<Repository<Profile>> =
            Arc::new(repository(&connect(proxied(&proxy), None).await, &cache).await);
        let row = profile("Ada");
        let key = row.key();
        profiles.save(&row).await.expect("save");
        profiles.find(&key).await.expect("find");
        let at = entry::<Profile>(&key);

        // Disjoint fields: the late patch of `name` lands after a newer
        // patch of `city`, and both stay cached.
        proxy.set_delay(Duration::from_millis(300));
        let late = {
            let (slow, key) = (slow.clone(), key.clone());
            tokio::spawn(async move {
                let patch = ProfilePatch {
                    name: Some("late name".into()),
                    ..Default::default()
                };
                slow.patch(&key, &patch).await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let city = ProfilePatch {
            city: Some("Paris".into()),
            ..Default::default()
        };
        profiles.patch(&key, &city).await.expect("patch");
        late.await.expect("task").expect("late patch");
        proxy.set_delay(Duration::ZERO);
        let cached = fields(&redis, &at);
        assert!(cached.contains_key(b"\xffr".as_slice()), "not evicted");
        let found = profiles.find(&key).await.expect("find").expect("a row");
        assert_eq!(
            (found.name.as_str(), found.city.as_str()),
            ("late name", "Paris")
        );

        // The same field: the late patch is refused and the entry evicted
        // (its version is older than the one recorded).
        proxy.set_delay(Duration::from_millis(300));
        let late = {
            let (slow, key) = (slow.clone(), key.clone());
            tokio::spawn(async move {
                let patch = ProfilePatch {
                    city: Some("Rome".into()),
                    ..Default::default()
                };
                slow.patch(&key, &patch).await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let newer = ProfilePatch {
            city: Some("Oslo".into()),
            ..Default::default()
        };
        profiles.patch(&key, &newer).await.expect("patch");
        assert!(fields(&redis, &at).contains_key(b"\xffr".as_slice()));
        late.await.expect("task").expect("late patch");
        proxy.set_delay(Duration::ZERO);
        assert_eq!(
            key_type(&redis, &at),
            "none",
            "the older patch of city was refused and evicted the row"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_cut_off_gives_its_lease_up() {
    with_kassandra(|addr, session| async move {
        let redis = RedisServer::start();
        let cache = Cache::builder()
            .redis(redis.url())
            .namespace("shop")
            .lease_time(Duration::from_secs(30))
            .build()
            .await
            .expect("cache");
        let profiles: Repository<Profile> = repository(&session, &cache).await;
        let proxy = DelayProxy::start(addr.port());
        let slow: Repository<Profile> =
            repository(&connect(proxied(&proxy), None).await, &cache).await;
        let row = profile("Ada");
        let key = row.key();
        profiles.save(&row).await.expect("save");
        proxy.set_delay(Duration::from_secs(5));
        let reader = {
            let key = key.clone();
            tokio::spawn(async move { slow.find(&key).await })
        };
        let at = entry::<Profile>(&key);
        eventually(WAIT, "the reader holds the lease", || {
            fields(&redis, &at).contains_key(b"\xffl".as_slice())
        })
        .await;
        reader.abort();
        let aborted = reader.await;
        assert!(
            aborted
                .as_ref()
                .is_err_and(tokio::task::JoinError::is_cancelled),
            "{aborted:?}"
        );
        eventually(WAIT, "the lease is given up, long before its 30 s", || {
            key_type(&redis, &at) == "none"
        })
        .await;
        proxy.set_delay(Duration::ZERO);
        assert_eq!(profiles.find(&key).await.expect("find"), Some(row));
    })
    .await;
}
