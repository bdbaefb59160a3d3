//! Stream followers: evictions published on a Redis Stream by other
//! writers (a batch job, another service, a change-data-capture pipeline),
//! applied to this cache.
//!
//! One loop serves every format: [`Cache::follow_evictions`] reads entries
//! of `key`, `prefix` or `tag` fields, and `cachefw-cassandra`'s
//! `Repository::follow_changes` reads Debezium Server's entries through the
//! same loop with its own reading of an entry ([`spawn`]).
//!
//! The loop reads with a consumer group, so any number of processes share
//! a stream, each entry going to one of them:
//!
//! - `XGROUP CREATE … 0 MKSTREAM` once (the group starts at the stream's
//!   first entry: an eviction applied twice costs a miss, one skipped a
//!   stale read);
//! - `XREADGROUP … COUNT 256 STREAMS key >`, polled: every 50 ms
//!   while the stream is quiet, at once while it has entries. Not
//!   `BLOCK`: the follower shares the cache's multiplexed connection, where
//!   a blocked read would hold up every command behind it;
//! - every second, `XAUTOCLAIM` of entries left unacknowledged for
//!   5 s (their consumer died, or could not apply them);
//! - `XACK` of what was applied, journaled (Redis refused the eviction: the
//!   cache replays it, and reads of its key bypass Redis until then), or
//!   unreadable (logged at most once a second, counted in
//!   [`Stats::errors`](crate::Stats::errors)). An entry not applied stays
//!   pending and is claimed again later.
//!
//! A Redis fault (down, frozen, a failover) pauses the loop with a growing
//! backoff, up to 5 s; a group lost with Redis's data is made
//! again. The loop ends when the handle is aborted, when
//! [`Cache::shutdown`](crate::Cache::shutdown) is called, or when the last
//! handle on the cache is dropped: it holds none between two reads.
//!
//! Guarantees: at least once. Entries published while no follower runs
//! wait in the stream (and in the group, which remembers where it stopped)
//! and are applied when one starts again; until then the cached entries
//! they name stay as they were, up to their TTL. A stream trimmed
//! (`MAXLEN`) past entries the group never read loses those evictions.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::cache::{Cache, Handle};
use crate::error::Error;

/// Entries read at once.
pub(crate) const BATCH: usize = 256;
/// How long a quiet stream is left before it is read again.
pub(crate) const IDLE_POLL: Duration = Duration::from_millis(50);
/// How often entries left pending are looked for.
pub(crate) const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// How long an entry stays unacknowledged before another consumer takes
/// it over.
pub(crate) const CLAIM_IDLE: Duration = Duration::from_secs(5);
/// The longest pause after Redis failed.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The first pause after Redis failed.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// One eviction to publish on a stream that [`Cache::follow_evictions`]
/// follows.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Eviction {
    /// A rendered key (no namespace or version): applied as
    /// [`Cache::delete`].
    Key(String),
    /// A rendered key prefix: applied as [`Cache::evict_prefix`].
    Prefix(String),
    /// A tag: applied as `Cache::evict_tag`.
    Tag(String),
}

impl Eviction {
    /// The entry's field name: `key`, `prefix` or `tag`.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            Self::Key(_) => "key",
            Self::Prefix(_) => "prefix",
            Self::Tag(_) => "tag",
        }
    }

    /// The key, prefix or tag.
    #[must_use]
    pub fn value(&self) -> &str {
        match self {
            Self::Key(value) | Self::Prefix(value) | Self::Tag(value) => value,
        }
    }
}

/// Publishes `eviction` on `stream` (a literal Redis key, on the cache's
/// Redis) for the followers of that stream ([`Cache::follow_evictions`],
/// in this process or any other); the new entry's id.
///
/// This is the writer's side, for writers that are Rust programs; any other
/// writer adds the same entry itself: `XADD {stream} * key {rendered key}`
/// (or `prefix …`, `tag …`).
///
/// ```no_run
/// use cachefw::follow::{Eviction, publish_eviction};
/// # async fn demo(cache: cachefw::Cache) -> Result<(), cachefw::Error> {
/// publish_eviction(&cache, "cdc:evictions", &Eviction::Key("user:42".into())).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::Config`] on an in-memory cache (no stream to publish on);
/// otherwise a Redis failure ([`Error::Redis`], [`Error::Timeout`],
/// [`Error::Unavailable`]): the entry was then perhaps not published.
pub async fn publish_eviction(
    cache: &Cache,
    stream: &str,
    eviction: &Eviction,
) -> Result<String, Error> {
    #[cfg(feature = "redis")]
    if cache.backend_name() == "redis" {
        let mut add = redis::cmd("XADD");
        add.arg(stream)
            .arg("*")
            .arg(eviction.field())
            .arg(eviction.value());
        let reply = crate::command::run(cache, "XADD", stream, &add).await?;
        return Ok(reading::text(&reply).unwrap_or_default());
    }
    let _ = (stream, eviction);
    Err(no_streams(cache, "follow::publish_eviction"))
}

/// The typed error of a stream operation on a cache without Redis.
fn no_streams(cache: &Cache, setting: &'static str) -> Error {
    Error::Config {
        setting,
        reason: format!(
            "streams live in Redis, and this cache is {}: build it with .redis(url)",
            cache.backend_name()
        ),
    }
}

