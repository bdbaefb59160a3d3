use cachefw_cassandra::Entity;

// A counter beside a column that is not one: Cassandra refuses the table.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "mixed", ttl = "1m")]
pub struct Mixed {
    #[partition_key]
    pub id: i64,
    #[counter]
    pub views: i64,
    pub title: String,
}

// An increment is not idempotent: a replayed record would count twice.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "behind", ttl = "1m", write = "behind")]
pub struct WrittenBehind {
    #[partition_key]
    pub id: i64,
    #[counter]
    pub views: i64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "odd", ttl = "1m")]
pub struct OddCounters {
    #[partition_key]
    #[counter]
    pub id: i64,
    #[counter]
    pub small: i32,
    #[counter]
    pub maybe: Option<i64>,
    #[counter(step = 2)]
    pub stepped: i64,
    #[counter]
    pub page_views: i64,
    #[counter]
    pub page__views: i64,
}

fn main() {}
