use cachefw::{cache_evict, cache_put};

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct User {
    id: u64,
    email: String,
}

// Field paths below `result` are checked against the returned type.
#[cache_put(key = "user:<result.idd>")]
async fn create(email: String) -> Result<User, String> {
    Ok(User { id: 1, email })
}

#[cache_put(key = "user:<result.id>")]
#[cache_evict(key = "by-domain:<result.email.domain>")]
async fn rename(id: u64) -> Option<User> {
    Some(User { id, email: String::new() })
}

fn main() {
    let _ = (create(String::new()), rename(1));
}
