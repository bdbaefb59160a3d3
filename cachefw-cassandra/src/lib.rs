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
//! `#[derive(Entity)]` takes `#[entity(keyspace, table, ttl, cache_partitions,
//! write, layout)]` on the struct, and `#[partition_key]` (one or more, in order),
//! `#[clustering_key]` (zero or more, `order = "desc"` optional),
//! `#[column(name = "…")]` and `#[counter]` (see [Counters](#counters)) on
//! fields. Column types map from field types:
//! `String`→text, `i8`/`i16`/`i32`/`i64`→tinyint/smallint/int/bigint,
//! `f32`/`f64`→float/double, `bool`→boolean, `uuid::Uuid`→uuid,
//! `chrono::DateTime<Utc>`→timestamp, `Vec<u8>`→blob, `Vec<T>`→list,
//! `HashSet`/`BTreeSet`→set, `HashMap`/`BTreeMap`→map, `Option<T>`→the
//! column of `T`. A collection inside a collection is `frozen<…>`
//! (`Vec<Vec<String>>` → `list<frozen<list<text>>>`). There is no limit on
//! the number of fields: values bind one by one, not as a tuple.
//!
//! Keyspace and table names are 1 to 48 letters, digits and `_`. Column
//! names are any text: a reserved CQL keyword (`order`, `from`, …) or a name
//! with capitals (`userId`) is double-quoted in every statement. A key
//! field must render in the cache key and compare exactly: a float, a blob,
//! a collection or an `Option` as a key is a compile error.
//!
//! # Cache keys
//!
//! A row is cached at `{table}:{pk…}:{ck…}` and, with
//! `cache_partitions = true`, a partition's rows at
//! `{table}:{pk…}:%partition`. Each value is rendered with `Display`, and
//! `%` and `:` inside it become `%25` and `%3A` (as in every cachefw key),
//! so two rows never share an entry, and no row's key is a partition's: an
//! escaped value never holds `%partition`.
//!
//! ```
//! # use cachefw_cassandra::Entity;
//! # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
//! # #[entity(keyspace = "shop", table = "events", ttl = "1m", cache_partitions = true)]
//! # pub struct Event { #[partition_key] pub user: String, #[clustering_key] pub tag: String }
//! let row = EventKey { user: "a:b".into(), tag: "%partition".into() };
//! assert_eq!(Event::cache_key(&row), "events:a%3Ab:%25partition");
//! let partition = EventPartition { user: "a:b".into() };
//! assert_eq!(Event::partition_cache_key(&partition), "events:a%3Ab:%partition");
//! ```
//!
//! # Row TTLs
//!
//! [`Repository::save_with_ttl`] writes `USING TTL`. A cached row never
//! outlives its row: reads select the `TTL()` of the row's regular
//! non-collection columns and cache the row (or a partition) for the
//! entity's TTL or until it expires, whichever comes first, a few seconds
//! short of that (`TTL()` has whole seconds). Where that cannot work,
//! `save_with_ttl` is refused with [`Error::RowTtl`] before writing: an
//! entity whose every regular column is an `Option` or a collection (see
//! [`Statements::select_with_ttl`]), or a server that cannot parse `TTL()`
//! (kassandra, the in-memory test server, which reads without it).
//!
//! # Batches
//!
//! [`Repository::save_all`] writes logged batches of [`SAVE_ALL_CHUNK`]
//! rows (32; [`Repository::batch_rows`] changes it) and evicts each
//! batch's entries with one call of the cache (with write-through and
//! write-behind: stores its rows, see [`Repository::save_all`]).
//!
//! # Write modes
//!
//! `#[entity(write = "…")]` says how [`Repository::save`],
//! [`Repository::patch`] and [`Repository::delete`] reach Cassandra and
//! the cache ([`WriteMode`]):
//!
//! - `"invalidate"` (the default): Cassandra, then the cached entries are
//!   evicted; the next read loads the row.
//! - `"through"`: Cassandra, with the call's timestamp, then the row is
//!   stored in the cache as that version of its entry. The store voids any
//!   reader's lease, so a read that loaded the old row cannot fill it
//!   afterwards, and is dropped when a newer save of the row is stored
//!   already, so two concurrent saves never leave the older row cached.
//! - `"behind"`: the save returns once Redis holds the cache entry and a
//!   record in the table's stream, `{namespace}:wb:{table}` (outside the
//!   cache's version: neither a version bump nor `clear()` removes it).
//!   Flushers ([`Repository::spawn_flusher`], any number, in any
//!   processes) write the records to Cassandra `USING TIMESTAMP` of the
//!   call, so a replayed or late record never overwrites a newer write.
//!   Until its record is flushed the entry does not expire: reads see the
//!   write. [`Repository::backlog`] says how many records wait.
//!
//! **Durability of write-behind.** A write is acknowledged once Redis
//! holds it, so it is as durable as the Redis that took it. With AOF and
//! `appendfsync everysec`, a crash of Redis loses up to about a second of
//! acknowledged writes; with `appendfsync always`, none; without
//! persistence, a restart loses every write not flushed yet. After a
//! failover, what the replica had received survives. When Redis cannot take
//! a save (down, slow, its stream full) the save writes Cassandra itself,
//! with its timestamp, and is then as durable as that write.
//!
//! ```no_run
//! # use cachefw_cassandra::{Entity, Repository};
//! #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
//! #[entity(keyspace = "shop", table = "carts", ttl = "10m", write = "behind")]
//! pub struct Cart { #[partition_key] pub id: uuid::Uuid, pub items: Vec<String>, pub total: i64 }
//! # async fn demo(session: std::sync::Arc<scylla::client::session::Session>, cache: cachefw::Cache)
//! # -> Result<(), cachefw_cassandra::Error> {
//! let carts: Repository<Cart> = Repository::new(session, cache).await?; // a Redis cache
//! let flusher = carts.spawn_flusher();
//! let id = uuid::Uuid::new_v4();
//! carts.save(&Cart { id, items: vec!["tea".into()], total: 4 }).await?;
//! carts.patch(&CartKey { id }, &CartPatch { total: Some(12), ..Default::default() }).await?;
//! let backlog = carts.backlog().await?;                 // records not yet in Cassandra
//! # let _ = (flusher, backlog); Ok(()) }
//! ```
//!
//! `save_all`, `save_with_ttl` and `insert_if_not_exists` go to Cassandra
//! directly in every mode; with write-through and write-behind their
//! writes carry the call's timestamp or version, so an older save still on
//! its way neither overwrites them in Cassandra nor in the cache.
//! `insert_if_not_exists` changes the cache only when it applied.
//!
//! # Counters
//!
//! A `#[counter]` field is an `i64` stored as a CQL `counter`. Cassandra
//! keeps counters in tables of counters only (every non-key column one), and
//! only increments, reads and deletes them: the derive refuses a table that
//! mixes them, a counter key, a counter that is not an `i64` and
//! `write = "behind"` (an increment is not idempotent, and a flusher may
//! write a record twice), each at compile time. It generates
//! `{Entity}Counter`, one variant per counter, for
//! [`Repository::increment`], which adds to one counter and evicts the
//! row's entries (with write-through, then reads the totals back). Calls
//! that would set a counter's value ([`Repository::save`], `save_all`,
//! `save_with_ttl`, `insert_if_not_exists`) return
//! [`Error::CounterTable`] before anything is sent.
//!
//! ```
//! use cachefw_cassandra::Entity;
//!
//! #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
//! #[entity(keyspace = "shop", table = "page_hits", ttl = "1m")]
//! pub struct PageHits {
//!     #[partition_key] pub url: String,
//!     #[counter] pub views: i64,
//!     #[counter] pub clicks: i64,
//! }
//!
//! assert_eq!(
//!     PageHits::CQL.create_table,
//!     "CREATE TABLE IF NOT EXISTS shop.page_hits (url text, views counter, clicks counter, \
//!      PRIMARY KEY ((url)))"
//! );
//! assert_eq!(
//!     PageHits::increment_cql(PageHitsCounter::Clicks),
//!     "UPDATE shop.page_hits SET clicks = clicks + ? WHERE url = ?"
//! );
//! ```
//!
//! # Field patches
//!
//! The derive also generates `{Entity}Patch`: every regular (non-key)
//! field as an `Option` (an `Option<T>` field as `Option<Option<T>>`, where
//! `Some(None)` sets the column null), with `Default`.
//! [`Repository::patch`] writes only the fields that are `Some`
//! (`UPDATE … SET`), so a concurrent patch of other fields survives.
//!
//! # Field-level entities
//!
//! With `#[entity(layout = "hash")]` (the default is `"blob"`) the cached
//! entry of a row is a Redis hash at the row's key, one field per non-key
//! column, named as the column, each value encoded alone with the cache's
//! codec and its header (a counter as its decimal text). The derive also
//! generates `{Entity}Field`, one variant per column a patch sets, for
//! [`Repository::find_fields`].
//!
//! ```
//! use cachefw_cassandra::{Entity, Layout};
//!
//! #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
//! #[entity(keyspace = "shop", table = "profiles", ttl = "10m", layout = "hash")]
//! pub struct Profile { #[partition_key] pub id: i64, pub name: String, pub bio: String }
//!
//! assert_eq!(Profile::LAYOUT, Layout::Hash);
//! assert_eq!(Profile::HASH_COLUMNS, ["name", "bio"]);
//! assert_eq!(Profile::field_column(ProfileField::Bio), "bio");
//! ```
//!
//! - [`Repository::patch`] writes Cassandra (with the call's timestamp, in
//!   every write mode), then sets only the given fields in the cached hash,
//!   in one script: it never reads, decodes or rewrites the others, no
//!   reader sees part of it, and the next [`Repository::find`] is a hit.
//! - [`Repository::find`] reads the whole hash in one script that sums the
//!   fields' sizes (`HSTRLEN`) before it reads them, so a row past the
//!   cache's `max_value_size` is a miss, never read whole; a miss takes a
//!   lease inside the entry, loads the row and stores it only while the
//!   lease is still there (no stale fill).
//! - [`Repository::find_fields`] reads only the asked fields on a hit (one
//!   `HMGET`); a miss loads and caches the whole row.
//! - Ordering is per field. A record beside the entry
//!   (`{namespace}:v{version}:%fields:{key}:{hash tag}`, in its cluster
//!   slot) keeps the version of the last write of each column and of the
//!   whole row, and outlives the entry by a minute past the entity's TTL.
//!   A patch is refused, and the entry evicted, only when a write of the
//!   whole row (a save, a delete, an eviction) or of one of its own
//!   columns is as new or newer: patches of disjoint columns, from any
//!   number of processes, never evict each other. Every write removes a
//!   reader's lease, so a row read before it is not stored after it.
//! - Saves store the whole row (write-through, write-behind) or evict it
//!   (invalidate); deletes, TTL saves and batches evict it, recording
//!   their version. With write-behind a patch's record is flushed as a
//!   record of its columns, and its fields are set in the cached hash,
//!   which keeps no expiry until the flush; while a write waits for its
//!   flush no reader fills the entry from Cassandra.
//! - An increment of a counter adds to the cached counter (`HINCRBY`) once
//!   Cassandra applied it; while it is in flight no reader fills the row,
//!   and an increment whose outcome is unknown evicts it.
//! - The near tier holds whole rows read from hashes, and drops them on any
//!   write of one of their fields.
//! - Partitions (`cache_partitions`) stay one value per partition.
//!
//! Internal fields of the hash start with byte `0xFF`, which no column name
//! (UTF-8 text) contains. A hash entity needs a Redis cache
//! ([`Error::HashNeedsRedis`] otherwise).
//!
//! **Which layout.** Pick `hash` for wide rows updated a few columns at a
//! time, or read a few columns at a time: a patch sends only its fields
//! (about 360 bytes for one field of a 20-column, 4 KiB row, against
//! 4.5 KiB rewritten by the blob layout's next read) and the next read is
//! a hit, where the blob layout evicts and the next read goes to
//! Cassandra. Pick `blob` (the default) for small rows, rows written
//! whole, and read-mostly rows read whole: a hit is one `GET`, about half
//! the cost of a hash hit (a script over every field, and one decode per
//! column). BENCHMARKS.md has the figures.
//!
//! # Failed writes
//!
//! A write that fails with an unknown outcome (a write timeout, a
//! connection lost after the request left, a client timeout) may have been
//! applied, so its cache entries are evicted as after a success; only a
//! write Cassandra definitely refused leaves them. A caller cut off while a
//! write is in flight still evicts, from a task.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod behind;
mod bind;
mod changes;
#[doc = include_str!("../docs/change_streams.md")]
pub mod change_streams {}
mod clock;
mod counter;
mod entity;
mod error;
mod evict;
mod hash;
mod key;
mod life;
mod outcome;
mod page;
mod patch;
mod reads;
mod repository;
mod row;
mod rows;
mod table;
mod through;
mod writes;

pub use behind::{Backlog, DEFAULT_DEAD_LETTER_AFTER};
pub use cachefw_macros::Entity;
pub use counter::NoCounter;
pub use entity::{Entity, Layout, Statements, WriteMode};
pub use error::Error;
pub use page::{Page, PageToken};
pub use repository::{DEFAULT_CLAIM_IDLE, Repository, SAVE_ALL_CHUNK};

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
        return Err(Error::statement(
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
        .map_err(|source| Error::statement(statement, source))?;
    Ok(())
}

#[doc(hidden)]
pub mod __private {
    //! Not public API: what `#[derive(Entity)]`'s generated code names.
    pub use crate::bind::Values;
    pub use crate::hash::fields::{FieldSink, FieldSource};
    pub use crate::key::{partition_key, row_key};
    pub use crate::patch::{PatchValues, present};
    pub use crate::row::{check_column, check_counter, next_column, next_counter};
    pub use scylla::deserialize::row::ColumnIterator;
    pub use scylla::deserialize::{DeserializationError, TypeCheckError};
    pub use scylla::frame::response::result::ColumnSpec;
    pub use scylla::serialize::row::SerializeRow;
    pub use serde;
    pub use std::time::Duration;
}
