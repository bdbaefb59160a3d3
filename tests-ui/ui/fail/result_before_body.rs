use cachefw::cache_evict;

// An eviction before the body cannot name what the body returns.
#[cache_evict(key = "user:<result>", before = true)]
async fn delete_user(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {
    let _ = delete_user(1);
}
