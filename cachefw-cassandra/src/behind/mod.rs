//! Write-behind (`#[entity(write = "behind")]`): saves and patches go to
//! Redis, as the cache entry and as a record in a Redis Stream, and
//! flushers write them to Cassandra later.
//!
//! Durability: a write is acknowledged once Redis holds it, so it is as
//! durable as that Redis. With AOF and `appendfsync everysec`, a crash of
//! Redis loses up to about a second of acknowledged writes; without
//! persistence, a restart loses every write not flushed yet. A replica
//! that takes over after a failover has what reached it. Only writes that
//! fall back to Cassandra (Redis unavailable, the stream full) are as
//! durable as Cassandra when the call returns.

mod flusher;
mod record;
mod stream;

use std::time::Duration;

pub(crate) use flusher::Flusher;
pub(crate) use record::{patch as patch_record, save as save_record};
pub(crate) use stream::{CAPACITY, Stream, StreamError};

use crate::clock;

/// The write-behind backlog of a table: what
/// [`Repository::backlog`](crate::Repository::backlog) reports.
///
/// ```
/// let idle = cachefw_cassandra::Backlog::default();
/// assert_eq!((idle.pending, idle.oldest), (0, None));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backlog {
    /// Records not written to Cassandra yet (saves and patches).
    pub pending: u64,
    /// How long ago the oldest of them was written (`None` when none).
    pub oldest: Option<Duration>,
}

/// How long ago a write with timestamp `at` (µs) happened.
pub(crate) fn age(at: Option<i64>) -> Option<Duration> {
    at.map(|at| {
        let micros = clock::now().saturating_sub(at);
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    })
}

/// Sets the backlog gauges of `table`.
pub(crate) fn publish(table: &'static str, pending: u64, oldest: Option<Duration>) {
    // Gauges are floats: exact up to 2^53 records.
    let pending = pending as f64;
    metrics::gauge!("cachefw_writebehind_pending", "table" => table).set(pending);
    metrics::gauge!("cachefw_writebehind_oldest_seconds", "table" => table)
        .set(oldest.map_or(0.0, |oldest| oldest.as_secs_f64()));
}
