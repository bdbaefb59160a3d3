use cachefw::{cache_evict, cache_put};

// Every attribute of a stack reports its own mistakes, once, on its text;
// `condition` is a bool over the parameters.
#[cache_put(key = "user:<result>", ttl = "10m")]
#[cache_put(ttl = "5m")]
#[cache_evict(key = "list:<tenant>", bogus = 1)]
#[cachefw::cache_evict = "list"]
async fn create(id: u64) -> u64 {
    id
}

#[cache_put(key = "user:<id>", condition = id)]
#[cache_evict(key = "list", condition = "yes")]
async fn update(id: u64) -> u64 {
    id
}

fn main() {
    let _ = (create(1), update(1));
}
