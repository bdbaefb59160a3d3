//! Batch reads and the keys of annotated functions: an entry cached as
//! "none" is a batch hit, and a batch built with a function's own key
//! renderer reaches the entries the function stores.

use cachefw_tests::fixtures as common;

use std::collections::HashMap;
use std::sync::Mutex;

use cachefw::{Cache, cacheable};
use cachefw_tests::RedisServer;
use common::{MINUTE, SourceDown};

#[cacheable(key = "product:<id>:<region>", ttl = "10m", cache = cache)]
async fn product(cache: &Cache, id: &str, region: u32) -> Result<String, SourceDown> {
    Ok(format!("{id}@{region}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_built_with_the_function_key_reaches_its_entries() {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "bkeys").await;
    // An id with a separator: the rendered key escapes it as the macro does.
    assert_eq!(product(&cache, "a:1", 7).await, Ok("a:1@7".to_owned()));
    let key = product_key("a:1", &7);
    assert_eq!(key, "product:a%3A1:7");
    assert_eq!(
        cache.get::<String>(&key).await.expect("reads").as_deref(),
        Some("a:1@7")
    );
    let asked = Mutex::new(Vec::new());
    let keys = [product_key("a:1", &7), product_key("b", &7)];
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let got = cache
        .get_or_load_many(&refs, MINUTE, |missing| {
            asked.lock().expect("lock").push(missing.clone());
            async move {
                Ok::<_, SourceDown>(
                    missing
                        .into_iter()
                        .map(|key| (key, "loaded".to_owned()))
                        .collect::<HashMap<_, _>>(),
                )
            }
        })
        .await;
    assert_eq!(
        got,
        Ok(vec![Some("a:1@7".to_owned()), Some("loaded".to_owned())])
    );
    assert_eq!(*asked.lock().expect("lock"), [vec![product_key("b", &7)]]);
    // What the batch stored, the function reads; a manual eviction hits it.
    assert_eq!(product(&cache, "b", 7).await, Ok("loaded".to_owned()));
    assert!(cache.delete(&product_key("b", &7)).await.expect("deletes"));
    assert_eq!(product(&cache, "b", 7).await, Ok("b@7".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_none_is_a_batch_hit_not_given_to_the_loader() {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "bnone").await;
    let none = cache
        .get_or_load_optional("item:7", MINUTE, Some(MINUTE), || async {
            Ok::<Option<u64>, SourceDown>(None)
        })
        .await;
    assert_eq!(none, Ok(None));
    cache.set("item:1", &1u64, MINUTE).await.expect("stored");
    let asked = Mutex::new(Vec::new());
    let got = cache
        .get_or_load_many(&["item:1", "item:7", "item:8"], MINUTE, |missing| {
            asked.lock().expect("lock").push(missing.clone());
            async move {
                Ok::<_, SourceDown>(
                    missing
                        .into_iter()
                        .map(|key| (key, 8u64))
                        .collect::<HashMap<_, _>>(),
                )
            }
        })
        .await;
    assert_eq!(got, Ok(vec![Some(1), None, Some(8)]));
    assert_eq!(*asked.lock().expect("lock"), [vec!["item:8".to_owned()]]);
    assert_eq!(cache.stats().hits, 2, "{:?}", cache.stats());
}
