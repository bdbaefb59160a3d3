//! The write-behind flusher: one consumer of a table's stream, writing its
//! records to Cassandra.
//!
//! Each round it first takes over records another flusher left
//! unacknowledged for the claim idle time (`XAUTOCLAIM`), then reads new
//! ones (`XREADGROUP`, never blocking: the connection is the cache's).
//! Rows are written concurrently; the records of one row in timestamp
//! order, each with its own timestamp, so that Cassandra keeps the newest
//! whatever order they land in. A record covered by a newer save of its
//! row (one that writes every column it sets) is written by that save,
//! unless that save is being refused: then it is written itself. A
//! written row's cache entry is settled (its TTL set, or a fill removed),
//! then its written records are acknowledged and deleted.
//!
//! Each record is judged alone. Whatever Cassandra answers (a timeout, an
//! unavailable or overloaded cluster, a refused grant, a missing table or
//! column, an invalid value), a record is retried with a backoff that
//! doubles up to [`MAX_BACKOFF`], and the other records of its row go on
//! without it. Only a record refused for the repository's
//! `dead_letter_after` (24 h by default) goes to the dead-letter stream,
//! where it waits, never trimmed, for `Repository::replay_dead`; its cache
//! entry is given the entity's TTL rather than deleted. The flusher keeps
//! the records it retries from looking idle (`XCLAIM … JUSTID`), so other
//! flushers do not take them over while it still works on them.
//!
//! A flusher holds nothing that outlives it: aborted at any await, its
//! records stay pending in the group, and another flusher (or itself,
//! restarted) takes them over after the claim idle time. The time a record
//! has been refused is this flusher's count: a flusher that takes it over
//! counts again from its first refusal (a dead letter comes later, never
//! sooner).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefw::__adapter::versioned::{self, Settled};
use cachefw::Cache;
use futures_util::StreamExt;

use super::record::{self, Record};
use super::stream::{Stream, StreamEntry, StreamError};
use crate::entity::Entity;
use crate::table::Table;

/// Records read or claimed per call.
const BATCH: usize = 256;
/// Rows held at most (waiting for a retry, or being written): beyond, no
/// new records are read, so a Cassandra outage does not fill the memory.
const MAX_HELD: usize = 4 * BATCH;
/// Rows written at once.
const CONCURRENCY: usize = 64;
/// The first pause after a refused write, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
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
/// One failure of a kind (per row, for refusals) is logged at most this
/// often, with how many were held back.
const LOG_EVERY: Duration = Duration::from_secs(15);

/// One record this flusher holds, and how its writes went.
struct Tracked {
    entry: StreamEntry,
    record: Record,
    written: bool,
    /// When Cassandra first refused it (since its last success).
    refused_since: Option<Instant>,
    /// Why, the last time.
    last_error: String,
    pause: Duration,
    next_try: Instant,
}

impl Tracked {
    fn refused(&mut self, now: Instant, error: String) {
        self.refused_since.get_or_insert(now);
        self.last_error = error;
        self.next_try = now + self.pause;
        self.pause = (self.pause * 2).min(MAX_BACKOFF);
    }
}

/// The records of one row this flusher holds, oldest first.
#[derive(Default)]
struct Row {
    records: Vec<Tracked>,
}

impl Row {
    fn add(&mut self, held: Tracked) {
        let place = self
            .records
            .partition_point(|other| other.record.at <= held.record.at);
        self.records.insert(place, held);
    }

    /// Whether some record is due for a write, or written and not yet
    /// acknowledged.
    fn due(&self, now: Instant) -> bool {
        self.records
            .iter()
            .any(|held| held.written || held.next_try <= now)
    }

    /// The index of a newer save that writes every column of record `at`
    /// and is not being refused, if any.
    fn cover(&self, at: usize) -> Option<usize> {
        let older = &self.records.get(at)?.record;
        (at + 1..self.records.len()).find(|&newer| {
            let held = &self.records[newer];
            held.refused_since.is_none() && held.record.covers(older)
        })
    }
}

