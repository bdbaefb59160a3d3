//! The Redis backend: commands, and what their errors mean.
//!
//! One Redis is reached through one multiplexed connection
//! (`connection.rs`), shared by every command and replaced as soon as it
//! fails: after a restart, a failover (the old primary answers `READONLY`;
//! a fresh connection finds whatever the URL's host now names), or a
//! timeout. A Redis Cluster is routed by cachefw itself (`cluster.rs`): one
//! such connection per node, the slot layout read with `CLUSTER SLOTS`,
//! `MOVED` and `ASK` followed.
//!
//! Every command goes through the circuit breaker of the node that holds its
//! key (one for a single Redis, one per primary on a cluster), so one dead
//! primary sends only its own keys to the loaders.
//!
//! `rediss://` connects over TLS (rustls, with the `ring` provider) and
//! never falls back to plain text; the system roots are trusted unless the
//! builder gives a CA. Entries are read with `GETRANGE key 0 max`, so that
//! Redis never sends more than `max_value_size + 1` bytes of a value: a
//! larger one is a miss that is never read in full.

mod cluster;
mod connection;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionInfo, ErrorKind, FromRedisValue,
    IntoConnectionInfo, Pipeline, RedisError, RedisResult, Script, ServerErrorKind,
    TlsCertificates, Value,
};

use crate::backend::breaker::{BreakerState, Outcome, Rules};
use crate::backend::scripts;
use crate::backend::versioned_key::VersionedKey;
use crate::codec::{CLAIM_AT, ENTRY_HEADER_LEN, LEASE_TAG_BYTE, NONCE_AT};
use crate::error::{Error, RedisFailure};
use crate::slots::slot_of;
use cluster::{CLUSTER_DOWN_RETRY, Cluster, MAX_REDIRECTS};
use connection::{Node, timed_out};

/// Keys per `UNLINK` in batch and prefix evictions, and the `COUNT` hint of
/// each `SCAN` step.
const BATCH: usize = 500;

/// What the server's answer or the connection's failure means for the
/// breaker.
fn outcome_of(error: &RedisError) -> Outcome {
    match error.kind() {
        // This server cannot serve us now: it became a replica in a
        // failover, is loading its data, or lost its primary.
        ErrorKind::Server(
            ServerErrorKind::ReadOnly | ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown,
        ) => Outcome::Refused,
        ErrorKind::Server(ServerErrorKind::ClusterDown | ServerErrorKind::TryAgain)
        | ErrorKind::Io
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::AuthenticationFailed => Outcome::Failed,
        // The server wants credentials it was not given, or refuses them
        // (a password rotated under a running cache): it serves us nothing.
        _ if matches!(error.code(), Some("NOAUTH" | "WRONGPASS")) => Outcome::Failed,
        // An answer about the command itself (`WRONGTYPE`, `OOM`, `NOSCRIPT`
        // after its reload failed, a reply that does not convert): Redis is
        // up, and the breaker stays out of it.
        _ if error.is_timeout() || error.is_connection_dropped() => Outcome::Failed,
        _ => Outcome::Answered,
    }
}

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

/// Where commands go.
enum Target {
    Single(Arc<Node>),
    Cluster(Arc<Cluster>),
}

/// The node a command goes to: borrowed for one Redis, counted for a
/// cluster (whose layout may be replaced meanwhile).
enum NodeRef<'a> {
    Single(&'a Arc<Node>),
    Cluster(Arc<Node>),
}

impl std::ops::Deref for NodeRef<'_> {
    type Target = Node;

    fn deref(&self) -> &Node {
        match self {
            Self::Single(node) => node,
            Self::Cluster(node) => node,
        }
    }
}

/// How to reach Redis: what the builder gives beyond the URLs.
pub(crate) struct Connect {
    /// The bound of one operation, and of making a connection.
    pub(crate) timeout: Duration,
    /// PEM: the CA to trust instead of the system roots.
    pub(crate) root_cert: Option<Vec<u8>>,
    /// PEM: the client certificate chain and its private key, for mTLS.
    pub(crate) client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// The ACL user (empty: the default user) and its password.
    pub(crate) credentials: Option<(String, String)>,
    /// The largest value read or written, in bytes.
    pub(crate) max_value_size: u64,
    /// What every node's breaker shares: the builder's settings.
    pub(crate) breaker: Arc<Rules>,
}

