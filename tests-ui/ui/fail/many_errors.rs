use cachefw::cacheable;

// Every mistake is reported at once, each on its own text.
#[cacheable(key = "user:<uid>", ttl = "ten minutes", bogus = 1, cache_none = "1m")]
async fn get_user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = get_user(1);
}
