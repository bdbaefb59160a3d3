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
//! Outside the stream, in every mode: a batch (`save_all`) and a TTL save
//! go to Cassandra with the call's timestamp (none with invalidation); then
//! a batch's rows are stored as that version and a TTL save evicts
//! recording it. An `INSERT … IF NOT EXISTS` changes the cache only when
//! applied. An increment of a counter evicts, in every mode.
//!
//! Every write holds an [`Eviction`] of its entries from before it is sent:
//! a caller cut off at any await leaves them evicted, never stale.

use std::collections::HashMap;
use std::time::Duration;

use cachefw::__adapter::versioned::{self, Peeked, Stored};
use cachefw::Cache;
use futures_util::StreamExt;
use scylla::statement::prepared::PreparedStatement;

use crate::behind::columns::Schema;
use crate::behind::record::{Fields, patch as patch_record, save as save_record};
use crate::behind::stream::{CAPACITY, Stream, StreamError};
use crate::clock;
use crate::entity::{Entity, WriteMode};
use crate::error::Error;
use crate::evict::Eviction;
use crate::outcome::Effect;
use crate::rows::RowLocks;
use crate::table::{Failed, Table};

/// How many times a write-behind patch retries its read-modify-write of
/// the cached row when another write lands in between.
const PATCH_ATTEMPTS: u32 = 3;

/// How many rows of a batch are stored in the cache at once.
const STORE_CONCURRENCY: usize = 32;

/// A table and its cache, as the writes need them.
pub(crate) struct Writes<'a, T: Entity> {
    pub(crate) table: &'a Table<T>,
    pub(crate) cache: &'a Cache,
    pub(crate) rows: &'a RowLocks,
}

/// The row's entry and the partition's, each evicted unless disarmed
/// (both layouts' writes).
pub(crate) struct Guards {
    pub(crate) row: Eviction,
    pub(crate) partition: Eviction,
}

impl Guards {
    /// Cassandra failed: evict unless it refused the write.
    pub(crate) async fn failed(self, outcome: Effect) {
        for eviction in [self.row, self.partition] {
            match outcome {
                Effect::Refused => eviction.disarm(),
                Effect::Unknown => eviction.run_unsettled().await,
            }
        }
    }
}

