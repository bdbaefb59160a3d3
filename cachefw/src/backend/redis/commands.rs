//! The commands: reads, writes and deletions of entries, prefix
//! evictions, and pings; each through its node's breaker (`run.rs`).
//!
//! Entries are read with `GETRANGE key 0 max`, so that Redis never sends
//! more than `max_value_size + 1` bytes of a value: a larger one is a miss
//! that is never read in full.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisResult};

use super::connection::{Node, timed_out};
use super::run::outcome_of;
use super::{RedisBackend, Topology};
use crate::backend::breaker::Verdict;
use crate::error::{Error, RedisFailure};
use crate::slots::slot_of;

/// Keys per `UNLINK` in batch and prefix evictions, and the `COUNT` hint of
/// each `SCAN` step.
const BATCH: usize = 500;

/// `error` again, for another key of the same failed command (errors of
/// the Redis client are not `Clone`-able into ours directly).
fn copy_error(error: &Error, key: &str) -> Error {
    match error {
        Error::Timeout { op, after, .. } => Error::Timeout {
            op,
            key: key.to_owned(),
            after: *after,
        },
        Error::Unavailable { op, retry_in, .. } => Error::Unavailable {
            op,
            key: key.to_owned(),
            retry_in: *retry_in,
        },
        Error::Redis { op, source, .. } => Error::Redis {
            op,
            key: key.to_owned(),
            source: RedisFailure {
                error: source.error.clone(),
                outage: source.outage,
            },
        },
        other => Error::Redis {
            op: "GETRANGE",
            key: key.to_owned(),
            source: RedisFailure {
                error: RedisError::from((
                    ErrorKind::Client,
                    "batch read failed",
                    other.to_string(),
                )),
                outage: other.is_outage(),
            },
        },
    }
}

impl RedisBackend {
    /// One round trip, to open the connection now rather than on the first
    /// command; on a cluster, the slot layout is read first.
    pub(crate) async fn ping(&self) -> Result<(), Error> {
        if let Topology::Cluster(cluster) = &self.topology
            && cluster.topology.load().layout.is_none()
            && !cluster.read_layout().await
        {
            cluster.refresh();
        }
        self.query("PING", "", &redis::cmd("PING")).await
    }

    /// One real `PING` of every server (every known primary of a cluster),
    /// whatever the breakers say, each bounded by the timeout; the slowest
    /// round trip. The breakers are left as they are: a readiness probe
    /// must not decide for the calls.
    pub(crate) async fn ping_now(&self) -> Result<Duration, Error> {
        let nodes: Vec<Arc<Node>> = match &self.topology {
            Topology::Single(node) => vec![node.clone()],
            Topology::Cluster(cluster) => cluster.topology.load().nodes.clone(),
        };
        let pings = nodes.iter().map(|node| async move {
            let started = Instant::now();
            let attempt = async {
                let (mut conn, id) = node.connection(self.timeout).await?;
                let result = redis::cmd("PING").query_async::<()>(&mut conn).await;
                if let Err(error) = &result
                    && outcome_of(error) != Verdict::Answered
                {
                    node.discard(id);
                }
                result
            };
            tokio::time::timeout(self.timeout, attempt)
                .await
                .unwrap_or_else(|_| Err(timed_out()))
                .map(|()| started.elapsed())
                .map_err(|source| self.error_of("PING", &node.name, source))
        });
        let mut slowest = Duration::ZERO;
        for result in futures_util::future::join_all(pings).await {
            slowest = slowest.max(result?);
        }
        Ok(slowest)
    }

