//! The macros' behaviour over real Redis (and memory): what each return
//! shape stores (aliases and generic returns included), `condition`,
//! `unless`, eviction timing, write-through, prefix eviction, methods,
//! keys that cannot collide, `crate = …`, and failures.

use cachefw_tests::fixtures as common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cachefw::{Cache, cache_evict, cache_put, cacheable};
use cachefw_tests::RedisServer;
use common::{SourceDown, User, user};
use serde::{Deserialize, Serialize};

/// Counts how often a function body ran.
#[derive(Default)]
struct Calls(AtomicU32);

impl Calls {
    fn tick(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cacheable(key = "user:<id>", ttl = "10m", cache = cache)]
async fn get_user(cache: &Cache, calls: &Calls, id: u64) -> Result<User, SourceDown> {
    calls.tick();
    if id == 0 {
        Err(SourceDown(0))
    } else {
        Ok(user(id))
    }
}

#[cacheable(key = "user:<id>", ttl = "10m", cache = cache)]
async fn find_user(cache: &Cache, calls: &Calls, id: u64) -> Option<User> {
    calls.tick();
    (id != 0).then(|| user(id))
}

#[cacheable(key = "user:<id>", ttl = "10m", cache_none = "30s", cache = cache)]
async fn find_user_or_none(cache: &Cache, calls: &Calls, id: u64) -> Option<User> {
    calls.tick();
    (id != 0).then(|| user(id))
}

#[cacheable(key = "count:<id>", ttl = "45s", cache = cache)]
async fn count(cache: &Cache, calls: &Calls, id: u64) -> u64 {
    calls.tick();
    id * 10
}

async fn redis_cache() -> (RedisServer, Cache) {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "m").await;
    (redis, cache)
}

#[tokio::test]
async fn result_caches_ok_only() {
    let (redis, cache) = redis_cache().await;
    let calls = Calls::default();
    assert_eq!(get_user(&cache, &calls, 1).await, Ok(user(1)));
    assert_eq!(get_user(&cache, &calls, 1).await, Ok(user(1)));
    assert_eq!(calls.get(), 1);
    let pttl = redis.pttl("m:v1:user:1");
    assert!(pttl > 590_000 && pttl <= 600_000, "ttl = \"10m\": {pttl}");

    assert_eq!(get_user(&cache, &calls, 0).await, Err(SourceDown(0)));
    assert_eq!(get_user(&cache, &calls, 0).await, Err(SourceDown(0)));
    assert_eq!(calls.get(), 3, "errors are never cached");
    assert_eq!(redis.keys(), ["m:v1:user:1"]);
}

#[tokio::test]
async fn option_caches_some_and_none_only_when_asked() {
    let (redis, cache) = redis_cache().await;
    let calls = Calls::default();
    assert_eq!(find_user(&cache, &calls, 2).await, Some(user(2)));
    assert_eq!(find_user(&cache, &calls, 2).await, Some(user(2)));
    assert_eq!(calls.get(), 1);
    assert_eq!(find_user(&cache, &calls, 0).await, None);
    assert_eq!(find_user(&cache, &calls, 0).await, None);
    assert_eq!(calls.get(), 3, "None is not cached without cache_none");
    assert!(redis.raw_get("m:v1:user:0").is_none());

    let calls = Calls::default();
    assert_eq!(find_user_or_none(&cache, &calls, 0).await, None);
    assert_eq!(find_user_or_none(&cache, &calls, 0).await, None);
    assert_eq!(calls.get(), 1, "cache_none caches None");
    let pttl = redis.pttl("m:v1:user:0");
    assert!(
        pttl > 25_000 && pttl <= 30_000,
        "cache_none = \"30s\": {pttl}"
    );
    // A cached None answers nobody else: the Result reader of the key loads.
    let result_calls = Calls::default();
    assert_eq!(get_user(&cache, &result_calls, 0).await, Err(SourceDown(0)));
    assert_eq!(result_calls.get(), 1);
}

