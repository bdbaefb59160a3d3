//! Writes of the hash layout. Every write goes to Cassandra with the
//! call's timestamp, in every write mode, and that timestamp is its
//! version in the entry's record:
//!
//! - A patch sets only its fields in the cached hash (every mode; with
//!   write-behind after its stream record, and the entry keeps no expiry
//!   until the flush).
//! - A save stores the whole row (through, behind) or evicts it
//!   (invalidate), recording its version for the whole row.
//! - A delete, a TTL save, a batch and an applied `INSERT … IF NOT EXISTS`
//!   evict the entry, recording their version.
//! - An increment adds to the cached counter after Cassandra applied it;
//!   while it is in flight no reader fills the entry.
//!
//! As in the blob layout, each write holds an [`Eviction`] of the row's
//! entry (and its partition's) from before it is sent: a caller cut off
//! at any await, or a Cassandra outcome that is unknown, leaves them
//! evicted.

use std::time::Duration;

use cachefw::__adapter::command;
use cachefw::__adapter::hashed::{self, HashKeys};
use cachefw::__adapter::versioned;
use cachefw::Cache;
use scylla::statement::prepared::PreparedStatement;

use super::fields::Encoder;
use super::scripts::SCRIPTS;
use super::{int, millis, record_ms};
use crate::behind::record::{Fields, patch as patch_record, save as save_record};
use crate::behind::stream::Stream;
use crate::clock;
use crate::entity::{Entity, WriteMode};
use crate::error::Error;
use crate::evict::Eviction;
use crate::outcome::Effect;
use crate::rows::{RowLock, RowLocks};
use crate::table::{Failed, Table};
use crate::writes::Guards;

/// The writes of one call of a repository of a hash entity.
pub(crate) struct HashWrites<'a, T: Entity> {
    pub(crate) table: &'a Table<T>,
    pub(crate) cache: &'a Cache,
    pub(crate) rows: &'a RowLocks,
    pub(crate) stream: &'a Stream,
}

