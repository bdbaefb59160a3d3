use cachefw_cassandra::{Entity, Repository};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "page_hits", ttl = "1m")]
pub struct PageHits {
    #[partition_key]
    pub url: String,
    #[counter]
    pub views: i64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "users", ttl = "1m")]
pub struct User {
    #[partition_key]
    pub id: i64,
    pub visits: i64,
}

async fn calls(hits: Repository<PageHits>, users: Repository<User>) {
    let key = PageHitsKey { url: "/".into() };
    // Not a counter of PageHits.
    let _ = hits.increment(&key, PageHitsCounter::Clicks, 1).await;
    // User has no counters: its `Entity::Counter` has no value.
    let _ = users.increment(&UserKey { id: 1 }, 1, 1).await;
    // Counters are incremented, not set: a patch has no counter field.
    let patch = PageHitsPatch {
        views: Some(3),
    };
    let _ = hits.patch(&key, &patch).await;
}

fn main() {
    let _ = calls;
}
