use cachefw::{cache_evict, cacheable};

type ApiResult<T> = Result<T, String>;

#[cacheable(key = "a:<id>", shape = "option")]
async fn option_declared(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[cacheable(key = "b:<id>", shape = "plain")]
async fn plain_declared(id: u64) -> ApiResult<u64> {
    Ok(id)
}

#[cacheable(key = "c:<id>", shape = "result_option")]
async fn result_option_declared(id: u64) -> Option<u64> {
    Some(id)
}

// A type parameter is not known to be a `Result`, whatever a caller makes it.
#[cache_evict(key = "d:<id>", shape = "result")]
async fn result_declared<R: Default>(id: u64) -> R {
    let _ = id;
    R::default()
}

fn main() {
    let _ = (option_declared(1), plain_declared(1), result_option_declared(1));
    let _ = result_declared::<u64>(1);
}
