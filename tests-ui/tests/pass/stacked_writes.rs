use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use cachefw::{Cache, cache_evict, cache_put, cacheable};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct User {
    id: u64,
    email: String,
    pair: (u8, String),
}

fn user(id: u64) -> User {
    User {
        id,
        email: format!("u{id}@x"),
        pair: (7, "p".into()),
    }
}

static LOADS: AtomicU32 = AtomicU32::new(0);

#[cacheable(key = "user:<id>", cache = cache)]
async fn get(cache: &Cache, id: u64) -> Result<User, String> {
    LOADS.fetch_add(1, Ordering::SeqCst);
    Ok(user(id))
}

// Every shape, field paths and tuple indexes below `result`, a prefix from
// the result, `condition`, `unless`, through a path to the crate.
#[cache_put(key = "user:<result.id>", cache = cache, ttl = "1m", unless = result.id == 0)]
#[cachefw::cache_put(key = "email:<result.email>:<result.pair.0>", cache = cache)]
#[cache_evict(prefix = "list:<result.pair.1>:", cache = cache, condition = notify)]
#[cache_evict(key = "stats", cache = cache, before = true)]
async fn create(cache: &Cache, id: u64, notify: bool) -> Result<User, String> {
    Ok(user(id))
}

#[cache_put(key = "user:<result.id>", cache = cache)]
async fn find(cache: &Cache, id: u64) -> Option<User> {
    (id > 0).then(|| user(id))
}

#[cache_put(key = "user:<result.id>", cache = cache)]
async fn reload(cache: &Cache, id: u64) -> Result<Option<User>, String> {
    Ok(Some(user(id)))
}

#[cache_put(key = "n:<result>", cache = cache)]
#[cache_evict(key = "n:<n>", cache = cache)]
async fn plain(cache: &Cache, n: u64) -> u64 {
    n + 1
}

#[cache_put(key = "gen:<result>", cache = cache, shape = "plain")]
async fn generic<R>(cache: &Cache, value: R) -> R
where
    R: std::fmt::Display
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + Send
        + Sync
        + 'static,
{
    value
}

/// Evicting by the result needs no cacheable value, only a `Display` field.
struct Receipt {
    id: u64,
}

#[cache_evict(key = "user:<result.id>", cache = cache)]
async fn delete(cache: &Cache, id: u64) -> Result<Receipt, String> {
    Ok(Receipt { id })
}

/// An attribute written only below another of the stack is still resolved
/// through its import.
mod only_below {
    #![deny(unused_imports)]

    use cachefw::{cache_evict, cache_put};

    #[cache_put(key = "x:<id>")]
    #[cache_evict(key = "y:<id>")]
    pub async fn write(id: u64) -> u64 {
        id
    }
}

#[async_trait]
trait Repo {
    async fn save(&self, id: u64) -> Result<User, String>;
}

struct Users {
    cache: Cache,
    tenant: String,
}

#[async_trait]
impl Repo for Users {
    #[cache_put(key = "user:<result.id>", cache = self.cache)]
    #[cache_evict(key = "list:<self.tenant>", cache = self.cache)]
    async fn save(&self, id: u64) -> Result<User, String> {
        Ok(user(id))
    }
}

impl Users {
    #[cache_evict(key = "list:<id>", cache = self.cache, condition = self.cache.namespace() == "t")]
    #[cache_put(key = "user:<result.id>", cache = self.cache)]
    async fn touch(&mut self, id: u64) -> Option<User> {
        Some(user(id))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn runs() {
    let cache = Cache::builder()
        .namespace("t")
        .build()
        .await
        .expect("cache");
    assert_eq!(create(&cache, 4, true).await, Ok(user(4)));
    assert_eq!(get(&cache, 4).await, Ok(user(4)));
    assert_eq!(LOADS.load(Ordering::SeqCst), 0, "a hit on the put");
    assert!(
        cache
            .get::<User>("email:u4@x:7")
            .await
            .expect("get")
            .is_some()
    );
    assert_eq!(find(&cache, 5).await, Some(user(5)));
    assert_eq!(reload(&cache, 6).await, Ok(Some(user(6))));
    assert_eq!(plain(&cache, 1).await, 2);
    assert_eq!(cache.get::<u64>("n:2").await.expect("get"), Some(2));
    assert_eq!(generic(&cache, 3u8).await, 3);
    assert!(delete(&cache, 4).await.is_ok());
    assert!(cache.get::<User>("user:4").await.expect("get").is_none());
    let mut users = Users {
        cache: cache.clone(),
        tenant: "t".into(),
    };
    assert!(users.save(8).await.is_ok());
    assert!(users.touch(9).await.is_some());
    assert!(cache.get::<User>("user:9").await.expect("get").is_some());
    assert_eq!(only_below::write(3).await, 3);
}
