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
#[entity(keyspace = "shop", table = "wide", ttl = "1m")]
pub struct TooWide {
    #[partition_key]
    pub a: i32,
    pub b: i32,
    pub c: i32,
    pub d: i32,
    pub e: i32,
    pub f: i32,
    pub g: i32,
    pub h: i32,
    pub i: i32,
    pub j: i32,
    pub k: i32,
    pub l: i32,
    pub m: i32,
    pub n: i32,
    pub o: i32,
    pub p: i32,
}

fn main() {}
