//! Background options on free functions and methods: reference, owned and
//! `mut` parameters, `&self` and `self`, `unless` naming parameters.
use std::sync::Arc;

use cachefw::{Cache, cacheable};

#[derive(Clone)]
struct Repo {
    cache: Cache,
    prefix: Arc<str>,
}

impl Repo {
    #[cacheable(key = "r:<id>", cache = self.cache, refresh_ahead = true,
                unless = result.starts_with(&*self.prefix) && id == 0)]
    async fn by_ref(&self, id: u64, tag: &str) -> Result<String, std::io::Error> {
        Ok(format!("{}{id}{tag}", self.prefix))
    }

    #[cacheable(key = "o:<id>", cache = self.cache, stale_while_revalidate = "1m")]
    async fn by_value(self, id: u64) -> Option<String> {
        Some(format!("{}{id}", self.prefix))
    }
}

#[cacheable(
    key = "f:<name>",
    ttl = "1m",
    load_timeout = "50ms",
    stale_if_error = "1h"
)]
async fn free(name: &str, mut count: u32, names: &[String]) -> u32 {
    count += names.len() as u32;
    count + name.len() as u32
}

#[tokio::test(flavor = "current_thread")]
async fn runs() {
    let cache = Cache::builder().build().await.expect("builds");
    let repo = Repo {
        cache,
        prefix: Arc::from("p"),
    };
    assert_eq!(repo.by_ref(1, "x").await.ok().as_deref(), Some("p1x"));
    assert_eq!(repo.clone().by_value(2).await.as_deref(), Some("p2"));
    assert_eq!(free("ab", 1, &["c".to_owned()]).await, 4);
}
