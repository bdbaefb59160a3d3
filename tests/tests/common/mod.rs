//! Shared by the integration tests: a value type, cache constructors, and a
//! macro that runs one test body over each backend.

#![allow(dead_code)] // each test binary uses part of this module

use std::sync::{Arc, Mutex};
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

/// A Redis cache with a near tier in front (8 MiB).
pub async fn near_cache(redis: &RedisServer, namespace: &str) -> Cache {
    Cache::builder()
        .redis(redis.url())
        .namespace(namespace)
        .near_cache(8 << 20)
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

/// Runs `async fn $name(cache: Cache)` as three tests: `$name::memory`,
/// `$name::redis` (over a private redis-server) and `$name::near` (the same
/// with a near tier in front).
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

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn near() {
                let server = cachefw_tests::RedisServer::start();
                super::$name($crate::common::near_cache(&server, "test").await).await;
            }
        }
    )*};
}

/// Collects what the cache logs.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// Collects this thread's `tracing` events until the guard drops.
    ///
    /// Use it in a test binary of its own: tracing caches per-callsite
    /// interest process-wide, so a thread-local subscriber can miss events
    /// that other tests' threads race through the same callsite.
    pub fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let log = Self::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("log lock").clone()).expect("utf-8")
    }

    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}