#[tokio::test]
async fn shapes_share_entries_of_one_key() {
    let (_redis, cache) = redis_cache().await;
    let calls = Calls::default();
    assert_eq!(get_user(&cache, &calls, 5).await, Ok(user(5)));
    assert_eq!(find_user(&cache, &calls, 5).await, Some(user(5)));
    assert_eq!(
        calls.get(),
        1,
        "the Option reader hit the Result writer's entry"
    );
}

#[tokio::test]
async fn plain_values_are_always_cached() {
    let (redis, cache) = redis_cache().await;
    let calls = Calls::default();
    assert_eq!(count(&cache, &calls, 3).await, 30);
    assert_eq!(count(&cache, &calls, 3).await, 30);
    assert_eq!(calls.get(), 1);
    let pttl = redis.pttl("m:v1:count:3");
    assert!(pttl > 40_000 && pttl <= 45_000, "{pttl}");
}

#[cacheable(key = "n:<n>", cache = cache, condition = n.is_multiple_of(2))]
async fn even_only(cache: &Cache, calls: &Calls, n: u32) -> u32 {
    calls.tick();
    n + calls.get()
}

#[tokio::test]
async fn condition_false_bypasses_read_and_store() {
    let (_redis, cache) = redis_cache().await;
    let calls = Calls::default();
    cache
        .set("n:3", &999u32, Duration::from_secs(60))
        .await
        .expect("set");
    assert_eq!(even_only(&cache, &calls, 3).await, 4, "not read");
    assert_eq!(
        cache.get::<u32>("n:3").await.expect("get"),
        Some(999),
        "not stored"
    );
    assert_eq!(even_only(&cache, &calls, 4).await, 6);
    assert_eq!(
        even_only(&cache, &calls, 4).await,
        6,
        "condition true: cached"
    );
    assert_eq!(calls.get(), 2);
}

#[cacheable(key = "name:<id>", cache = cache, unless = result.is_empty())]
async fn name(cache: &Cache, calls: &Calls, id: u32) -> Result<String, SourceDown> {
    calls.tick();
    Ok(if id == 0 {
        String::new()
    } else {
        format!("n{id}")
    })
}

#[tokio::test]
async fn unless_true_returns_without_storing() {
    let (_redis, cache) = redis_cache().await;
    let calls = Calls::default();
    assert_eq!(name(&cache, &calls, 0).await.as_deref(), Ok(""));
    assert_eq!(cache.get::<String>("name:0").await.expect("get"), None);
    assert_eq!(name(&cache, &calls, 1).await.as_deref(), Ok("n1"));
    assert_eq!(
        cache.get::<String>("name:1").await.expect("get").as_deref(),
        Some("n1")
    );
    assert_eq!(calls.get(), 2);
}

#[cache_evict(key = "user:<id>", cache = cache)]
async fn update(cache: &Cache, id: u64, fail: bool) -> Result<(), SourceDown> {
    // The entry is still there while the body runs.
    assert!(
        cache
            .get::<User>(&format!("user:{id}"))
            .await
            .ok()
            .flatten()
            .is_some()
    );
    if fail { Err(SourceDown(1)) } else { Ok(()) }
}

#[cache_evict(key = "user:<id>", cache = cache, before = true)]
async fn replace(cache: &Cache, id: u64, fail: bool) -> Result<(), SourceDown> {
    // Evicted before the body runs.
    assert!(
        cache
            .get::<User>(&format!("user:{id}"))
            .await
            .ok()
            .flatten()
            .is_none()
    );
    if fail { Err(SourceDown(2)) } else { Ok(()) }
}

#[cache_evict(key = "user:<id>", cache = cache)]
async fn touch(cache: &Cache, id: u64) -> Option<u64> {
    let _ = cache;
    None
}

