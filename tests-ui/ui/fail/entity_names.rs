use cachefw_cassandra::Entity;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop:eu", table = "user-profiles", ttl = "1m")]
pub struct BadNames {
    #[partition_key]
    pub id: i64,
    #[column(name = "")]
    pub unnamed: String,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "twice", ttl = "1m")]
pub struct OneColumnTwice {
    #[partition_key]
    pub id: i64,
    #[column(name = "name")]
    pub first: String,
    pub name: String,
}

fn main() {}