impl Connect {
    fn certificates(&self) -> Option<TlsCertificates> {
        if self.root_cert.is_none() && self.client_cert.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: self
                .client_cert
                .as_ref()
                .map(|(cert, key)| ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.root_cert.clone(),
        })
    }
}

pub(crate) struct RedisBackend {
    target: Target,
    timeout: Duration,
    /// The `GETRANGE` end that reads one byte more than the largest value:
    /// a reply longer than `max_value_size` is a value too large.
    max_value_size: u64,
    read_end: i64,
    /// The ACL user, for errors (never the password).
    user: Option<String>,
    /// What every node's breaker shares.
    rules: Arc<Rules>,
    acquire: Script,
    fill: Script,
    release: Script,
    claim: Script,
    fill_claimed: Script,
    unclaim: Script,
}

impl RedisBackend {
    /// Prepares a connection to the Redis at `url` without opening it, so a
    /// Redis that is down at start leaves the cache degraded rather than
    /// failing.
    pub(crate) fn new(url: &str, connect: &Connect) -> Result<Self, Error> {
        let name = node_name(url)?;
        let client = client_for(url, connect)?;
        let node = Node::new(name, client, connect.timeout, &connect.breaker);
        Ok(Self::with_target(Target::Single(node), connect))
    }

    /// Parses the cluster's seed node URLs; connects on first use.
    pub(crate) fn cluster(nodes: &[String], connect: &Connect) -> Result<Self, Error> {
        let masked = || {
            nodes
                .iter()
                .map(|node| mask_password(node))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut seeds = Vec::with_capacity(nodes.len());
        for node in nodes {
            let name = node_name(node)?;
            seeds.push((name, client_for(node, connect)?));
        }
        let tls = nodes.iter().map(|node| is_tls(node)).collect::<Vec<_>>();
        if tls.iter().any(|t| *t) && !tls.iter().all(|t| *t) {
            return Err(Error::InvalidUrl {
                url: masked(),
                reason: "the seed nodes mix rediss:// and redis://: a cluster is reached over \
                         TLS or not, never both"
                    .to_owned(),
            });
        }
        let cluster =
            Cluster::new(seeds, connect.timeout, connect.breaker.clone()).ok_or_else(|| {
                Error::InvalidUrl {
                    url: masked(),
                    reason: "no seed node".to_owned(),
                }
            })?;
        Ok(Self::with_target(
            Target::Cluster(Arc::new(cluster)),
            connect,
        ))
    }

    fn with_target(target: Target, connect: &Connect) -> Self {
        // The user of the credentials, or the URL's.
        let client = match &target {
            Target::Single(node) => Some(node.client()),
            Target::Cluster(cluster) => cluster.seeds.first().map(|(_, client)| client),
        };
        let user = client
            .and_then(|client| client.get_connection_info().redis_settings().username())
            .map(str::to_owned);
        Self {
            target,
            timeout: connect.timeout,
            max_value_size: connect.max_value_size,
            read_end: i64::try_from(connect.max_value_size).unwrap_or(i64::MAX - 1),
            user,
            rules: connect.breaker.clone(),
            acquire: Script::new(scripts::ACQUIRE),
            fill: Script::new(scripts::FILL),
            release: Script::new(scripts::RELEASE),
            claim: Script::new(scripts::CLAIM),
            fill_claimed: Script::new(scripts::FILL_CLAIMED),
            unclaim: Script::new(scripts::UNCLAIM),
        }
    }

    /// Where the near tier's tracking links go.
    pub(crate) fn tracking_servers(&self) -> crate::near::tracking::Servers {
        match &self.target {
            Target::Single(node) => crate::near::tracking::Servers::Single(Box::new(
                node.client().get_connection_info().clone(),
            )),
            Target::Cluster(cluster) => crate::near::tracking::Servers::Cluster(
                cluster
                    .seeds
                    .iter()
                    .map(|(_, client)| client.get_connection_info().clone())
                    .collect(),
            ),
        }
    }

    /// What keeps the near tier's tracking link on the server the data
    /// connection talks to (see `near::tracking::Pairing`). A cluster's
    /// links follow the slot layout's addresses instead: its pairing is
    /// never told a server.
    pub(crate) fn pairing(&self) -> Arc<crate::near::tracking::Pairing> {
        match &self.target {
            Target::Single(node) => node.pairing(),
            Target::Cluster(_) => Arc::default(),
        }
    }

    /// Whether `error`, met by the first command, means the settings cannot
    /// work (a certificate that does not verify, credentials refused) rather
    /// than a Redis that is down: the error `build()` returns. A cluster's
    /// seed nodes are asked one by one.
    pub(crate) async fn misconfigured(&self, error: &Error) -> Option<Error> {
        match &self.target {
            Target::Single(node) => match error {
                Error::Redis { source, .. } => {
                    misconfigured(&source.error, &node.name, self.user.as_deref())
                }
                _ => None,
            },
            Target::Cluster(cluster) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                for (name, client) in &cluster.seeds {
                    let probe = async {
                        let mut conn = client
                            .get_multiplexed_async_connection_with_config(&config)
                            .await?;
                        redis::cmd("PING").query_async::<()>(&mut conn).await
                    };
                    match tokio::time::timeout(self.timeout, probe).await {
                        Ok(Err(error)) => {
                            if let Some(fatal) = misconfigured(&error, name, self.user.as_deref()) {
                                return Some(fatal);
                            }
                        }
                        // This seed answers: the cluster's trouble is not
                        // the settings.
                        Ok(Ok(())) => return None,
                        Err(_) => {}
                    }
                }
                None
            }
        }
    }

