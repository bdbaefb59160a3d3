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

fn main() {}
