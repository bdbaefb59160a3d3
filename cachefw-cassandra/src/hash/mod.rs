//! The field-level layout (`#[entity(layout = "hash")]`): a cached row is
//! a Redis hash at the row's key, one field per regular column, each
//! encoded alone with the cache's codec (counters as decimal text).
//!
//! What the blob layout guarantees holds per field:
//!
//! - No stale fill: a reader that misses takes a lease inside the entry (a
//!   hash holding only `\xFFl`), reads Cassandra, and stores the row only
//!   while its lease is still there. Every write removes a lease it finds
//!   (a patch, a save, an eviction, the start of an increment), so a row
//!   read before a write is never stored after it.
//! - An older write never lands over a newer one: every write carries its
//!   timestamp (the one it gave Cassandra) as a version, and the entry's
//!   record beside it (`%fields:`, see `cachefw::__adapter::hashed`) keeps
//!   the newest version of each column and of the whole row. A patch is
//!   refused (and the entry evicted) only when a write of the whole row
//!   or of one of its own columns is as new or newer: patches of disjoint
//!   columns never evict each other.
//! - An eviction outlives a racing fill: it removes the entry with any
//!   lease in it, and records its version.
//!
//! A patch sets only its fields, in one script: it never reads, decodes or
//! rewrites the others, and no reader sees part of it. Reads are bounded
//! by `max_value_size`: the script sums the fields' lengths (`HSTRLEN`)
//! before it reads any (`HMGET` of the entity's columns, never
//! `HGETALL`).
//!
//! Partitions (`cache_partitions`) stay one encoded value per partition,
//! evicted by every write of one of their rows.

pub(crate) mod fields;
mod reads;
mod scripts;
mod writes;

use std::time::Duration;

use cachefw::__adapter::hashed::{self, HashKeys};
use cachefw::__adapter::redis::Value;
use cachefw::__adapter::versioned::{RECORD_MARGIN, Settled};
use cachefw::Cache;

use crate::entity::Entity;

pub(crate) use reads::HashReads;
pub(crate) use writes::HashWrites;

/// Milliseconds of `ttl`, at least 1.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// How long a record lives past a write: the entity's TTL and a margin.
fn record_ms<T: Entity>() -> u64 {
    millis(T::TTL.saturating_add(RECORD_MARGIN))
}

/// The integer a script answered, if it answered one.
fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

/// After a write-behind write of the row at `key` (under `prefix`) reached
/// Cassandra at `version`: see [`settle`](scripts) for the hash layout,
/// `versioned::settle_under` for the blob layout.
pub(crate) async fn settle_under<T: Entity>(
    cache: &Cache,
    prefix: &str,
    key: &str,
    version: u64,
) -> Result<Settled, cachefw::Error> {
    if T::LAYOUT == crate::Layout::Blob {
        return cachefw::__adapter::versioned::settle_under(
            cache,
            prefix,
            key,
            version,
            Some(T::TTL),
        )
        .await;
    }
    let HashKeys { entry, record } = hashed::keys_under(cache, prefix, key)?;
    let script = &scripts::SCRIPTS.settle;
    let mut invocation = script.key(&entry);
    invocation
        .key(&record)
        .arg(version)
        .arg(millis(T::TTL))
        .arg(record_ms::<T>());
    let answer = hashed::write(cache, "HASH_SETTLE", &entry, &invocation).await?;
    Ok(match int(&answer) {
        Some(1) => Settled::Kept,
        Some(0) => Settled::Newer,
        _ => Settled::Removed,
    })
}
