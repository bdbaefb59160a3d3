use std::sync::atomic::{AtomicU32, Ordering};

use cachefw::{cache_evict, cache_put, cacheable};

static LOADS: AtomicU32 = AtomicU32::new(0);

#[cacheable(key = "user:<id>", ttl = "10m")]
async fn get(id: u64) -> Result<String, std::io::Error> {
    LOADS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("user {id}"))
}

#[cacheable(key = "user:<id>", ttl = "10m", cache_none = "30s")]
async fn find(id: u64) -> Option<String> {
    (id > 0).then(|| format!("user {id}"))
}

#[cache_put(key = "user:<id>", ttl = "10m")]
async fn put(id: u64, name: String) -> Result<String, std::io::Error> {
    let _ = id;
    Ok(name)
}

#[cache_evict(key = "user:<id>")]
#[cache_evict(prefix = "user:", before = true)]
async fn evict(id: u64) -> Result<(), std::io::Error> {
    let _ = id;
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn runs() {
    cachefw::install(cachefw::Cache::builder().build().await.expect("cache"));
    assert_eq!(get(1).await.ok().as_deref(), Some("user 1"));
    assert_eq!(get(1).await.ok().as_deref(), Some("user 1"));
    assert_eq!(LOADS.load(Ordering::SeqCst), 1);
    assert_eq!(find(0).await, None);
    assert_eq!(put(1, "Ada".into()).await.ok().as_deref(), Some("Ada"));
    assert_eq!(find(1).await.as_deref(), Some("Ada"));
    evict(1).await.expect("evicts");
    assert_eq!(get(1).await.ok().as_deref(), Some("user 1"));
    assert_eq!(LOADS.load(Ordering::SeqCst), 2);
}