    /// While `on`, an open breaker lets only the replay of pending
    /// evictions probe (see `breaker.rs`). On one Redis only: on a cluster
    /// the evictions may all wait for one dead primary, and holding every
    /// node's breaker for them would keep the other primaries' reads from
    /// probing theirs (the replay still passes any open breaker there).
    pub(crate) fn replay_first(&self, on: bool) {
        if matches!(self.target, Target::Single(_)) {
            self.rules.replay_first(on);
        }
    }

    /// The breakers' state: the worst node's.
    pub(crate) fn breaker_state(&self) -> BreakerState {
        self.breaker_for().0
    }

    /// The breakers' state, the worst node's, and how long it has held
    /// (among the nodes in that state, the longest).
    pub(crate) fn breaker_for(&self) -> (BreakerState, Duration) {
        let rank = |state: BreakerState| match state {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        };
        match &self.target {
            Target::Single(node) => node.breaker.state_for(),
            Target::Cluster(cluster) => {
                let topology = cluster.topology.load();
                topology
                    .nodes
                    .iter()
                    .map(|node| node.breaker.state_for())
                    .max_by_key(|(state, held)| (rank(*state), *held))
                    .unwrap_or((BreakerState::Closed, Duration::ZERO))
            }
        }
    }

    fn node_for(&self, key: &str) -> NodeRef<'_> {
        match &self.target {
            Target::Single(node) => NodeRef::Single(node),
            Target::Cluster(cluster) => NodeRef::Cluster(
                cluster
                    .topology
                    .load()
                    .node(slot_of(key.as_bytes()))
                    .clone(),
            ),
        }
    }

    /// Runs `command` on `node` (the node holding `key`), unless its
    /// breaker is open; each connect and reply is bounded by the operation
    /// timeout (the client's own timers: a second one here would only cost
    /// the hit path). The breaker learns the outcome; a connection that
    /// failed is replaced. On a cluster, `MOVED` and `ASK` are followed to
    /// the node they name, and trouble asks for the layout to be read.
    async fn run<T, F, C>(
        &self,
        op: &'static str,
        key: &str,
        node: &NodeRef<'_>,
        command: C,
    ) -> Result<T, Error>
    where
        C: Fn(MultiplexedConnection) -> F,
        F: Future<Output = RedisResult<T>>,
    {
        let cluster = match &self.target {
            Target::Single(_) => None,
            Target::Cluster(cluster) => Some(cluster),
        };
        let mut current: Option<Arc<Node>> = None;
        let mut asking = false;
        for hop in 0..=MAX_REDIRECTS {
            let node: &Node = current.as_deref().unwrap_or(node);
            let pass = match node.breaker.admit() {
                Ok(pass) => pass,
                Err(refused) => {
                    if let Some(cluster) = cluster {
                        cluster.trouble(node);
                    }
                    return Err(Error::Unavailable {
                        op,
                        key: key.to_owned(),
                        retry_in: refused.retry_in,
                    });
                }
            };
            let result = if asking {
                self.asking(node, &command).await
            } else {
                match node.connection(self.timeout).await {
                    Ok((conn, id)) => {
                        let result = command(conn).await;
                        if let Err(error) = &result
                            && outcome_of(error) != Outcome::Answered
                        {
                            node.discard(id);
                        }
                        result
                    }
                    Err(error) => Err(error),
                }
            };
            let redirect = match (&result, cluster) {
                (Err(error), Some(cluster)) if hop < MAX_REDIRECTS => {
                    error.redirect_node().map(|(to, slot)| {
                        let moved = error.kind() == ErrorKind::Server(ServerErrorKind::Moved);
                        let to = Cluster::redirect_name(to, node);
                        let next = if moved {
                            cluster.moved(slot, &to)
                        } else {
                            cluster.node_named(&to)
                        };
                        (next, !moved)
                    })
                }
                _ => None,
            };
            let outcome = match &result {
                Ok(_) => Outcome::Answered,
                Err(_) if redirect.is_some() => Outcome::Answered,
                // The node is up and says the cluster is not (a primary
                // failed and is not replaced yet): that is no fault of this
                // node, whose breaker stays out of it.
                Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::ClusterDown) => {
                    if let Some(cluster) = cluster {
                        cluster.refresh();
                    }
                    Outcome::Answered
                }
                Err(error) => outcome_of(error),
            };
            pass.settle(outcome);
            if let Some(cluster) = cluster {
                if outcome == Outcome::Answered {
                    Cluster::answered(node);
                } else {
                    cluster.trouble(node);
                }
            }
            // `CLUSTERDOWN` refuses a command without running it: a node
            // may say so for a moment while a failover settles, so it is
            // sent again shortly (a cluster that stays down still answers
            // within a few tens of milliseconds).
            let again = cluster.is_some()
                && hop < MAX_REDIRECTS
                && matches!(&result, Err(error)
                    if error.kind() == ErrorKind::Server(ServerErrorKind::ClusterDown));
            match redirect {
                Some((next, ask)) => {
                    current = Some(next);
                    asking = ask;
                }
                None if again => tokio::time::sleep(CLUSTER_DOWN_RETRY).await,
                None => return result.map_err(|source| self.error_of(op, key, source)),
            }
        }
        Err(self.error_of(
            op,
            key,
            RedisError::from((ErrorKind::Client, "too many cluster redirects")),
        ))
    }

    /// `command` after `ASKING` (a slot being migrated to `node`), on a
    /// connection of its own: `ASKING` holds for the next command on its
    /// connection only, which a shared one cannot promise.
    async fn asking<T, F: Future<Output = RedisResult<T>>>(
        &self,
        node: &Node,
        command: &impl Fn(MultiplexedConnection) -> F,
    ) -> RedisResult<T> {
        let attempt = async {
            let mut conn = node.private_connection().await?;
            redis::cmd("ASKING").exec_async(&mut conn).await?;
            command(conn).await
        };
        tokio::time::timeout(self.timeout * 2, attempt)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }

    /// Our error for a failed command: a timeout (after ours), or what
    /// Redis said, marked as an outage when it is one.
    fn error_of(&self, op: &'static str, key: &str, source: RedisError) -> Error {
        if source.is_timeout() {
            Error::Timeout {
                op,
                key: key.to_owned(),
                after: self.timeout,
            }
        } else {
            Error::Redis {
                op,
                key: key.to_owned(),
                source: RedisFailure {
                    outage: outcome_of(&source) != Outcome::Answered,
                    error: source,
                },
            }
        }
    }

    async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        command: &Cmd,
    ) -> Result<T, Error> {
        let node = self.node_for(key);
        self.run(op, key, &node, |mut conn| async move {
            command.query_async(&mut conn).await
        })
        .await
    }

    /// Takes the lease on `key` if it is empty or holds exactly `over`;
    /// otherwise returns what it holds (a value or someone else's lease).
    pub(crate) async fn acquire(
        &self,
        key: &str,
        marker: &[u8],
        lease_ms: u64,
        over: Option<&Bytes>,
    ) -> Result<Option<Bytes>, Error> {
        let mut call = self.acquire.key(key);
        call.arg(marker).arg(lease_ms).arg(self.max_value_size);
        if let Some(over) = over {
            call.arg(over.as_ref());
        }
        let held: Option<Vec<u8>> = self.invoke("ACQUIRE", key, &call).await?;
        Ok(held.map(Bytes::from))
    }

    /// Stores `value` if `key` still holds our lease `marker`.
    pub(crate) async fn fill(
        &self,
        key: &str,
        marker: &[u8],
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, Error> {
        let mut call = self.fill.key(key);
        call.arg(marker).arg(value).arg(ttl_ms);
        let stored: u8 = self.invoke("FILL", key, &call).await?;
        Ok(stored == 1)
    }

    /// Drops our lease `marker` on `key`, if it is still there.
    pub(crate) async fn release(&self, key: &str, marker: &[u8]) -> Result<(), Error> {
        let mut call = self.release.key(key);
        call.arg(marker);
        self.invoke("RELEASE", key, &call).await
    }

    /// Claims the entry at `key` that expires at `expires_ms` for a reload
    /// (see `scripts::CLAIM`); `true` if we hold the claim now.
    pub(crate) async fn claim(
        &self,
        key: &str,
        nonce: &[u8],
        claim_ms: u64,
        expires_ms: u64,
    ) -> Result<bool, Error> {
        let mut call = self.claim.key(key);
        call.arg(nonce)
            .arg(claim_ms)
            .arg(CLAIM_AT)
            .arg(ENTRY_HEADER_LEN)
            .arg(LEASE_TAG_BYTE)
            .arg(&expires_ms.to_be_bytes()[..]);
        let claimed: u8 = self.invoke("CLAIM", key, &call).await?;
        Ok(claimed == 1)
    }

    /// Stores `value` if the entry at `key` still carries our claim.
    pub(crate) async fn fill_claimed(
        &self,
        key: &str,
        nonce: &[u8],
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, Error> {
        let mut call = self.fill_claimed.key(key);
        call.arg(nonce).arg(value).arg(ttl_ms).arg(NONCE_AT);
        let stored: u8 = self.invoke("FILL", key, &call).await?;
        Ok(stored == 1)
    }

    /// Gives our claim on `key` up, if it is still there.
    pub(crate) async fn unclaim(&self, key: &str, nonce: &[u8]) -> Result<(), Error> {
        let mut call = self.unclaim.key(key);
        call.arg(nonce).arg(CLAIM_AT);
        self.invoke("UNCLAIM", key, &call).await
    }

    /// One round trip, to open the connection now rather than on the first
    /// command; on a cluster, the slot layout is read first.
    pub(crate) async fn ping(&self) -> Result<(), Error> {
        if let Target::Cluster(cluster) = &self.target
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
        let nodes: Vec<Arc<Node>> = match &self.target {
            Target::Single(node) => vec![node.clone()],
            Target::Cluster(cluster) => cluster.topology.load().nodes.clone(),
        };
        let pings = nodes.iter().map(|node| async move {
            let started = Instant::now();
            let attempt = async {
                let (mut conn, id) = node.connection(self.timeout).await?;
                let result = redis::cmd("PING").query_async::<()>(&mut conn).await;
                if let Err(error) = &result
                    && outcome_of(error) != Outcome::Answered
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
        let cluster = matches!(self.target, Target::Cluster(_));
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
        let cluster = matches!(self.target, Target::Cluster(_));
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
                                    outage: outcome_of(&error) != Outcome::Answered,
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
        let Target::Cluster(_) = &self.target else {
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

    /// The node of that name, for commands routed by address.
    fn node_named(&self, name: &str) -> NodeRef<'_> {
        match &self.target {
            Target::Single(node) => NodeRef::Single(node),
            Target::Cluster(cluster) => NodeRef::Cluster(cluster.node_named(name)),
        }
    }
}

/// The scripts of versioned entries, hashed once.
static STORE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&scripts::store()));
static EVICT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&scripts::evict()));
static SETTLE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&scripts::settle()));
static PEEK: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&scripts::peek()));

