use cachefw::{cache_put, cacheable};

trait Source {
    type Output;
    fn load(&self, id: u64) -> Self::Output;
}

// A type parameter is seen as what it is inside the function, not as what
// it stands for: whether it is a `Result` has to be declared.
#[cacheable(key = "item:<id>", ttl = "1m")]
async fn get<R: Default>(id: u64) -> R {
    let _ = id;
    R::default()
}

#[cache_put(key = "item:<id>")]
async fn put<S: Source>(source: &S, id: u64) -> S::Output {
    source.load(id)
}

fn main() {
    let _ = get::<u64>(1);
}
