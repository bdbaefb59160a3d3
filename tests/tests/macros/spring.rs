//! Spring's cache annotation scenarios that need more than one attribute
//! or the returned value, over real Redis: keys from the result
//! (`@CachePut(key = "#result.id")`), several puts on one write and puts
//! mixed with evictions (`@Caching`), `condition` on writes, and no stale
//! fill past any write of a stack.

use cachefw_tests::fixtures as common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachefw::{Cache, cache_evict, cache_put, cacheable};
use cachefw_tests::RedisServer;
use common::SourceDown;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// How long any wait of these tests may take before it fails.
const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    tenant: String,
    email: String,
    name: String,
}

struct NewUser {
    tenant: String,
    email: String,
    name: String,
}

fn new_user(tenant: &str, email: &str, name: &str) -> NewUser {
    NewUser {
        tenant: tenant.into(),
        email: email.into(),
        name: name.into(),
    }
}

/// The database: it gives ids out, refuses a second account per email, and
/// counts its reads.
#[derive(Default)]
struct Db {
    rows: Mutex<BTreeMap<u64, User>>,
    reads: AtomicU32,
}

/// The ids the database gives out start here.
const FIRST_ID: u64 = 100;

impl Db {
    fn insert(&self, req: NewUser) -> Result<User, SourceDown> {
        let mut rows = self.rows.lock().expect("rows");
        if rows.values().any(|row| row.email == req.email) {
            return Err(SourceDown(409));
        }
        let id = rows.keys().next_back().map_or(FIRST_ID, |last| last + 1);
        let user = User {
            id,
            tenant: req.tenant,
            email: req.email,
            name: req.name,
        };
        rows.insert(id, user.clone());
        Ok(user)
    }

    fn rename(&self, id: u64, name: &str) -> Result<User, SourceDown> {
        let mut rows = self.rows.lock().expect("rows");
        let row = rows.get_mut(&id).ok_or(SourceDown(404))?;
        row.name = name.into();
        Ok(row.clone())
    }

    fn remove(&self, id: u64) {
        self.rows.lock().expect("rows").remove(&id);
    }

    fn read(&self, pick: impl Fn(&User) -> bool) -> Vec<User> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let rows = self.rows.lock().expect("rows");
        rows.values().filter(|row| pick(row)).cloned().collect()
    }

    fn reads(&self) -> u32 {
        self.reads.load(Ordering::SeqCst)
    }
}

#[cacheable(key = "user:<id>", ttl = "10m", cache = cache)]
async fn get_user(cache: &Cache, db: &Db, id: u64) -> Result<User, SourceDown> {
    db.read(|row| row.id == id).pop().ok_or(SourceDown(404))
}

#[cacheable(key = "user-by-email:<email>", ttl = "10m", cache = cache)]
async fn find_by_email(cache: &Cache, db: &Db, email: &str) -> Option<User> {
    db.read(|row| row.email == email).pop()
}

#[cacheable(key = "user-list:<tenant>", ttl = "10m", cache = cache)]
async fn list_users(cache: &Cache, db: &Db, tenant: &str) -> Vec<User> {
    db.read(|row| row.tenant == tenant)
}

/// What `create_user` saw of the tenant's list entry while its body ran.
#[derive(Default)]
struct Seen(Mutex<Vec<bool>>);

/// `@Caching(put = { @CachePut(key = "#result.id"), @CachePut(key =
/// "#result.email") }, evict = @CacheEvict(key = "#req.tenant"))`.
#[cache_put(key = "user:<result.id>", ttl = "10m", cache = cache)]
#[cache_put(key = "user-by-email:<result.email>", ttl = "5m", cache = cache)]
#[cache_evict(key = "user-list:<req.tenant>", cache = cache)]
async fn create_user(
    cache: &Cache,
    db: &Db,
    seen: &Seen,
    req: NewUser,
) -> Result<User, SourceDown> {
    let listed = cache
        .get::<Vec<User>>(&format!("user-list:{}", req.tenant))
        .await
        .expect("get");
    seen.0.lock().expect("seen").push(listed.is_some());
    db.insert(req)
}

async fn redis_cache(redis: &RedisServer) -> Cache {
    common::redis_cache(redis, "sp").await
}