/// Versioned entries (see `versioned.rs`), and commands from outside this
/// crate (see `command.rs`): each through the breaker of the node that
/// holds its key, as every command.
impl RedisBackend {
    /// Whether one script may touch both keys: always on one Redis; on a
    /// cluster when they hash to one slot.
    pub(crate) fn same_slot(&self, a: &str, b: &str) -> bool {
        match &self.target {
            Target::Single(_) => true,
            Target::Cluster(_) => slot_of(a.as_bytes()) == slot_of(b.as_bytes()),
        }
    }

    /// Runs `invocation` on the node that holds `key`.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        let node = self.node_for(key);
        self.run(op, key, &node, |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// Runs `command` on the node that holds `key`; the reply as it came.
    pub(crate) async fn command(
        &self,
        op: &'static str,
        key: &str,
        command: &Cmd,
    ) -> Result<Value, Error> {
        self.query(op, key, command).await
    }

    /// See `scripts::store`: 1 stored, 0 superseded, 2 not the expected
    /// version.
    pub(crate) async fn store_versioned(
        &self,
        at: &VersionedKey,
        value: &[u8],
        ttl_ms: u64,
        version: u64,
        record_ttl_ms: u64,
        expect: Option<u64>,
    ) -> Result<u8, Error> {
        let mut call = STORE.key(&at.entry);
        call.key(&at.record)
            .arg(value)
            .arg(ttl_ms)
            .arg(version)
            .arg(record_ttl_ms)
            .arg(expect.map(|v| v.to_string()).unwrap_or_default());
        self.invoke("STORE", &at.entry, &call).await
    }

    /// See `scripts::evict`: whether the entry was removed.
    pub(crate) async fn evict_versioned(
        &self,
        at: &VersionedKey,
        version: u64,
        record_ttl_ms: u64,
    ) -> Result<bool, Error> {
        let mut call = EVICT.key(&at.entry);
        call.key(&at.record).arg(version).arg(record_ttl_ms);
        let removed: u8 = self.invoke("EVICT", &at.entry, &call).await?;
        Ok(removed == 1)
    }

    /// See `scripts::settle`: 1 kept with its TTL, 2 removed, 0 newer.
    pub(crate) async fn settle_versioned(
        &self,
        at: &VersionedKey,
        version: u64,
        ttl_ms: u64,
        record_ttl_ms: u64,
    ) -> Result<u8, Error> {
        let mut call = SETTLE.key(&at.entry);
        call.key(&at.record)
            .arg(version)
            .arg(ttl_ms)
            .arg(record_ttl_ms)
            .arg(&crate::codec::expires_at(ttl_ms)[..])
            .arg(crate::codec::EXPIRES_AT);
        self.invoke("SETTLE", &at.entry, &call).await
    }

    /// See `scripts::peek`: the version's own entry, and the version.
    pub(crate) async fn peek_versioned(
        &self,
        at: &VersionedKey,
    ) -> Result<(Option<Bytes>, Option<u64>), Error> {
        let mut call = PEEK.key(&at.entry);
        call.key(&at.record);
        let (entry, version): (Option<Vec<u8>>, String) =
            self.invoke("PEEK", &at.entry, &call).await?;
        Ok((entry.map(Bytes::from), version.parse().ok()))
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

/// Whether a URL asks for TLS.
fn is_tls(raw: &str) -> bool {
    let scheme = raw.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
}

/// `host:port` of a Redis URL, or why the URL cannot be used. Parsed with
/// the `url` crate; the scheme must be one Redis speaks.
fn node_name(raw: &str) -> Result<String, Error> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: mask_password(raw),
        reason,
    };
    let url = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "redis" | "valkey" => {}
        "unix" | "redis+unix" | "valkey+unix" => return Ok(url.path().to_owned()),
        "rediss" | "valkeys" => {
            if url.fragment().is_some() {
                return Err(invalid(
                    "a fragment such as #insecure (TLS without verifying the server) is not \
                     supported: trust the server's CA with tls_root_cert instead"
                        .to_owned(),
                ));
            }
        }
        other => return Err(invalid(format!("unknown scheme `{other}`"))),
    }
    let host = url
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| invalid("no host".to_owned()))?;
    Ok(format!("{host}:{}", url.port().unwrap_or(6379)))
}

