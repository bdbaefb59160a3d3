use cachefw::cacheable;

#[cacheable(key = "user:<id>", ttl = "10m", cache_none = "30s")]
async fn get_user(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {
    let _ = get_user(1);
}
