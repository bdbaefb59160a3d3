use cachefw::{cache_evict, cacheable};

// A tag template naming no parameter.
#[cacheable(key = "order:<id>", ttl = "10m", tags = ["user:<user_id>"])]
async fn unknown_parameter(id: u64) -> u64 {
    id
}

// Another system's placeholder syntax, in a tag.
#[cacheable(key = "order:<id>", ttl = "10m", tags = ["user:{id}"])]
async fn foreign_syntax(id: u64) -> u64 {
    id
}

// Tags are rendered before the body: never from the result.
#[cache_evict(tags = ["user:<result.id>"], before = true)]
async fn result_before(id: u64) -> Option<u64> {
    Some(id)
}

// A tag is a string literal.
#[cache_evict(tags = [1, "a"])]
async fn not_a_string(id: u64) {
    let _ = id;
}

fn main() {}
