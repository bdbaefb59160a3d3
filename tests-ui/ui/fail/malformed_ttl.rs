use cachefw::{cache_put, cacheable};

#[cacheable(key = "a:<id>", ttl = "10x")]
async fn unknown_unit(id: u64) -> u64 {
    id
}

#[cacheable(key = "b:<id>", ttl = "30m1h")]
async fn wrong_order(id: u64) -> u64 {
    id
}

#[cacheable(key = "c:<id>", ttl = "0s")]
async fn zero(id: u64) -> u64 {
    id
}

#[cache_put(key = "d:<id>", ttl = 600)]
async fn not_a_string(id: u64) -> u64 {
    id
}

#[cacheable(key = "e:<id>", ttl = "1m", jitter = "10")]
async fn jitter_without_percent(id: u64) -> u64 {
    id
}

fn main() {
    let _ = jitter_without_percent(1);
    let _ = (unknown_unit(1), wrong_order(1), zero(1), not_a_string(1));
}
