use std::collections::HashMap;

use cachefw_cassandra::Entity;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "odd", ttl = "1m")]
pub struct Unsupported {
    #[partition_key]
    pub id: u64,
    pub elapsed: std::time::Duration,
    pub fine: String,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "nulls", ttl = "1m")]
pub struct NullInCollection {
    #[partition_key]
    pub id: i64,
    pub scores: Vec<Option<i32>>,
    pub labels: HashMap<String, Option<String>>,
}

fn main() {}