    /// The value at `key`; [`Error::ValueTooLarge`] for a value larger than
    /// `max_value_size`, of which Redis sends no more than one byte past the
    /// limit (`GETRANGE`, as cheap as `GET` for Redis: no script). A
    /// missing key reads as empty, which no cachefw value is: `None`.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        // Sized once: the arguments never reallocate the command's buffer.
        let mut command = Cmd::with_capacity(4, key.len() + 32);
        command.arg("GETRANGE").arg(key).arg(0).arg(self.read_end);
        let reply: Vec<u8> = self.query("GETRANGE", key, &command).await?;
        self.bounded(key, reply)
    }

    pub(crate) async fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), Error> {
        let mut command = redis::cmd("SET");
        command.arg(key).arg(value).arg("PX").arg(ttl_ms);
        self.query("SET", key, &command).await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, Error> {
        let removed: u64 = self
            .query("UNLINK", key, redis::cmd("UNLINK").arg(key))
            .await?;
        Ok(removed > 0)
    }

    /// `UNLINK`s every key, in batches; on a cluster, one batch per slot
    /// (a command's keys must share one), each through its node's breaker,
    /// all sent at once on the nodes' multiplexed connections. The first
    /// failure is returned after every batch was tried.
    pub(crate) async fn delete_many(&self, keys: &[String]) -> Result<u64, Error> {
        let cluster = matches!(self.topology, Topology::Cluster(_));
        let mut groups: Vec<(u16, Vec<&String>)> = Vec::new();
        for key in keys {
            let slot = if cluster { slot_of(key.as_bytes()) } else { 0 };
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, group)) => group.push(key),
                None => groups.push((slot, vec![key])),
            }
        }
        let batches = groups
            .iter()
            .flat_map(|(_, group)| group.chunks(BATCH))
            .map(|batch| async move {
                let first = batch.first().map_or("", |key| key.as_str());
                let node = self.node_for(first);
                let mut command = redis::cmd("UNLINK");
                command.arg(batch);
                let command = &command;
                self.run("UNLINK", first, &node, |mut conn| async move {
                    command.query_async::<u64>(&mut conn).await
                })
                .await
            });
        let mut removed = 0;
        let mut failure = None;
        for result in futures_util::future::join_all(batches).await {
            match result {
                Ok(count) => removed += count,
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(removed),
        }
    }

    /// The bytes at each key, by pipelined `GETRANGE key 0 max` (as `get`:
    /// `MGET` could not bound the size of a reply): one pipeline per node
    /// (per slot on a cluster, where a pipeline is sent to one node),
    /// batched, all sent at once on the multiplexed connection. A value
    /// larger than `max_value_size` is [`Error::ValueTooLarge`] for its key,
    /// and an error answer (`WRONGTYPE`) is that key's alone; a group that
    /// fails answers its error for each of its keys.
    pub(crate) async fn get_many(&self, keys: &[String]) -> Vec<Result<Option<Bytes>, Error>> {
        let cluster = matches!(self.topology, Topology::Cluster(_));
        // Groups of key indexes, by slot on a cluster (all keys of one
        // Redis form one group).
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
        for (at, key) in keys.iter().enumerate() {
            let slot = if cluster { slot_of(key.as_bytes()) } else { 0 };
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, group)) => group.push(at),
                None => groups.push((slot, vec![at])),
            }
        }
        let batches = groups
            .iter()
            .flat_map(|(_, group)| group.chunks(BATCH))
            .map(|batch| async move {
                let first = keys[batch[0]].as_str();
                let node = self.node_for(first);
                let mut pipeline = Pipeline::with_capacity(batch.len());
                pipeline.ignore_errors();
                for at in batch {
                    pipeline
                        .cmd("GETRANGE")
                        .arg(keys[*at].as_str())
                        .arg(0)
                        .arg(self.read_end);
                }
                let pipeline = &pipeline;
                let reply = self
                    .run("GETRANGE", first, &node, |mut conn| async move {
                        let mut values = pipeline
                            .query_async::<Vec<RedisResult<Vec<u8>>>>(&mut conn)
                            .await?;
                        // The keys share a slot: a redirect of one is a
                        // redirect of the batch, to follow as one.
                        match values.first_mut() {
                            Some(Err(error)) if error.redirect_node().is_some() => {
                                Err(std::mem::replace(error, timed_out()))
                            }
                            _ => Ok(values),
                        }
                    })
                    .await;
                (batch, reply)
            });
        let mut found: Vec<Result<Option<Bytes>, Error>> = keys.iter().map(|_| Ok(None)).collect();
        for (batch, reply) in futures_util::future::join_all(batches).await {
            match reply {
                Ok(values) if values.len() == batch.len() => {
                    for (at, value) in batch.iter().zip(values) {
                        let key = &keys[*at];
                        found[*at] = match value {
                            Ok(value) => self.bounded(key, value),
                            Err(error) => Err(Error::Redis {
                                op: "GETRANGE",
                                key: key.clone(),
                                source: RedisFailure {
                                    outage: outcome_of(&error) != Verdict::Answered,
                                    error,
                                },
                            }),
                        };
                    }
                }
                Ok(values) => {
                    for at in batch {
                        found[*at] = Err(Error::Redis {
                            op: "GETRANGE",
                            key: keys[*at].clone(),
                            source: RedisFailure {
                                error: RedisError::from((
                                    ErrorKind::Parse,
                                    "a GETRANGE pipeline answered a reply of another length",
                                    format!("{} values for {} keys", values.len(), batch.len()),
                                )),
                                outage: false,
                            },
                        });
                    }
                }
                Err(error) => {
                    for at in batch {
                        found[*at] = Err(copy_error(&error, &keys[*at]));
                    }
                }
            }
        }
        found
    }

    /// A `GETRANGE key 0 max` reply: empty is a missing key (no cachefw
    /// value is empty), longer than `max_value_size` a value too large.
    fn bounded(&self, key: &str, reply: Vec<u8>) -> Result<Option<Bytes>, Error> {
        if reply.is_empty() {
            return Ok(None);
        }
        if reply.len() as u64 > self.max_value_size {
            return Err(Error::ValueTooLarge {
                key: key.to_owned(),
                size: None,
                max: self.max_value_size,
            });
        }
        Ok(Some(Bytes::from(reply)))
    }

    /// `SCAN`s for every key starting with `prefix` and `UNLINK`s what it
    /// finds, batch by batch, so a large keyspace never blocks Redis the way
    /// `KEYS` would. On a cluster every primary that holds slots is scanned;
    /// one that cannot be reached makes the result a
    /// [`Error::PartialEviction`] naming it.
    pub(crate) async fn evict_prefix(&self, prefix: &str) -> Result<u64, Error> {
        let pattern = scan_pattern(prefix);
        let Topology::Cluster(_) = &self.topology else {
            return self.evict_on(&pattern, None).await;
        };
        let mut removed = 0;
        let mut unreachable = Vec::new();
        for (name, reachable) in self.primaries(&pattern).await? {
            if !reachable {
                unreachable.push(name);
                continue;
            }
            match self.evict_on(&pattern, Some(&name)).await {
                Ok(count) => removed += count,
                Err(_) => unreachable.push(name),
            }
        }
        if unreachable.is_empty() {
            Ok(removed)
        } else {
            Err(Error::PartialEviction {
                prefix: prefix.to_owned(),
                removed,
                unreachable,
            })
        }
    }

    /// The cluster's primaries that serve slots, `host:port`, and whether
    /// the cluster believes each reachable (not flagged `fail`).
    async fn primaries(&self, pattern: &str) -> Result<Vec<(String, bool)>, Error> {
        let nodes: String = self
            .query("CLUSTER NODES", pattern, redis::cmd("CLUSTER").arg("NODES"))
            .await?;
        Ok(nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let address = fields.get(1)?.split('@').next()?;
                let flags = fields.get(2)?;
                let serves_slots = fields.len() > 8;
                if !flags.split(',').any(|f| f == "master") || !serves_slots {
                    return None;
                }
                let failed = flags.split(',').any(|f| f == "fail" || f == "fail?");
                Some((address.to_owned(), !failed))
            })
            .collect())
    }

    /// `SCAN`s one node (all of a single Redis when `node` is `None`) and
    /// `UNLINK`s what it finds, batch by batch.
    async fn evict_on(&self, pattern: &str, node: Option<&str>) -> Result<u64, Error> {
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(BATCH);
            let (next, keys): (u64, Vec<String>) = match node {
                None => self.query("SCAN", pattern, &scan).await?,
                Some(address) => {
                    let node = self.node_named(address);
                    let scan = &scan;
                    self.run("SCAN", pattern, &node, |mut conn| async move {
                        scan.query_async(&mut conn).await
                    })
                    .await?
                }
            };
            if !keys.is_empty() {
                removed += self.delete_many(&keys).await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}

/// A `SCAN MATCH` pattern for every key starting with `prefix`, taken
/// literally: glob characters in it only match themselves.
fn scan_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 8);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_patterns_escape_globs() {
        assert_eq!(scan_pattern(r"s*p:v3:a*b?[c]\"), r"s\*p:v3:a\*b\?\[c\]\\*");
        assert_eq!(scan_pattern(""), "*");
    }
}