/// What one row's round did, for the flusher to log and acknowledge.
struct RowRound {
    key: String,
    row: Row,
    /// Refusals: the kind and the error.
    refusals: Vec<(&'static str, String)>,
    /// Whether a record was written this round.
    wrote: bool,
    /// Whether the written records' entries were settled (then they are
    /// acknowledged).
    settled: bool,
    settle_error: Option<cachefw::Error>,
}

/// Logs a failure at most every [`LOG_EVERY`] per subject.
#[derive(Default)]
struct Log {
    last: HashMap<String, (Instant, u64)>,
}

impl Log {
    /// Whether to log now about `subject`, and how many were held back.
    fn allow(&mut self, subject: String) -> Option<u64> {
        let now = Instant::now();
        if self.last.len() > 4096 {
            self.last.retain(|_, (at, _)| at.elapsed() < LOG_EVERY);
        }
        match self.last.get_mut(&subject) {
            Some((at, held_back)) if at.elapsed() < LOG_EVERY => {
                *held_back += 1;
                None
            }
            _ => {
                let held_back = self.last.insert(subject, (now, 0)).map_or(0, |(_, n)| n);
                Some(held_back)
            }
        }
    }

    fn failure(&mut self, table: &str, what: &str, error: &dyn std::fmt::Display) {
        if let Some(held_back) = self.allow(what.to_owned()) {
            tracing::warn!(
                table,
                held_back,
                %error,
                "cachefw-cassandra: write-behind flusher: {what}"
            );
        }
    }
}

/// One flusher of table `T`.
pub(crate) struct Flusher<T: Entity> {
    table: Arc<Table<T>>,
    cache: Cache,
    stream: Stream,
    consumer: String,
    claim_idle: Duration,
    dead_after: Duration,
    rows: HashMap<String, Row>,
    /// Ids of every entry held, so a claim does not take one twice.
    held: HashSet<String>,
    /// Records that do not read, by id: when first seen. They are left
    /// pending (a flusher of a newer deploy may read them) until they
    /// have not read for `dead_after`.
    unreadable: HashMap<String, Instant>,
    /// Entries to move to the dead-letter stream, with why.
    dead: Vec<(StreamEntry, String, Option<Record>)>,
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
        dead_after: Duration,
    ) -> Self {
        let consumer = format!("flusher-{}-{:016x}", std::process::id(), fastrand::u64(..));
        Self {
            table,
            cache,
            stream,
            consumer,
            claim_idle,
            dead_after,
            rows: HashMap::new(),
            held: HashSet::new(),
            unreadable: HashMap::new(),
            dead: Vec::new(),
            moved: Vec::new(),
            next_prune: None,
            log: Log::default(),
        }
    }

