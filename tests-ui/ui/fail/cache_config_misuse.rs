use cachefw::{Cache, cache_config, cache_evict, cacheable};

struct Repo {
    cache: Cache,
    name: String,
}

// Arguments of one method cannot be defaults; unknown ones are named.
#[cache_config(cache = self.cache, key = "user:<id>", tll = "5m", stale_if_error = "1h")]
impl Repo {
    #[cacheable(key = "user:<id>")]
    async fn get(&self, id: u64) -> u64 {
        id
    }
}

// A malformed default is reported once, where it is written.
#[cache_config(ttl = "5 minutes")]
impl Repo {
    #[cacheable(key = "other:<id>")]
    async fn other(&self, id: u64) -> u64 {
        id
    }
}

// Not an impl block.
#[cache_config(ttl = "5m")]
#[cacheable(key = "free:<id>")]
async fn free(id: u64) -> u64 {
    id
}

#[cache_config(ttl = "5m")]
trait Users {
    fn get(&self, id: u64) -> u64;
}

// At least one default.
#[cache_config()]
impl Users for Repo {
    fn get(&self, id: u64) -> u64 {
        id
    }
}

// A default of the wrong type is reported on the default, in each method
// that takes it.
#[cache_config(cache = self.name)]
impl Repo {
    #[cache_evict(key = "user:<id>")]
    async fn evict(&self, id: u64) {
        let _ = id;
    }
}

fn main() {}
