//! `#[cache_config]` gives the cachefw attributes on an `impl` block's
//! methods one cache and defaults, so a bare `#[cache_evict]` invalidates
//! what the `#[cacheable]` beside it read; a method's own arguments win.
//! Over memory and over a Redis of the user-facing testing kit.

use cachefw_tests::fixtures as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cachefw::testing::RedisServer;
use cachefw::{Cache, cache_config, cache_evict, cache_put, cacheable};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Debug, PartialEq)]
struct DbError;

/// The source: a name per id, and how often it was read.
#[derive(Default)]
struct Db {
    names: std::sync::Mutex<std::collections::HashMap<u64, String>>,
    reads: AtomicU32,
}

impl Db {
    fn read(&self, id: u64) -> Option<User> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let names = self.names.lock().expect("lock");
        names.get(&id).map(|name| User {
            id,
            name: name.clone(),
        })
    }

    fn write(&self, id: u64, name: &str) {
        self.names.lock().expect("lock").insert(id, name.to_owned());
    }

    fn reads(&self) -> u32 {
        self.reads.load(Ordering::SeqCst)
    }
}

struct UserRepo {
    db: Db,
    cache: Cache,
    /// Named by one method itself, over the impl's default.
    audit: Cache,
}

#[cache_config(cache = self.cache, ttl = "5m")]
impl UserRepo {
    #[cacheable(key = "user:<id>")]
    async fn get(&self, id: u64) -> Result<Option<User>, DbError> {
        Ok(self.db.read(id))
    }

    #[cache_evict(key = "user:<id>")]
    async fn rename(&self, id: u64, name: &str) -> Result<(), DbError> {
        self.db.write(id, name);
        Ok(())
    }

    #[cache_put(key = "user:<id>", ttl = "1h")]
    async fn save(&self, id: u64, name: &str) -> Result<Option<User>, DbError> {
        self.db.write(id, name);
        Ok(self.db.read(id))
    }

    #[cacheable(key = "audit:<id>", cache = self.audit)]
    async fn audit(&self, id: u64) -> u64 {
        id * 10
    }
}

async fn repo(cache: Cache) -> UserRepo {
    let db = Db::default();
    db.write(1, "Ada");
    UserRepo {
        db,
        cache,
        audit: Cache::builder()
            .namespace("audit")
            .build()
            .await
            .expect("builds"),
    }
}

async fn a_bare_eviction_invalidates_what_the_reads_cached(cache: Cache) {
    let repo = repo(cache.clone()).await;
    let ada = Some(User {
        id: 1,
        name: "Ada".into(),
    });
    assert_eq!(repo.get(1).await, Ok(ada.clone()));
    assert_eq!(repo.get(1).await, Ok(ada));
    assert_eq!(repo.db.reads(), 1, "the second read was a hit");

    repo.rename(1, "Grace").await.expect("renamed");
    assert_eq!(
        cache.get::<User>("user:1").await.expect("get"),
        None,
        "evicted from self.cache"
    );
    let grace = Some(User {
        id: 1,
        name: "Grace".into(),
    });
    assert_eq!(repo.get(1).await, Ok(grace));
    assert_eq!(repo.db.reads(), 2, "read again after the eviction");
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
}

async fn defaults_apply_where_the_method_names_none(cache: Cache) {
    let repo = repo(cache.clone()).await;
    repo.get(1).await.expect("read");
    let left = cache.ttl("user:1").await.expect("ttl").expect("cached");
    assert!(
        left <= Duration::from_secs(300) && left > Duration::from_secs(240),
        "the impl's ttl: {left:?}"
    );

    repo.save(2, "Lin").await.expect("saved");
    let left = cache.ttl("user:2").await.expect("ttl").expect("stored");
    assert!(
        left > Duration::from_secs(300),
        "its own ttl wins: {left:?}"
    );

    assert_eq!(repo.audit(3).await, 30);
    assert_eq!(cache.get::<u64>("audit:3").await.expect("get"), None);
    assert_eq!(
        repo.audit.get::<u64>("audit:3").await.expect("get"),
        Some(30),
        "its own cache wins"
    );
}

#[tokio::test]
async fn in_memory() {
    let cache = common::memory_cache("config").await;
    a_bare_eviction_invalidates_what_the_reads_cached(cache.clone()).await;
    defaults_apply_where_the_method_names_none(cache).await;
}

#[tokio::test]
async fn over_redis() {
    let redis = RedisServer::start();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace("config")
        .build()
        .await
        .expect("builds");
    a_bare_eviction_invalidates_what_the_reads_cached(cache.clone()).await;
    defaults_apply_where_the_method_names_none(cache).await;
}

#[async_trait::async_trait]
trait Names {
    async fn name(&self, id: u64) -> String;
    async fn forget(&self, id: u64);
}

struct Service {
    cache: Arc<Cache>,
    loads: AtomicU32,
}

#[cache_config(cache = self.cache, ttl = "1m")]
#[async_trait::async_trait]
impl Names for Service {
    #[cacheable(key = "name:<id>")]
    async fn name(&self, id: u64) -> String {
        format!("{id}/{}", self.loads.fetch_add(1, Ordering::SeqCst))
    }

    #[cache_evict(key = "name:<id>")]
    async fn forget(&self, id: u64) {
        let _ = id;
    }
}

#[tokio::test]
async fn over_an_async_trait_impl() {
    let service = Service {
        cache: Arc::new(common::memory_cache("trait").await),
        loads: AtomicU32::new(0),
    };
    assert_eq!(service.name(1).await, "1/0");
    assert_eq!(service.name(1).await, "1/0", "a hit");
    service.forget(1).await;
    assert_eq!(service.name(1).await, "1/1", "evicted, loaded again");
}