/// The connection settings of `url`, with the builder's credentials.
fn connection_info(url: &str, connect: &Connect) -> Result<ConnectionInfo, Error> {
    let info = url
        .into_connection_info()
        .map_err(|source| Error::InvalidUrl {
            url: mask_password(url),
            reason: source.to_string(),
        })?;
    let Some((user, password)) = &connect.credentials else {
        return Ok(info);
    };
    if info.redis_settings().password().is_some() {
        return Err(Error::Config {
            setting: "credentials",
            reason: format!(
                "the URL {} has a password too: give it in one place",
                mask_password(url)
            ),
        });
    }
    let mut settings = info.redis_settings().clone().set_password(password);
    if !user.is_empty() {
        settings = settings.set_username(user);
    }
    Ok(info.set_redis_settings(settings))
}

/// A client of the Redis at `url`: over TLS for `rediss://` (with the
/// builder's CA and client certificate, if any), never over plain text.
fn client_for(url: &str, connect: &Connect) -> Result<Client, Error> {
    let info = connection_info(url, connect)?;
    let invalid = |source: RedisError| Error::InvalidUrl {
        url: mask_password(url),
        reason: source.to_string(),
    };
    if !is_tls(url) {
        if connect.root_cert.is_some() || connect.client_cert.is_some() {
            let setting = if connect.root_cert.is_some() {
                "tls_root_cert"
            } else {
                "tls_client_cert"
            };
            return Err(Error::Config {
                setting,
                reason: format!(
                    "TLS certificates need a rediss:// URL, and {} is not one",
                    mask_password(url)
                ),
            });
        }
        return Client::open(info).map_err(invalid);
    }
    install_crypto_provider();
    match connect.certificates() {
        Some(certificates) => Client::build_with_tls(info, certificates).map_err(invalid),
        None => Client::open(info).map_err(invalid),
    }
}

