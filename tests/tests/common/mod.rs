//! Shared by the integration tests: a value type, cache constructors, and a
//! macro that runs one test body over each backend.

#![allow(dead_code)] // each test binary uses part of this module

use std::time::Duration;

use cachefw::Cache;
use cachefw_tests::RedisServer;
use serde::{Deserialize, Serialize};

pub const MINUTE: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub tags: Vec<String>,
    pub score: f64,
}

pub fn user(id: u64) -> User {
    User {
        id,
        name: format!("user {id}"),
        email: format!("user{id}@example.com"),
        tags: vec!["a".into(), "b".into()],
        score: id as f64 / 2.0,
    }
}

/// The error type of test loaders.
#[derive(Debug, PartialEq)]
pub struct SourceDown(pub u32);

/// Reads `user:{id}` through the cache, loading it when missing: the
/// loader's value whatever the cache does.
pub async fn load_user(cache: &Cache, id: u64) -> User {
    cache
        .get_or_load(&format!("user:{id}"), MINUTE, || async {
            Ok::<_, SourceDown>(user(id))
        })
        .await
        .expect("the loader cannot fail")
}

pub async fn redis_cache(redis: &RedisServer, namespace: &str) -> Cache {
    Cache::builder()
        .redis(redis.url())
        .namespace(namespace)
        .build()
        .await
        .expect("cache builds")
}

pub async fn memory_cache(namespace: &str) -> Cache {
    Cache::builder()
        .in_memory()
        .namespace(namespace)
        .build()
        .await
        .expect("cache builds")
}

/// Runs `async fn $name(cache: Cache)` as two tests: `$name::memory` and
/// `$name::redis` (over a private redis-server).
#[macro_export]
macro_rules! on_each_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name($crate::common::memory_cache("test").await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let server = cachefw_tests::RedisServer::start();
                super::$name($crate::common::redis_cache(&server, "test").await).await;
            }
        }
    )*};
}
