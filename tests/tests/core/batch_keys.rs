//! Batch reads and the keys of annotated functions: an entry cached as
//! "none" is a batch hit, and a batch built with a function's own key
//! renderer reaches the entries the function stores.

use cachefw_tests::fixtures as common;

use std::collections::HashMap;
use std::sync::Mutex;

use cachefw_tests::RedisServer;
use common::{MINUTE, SourceDown};

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