#[tokio::test]
async fn evict_after_ok_not_after_err_and_before_always() {
    let (_redis, cache) = redis_cache().await;
    let calls = Calls::default();
    let cached = |id| {
        let cache = cache.clone();
        async move {
            cache
                .get::<User>(&format!("user:{id}"))
                .await
                .expect("get")
                .is_some()
        }
    };
    get_user(&cache, &calls, 1).await.ok();
    assert_eq!(update(&cache, 1, true).await, Err(SourceDown(1)));
    assert!(cached(1).await, "an Err leaves the entry");
    assert_eq!(update(&cache, 1, false).await, Ok(()));
    assert!(!cached(1).await, "an Ok evicts it");

    get_user(&cache, &calls, 2).await.ok();
    assert_eq!(replace(&cache, 2, true).await, Err(SourceDown(2)));
    assert!(
        !cached(2).await,
        "before = true evicts whatever the body returns"
    );

    get_user(&cache, &calls, 3).await.ok();
    assert_eq!(touch(&cache, 3).await, None);
    assert!(
        !cached(3).await,
        "a non-Result return evicts after any value"
    );
}

#[cache_evict(prefix = "tenant:<tenant>:", cache = cache)]
#[cache_evict(key = "index", cache = cache)]
async fn reset_tenant(cache: &Cache, tenant: &str) {
    let _ = (cache, tenant);
}

#[tokio::test]
async fn prefix_eviction_and_stacked_evictions() {
    let (redis, cache) = redis_cache().await;
    let minute = Duration::from_secs(60);
    for key in [
        "tenant:a:1",
        "tenant:a:2",
        "tenant:ab:1",
        "tenant:b:1",
        "index",
    ] {
        cache.set(key, &1u8, minute).await.expect("set");
    }
    reset_tenant(&cache, "a").await;
    assert_eq!(redis.keys(), ["m:v1:tenant:ab:1", "m:v1:tenant:b:1"]);
}

#[cache_put(key = "user:<u.id>", ttl = "5m", cache = cache)]
async fn save(cache: &Cache, u: User, fail: bool) -> Result<User, SourceDown> {
    let _ = cache;
    if fail { Err(SourceDown(3)) } else { Ok(u) }
}

#[cache_put(key = "user:<id>", cache = cache, unless = result.name.is_empty())]
async fn rename(cache: &Cache, id: u64, name: &str) -> Option<User> {
    let _ = cache;
    (id != 0).then(|| User {
        name: name.to_owned(),
        ..user(id)
    })
}