    /// Flushes until aborted.
    pub(crate) async fn run(mut self) {
        let mut grouped = false;
        let mut cursor = String::from("0-0");
        let mut next_claim = Instant::now();
        let mut next_touch = Instant::now() + self.touch_every();
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
            if Instant::now() >= next_touch {
                next_touch = Instant::now() + self.touch_every();
                self.touch().await;
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
            // Records written but not settled or acknowledged are tried
            // again at the poll's pace.
            let retry = self
                .rows
                .values()
                .flat_map(|row| row.records.iter())
                .filter(|held| !held.written)
                .map(|held| held.next_try)
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()));
            tokio::time::sleep(retry.map_or(poll, |retry| retry.min(poll))).await;
            poll = (poll * 2).min(MAX_POLL);
        }
    }

    /// How often the records held are kept from looking idle: well within
    /// the claim idle time.
    fn touch_every(&self) -> Duration {
        (self.claim_idle / 3).max(FIRST_POLL)
    }

    /// Resets the idle time of every record held.
    async fn touch(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let ids: Vec<String> = self.held.iter().cloned().collect();
        if let Err(error) = self.stream.touch(&self.consumer, &ids).await {
            self.log
                .failure(T::TABLE, "cannot keep held records claimed", &error);
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
    fn hold(&mut self, entry: StreamEntry) -> bool {
        if self.held.contains(&entry.id) {
            return false;
        }
        let prefix = versioned::prefix(&self.cache);
        match record::decode::<T>(&entry.fields, self.table.schema().ok(), prefix) {
            Ok(record) => {
                self.held.insert(entry.id.clone());
                self.rows
                    .entry(record.row.clone())
                    .or_default()
                    .add(Tracked {
                        entry,
                        record,
                        written: false,
                        refused_since: None,
                        last_error: String::new(),
                        pause: FIRST_BACKOFF,
                        next_try: Instant::now(),
                    });
                true
            }
            Err(reason) => {
                refusal(T::TABLE, "unreadable");
                let since = *self
                    .unreadable
                    .entry(entry.id.clone())
                    .or_insert_with(Instant::now);
                if since.elapsed() >= self.dead_after {
                    self.unreadable.remove(&entry.id);
                    self.held.insert(entry.id.clone());
                    self.dead.push((entry, reason, None));
                } else if let Some(held_back) = self.log.allow(format!("unreadable {}", entry.id)) {
                    // Left pending, not held: a flusher that reads it may
                    // take it over after the claim idle time.
                    tracing::error!(
                        table = T::TABLE,
                        id = entry.id,
                        held_back,
                        reason,
                        "cachefw-cassandra: a write-behind record does not read; it stays \
                         pending and becomes a dead letter if it still does not read after \
                         dead_letter_after"
                    );
                }
                false
            }
        }
    }

    /// Writes every row with a record due, settles and acknowledges what
    /// was written; whether anything was written or acknowledged (a round
    /// of refusals, or of settles that failed, is no progress: the flusher
    /// then waits before trying again).
    async fn flush_due(&mut self) -> bool {
        let now = Instant::now();
        let due: Vec<String> = self
            .rows
            .iter()
            .filter(|(_, row)| row.due(now))
            .map(|(key, _)| key.clone())
            .collect();
        if due.is_empty() {
            return false;
        }
        let mut rounds = Vec::with_capacity(due.len());
        for key in due {
            if let Some(row) = self.rows.remove(&key) {
                rounds.push(flush_row(&self.table, &self.cache, key, row, now));
            }
        }
        let rounds: Vec<RowRound> = futures_util::stream::iter(rounds)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut ids = Vec::new();
        let mut partitions = HashSet::new();
        let mut wrote = false;
        for mut round in rounds {
            wrote |= round.wrote;
            for (kind, error) in &round.refusals {
                refusal(T::TABLE, kind);
                if let Some(held_back) = self.log.allow(format!("{} {kind}", round.key)) {
                    tracing::error!(
                        table = T::TABLE,
                        row = round.key,
                        kind,
                        held_back,
                        %error,
                        "cachefw-cassandra: Cassandra refused a write-behind record; \
                         retrying with backoff (the cache keeps the pending write)"
                    );
                }
            }
            if let Some(error) = &round.settle_error {
                self.log
                    .failure(T::TABLE, "cannot settle a flushed row's entry", error);
            }
            let mut kept = Vec::with_capacity(round.row.records.len());
            for held in round.row.records.drain(..) {
                if held.written && round.settled {
                    if let Some(partition) = &held.record.partition {
                        partitions.insert(partition.clone());
                    }
                    ids.push(held.entry.id.clone());
                    kept.push(held);
                } else if !held.written
                    && held
                        .refused_since
                        .is_some_and(|since| since.elapsed() >= self.dead_after)
                {
                    let reason = held.last_error.clone();
                    self.dead.push((held.entry, reason, Some(held.record)));
                } else {
                    kept.push(held);
                }
            }
            round.row.records = kept;
            self.rows.insert(round.key, round.row);
        }
        if !partitions.is_empty() {
            let partitions: Vec<&str> = partitions.iter().map(String::as_str).collect();
            // A failed eviction is the cache's to replay.
            let _ = self.cache.delete_many(&partitions).await;
        }
        if ids.is_empty() {
            return wrote;
        }
        match self.stream.ack(&ids).await {
            Ok(()) => {
                let acked: HashSet<&String> = ids.iter().collect();
                self.rows.retain(|_, row| {
                    row.records.retain(|held| !acked.contains(&held.entry.id));
                    !row.records.is_empty()
                });
                for id in &ids {
                    self.held.remove(id);
                }
            }
            // Written and settled: acknowledging is all that is left, the
            // next round (the rows stay due).
            Err(error) => {
                self.log.failure(T::TABLE, "cannot acknowledge", &error);
                return wrote;
            }
        }
        true
    }

    /// Moves the dead letters to their stream, gives their cache entries
    /// the entity's TTL, and acknowledges them; whether any was
    /// acknowledged.
    async fn settle_dead(&mut self) -> bool {
        if self.dead.is_empty() && self.moved.is_empty() {
            return false;
        }
        let mut failed = Vec::new();
        for (entry, reason, record) in std::mem::take(&mut self.dead) {
            match self.bury(&entry, &reason, record.as_ref()).await {
                Ok(()) => {
                    tracing::error!(
                        table = T::TABLE,
                        id = entry.id,
                        row = record.as_ref().map(|r| r.row.as_str()),
                        stream = self.stream.dead_key(),
                        reason,
                        "cachefw-cassandra: a write-behind record was refused for \
                         dead_letter_after and moved to the dead-letter stream; fix the \
                         cause, then call Repository::replay_dead"
                    );
                    metrics::counter!("cachefw_writebehind_dead_letters_total", "table" => T::TABLE)
                        .increment(1);
                    self.moved.push(entry.id);
                }
                Err(error) => {
                    self.log
                        .failure(T::TABLE, "cannot move a dead letter", &error);
                    failed.push((entry, reason, record));
                }
            }
        }
        self.dead = failed;
        if self.moved.is_empty() {
            return false;
        }
        match self.stream.ack(&self.moved).await {
            Ok(()) => {
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

    /// Lets one dead letter's cache entry expire by the entity's TTL (it
    /// holds a write Cassandra does not have, which the operator may still
    /// replay), then copies it to the dead-letter stream. In this order, a
    /// failure of either leaves the record pending and the dead-letter
    /// stream without a copy: trying again never copies it twice.
    async fn bury(
        &self,
        entry: &StreamEntry,
        reason: &str,
        record: Option<&Record>,
    ) -> Result<(), StreamError> {
        if let Some(record) = record {
            let prefix = record
                .prefix
                .as_deref()
                .unwrap_or_else(|| versioned::prefix(&self.cache));
            crate::hash::settle_under::<T>(&self.cache, prefix, &record.row, version(record.at))
                .await?;
        }
        self.stream.dead_letter(entry, reason).await
    }

    /// Publishes the backlog as metrics.
    async fn gauge(&mut self) {
        let backlog = match self.stream.backlog().await {
            Ok((pending, oldest)) => self
                .stream
                .dead_len()
                .await
                .map(|dead| (pending, oldest, dead)),
            Err(error) => Err(error),
        };
        match backlog {
            Ok((pending, oldest, dead)) => {
                super::publish(T::TABLE, pending, super::age(oldest), dead);
            }
            Err(error) => self
                .log
                .failure(T::TABLE, "cannot read the backlog", &error),
        }
    }
}

/// Counts one refusal of `kind`.
fn refusal(table: &'static str, kind: &'static str) {
    metrics::counter!("cachefw_writebehind_refusals_total", "table" => table, "kind" => kind)
        .increment(1);
}

fn version(at: i64) -> u64 {
    crate::clock::version(at)
}

/// Writes the due records of one row, oldest first, each alone; then
/// settles the entries of what was written.
async fn flush_row<T: Entity>(
    table: &Table<T>,
    cache: &Cache,
    key: String,
    mut row: Row,
    now: Instant,
) -> RowRound {
    let mut refusals = Vec::new();
    let mut wrote = false;
    for at in 0..row.records.len() {
        if row.records[at].written || row.records[at].next_try > now || row.cover(at).is_some() {
            continue;
        }
        let held = &mut row.records[at];
        match table.write_record(&held.record).await {
            Ok(()) => {
                wrote = true;
                held.written = true;
                held.refused_since = None;
                held.pause = FIRST_BACKOFF;
            }
            Err(failed) => {
                refusals.push((failed.kind, failed.error.to_string()));
                held.refused(now, failed.error.to_string());
            }
        }
    }
    // What a written save covers is written too.
    for at in 0..row.records.len() {
        if !row.records[at].written
            && let Some(newer) = row.cover(at)
            && row.records[newer].written
        {
            row.records[at].written = true;
        }
    }
    let (settled, settle_error) = settle_row::<T>(cache, &row).await;
    RowRound {
        key,
        row,
        refusals,
        wrote,
        settled,
        settle_error,
    }
}

/// Settles the entry of a row after its written records, under each key
/// prefix they were stored under and the cache's own (where a fill may
/// have read the row before they reached Cassandra): the newest written
/// version keeps its entry with the entity's TTL.
async fn settle_row<T: Entity>(cache: &Cache, row: &Row) -> (bool, Option<cachefw::Error>) {
    let own = versioned::prefix(cache);
    let mut newest: HashMap<&str, i64> = HashMap::new();
    let mut key = None;
    for held in row.records.iter().filter(|held| held.written) {
        let prefix = held.record.prefix.as_deref().unwrap_or(own);
        let at = newest.entry(prefix).or_insert(held.record.at);
        *at = (*at).max(held.record.at);
        key = Some(held.record.row.as_str());
    }
    let Some(key) = key else {
        return (false, None);
    };
    if !newest.contains_key(own)
        && let Some(at) = newest.values().max().copied()
    {
        newest.insert(own, at);
    }
    for (prefix, at) in newest {
        match crate::hash::settle_under::<T>(cache, prefix, key, version(at)).await {
            Ok(Settled::Removed) => {
                tracing::debug!(key, "cachefw-cassandra: flushed row's stale entry removed");
            }
            Ok(_) => {}
            Err(error) => return (false, Some(error)),
        }
    }
    (true, None)
}
