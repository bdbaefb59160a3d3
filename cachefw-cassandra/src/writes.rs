//! How a `save`, `patch` or `delete` reaches Cassandra and the cache, for
//! each [`WriteMode`](crate::WriteMode).
//!
//! - Invalidate: Cassandra, then the entries are evicted.
//! - Through: Cassandra with the call's timestamp, then the row is stored
//!   as that version of its entry (over any reader's lease; dropped if a
//!   newer save is stored). A delete or patch records its version as it
//!   evicts, so that an older save still in flight does not store after
//!   it; a patch then reads the row back through the cache.
//! - Behind: the record is appended to the stream first (on a Redis
//!   Cluster the stream and the entry may live on different nodes), then
//!   the row is stored as its version, with no expiry until a flusher
//!   settles it. When Redis cannot take the record, the write goes to
//!   Cassandra at once, with its timestamp. Within a process a row's
//!   writes take their timestamp and reach the cache one at a time
//!   ([`RowLocks`]), so a patch applied to the cached row never lands
//!   before an older write of it; one that meets a newer write from
//!   another process evicts the entry instead. A delete goes to Cassandra at
//!   once, with its timestamp, so an older save still in the stream cannot
//!   bring the row back.
//!
//! Every write holds an [`Eviction`] of its entries from before it is sent:
//! a caller cut off at any await leaves them evicted, never stale.

use cachefw::__private::versioned::{self, Peeked, Stored};
use cachefw::Cache;

use crate::behind::{self, Stream};
use crate::clock;
use crate::entity::Entity;
use crate::error::Error;
use crate::evict::Eviction;
use crate::outcome::Outcome;
use crate::rows::RowLocks;
use crate::table::{Failed, Table};

/// How many times a write-behind patch retries its read-modify-write of
/// the cached row when another write lands in between.
const PATCH_ATTEMPTS: u32 = 3;

/// A table and its cache, as the writes need them.
pub(crate) struct Writes<'a, T: Entity> {
    pub(crate) table: &'a Table<T>,
    pub(crate) cache: &'a Cache,
    pub(crate) rows: &'a RowLocks,
}

/// The row's entry and the partition's, each evicted unless disarmed.
struct Guards {
    row: Eviction,
    partition: Eviction,
}

impl Guards {
    /// Cassandra failed: evict unless it refused the write.
    async fn failed(self, outcome: Outcome) {
        for eviction in [self.row, self.partition] {
            match outcome {
                Outcome::Refused => eviction.disarm(),
                Outcome::Unknown => eviction.run_unsettled().await,
            }
        }
    }
}

