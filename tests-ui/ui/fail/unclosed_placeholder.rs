use cachefw::cacheable;

#[cacheable(key = "user:<id", ttl = "1m")]
async fn get(id: u64) -> u64 {
    id
}

#[cacheable(key = "user:<>", ttl = "1m")]
async fn empty(id: u64) -> u64 {
    id
}

#[cacheable(key = "user:<id-1>", ttl = "1m")]
async fn expression(id: u64) -> u64 {
    id
}

fn main() {
    let _ = get(1);
    let _ = empty(1);
    let _ = expression(1);
}
