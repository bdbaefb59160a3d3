//! The Redis setting write-behind depends on: `maxmemory-policy`. The
//! stream, the pending entries and their version records have no expiry,
//! so a policy that evicts any key (`allkeys-*`) could drop acknowledged
//! writes; `noeviction` and `volatile-*` never evict a key without one.

use std::sync::atomic::{AtomicBool, Ordering};

use cachefw::__adapter::command;
use cachefw::__adapter::redis::{self, Value};
use cachefw::Cache;

/// Why the policy was not checked is logged once per process.
static WARNED: AtomicBool = AtomicBool::new(false);

/// `Err(policy)` when Redis may evict keys without an expiry. When the
/// policy cannot be read (an ACL user without `CONFIG`, Redis away), one
/// warning says so and the check passes.
pub(crate) async fn check_eviction_policy(cache: &Cache, table: &str) -> Result<(), String> {
    let key = format!("{}:wb:{table}", cache.namespace());
    let mut get = redis::cmd("CONFIG");
    get.arg("GET").arg("maxmemory-policy");
    let policy = match command::run(cache, "CONFIG", &key, &get).await {
        Ok(reply) => policy(&reply),
        Err(error) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    table,
                    %error,
                    "cachefw-cassandra: could not check Redis's maxmemory-policy \
                     (CONFIG GET is refused or failed); write-behind needs noeviction \
                     or volatile-*, never allkeys-*"
                );
            }
            return Ok(());
        }
    };
    match policy {
        Some(policy) if policy.starts_with("allkeys-") => Err(policy),
        _ => Ok(()),
    }
}

/// The value in a `CONFIG GET` reply (a flat array or a map).
fn policy(reply: &Value) -> Option<String> {
    let value = match reply {
        Value::Array(flat) => flat.get(1)?,
        Value::Map(pairs) => &pairs.first()?.1,
        _ => return None,
    };
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_both_protocols_read() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let flat = Value::Array(vec![bulk("maxmemory-policy"), bulk("allkeys-lru")]);
        assert_eq!(policy(&flat).as_deref(), Some("allkeys-lru"));
        let map = Value::Map(vec![(bulk("maxmemory-policy"), bulk("noeviction"))]);
        assert_eq!(policy(&map).as_deref(), Some("noeviction"));
        assert_eq!(policy(&Value::Nil), None);
    }
}