impl<T: Entity> Writes<'_, T> {
    fn guards(&self, key: &T::Key) -> Guards {
        self.guards_of(std::slice::from_ref(key))
    }

    /// The entries of the rows with `keys`, and of their partitions.
    fn guards_of(&self, keys: &[T::Key]) -> Guards {
        let partitions = keys
            .iter()
            .filter(|_| T::CACHE_PARTITIONS)
            .map(|key| T::partition_cache_key(&T::partition_of(key)))
            .collect();
        Guards {
            row: Eviction::new(self.cache, keys.iter().map(T::cache_key).collect()),
            partition: Eviction::new(self.cache, partitions),
        }
    }

    /// The timestamp of a write that goes to Cassandra outside the stream
    /// (a TTL save, a batch): none with invalidation, where the server's
    /// clock serves; the call's otherwise, so that it orders against the
    /// cached versions and the stream's records.
    fn stamp() -> Option<i64> {
        (T::WRITE != WriteMode::Invalidate).then(clock::now)
    }

    /// Rows written to Cassandra at `at` outside the stream, now stored as
    /// version `at` of their entries, each unless a newer write is stored.
    /// With write-behind a newer entry may be a patch applied to a row
    /// older than this one (another process's): then the entry is evicted
    /// instead, and the row read from Cassandra until the patch is flushed.
    /// `evict` lists entries to evict rather than store.
    async fn store_written<'r>(
        &self,
        rows: impl Iterator<Item = (&'r T, &'r T::Key)>,
        at: i64,
        guards: Guards,
        mut evict: Vec<String>,
    ) {
        let version = clock::version(at);
        // A loop, not a closure: a closure's future would not be `Send` for
        // every lifetime of the row it borrows.
        let mut stores = Vec::new();
        for (row, key) in rows {
            stores.push(self.store_one(row, key, version));
        }
        let not_stored: Vec<String> = futures_util::stream::iter(stores)
            .buffer_unordered(STORE_CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await;
        evict.extend(not_stored);
        Eviction::new(self.cache, evict).run().await;
        guards.row.disarm();
        guards.partition.run().await;
    }

    /// Stores `row` as `version`; the entry to evict instead, if any.
    async fn store_one(&self, row: &T, key: &T::Key, version: u64) -> Option<String> {
        let entry = T::cache_key(key);
        let stored = versioned::store(self.cache, &entry, row, version, Some(T::TTL), None).await;
        let kept = match stored {
            Ok(Stored::Stored) => true,
            // With write-through a newer entry is a whole row (a save), or
            // nothing (a delete or patch, which evict).
            Ok(_) => T::WRITE == WriteMode::Through,
            Err(error) => {
                tracing::debug!(%error, "cachefw-cassandra: a written row was evicted, not stored");
                false
            }
        };
        (!kept).then_some(entry)
    }

    /// Every row of `entities`, in logged batches of `batch_rows` rows, one
    /// after the other (see `Repository::save_all`); stops at the first
    /// batch that fails.
    pub(crate) async fn save_all(&self, entities: &[T], batch_rows: usize) -> Result<(), Error> {
        let mut start = 0;
        for chunk in entities.chunks(batch_rows) {
            let end = start + chunk.len();
            let label =
                |cql: &str| format!("BATCH of rows {start}..{end} of {}: {cql}", entities.len());
            self.save_batch(chunk, label).await?;
            start = end;
        }
        Ok(())
    }

    /// One logged batch of `rows` (see `Repository::save_all`): with
    /// invalidation the entries are evicted; otherwise the batch carries
    /// the call's timestamp and its rows are stored as that version.
    async fn save_batch(
        &self,
        rows: &[T],
        label: impl FnOnce(&str) -> String,
    ) -> Result<(), Error> {
        let keys: Vec<T::Key> = rows.iter().map(Entity::key).collect();
        let guards = self.guards_of(&keys);
        let at = Self::stamp();
        if let Err(failed) = self.table.insert_batch_at(rows, at, label).await {
            guards.failed(failed.outcome).await;
            return Err(failed.error);
        }
        let Some(at) = at else {
            guards.row.run().await;
            guards.partition.run().await;
            return Ok(());
        };
        // Two rows of one key in a batch share its timestamp, and Cassandra
        // breaks that tie by comparing values: which one it kept is not
        // known here, so that entry is evicted.
        let entries: Vec<String> = keys.iter().map(T::cache_key).collect();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for entry in &entries {
            *seen.entry(entry).or_default() += 1;
        }
        let once = |entry: &String| seen.get(entry.as_str()) == Some(&1);
        let stored = rows
            .iter()
            .zip(&keys)
            .zip(&entries)
            .filter(|(_, entry)| once(entry))
            .map(|(row, _)| row);
        let repeated: Vec<String> = entries.iter().filter(|e| !once(e)).cloned().collect();
        self.store_written(stored, at, guards, repeated).await;
        Ok(())
    }

    /// `row` written with `USING TTL` (`statement`, `ttl` in whole seconds,
    /// rounded up), then its entry evicted: a later read caches it no
    /// longer than it lives. With write-through and write-behind the write
    /// carries the call's timestamp and the eviction records it, so an
    /// older save still on its way does not store its row afterwards.
    pub(crate) async fn save_with_ttl(
        &self,
        statement: &PreparedStatement,
        row: &T,
        ttl: Duration,
    ) -> Result<(), Error> {
        let key = row.key();
        let _turn = self.turn(&key).await;
        let at = Self::stamp();
        let guards = self.guards(&key);
        let written = self.table.insert_with_ttl_at(statement, row, ttl, at).await;
        if let Err(failed) = written {
            guards.failed(failed.outcome).await;
            return Err(failed.error);
        }
        match at {
            None => {
                guards.row.run().await;
                guards.partition.run().await;
            }
            // See `evict_version` for why write-behind keeps no newer entry.
            Some(at) => {
                let keep_newer = T::WRITE == WriteMode::Through;
                self.evict_version(&key, at, guards, keep_newer).await;
            }
        }
        Ok(())
    }

    /// `INSERT … IF NOT EXISTS`: the cache changes only when the row was
    /// written. Applied, the row's entry is evicted (invalidate) or stored
    /// as a version taken before the request (through, behind; the write
    /// itself carries the coordinator's later timestamp). Not applied, the
    /// entries stay: the row is as it was. Answered without `[applied]`,
    /// or not at all, the row may be new: evicted.
    ///
    /// With write-behind, a row whose cached entry holds a write of its
    /// own (a save waiting in the stream, or flushed) exists: the answer is
    /// `false` without asking Cassandra, whose condition cannot see a
    /// record not flushed yet.
    pub(crate) async fn insert_if_not_exists(&self, row: &T) -> Result<bool, Error> {
        let key = row.key();
        let _turn = self.turn(&key).await;
        if T::WRITE == WriteMode::Behind && self.holds_own_write(&key).await {
            return Ok(false);
        }
        let at = clock::now();
        let guards = self.guards(&key);
        match self.table.insert_if_not_exists(row).await {
            Ok(false) => {
                guards.row.disarm();
                guards.partition.disarm();
                Ok(false)
            }
            Ok(true) => {
                if T::WRITE == WriteMode::Invalidate {
                    guards.row.run().await;
                    guards.partition.run().await;
                } else {
                    self.store_written(std::iter::once((row, &key)), at, guards, Vec::new())
                        .await;
                }
                Ok(true)
            }
            Err(failed) => {
                guards.failed(failed.outcome).await;
                Err(failed.error)
            }
        }
    }

    /// Whether the row's entry holds a write of its own (not a fill).
    async fn holds_own_write(&self, key: &T::Key) -> bool {
        let peeked = versioned::peek::<T>(self.cache, &T::cache_key(key)).await;
        matches!(
            peeked,
            Ok(Peeked {
                value: Some(_),
                version: Some(_),
            })
        )
    }

    /// The row's turn among this process's write-behind writes of it (see
    /// [`RowLocks`]); no wait in the other modes, whose writes order by
    /// their versions alone.
    async fn turn(&self, key: &T::Key) -> Option<crate::rows::RowLock<'_>> {
        match T::WRITE {
            WriteMode::Behind => Some(self.rows.lock(&T::cache_key(key)).await),
            WriteMode::Invalidate | WriteMode::Through => None,
        }
    }

    /// `UPDATE … SET c = c + ?` of one counter, then the row's entries
    /// evicted (journaled by the cache when Redis cannot take it), unless
    /// Cassandra refused the increment. The caller of a write-through
    /// increment reads the new totals back.
    pub(crate) async fn increment(
        &self,
        key: &T::Key,
        counter: T::Counter,
        by: i64,
    ) -> Result<(), Error> {
        self.invalidating(key, self.table.increment(key, counter, by))
            .await
    }

    /// Runs `write`, then evicts the row's entries unless Cassandra refused
    /// it (invalidate on write).
    async fn invalidating(
        &self,
        key: &T::Key,
        write: impl Future<Output = Result<(), Failed>>,
    ) -> Result<(), Error> {
        self.evicting(self.guards(key), write).await
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
        let appended = match self.record(|schema, prefix| save_record(schema, row, at, prefix)) {
            Ok(fields) => stream.append(&fields).await,
            Err(reason) => Err(StreamError::Encode(reason)),
        };
        let guards = self.guards(&key);
        match appended {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!(
                    table = T::TABLE,
                    capacity = CAPACITY,
                    "cachefw-cassandra: the write-behind stream is full; saving to Cassandra"
                );
                return self
                    .evicting(guards, self.table.insert_at(row, Some(at)))
                    .await;
            }
            Err(error) => {
                tracing::debug!(%error, "cachefw-cassandra: write-behind save goes to Cassandra");
                return self
                    .evicting(guards, self.table.insert_at(row, Some(at)))
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
            Ok(Stored::Stored) => guards.row.disarm(),
            // A newer write of the row is stored: a save (which covers this
            // one), or another process's patch applied to the row it had
            // cached, which may be older than this save. Not knowing which,
            // the entry is evicted (its version record stays, so no older
            // write stores after it); the flushes settle the row.
            Ok(_) => guards.row.run().await,
            // Redis holds the record but not the entry, which may hold an
            // older row: the row goes to Cassandra now too (the flush writes
            // it again, at the same timestamp), and the entry is evicted.
            Err(error) => {
                tracing::debug!(%error, "cachefw-cassandra: write-behind entry not stored");
                // Acknowledged by Redis already: a failure here is the flush's.
                let _ = self
                    .evicting(guards, self.table.insert_at(row, Some(at)))
                    .await;
                return Ok(());
            }
        }
        guards.partition.run().await;
        Ok(())
    }

    /// A write-behind record made by `make` from the entity's column types
    /// and the cache's key prefix.
    fn record(
        &self,
        make: impl FnOnce(&Schema, &str) -> Result<Fields, String>,
    ) -> Result<Fields, String> {
        let schema = self.table.schema().map_err(str::to_owned)?;
        make(schema, versioned::prefix(self.cache))
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
        let appended =
            match self.record(|schema, prefix| patch_record::<T>(schema, key, patch, at, prefix)) {
                Ok(fields) => stream.append(&fields).await,
                Err(reason) => Err(StreamError::Encode(reason)),
            };
        let guards = self.guards(key);
        if !matches!(appended, Ok(Some(_))) {
            return self
                .evicting(guards, self.table.update_at(key, patch, Some(at)))
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

    /// Runs `write` (taken by `guards` before it was sent), then evicts
    /// what `guards` cover unless Cassandra refused it: invalidate on write,
    /// and a write-behind write that goes to Cassandra now.
    async fn evicting(
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

/// [`Error::CounterTable`] for `call` on a table of counters.
pub(crate) fn refuse_counters<T: Entity>(
    call: &'static str,
    reason: &'static str,
) -> Result<(), Error> {
    if T::COUNTERS.is_empty() {
        return Ok(());
    }
    Err(Error::CounterTable {
        table: T::TABLE,
        call,
        counters: T::COUNTERS.join(", "),
        reason,
    })
}
