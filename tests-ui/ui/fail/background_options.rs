use cachefw::{Cache, cacheable};

// A beta must be a positive float.
#[cacheable(key = "a:<id>", refresh_ahead = 0.0)]
async fn zero_beta(id: u64) -> u64 {
    id
}

#[cacheable(key = "b:<id>", refresh_ahead = 2)]
async fn integer_beta(id: u64) -> u64 {
    id
}

// Background options run the body after the call, with owned copies.
struct NotClone {
    cache: Cache,
}

impl NotClone {
    #[cacheable(key = "c:<id>", cache = self.cache, stale_while_revalidate = "30s")]
    async fn receiver_not_clone(&self, id: u64) -> u64 {
        id
    }
}

#[derive(Clone)]
struct Repo {
    cache: Cache,
}

impl Repo {
    #[cacheable(key = "d:<id>", cache = self.cache, load_timeout = "100ms")]
    async fn mutable_receiver(&mut self, id: u64) -> u64 {
        id
    }
}

#[cacheable(key = "e:<id>", refresh_ahead = true)]
async fn mutable_parameter(id: u64, scratch: &mut Vec<u8>) -> u64 {
    scratch.push(1);
    id
}

fn main() {}
