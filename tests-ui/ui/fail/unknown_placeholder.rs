use cachefw::cacheable;

#[cacheable(key = "order:<order_id>:<tenant>", ttl = "1h")]
async fn price(id: u64, tenant: &str) -> u64 {
    let _ = tenant;
    id
}

#[cacheable(key = "constant:<x>")]
async fn constant() -> u64 {
    1
}

fn main() {
    let _ = price(1, "t");
    let _ = constant();
}
