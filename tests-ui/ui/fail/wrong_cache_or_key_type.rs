use cachefw::cacheable;

struct NoDisplay;

#[cacheable(key = "thing:<thing>", ttl = "1m")]
async fn by_thing(thing: NoDisplay) -> u64 {
    let _ = thing;
    1
}

#[cacheable(key = "n:<n>", ttl = "1m", cache = 42u32)]
async fn wrong_cache(n: u64) -> u64 {
    n
}

fn main() {}