/// What the entry gets after a write reached Cassandra.
enum After<'p, T: Entity> {
    /// The whole row, with no expiry when written behind.
    Store(&'p T, bool),
    /// These fields, with no expiry when written behind.
    Patch(&'p T::Patch, bool),
    /// Nothing: evicted, its version recorded.
    Evict,
}

impl<T: Entity> HashWrites<'_, T> {
    fn guards(&self, keys: &[T::Key]) -> Guards {
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

    /// This process's turn on the row, for write-behind writes (see
    /// `RowLocks`).
    async fn turn(&self, key: &T::Key) -> Option<RowLock<'_>> {
        match T::WRITE {
            WriteMode::Behind => Some(self.rows.lock(&T::cache_key(key)).await),
            WriteMode::Invalidate | WriteMode::Through => None,
        }
    }

    /// Runs `write` (Cassandra, at `at`), then changes the entry as
    /// `after` says; the entries are evicted when either fails.
    async fn written(
        &self,
        key: &T::Key,
        at: i64,
        write: impl Future<Output = Result<(), Failed>>,
        after: After<'_, T>,
    ) -> Result<(), Error> {
        let guards = self.guards(std::slice::from_ref(key));
        if let Err(failed) = write.await {
            guards.failed(failed.outcome).await;
            return Err(failed.error);
        }
        self.apply(key, at, after, guards).await;
        Ok(())
    }

    /// The entry changed as `after` says, as version `at`; `guards` evict
    /// it when that fails.
    async fn apply(&self, key: &T::Key, at: i64, after: After<'_, T>, guards: Guards) {
        match self.script(key, at, &after).await {
            Ok(()) => guards.row.disarm(),
            Err(error) => {
                tracing::debug!(%error, "cachefw-cassandra: a hash entry was evicted, not written");
                guards.row.run().await;
            }
        }
        guards.partition.run().await;
    }

    async fn script(
        &self,
        key: &T::Key,
        at: i64,
        after: &After<'_, T>,
    ) -> Result<(), cachefw::Error> {
        let HashKeys { entry, record } = hashed::keys(self.cache, &T::cache_key(key))?;
        let version = clock::version(at);
        let mut sink = Encoder::new(self.cache, &entry);
        let (script, op, last) = match after {
            After::Store(row, behind) => {
                row.write_fields(&mut sink);
                let ttl = if *behind { 0 } else { millis(T::TTL) };
                (&SCRIPTS.store, "HASH_STORE", ttl)
            }
            After::Patch(patch, behind) => {
                T::write_patch(patch, &mut sink);
                (&SCRIPTS.patch, "HASH_PATCH", u64::from(*behind))
            }
            After::Evict => (&SCRIPTS.evict, "HASH_EVICT", 0),
        };
        let fields = sink.finish()?;
        let mut invocation = script.key(&entry);
        invocation.key(&record).arg(version).arg(record_ms::<T>());
        if !matches!(after, After::Evict) {
            invocation.arg(last);
        }
        for (column, bytes) in &fields {
            invocation.arg(*column).arg(bytes);
        }
        hashed::write(self.cache, op, &entry, &invocation).await?;
        Ok(())
    }

    /// `Repository::save` of a hash entity.
    pub(crate) async fn save(&self, row: &T) -> Result<(), Error> {
        let key = row.key();
        let _turn = self.turn(&key).await;
        let at = clock::now();
        let after = match T::WRITE {
            WriteMode::Invalidate => After::Evict,
            WriteMode::Through => After::Store(row, false),
            WriteMode::Behind => {
                let record = self.record(|schema, prefix| save_record(schema, row, at, prefix));
                if self.appended(record).await {
                    self.apply(
                        &key,
                        at,
                        After::Store(row, true),
                        self.guards(std::slice::from_ref(&key)),
                    )
                    .await;
                    return Ok(());
                }
                After::Evict
            }
        };
        self.written(&key, at, self.table.insert_at(row, Some(at)), after)
            .await
    }

    /// `Repository::patch` of a hash entity.
    pub(crate) async fn patch(&self, key: &T::Key, patch: &T::Patch) -> Result<(), Error> {
        let _turn = self.turn(key).await;
        let at = clock::now();
        if T::WRITE == WriteMode::Behind {
            let record =
                self.record(|schema, prefix| patch_record::<T>(schema, key, patch, at, prefix));
            if self.appended(record).await {
                let guards = self.guards(std::slice::from_ref(key));
                self.apply(key, at, After::Patch(patch, true), guards).await;
                return Ok(());
            }
        }
        let write = self.table.update_at(key, patch, Some(at));
        self.written(key, at, write, After::Patch(patch, false))
            .await
    }

    /// `Repository::delete` of a hash entity.
    pub(crate) async fn delete(&self, key: &T::Key) -> Result<(), Error> {
        let _turn = self.turn(key).await;
        let at = clock::now();
        let write = self.table.delete_at(key, Some(at));
        self.written(key, at, write, After::Evict).await
    }

    /// `Repository::save_with_ttl` of a hash entity.
    pub(crate) async fn save_with_ttl(
        &self,
        statement: &PreparedStatement,
        row: &T,
        ttl: Duration,
    ) -> Result<(), Error> {
        let key = row.key();
        let _turn = self.turn(&key).await;
        let at = clock::now();
        let write = self.table.insert_with_ttl_at(statement, row, ttl, Some(at));
        self.written(&key, at, write, After::Evict).await
    }

    /// `Repository::save_all` of a hash entity: batches at the call's
    /// timestamp, each row's entry evicted with it as its version.
    pub(crate) async fn save_all(&self, rows: &[T], batch_rows: usize) -> Result<(), Error> {
        let mut start = 0;
        for chunk in rows.chunks(batch_rows) {
            let end = start + chunk.len();
            let label =
                |cql: &str| format!("BATCH of rows {start}..{end} of {}: {cql}", rows.len());
            let keys: Vec<T::Key> = chunk.iter().map(Entity::key).collect();
            let guards = self.guards(&keys);
            let at = clock::now();
            if let Err(failed) = self.table.insert_batch_at(chunk, Some(at), label).await {
                guards.failed(failed.outcome).await;
                return Err(failed.error);
            }
            let mut missed = Vec::new();
            for key in &keys {
                if self.script(key, at, &After::Evict).await.is_err() {
                    missed.push(T::cache_key(key));
                }
            }
            Eviction::new(self.cache, missed).run().await;
            guards.row.disarm();
            guards.partition.run().await;
            start = end;
        }
        Ok(())
    }

    /// `Repository::insert_if_not_exists` of a hash entity.
    pub(crate) async fn insert_if_not_exists(&self, row: &T) -> Result<bool, Error> {
        let key = row.key();
        let _turn = self.turn(&key).await;
        if T::WRITE == WriteMode::Behind && self.holds_row(&key).await {
            return Ok(false);
        }
        let at = clock::now();
        let guards = self.guards(std::slice::from_ref(&key));
        match self.table.insert_if_not_exists(row).await {
            Ok(false) => {
                guards.row.disarm();
                guards.partition.disarm();
                Ok(false)
            }
            Ok(true) => {
                self.apply(&key, at, After::Evict, guards).await;
                Ok(true)
            }
            Err(failed) => {
                guards.failed(failed.outcome).await;
                Err(failed.error)
            }
        }
    }

    /// Whether the row's entry holds a whole row (written behind, or read
    /// from Cassandra: the row exists either way).
    async fn holds_row(&self, key: &T::Key) -> bool {
        let Ok(keys) = hashed::keys(self.cache, &T::cache_key(key)) else {
            return false;
        };
        let mut command = cachefw::__adapter::redis::cmd("HEXISTS");
        command.arg(&keys.entry).arg(b"\xffr");
        let answer = command::run(self.cache, "HEXISTS", &keys.entry, &command).await;
        matches!(answer.as_ref().map(int), Ok(Some(1)))
    }

    /// `Repository::increment` of a hash entity: counted in flight in the
    /// record first (no reader fills meanwhile), then Cassandra, then the
    /// cached counter added to (or the entry evicted when the outcome is
    /// unknown).
    pub(crate) async fn increment(
        &self,
        key: &T::Key,
        counter: T::Counter,
        by: i64,
    ) -> Result<(), Error> {
        let guards = self.guards(std::slice::from_ref(key));
        let mut flight = Increment {
            cache: self.cache.clone(),
            keys: hashed::keys(self.cache, &T::cache_key(key)).ok(),
            column: T::counter_column(counter),
            by,
            begun: false,
        };
        flight.begin::<T>().await;
        match self.table.increment(key, counter, by).await {
            Ok(()) => {
                let added = flight.end("add").await;
                if added {
                    guards.row.disarm();
                } else {
                    guards.row.run().await;
                }
                guards.partition.run().await;
                Ok(())
            }
            Err(failed) => {
                let how = match failed.outcome {
                    Effect::Refused => "keep",
                    Effect::Unknown => "evict",
                };
                flight.end(how).await;
                guards.failed(failed.outcome).await;
                Err(failed.error)
            }
        }
    }

    /// A write-behind record made by `make`.
    fn record(
        &self,
        make: impl FnOnce(&crate::behind::columns::Schema, &str) -> Result<Fields, String>,
    ) -> Result<Fields, String> {
        let schema = self.table.schema().map_err(str::to_owned)?;
        make(schema, versioned::prefix(self.cache))
    }

    /// Whether the stream took the record (else the write goes to
    /// Cassandra at once).
    async fn appended(&self, record: Result<Fields, String>) -> bool {
        match record {
            Ok(fields) => match self.stream.append(&fields).await {
                Ok(Some(_)) => true,
                Ok(None) => {
                    tracing::warn!(
                        table = T::TABLE,
                        "cachefw-cassandra: the write-behind stream is full; writing to Cassandra"
                    );
                    false
                }
                Err(error) => {
                    tracing::debug!(%error, "cachefw-cassandra: write-behind write goes to Cassandra");
                    false
                }
            },
            Err(reason) => {
                tracing::debug!(reason, "cachefw-cassandra: no write-behind record");
                false
            }
        }
    }
}

