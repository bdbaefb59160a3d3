use std::fmt::Display;

use cachefw::{Cache, cacheable};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[cacheable(key = "item:<id>", ttl = "1m", cache = cache)]
async fn load<T, K>(cache: &Cache, id: K, make: fn(&K) -> T) -> Option<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    K: Display,
{
    Some(make(&id))
}

struct Store<C> {
    cache: C,
}

impl<C: AsRef<Cache>> Store<C> {
    #[cacheable(key = "len:<text>", cache = self.cache.as_ref())]
    async fn len(&self, text: &str) -> usize {
        text.len()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn runs() {
    let cache = Cache::builder().build().await.expect("cache");
    assert_eq!(load(&cache, 7u8, |k| u32::from(*k) * 3).await, Some(21));
    assert_eq!(load(&cache, 7u8, |_| 0u32).await, Some(21));
    assert_eq!(
        load(&cache, "x", |k| k.to_string()).await.as_deref(),
        Some("x")
    );
    let store = Store {
        cache: Holder(cache),
    };
    assert_eq!(store.len("four").await, 4);
}

struct Holder(Cache);

impl AsRef<Cache> for Holder {
    fn as_ref(&self) -> &Cache {
        &self.0
    }
}
