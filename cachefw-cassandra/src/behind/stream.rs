//! The Redis Stream of a table's write-behind records, and its consumer
//! group, through the cache's own connection and breakers.
//!
//! A record stays in the stream until it is written to Cassandra: the
//! flusher acknowledges and deletes it then (`XACK` + `XDEL` in one
//! script), so the stream's length is the backlog. Appends refuse to grow
//! the stream past its capacity (the save then writes Cassandra itself),
//! so `MAXLEN ~` never trims a record that was not written. Records that
//! Cassandra refused for `dead_letter_after` go to a dead-letter stream
//! beside it, never trimmed, until replayed.

use std::sync::LazyLock;
use std::time::Duration;

use cachefw::__adapter::command;
use cachefw::__adapter::redis::{self, Script, Value};
use cachefw::Cache;

use super::record::{self, Fields};

/// The consumer group every flusher of a table joins.
pub(crate) const GROUP: &str = "cachefw-flushers";

/// How many records the stream holds at most: beyond, saves write
/// Cassandra directly.
pub(crate) const CAPACITY: u64 = 1_000_000;

/// Ids per acknowledgement: Redis's Lua unpacks at most about 8,000
/// values at once.
const ACK_CHUNK: usize = 1_000;

/// Dead letters read per step of [`Stream::replay_dead`].
const REPLAY_CHUNK: usize = 100;

/// `ARGV`: capacity, then field and value pairs. Appends unless the stream
/// is full; returns the new id, or nil.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 2))
",
    )
});

/// `ARGV`: group, then ids. Acknowledges the records and deletes them.
static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
",
    )
});

/// `ARGV`: group, consumer. Removes the consumer unless it holds a
/// record: checked in the same step, since a consumer removed with its
/// pending records leaves them where no flusher claims them again.
static DELETE_CONSUMER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return -1 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
",
    )
});

/// How long a replay's lease lasts unless renewed (one chunk takes far
/// less); a replay cancelled midway holds up others for at most this.
const REPLAY_LEASE_MS: u64 = 10_000;

/// How often a replay waiting for another tries the lease again.
const REPLAY_WAIT: Duration = Duration::from_millis(20);

/// `ARGV`: token, milliseconds. Takes the lease, or renews it for its
/// holder; 1 when the caller holds it. A key without expiry (not one of
/// ours) is taken over, so that no replay waits on it forever.
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and redis.call('PTTL', KEYS[1]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    )
});

