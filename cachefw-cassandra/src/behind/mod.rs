//! Write-behind (`#[entity(write = "behind")]`): saves and patches go to
//! Redis, as the cache entry and as a record in a Redis Stream, and
//! flushers write them to Cassandra later.
//!
//! Durability: a write is acknowledged once Redis holds it, so it is as
//! durable as that Redis. With AOF and `appendfsync everysec`, a crash of
//! Redis loses up to about a second of acknowledged writes; without
//! persistence, a restart loses every write not flushed yet. A replica
//! that takes over after a failover has what reached it. Redis must not
//! evict keys that have no expiry (`maxmemory-policy` `noeviction` or
//! `volatile-*`): the stream, the pending entries and their version
//! records have none ([`check_eviction_policy`]). Only writes that fall
//! back to Cassandra (Redis unavailable, the stream full) are as durable
//! as Cassandra when the call returns. Once Redis holds a write, whatever
//! Cassandra answers, it is retried until written, or until refused for
//! `dead_letter_after` (then a dead letter, kept until replayed).

pub(crate) mod columns;
mod flusher;
pub(crate) mod policy;
pub(crate) mod record;
pub(crate) mod stream;

use std::sync::Arc;
use std::time::Duration;

use cachefw::Cache;

use crate::clock;
use crate::entity::Entity;
use crate::table::Table;
use flusher::Flusher;
use stream::{Stream, StreamError};

/// How long a record may be refused by Cassandra before it goes to the
/// dead-letter stream, unless set with
/// [`Repository::dead_letter_after`](crate::Repository::dead_letter_after).
///
/// ```
/// assert_eq!(cachefw_cassandra::DEFAULT_DEAD_LETTER_AFTER.as_secs(), 24 * 3600);
/// ```
pub const DEFAULT_DEAD_LETTER_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The write-behind backlog of a table: what
/// [`Repository::backlog`](crate::Repository::backlog) reports.
///
/// ```
/// let idle = cachefw_cassandra::Backlog::default();
/// assert_eq!((idle.pending, idle.oldest, idle.dead), (0, None, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backlog {
    /// Records not written to Cassandra yet (saves and patches), dead
    /// letters excluded.
    pub pending: u64,
    /// How long ago the oldest of them was written (`None` when none).
    pub oldest: Option<Duration>,
    /// Records in the dead-letter stream `{namespace}:wb:{table}:dead`:
    /// refused by Cassandra for `dead_letter_after`, kept until
    /// [`Repository::replay_dead`](crate::Repository::replay_dead).
    pub dead: u64,
}

/// Starts a flusher of `T`'s stream (see `Repository::spawn_flusher`).
pub(crate) fn spawn_flusher<T: Entity>(
    table: Arc<Table<T>>,
    cache: &Cache,
    stream: &Stream,
    claim_idle: Duration,
    dead_after: Duration,
) -> tokio::task::JoinHandle<()> {
    if cache.backend_name() != "redis" {
        return tokio::spawn(async {});
    }
    let flusher = Flusher::new(table, cache.clone(), stream.clone(), claim_idle, dead_after);
    tokio::spawn(flusher.run())
}

/// The backlog of `T`'s stream, also published as gauges.
pub(crate) async fn backlog<T: Entity>(
    cache: &Cache,
    stream: &Stream,
) -> Result<Backlog, StreamError> {
    if cache.backend_name() != "redis" {
        return Ok(Backlog::default());
    }
    let (pending, oldest) = stream.backlog().await?;
    let dead = stream.dead_len().await?;
    let backlog = Backlog {
        pending,
        oldest: age(oldest),
        dead,
    };
    publish(T::TABLE, backlog.pending, backlog.oldest, backlog.dead);
    Ok(backlog)
}

/// Moves the dead letters of `stream` back into it (see
/// `Repository::replay_dead`); 0 over an in-memory cache.
pub(crate) async fn replay_dead(cache: &Cache, stream: &Stream) -> Result<u64, StreamError> {
    if cache.backend_name() != "redis" {
        return Ok(0);
    }
    stream.replay_dead().await
}

/// How long ago a write with timestamp `at` (µs) happened.
pub(crate) fn age(at: Option<i64>) -> Option<Duration> {
    at.map(|at| {
        let micros = clock::now().saturating_sub(at);
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    })
}

/// Sets the backlog gauges of `table`.
pub(crate) fn publish(table: &'static str, pending: u64, oldest: Option<Duration>, dead: u64) {
    // Gauges are floats: exact up to 2^53 records.
    metrics::gauge!("cachefw_writebehind_pending", "table" => table).set(pending as f64);
    metrics::gauge!("cachefw_writebehind_oldest_seconds", "table" => table)
        .set(oldest.map_or(0.0, |oldest| oldest.as_secs_f64()));
    metrics::gauge!("cachefw_writebehind_dead", "table" => table).set(dead as f64);
}