/// rustls's `ring` provider as the process default, unless the
/// application installed one already (then that one is used).
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The error `build()` returns for `error`, met at start, when it means the
/// settings cannot work: a TLS handshake that failed (a certificate that
/// does not verify, one the server wants and was not given) or credentials
/// Redis refused. `None` for a Redis that is merely down or slow.
fn misconfigured(error: &RedisError, node: &str, user: Option<&str>) -> Option<Error> {
    if let Some(reason) = tls_failure(error) {
        return Some(Error::Tls {
            node: node.to_owned(),
            reason,
        });
    }
    let reason = match (error.kind(), error.code()) {
        (ErrorKind::AuthenticationFailed, _) | (_, Some("WRONGPASS")) => {
            "authentication failed (WRONGPASS): the user name or password is wrong, the user \
             is disabled, or it has no password"
                .to_owned()
        }
        (_, Some("NOAUTH")) => "NOAUTH: Redis requires a password (give it with \
                                credentials(user, password) or in the URL)"
            .to_owned(),
        (_, Some("NOPERM")) => format!(
            "{error} (the ACL user lacks a permission cachefw needs: see the README's ACL line)"
        ),
        _ => return None,
    };
    Some(Error::Auth {
        node: node.to_owned(),
        user: user.map(str::to_owned),
        reason,
    })
}

