use cachefw::{cache_evict, cache_put};

// `()` has no value for a key to name.
#[cache_put(key = "user:<result>")]
async fn save(id: u64) {
    let _ = id;
}

#[cache_evict(prefix = "users:<result.0>:")]
async fn purge(id: u64) -> () {
    let _ = id;
}

// A parameter named `result` would be ambiguous in a key.
#[cache_put(key = "user:<result>")]
async fn store(result: u64) -> u64 {
    result
}

fn main() {
    let _ = (save(1), purge(1), store(1));
}
