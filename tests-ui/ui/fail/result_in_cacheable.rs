use cachefw::cacheable;

// #[cacheable] reads its key before the body runs: there is no result yet.
#[cacheable(key = "user:<result.id>", ttl = "10m")]
async fn get_user(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {
    let _ = get_user(1);
}
