//! `tags = [...]` through the macros: a `#[cacheable]` entry carries its
//! rendered tags, `#[cache_put]` stores under them, and `#[cache_evict]`
//! evicts them (alone or with a key), from any process.

use cachefw_tests::fixtures as common;

use std::sync::atomic::{AtomicU32, Ordering};

use cachefw::{Cache, cache_evict, cache_put, cacheable};
use cachefw_tests::RedisServer;
use common::SourceDown;

static LOADS: AtomicU32 = AtomicU32::new(0);

#[cacheable(key = "order:<id>", ttl = "10m", tags = ["user:<user_id>", "orders"], cache = cache)]
async fn get_order(cache: &Cache, id: u64, user_id: &str) -> Result<u64, SourceDown> {
    let _ = user_id;
    LOADS.fetch_add(1, Ordering::SeqCst);
    Ok(id * 10)
}

#[cache_evict(tags = ["user:<user_id>"], cache = cache)]
async fn close_account(cache: &Cache, user_id: &str) -> Result<(), SourceDown> {
    let _ = (cache, user_id);
    Ok(())
}

#[cache_evict(key = "order:<id>", tags = ["orders"], before = true, cache = cache)]
async fn drop_order(cache: &Cache, id: u64) -> Result<(), SourceDown> {
    let _ = (cache, id);
    Ok(())
}

#[cache_put(key = "order:<id>", ttl = "10m", tags = ["user:<user_id>"], cache = cache)]
async fn save_order(cache: &Cache, id: u64, user_id: &str) -> Result<u64, SourceDown> {
    let _ = (cache, user_id);
    Ok(id * 100)
}

fn loads() -> u32 {
    LOADS.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_through_the_macros_reach_every_process() {
    let redis = RedisServer::start();
    let a = common::redis_cache(&redis, "mt").await;
    let b = common::redis_cache(&redis, "mt").await;
    let start = loads();
    // A user id with a separator: tags escape it as keys do.
    assert_eq!(get_order(&a, 1, "u:1").await, Ok(10));
    assert_eq!(get_order(&a, 1, "u:1").await, Ok(10));
    assert_eq!(get_order(&a, 2, "u2").await, Ok(20));
    assert_eq!(loads() - start, 2, "the second call is a hit");
    // Evicted by another process: the entries of user u:1 only.
    close_account(&b, "u:1").await.expect("evicts");
    assert_eq!(get_order(&a, 2, "u2").await, Ok(20));
    assert_eq!(loads() - start, 2, "another user's entry stays");
    assert_eq!(get_order(&a, 1, "u:1").await, Ok(10));
    assert_eq!(loads() - start, 3, "reloaded after its tag was evicted");
    // The low-level call names the rendered tag.
    b.evict_tag("user:u%3A1").await.expect("evicts");
    assert_eq!(a.get::<u64>("order:1").await.expect("reads"), None);

    // A put stores under its tags.
    save_order(&a, 3, "u3").await.expect("saved");
    assert_eq!(b.get::<u64>("order:3").await.expect("reads"), Some(300));
    close_account(&b, "u3").await.expect("evicts");
    assert_eq!(b.get::<u64>("order:3").await.expect("reads"), None);

    // A tag and a key evicted together ("orders" carries every order).
    assert_eq!(get_order(&a, 4, "u4").await, Ok(40));
    assert_eq!(get_order(&a, 5, "u5").await, Ok(50));
    let before = loads();
    drop_order(&b, 4).await.expect("evicts");
    assert_eq!(get_order(&a, 5, "u5").await, Ok(50));
    assert_eq!(
        loads() - before,
        1,
        "order 5 carried the evicted tag `orders`"
    );
    assert_eq!(a.stats().errors, 0, "{:?}", a.stats());
}
