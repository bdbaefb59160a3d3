//! The write-behind flusher: one consumer of a table's stream, writing its
//! records to Cassandra.
//!
//! Each round it first takes over records another flusher left
//! unacknowledged for the claim idle time (`XAUTOCLAIM`), then reads new
//! ones (`XREADGROUP`, never blocking: the connection is the cache's). The
//! records it holds are merged per row: the newest save, and the patches
//! newer than it, are all that is written; older ones are acknowledged with
//! them. Rows are written concurrently, each write with its record's
//! timestamp, so that Cassandra keeps the newest whatever order they land
//! in. A written row's cache entry is settled (its TTL set, or a stale
//! fill removed), then its records are acknowledged and deleted.
//!
//! A row whose write fails waits, with a backoff that doubles up to
//! [`MAX_BACKOFF`]; one that Cassandra refuses as invalid
//! [`DEAD_AFTER`] times in a row, or a record that does not decode, goes
//! to the dead-letter stream. A flusher holds nothing that outlives it:
//! aborted at any await, its records stay pending in the group, and
//! another flusher (or itself, restarted) takes them over after the claim
//! idle time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefw::__private::versioned::{self, Settled};
use cachefw::Cache;
use futures_util::StreamExt;

use super::record::{self, Change, Record};
use super::stream::{Entry, Stream, StreamError};
use crate::clock;
use crate::entity::Entity;
use crate::table::{Failed, Table};

/// Records read or claimed per call.
const BATCH: usize = 256;
/// Rows held at most (waiting for a retry, or being written): beyond, no
/// new records are read, so a Cassandra outage does not fill the memory.
const MAX_HELD: usize = 4 * BATCH;
/// Rows written at once.
const CONCURRENCY: usize = 64;
/// Refusals in a row after which a row's records are dead letters.
pub(crate) const DEAD_AFTER: u32 = 5;
/// The first pause after a failed write, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Polling an empty stream starts at this pause and doubles up to
/// `MAX_POLL`, which bounds the delay of a flush when writes are rare.
const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(100);
/// Pauses after Redis failed, doubling.
const FIRST_REDIS_PAUSE: Duration = Duration::from_millis(50);
const MAX_REDIS_PAUSE: Duration = Duration::from_secs(2);
/// How often the backlog gauges are refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(1);
/// How often a flusher looks for the consumers of ended flushers, and the
/// least time such a consumer has been idle.
const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// Failures are logged at most this often (with how many were held back).
const LOG_EVERY: Duration = Duration::from_secs(15);

/// The records of one row this flusher holds.
struct Row<T: Entity> {
    key: T::Key,
    /// The newest save.
    save: Option<(i64, T)>,
    /// The patches newer than `save`, oldest first.
    patches: Vec<(i64, T::Patch)>,
    /// Every entry of the row taken, to acknowledge (or dead-letter).
    entries: Vec<Entry>,
    /// The newest timestamp among them: the version the cache settles.
    newest: i64,
    /// Cassandra holds every change above.
    written: bool,
    refusals: u32,
    pause: Duration,
    next_try: Instant,
}

impl<T: Entity> Row<T> {
    fn new(key: T::Key) -> Self {
        Self {
            key,
            save: None,
            patches: Vec::new(),
            entries: Vec::new(),
            newest: i64::MIN,
            written: false,
            refusals: 0,
            pause: FIRST_BACKOFF,
            next_try: Instant::now(),
        }
    }

    /// Takes one more record of the row.
    fn merge(&mut self, entry: Entry, record: Record<T>) {
        self.entries.push(entry);
        self.newest = self.newest.max(record.at);
        let saved_at = self.save.as_ref().map(|(at, _)| *at);
        match record.change {
            // An older save or patch is covered by the newer save, which
            // writes every column.
            Change::Save(row) if saved_at.is_none_or(|saved| record.at > saved) => {
                self.patches.retain(|(at, _)| *at > record.at);
                self.save = Some((record.at, row));
                self.written = false;
            }
            Change::Patch(_, patch) if saved_at.is_none_or(|saved| record.at > saved) => {
                let place = self.patches.partition_point(|(at, _)| *at <= record.at);
                self.patches.insert(place, (record.at, patch));
                self.written = false;
            }
            Change::Save(_) | Change::Patch(..) => {}
        }
    }

    fn ids(&self) -> Vec<String> {
        self.entries.iter().map(|entry| entry.id.clone()).collect()
    }

