use cachefw::cacheable;

struct Connection;

#[cacheable(key = "conn:<id>", ttl = "1m")]
async fn connect(id: u64) -> Result<Connection, std::io::Error> {
    let _ = id;
    Ok(Connection)
}

fn main() {}
