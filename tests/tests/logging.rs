//! Failures are logged through `tracing`, but not once per call in a storm.
//!
//! Alone in its test binary: tracing caches per-callsite interest
//! process-wide, so a thread-local subscriber can miss events that other
//! tests' threads race through the same callsite.

mod common;

use std::time::Duration;

use cachefw::Cache;
use cachefw_tests::RedisServer;
use common::{MINUTE, SourceDown, user};

async fn burst(cache: &Cache, calls: usize) {
    for _ in 0..calls {
        let got = cache
            .get_or_load("user:1", MINUTE, || async { Ok::<_, SourceDown>(user(1)) })
            .await;
        assert_eq!(got, Ok(user(1)));
    }
}

#[test]
fn failures_are_logged_without_flooding() {
    let (log, _guard) = common::Log::capture();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut redis = RedisServer::reserved();
        let cache = Cache::builder()
            .redis(redis.url())
            .timeout(Duration::from_millis(100))
            .build()
            .await
            .expect("builds");
        assert_eq!(log.count("not reachable at start"), 1, "{}", log.text());

        burst(&cache, 50).await;
        assert!(cache.stats().errors >= 50, "{:?}", cache.stats());
        assert_eq!(
            log.count("cache operation failed"),
            1,
            "one report for a burst of failures:\n{}",
            log.text()
        );

        redis.restart();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while log.count("answers again") == 0 {
            assert!(std::time::Instant::now() < deadline, "{}", log.text());
            burst(&cache, 1).await;
        }
        assert!(log.text().contains("held_back="), "{}", log.text());
        burst(&cache, 50).await;
        assert_eq!(log.count("answers again"), 1, "{}", log.text());

        // A new outage is news: reported at once, not held back.
        redis.stop();
        burst(&cache, 50).await;
        assert_eq!(log.count("cache operation failed"), 2, "{}", log.text());
    });
}