#[tokio::test]
async fn cache_put_stores_ok_and_some_only() {
    let (redis, cache) = redis_cache().await;
    let calls = Calls::default();
    let mut changed = user(4);
    changed.name = "changed".into();
    assert_eq!(
        save(&cache, changed.clone(), true).await,
        Err(SourceDown(3))
    );
    assert!(
        redis.raw_get("m:v1:user:4").is_none(),
        "an Err stores nothing"
    );
    assert_eq!(
        save(&cache, changed.clone(), false).await,
        Ok(changed.clone())
    );
    let pttl = redis.pttl("m:v1:user:4");
    assert!(pttl > 290_000 && pttl <= 300_000, "ttl = \"5m\": {pttl}");
    assert_eq!(
        get_user(&cache, &calls, 4).await,
        Ok(changed),
        "readers see the put"
    );
    assert_eq!(calls.get(), 0);

    assert_eq!(rename(&cache, 0, "x").await, None);
    assert!(
        redis.raw_get("m:v1:user:0").is_none(),
        "None stores nothing"
    );
    assert!(rename(&cache, 6, "").await.is_some());
    assert!(
        redis.raw_get("m:v1:user:6").is_none(),
        "unless holds it back"
    );
    assert!(rename(&cache, 6, "six").await.is_some());
    assert_eq!(
        cache
            .get::<User>("user:6")
            .await
            .expect("get")
            .map(|u| u.name)
            .as_deref(),
        Some("six")
    );
    let left = cache.ttl("user:6").await.expect("ttl").expect("stored");
    assert!(left > Duration::from_secs(590), "default TTL: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_run_the_body_once() {
    let (_redis, cache) = redis_cache().await;
    let calls = std::sync::Arc::new(Calls::default());

    #[cacheable(key = "slow:<id>", cache = cache)]
    async fn slow(cache: Cache, calls: std::sync::Arc<Calls>, id: u64) -> Result<u64, SourceDown> {
        calls.tick();
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(id)
    }

    let tasks: Vec<_> = (0..50)
        .map(|_| tokio::spawn(slow(cache.clone(), calls.clone(), 9)))
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), Ok(9));
    }
    assert_eq!(calls.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_serves_the_body() {
    let redis = RedisServer::reserved();
    let cache = Cache::builder()
        .redis(redis.url())
        .timeout(Duration::from_millis(100))
        .build()
        .await
        .expect("builds");
    let calls = Calls::default();
    for _ in 0..5 {
        assert_eq!(get_user(&cache, &calls, 1).await, Ok(user(1)));
        assert_eq!(find_user_or_none(&cache, &calls, 0).await, None);
    }
    assert_eq!(calls.get(), 10);
    assert!(cache.stats().errors >= 10);
    // Evictions and puts fail quietly too.
    reset_tenant(&cache, "a").await;
    assert_eq!(save(&cache, user(1), false).await, Ok(user(1)));
}

#[tokio::test]
async fn works_over_the_memory_backend() {
    let cache = common::memory_cache("m").await;
    let calls = Calls::default();
    assert_eq!(find_user_or_none(&cache, &calls, 0).await, None);
    assert_eq!(find_user_or_none(&cache, &calls, 0).await, None);
    assert_eq!(get_user(&cache, &calls, 1).await, Ok(user(1)));
    assert_eq!(get_user(&cache, &calls, 1).await, Ok(user(1)));
    assert_eq!(calls.get(), 2);
}

/// An error type that could be cached: were an alias of `Result` taken for
/// a plain value, its `Err` would be stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ApiError(u64);

type ApiResult<T> = Result<T, ApiError>;

#[cacheable(key = "api:<id>", ttl = "10m", cache = cache)]
async fn fetch(cache: &Cache, calls: &Calls, id: u64) -> ApiResult<User> {
    calls.tick();
    if id == 0 {
        Err(ApiError(id))
    } else {
        Ok(user(id))
    }
}

#[tokio::test]
async fn a_result_alias_caches_ok_never_err() {
    let (redis, cache) = redis_cache().await;
    let calls = Calls::default();
    assert_eq!(fetch(&cache, &calls, 0).await, Err(ApiError(0)));
    assert_eq!(fetch(&cache, &calls, 0).await, Err(ApiError(0)));
    assert_eq!(calls.get(), 2, "an Err is never served from the cache");
    assert!(redis.keys().is_empty(), "nor stored: {:?}", redis.keys());

    assert_eq!(fetch(&cache, &calls, 1).await, Ok(user(1)));
    assert_eq!(fetch(&cache, &calls, 1).await, Ok(user(1)));
    assert_eq!(calls.get(), 3);
    assert_eq!(redis.keys(), ["m:v1:api:1"]);
}

/// Not cacheable: evicting must not need it to be.
#[derive(Debug, PartialEq)]
struct Receipt;

#[cache_evict(key = "api:<id>", cache = cache)]
async fn remove(cache: &Cache, id: u64, fail: bool) -> ApiResult<Receipt> {
    let _ = cache;
    if fail { Err(ApiError(id)) } else { Ok(Receipt) }
}

#[tokio::test]
async fn evicting_after_a_result_alias_waits_for_ok() {
    let (redis, cache) = redis_cache().await;
    let calls = Calls::default();
    fetch(&cache, &calls, 2).await.ok();
    assert_eq!(remove(&cache, 2, true).await, Err(ApiError(2)));
    assert_eq!(redis.keys(), ["m:v1:api:2"], "an Err leaves the entry");
    assert_eq!(remove(&cache, 2, false).await, Ok(Receipt));
    assert!(redis.keys().is_empty(), "an Ok evicts it");
}

#[cacheable(key = "row:<id>", ttl = "10m", cache = cache)]
async fn lookup(cache: &Cache, calls: &Calls, id: u64) -> Result<Option<User>, SourceDown> {
    calls.tick();
    match id {
        0 => Err(SourceDown(0)),
        1 => Ok(None),
        id => Ok(Some(user(id))),
    }
}

#[cacheable(key = "row:<id>", ttl = "10m", cache_none = "30s", cache = cache)]
async fn lookup_or_none(cache: &Cache, calls: &Calls, id: u64) -> Result<Option<User>, SourceDown> {
    calls.tick();
    match id {
        0 => Err(SourceDown(0)),
        1 => Ok(None),
        id => Ok(Some(user(id))),
    }
}

#[tokio::test]
async fn result_option_caches_some_and_none_only_with_cache_none() {
    let (redis, cache) = redis_cache().await;
    let calls = Calls::default();
    assert_eq!(lookup(&cache, &calls, 2).await, Ok(Some(user(2))));
    assert_eq!(lookup(&cache, &calls, 2).await, Ok(Some(user(2))));
    assert_eq!(calls.get(), 1, "Ok(Some) is cached");
    let pttl = redis.pttl("m:v1:row:2");
    assert!(pttl > 590_000 && pttl <= 600_000, "ttl = \"10m\": {pttl}");

    assert_eq!(lookup(&cache, &calls, 1).await, Ok(None));
    assert_eq!(lookup(&cache, &calls, 1).await, Ok(None));
    assert_eq!(calls.get(), 3, "Ok(None) is not cached without cache_none");
    assert!(redis.raw_get("m:v1:row:1").is_none());

    assert_eq!(lookup(&cache, &calls, 0).await, Err(SourceDown(0)));
    assert_eq!(lookup_or_none(&cache, &calls, 0).await, Err(SourceDown(0)));
    assert_eq!(calls.get(), 5, "Err is never cached");
    assert!(redis.raw_get("m:v1:row:0").is_none());

    let calls = Calls::default();
    assert_eq!(lookup_or_none(&cache, &calls, 1).await, Ok(None));
    assert_eq!(lookup_or_none(&cache, &calls, 1).await, Ok(None));
    assert_eq!(calls.get(), 1, "cache_none caches Ok(None)");
    let pttl = redis.pttl("m:v1:row:1");
    assert!(
        pttl > 25_000 && pttl <= 30_000,
        "cache_none = \"30s\": {pttl}"
    );
    assert_eq!(
        lookup(&cache, &calls, 1).await,
        Ok(None),
        "a cached None answers the function without cache_none too"
    );
    assert_eq!(calls.get(), 1);
}

type Maybe<T> = Option<T>;

#[cacheable(key = "maybe:<id>", ttl = "1m", cache_none = "20s", cache = cache)]
async fn maybe(cache: &Cache, calls: &Calls, id: u64) -> Maybe<u64> {
    calls.tick();
    (id != 0).then_some(id * 2)
}

#[tokio::test]
async fn an_option_alias_keeps_its_shape() {
    let (redis, cache) = redis_cache().await;
    let calls = Calls::default();
    assert_eq!(maybe(&cache, &calls, 0).await, None);
    assert_eq!(maybe(&cache, &calls, 0).await, None);
    assert_eq!(maybe(&cache, &calls, 4).await, Some(8));
    assert_eq!(maybe(&cache, &calls, 4).await, Some(8));
    assert_eq!(calls.get(), 2);
    let none = redis.pttl("m:v1:maybe:0");
    assert!(
        none > 15_000 && none <= 20_000,
        "a None, for cache_none: {none}"
    );
    let some = redis.pttl("m:v1:maybe:4");
    assert!(some > 55_000 && some <= 60_000, "a Some, for ttl: {some}");
    assert_eq!(cache.get::<u64>("maybe:4").await.expect("get"), Some(8));
}

#[cacheable(key = "gen:<id>", ttl = "1m", cache = cache, shape = "plain")]
async fn generic<R>(cache: &Cache, calls: &Calls, id: u64, make: fn(u64) -> R) -> R
where
    R: Serialize + for<'de> Deserialize<'de> + Clone + Send + Sync + 'static,
{
    calls.tick();
    make(id)
}

/// A source whose output type names the shape only through a bound.
trait Source {
    type Output;
    fn load(&self, id: u64) -> Self::Output;
}

struct Users;

impl Source for Users {
    type Output = Result<User, SourceDown>;
    fn load(&self, id: u64) -> Self::Output {
        if id == 0 {
            Err(SourceDown(0))
        } else {
            Ok(user(id))
        }
    }
}

#[cacheable(key = "src:<id>", ttl = "1m", cache = cache, shape = "result")]
async fn from_source<S>(cache: &Cache, calls: &Calls, source: &S, id: u64) -> S::Output
where
    S: Source<Output = Result<User, SourceDown>>,
{
    calls.tick();
    source.load(id)
}

#[tokio::test]
async fn generic_returns_with_a_declared_shape() {
    let (redis, cache) = redis_cache().await;
    let calls = Calls::default();
    assert_eq!(
        generic(&cache, &calls, 3, |id| format!("v{id}")).await,
        "v3"
    );
    assert_eq!(
        generic(&cache, &calls, 3, |_| String::from("other")).await,
        "v3",
        "served from the cache"
    );
    assert_eq!(calls.get(), 1);
    assert_eq!(
        cache.get::<String>("gen:3").await.expect("get").as_deref(),
        Some("v3")
    );

    let calls = Calls::default();
    assert_eq!(
        from_source(&cache, &calls, &Users, 0).await,
        Err(SourceDown(0))
    );
    assert_eq!(
        from_source(&cache, &calls, &Users, 0).await,
        Err(SourceDown(0))
    );
    assert!(redis.raw_get("m:v1:src:0").is_none());
    assert_eq!(from_source(&cache, &calls, &Users, 5).await, Ok(user(5)));
    assert_eq!(from_source(&cache, &calls, &Users, 5).await, Ok(user(5)));
    assert_eq!(calls.get(), 3, "Ok cached, Err not");
}

#[cache_put(key = "user:<id>", cache = cache)]
async fn refresh(cache: &Cache, id: u64, found: bool) -> Option<User> {
    let _ = cache;
    found.then(|| user(id))
}

#[cache_put(key = "user:<id>", cache = cache)]
async fn reload(
    cache: &Cache,
    id: u64,
    row: Result<Option<User>, SourceDown>,
) -> ApiResult<Option<User>> {
    let _ = (cache, id);
    row.map_err(|SourceDown(code)| ApiError(code.into()))
}

#[tokio::test]
async fn cache_put_of_none_evicts_and_of_err_does_nothing() {
    let (redis, cache) = redis_cache().await;
    let calls = Calls::default();
    get_user(&cache, &calls, 7).await.ok();
    assert_eq!(redis.keys(), ["m:v1:user:7"]);
    assert_eq!(refresh(&cache, 7, false).await, None);
    assert!(redis.keys().is_empty(), "None evicts the entry");
    assert_eq!(refresh(&cache, 7, true).await, Some(user(7)));
    assert_eq!(redis.keys(), ["m:v1:user:7"], "Some stores it");

    let mut changed = user(7);
    changed.name = "changed".into();
    assert_eq!(
        reload(&cache, 7, Err(SourceDown(1))).await,
        Err(ApiError(1))
    );
    assert_eq!(
        cache.get::<User>("user:7").await.expect("get"),
        Some(user(7)),
        "Err leaves the entry"
    );
    assert_eq!(
        reload(&cache, 7, Ok(Some(changed.clone()))).await,
        Ok(Some(changed.clone()))
    );
    assert_eq!(
        cache.get::<User>("user:7").await.expect("get"),
        Some(changed),
        "Ok(Some) stores"
    );
    assert_eq!(reload(&cache, 7, Ok(None)).await, Ok(None));
    assert!(redis.keys().is_empty(), "Ok(None) evicts");
}

#[cache_put(key = "j:<id>", ttl = "100s", jitter = "50%", cache = cache)]
async fn put_jittered(cache: &Cache, id: u64) -> u64 {
    let _ = cache;
    id
}

#[tokio::test]
async fn cache_put_takes_jitter_off_its_ttl() {
    let (redis, cache) = redis_cache().await;
    let mut ttls = Vec::new();
    for id in 0..8 {
        assert_eq!(put_jittered(&cache, id).await, id);
        let pttl = redis.pttl(&format!("m:v1:j:{id}"));
        assert!(
            pttl > 45_000 && pttl <= 100_000,
            "100s less up to 50%: {pttl}"
        );
        ttls.push(pttl / 1_000);
    }
    ttls.sort_unstable();
    ttls.dedup();
    assert!(ttls.len() > 1, "eight puts, one TTL: no jitter ({ttls:?})");
}

#[cacheable(key = "a:<x>:<y>", ttl = "1m", cache = cache)]
async fn joined(cache: &Cache, calls: &Calls, x: &str, y: &str) -> String {
    calls.tick();
    format!("{x}|{y}")
}

#[tokio::test]
async fn placeholder_values_cannot_make_two_calls_share_a_key() {
    let (redis, cache) = redis_cache().await;
    let calls = Calls::default();
    assert_eq!(joined(&cache, &calls, "1:2", "3").await, "1:2|3");
    assert_eq!(joined(&cache, &calls, "1", "2:3").await, "1|2:3");
    assert_eq!(joined(&cache, &calls, "5%3A", "A").await, "5%3A|A");
    assert_eq!(joined(&cache, &calls, "5:", "A").await, "5:|A");
    assert_eq!(calls.get(), 4, "four calls, four entries");
    assert_eq!(
        redis.keys(),
        [
            "m:v1:a:1%3A2:3",
            "m:v1:a:1:2%3A3",
            "m:v1:a:5%253A:A",
            "m:v1:a:5%3A:A",
        ]
    );
    assert_eq!(joined(&cache, &calls, "1", "2:3").await, "1|2:3");
    assert_eq!(calls.get(), 4, "each is found again at its own key");
}

/// The runtime as a crate that re-exports cachefw shows it to its users,
/// with a default cache of its own: only `crate = framework::cachefw`
/// reaches that cache.
mod framework {
    use std::sync::OnceLock;

    pub static CACHE: OnceLock<::cachefw::Cache> = OnceLock::new();

    pub mod cachefw {
        pub mod __private {
            pub use ::cachefw::__private::*;

            /// The framework's cache, where `::cachefw` has none installed.
            pub fn installed_or_warn(
                _: &'static str,
                _: &'static str,
                _: Attribute,
                _: &'static AtomicBool,
            ) -> Option<::cachefw::Cache> {
                super::super::CACHE.get().cloned()
            }
        }
    }
}

#[cacheable(crate = framework::cachefw, key = "fw:<id>", ttl = "1m")]
async fn through_framework(calls: &Calls, id: u64) -> Result<u64, SourceDown> {
    calls.tick();
    Ok(id)
}

#[tokio::test]
async fn crate_names_the_runtime_through_a_reexport() {
    let (redis, cache) = redis_cache().await;
    assert!(
        cachefw::installed().is_none(),
        "nothing installed: ::cachefw would run uncached"
    );
    assert!(framework::CACHE.set(cache).is_ok(), "set once");
    let calls = Calls::default();
    assert_eq!(through_framework(&calls, 1).await, Ok(1));
    assert_eq!(through_framework(&calls, 1).await, Ok(1));
    assert_eq!(calls.get(), 1, "cached through the framework's cache");
    assert_eq!(redis.keys(), ["m:v1:fw:1"]);
}
