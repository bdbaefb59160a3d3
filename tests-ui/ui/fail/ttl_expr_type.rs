use cachefw::{cache_put, cacheable};

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Quote {
    volatile: bool,
}

// `ttl = <expr>` must be a `Duration`.
#[cacheable(key = "q:<id>", ttl = if result.volatile { 5 } else { 600 })]
async fn seconds(id: u64) -> Quote {
    let _ = id;
    Quote { volatile: true }
}

#[cache_put(key = "q:<id>", ttl = "10 minutes".len())]
async fn not_a_duration(id: u64) -> Quote {
    let _ = id;
    Quote { volatile: false }
}

fn main() {}
