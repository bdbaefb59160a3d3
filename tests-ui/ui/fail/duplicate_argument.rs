use cachefw::cacheable;

#[cacheable(key = "a:<id>", ttl = "1m", key = "b:<id>")]
async fn get(id: u64) -> u64 {
    id
}

fn main() {
    let _ = get(1);
}
