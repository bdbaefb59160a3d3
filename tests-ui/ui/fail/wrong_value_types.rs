use cachefw::{cache_evict, cache_put, cacheable};

// Each value is valid Rust, but not what its argument takes.
#[cacheable(key = user, ttl = 10, cache_none = true, jitter = 10, shape = result)]
async fn get(user: u64) -> Option<u64> {
    Some(user)
}

#[cache_put(key = "u:<id>", ttl = "1m", crate = "cachefw")]
async fn put(id: u64) -> u64 {
    id
}

#[cache_evict(prefix = 7, before = "yes")]
async fn evict(id: u64) {
    let _ = id;
}

fn main() {
    let _ = (get(1), put(1), evict(1));
}
