//! With no cache installed and no `cache = …`, annotated functions run
//! uncached, and the first call of each logs one warning that names it and
//! says what did not happen; once a cache is installed they use it. The only
//! test of its binary to install a cache (`main.rs`); its log is
//! thread-local.

use cachefw_tests::fixtures as common;

use std::sync::atomic::{AtomicU32, Ordering};

use cachefw::{Cache, cache_evict, cache_put, cacheable};
use common::{Log, SourceDown};

static CALLS: AtomicU32 = AtomicU32::new(0);
static NAMES: AtomicU32 = AtomicU32::new(0);

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

/// The footgun `#[cache_config]` is for: reads that name their cache, and
/// an eviction beside them that does not.
struct UserRepo {
    cache: Cache,
}

impl UserRepo {
    #[cacheable(key = "user:<id>", ttl = "1m", cache = self.cache)]
    async fn name(&self, id: u64) -> String {
        format!("user {id}, v{}", NAMES.fetch_add(1, Ordering::SeqCst))
    }

    #[cache_evict(key = "user:<id>")]
    async fn rename(&self, id: u64) {
        let _ = id;
    }
}

/// A method of the same name in the same module: its own warning.
struct OrderRepo;

impl OrderRepo {
    #[cache_evict(key = "order:<id>")]
    async fn rename(&self, id: u64) {
        let _ = id;
    }
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
        assert_eq!(set_answer(21, 2).await, 2);
        forget(21).await;
        forget(21).await;
        assert_eq!(CALLS.load(Ordering::SeqCst), 3, "every call ran the body");
        for (attribute, function, missed) in [
            (
                "#[cacheable]",
                "answer",
                "read nothing from a cache and stored nothing",
            ),
            ("#[cache_put]", "set_answer", "stored nothing"),
            ("#[cache_evict]", "forget", "evicted nothing"),
        ] {
            let warning = format!("{attribute} on `telemetry::uninstalled::{function}` {missed}");
            assert_eq!(log.count(&warning), 1, "{warning} in {}", log.text());
        }
        assert_eq!(log.count("no cache is installed"), 3, "{}", log.text());

        // The eviction names no cache: it evicts nothing, says so, and the
        // reads keep serving the old value.
        let repo = UserRepo {
            cache: Cache::builder().build().await.expect("builds"),
        };
        let before = repo.name(1).await;
        repo.rename(1).await;
        repo.rename(1).await;
        assert_eq!(repo.name(1).await, before, "still the old value");
        assert_eq!(
            log.count("#[cache_evict] on `telemetry::uninstalled::rename` evicted nothing"),
            1,
            "{}",
            log.text()
        );
        assert_eq!(log.count("no cache is installed"), 4, "{}", log.text());
        OrderRepo.rename(1).await;
        OrderRepo.rename(2).await;
        assert_eq!(
            log.count("#[cache_evict] on `telemetry::uninstalled::rename` evicted nothing"),
            2,
            "another method of that name warns too: {}",
            log.text()
        );
        // Each names where its attribute is, so the two can be told apart.
        let text = log.text();
        let places: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|line| line.contains("`telemetry::uninstalled::rename`"))
            .filter_map(|line| line.split("for this attribute, at ").nth(1))
            .collect();
        assert_eq!(places.len(), 2, "{places:?} in {text}");
        assert!(
            places.iter().all(|at| at.contains("uninstalled.rs:")),
            "{places:?}"
        );
        assert_eq!(log.count("no cache is installed"), 5, "{}", log.text());

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
