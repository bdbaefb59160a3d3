//! Hit-ratio advice: one `warn` per window for a function whose cache
//! answers too few of its reads, none for one above the threshold.

use std::time::Duration;

use cachefw::{Cache, cacheable};
use cachefw_tests::fixtures::{self as common, SourceDown};

const WINDOW: Duration = Duration::from_millis(300);

/// Always a new key: a hit ratio of 0.
#[cacheable(key = "cold:<n>", ttl = "1m", cache = cache)]
async fn cold(cache: &Cache, n: u64) -> Result<u64, SourceDown> {
    Ok(n)
}

/// Always the same key: every call after the first hits.
#[cacheable(key = "warm:<n>", ttl = "1m", cache = cache)]
async fn warm(cache: &Cache, n: u64) -> Result<u64, SourceDown> {
    Ok(n)
}

async fn cache(advice: bool) -> Cache {
    let builder = Cache::builder().namespace("advice");
    let builder = if advice {
        builder.low_hit_ratio(0.5, WINDOW)
    } else {
        builder.no_low_hit_ratio_warning()
    };
    builder.build().await.expect("builds")
}

/// Three windows of 1,200 calls each, then one call to close the last.
async fn windows(cache: &Cache, call: impl AsyncFn(&Cache, u64)) {
    let mut n = 0;
    for _ in 0..3 {
        for _ in 0..1_200 {
            call(cache, n).await;
            n += 1;
        }
        tokio::time::sleep(WINDOW + Duration::from_millis(50)).await;
    }
    // The last window is judged by the first reads after it.
    for _ in 0..64 {
        call(cache, n).await;
        n += 1;
    }
}

fn run(test: impl AsyncFnOnce()) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(test());
}

#[test]
fn a_function_that_always_misses_is_warned_about_once_per_window() {
    let (log, _guard) = common::Log::capture();
    run(async || {
        let cache = cache(true).await;
        windows(&cache, async |cache, n| {
            assert_eq!(cold(cache, n).await, Ok(n));
        })
        .await;
    });
    let text = log.text();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("hit ratio")).collect();
    assert_eq!(warnings.len(), 3, "one per window:\n{text}");
    for warning in warnings {
        assert!(warning.contains("WARN"), "{warning}");
        assert!(warning.contains("telemetry::hit_ratio::cold"), "{warning}");
        assert!(warning.contains("0.00"), "the ratio: {warning}");
        assert!(warning.contains("reads"), "{warning}");
        assert!(warning.contains("round trip"), "{warning}");
    }
}

#[test]
fn a_function_above_the_threshold_is_not_warned_about() {
    let (log, _guard) = common::Log::capture();
    run(async || {
        let cache = cache(true).await;
        windows(&cache, async |cache, _| {
            assert_eq!(warm(cache, 7).await, Ok(7));
        })
        .await;
        assert!(cache.stats().hits > 3_000, "{:?}", cache.stats());
    });
    assert_eq!(log.count("hit ratio"), 0, "{}", log.text());
}

#[test]
fn the_warning_can_be_turned_off() {
    let (log, _guard) = common::Log::capture();
    run(async || {
        let cache = cache(false).await;
        windows(&cache, async |cache, n| {
            assert_eq!(cold(cache, n).await, Ok(n));
        })
        .await;
        // Every miss was stored: the writes of the function.
        assert!(cache.stats().writes >= 3_600, "{:?}", cache.stats());
    });
    assert_eq!(log.count("hit ratio"), 0, "{}", log.text());
}

#[test]
fn an_impossible_threshold_is_refused_by_build() {
    run(async || {
        let error = Cache::builder()
            .low_hit_ratio(1.5, WINDOW)
            .build()
            .await
            .expect_err("refused");
        assert!(error.to_string().contains("low_hit_ratio"), "{error}");
    });
}
