use cachefw::{cache_evict, cache_put, cacheable};

// Rust format style: every call would share one entry.
#[cacheable(key = "p:{id}", ttl = "10m")]
async fn rust_style(id: u64) -> u64 {
    id
}

// Spring SpEL style.
#[cacheable(key = "#id", ttl = "10m")]
async fn spring_style(id: u64) -> u64 {
    id
}

// Shell and JavaScript style.
#[cacheable(key = "${id}", ttl = "10m")]
async fn shell_style(id: u64) -> u64 {
    id
}

#[cache_evict(key = "p:#{id}")]
async fn spel_template_style(id: u64) {
    let _ = id;
}

#[cache_put(key = "u:{result.id}", ttl = "10m")]
async fn result_in_rust_style() -> Option<u64> {
    None
}

// Text that names no parameter stays literal: these compile.
#[cacheable(key = "p:{x}:#y:${z}:<id>", ttl = "10m")]
async fn literal_braces(id: u64) -> u64 {
    id
}

fn main() {}
