use cachefw::{cache_evict, cache_put, cacheable};

#[cacheable(ttl = "10m")]
async fn get(id: u64) -> u64 {
    id
}

#[cache_put]
async fn put(id: u64) -> u64 {
    id
}

#[cache_evict(before = true)]
async fn evict(id: u64) {
    let _ = id;
}

#[cache_evict(key = "a:<id>", prefix = "a:")]
async fn both(id: u64) {
    let _ = id;
}

#[cache_evict(key = "a:<id>", before = "yes")]
async fn not_a_bool(id: u64) {
    let _ = id;
}

fn main() {
    let _ = (get(1), put(1), evict(1), both(1), not_a_bool(1));
}
