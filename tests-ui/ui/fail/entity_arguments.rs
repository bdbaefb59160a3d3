use cachefw_cassandra::Entity;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", tabel = "users", ttl = "10 minutes")]
pub struct Misspelt {
    #[partition_key]
    pub id: i64,
    #[clustering_key(order = "descending")]
    pub at: i64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
pub struct NoEntityAttribute {
    #[partition_key]
    pub id: i64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "carts", ttl = "10m", write = "sideways")]
pub struct UnknownWriteMode {
    #[partition_key]
    pub id: i64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "carts", ttl = "10m", write = behind)]
pub struct UnquotedWriteMode {
    #[partition_key]
    pub id: i64,
}

fn main() {}