/// An increment in flight, counted in its entry's record: ended (the
/// count taken back, the entry evicted) from a task when the caller is
/// cut off before it ended.
struct Increment {
    cache: Cache,
    keys: Option<HashKeys>,
    column: &'static str,
    by: i64,
    begun: bool,
}

impl Increment {
    async fn begin<T: Entity>(&mut self) {
        let Some(keys) = &self.keys else {
            return;
        };
        let mut invocation = SCRIPTS.increment_begin.key(&keys.entry);
        invocation.key(&keys.record).arg(record_ms::<T>());
        self.begun = true;
        if hashed::write(&self.cache, "HASH_INCREMENT", &keys.entry, &invocation)
            .await
            .is_err()
        {
            // Not counted: the entry is evicted (journaled), and no count
            // is taken back.
            self.begun = false;
        }
    }

    /// Ends the increment: `add`, `keep` or `evict` (see the script).
    /// Whether the cached counter was added to.
    async fn end(&mut self, how: &str) -> bool {
        self.begun = false;
        let Some(keys) = &self.keys else {
            return false;
        };
        end(&self.cache, keys, self.column, self.by, how).await
    }
}

async fn end(cache: &Cache, keys: &HashKeys, column: &str, by: i64, how: &str) -> bool {
    let mut invocation = SCRIPTS.increment_end.key(&keys.entry);
    invocation.key(&keys.record).arg(column).arg(by).arg(how);
    let answer = hashed::write(cache, "HASH_INCREMENT", &keys.entry, &invocation).await;
    matches!(answer.as_ref().map(int), Ok(Some(1)))
}

impl Drop for Increment {
    fn drop(&mut self) {
        let (true, Some(keys)) = (self.begun, self.keys.take()) else {
            return;
        };
        let (cache, column, by) = (self.cache.clone(), self.column, self.by);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                end(&cache, &keys, column, by, "evict").await;
            });
        }
    }
}
