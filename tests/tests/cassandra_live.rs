//! Every repository method against a real Cassandra or ScyllaDB node, for
//! what kassandra cannot show: `USING TTL`, lightweight transactions,
//! clustering order, page sizes, `tinyint`/`smallint`. Runs when
//! `CACHEFW_CASSANDRA_URI` names a node (`host:port`); otherwise it prints
//! one skip line and passes.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_cassandra::{Entity, Repository};
use scylla::client::session_builder::SessionBuilder;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "cachefw_live", table = "users", ttl = "10m")]
pub struct User {
    #[partition_key]
    pub id: Uuid,
    pub name: String,
    pub age: i16,
    pub level: i8,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "cachefw_live",
    table = "events",
    ttl = "1m",
    cache_partitions = true
)]
pub struct Event {
    #[partition_key]
    pub user_id: Uuid,
    #[clustering_key(order = "desc")]
    pub at: i64,
    pub kind: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_repository_method_against_a_real_node() {
    let Ok(uri) = std::env::var("CACHEFW_CASSANDRA_URI") else {
        // Straight to stderr: the test harness captures `println!`.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: set CACHEFW_CASSANDRA_URI=host:port to run the live Cassandra tests"
        );
        return;
    };
    let session = Arc::new(
        SessionBuilder::new()
            .known_node(&uri)
            .build()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {uri}: {e}")),
    );
    cachefw_cassandra::create_keyspace(&session, "cachefw_live", 1)
        .await
        .expect("keyspace");
    let cache = Cache::builder()
        .namespace("live")
        .build()
        .await
        .expect("cache");
    let users: Repository<User> = Repository::new(session.clone(), cache.clone())
        .await
        .expect("repo");
    users.create_table().await.expect("users table");
    let events: Repository<Event> = Repository::new(session, cache.clone()).await.expect("repo");
    events.create_table().await.expect("events table");

    // save, find (small integer types too), delete.
    let id = Uuid::new_v4();
    let key = UserKey { id };
    let ada = User {
        id,
        name: "Ada".into(),
        age: 36,
        level: -3,
    };
    users.save(&ada).await.expect("save");
    assert_eq!(users.find(&key).await.expect("find"), Some(ada.clone()));
    assert!(
        cache
            .get::<User>(&User::cache_key(&key))
            .await
            .expect("get")
            .is_some()
    );
    users.delete(&key).await.expect("delete");
    assert_eq!(users.find(&key).await.expect("find"), None);

    // Lightweight transaction: only the first insert applies.
    assert!(users.insert_if_not_exists(&ada).await.expect("lwt"));
    let other = User {
        name: "Other".into(),
        ..ada.clone()
    };
    assert!(!users.insert_if_not_exists(&other).await.expect("lwt"));
    assert_eq!(users.find(&key).await.expect("find"), Some(ada.clone()));

    // USING TTL: the row is gone from Cassandra after its TTL.
    let brief = User {
        id: Uuid::new_v4(),
        ..ada.clone()
    };
    users
        .save_with_ttl(&brief, Duration::from_secs(2))
        .await
        .expect("save with ttl");
    let brief_key = brief.key();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        cache
            .delete(&User::cache_key(&brief_key))
            .await
            .expect("evict");
        if users.find(&brief_key).await.expect("find").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the row outlived its TTL");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Clustering order (desc), batches, partitions cached, page sizes.
    let user_id = Uuid::new_v4();
    let batch: Vec<Event> = (0..25)
        .map(|at| Event {
            user_id,
            at,
            kind: format!("k{at}"),
        })
        .collect();
    events.save_all(&batch).await.expect("batch");
    let partition = EventPartition { user_id };
    let rows = events.find_partition(&partition).await.expect("partition");
    let order: Vec<i64> = rows.iter().map(|e| e.at).collect();
    assert_eq!(
        order,
        (0..25).rev().collect::<Vec<_>>(),
        "clustering order desc"
    );
    let mut pages = Vec::new();
    let mut token = None;
    loop {
        let page = events
            .find_partition_page(&partition, 10, token.as_ref())
            .await
            .expect("page");
        assert!(page.rows.len() <= 10);
        pages.push(page.rows.len());
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(pages.iter().sum::<usize>(), 25, "{pages:?}");
    assert!(pages.len() >= 3, "{pages:?}");
    let one = events
        .find(&EventKey { user_id, at: 7 })
        .await
        .expect("find");
    assert_eq!(one.map(|e| e.kind).as_deref(), Some("k7"));
}