#[tokio::test]
async fn a_create_whose_id_comes_from_the_database_is_a_hit_by_id_and_by_email() {
    let redis = RedisServer::start();
    let cache = redis_cache(&redis).await;
    let (db, seen) = (Db::default(), Seen::default());
    assert_eq!(list_users(&cache, &db, "acme").await, []);
    assert_eq!(db.reads(), 1);

    let ada = create_user(&cache, &db, &seen, new_user("acme", "ada@x.org", "Ada"))
        .await
        .expect("created");
    assert_eq!(ada.id, FIRST_ID, "the database gave the id");
    assert_eq!(
        *seen.0.lock().expect("seen"),
        [true],
        "the list was evicted after the body"
    );
    assert_eq!(
        redis.keys(),
        ["sp:v1:user-by-email:ada@x.org", "sp:v1:user:100"],
        "both puts stored, the list evicted"
    );
    let pttl = redis.pttl("sp:v1:user:100");
    assert!(
        pttl > 590_000 && pttl <= 600_000,
        "its own ttl = \"10m\": {pttl}"
    );
    let pttl = redis.pttl("sp:v1:user-by-email:ada@x.org");
    assert!(
        pttl > 290_000 && pttl <= 300_000,
        "its own ttl = \"5m\": {pttl}"
    );

    let hits = cache.stats().hits;
    assert_eq!(get_user(&cache, &db, ada.id).await, Ok(ada.clone()));
    assert_eq!(
        find_by_email(&cache, &db, "ada@x.org").await,
        Some(ada.clone())
    );
    assert_eq!(db.reads(), 1, "both read from the cache");
    assert_eq!(cache.stats().hits, hits + 2);
    assert_eq!(
        list_users(&cache, &db, "acme").await,
        [ada],
        "the list loads afresh"
    );
    assert_eq!(db.reads(), 2);
}

#[tokio::test]
async fn a_failed_create_neither_puts_nor_evicts() {
    let redis = RedisServer::start();
    let cache = redis_cache(&redis).await;
    let (db, seen) = (Db::default(), Seen::default());
    let ada = create_user(&cache, &db, &seen, new_user("acme", "ada@x.org", "Ada"))
        .await
        .expect("created");
    assert_eq!(list_users(&cache, &db, "acme").await.len(), 1);
    let before = redis.keys();
    assert_eq!(before.len(), 3, "{before:?}");

    let twin = create_user(&cache, &db, &seen, new_user("acme", "ada@x.org", "Eve")).await;
    assert_eq!(twin, Err(SourceDown(409)));
    assert_eq!(redis.keys(), before, "no put, no eviction");
    assert_eq!(
        find_by_email(&cache, &db, "ada@x.org").await,
        Some(ada.clone()),
        "the entry by email is the first user's still"
    );
    assert_eq!(list_users(&cache, &db, "acme").await, [ada]);
    assert_eq!(db.reads(), 1, "served from the cache");
}

/// A reload that finds no row: the key named by the id loses its entry;
/// the key named by the result has none to lose.
#[cache_put(key = "user:<id>", ttl = "10m", cache = cache)]
#[cache_put(key = "user-by-email:<result.email>", ttl = "10m", cache = cache)]
async fn reload_user(cache: &Cache, db: &Db, id: u64) -> Option<User> {
    db.read(|row| row.id == id).pop()
}

#[tokio::test]
async fn a_none_evicts_the_keys_it_can_name_and_no_other() {
    let redis = RedisServer::start();
    let cache = redis_cache(&redis).await;
    let (db, seen) = (Db::default(), Seen::default());
    let ada = create_user(&cache, &db, &seen, new_user("acme", "ada@x.org", "Ada"))
        .await
        .expect("created");
    assert_eq!(reload_user(&cache, &db, ada.id).await, Some(ada.clone()));
    assert_eq!(
        redis.keys(),
        ["sp:v1:user-by-email:ada@x.org", "sp:v1:user:100"]
    );

    db.remove(ada.id);
    assert_eq!(reload_user(&cache, &db, ada.id).await, None);
    assert_eq!(
        redis.keys(),
        ["sp:v1:user-by-email:ada@x.org"],
        "user:100 evicted; nothing named by a result that is not there"
    );
}