    fn wait(&mut self) {
        self.next_try = Instant::now() + self.pause;
        self.pause = (self.pause * 2).min(MAX_BACKOFF);
    }
}

/// Logs failures at most every [`LOG_EVERY`].
struct Log {
    last: Option<Instant>,
    held_back: u64,
}

impl Log {
    fn failure(&mut self, table: &str, what: &str, error: &dyn std::fmt::Display) {
        if self.last.is_some_and(|last| last.elapsed() < LOG_EVERY) {
            self.held_back += 1;
            return;
        }
        tracing::warn!(
            table,
            held_back = self.held_back,
            %error,
            "cachefw-cassandra: write-behind flusher: {what}"
        );
        self.last = Some(Instant::now());
        self.held_back = 0;
    }
}

/// One flusher of table `T`.
pub(crate) struct Flusher<T: Entity> {
    table: Arc<Table<T>>,
    cache: Cache,
    stream: Stream,
    consumer: String,
    claim_idle: Duration,
    rows: HashMap<String, Row<T>>,
    /// Ids of every entry held, so a claim does not take one twice.
    held: HashSet<String>,
    /// Entries to move to the dead-letter stream, with why.
    dead: Vec<(Entry, String)>,
    /// Ids of dead letters moved but not acknowledged yet.
    moved: Vec<String>,
    /// When ended consumers are looked for next.
    next_prune: Option<Instant>,
    log: Log,
}

impl<T: Entity> Flusher<T> {
    pub(crate) fn new(
        table: Arc<Table<T>>,
        cache: Cache,
        stream: Stream,
        claim_idle: Duration,
    ) -> Self {
        let consumer = format!("flusher-{}-{:016x}", std::process::id(), fastrand::u64(..));
        Self {
            table,
            cache,
            stream,
            consumer,
            claim_idle,
            rows: HashMap::new(),
            held: HashSet::new(),
            dead: Vec::new(),
            moved: Vec::new(),
            next_prune: None,
            log: Log {
                last: None,
                held_back: 0,
            },
        }
    }

