//! Cassandra/ScyllaDB repositories whose rows are cached through `cachefw`.
//!
//! Cassandra holds the truth, Redis (or memory) the hot copy, and one key
//! names both: the cache key of a row is its table and primary key,
//! `{table}:{pk…}:{ck…}`.
//!
//! ```
//! use cachefw_cassandra::Entity;
//!
//! #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
//! #[entity(keyspace = "shop", table = "events", ttl = "1m")]
//! pub struct Event {
//!     #[partition_key] pub user_id: uuid::Uuid,
//!     #[partition_key] pub day: i32,
//!     #[clustering_key(order = "desc")] pub at: i64,
//!     #[column(name = "event_kind")] pub kind: String,
//! }
//!
//! assert_eq!(
//!     Event::CQL.create_table,
//!     "CREATE TABLE IF NOT EXISTS shop.events (user_id uuid, day int, at bigint, \
//!      event_kind text, PRIMARY KEY ((user_id, day), at)) WITH CLUSTERING ORDER BY (at DESC)"
//! );
//! let key = EventKey { user_id: uuid::Uuid::nil(), day: 20, at: 5 };
//! assert_eq!(Event::cache_key(&key), "events:00000000-0000-0000-0000-000000000000:20:5");
//! ```
//!
//! Then, over a `scylla` session and a `cachefw::Cache`:
//!
//! ```no_run
//! # use cachefw_cassandra::{Entity, Repository};
//! # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
//! # #[entity(keyspace = "shop", table = "users", ttl = "10m")]
//! # pub struct User { #[partition_key] pub id: uuid::Uuid, pub name: String }
//! # async fn demo(session: std::sync::Arc<scylla::client::session::Session>, cache: cachefw::Cache)
//! # -> Result<(), cachefw_cassandra::Error> {
//! cachefw_cassandra::create_keyspace(&session, "shop", 1).await?;
//! let users: Repository<User> = Repository::new(session.clone(), cache).await?;
//! users.create_table().await?;
//! let id = uuid::Uuid::new_v4();
//! users.save(&User { id, name: "Ada".into() }).await?;
//! let ada = users.find(&UserKey { id }).await?;            // cached as users:<id>
//! users.delete(&UserKey { id }).await?;                    // and evicted
//! # let _ = ada; Ok(()) }
//! ```
//!
//! `#[derive(Entity)]` takes `#[entity(keyspace, table, ttl, cache_partitions)]`
//! on the struct, and `#[partition_key]` (one or more, in order),
//! `#[clustering_key]` (zero or more, `order = "desc"` optional) and
//! `#[column(name = "…")]` on fields. Column types map from field types:
//! `String`→text, `i8`/`i16`/`i32`/`i64`→tinyint/smallint/int/bigint,
//! `f32`/`f64`→float/double, `bool`→boolean, `uuid::Uuid`→uuid,
//! `chrono::DateTime<Utc>`→timestamp, `Vec<u8>`→blob, `Vec<T>`→list,
//! `HashSet`/`BTreeSet`→set, `HashMap`/`BTreeMap`→map, `Option<T>`→the
//! column of `T`. The driver binds at most 16 columns per entity.

#![warn(missing_docs)]

mod entity;
mod error;
mod repository;

pub use cachefw_macros::Entity;
pub use entity::{Entity, Statements};
pub use error::Error;
pub use repository::{Page, PageToken, Repository};

use scylla::client::session::Session;

/// Creates keyspace `name` with `SimpleStrategy` and `replication_factor`
/// if it does not exist (for demos and tests; production keyspaces want
/// `NetworkTopologyStrategy`).
///
/// # Errors
///
/// [`Error::Execute`] when `name` is not a plain identifier or Cassandra
/// refuses the statement.
pub async fn create_keyspace(
    session: &Session,
    name: &str,
    replication_factor: u32,
) -> Result<(), Error> {
    let statement = format!(
        "CREATE KEYSPACE IF NOT EXISTS {name} WITH replication = \
         {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
    );
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return Err(Error::execute(
            statement,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a keyspace name is letters, digits and `_`, starting with a letter",
            ),
        ));
    }
    session
        .query_unpaged(statement.as_str(), &[])
        .await
        .map_err(|source| Error::execute(statement, source))?;
    Ok(())
}

#[doc(hidden)]
pub mod __private {
    //! Not public API: what `#[derive(Entity)]`'s generated code names.
    pub use scylla::serialize::row::SerializeRow;
    pub use std::time::Duration;
}
