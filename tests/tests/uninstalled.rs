//! With no cache installed and no `cache = …`, annotated functions run
//! uncached and one warning is logged for the process; once a cache is
//! installed they use it. Alone in its test binary: it owns the process-wide
//! default and the log.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use cachefw::{Cache, cache_evict, cache_put, cacheable};
use common::{Log, SourceDown};

static CALLS: AtomicU32 = AtomicU32::new(0);

#[cacheable(key = "answer:<n>", ttl = "1m")]
async fn answer(n: u32) -> Result<u32, SourceDown> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(n * 2)
}

#[cache_put(key = "answer:<n>")]
async fn set_answer(n: u32, value: u32) -> u32 {
    let _ = n;
    value
}

#[cache_evict(key = "answer:<n>")]
async fn forget(n: u32) {
    let _ = n;
}

#[test]
fn runs_uncached_with_one_warning_until_a_cache_is_installed() {
    let (log, _guard) = Log::capture();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for _ in 0..3 {
            assert_eq!(answer(21).await, Ok(42));
        }
        assert_eq!(set_answer(21, 1).await, 1);
        forget(21).await;
        assert_eq!(CALLS.load(Ordering::SeqCst), 3, "every call ran the body");
        assert_eq!(log.count("no cache installed"), 1, "{}", log.text());

        let cache = Cache::builder().build().await.expect("builds");
        cachefw::install(cache.clone());
        assert_eq!(answer(21).await, Ok(42));
        assert_eq!(answer(21).await, Ok(42));
        assert_eq!(CALLS.load(Ordering::SeqCst), 4, "cached once installed");
        assert_eq!(set_answer(21, 7).await, 7);
        assert_eq!(answer(21).await, Ok(7));
        forget(21).await;
        assert_eq!(cache.get::<u32>("answer:21").await.expect("get"), None);
    });
}