/// What became of one entry.
#[doc(hidden)]
#[derive(Debug)]
pub enum Verdict {
    /// Applied, or journaled for the replay: acknowledged.
    Applied,
    /// Not an entry the follower can read (why): logged, counted,
    /// acknowledged.
    Unreadable(String),
    /// Not applied now: left pending, to be claimed again.
    Retry,
}

/// The fields of one stream entry.
#[doc(hidden)]
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Applies one entry to the cache.
#[doc(hidden)]
pub type Apply =
    Arc<dyn Fn(Cache, Fields) -> Pin<Box<dyn Future<Output = Verdict> + Send>> + Send + Sync>;

impl Cache {
    /// Follows `stream` (a literal Redis key on this cache's Redis) as a
    /// member of the consumer group `group`, applying each entry's `key`,
    /// `prefix` or `tag` field as [`delete`](Self::delete),
    /// [`evict_prefix`](Self::evict_prefix) or `evict_tag`. Writers publish
    /// with [`follow::publish_eviction`](crate::follow::publish_eviction)
    /// or `XADD {stream} * key {rendered key}`.
    ///
    /// Evictions void outstanding leases, as every eviction does: a load
    /// that began before cannot fill afterwards. Entries are acknowledged
    /// once applied or journaled; an entry without one of those fields, or
    /// not UTF-8, is logged, counted in [`Stats::errors`](crate::Stats::errors)
    /// and acknowledged. See the module [`follow`](crate::follow) for the
    /// loop and its guarantees (at least once; entries published while no
    /// follower runs are applied when one starts).
    ///
    /// ```no_run
    /// # async fn demo(cache: cachefw::Cache) -> Result<(), cachefw::Error> {
    /// let follower = cache.follow_evictions("cdc:evictions", "cachefw").await?;
    /// // … until the process ends, or:
    /// follower.abort();
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] on an in-memory cache, or when `stream` holds
    /// something other than a stream; a Redis that is down does not fail
    /// the call (the follower starts once it answers).
    pub async fn follow_evictions(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<tokio::task::JoinHandle<()>, Error> {
        let apply: Apply = Arc::new(|cache, fields| Box::pin(apply_eviction(cache, fields)));
        spawn(self, stream, group, apply).await
    }
}

/// Starts a follower of `stream` in `group` that hands each entry to
/// `apply`. The group is made first: an error other than an outage is
/// returned.
#[doc(hidden)]
pub async fn spawn(
    cache: &Cache,
    stream: &str,
    group: &str,
    apply: Apply,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    #[cfg(feature = "redis")]
    if cache.backend_name() == "redis" {
        let group_made = match reading::create_group(cache, stream, group).await {
            Ok(()) => true,
            Err(error) if error.is_outage() => false,
            Err(error) => {
                return Err(Error::Config {
                    setting: "follow",
                    reason: format!(
                        "cannot follow the stream {stream:?} in group {group:?}: {error}"
                    ),
                });
            }
        };
        let follower = reading::Follower {
            handle: Arc::downgrade(cache.handle()),
            closing: cache.closing(),
            stream: stream.to_owned(),
            group: group.to_owned(),
            consumer: consumer_name(),
            apply,
            group_made,
        };
        return Ok(tokio::spawn(follower.run()));
    }
    let _ = (stream, group, apply);
    Err(no_streams(cache, "follow"))
}

/// A name no other follower has: host-free, process id and a random part,
/// so a restarted process never inherits a dead one's identity (its
/// pending entries are claimed instead).
fn consumer_name() -> String {
    format!("cachefw-{}-{:016x}", std::process::id(), random_u64())
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// Applies an entry of [`Cache::follow_evictions`]'s format.
async fn apply_eviction(cache: Cache, fields: Fields) -> Verdict {
    let mut evictions = Vec::new();
    for (name, value) in &fields {
        let Ok(value) = std::str::from_utf8(value) else {
            return Verdict::Unreadable("a value is not UTF-8".to_owned());
        };
        evictions.push(match name.as_slice() {
            b"key" => Eviction::Key(value.to_owned()),
            b"prefix" => Eviction::Prefix(value.to_owned()),
            b"tag" => Eviction::Tag(value.to_owned()),
            // Writers may add their own fields (a reason, a source).
            _ => continue,
        });
    }
    if evictions.is_empty() {
        return Verdict::Unreadable("no `key`, `prefix` or `tag` field".to_owned());
    }
    let verdict = Verdict::Applied;
    for eviction in &evictions {
        let result = match eviction {
            Eviction::Key(key) => cache.delete(key).await.map(drop),
            Eviction::Prefix(prefix) => cache.evict_prefix(prefix).await.map(drop),
            Eviction::Tag(tag) => cache.evict_tag(tag).await,
        };
        match result {
            // A backend failure left the eviction in the journal, which
            // replays it: as good as applied for the stream.
            Ok(()) => {}
            Err(error) if error.is_backend_failure() => {}
            Err(error) => return Verdict::Unreadable(error.to_string()),
        }
    }
    verdict
}

/// The pause after `failures` failures in a row.
pub(crate) fn backoff(failures: u32) -> Duration {
    MIN_BACKOFF
        .saturating_mul(1 << failures.min(10))
        .min(MAX_BACKOFF)
}

/// The cache behind a follower, if any handle on it is left.
pub(crate) fn upgrade(handle: &Weak<Handle>) -> Option<Cache> {
    handle.upgrade().map(Cache::from_handle)
}

#[cfg(feature = "redis")]
mod reading;
