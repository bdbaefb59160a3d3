use async_trait::async_trait;
use cachefw::{Cache, cache_evict, cache_put, cacheable};

#[async_trait]
trait UserRepo {
    async fn name(&self, id: u64) -> Result<String, String>;
    async fn find(&self, id: u64) -> Option<String>;
    async fn rename(&mut self, id: u64, name: String) -> Result<String, String>;
    async fn forget(&self, id: u64);
}

struct Repo {
    cache: Cache,
    loads: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl UserRepo for Repo {
    #[cacheable(key = "name:<id>", ttl = "10m", cache = self.cache)]
    async fn name(&self, id: u64) -> Result<String, String> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(format!("user {id}"))
    }

    #[cacheable(key = "name:<id>", cache = self.cache, cache_none = "1m")]
    async fn find(&self, id: u64) -> Option<String> {
        (id > 0).then(|| format!("found {id}"))
    }

    #[cache_put(key = "name:<id>", cache = self.cache)]
    async fn rename(&mut self, id: u64, name: String) -> Result<String, String> {
        let _ = id;
        Ok(name)
    }

    #[cache_evict(key = "name:<id>", cache = self.cache)]
    async fn forget(&self, id: u64) {
        let _ = id;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn runs() {
    let mut repo = Repo {
        cache: Cache::builder().build().await.expect("cache"),
        loads: Default::default(),
    };
    // Through a trait object, as async_trait is used for.
    let dyn_repo: &dyn UserRepo = &repo;
    assert_eq!(dyn_repo.name(1).await.as_deref(), Ok("user 1"));
    assert_eq!(dyn_repo.name(1).await.as_deref(), Ok("user 1"));
    assert_eq!(dyn_repo.find(1).await.as_deref(), Some("user 1"));
    assert_eq!(repo.loads.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(repo.rename(1, "Ada".into()).await.as_deref(), Ok("Ada"));
    assert_eq!(repo.name(1).await.as_deref(), Ok("Ada"));
    repo.forget(1).await;
    assert_eq!(repo.name(1).await.as_deref(), Ok("user 1"));
    assert_eq!(repo.loads.load(std::sync::atomic::Ordering::SeqCst), 2);
}