/// What went wrong in a TLS handshake, and what would fix it; `None` when
/// `error` is not a TLS failure.
fn tls_failure(error: &RedisError) -> Option<String> {
    use rustls::{AlertDescription, CertificateError};

    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    /// The error itself, or what it wraps: redis-rs keeps I/O errors in an
    /// `Arc`, and the TLS stream puts rustls's error inside an I/O error.
    fn unwrap<'a>(
        error: &'a (dyn std::error::Error + 'static),
    ) -> &'a (dyn std::error::Error + 'static) {
        if let Some(shared) = error.downcast_ref::<Shared>() {
            return unwrap(&**shared);
        }
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            return unwrap(inner);
        }
        error
    }

    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut found = None;
    while let Some(current) = next.map(unwrap) {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            found = Some(tls);
            break;
        }
        if current
            .downcast_ref::<rustls::pki_types::InvalidDnsNameError>()
            .is_some()
        {
            return Some(format!(
                "the host is not a name a certificate can be checked against: {current}"
            ));
        }
        next = current.source();
    }
    let tls = found?;
    Some(match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate does not verify ({tls}): it is not signed by a trusted \
             CA; give the CA that signed it with tls_root_cert"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's certificate does not verify ({tls}): it is issued for another host \
             name; connect by a name the certificate lists"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => format!("the server's certificate is outside its validity period ({tls})"),
        rustls::Error::InvalidCertificate(_) => {
            format!("the server's certificate does not verify ({tls})")
        }
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure,
        ) => format!(
            "the server requires a client certificate ({tls}): give one with tls_client_cert"
        ),
        rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied,
        ) => format!(
            "the server refused the client certificate ({tls}): it must be signed by a CA \
             the server trusts (its tls-ca-cert-file)"
        ),
        rustls::Error::InvalidMessage(_) => format!(
            "the TLS handshake failed ({tls}): is this a TLS port? A Redis listening in \
             plain text does not speak TLS"
        ),
        _ => format!("the TLS handshake failed ({tls})"),
    })
}

