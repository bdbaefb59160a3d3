//! Versioned entries: writes of one key ordered by a version the writer
//! gives (the time of its database write), for entries written through
//! from a database rather than filled from it.
//!
//! A versioned write replaces whatever the entry holds (a value, a reader's
//! lease, so that a reader that loaded the row before the write cannot fill
//! it afterwards), unless a write of a newer version is stored: then it is
//! dropped, and two writes that land out of order never leave the older
//! row cached. The version lives in a record beside the entry:
//! `{namespace}:v{version}:%version:{key, % and { escaped}:{hash tag}`, in
//! the entry's Redis Cluster slot, holding the version and the SHA-1 of the
//! bytes written with it, so that a fill or lease put in the entry later is
//! told apart from the version's own write. The record outlives its entry
//! by [`RECORD_MARGIN`], so a write still in flight when the entry expires
//! or is evicted cannot store an older row. Macro and repository keys
//! never start with `%version:` (their `%` is escaped as `%25`); raw keys
//! given to [`Cache::get`] and friends should not either.
//!
//! These functions are for crates built on cachefw (`cachefw-cassandra`),
//! through `cachefw::__adapter`; they are not a stable API.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::versioned_key::VersionedKey;
use crate::cache::Cache;
use crate::clock::now_ms;
use crate::codec::{Decoded, Entry, Meta};
use crate::error::Error;
use crate::inner::Inner;
use crate::journal::Eviction;
use crate::telemetry::meters::{NO_SITE, WriteOp};

/// How much longer than its entry a version record lives.
pub const RECORD_MARGIN: Duration = Duration::from_secs(60);

/// What [`store`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stored {
    /// The value is the entry now, and its version the entry's.
    Stored,
    /// A write of this version or a newer one was stored: nothing was
    /// written (and a fill or lease in the entry was removed).
    Superseded,
    /// The entry's version was not the one expected: nothing was written.
    Conflict,
}

/// What [`settle`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settled {
    /// The entry holds that version's write and expires by its TTL now.
    Kept,
    /// The entry held something else (older, a fill, a lease) or was to
    /// be dropped: it is gone.
    Removed,
    /// A newer version is stored: left alone.
    Newer,
}

/// An entry as [`peek`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peeked<T> {
    /// The value, when the entry holds the write of its version.
    pub value: Option<T>,
    /// The entry's version, if it has one.
    pub version: Option<u64>,
}

