//! Failures are logged through `tracing`, but not once per call in a storm.
//!
//! Alone in its test binary: tracing caches per-callsite interest
//! process-wide, so a thread-local subscriber can miss events that other
//! tests' threads race through the same callsite.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachefw::Cache;
use cachefw_tests::RedisServer;
use common::{MINUTE, SourceDown, user};

/// Collects what the cache logs.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn failures_are_logged_without_flooding() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stats = runtime.block_on(async {
        let redis = RedisServer::reserved();
        let cache = Cache::builder()
            .redis(redis.url())
            .timeout(Duration::from_millis(100))
            .build()
            .await
            .expect("builds");
        for _ in 0..50 {
            let got = cache
                .get_or_load("user:1", MINUTE, || async { Ok::<_, SourceDown>(user(1)) })
                .await;
            assert_eq!(got, Ok(user(1)));
        }
        cache.stats()
    });
    let text = String::from_utf8(log.0.lock().expect("log lock").clone()).expect("utf-8");
    let reports = text.matches("cache operation failed").count();
    assert!(stats.errors >= 50, "{stats:?}");
    assert_eq!(reports, 1, "one report for a burst of failures:\n{text}");
    assert!(text.contains("not reachable at start"), "{text}");
}
