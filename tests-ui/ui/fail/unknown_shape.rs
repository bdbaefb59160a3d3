use cachefw::cacheable;

#[cacheable(key = "a:<id>", shape = "either")]
async fn either(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[cacheable(key = "b:<id>", shape = "Result")]
async fn capitalised(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {
    let _ = (either(1), capitalised(1));
}
