//! Shared by the integration tests: a value type, cache constructors, a
//! macro that runs one test body over each backend, and a log collector.
//! The test files name it `common` (`use cachefw_tests::fixtures as common;`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::RedisServer;
use cachefw::Cache;
use serde::{Deserialize, Serialize};

/// The TTL of most test entries.
pub const MINUTE: Duration = Duration::from_secs(60);

/// A value of the size and shape a service caches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub tags: Vec<String>,
    pub score: f64,
}

/// The [`User`] of the source with this id.
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

/// A cache on `redis`, in `namespace`.
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

/// An in-memory cache in `namespace`.
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
                super::$name($crate::fixtures::memory_cache("test").await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let server = $crate::RedisServer::start();
                super::$name($crate::fixtures::redis_cache(&server, "test").await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn near() {
                let server = $crate::RedisServer::start();
                super::$name($crate::fixtures::near_cache(&server, "test").await).await;
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
    /// Only this thread's events: run the code under test on it (a
    /// current-thread runtime). Tests that capture share their binary only
    /// with tests that install no process-wide subscriber (see
    /// `tests/README.md`).
    pub fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let log = Self::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }

    /// Everything collected so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("log lock").clone()).expect("utf-8")
    }

    /// How many times `needle` was logged.
    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

/// How long a soak runs: `short` (what CI runs), or `CACHEFW_SOAK_SECS`
/// seconds when that is set (`scripts/soak` runs them long).
///
/// # Panics
///
/// When `CACHEFW_SOAK_SECS` is set to something else than a number of
/// seconds.
pub fn soak_time(short: Duration) -> Duration {
    match std::env::var("CACHEFW_SOAK_SECS") {
        Err(_) => short,
        Ok(secs) => {
            Duration::from_secs(secs.trim().parse().unwrap_or_else(|_| {
                panic!("CACHEFW_SOAK_SECS={secs:?} is not a number of seconds")
            }))
        }
    }
}

/// How many rounds a repeated scenario runs: `short` (what CI runs), or
/// `CACHEFW_ROUNDS` when that is set (`scripts/soak` runs more).
///
/// # Panics
///
/// When `CACHEFW_ROUNDS` is set to something else than a number.
pub fn rounds(short: usize) -> usize {
    match std::env::var("CACHEFW_ROUNDS") {
        Err(_) => short,
        Ok(rounds) => rounds
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CACHEFW_ROUNDS={rounds:?} is not a number")),
    }
}