/// Stores `value` at `key` as `version`, for `ttl` (`None`: until
/// [`settle`]d), unless a write of `version` or newer is stored, or
/// `expect` is given and the entry's version is not that one.
///
/// A write that fails or is cancelled is kept as a pending eviction of
/// `key` (replayed when Redis answers, as a failed [`Cache::set`] is).
///
/// ```
/// use std::time::Duration;
/// use cachefw::__adapter::versioned::{self, Stored};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = cachefw::Cache::builder().build().await?;
/// let minute = Some(Duration::from_secs(60));
/// let newer = versioned::store(&cache, "row:1", "new", 20, minute, None).await?;
/// let older = versioned::store(&cache, "row:1", "old", 10, minute, None).await?;
/// assert_eq!((newer, older), (Stored::Stored, Stored::Superseded));
/// assert_eq!(cache.get::<String>("row:1").await?.as_deref(), Some("new"));
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::Encode`] or [`Error::InvalidTtl`] before anything is sent (the
/// entry is left as it was), [`Error::Config`] for a key that cannot be
/// versioned on a Redis Cluster (a `}` with no hash tag), and Redis
/// failures.
pub async fn store<T: Serialize + ?Sized>(
    cache: &Cache,
    key: &str,
    value: &T,
    version: u64,
    ttl: Option<Duration>,
    expect: Option<u64>,
) -> Result<Stored, Error> {
    let inner = cache.inner();
    let at = versioned_key(inner, key)?;
    let ttl_ms = match ttl {
        Some(ttl) => px(&at, ttl)?,
        None => 0,
    };
    let record_ttl_ms = match ttl {
        Some(ttl) => px(&at, ttl.saturating_add(RECORD_MARGIN))?,
        None => 0,
    };
    // Fresh for its TTL; an entry with no expiry (a write-behind entry until
    // its row is flushed) never goes stale.
    let meta = Meta {
        expires_ms: match ttl_ms {
            0 => u64::MAX,
            ms => now_ms().saturating_add(ms),
        },
        delta_ms: 0,
    };
    let bytes = inner.encode(&at.entry, value, meta, None)?;
    inner.check_size(&at.entry, &bytes)?;
    let bytes = Bytes::from(bytes);
    let write = inner
        .backend()
        .store_versioned(&at, bytes, ttl_ms, version, record_ttl_ms, expect);
    let stored = inner
        .evicting([Eviction::Key(at.entry.clone())], write)
        .await?;
    let op = if stored == 1 {
        WriteOp::Store
    } else {
        WriteOp::Evict
    };
    inner.telemetry().meters().write(NO_SITE, op, 1);
    Ok(match stored {
        1 => Stored::Stored,
        2 => Stored::Conflict,
        _ => Stored::Superseded,
    })
}

/// Removes the entry at `key` and records `version`, so that a write of an
/// older version that lands later is dropped; the record lives `ttl` plus
/// [`RECORD_MARGIN`]. The write of a newer version stays. `true` when the
/// entry was removed. Failed or cancelled, it is a pending eviction.
///
/// ```
/// use std::time::Duration;
/// use cachefw::__adapter::versioned::{self, Stored};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = cachefw::Cache::builder().build().await?;
/// let minute = Duration::from_secs(60);
/// assert!(versioned::evict(&cache, "row:1", 20, minute).await?); // a delete at 20
/// let late = versioned::store(&cache, "row:1", "saved at 10", 10, Some(minute), None).await?;
/// assert_eq!(late, Stored::Superseded);
/// assert_eq!(cache.get::<String>("row:1").await?, None);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`store`].
pub async fn evict(cache: &Cache, key: &str, version: u64, ttl: Duration) -> Result<bool, Error> {
    let inner = cache.inner();
    let at = versioned_key(inner, key)?;
    let record_ttl_ms = px(&at, ttl.saturating_add(RECORD_MARGIN))?;
    let write = inner.backend().evict_versioned(&at, version, record_ttl_ms);
    let removed = inner
        .evicting([Eviction::Key(at.entry.clone())], write)
        .await?;
    inner.telemetry().meters().write(NO_SITE, WriteOp::Evict, 1);
    Ok(removed)
}

