use cachefw::cacheable;

type ApiResult<T> = Result<T, std::io::Error>;

#[cacheable(key = "user:<id>", ttl = "10m", cache_none = "30s")]
async fn get_user(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

#[cacheable(key = "alias:<id>", cache_none = "30s")]
async fn through_alias(id: u64) -> ApiResult<u64> {
    Ok(id)
}

#[cacheable(key = "plain:<id>", cache_none = "30s")]
async fn plain(id: u64) -> u64 {
    id
}

fn main() {
    let _ = (get_user(1), through_alias(1), plain(1));
}
