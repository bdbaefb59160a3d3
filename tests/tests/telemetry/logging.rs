//! Failures are logged through `tracing`, but not once per call in a storm,
//! nor once per flap of an intermittent fault.
//!
//! Its subscriber is thread-local, and the calls it logs run on this
//! thread (a current-thread runtime), so other tests of the binary neither
//! add to its log nor take from it (`main.rs`).

use cachefw_tests::fixtures as common;

use std::time::{Duration, Instant};

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

/// Calls until the cache reads from Redis again.
async fn until_served(cache: &Cache) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let loads = cache.stats().loads;
        burst(cache, 1).await;
        if cache.stats().loads == loads {
            return;
        }
        assert!(Instant::now() < deadline, "caching did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
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
        // One line per kind of failure: the refused connections, then the
        // calls the open breaker skipped.
        let lines = log.count("cache operation failed");
        assert!(
            (1..=2).contains(&lines),
            "one report per kind for a burst of 50 failures:\n{}",
            log.text()
        );
        assert!(
            log.text().contains(r#"kind="unavailable""#),
            "{}",
            log.text()
        );

        redis.restart();
        until_served(&cache).await;
        assert_eq!(log.count("answers again"), 1, "{}", log.text());

        // An intermittent fault: Redis goes away and comes back three more
        // times within the window. Its kinds were reported a moment ago, so
        // they are only counted now, and the recoveries are not repeated.
        for _ in 0..3 {
            redis.stop();
            burst(&cache, 20).await;
            redis.restart();
            until_served(&cache).await;
        }
        assert_eq!(
            log.count("cache operation failed"),
            lines,
            "nothing new within the window:\n{}",
            log.text()
        );
        assert_eq!(log.count("answers again"), 1, "{}", log.text());
    });
}
