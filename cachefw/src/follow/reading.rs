//! The follower's loop and its stream commands, through the cache's own
//! connection and breakers (see the parent module for the protocol).

use std::sync::Weak;
use std::time::Instant;

use redis::Value;

use super::{Apply, BATCH, CLAIM_EVERY, CLAIM_IDLE, Fields, IDLE_POLL, Verdict, backoff, upgrade};
use crate::cache::{Cache, Handle};
use crate::command;
use crate::error::Error;

/// One follower of one stream, as one consumer of its group.
pub(super) struct Follower {
    pub(super) handle: Weak<Handle>,
    pub(super) closing: tokio::sync::watch::Receiver<bool>,
    pub(super) stream: String,
    pub(super) group: String,
    pub(super) consumer: String,
    pub(super) apply: Apply,
    pub(super) group_made: bool,
}

/// Where the walk over pending entries is, and when it last ran.
struct Claims {
    cursor: String,
    last: Option<Instant>,
}

impl Follower {
    pub(super) async fn run(mut self) {
        let mut failures = 0u32;
        // At start the pending entries of consumers gone (a previous run of
        // this process, a crashed one) are taken over as soon as idle.
        let mut claims = Claims {
            cursor: "0-0".to_owned(),
            last: None,
        };
        loop {
            if *self.closing.borrow() {
                return;
            }
            let Some(cache) = upgrade(&self.handle) else {
                return;
            };
            let step = self.step(&cache, &mut claims).await;
            drop(cache);
            let pause = match step {
                Ok(true) => {
                    failures = 0;
                    tokio::task::yield_now().await;
                    continue;
                }
                Ok(false) => {
                    failures = 0;
                    IDLE_POLL
                }
                Err(error) => {
                    if matches!(&error, Error::Redis { source, .. } if source.code() == Some("NOGROUP"))
                    {
                        // Redis lost its data (a restart without
                        // persistence): the group is made again.
                        self.group_made = false;
                    }
                    failures = failures.saturating_add(1);
                    backoff(failures)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                // Shut down, or the last handle dropped: checked above.
                _ = self.closing.changed() => {}
            }
        }
    }

    /// One round: pending entries to take over (now and then), then new
    /// ones. Whether new entries were read (so more may be waiting).
    async fn step(&mut self, cache: &Cache, claims: &mut Claims) -> Result<bool, Error> {
        if !self.group_made {
            create_group(cache, &self.stream, &self.group).await?;
            self.group_made = true;
        }
        if claims.last.is_none_or(|last| last.elapsed() >= CLAIM_EVERY) {
            claims.last = Some(Instant::now());
            let (next, entries) = self.claim(cache, &claims.cursor).await?;
            claims.cursor = next;
            self.process(cache, entries).await?;
        }
        let entries = self.read_new(cache).await?;
        let read = !entries.is_empty();
        self.process(cache, entries).await?;
        Ok(read)
    }

    /// Applies `entries` in order and acknowledges those applied or
    /// unreadable.
    async fn process(&self, cache: &Cache, entries: Vec<(String, Fields)>) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut done = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            match (self.apply)(cache.clone(), fields).await {
                Verdict::Applied => done.push(id),
                Verdict::Unreadable(reason) => {
                    // Counted in `errors` and logged (rate-limited) as an
                    // entry that does not decode.
                    cache.inner().failure(&Error::Decode {
                        key: format!("{} {id}", self.stream),
                        reason: format!("stream entry skipped: {reason}"),
                    });
                    done.push(id);
                }
                Verdict::Retry => {}
            }
        }
        if done.is_empty() {
            return Ok(());
        }
        let mut ack = redis::cmd("XACK");
        ack.arg(&self.stream).arg(&self.group);
        for id in &done {
            ack.arg(id.as_str());
        }
        command::run(cache, "XACK", &self.stream, &ack).await?;
        Ok(())
    }

    async fn read_new(&self, cache: &Cache) -> Result<Vec<(String, Fields)>, Error> {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(BATCH)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">");
        let reply = command::run(cache, "XREADGROUP", &self.stream, &read).await?;
        let streams: Vec<&Value> = match &reply {
            Value::Nil => return Ok(Vec::new()),
            Value::Array(streams) => streams
                .iter()
                .filter_map(|stream| match stream {
                    Value::Array(pair) => pair.get(1),
                    _ => None,
                })
                .collect(),
            Value::Map(streams) => streams.iter().map(|(_, entries)| entries).collect(),
            _ => return Err(unexpected("XREADGROUP", &self.stream, &reply)),
        };
        let mut entries = Vec::new();
        for stream in streams {
            entries.extend(
                parse_entries(stream)
                    .ok_or_else(|| unexpected("XREADGROUP", &self.stream, &reply))?,
            );
        }
        Ok(entries)
    }

    /// Up to [`BATCH`] entries pending for [`CLAIM_IDLE`], from `cursor`
    /// on, now this consumer's; and where the next walk starts.
    async fn claim(
        &self,
        cache: &Cache,
        cursor: &str,
    ) -> Result<(String, Vec<(String, Fields)>), Error> {
        let mut claim = redis::cmd("XAUTOCLAIM");
        claim
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(u64::try_from(CLAIM_IDLE.as_millis()).unwrap_or(u64::MAX))
            .arg(cursor)
            .arg("COUNT")
            .arg(BATCH);
        let reply = command::run(cache, "XAUTOCLAIM", &self.stream, &claim).await?;
        match &reply {
            Value::Array(parts) => match parts.as_slice() {
                [next, entries, ..] => text(next)
                    .zip(parse_entries(entries))
                    .ok_or_else(|| unexpected("XAUTOCLAIM", &self.stream, &reply)),
                _ => Err(unexpected("XAUTOCLAIM", &self.stream, &reply)),
            },
            _ => Err(unexpected("XAUTOCLAIM", &self.stream, &reply)),
        }
    }
}