/// `ARGV`: token. Gives the lease up if the caller still holds it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// Why a stream call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    /// The cache's error (Redis down, slow, the breaker open, an error reply).
    #[error(transparent)]
    Cache(#[from] cachefw::Error),
    /// A row or patch MessagePack cannot hold: the write goes to
    /// Cassandra directly.
    #[error("the record cannot be encoded: {0}")]
    Encode(String),
    /// A reply of a shape the command does not give.
    #[error("unexpected reply to {op}: {reply}")]
    Reply { op: &'static str, reply: String },
}

impl StreamError {
    /// The group (or the stream) is gone: Redis lost its data.
    pub(crate) fn no_group(&self) -> bool {
        matches!(self, Self::Cache(cachefw::Error::Redis { source, .. }) if source.code() == Some("NOGROUP"))
    }

    fn reply(op: &'static str, reply: &Value) -> Self {
        Self::Reply {
            op,
            reply: format!("{reply:?}"),
        }
    }
}

/// One stream entry: its id and its fields.
#[derive(Clone, Debug)]
pub(crate) struct StreamEntry {
    pub(crate) id: String,
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What one `XAUTOCLAIM` step took.
pub(crate) struct Claimed {
    /// Where the next step starts; `0-0` once the pending list was walked.
    pub(crate) next: String,
    pub(crate) entries: Vec<StreamEntry>,
    /// Pending ids whose entries are gone from the stream.
    pub(crate) deleted: Vec<String>,
}

/// The write-behind stream of one table.
#[derive(Clone)]
pub(crate) struct Stream {
    cache: Cache,
    key: String,
    dead: String,
}

impl Stream {
    /// `{namespace}:wb:{table}`: outside the cache's version, so neither a
    /// version bump nor `clear()` removes writes not yet flushed.
    pub(crate) fn new(cache: &Cache, table: &str) -> Self {
        let key = format!("{}:wb:{table}", cache.namespace());
        Self {
            cache: cache.clone(),
            dead: format!("{key}:dead"),
            key,
        }
    }

    pub(crate) fn dead_key(&self) -> &str {
        &self.dead
    }

    /// Appends a record: its id, or `None` when the stream is full.
    pub(crate) async fn append(&self, fields: &Fields) -> Result<Option<String>, StreamError> {
        let mut call = APPEND.key(&self.key);
        call.arg(CAPACITY);
        for (name, value) in &fields.0 {
            call.arg(name.as_str()).arg(value.as_slice());
        }
        match command::invoke(&self.cache, "XADD", &self.key, &call).await? {
            Value::Nil => Ok(None),
            reply => text(&reply)
                .map(Some)
                .ok_or_else(|| StreamError::reply("XADD", &reply)),
        }
    }

    /// Creates the group (and the stream) unless it exists, reading from
    /// the first record.
    pub(crate) async fn create_group(&self) -> Result<(), StreamError> {
        let mut create = redis::cmd("XGROUP");
        create
            .arg("CREATE")
            .arg(&self.key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        match command::run(&self.cache, "XGROUP", &self.key, &create).await {
            Ok(_) => Ok(()),
            Err(cachefw::Error::Redis { source, .. }) if source.code() == Some("BUSYGROUP") => {
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Up to `count` records no consumer took yet, now `consumer`'s. Never
    /// blocks: a blocked read would hold up the connection every cache
    /// command shares.
    pub(crate) async fn read_new(
        &self,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<StreamEntry>, StreamError> {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(">");
        let reply = command::run(&self.cache, "XREADGROUP", &self.key, &read).await?;
        let streams = match &reply {
            Value::Nil => return Ok(Vec::new()),
            Value::Array(streams) => streams
                .iter()
                .filter_map(|stream| match stream {
                    Value::Array(pair) => pair.get(1),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            Value::Map(streams) => streams.iter().map(|(_, entries)| entries).collect(),
            _ => return Err(StreamError::reply("XREADGROUP", &reply)),
        };
        let mut entries = Vec::new();
        for stream in streams {
            entries.extend(
                parse_entries(stream).ok_or_else(|| StreamError::reply("XREADGROUP", &reply))?,
            );
        }
        Ok(entries)
    }

    /// Takes up to `count` records that stayed unacknowledged for
    /// `min_idle` (their consumer died, or is stuck), from `start` on.
    pub(crate) async fn claim(
        &self,
        consumer: &str,
        min_idle: Duration,
        start: &str,
        count: usize,
    ) -> Result<Claimed, StreamError> {
        let mut claim = redis::cmd("XAUTOCLAIM");
        claim
            .arg(&self.key)
            .arg(GROUP)
            .arg(consumer)
            .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
            .arg(start)
            .arg("COUNT")
            .arg(count);
        let reply = command::run(&self.cache, "XAUTOCLAIM", &self.key, &claim).await?;
        let parsed = match &reply {
            Value::Array(parts) => match parts.as_slice() {
                [next, entries, rest @ ..] => {
                    text(next)
                        .zip(parse_entries(entries))
                        .map(|(next, entries)| Claimed {
                            next,
                            entries,
                            deleted: rest
                                .first()
                                .and_then(|deleted| match deleted {
                                    Value::Array(ids) => {
                                        Some(ids.iter().filter_map(text).collect())
                                    }
                                    _ => None,
                                })
                                .unwrap_or_default(),
                        })
                }
                _ => None,
            },
            _ => None,
        };
        parsed.ok_or_else(|| StreamError::reply("XAUTOCLAIM", &reply))
    }

    /// Removes the group's consumers that hold no record and were idle for
    /// `min_idle` (flushers that ended; a live one that is removed comes
    /// back with its next read), never one that holds a record when it is
    /// removed; how many.
    pub(crate) async fn prune_consumers(
        &self,
        me: &str,
        min_idle: Duration,
    ) -> Result<usize, StreamError> {
        let mut info = redis::cmd("XINFO");
        info.arg("CONSUMERS").arg(&self.key).arg(GROUP);
        let reply = command::run(&self.cache, "XINFO", &self.key, &info).await?;
        let ended = ended_consumers(&reply, me, min_idle)
            .ok_or_else(|| StreamError::reply("XINFO", &reply))?;
        let mut removed = 0;
        for name in &ended {
            let mut delete = DELETE_CONSUMER.key(&self.key);
            delete.arg(GROUP).arg(name.as_str());
            // It may have read records since `XINFO`: then it stays.
            if command::invoke(&self.cache, "XGROUP", &self.key, &delete).await? != Value::Int(-1) {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Acknowledges and deletes records written to Cassandra, in chunks
    /// that Lua's `unpack` can take.
    pub(crate) async fn ack(&self, ids: &[String]) -> Result<(), StreamError> {
        for chunk in ids.chunks(ACK_CHUNK) {
            let mut call = ACK.key(&self.key);
            call.arg(GROUP);
            for id in chunk {
                call.arg(id.as_str());
            }
            command::invoke(&self.cache, "XACK", &self.key, &call).await?;
        }
        Ok(())
    }

    /// Copies a record that cannot be written to the dead-letter stream,
    /// with its id and why; the caller acknowledges it afterwards.
    pub(crate) async fn dead_letter(
        &self,
        entry: &StreamEntry,
        reason: &str,
    ) -> Result<(), StreamError> {
        // Never trimmed: a dead letter is a write Cassandra does not have.
        let mut add = redis::cmd("XADD");
        add.arg(&self.dead)
            .arg("*")
            .arg("id")
            .arg(&entry.id)
            .arg("error")
            .arg(reason);
        for (name, value) in &entry.fields {
            add.arg(name.as_slice()).arg(value.as_slice());
        }
        command::run(&self.cache, "XADD", &self.dead, &add).await?;
        Ok(())
    }

    /// Keeps `ids`, which `consumer` holds, from looking idle (`XCLAIM`
    /// with `JUSTID` resets their idle time): a record being retried is
    /// not another flusher's to take over.
    pub(crate) async fn touch(&self, consumer: &str, ids: &[String]) -> Result<(), StreamError> {
        for chunk in ids.chunks(ACK_CHUNK) {
            let mut claim = redis::cmd("XCLAIM");
            claim.arg(&self.key).arg(GROUP).arg(consumer).arg(0);
            for id in chunk {
                claim.arg(id.as_str());
            }
            claim.arg("JUSTID");
            command::run(&self.cache, "XCLAIM", &self.key, &claim).await?;
        }
        Ok(())
    }

    /// How many dead letters there are.
    pub(crate) async fn dead_len(&self) -> Result<u64, StreamError> {
        let length = command::run(
            &self.cache,
            "XLEN",
            &self.dead,
            redis::cmd("XLEN").arg(&self.dead),
        )
        .await?;
        match length {
            Value::Int(length) => Ok(u64::try_from(length).unwrap_or(0)),
            reply => Err(StreamError::reply("XLEN", &reply)),
        }
    }

    /// Moves every dead letter back into the stream; how many. Each is
    /// appended before it is deleted (the two streams may live on two
    /// Cluster nodes): a failure between the two leaves it twice, to be
    /// written twice with one timestamp (harmless), never lost.
    ///
    /// One replay runs at a time (a lease at `{dead}:replay`): two at once
    /// would both copy each letter they read, and letters that go dead
    /// again would double with every round. A call that finds another
    /// replaying waits for it, then moves what is left.
    pub(crate) async fn replay_dead(&self) -> Result<u64, StreamError> {
        let lease = format!("{}:replay", self.dead);
        let token = format!("{:016x}", fastrand::u64(..));
        let mut moved = 0;
        loop {
            // Taken or renewed before each chunk, so that it outlives a
            // chunk however long the replay.
            let mut take = LEASE.key(&lease);
            take.arg(token.as_str()).arg(REPLAY_LEASE_MS);
            if command::invoke(&self.cache, "SET", &lease, &take).await? != Value::Int(1) {
                tokio::time::sleep(REPLAY_WAIT).await;
                continue;
            }
            let count = self.replay_chunk().await?;
            moved += count;
            if count < REPLAY_CHUNK as u64 {
                let mut release = RELEASE.key(&lease);
                release.arg(token.as_str());
                // Left to expire if this fails.
                let _ = command::invoke(&self.cache, "DEL", &lease, &release).await;
                return Ok(moved);
            }
        }
    }

    /// The oldest dead letters moved back; how many.
    async fn replay_chunk(&self) -> Result<u64, StreamError> {
        let mut range = redis::cmd("XRANGE");
        range
            .arg(&self.dead)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(REPLAY_CHUNK);
        let reply = command::run(&self.cache, "XRANGE", &self.dead, &range).await?;
        let letters = parse_entries(&reply).ok_or_else(|| StreamError::reply("XRANGE", &reply))?;
        for letter in &letters {
            let fields: Vec<(String, Vec<u8>)> = letter
                .fields
                .iter()
                .filter(|(name, _)| name != b"id" && name != b"error")
                .map(|(name, value)| (String::from_utf8_lossy(name).into_owned(), value.clone()))
                .collect();
            if !fields.is_empty() {
                let mut add = redis::cmd("XADD");
                add.arg(&self.key).arg("*");
                for (name, value) in &fields {
                    add.arg(name.as_str()).arg(value.as_slice());
                }
                command::run(&self.cache, "XADD", &self.key, &add).await?;
            }
            let mut delete = redis::cmd("XDEL");
            delete.arg(&self.dead).arg(&letter.id);
            command::run(&self.cache, "XDEL", &self.dead, &delete).await?;
        }
        Ok(letters.len() as u64)
    }

    /// How many records wait, and the timestamp of the oldest.
    pub(crate) async fn backlog(&self) -> Result<(u64, Option<i64>), StreamError> {
        let length = command::run(
            &self.cache,
            "XLEN",
            &self.key,
            redis::cmd("XLEN").arg(&self.key),
        )
        .await?;
        let pending = match length {
            Value::Int(length) => u64::try_from(length).unwrap_or(0),
            reply => return Err(StreamError::reply("XLEN", &reply)),
        };
        if pending == 0 {
            return Ok((0, None));
        }
        let mut first = redis::cmd("XRANGE");
        first.arg(&self.key).arg("-").arg("+").arg("COUNT").arg(1);
        let reply = command::run(&self.cache, "XRANGE", &self.key, &first).await?;
        let entries = parse_entries(&reply).ok_or_else(|| StreamError::reply("XRANGE", &reply))?;
        // A first entry with no timestamp of its own (bytes someone else
        // appended) is as old as its id says.
        let oldest = entries
            .first()
            .and_then(|entry| record::timestamp(&entry.fields).or_else(|| appended_at(&entry.id)));
        Ok((pending, oldest))
    }
}

/// When an entry was appended (µs), from its id `{ms}-{seq}`.
fn appended_at(id: &str) -> Option<i64> {
    let millis: i64 = id.split_once('-')?.0.parse().ok()?;
    millis.checked_mul(1000)
}

/// The consumers in an `XINFO CONSUMERS` reply, other than `me`, that hold
/// no record and were idle for `min_idle`.
fn ended_consumers(reply: &Value, me: &str, min_idle: Duration) -> Option<Vec<String>> {
    let Value::Array(consumers) = reply else {
        return None;
    };
    let min_idle = i64::try_from(min_idle.as_millis()).unwrap_or(i64::MAX);
    let mut ended = Vec::new();
    for consumer in consumers {
        let fields: Vec<(&Value, &Value)> = match consumer {
            Value::Array(flat) => flat
                .chunks(2)
                .filter_map(|pair| match pair {
                    [name, value] => Some((name, value)),
                    _ => None,
                })
                .collect(),
            Value::Map(pairs) => pairs.iter().map(|(name, value)| (name, value)).collect(),
            _ => continue,
        };
        let field = |wanted: &str| {
            fields
                .iter()
                .find(|(name, _)| text(name).as_deref() == Some(wanted))
                .map(|(_, value)| *value)
        };
        if let (Some(name), Some(Value::Int(0)), Some(Value::Int(idle))) = (
            field("name").and_then(text),
            field("pending"),
            field("idle"),
        ) && name != me
            && *idle >= min_idle
        {
            ended.push(name);
        }
    }
    Some(ended)
}

/// A reply that is text: a bulk or simple string.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::SimpleString(text) => Some(text.clone().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.clone().into_bytes()),
        _ => None,
    }
}

/// `[[id, [field, value, …]], …]`. An entry given as nil (deleted while
/// pending, on Redis 6.2) is skipped.
fn parse_entries(value: &Value) -> Option<Vec<StreamEntry>> {
    let Value::Array(items) = value else {
        return matches!(value, Value::Nil).then(Vec::new);
    };
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(pair) = item else {
            continue;
        };
        let [id, fields] = pair.as_slice() else {
            return None;
        };
        let fields = match fields {
            Value::Array(flat) => flat
                .chunks(2)
                .map(|pair| match pair {
                    [name, value] => bytes(name).zip(bytes(value)),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
            Value::Map(pairs) => pairs
                .iter()
                .map(|(name, value)| bytes(name).zip(bytes(value)))
                .collect::<Option<Vec<_>>>()?,
            Value::Nil => continue,
            _ => return None,
        };
        entries.push(StreamEntry {
            id: text(id)?,
            fields,
        });
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn ended_consumers_are_idle_and_hold_nothing() {
        let consumer = |name: &str, pending: i64, idle: i64| {
            Value::Array(vec![
                bulk("name"),
                bulk(name),
                bulk("pending"),
                Value::Int(pending),
                bulk("idle"),
                Value::Int(idle),
            ])
        };
        let reply = Value::Array(vec![
            consumer("me", 0, 900_000),
            consumer("ended", 0, 900_000),
            consumer("holding", 3, 900_000),
            consumer("recent", 0, 10),
            Value::Int(7),
        ]);
        let ended = ended_consumers(&reply, "me", Duration::from_secs(300));
        assert_eq!(ended, Some(vec!["ended".to_owned()]));
        assert_eq!(ended_consumers(&Value::Nil, "me", Duration::ZERO), None);
    }

    #[test]
    fn ids_date_their_entries() {
        assert_eq!(appended_at("1700000000000-3"), Some(1_700_000_000_000_000));
        for odd in ["", "x-1", "12", "99999999999999999999-0"] {
            assert_eq!(appended_at(odd), None, "{odd}");
        }
    }

    #[test]
    fn entries_parse_and_odd_shapes_do_not_panic() {
        let reply = Value::Array(vec![
            Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("t"), bulk("5")])]),
            Value::Nil,
            Value::Array(vec![bulk("2-0"), Value::Nil]),
        ]);
        let entries = parse_entries(&reply).expect("entries");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].id, "1-0");
        assert_eq!(record::timestamp(&entries[0].fields), Some(5));
        assert!(parse_entries(&Value::Array(vec![Value::Array(vec![bulk("x")])])).is_none());
        assert!(parse_entries(&Value::Int(3)).is_none());
        assert_eq!(parse_entries(&Value::Nil).map(|e| e.len()), Some(0));
        let odd = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("t")]),
        ])]);
        assert!(parse_entries(&odd).is_none());
    }
}
