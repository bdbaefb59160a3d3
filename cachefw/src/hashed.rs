//! Hash entries: a cached row kept as a Redis hash, one field per column,
//! for crates built on cachefw (`cachefw-cassandra`'s `layout = "hash"`).
//!
//! The adapter owns the layout and its scripts; these hooks give it what
//! only the cache has: its keys (the entry, and a record beside it in the
//! entry's cluster slot, `{namespace}:v{version}:%fields:{key}:{hash tag}`),
//! its codec and size limit for each field's value, its counters and
//! logs, and the journal of pending evictions: a write that fails or is
//! cancelled leaves the entry evicted (replayed when Redis answers), and
//! reads of an entry with a pending eviction bypass Redis. Not a stable
//! API: reached through `cachefw::__private`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::codec::{Decoded, Entry, Meta};
use crate::error::Error;
use crate::journal::Eviction;

/// The two keys of a hash entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashKeys {
    /// The entry, a Redis hash.
    pub entry: String,
    /// Its record (versions of its fields), in the entry's cluster slot.
    pub record: String,
}

/// The keys of the hash entry at `key` (a key as given to [`Cache::get`],
/// without the namespace and version).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = cachefw::Cache::builder().namespace("shop").build().await?;
/// let keys = cachefw::__adapter::hashed::keys(&cache, "users:1")?;
/// assert_eq!(keys.entry, "shop:v1:users:1");
/// assert_eq!(keys.record, "shop:v1:%fields:users:1:{shop:v1:users:1}");
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::Config`] for a key that cannot share a slot with its record on
/// a Redis Cluster (a `}` with no hash tag).
pub fn keys(cache: &Cache, key: &str) -> Result<HashKeys, Error> {
    let inner = cache.inner();
    let at = crate::versioned::record_key(inner, inner.keys().prefix(), key, "%fields:")?;
    Ok(HashKeys {
        entry: at.entry,
        record: at.record,
    })
}

/// [`keys`] under `prefix` (`{namespace}:v{version}:`) rather than this
/// cache's own: a write-behind entry is settled where it was written.
///
/// # Errors
///
/// As [`keys`].
pub fn keys_under(cache: &Cache, prefix: &str, key: &str) -> Result<HashKeys, Error> {
    let at = crate::versioned::record_key(cache.inner(), prefix, key, "%fields:")?;
    Ok(HashKeys {
        entry: at.entry,
        record: at.record,
    })
}

/// One field's value as the cache stores values: its codec's header and
/// payload, with no expiry of its own (the hash's TTL is the entry's).
///
/// # Errors
///
/// [`Error::Encode`], or [`Error::ValueTooLarge`] past `max_value_size`
/// (counted and logged).
pub fn encode<T: Serialize + ?Sized>(
    cache: &Cache,
    entry: &str,
    value: &T,
) -> Result<Vec<u8>, Error> {
    let inner = cache.inner();
    let meta = Meta {
        expires_ms: u64::MAX,
        delta_ms: 0,
    };
    let bytes = inner.encode(entry, value, meta, None)?;
    inner.check_size(entry, &bytes)?;
    Ok(bytes)
}

/// A field's value from its stored bytes; `None` (counted and logged as a
/// bad entry) when they are not a value of the cache's codec that decodes
/// as `T`.
pub fn decode<T: DeserializeOwned>(cache: &Cache, entry: &str, bytes: &[u8]) -> Option<T> {
    let inner = cache.inner();
    match inner.codec().decode::<T>(bytes, inner.max_value_size()) {
        Ok(Decoded {
            entry: Entry::Value(value),
            ..
        }) => Some(value),
        Ok(_) => {
            inner.failure(&Error::Decode {
                key: entry.to_owned(),
                reason: "a hash field holds no value".to_owned(),
            });
            None
        }
        Err(reason) => {
            inner.failure(&Error::Decode {
                key: entry.to_owned(),
                reason: reason.to_string(),
            });
            None
        }
    }
}

/// The largest entry this cache reads (`max_value_size`): a whole hash is
/// read only when its fields add up to no more.
pub fn max_value_size(cache: &Cache) -> u64 {
    cache.inner().max_value_size()
}

/// How long a reader's lease on an entry lasts.
pub fn lease_time(cache: &Cache) -> std::time::Duration {
    cache.inner().lease_time()
}

/// Whether reads of `entry` must bypass Redis: an eviction of it has not
/// reached Redis yet.
pub fn bypasses(cache: &Cache, entry: &str) -> bool {
    cache.inner().bypasses(entry)
}

/// Counts a read of a hash entry in the cache's stats: a miss, or a hit
/// of Redis or of the near tier.
pub fn count(cache: &Cache, hit: bool, near: bool) {
    let inner = cache.inner();
    if hit {
        inner.telemetry().hit("hash", near);
    } else {
        inner.telemetry().miss("hash");
    }
}

/// What the near tier holds for the hash `entry`: the bytes a reader
/// offered with [`near_offer`], if the tier serves them.
pub fn near_get(cache: &Cache, entry: &str) -> Option<bytes::Bytes> {
    cache.inner().near()?.fields(entry)
}

/// A read of a hash entry that may be offered to the near tier: taken
/// before the read is sent, so that a write of the entry meanwhile (by
/// this cache, or reported by tracking) keeps its result out.
pub struct NearRead<'a> {
    ticket: Option<crate::near::Ticket<'a>>,
}

/// Begins a read of `entry` for the near tier (nothing comes of it when
/// the cache has no near tier, or it does not serve now).
pub fn near_read<'a>(cache: &'a Cache, entry: &str) -> NearRead<'a> {
    NearRead {
        ticket: cache.inner().near().and_then(|near| near.ticket(entry)),
    }
}

/// Offers what `read` returned, packed as `bytes`, to the near tier, for
/// `life` at most (the entry's TTL's rest).
pub fn near_offer(
    cache: &Cache,
    entry: &str,
    read: NearRead<'_>,
    bytes: Vec<u8>,
    life: std::time::Duration,
) {
    if let (Some(near), Some(ticket)) = (cache.inner().near(), read.ticket) {
        near.offer_fields(entry, bytes::Bytes::from(bytes), ticket, life);
    }
}

/// Runs a script that writes `entry` (or removes it) under the journal:
/// when it fails or is cancelled, `entry` is evicted as soon as Redis
/// answers, and read around until then. This cache's near copy goes, and
/// loads in flight do not store what they got.
///
/// # Errors
///
/// As [`crate::command::invoke`].
#[cfg(feature = "redis")]
pub async fn write(
    cache: &Cache,
    op: &'static str,
    entry: &str,
    invocation: &redis::ScriptInvocation<'_>,
) -> Result<redis::Value, Error> {
    let inner = cache.inner();
    let write = inner.backend().invoke(op, entry, invocation);
    inner
        .evicting([Eviction::Key(entry.to_owned())], write)
        .await
}
