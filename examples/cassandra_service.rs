//! A small user/event service over `cachefw-cassandra`: Cassandra holds the
//! rows, the cache the hot copies, one key names both.
//!
//! ```text
//! cargo run --bin cassandra_service         # kassandra in-process, in-memory cache
//! CACHEFW_CASSANDRA_URI=127.0.0.1:9042 REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo run --bin cassandra_service     # real servers
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use cachefw::Cache;
use cachefw_cassandra::{Entity, Repository};
use kassandra_tester::KassandraTester;
use kassandra_tester::kassandra::KassandraSession;
use scylla::client::session_builder::SessionBuilder;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize, Entity)]
#[entity(keyspace = "service", table = "users", ttl = "10m")]
pub struct User {
    #[partition_key]
    pub id: Uuid,
    pub name: String,
    pub email: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "service",
    table = "events",
    ttl = "1m",
    cache_partitions = true
)]
pub struct Event {
    #[partition_key]
    pub user_id: Uuid,
    #[clustering_key]
    pub at: i64,
    pub kind: String,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

async fn run(node: String, real_cassandra: bool) -> Result<(), Failure> {
    let mut session = SessionBuilder::new().known_node(&node);
    if !real_cassandra {
        // kassandra has no schema-agreement tables to wait on.
        session = session.auto_await_schema_agreement(false);
    }
    let session = Arc::new(session.build().await?);
    let builder = Cache::builder().namespace("service");
    let cache = match std::env::var("REDIS_URL") {
        Ok(url) => {
            // The URL may hold a password: never print it.
            println!("cache: Redis (from REDIS_URL)");
            builder.redis(url).build().await?
        }
        Err(_) => {
            println!("cache: in-memory (set REDIS_URL to use Redis)");
            builder.build().await?
        }
    };
    cachefw_cassandra::create_keyspace(&session, "service", 1).await?;
    let users: Repository<User> = Repository::new(session.clone(), cache.clone()).await?;
    let events: Repository<Event> = Repository::new(session, cache.clone()).await?;
    users.create_table().await?;
    events.create_table().await?;

    let id = Uuid::new_v4();
    users
        .save(&User {
            id,
            name: "Ada".into(),
            email: "ada@example.com".into(),
        })
        .await?;
    let key = UserKey { id };
    for round in ["first read ", "second read"] {
        let started = Instant::now();
        let user = users.find(&key).await?;
        println!(
            "{round}: {:?} in {:.2?} (cache key {})",
            user.map(|u| u.name),
            started.elapsed(),
            User::cache_key(&key)
        );
    }

    let history: Vec<Event> = (0..5)
        .map(|at| Event {
            user_id: id,
            at,
            kind: if at == 0 {
                "signup".into()
            } else {
                format!("login {at}")
            },
        })
        .collect();
    events.save_all(&history).await?;
    let partition = EventPartition { user_id: id };
    let found = events.find_partition(&partition).await?;
    println!(
        "events of the user: {} (partition cached as {})",
        found.len(),
        Event::partition_cache_key(&partition)
    );

    users.delete(&key).await?;
    println!(
        "after delete: {:?}",
        users.find(&key).await?.map(|u| u.name)
    );
    let stats = cache.stats();
    println!(
        "cache: {} hits, {} misses, {} loads, {} errors",
        stats.hits, stats.misses, stats.loads, stats.errors
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    if let Ok(node) = std::env::var("CACHEFW_CASSANDRA_URI") {
        println!("cassandra: {node} (from CACHEFW_CASSANDRA_URI)");
        return run(node, true).await;
    }
    println!("cassandra: kassandra in-process (set CACHEFW_CASSANDRA_URI to use a real node)");
    let outcome = Arc::new(std::sync::Mutex::new(None));
    KassandraTester::new(KassandraSession::new())
        .in_scope(|addr: SocketAddr| {
            let outcome = outcome.clone();
            async move {
                let result = run(addr.to_string(), false).await;
                if let Ok(mut slot) = outcome.lock() {
                    slot.get_or_insert(result);
                }
                Ok::<(), ()>(())
            }
        })
        .await
        .map_err(|()| "kassandra stopped")?;
    let result = outcome.lock().map_err(|_| "a poisoned outcome")?.take();
    result.unwrap_or(Ok(()))
}
