use std::fmt::Display;

use cachefw::{Cache, cache_evict, cache_put, cacheable};

type ApiResult<T> = Result<T, String>;
type Maybe<T> = Option<T>;

#[cacheable(key = "alias:<id>", cache = cache)]
async fn alias(cache: &Cache, id: u64) -> ApiResult<u64> {
    if id == 0 { Err("zero".into()) } else { Ok(id) }
}

#[cacheable(key = "row:<id>", cache = cache, cache_none = "1m", shape = "result_option")]
async fn row(cache: &Cache, id: u64) -> ApiResult<Maybe<u64>> {
    Ok((id > 0).then_some(id))
}

#[cacheable(key = "shown:<id>", cache = cache)]
async fn shown(cache: &Cache, id: u64) -> impl Display {
    format!("#{id}")
}

#[cache_put(key = "row:<id>", cache = cache, jitter = "10%")]
async fn put_row(cache: &Cache, id: u64, value: Option<u64>) -> Maybe<u64> {
    let _ = id;
    value
}

#[cache_evict(key = "row:<id>", cache = cache, shape = "result")]
async fn evict_row(cache: &Cache, id: u64) -> ApiResult<std::time::Instant> {
    let _ = id;
    Ok(std::time::Instant::now())
}

#[cacheable(key = "generic:<id>", cache = cache, shape = "plain")]
async fn generic<
    R: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
>(
    cache: &Cache,
    id: u64,
    make: fn(u64) -> R,
) -> R {
    make(id)
}

/// A crate that re-exports the runtime names it with `crate = …`.
mod framework {
    pub use cachefw;
}

#[cacheable(crate = framework::cachefw, key = "fw:<id>", cache = cache)]
async fn through_framework(cache: &Cache, id: u64) -> u64 {
    id
}

#[tokio::test(flavor = "current_thread")]
async fn runs() {
    let cache = Cache::builder().build().await.expect("cache");
    assert_eq!(alias(&cache, 0).await, Err("zero".into()));
    assert_eq!(cache.get::<u64>("alias:0").await.expect("get"), None);
    assert_eq!(alias(&cache, 1).await, Ok(1));
    assert_eq!(cache.get::<u64>("alias:1").await.expect("get"), Some(1));
    assert_eq!(row(&cache, 0).await, Ok(None));
    assert_eq!(put_row(&cache, 2, Some(3)).await, Some(3));
    assert_eq!(row(&cache, 2).await, Ok(Some(3)));
    evict_row(&cache, 2).await.expect("evicts");
    assert_eq!(row(&cache, 2).await, Ok(Some(2)));
    assert_eq!(shown(&cache, 4).await.to_string(), "#4");
    assert_eq!(
        cache
            .get::<String>("shown:4")
            .await
            .expect("get")
            .as_deref(),
        Some("#4")
    );
    assert_eq!(generic(&cache, 5, |id| vec![id]).await, [5]);
    assert_eq!(generic(&cache, 5, |_| vec![0]).await, [5]);
    assert_eq!(through_framework(&cache, 6).await, 6);
    assert_eq!(cache.get::<u64>("fw:6").await.expect("get"), Some(6));
}