/// Stops a reader between its read of the source and its fill.
#[derive(Default)]
struct Gate {
    read: Notify,
    resume: Notify,
}

#[cacheable(key = "user:<id>", ttl = "10m", cache = cache)]
async fn get_user_slowly(cache: &Cache, db: &Db, gate: &Gate, id: u64) -> Result<User, SourceDown> {
    let row = db.read(|row| row.id == id).pop();
    gate.read.notify_one();
    gate.resume.notified().await;
    row.ok_or(SourceDown(404))
}

#[cacheable(key = "user-by-email:<email>", ttl = "10m", cache = cache)]
async fn find_by_email_slowly(cache: &Cache, db: &Db, gate: &Gate, email: &str) -> Option<User> {
    let row = db.read(|row| row.email == email).pop();
    gate.read.notify_one();
    gate.resume.notified().await;
    row
}

#[cache_put(key = "user:<result.id>", ttl = "10m", cache = cache)]
#[cache_put(key = "user-by-email:<result.email>", ttl = "10m", cache = cache)]
async fn rename_user(cache: &Cache, db: &Db, id: u64, name: &str) -> Result<User, SourceDown> {
    db.rename(id, name)
}

async fn within_deadline<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

/// Readers of both keys read the source, then stall; the stacked puts
/// write the new row; the readers then fill. Neither key may be left with
/// the row the readers read.
async fn stale_fill_race(same_process: bool) {
    let redis = RedisServer::start();
    let reader_process = redis_cache(&redis).await;
    let writer_process = if same_process {
        reader_process.clone()
    } else {
        redis_cache(&redis).await
    };
    let db = Arc::new(Db::default());
    let ada = db
        .insert(new_user("acme", "ada@x.org", "Ada"))
        .expect("inserted");

    let (by_id, by_email) = (Arc::new(Gate::default()), Arc::new(Gate::default()));
    let readers = {
        let (cache, db, by_id, by_email) = (
            reader_process.clone(),
            db.clone(),
            by_id.clone(),
            by_email.clone(),
        );
        tokio::spawn(async move {
            tokio::join!(
                get_user_slowly(&cache, &db, &by_id, FIRST_ID),
                find_by_email_slowly(&cache, &db, &by_email, "ada@x.org"),
            )
        })
    };
    within_deadline("the reader by id reads", by_id.read.notified()).await;
    within_deadline("the reader by email reads", by_email.read.notified()).await;

    let grace = rename_user(&writer_process, &db, FIRST_ID, "Grace")
        .await
        .expect("renamed");
    by_id.resume.notify_one();
    by_email.resume.notify_one();
    let (read_by_id, read_by_email) = within_deadline("the readers end", readers)
        .await
        .expect("readers");
    assert_eq!(
        read_by_id,
        Ok(ada.clone()),
        "each reader returns what it read"
    );
    assert_eq!(read_by_email, Some(ada));

    for key in ["user:100", "user-by-email:ada@x.org"] {
        assert_eq!(
            writer_process.get::<User>(key).await.expect("get"),
            Some(grace.clone()),
            "{key} holds the put's value, not a stale fill"
        );
    }
    let reads = db.reads();
    assert_eq!(
        get_user(&reader_process, &db, FIRST_ID).await,
        Ok(grace.clone())
    );
    assert_eq!(
        find_by_email(&reader_process, &db, "ada@x.org").await,
        Some(grace)
    );
    assert_eq!(db.reads(), reads, "the readers' process hits the new row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_fill_past_stacked_puts_across_processes() {
    stale_fill_race(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_fill_past_stacked_puts_within_one_process() {
    stale_fill_race(true).await;
}

/// Writes through only when asked; the question is asked before the body,
/// which turns it off (for the next call).
#[cache_put(key = "user:<result.id>", ttl = "10m", cache = cache, condition = write_through.load(Ordering::SeqCst))]
#[cache_evict(key = "user-list:<tenant>", cache = cache, condition = write_through.load(Ordering::SeqCst))]
async fn import_user(
    cache: &Cache,
    db: &Db,
    write_through: &AtomicBool,
    tenant: &str,
    email: &str,
) -> Result<User, SourceDown> {
    write_through.store(false, Ordering::SeqCst);
    db.insert(new_user(tenant, email, "imported"))
}

#[tokio::test]
async fn condition_false_skips_that_write() {
    let redis = RedisServer::start();
    let cache = redis_cache(&redis).await;
    let db = Db::default();
    assert_eq!(list_users(&cache, &db, "acme").await, []);
    let write_through = AtomicBool::new(false);
    let first = import_user(&cache, &db, &write_through, "acme", "a@x.org")
        .await
        .expect("imported");
    assert_eq!(
        redis.keys(),
        ["sp:v1:user-list:acme"],
        "condition false: no put, no eviction"
    );

    write_through.store(true, Ordering::SeqCst);
    let second = import_user(&cache, &db, &write_through, "acme", "b@x.org")
        .await
        .expect("imported");
    assert!(
        !write_through.load(Ordering::SeqCst),
        "the body turned it off"
    );
    assert_eq!(
        redis.keys(),
        [format!("sp:v1:user:{}", second.id)],
        "condition true when the call began: put and evicted"
    );
    assert_eq!(list_users(&cache, &db, "acme").await, [first, second]);
}

/// `@CacheEvict(beforeInvocation = true)` in a stack with a put.
#[cache_evict(key = "user-list:<tenant>", cache = cache, before = true)]
#[cache_put(key = "user:<result.id>", ttl = "10m", cache = cache)]
async fn move_user(cache: &Cache, db: &Db, id: u64, tenant: &str) -> Result<User, SourceDown> {
    let listed = cache
        .get::<Vec<User>>(&format!("user-list:{tenant}"))
        .await
        .expect("get");
    assert_eq!(listed, None, "evicted before the body");
    let _ = (db.rename(id, "moved")?, list_users(cache, db, tenant).await);
    Err(SourceDown(500))
}

#[tokio::test]
async fn a_before_eviction_in_a_stack_runs_before_the_body_and_after_it() {
    let redis = RedisServer::start();
    let cache = redis_cache(&redis).await;
    let (db, seen) = (Db::default(), Seen::default());
    let ada = create_user(&cache, &db, &seen, new_user("acme", "ada@x.org", "Ada"))
        .await
        .expect("created");
    assert_eq!(list_users(&cache, &db, "acme").await.len(), 1);
    assert_eq!(
        move_user(&cache, &db, ada.id, "acme").await,
        Err(SourceDown(500))
    );
    assert_eq!(
        redis.keys(),
        ["sp:v1:user-by-email:ada@x.org", "sp:v1:user:100"],
        "the list the body filled was evicted again; the Err put nothing"
    );
    assert_eq!(
        cache.get::<User>("user:100").await.expect("get"),
        Some(ada),
        "the put after an Err wrote nothing"
    );
}

#[cache_evict(key = "user:<id>", cache = cache)]
#[cache_evict(key = "user-list:<tenant>", cache = cache)]
async fn delete_user(cache: &Cache, db: &Db, id: u64, tenant: &str) -> Result<(), SourceDown> {
    let _ = (cache, tenant);
    db.remove(id);
    Ok(())
}

/// A caller cut off while the first write waits on a frozen Redis: that
/// write is kept by the journal, and the next one, not yet begun, is turned
/// into an eviction in the background. Both land once Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_left_by_a_cancelled_caller_still_land() {
    let redis = RedisServer::start();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace("sp")
        .timeout(Duration::from_secs(30))
        .build()
        .await
        .expect("builds");
    let db = Db::default();
    let ada = db
        .insert(new_user("acme", "ada@x.org", "Ada"))
        .expect("inserted");
    get_user(&cache, &db, ada.id).await.expect("cached");
    list_users(&cache, &db, "acme").await;
    assert_eq!(redis.keys().len(), 2);

    redis.freeze();
    let cut_off = tokio::time::timeout(
        Duration::from_millis(300),
        delete_user(&cache, &db, ada.id, "acme"),
    )
    .await;
    redis.thaw();
    assert!(
        cut_off.is_err(),
        "the caller was cut off while Redis was frozen"
    );
    within_deadline("both evictions land", async {
        while !redis.keys().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
