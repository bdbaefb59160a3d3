use cachefw::{cache_evict, cacheable};

#[cacheable(key = "user:<id>", ttl = "10m")]
fn get_user(id: u64) -> u64 {
    id
}

#[cache_evict(key = "user:<id>")]
fn evict_user(id: u64) {
    let _ = id;
}

#[cacheable(key = "user")]
struct NotAFunction;

fn main() {
    let _ = get_user(1);
    evict_user(1);
}
