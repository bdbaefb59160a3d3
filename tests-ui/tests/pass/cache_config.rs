use std::sync::Arc;

use cachefw::{Cache, cache_config, cache_evict, cache_put, cacheable};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct User {
    id: u64,
    name: String,
}

struct Repo {
    cache: Cache,
    other: Cache,
}

#[cache_config(cache = self.cache, ttl = "5m", jitter = "10%")]
impl Repo {
    #[cacheable(key = "user:<id>")]
    async fn get(&self, id: u64) -> Result<User, String> {
        Ok(User {
            id,
            name: "Ada".into(),
        })
    }

    // Its own cache and TTL win; the trailing comma stays valid.
    #[cacheable(key = "user:<id>", cache = self.other, ttl = "1h",)]
    async fn get_elsewhere(&self, id: u64) -> Option<User> {
        Some(User {
            id,
            name: "Ada".into(),
        })
    }

    // `Result<Option<T>, E>` with `cache_none`, under the impl's defaults.
    #[cacheable(key = "maybe:<id>", cache_none = "30s")]
    async fn find(&self, id: u64) -> Result<Option<User>, String> {
        Ok((id > 1).then(|| User {
            id,
            name: "Ada".into(),
        }))
    }

    #[cache_put(key = "user:<result.id>")]
    #[cachefw::cache_evict(key = "users")]
    async fn create(&self, name: String) -> Result<User, String> {
        Ok(User { id: 7, name })
    }

    #[cache_evict(key = "user:<id>")]
    async fn remove(&self, id: u64) -> Result<(), String> {
        let _ = id;
        Ok(())
    }

    // Methods without cachefw attributes, and associated functions, are
    // left alone.
    fn new(cache: Cache) -> Self {
        Self {
            other: cache.clone(),
            cache,
        }
    }
}

#[async_trait::async_trait]
trait Users {
    async fn user(&self, id: u64) -> Result<User, String>;
    async fn forget(&self, id: u64);
}

struct Service {
    cache: Arc<Cache>,
}

// Over `#[async_trait]`, written on either side of it.
#[cache_config(cache = self.cache)]
#[async_trait::async_trait]
impl Users for Service {
    #[cacheable(key = "user:<id>")]
    async fn user(&self, id: u64) -> Result<User, String> {
        Ok(User {
            id,
            name: "Ada".into(),
        })
    }

    #[cache_evict(key = "user:<id>")]
    async fn forget(&self, id: u64) {
        let _ = id;
    }
}

struct Service2 {
    cache: Cache,
}

#[async_trait::async_trait]
#[cache_config(cache = self.cache, ttl = "1m")]
impl Users for Service2 {
    #[cacheable(key = "user:<id>")]
    async fn user(&self, id: u64) -> Result<User, String> {
        Ok(User {
            id,
            name: "Ada".into(),
        })
    }

    #[cache_evict(key = "user:<id>")]
    async fn forget(&self, id: u64) {
        let _ = id;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn runs() {
    let cache = Cache::builder().build().await.expect("builds");
    let repo = Repo::new(cache.clone());
    assert!(repo.get(1).await.is_ok());
    assert!(repo.get_elsewhere(1).await.is_some());
    assert_eq!(repo.find(1).await, Ok(None));
    assert!(repo.create("Grace".into()).await.is_ok());
    assert!(repo.remove(1).await.is_ok());

    let service = Service {
        cache: Arc::new(cache.clone()),
    };
    assert!(service.user(1).await.is_ok());
    service.forget(1).await;
    let service = Service2 { cache };
    assert!(service.user(1).await.is_ok());
    service.forget(1).await;
}
