use std::collections::BTreeSet;

use cachefw_cassandra::Entity;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "no_key", ttl = "1m")]
pub struct NoPartitionKey {
    pub id: uuid::Uuid,
    pub name: String,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "optional_key", ttl = "1m")]
pub struct OptionalKey {
    #[partition_key]
    pub id: Option<uuid::Uuid>,
    #[clustering_key]
    pub at: Option<i64>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "float_key", ttl = "1m")]
pub struct FloatKey {
    #[partition_key]
    pub price: f64,
    #[clustering_key]
    pub weight: f32,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "collection_key", ttl = "1m")]
pub struct CollectionKey {
    #[partition_key]
    pub tags: BTreeSet<String>,
    #[clustering_key]
    pub path: Vec<String>,
    #[clustering_key]
    pub digest: Vec<u8>,
}

fn main() {}