impl<T: Entity> Writes<'_, T> {
    fn guards(&self, key: &T::Key) -> Guards {
        let partition = T::CACHE_PARTITIONS
            .then(|| T::partition_cache_key(&T::partition_of(key)))
            .into_iter()
            .collect();
        Guards {
            row: Eviction::new(self.cache, vec![T::cache_key(key)]),
            partition: Eviction::new(self.cache, partition),
        }
    }

    /// Runs `write`, then evicts the row's entries unless Cassandra refused
    /// it (invalidate on write).
    async fn invalidating(
        &self,
        key: &T::Key,
        write: impl Future<Output = Result<(), Failed>>,
    ) -> Result<(), Error> {
        let guards = self.guards(key);
        match write.await {
            Ok(()) => {
                guards.row.run().await;
                guards.partition.run().await;
                Ok(())
            }
            Err(failed) => {
                guards.failed(failed.outcome).await;
                Err(failed.error)
            }
        }
    }

    pub(crate) async fn save_invalidating(&self, row: &T) -> Result<(), Error> {
        self.invalidating(&row.key(), self.table.insert_at(row, None))
            .await
    }

    pub(crate) async fn patch_invalidating(
        &self,
        key: &T::Key,
        patch: &T::Patch,
    ) -> Result<(), Error> {
        self.invalidating(key, self.table.update_at(key, patch, None))
            .await
    }

    pub(crate) async fn delete_invalidating(&self, key: &T::Key) -> Result<(), Error> {
        self.invalidating(key, self.table.delete_at(key, None))
            .await
    }

    /// Write-through: Cassandra at `at`, then the row stored as version
    /// `at`.
    pub(crate) async fn save_through(&self, row: &T) -> Result<(), Error> {
        let at = clock::now();
        let key = row.key();
        let guards = self.guards(&key);
        if let Err(failed) = self.table.insert_at(row, Some(at)).await {
            guards.failed(failed.outcome).await;
            return Err(failed.error);
        }
        let stored = versioned::store(
            self.cache,
            &T::cache_key(&key),
            row,
            clock::version(at),
            Some(T::TTL),
            None,
        )
        .await;
        match stored {
            Ok(_) => guards.row.disarm(),
            Err(error) => {
                tracing::debug!(%error, "cachefw-cassandra: a saved row was evicted, not stored");
                guards.row.run().await;
            }
        }
        guards.partition.run().await;
        Ok(())
    }

    /// A delete or patch already in Cassandra at `at`: the entry goes, and
    /// version `at` stays recorded. With `keep_newer`, a newer version's
    /// own write stays (a save, which set every column after `at`).
    async fn evict_version(&self, key: &T::Key, at: i64, guards: Guards, keep_newer: bool) {
        let evicted =
            versioned::evict(self.cache, &T::cache_key(key), clock::version(at), T::TTL).await;
        match evicted {
            Ok(true) => guards.row.disarm(),
            Ok(false) if keep_newer => guards.row.disarm(),
            // Kept a newer write that may not cover this one (a write-behind
            // patch read-modify-written over an older row), or failed: the
            // plain eviction, replayed if need be.
            Ok(false) | Err(_) => guards.row.run().await,
        }
        guards.partition.run().await;
    }

    pub(crate) async fn delete_through(&self, key: &T::Key) -> Result<(), Error> {
        let at = clock::now();
        let guards = self.guards(key);
        if let Err(failed) = self.table.delete_at(key, Some(at)).await {
            guards.failed(failed.outcome).await;
            return Err(failed.error);
        }
        self.evict_version(key, at, guards, true).await;
        Ok(())
    }

    /// The patch in Cassandra at `at`; the entry evicted with version `at`.
    /// The caller reads the row back.
    pub(crate) async fn patch_through(&self, key: &T::Key, patch: &T::Patch) -> Result<(), Error> {
        let at = clock::now();
        let guards = self.guards(key);
        if let Err(failed) = self.table.update_at(key, patch, Some(at)).await {
            guards.failed(failed.outcome).await;
            return Err(failed.error);
        }
        self.evict_version(key, at, guards, true).await;
        Ok(())
    }

    /// Write-behind: the record, then the entry (no expiry until flushed);
    /// Cassandra directly when Redis does not take the record.
    pub(crate) async fn save_behind(&self, stream: &Stream, row: &T) -> Result<(), Error> {
        let key = row.key();
        let _turn = self.rows.lock(&T::cache_key(&key)).await;
        let at = clock::now();
        let appended = match behind::save_record(row, at) {
            Ok(fields) => stream.append(&fields).await,
            Err(reason) => Err(behind::StreamError::Encode(reason)),
        };
        let guards = self.guards(&key);
        match appended {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!(
                    table = T::TABLE,
                    capacity = behind::CAPACITY,
                    "cachefw-cassandra: the write-behind stream is full; saving to Cassandra"
                );
                return self
                    .direct(guards, self.table.insert_at(row, Some(at)))
                    .await;
            }
            Err(error) => {
                tracing::debug!(%error, "cachefw-cassandra: write-behind save goes to Cassandra");
                return self
                    .direct(guards, self.table.insert_at(row, Some(at)))
                    .await;
            }
        }
        let stored = versioned::store(
            self.cache,
            &T::cache_key(&key),
            row,
            clock::version(at),
            None,
            None,
        )
        .await;
        match stored {
            Ok(_) => guards.row.disarm(),
            // Redis holds the record but not the entry, which may hold an
            // older row: the row goes to Cassandra now too (the flush writes
            // it again, at the same timestamp), and the entry is evicted.
            Err(error) => {
                tracing::debug!(%error, "cachefw-cassandra: write-behind entry not stored");
                // Acknowledged by Redis already: a failure here is the flush's.
                let _ = self
                    .direct(guards, self.table.insert_at(row, Some(at)))
                    .await;
                return Ok(());
            }
        }
        guards.partition.run().await;
        Ok(())
    }

    /// A write-behind patch: the record, then the cached row patched in
    /// place (read-modify-write on its version), or evicted when it is not
    /// cached as its own version's write.
    pub(crate) async fn patch_behind(
        &self,
        stream: &Stream,
        key: &T::Key,
        patch: &T::Patch,
    ) -> Result<(), Error> {
        let _turn = self.rows.lock(&T::cache_key(key)).await;
        let at = clock::now();
        let appended = match behind::patch_record::<T>(key, patch, at) {
            Ok(fields) => stream.append(&fields).await,
            Err(reason) => Err(behind::StreamError::Encode(reason)),
        };
        let guards = self.guards(key);
        if !matches!(appended, Ok(Some(_))) {
            return self
                .direct(guards, self.table.update_at(key, patch, Some(at)))
                .await;
        }
        let entry = T::cache_key(key);
        let version = clock::version(at);
        for _ in 0..PATCH_ATTEMPTS {
            let peeked = versioned::peek::<T>(self.cache, &entry).await;
            let (mut row, seen) = match peeked {
                Ok(Peeked {
                    value: Some(row),
                    version: Some(seen),
                }) if seen < version => (row, seen),
                // Not cached as a write of its own, or newer than this
                // patch: see `evict_version`.
                Ok(Peeked { version: seen, .. }) => {
                    let newer = seen.is_some_and(|seen| seen > version);
                    if newer {
                        guards.row.run().await;
                        guards.partition.run().await;
                    } else {
                        self.evict_version(key, at, guards, false).await;
                    }
                    return Ok(());
                }
                Err(_) => break,
            };
            row.apply(patch);
            match versioned::store(self.cache, &entry, &row, version, None, Some(seen)).await {
                Ok(Stored::Stored) => {
                    guards.row.disarm();
                    guards.partition.run().await;
                    return Ok(());
                }
                Ok(Stored::Conflict) => {}
                Ok(_) | Err(_) => break,
            }
        }
        // The record is in the stream: the flush brings the patch, and
        // until then the row is read from Cassandra.
        guards.row.run().await;
        guards.partition.run().await;
        Ok(())
    }

    /// Write-behind delete: Cassandra at once, with its timestamp.
    pub(crate) async fn delete_behind(&self, key: &T::Key) -> Result<(), Error> {
        let _turn = self.rows.lock(&T::cache_key(key)).await;
        let at = clock::now();
        let guards = self.guards(key);
        if let Err(failed) = self.table.delete_at(key, Some(at)).await {
            guards.failed(failed.outcome).await;
            return Err(failed.error);
        }
        self.evict_version(key, at, guards, false).await;
        Ok(())
    }

    /// A write-behind write that goes to Cassandra now, then evicts.
    async fn direct(
        &self,
        guards: Guards,
        write: impl Future<Output = Result<(), Failed>>,
    ) -> Result<(), Error> {
        match write.await {
            Ok(()) => {
                guards.row.run().await;
                guards.partition.run().await;
                Ok(())
            }
            Err(failed) => {
                guards.failed(failed.outcome).await;
                Err(failed.error)
            }
        }
    }
}
