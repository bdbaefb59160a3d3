//! Rows changed behind the repository's back, and rows to load before
//! traffic: the Debezium follower (`Repository::follow_changes`) and
//! `Repository::warm`.
//!
//! The formats read, a Debezium Server configuration and the guarantees:
//! the crate's `change_streams` page (docs/change_streams.md).

use std::sync::Arc;

use cachefw::__adapter::follow::{self, Apply, Fields, Verdict};
use cachefw::Cache;
use serde_json::{Map, Value};

use crate::entity::Entity;
use crate::error::Error;
use crate::key;
use crate::reads::Reads;

/// What a key document names.
enum Change<T: Entity> {
    Row(T::Key),
    Partition(T::Partition),
}

/// Starts the follower of `stream` in `group` for `T`'s rows.
pub(crate) async fn follow<T: Entity>(
    cache: &Cache,
    stream: &str,
    group: &str,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let apply: Apply = Arc::new(|cache, fields| Box::pin(apply::<T>(cache, fields)));
    follow::spawn(cache, stream, group, apply)
        .await
        .map_err(|source| Error::Cache {
            table: T::TABLE,
            call: "follow_changes",
            source,
        })
}

/// Evicts the entries of the row (or partition) a change entry names.
async fn apply<T: Entity>(cache: Cache, fields: Fields) -> Verdict {
    let change = match key_document(&fields).and_then(|doc| change::<T>(&doc)) {
        Ok(change) => change,
        Err(reason) => return Verdict::Unreadable(reason),
    };
    let evicted = match change {
        Change::Row(key) => {
            let mut keys = vec![T::cache_key(&key)];
            if T::CACHE_PARTITIONS {
                keys.push(T::partition_cache_key(&T::partition_of(&key)));
            }
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            cache.delete_many(&keys).await.map(drop)
        }
        Change::Partition(partition) => {
            let marked = T::partition_cache_key(&partition);
            let prefix = marked.strip_suffix("%partition").unwrap_or(&marked);
            cache.evict_prefix(prefix).await.map(drop)
        }
    };
    match evicted {
        Ok(()) => Verdict::Applied,
        // Journaled: the cache replays it.
        Err(
            cachefw::Error::Redis { .. }
            | cachefw::Error::Timeout { .. }
            | cachefw::Error::Unavailable { .. }
            | cachefw::Error::PartialEviction { .. },
        ) => Verdict::Applied,
        Err(error) => Verdict::Unreadable(error.to_string()),
    }
}

/// The key document of an entry in either of the sink's formats, out of
/// its `schema`/`payload` envelope if it has one.
fn key_document(fields: &Fields) -> Result<Map<String, Value>, String> {
    let raw: &[u8] = match fields.iter().find(|(name, _)| name == b"key") {
        Some((_, value)) => value,
        None => match fields.as_slice() {
            [(name, _)] => name,
            _ => {
                return Err(format!(
                    "neither an extended entry (fields `key`, `value`) nor a compact one (one \
                     field), but {} fields",
                    fields.len()
                ));
            }
        },
    };
    let document: Value = serde_json::from_slice(raw)
        .map_err(|error| format!("the key document is not JSON: {error}"))?;
    let Value::Object(mut document) = document else {
        return Err("the key document is not a JSON object".to_owned());
    };
    if document.contains_key("schema")
        && let Some(Value::Object(payload)) = document.remove("payload")
    {
        return Ok(payload);
    }
    Ok(document)
}

/// The row, or the partition, a key document names.
fn change<T: Entity>(document: &Map<String, Value>) -> Result<Change<T>, String> {
    let mut values = Vec::with_capacity(T::KEY_COLUMN_NAMES.len());
    for name in T::KEY_COLUMN_NAMES {
        match document.get(*name) {
            Some(value) => values.push(value.clone()),
            None if values.len() >= T::PARTITION_COLUMNS => break,
            None => return Err(format!("the key document has no partition column `{name}`")),
        }
    }
    let read =
        |error: serde_json::Error| format!("a key column does not read as its field: {error}");
    if values.len() == T::KEY_COLUMN_NAMES.len() {
        return serde_json::from_value(Value::Array(values))
            .map(Change::Row)
            .map_err(read);
    }
    values.truncate(T::PARTITION_COLUMNS);
    serde_json::from_value(Value::Array(values))
        .map(Change::Partition)
        .map_err(read)
}

/// Loads the `n` hottest rows of `T` that are not cached (see
/// `Repository::warm`); how many it read from Cassandra.
pub(crate) async fn warm<T: Entity>(reads: &Reads<'_, T>, n: usize) -> Result<u64, Error> {
    if n == 0 {
        return Ok(0);
    }
    // The set ranks every table's keys (and other functions'): ask for
    // more than `n` to find `n` of this table.
    let wanted = n.saturating_mul(4).saturating_add(64).min(10_000);
    let hot = reads
        .cache
        .hot_keys(wanted)
        .await
        .map_err(|source| Error::Cache {
            table: T::TABLE,
            call: "warm",
            source,
        })?;
    let keys: Vec<T::Key> = hot
        .iter()
        .filter_map(|rendered| key::parse(T::TABLE, T::KEY_COLUMN_NAMES.len(), rendered))
        .take(n)
        .collect();
    if keys.is_empty() {
        return Ok(0);
    }
    Ok(reads.find_many_counted(&keys).await?.1)
}
