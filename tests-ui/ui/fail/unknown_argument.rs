use cachefw::cacheable;

#[cacheable(key = "user:<id>", tll = "10m")]
async fn get_user(id: u64) -> u64 {
    id
}

#[cache_evict(key = "user:<id>", ttl = "10m")]
async fn evict_user(id: u64) {
    let _ = id;
}

use cachefw::cache_evict;

fn main() {
    // The functions are still emitted: no error for these calls.
    let _ = get_user(1);
    let _ = evict_user(1);
}