/// Makes `group` on `stream` (and the stream) unless it exists, reading
/// from the stream's first entry.
pub(super) async fn create_group(cache: &Cache, stream: &str, group: &str) -> Result<(), Error> {
    let mut create = redis::cmd("XGROUP");
    create
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM");
    match command::run(cache, "XGROUP", stream, &create).await {
        Ok(_) => Ok(()),
        Err(Error::Redis { source, .. }) if source.code() == Some("BUSYGROUP") => Ok(()),
        Err(error) => Err(error),
    }
}

fn unexpected(op: &'static str, stream: &str, reply: &Value) -> Error {
    Error::Decode {
        key: stream.to_owned(),
        reason: format!("unexpected reply to {op}: {reply:?}"),
    }
}

/// Entries as `XREADGROUP` and `XAUTOCLAIM` give them: `[[id, [f, v, …]], …]`.
/// An entry deleted while pending (`[id, nil]`) has no fields.
fn parse_entries(value: &Value) -> Option<Vec<(String, Fields)>> {
    let Value::Array(entries) = value else {
        return Some(Vec::new()).filter(|_| matches!(value, Value::Nil));
    };
    entries
        .iter()
        .map(|entry| {
            let Value::Array(pair) = entry else {
                return None;
            };
            let id = text(pair.first()?)?;
            let fields = match pair.get(1) {
                Some(Value::Array(flat)) => flat
                    .chunks(2)
                    .map(|pair| match pair {
                        [name, value] => Some((bytes(name)?, bytes(value)?)),
                        _ => None,
                    })
                    .collect::<Option<Fields>>()?,
                Some(Value::Map(map)) => map
                    .iter()
                    .map(|(name, value)| Some((bytes(name)?, bytes(value)?)))
                    .collect::<Option<Fields>>()?,
                _ => Vec::new(),
            };
            Some((id, fields))
        })
        .collect()
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::SimpleString(text) => Some(text.clone().into_bytes()),
        Value::Int(number) => Some(number.to_string().into_bytes()),
        _ => None,
    }
}

/// A reply that is text (an id).
pub(super) fn text(value: &Value) -> Option<String> {
    bytes(value).and_then(|bytes| String::from_utf8(bytes).ok())
}