    /// Flushes until aborted.
    pub(crate) async fn run(mut self) {
        let mut grouped = false;
        let mut cursor = String::from("0-0");
        let mut next_claim = Instant::now();
        let mut poll = FIRST_POLL;
        let mut redis_pause = FIRST_REDIS_PAUSE;
        let mut next_gauge = Instant::now();
        loop {
            if Instant::now() >= next_gauge {
                next_gauge = Instant::now() + GAUGE_EVERY;
                self.gauge().await;
            }
            if !grouped {
                match self.stream.create_group().await {
                    Ok(()) => grouped = true,
                    Err(error) => {
                        self.log
                            .failure(T::TABLE, "cannot create the consumer group", &error);
                        tokio::time::sleep(redis_pause).await;
                        redis_pause = (redis_pause * 2).min(MAX_REDIS_PAUSE);
                        continue;
                    }
                }
            }
            let mut redis_failed = false;
            let taken = match self.take(&mut cursor, &mut next_claim).await {
                Ok(taken) => {
                    redis_pause = FIRST_REDIS_PAUSE;
                    taken
                }
                Err(error) => {
                    if error.no_group() {
                        grouped = false;
                    }
                    redis_failed = true;
                    self.log.failure(T::TABLE, "cannot read the stream", &error);
                    0
                }
            };
            let flushed = self.flush_due().await;
            let buried = self.settle_dead().await;
            if redis_failed {
                tokio::time::sleep(redis_pause).await;
                redis_pause = (redis_pause * 2).min(MAX_REDIS_PAUSE);
                continue;
            }
            if taken > 0 || flushed || buried {
                poll = FIRST_POLL;
                continue;
            }
            let retry = self
                .rows
                .values()
                .map(|row| row.next_try)
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()));
            tokio::time::sleep(retry.map_or(poll, |retry| retry.min(poll))).await;
            poll = (poll * 2).min(MAX_POLL);
        }
    }

    /// Claims idle records, then reads new ones; how many it took.
    async fn take(
        &mut self,
        cursor: &mut String,
        next_claim: &mut Instant,
    ) -> Result<usize, StreamError> {
        let mut taken = 0;
        if Instant::now() >= *next_claim {
            let claimed = self
                .stream
                .claim(&self.consumer, self.claim_idle, cursor, BATCH)
                .await?;
            if !claimed.deleted.is_empty() {
                self.stream.ack(&claimed.deleted).await?;
            }
            taken += claimed
                .entries
                .into_iter()
                .map(|entry| self.hold(entry))
                .filter(|held| *held)
                .count();
            if claimed.next == "0-0" {
                *next_claim = Instant::now() + (self.claim_idle / 4).max(FIRST_POLL);
                self.prune().await;
            } else {
                // More to take over: older than anything unread, so before
                // reading new records.
                *cursor = claimed.next;
                return Ok(taken.max(1));
            }
            *cursor = claimed.next;
        }
        if self.rows.len() < MAX_HELD {
            let entries = self.stream.read_new(&self.consumer, BATCH).await?;
            taken += entries.len();
            for entry in entries {
                self.hold(entry);
            }
        }
        Ok(taken)
    }

    /// Now and then, removes the consumers of flushers that ended, so that
    /// processes that come and go do not grow the group without bound.
    async fn prune(&mut self) {
        if self.next_prune.is_some_and(|at| Instant::now() < at) {
            return;
        }
        self.next_prune = Some(Instant::now() + PRUNE_EVERY);
        let idle = (self.claim_idle * 10).max(PRUNE_EVERY);
        if let Err(error) = self.stream.prune_consumers(&self.consumer, idle).await {
            self.log
                .failure(T::TABLE, "cannot remove ended consumers", &error);
        }
    }

    /// Adds an entry to its row; `false` when already held.
    fn hold(&mut self, entry: Entry) -> bool {
        if !self.held.insert(entry.id.clone()) {
            return false;
        }
        match record::decode::<T>(&entry.fields) {
            Ok(record) => {
                let key = record.key();
                self.rows
                    .entry(T::cache_key(&key))
                    .or_insert_with(|| Row::new(key))
                    .merge(entry, record);
            }
            Err(reason) => {
                self.log.failure(
                    T::TABLE,
                    "a record that does not read goes to the dead-letter stream",
                    &reason,
                );
                self.dead.push((entry, reason));
            }
        }
        true
    }

    /// Writes every row whose retry is due, then settles and acknowledges
    /// the written ones; whether anything was done.
    async fn flush_due(&mut self) -> bool {
        let now = Instant::now();
        let due: Vec<String> = self
            .rows
            .iter()
            .filter(|(_, row)| row.next_try <= now)
            .map(|(key, _)| key.clone())
            .collect();
        if due.is_empty() {
            return false;
        }
        let mut writes = Vec::new();
        for key in &due {
            if let Some(row) = self.rows.get(key)
                && !row.written
            {
                writes.push(write(&self.table, key, row));
            }
        }
        let results: Vec<(String, Result<(), Failed>)> = futures_util::stream::iter(writes)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (key, result) in results {
            let Some(row) = self.rows.get_mut(&key) else {
                continue;
            };
            match result {
                Ok(()) => {
                    row.written = true;
                    row.refusals = 0;
                }
                Err(failed) if failed.permanent => {
                    row.refusals += 1;
                    if row.refusals >= DEAD_AFTER {
                        let reason = failed.error.to_string();
                        if let Some(row) = self.rows.remove(&key) {
                            for entry in row.entries {
                                self.dead.push((entry, reason.clone()));
                            }
                        }
                    } else {
                        row.wait();
                    }
                    self.log
                        .failure(T::TABLE, "Cassandra refused a write", &failed.error);
                }
                Err(failed) => {
                    row.wait();
                    self.log.failure(T::TABLE, "a write failed", &failed.error);
                }
            }
        }
        self.acknowledge(&due).await;
        true
    }

    /// Settles the cache entries of the written rows among `keys`, then
    /// acknowledges their records in one call.
    async fn acknowledge(&mut self, keys: &[String]) {
        let mut settles = Vec::new();
        for key in keys {
            if let Some(row) = self.rows.get(key)
                && row.written
            {
                settles.push(settle::<T>(&self.cache, key, clock::version(row.newest)));
            }
        }
        let outcomes: Vec<(String, Result<Settled, cachefw::Error>)> =
            futures_util::stream::iter(settles)
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut ids = Vec::new();
        let mut settled = Vec::new();
        for (key, outcome) in outcomes {
            let Some(row) = self.rows.get_mut(&key) else {
                continue;
            };
            match outcome {
                Ok(outcome) => {
                    if outcome == Settled::Removed {
                        tracing::debug!(
                            key,
                            "cachefw-cassandra: flushed row's stale entry removed"
                        );
                    }
                    ids.extend(row.ids());
                    settled.push(key);
                }
                Err(error) => {
                    row.wait();
                    self.log
                        .failure(T::TABLE, "cannot settle a flushed row's entry", &error);
                }
            }
        }
        if T::CACHE_PARTITIONS {
            let partitions: HashSet<String> = settled
                .iter()
                .filter_map(|key| self.rows.get(key))
                .map(|row| T::partition_cache_key(&T::partition_of(&row.key)))
                .collect();
            let partitions: Vec<&str> = partitions.iter().map(String::as_str).collect();
            // A failed eviction is the cache's to replay.
            let _ = self.cache.delete_many(&partitions).await;
        }
        match self.stream.ack(&ids).await {
            Ok(()) => {
                for key in settled {
                    if let Some(row) = self.rows.remove(&key) {
                        for entry in &row.entries {
                            self.held.remove(&entry.id);
                        }
                    }
                }
            }
            // Written and settled: acknowledging is all that is left.
            Err(error) => {
                for key in settled {
                    if let Some(row) = self.rows.get_mut(&key) {
                        row.wait();
                    }
                }
                self.log.failure(T::TABLE, "cannot acknowledge", &error);
            }
        }
    }

    /// Moves the dead letters to their stream, drops their cache entries,
    /// and acknowledges them; whether any was acknowledged.
    async fn settle_dead(&mut self) -> bool {
        if self.dead.is_empty() && self.moved.is_empty() {
            return false;
        }
        let mut failed = Vec::new();
        for (entry, reason) in std::mem::take(&mut self.dead) {
            match self.bury(&entry, &reason).await {
                Ok(()) => self.moved.push(entry.id),
                Err(error) => {
                    self.log
                        .failure(T::TABLE, "cannot move a dead letter", &error);
                    failed.push((entry, reason));
                }
            }
        }
        self.dead = failed;
        if self.moved.is_empty() {
            return false;
        }
        match self.stream.ack(&self.moved).await {
            Ok(()) => {
                tracing::warn!(
                    table = T::TABLE,
                    records = self.moved.len(),
                    stream = self.stream.dead_key(),
                    "cachefw-cassandra: write-behind records moved to the dead-letter stream"
                );
                for id in std::mem::take(&mut self.moved) {
                    self.held.remove(&id);
                }
                true
            }
            // Moved already: the next round only acknowledges.
            Err(error) => {
                self.log
                    .failure(T::TABLE, "cannot acknowledge dead letters", &error);
                false
            }
        }
    }

    /// Copies one dead letter to the dead-letter stream and drops the cache
    /// entry that holds its write: Cassandra never will.
    async fn bury(&self, entry: &Entry, reason: &str) -> Result<(), StreamError> {
        self.stream.dead_letter(entry, reason).await?;
        if let Ok(record) = record::decode::<T>(&entry.fields) {
            let key = T::cache_key(&record.key());
            versioned::settle(&self.cache, &key, clock::version(record.at), None).await?;
        }
        Ok(())
    }

    /// Publishes the backlog as metrics.
    async fn gauge(&mut self) {
        match self.stream.backlog().await {
            Ok((pending, oldest)) => super::publish(T::TABLE, pending, super::age(oldest)),
            Err(error) => self
                .log
                .failure(T::TABLE, "cannot read the backlog", &error),
        }
    }
}

/// Settles the entry at `key` after version `version` was written.
async fn settle<T: Entity>(
    cache: &Cache,
    key: &str,
    version: u64,
) -> (String, Result<Settled, cachefw::Error>) {
    let outcome = versioned::settle(cache, key, version, Some(T::TTL)).await;
    (key.to_owned(), outcome)
}

/// Writes a row's changes: the save, then the patches after it, each with
/// its own timestamp.
async fn write<T: Entity>(
    table: &Table<T>,
    key: &str,
    row: &Row<T>,
) -> (String, Result<(), Failed>) {
    let written = async {
        if let Some((at, entity)) = &row.save {
            table.insert_at(entity, Some(*at)).await?;
        }
        for (at, patch) in &row.patches {
            table.update_at(&row.key, patch, Some(*at)).await?;
        }
        Ok(())
    };
    (key.to_owned(), written.await)
}