/// After the write of `version` reached the source: its entry, if the
/// entry still holds it, expires in `ttl` from now (`None`: it is removed);
/// anything else in the entry, older than the source now, is removed, and
/// `version` is recorded, so that its own write storing late (after this
/// settle) is dropped rather than kept with no expiry. A newer version's
/// own write is left alone; anything else beside a newer version (a fill,
/// which may have read the source before this write reached it) is
/// removed.
///
/// ```
/// use std::time::Duration;
/// use cachefw::__adapter::versioned::{self, Settled};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = cachefw::Cache::builder().build().await?;
/// let minute = Duration::from_secs(60);
/// versioned::store(&cache, "row:1", "pending", 10, None, None).await?; // no expiry
/// let settled = versioned::settle(&cache, "row:1", 10, Some(minute)).await?;
/// assert_eq!(settled, Settled::Kept);
/// assert!(cache.ttl("row:1").await?.is_some_and(|left| left <= minute));
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`store`]; a failure is not kept for replay (the entry holds the
/// version, or something the next settle removes).
pub async fn settle(
    cache: &Cache,
    key: &str,
    version: u64,
    ttl: Option<Duration>,
) -> Result<Settled, Error> {
    settle_under(cache, cache.inner().keys().prefix(), key, version, ttl).await
}

/// The prefix (`{namespace}:v{version}:`) of this cache's keys, which
/// [`settle_under`] takes.
pub fn prefix(cache: &Cache) -> &str {
    cache.inner().keys().prefix()
}

/// [`settle`] of the entry at `key` under `prefix` rather than this
/// cache's own: an entry written before the key version changed (a
/// write-behind entry, which has no expiry until it is settled) is settled
/// where it was written.
///
/// # Errors
///
/// As [`settle`].
pub async fn settle_under(
    cache: &Cache,
    prefix: &str,
    key: &str,
    version: u64,
    ttl: Option<Duration>,
) -> Result<Settled, Error> {
    let inner = cache.inner();
    let at = versioned_key_under(inner, prefix, key)?;
    let ttl_ms = match ttl {
        Some(ttl) => px(&at, ttl)?,
        None => 0,
    };
    let record_ttl = ttl.unwrap_or(Duration::ZERO).saturating_add(RECORD_MARGIN);
    let record_ttl_ms = px(&at, record_ttl)?;
    // The entry is rewritten or removed: this cache's near copy goes, before
    // and once Redis answered (see `Inner::evicting`).
    inner.near_written(&at.entry);
    let settled = inner.observe(
        inner
            .backend()
            .settle_versioned(&at, version, ttl_ms, record_ttl_ms)
            .await,
    );
    inner.near_written(&at.entry);
    let settled = settled?;
    Ok(match settled {
        1 => Settled::Kept,
        0 => Settled::Newer,
        _ => Settled::Removed,
    })
}

/// The entry at `key` with its version, for a read-modify-write that
/// stores with `expect: version`. The value is `None` when the entry does
/// not hold its version's own write (a fill, a lease, nothing), does not
/// decode as `T`, or has an eviction pending (then Redis is not asked and
/// the version is `None` too).
///
/// ```
/// use std::time::Duration;
/// use cachefw::__adapter::versioned::{self, Stored};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = cachefw::Cache::builder().build().await?;
/// let minute = Some(Duration::from_secs(60));
/// versioned::store(&cache, "n", &1, 10, minute, None).await?;
/// let seen = versioned::peek::<i32>(&cache, "n").await?;
/// assert_eq!((seen.value, seen.version), (Some(1), Some(10)));
/// let next = versioned::store(&cache, "n", &2, 11, minute, seen.version).await?;
/// assert_eq!(next, Stored::Stored);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`store`].
pub async fn peek<T: DeserializeOwned>(cache: &Cache, key: &str) -> Result<Peeked<T>, Error> {
    let inner = cache.inner();
    let at = versioned_key(inner, key)?;
    if inner.bypasses(&at.entry) {
        return Ok(Peeked {
            value: None,
            version: None,
        });
    }
    let (bytes, version) = inner.observe(inner.backend().peek_versioned(&at).await)?;
    let value = match bytes.map(|bytes| inner.codec().decode::<T>(&bytes, inner.max_value_size())) {
        Some(Ok(Decoded {
            entry: Entry::Value(value),
            ..
        })) => Some(value),
        Some(Err(reason)) => {
            inner.failure(&Error::Decode {
                key: at.entry.clone(),
                reason: reason.to_string(),
            });
            None
        }
        Some(Ok(Decoded {
            entry: Entry::Absent | Entry::Leased,
            ..
        }))
        | None => None,
    };
    Ok(Peeked { value, version })
}

fn px(at: &VersionedKey, ttl: Duration) -> Result<u64, Error> {
    crate::ttl::px(ttl).ok_or_else(|| Error::InvalidTtl {
        key: at.entry.clone(),
        ttl,
    })
}

/// The entry's full key and its version record's, in one cluster slot.
fn versioned_key(inner: &Inner, key: &str) -> Result<VersionedKey, Error> {
    versioned_key_under(inner, inner.keys().prefix(), key)
}

/// [`versioned_key`] under `prefix`.
fn versioned_key_under(inner: &Inner, prefix: &str, key: &str) -> Result<VersionedKey, Error> {
    record_key(inner, prefix, key, "%version:")
}

/// The entry at `key` under `prefix` and a record of kind `kind` (a
/// `%…:` part no macro or repository key starts with) beside it, in one
/// cluster slot.
pub(crate) fn record_key(
    inner: &Inner,
    prefix: &str,
    key: &str,
    kind: &str,
) -> Result<VersionedKey, Error> {
    let mut entry = String::with_capacity(prefix.len() + key.len());
    entry.push_str(prefix);
    entry.push_str(key);
    let tag = hash_tag(&entry);
    let mut record = String::with_capacity(prefix.len() + key.len() + tag.len() + 16);
    record.push_str(prefix);
    record.push_str(kind);
    // With `{` escaped, the first `{` after the prefix opens the tag, and
    // with `%` escaped too, two keys never share a record.
    for c in key.chars() {
        match c {
            '%' => record.push_str("%25"),
            '{' => record.push_str("%7B"),
            c => record.push(c),
        }
    }
    record.push_str(":{");
    record.push_str(tag);
    record.push('}');
    if !inner.backend().same_slot(&entry, &record) {
        return Err(Error::Config {
            setting: "key",
            reason: format!(
                "{entry:?} cannot be versioned on a Redis Cluster: a `{{` or `}}` in it \
                 makes no hash tag the version record can share"
            ),
        });
    }
    Ok(VersionedKey { entry, record })
}

/// What Redis Cluster hashes: the text between the first `{` and the next
/// `}` when it is not empty, else the whole key.
fn hash_tag(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            let rest = key.get(open + 1..)?;
            let close = rest.find('}')?;
            rest.get(..close).filter(|tag| !tag.is_empty())
        })
        .unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_as_redis_finds_them() {
        assert_eq!(hash_tag("shop:v1:users:1"), "shop:v1:users:1");
        assert_eq!(hash_tag("shop:v1:{user1}:a"), "user1");
        assert_eq!(hash_tag("a{}{b}"), "a{}{b}");
        assert_eq!(hash_tag("a{b"), "a{b");
    }

    #[tokio::test]
    async fn records_are_distinct_and_escaped() {
        let cache = Cache::builder()
            .namespace("shop")
            .build()
            .await
            .expect("cache");
        let inner = cache.inner();
        let record = |key: &str| versioned_key(inner, key).map(|at| at.record);
        assert_eq!(
            record("users:1").ok().as_deref(),
            Some("shop:v1:%version:users:1:{shop:v1:users:1}")
        );
        assert_eq!(
            record("{u}:a%").ok().as_deref(),
            Some("shop:v1:%version:%7Bu}:a%25:{u}")
        );
        assert_ne!(record("a{b").ok(), record("a%7Bb").ok());
    }

    #[tokio::test]
    async fn versions_order_writes_and_evictions() {
        let cache = Cache::builder().build().await.expect("cache");
        let minute = Some(Duration::from_secs(60));
        let store = |value: &'static str, version| {
            let cache = cache.clone();
            async move { store(&cache, "k", value, version, minute, None).await }
        };
        assert_eq!(store("b", 2).await.ok(), Some(Stored::Stored));
        assert_eq!(store("a", 1).await.ok(), Some(Stored::Superseded));
        assert_eq!(store("b again", 2).await.ok(), Some(Stored::Superseded));
        assert_eq!(
            cache.get::<String>("k").await.ok().flatten().as_deref(),
            Some("b")
        );
        // An eviction older than the stored write leaves it.
        assert_eq!(
            evict(&cache, "k", 1, Duration::from_secs(60)).await.ok(),
            Some(false)
        );
        assert!(cache.get::<String>("k").await.ok().flatten().is_some());
        assert_eq!(
            evict(&cache, "k", 3, Duration::from_secs(60)).await.ok(),
            Some(true)
        );
        assert_eq!(store("c", 2).await.ok(), Some(Stored::Superseded));
        assert_eq!(cache.get::<String>("k").await.ok().flatten(), None);
        assert_eq!(store("d", 4).await.ok(), Some(Stored::Stored));
        // A fill that replaced the version's write is removed by an older
        // write, which may have read the source before it.
        cache
            .set("k", "filled", Duration::from_secs(60))
            .await
            .expect("set");
        assert_eq!(store("e", 3).await.ok(), Some(Stored::Superseded));
        assert_eq!(cache.get::<String>("k").await.ok().flatten(), None);
    }

    #[tokio::test]
    async fn settling_expires_the_own_write_and_removes_the_rest() {
        let cache = Cache::builder().build().await.expect("cache");
        let minute = Duration::from_secs(60);
        store(&cache, "k", "v", 5, None, None).await.expect("store");
        assert_eq!(
            settle(&cache, "k", 4, Some(minute)).await.ok(),
            Some(Settled::Newer)
        );
        assert_eq!(
            settle(&cache, "k", 5, Some(minute)).await.ok(),
            Some(Settled::Kept)
        );
        cache.set("k", "filled", minute).await.expect("set");
        assert_eq!(
            settle(&cache, "k", 5, Some(minute)).await.ok(),
            Some(Settled::Removed)
        );
        assert_eq!(cache.get::<String>("k").await.ok().flatten(), None);
        store(&cache, "k", "w", 6, None, None).await.expect("store");
        assert_eq!(
            settle(&cache, "k", 6, None).await.ok(),
            Some(Settled::Removed)
        );
        assert_eq!(cache.get::<String>("k").await.ok().flatten(), None);
        let seen = peek::<String>(&cache, "k").await.expect("peek");
        assert_eq!((seen.value, seen.version), (None, Some(6)));
        assert_eq!(
            store(&cache, "k", "x", 7, Some(minute), Some(5)).await.ok(),
            Some(Stored::Conflict)
        );
    }
}
