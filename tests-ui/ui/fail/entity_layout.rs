use cachefw_cassandra::Entity;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "profiles", ttl = "10m", layout = "columns")]
pub struct UnknownLayout {
    #[partition_key]
    pub id: i64,
    pub name: String,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "profiles", ttl = "10m", layout = hash)]
pub struct UnquotedLayout {
    #[partition_key]
    pub id: i64,
    pub name: String,
}

fn main() {}
