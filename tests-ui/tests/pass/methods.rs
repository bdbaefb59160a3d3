// `cache = &self.cache` is an accepted form on purpose; clippy flags the
// borrow in the expansion (a lint the macro could avoid emitting).
#![allow(clippy::needless_borrow)]
use std::sync::Arc;

use cachefw::{Cache, cache_evict, cacheable};

struct Repo {
    cache: Cache,
    loads: u32,
}

impl Repo {
    #[cacheable(key = "user:<id>", ttl = "10m", cache = self.cache)]
    async fn get(&self, id: u64) -> Result<u64, String> {
        Ok(id + u64::from(self.loads))
    }

    #[cacheable(key = "counted:<id>", cache = self.cache)]
    async fn get_counted(&mut self, id: u64) -> u64 {
        self.loads += 1;
        id
    }

    #[cache_evict(key = "counted:<id>", cache = &self.cache)]
    async fn forget(&mut self, id: u64) {
        let _ = id;
        self.loads = 0;
    }

    #[cacheable(key = "self:<self.loads>", cache = self.cache)]
    async fn by_field(&self) -> u32 {
        self.loads
    }
}

/// `cache = …` takes anything that dereferences to a `Cache`.
struct Shared {
    cache: Arc<Cache>,
}

impl Shared {
    #[cacheable(key = "shared:<n>", cache = self.cache)]
    async fn double(&self, n: u32) -> u32 {
        n * 2
    }
}

#[tokio::test(flavor = "current_thread")]
async fn runs() {
    let cache = Cache::builder().build().await.expect("cache");
    let mut repo = Repo {
        cache: cache.clone(),
        loads: 0,
    };
    assert_eq!(repo.get(1).await, Ok(1));
    assert_eq!(repo.get_counted(5).await, 5);
    assert_eq!(repo.get_counted(5).await, 5);
    assert_eq!(repo.loads, 1);
    repo.forget(5).await;
    assert_eq!(repo.get_counted(5).await, 5);
    assert_eq!(repo.loads, 1);
    assert_eq!(repo.by_field().await, 1);
    assert_eq!(cache.get::<u32>("self:1").await.expect("get"), Some(1));
    let shared = Shared {
        cache: Arc::new(cache),
    };
    assert_eq!(shared.double(4).await, 8);
    assert_eq!(
        shared.cache.get::<u32>("shared:4").await.expect("get"),
        Some(8)
    );
}