/// The URL with any password replaced by `***`, fit for errors and logs.
///
/// Works on the raw text, so that a URL the `url` crate cannot parse (a
/// password with an unescaped `/`, `?` or `#`, say) is masked too:
/// everything between the user name and the last `@` is hidden.
pub(crate) fn mask_password(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let Some(at) = url.rfind('@').filter(|at| *at >= start) else {
        return url.to_owned();
    };
    let userinfo = &url[start..at];
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    if user.len() == userinfo.len() {
        // A user name and no password.
        return url.to_owned();
    }
    format!("{}{user}:***{}", &url[..start], &url[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_only() {
        assert_eq!(
            mask_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            mask_password("redis://:hunter2@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            mask_password("rediss://app:hunter2@host/1"),
            "rediss://app:***@host/1"
        );
        assert_eq!(mask_password("redis://:pa/ss@h"), "redis://:***@h");
        assert_eq!(mask_password("redis://u:p@ss@h:1"), "redis://u:***@h:1");
        assert_eq!(mask_password("redis://:pa?ss#x@h"), "redis://:***@h");
        assert_eq!(mask_password("redis://app@host"), "redis://app@host");
        assert_eq!(mask_password("not a url"), "not a url");
    }

    #[test]
    fn urls_are_checked_with_their_password_masked() {
        assert_eq!(node_name("redis://h").ok().as_deref(), Some("h:6379"));
        assert_eq!(
            node_name("redis://:pw@10.0.0.1:7000/2").ok().as_deref(),
            Some("10.0.0.1:7000")
        );
        assert_eq!(
            node_name("rediss://:pw@cache.internal:6380")
                .ok()
                .as_deref(),
            Some("cache.internal:6380")
        );
        assert!(is_tls("rediss://h") && is_tls("VALKEYS://h") && !is_tls("redis://h"));
        let insecure = node_name("rediss://:secret@h/#insecure").expect_err("#insecure");
        assert!(insecure.to_string().contains("tls_root_cert"), "{insecure}");
        assert!(!insecure.to_string().contains("secret"), "{insecure}");
        for bad in ["http://h", "127.0.0.1:6379", "redis://:pa/ss@h", "redis://"] {
            let error = node_name(bad).expect_err(bad).to_string();
            assert!(!error.contains("ss@"), "{error}");
            assert!(error.contains("expected redis://"), "{error}");
        }
    }

    #[test]
    fn tls_and_auth_failures_are_told_from_outages() {
        let wrapped = |tls: rustls::Error| {
            let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
            RedisError::from(io)
        };
        let unknown = wrapped(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        let found = misconfigured(&unknown, "h:1", None).expect("a TLS failure");
        assert!(matches!(found, Error::Tls { .. }));
        assert!(found.to_string().contains("tls_root_cert"), "{found}");
        let required = wrapped(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired,
        ));
        let found = misconfigured(&required, "h:1", None).expect("a TLS failure");
        assert!(found.to_string().contains("tls_client_cert"), "{found}");
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(misconfigured(&refused, "h:1", None).is_none());
        assert!(misconfigured(&timed_out(), "h:1", None).is_none());
        let wrongpass = RedisError::from((ErrorKind::AuthenticationFailed, "failed"));
        let found = misconfigured(&wrongpass, "h:1", Some("app")).expect("auth");
        assert!(matches!(found, Error::Auth { .. }));
        assert!(found.to_string().contains("\"app\""), "{found}");
    }

    #[test]
    fn scan_patterns_escape_globs() {
        assert_eq!(scan_pattern(r"s*p:v3:a*b?[c]\"), r"s\*p:v3:a\*b\?\[c\]\\*");
        assert_eq!(scan_pattern(""), "*");
    }

    #[test]
    fn errors_are_classified_by_meaning() {
        let server = |code: &str| {
            let reply = format!("-{code} detail\r\n");
            redis::parse_redis_value(reply.as_bytes())
                .and_then(Value::extract_error)
                .expect_err("an error reply")
        };
        assert_eq!(outcome_of(&server("READONLY")), Outcome::Refused);
        assert_eq!(outcome_of(&server("LOADING")), Outcome::Refused);
        assert_eq!(outcome_of(&server("MASTERDOWN")), Outcome::Refused);
        assert_eq!(outcome_of(&server("CLUSTERDOWN")), Outcome::Failed);
        assert_eq!(outcome_of(&server("TRYAGAIN")), Outcome::Failed);
        assert_eq!(outcome_of(&server("OOM")), Outcome::Answered);
        assert_eq!(outcome_of(&server("WRONGTYPE")), Outcome::Answered);
        assert_eq!(outcome_of(&server("NOSCRIPT")), Outcome::Answered);
        assert_eq!(outcome_of(&timed_out()), Outcome::Failed);
        assert_eq!(outcome_of(&server("NOAUTH")), Outcome::Failed);
        assert_eq!(outcome_of(&server("WRONGPASS")), Outcome::Failed);
        assert_eq!(outcome_of(&server("NOPERM")), Outcome::Answered);
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(outcome_of(&reset), Outcome::Failed);
    }
}
