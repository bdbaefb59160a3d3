//! The Redis backend: commands, connections, and what their errors mean.
//!
//! One Redis is reached through one multiplexed connection, shared by every
//! command and replaced as soon as it fails: after a restart, a failover
//! (the old primary answers `READONLY`; a fresh connection finds whatever
//! the URL's host now names), or a timeout (a frozen server's connection may
//! hold a backlog of stale replies). A Redis Cluster is reached through the
//! client's cluster connection, rebuilt from the seed nodes when it stays
//! unhealthy across probes.
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

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionInfo, ErrorKind, FromRedisValue,
    IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Script, ServerErrorKind,
    TlsCertificates, Value,
};
use tokio::sync::Notify;

use crate::backend::breaker::{Breaker, BreakerState, Outcome, Rules};
use crate::backend::scripts;
use crate::backend::versioned_key::VersionedKey;
use crate::codec::{CLAIM_AT, ENTRY_HEADER_LEN, LEASE_TAG_BYTE, NONCE_AT};
use crate::error::{Error, RedisFailure};

/// Keys per `UNLINK` in batch and prefix evictions, and the `COUNT` hint of
/// each `SCAN` step.
const BATCH: usize = 500;
/// Cluster slots.
const SLOTS: usize = 16_384;
/// Probes of one node that fail in a row before the cluster connection is
/// rebuilt from the seed nodes.
const REBUILD_AFTER: u32 = 2;
/// The least time between two reads of the slot layout, and between two
/// rebuilds at first; rebuilds that do not help come ever less often, up
/// to `MAX_REBUILD_EVERY` (a primary that is gone for good, say).
const REBUILD_EVERY: Duration = Duration::from_secs(5);
const MAX_REBUILD_EVERY: Duration = Duration::from_secs(60);

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

/// A server the breaker guards: one Redis, or one cluster primary.
struct Node {
    /// `host:port`, for errors and logs.
    name: String,
    breaker: Breaker,
    /// Probes of this node that failed in a row.
    failed_probes: AtomicU32,
}

impl Node {
    fn new(name: String, rules: &Arc<Rules>) -> Arc<Self> {
        Arc::new(Self {
            name,
            breaker: Breaker::new(rules.clone()),
            failed_probes: AtomicU32::new(0),
        })
    }
}

/// A connection every command shares, made on first use and again after
/// it is discarded. One caller connects at a time; the others wait for it,
/// no longer than the timeout.
struct Shared<C> {
    current: ArcSwapOption<Generation<C>>,
    connecting: tokio::sync::Mutex<()>,
    made: AtomicU64,
}

/// A connection and which one it is (counted, so a late failure of an old
/// connection never discards its successor).
struct Generation<C> {
    number: u64,
    conn: C,
}

impl<C: Clone> Shared<C> {
    fn new() -> Self {
        Self {
            current: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            made: AtomicU64::new(0),
        }
    }

    /// A handle onto the connection, and the number that identifies it to
    /// [`discard`](Self::discard).
    async fn get<F: Future<Output = RedisResult<C>>>(
        &self,
        timeout: Duration,
        connect: impl FnOnce() -> F,
    ) -> RedisResult<(C, u64)> {
        // A guard, not a counted `Arc`: loading the connection touches no
        // shared count (cloning the handle does, as any use would).
        if let Some(current) = &*self.current.load() {
            return Ok((current.conn.clone(), current.number));
        }
        // Waiting for another caller's connect and making our own share
        // one deadline.
        let deadline = tokio::time::Instant::now() + timeout;
        let _turn = tokio::time::timeout_at(deadline, self.connecting.lock())
            .await
            .map_err(|_| timed_out())?;
        if let Some(current) = &*self.current.load() {
            return Ok((current.conn.clone(), current.number));
        }
        let conn = tokio::time::timeout_at(deadline, connect())
            .await
            .map_err(|_| timed_out())??;
        let number = self.made.fetch_add(1, Ordering::Relaxed) + 1;
        self.current.store(Some(Arc::new(Generation {
            number,
            conn: conn.clone(),
        })));
        Ok((conn, number))
    }

    /// Drops connection number `failed` so that the next command connects
    /// afresh, unless it was replaced already.
    fn discard(&self, failed: u64) {
        self.current.rcu(|current| match current {
            Some(current) if current.number == failed => None,
            other => other.clone(),
        });
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

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

/// One Redis server.
struct Single {
    client: Client,
    config: AsyncConnectionConfig,
    conn: Shared<MultiplexedConnection>,
    node: Arc<Node>,
}

/// Which primary serves each slot, as far as we know it.
struct Topology {
    nodes: Vec<Arc<Node>>,
    /// Per slot, an index into `nodes`.
    slots: Vec<u16>,
    /// Whether it was read from the cluster.
    known: bool,
}

impl Topology {
    /// Before the layout is known: one node stands for the whole cluster.
    fn unknown(rules: &Arc<Rules>) -> Self {
        Self {
            nodes: vec![Node::new("cluster".to_owned(), rules)],
            slots: vec![0; SLOTS],
            known: false,
        }
    }

    fn node(&self, slot: u16) -> &Arc<Node> {
        let index = self.slots.get(usize::from(slot)).copied().unwrap_or(0);
        self.nodes.get(usize::from(index)).unwrap_or(&self.nodes[0])
    }
}

/// A Redis Cluster.
struct Cluster {
    client: ClusterClient,
    /// A client of each seed node on its own, `host:port` and client: when
    /// the cluster cannot be reached at start, they tell a Redis that is
    /// down from settings that cannot work (a certificate, a password).
    seeds: Vec<(String, Client)>,
    /// Why the last connection attempt failed, for the callers that waited
    /// for it.
    last_error: std::sync::Mutex<Option<RedisError>>,
    /// The cluster connection, made in the background (see `connection`).
    conn: ArcSwapOption<ClusterConnection>,
    connecting: AtomicBool,
    connected: Notify,
    topology: ArcSwap<Topology>,
    clock: Instant,
    /// Milliseconds since `clock` of the last rebuild and layout read.
    last_rebuild: AtomicU64,
    last_layout: AtomicU64,
    /// The least time between rebuilds now, in milliseconds.
    rebuild_every: AtomicU64,
    /// What the breakers of its nodes share.
    rules: Arc<Rules>,
}

/// Clears the connecting flag however the connect task ends, and wakes the
/// callers waiting for it.
struct Connecting(Arc<Cluster>);

impl Drop for Connecting {
    fn drop(&mut self) {
        self.0.connecting.store(false, Ordering::Release);
        self.0.connected.notify_waiters();
    }
}

/// How long a cluster connection may take to form: it meets every seed and
/// reads the slot layout, and a frozen seed costs a connect timeout.
const CLUSTER_CONNECT_BUDGET: Duration = Duration::from_secs(10);

impl Cluster {
    /// The cluster connection. Forming one can take longer than a command
    /// may (a seed is frozen, slots move), so it is formed in the
    /// background, once at a time; a caller waits for it no longer than
    /// `timeout`.
    async fn connection(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> RedisResult<Arc<ClusterConnection>> {
        if let Some(conn) = self.conn.load_full() {
            return Ok(conn);
        }
        let wait = async {
            loop {
                // Created before the check: it hears every wake-up after.
                let ready = self.connected.notified();
                if let Some(conn) = self.conn.load_full() {
                    return Ok(conn);
                }
                if !self.connect_in_background() {
                    // A connect is out; wait for it, and stop waiting if it
                    // ended without a connection.
                    ready.await;
                    if let Some(conn) = self.conn.load_full() {
                        return Ok(conn);
                    }
                    let why = self
                        .last_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    return Err(why.unwrap_or_else(|| {
                        RedisError::from((
                            ErrorKind::Io,
                            "the Redis Cluster connection could not be formed",
                        ))
                    }));
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }

    /// Starts forming a connection in the background, unless one is being
    /// formed: then `false`. It replaces the current connection, if any,
    /// only once it is ready.
    fn connect_in_background(self: &Arc<Self>) -> bool {
        if self.connecting.swap(true, Ordering::AcqRel) {
            return false;
        }
        let flag = Connecting(self.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Dropping the flag wakes the waiters, who find no connection.
            return false;
        };
        runtime.spawn(async move {
            let cluster = &flag.0;
            let connect = async {
                let conn = cluster.client.get_async_connection().await?;
                cluster.read_layout(&conn).await;
                Ok::<_, RedisError>(conn)
            };
            match tokio::time::timeout(CLUSTER_CONNECT_BUDGET, connect).await {
                Ok(Ok(conn)) => cluster.conn.store(Some(Arc::new(conn))),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "cachefw: Redis Cluster connection failed");
                    *cluster
                        .last_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
                }
                Err(_) => {
                    tracing::debug!("cachefw: Redis Cluster connection timed out");
                    *cluster
                        .last_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(timed_out());
                }
            }
            drop(flag);
        });
        true
    }

    /// Reads the slot layout again in the background.
    fn refresh_layout(self: &Arc<Self>) {
        let (Some(conn), Ok(runtime)) =
            (self.conn.load_full(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let cluster = self.clone();
        runtime.spawn(async move {
            let _ = tokio::time::timeout(CLUSTER_CONNECT_BUDGET, cluster.read_layout(&conn)).await;
        });
    }

    /// Claims a periodic task (a rebuild, a layout read) if `every` has
    /// passed since it last ran.
    fn due(&self, last: &AtomicU64, every: Duration) -> bool {
        let previous = last.load(Ordering::Relaxed);
        let now = u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let every = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        (previous == 0 || now.saturating_sub(previous) >= every)
            && last
                .compare_exchange(previous, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Reads the slot layout and maps it onto nodes, keeping each known
    /// node's breaker.
    async fn read_layout(&self, conn: &ClusterConnection) {
        let mut conn = conn.clone();
        let reply = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await;
        let Some(ranges) = reply.ok().and_then(parse_slots) else {
            return;
        };
        let old = self.topology.load();
        let mut nodes: Vec<Arc<Node>> = Vec::new();
        let mut slots = vec![0u16; SLOTS];
        for (start, end, name) in ranges {
            let index = match nodes.iter().position(|n| n.name == name) {
                Some(index) => index,
                None => {
                    let node = old
                        .nodes
                        .iter()
                        .find(|n| n.name == name)
                        .cloned()
                        .unwrap_or_else(|| Node::new(name, &self.rules));
                    nodes.push(node);
                    nodes.len() - 1
                }
            };
            let index = u16::try_from(index).unwrap_or(0);
            if let Some(range) = slots.get_mut(start..=end.min(SLOTS - 1)) {
                range.fill(index);
            }
        }
        if !nodes.is_empty() {
            self.topology.store(Arc::new(Topology {
                nodes,
                slots,
                known: true,
            }));
        }
    }
}

/// `CLUSTER SLOTS`: `[start, end, [host, port, id…], replicas…]` per range.
pub(crate) fn parse_slots(reply: Value) -> Option<Vec<(usize, usize, String)>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut parsed = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        let host = match primary.first() {
            Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
            Some(Value::SimpleString(host)) => host.clone(),
            _ => return None,
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            return None;
        };
        parsed.push((
            usize::try_from(*start).ok()?,
            usize::try_from(*end).ok()?,
            format!("{host}:{port}"),
        ));
    }
    Some(parsed)
}

/// The cluster slot of a key (CRC16 of the key or its `{hash tag}`).
fn slot_of(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % SLOTS as u16
}

/// Where commands go.
// One per cache, behind its `Arc`: the size of the larger variant costs
// nothing, and boxing it would add a pointer chase to every command.
#[allow(clippy::large_enum_variant)]
enum Target {
    Single(Single),
    Cluster(Arc<Cluster>),
}

/// A connection to either target, for one command.
enum Link {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
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
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect.timeout))
            .set_response_timeout(Some(connect.timeout));
        let single = Single {
            client,
            config,
            conn: Shared::new(),
            node: Node::new(name, &connect.breaker),
        };
        Ok(Self::with_target(Target::Single(single), connect))
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
        let mut infos = Vec::with_capacity(nodes.len());
        for node in nodes {
            let name = node_name(node)?;
            infos.push(connection_info(node, connect)?);
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
        let mut builder = ClusterClient::builder(infos)
            .connection_timeout(connect.timeout)
            .response_timeout(connect.timeout)
            .retries(1);
        if let Some((user, password)) = &connect.credentials {
            if !user.is_empty() {
                builder = builder.username(user);
            }
            builder = builder.password(password);
        }
        if let Some(certificates) = connect.certificates() {
            builder = builder.certs(certificates);
        }
        let client = builder.build().map_err(|source| Error::InvalidUrl {
            url: masked(),
            reason: source.to_string(),
        })?;
        let cluster = Cluster {
            client,
            seeds,
            last_error: std::sync::Mutex::new(None),
            conn: ArcSwapOption::empty(),
            connecting: AtomicBool::new(false),
            connected: Notify::new(),
            topology: ArcSwap::from_pointee(Topology::unknown(&connect.breaker)),
            rules: connect.breaker.clone(),
            clock: Instant::now(),
            last_rebuild: AtomicU64::new(0),
            last_layout: AtomicU64::new(0),
            rebuild_every: AtomicU64::new(millis(REBUILD_EVERY)),
        };
        Ok(Self::with_target(
            Target::Cluster(Arc::new(cluster)),
            connect,
        ))
    }

    fn with_target(target: Target, connect: &Connect) -> Self {
        // The user of the credentials, or the URL's.
        let client = match &target {
            Target::Single(single) => Some(&single.client),
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
            Target::Single(single) => crate::near::tracking::Servers::Single(Box::new(
                single.client.get_connection_info().clone(),
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

    /// Whether `error`, met by the first command, means the settings cannot
    /// work (a certificate that does not verify, credentials refused) rather
    /// than a Redis that is down: the error `build()` returns. A cluster's
    /// connection hides the cause, so its seed nodes are asked one by one.
    pub(crate) async fn misconfigured(&self, error: &Error) -> Option<Error> {
        match &self.target {
            Target::Single(single) => match error {
                Error::Redis { source, .. } => {
                    misconfigured(&source.error, &single.node.name, self.user.as_deref())
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
            Target::Single(single) => single.node.breaker.state_for(),
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
            Target::Single(single) => NodeRef::Single(&single.node),
            Target::Cluster(cluster) => NodeRef::Cluster(
                cluster
                    .topology
                    .load()
                    .node(slot_of(key.as_bytes()))
                    .clone(),
            ),
        }
    }

    /// Runs `command` on the node holding `key`, unless its breaker is
    /// open, bounded by the operation timeout. The breaker learns the
    /// outcome; a connection that failed is replaced.
    async fn run<T>(
        &self,
        op: &'static str,
        key: &str,
        node: &Node,
        command: impl AsyncFnOnce(&mut Link) -> RedisResult<T>,
    ) -> Result<T, Error> {
        let pass = node.breaker.admit().map_err(|refused| Error::Unavailable {
            op,
            key: key.to_owned(),
            retry_in: refused.retry_in,
        })?;
        let probing = pass.is_probe();
        let result = match &self.target {
            Target::Single(single) => {
                // The client bounds the connect and each reply by the
                // timeout itself: a second timer here would only cost the
                // hit path.
                match single
                    .conn
                    .get(self.timeout, || {
                        single
                            .client
                            .get_multiplexed_async_connection_with_config(&single.config)
                    })
                    .await
                {
                    Ok((conn, id)) => {
                        let mut link = Link::Single(conn);
                        let result = command(&mut link).await;
                        if let Err(error) = &result
                            && outcome_of(error) != Outcome::Answered
                        {
                            single.conn.discard(id);
                        }
                        result
                    }
                    Err(error) => Err(error),
                }
            }
            Target::Cluster(cluster) => {
                let attempt = async {
                    let conn = cluster.connection(self.timeout).await?;
                    command(&mut Link::Cluster((*conn).clone())).await
                };
                // The cluster client's slot discovery is not bounded by its
                // response timeout.
                tokio::time::timeout(self.timeout, attempt)
                    .await
                    .unwrap_or_else(|_| Err(timed_out()))
            }
        };
        let outcome = match &result {
            Ok(_) => Outcome::Answered,
            Err(error) => outcome_of(error),
        };
        pass.settle(outcome);
        if let Target::Cluster(cluster) = &self.target {
            if probing {
                self.after_probe(cluster, node, outcome);
            }
            // A layout that could not be read yet leaves one breaker for
            // every slot: read it again.
            if !cluster.topology.load().known && cluster.due(&cluster.last_layout, REBUILD_EVERY) {
                cluster.refresh_layout();
            }
        }
        result.map_err(|source| self.error_of(op, key, source))
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

    /// A cluster probe's outcome. A node whose probes keep failing may be
    /// served through a connection whose slot discovery is stuck: a new
    /// connection is formed from the seeds in the background and replaces
    /// the old one once ready, ever less often while that does not help. A
    /// node that answered again reads the slot layout anew, which a
    /// failover changed.
    fn after_probe(&self, cluster: &Arc<Cluster>, node: &Node, outcome: Outcome) {
        if outcome == Outcome::Answered {
            node.failed_probes.store(0, Ordering::Relaxed);
            cluster
                .rebuild_every
                .store(millis(REBUILD_EVERY), Ordering::Relaxed);
            if cluster.due(&cluster.last_layout, REBUILD_EVERY) {
                cluster.refresh_layout();
            }
            return;
        }
        let failed = node.failed_probes.fetch_add(1, Ordering::Relaxed) + 1;
        let every = Duration::from_millis(cluster.rebuild_every.load(Ordering::Relaxed));
        if failed >= REBUILD_AFTER && cluster.due(&cluster.last_rebuild, every) {
            node.failed_probes.store(0, Ordering::Relaxed);
            cluster.rebuild_every.store(
                millis((every * 2).min(MAX_REBUILD_EVERY)),
                Ordering::Relaxed,
            );
            tracing::warn!(
                node = %node.name,
                "cachefw: Redis Cluster probes keep failing; forming a new connection from \
                 the seed nodes"
            );
            cluster.connect_in_background();
        }
    }

    async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        command: &Cmd,
    ) -> Result<T, Error> {
        let node = self.node_for(key);
        self.run(op, key, &node, async |link| command.query_async(link).await)
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
    /// command.
    pub(crate) async fn ping(&self) -> Result<(), Error> {
        self.query("PING", "", &redis::cmd("PING")).await
    }

    /// One real `PING` of every server (every known primary of a cluster),
    /// whatever the breakers say, each bounded by the timeout; the slowest
    /// round trip. The breakers are left as they are: a readiness probe
    /// must not decide for the calls.
    pub(crate) async fn ping_now(&self) -> Result<Duration, Error> {
        let failed = |node: &str, source: RedisError| self.error_of("PING", node, source);
        match &self.target {
            Target::Single(single) => {
                let started = Instant::now();
                let attempt = async {
                    let (mut conn, id) = single
                        .conn
                        .get(self.timeout, || {
                            single
                                .client
                                .get_multiplexed_async_connection_with_config(&single.config)
                        })
                        .await?;
                    let result = redis::cmd("PING").query_async::<()>(&mut conn).await;
                    if let Err(error) = &result
                        && outcome_of(error) != Outcome::Answered
                    {
                        single.conn.discard(id);
                    }
                    result
                };
                tokio::time::timeout(self.timeout, attempt)
                    .await
                    .unwrap_or_else(|_| Err(timed_out()))
                    .map_err(|source| failed(&single.node.name, source))?;
                Ok(started.elapsed())
            }
            Target::Cluster(cluster) => {
                let names: Vec<String> = {
                    let topology = cluster.topology.load();
                    match topology.known {
                        true => topology
                            .nodes
                            .iter()
                            .map(|node| node.name.clone())
                            .collect(),
                        false => Vec::new(),
                    }
                };
                let conn = tokio::time::timeout(self.timeout, cluster.connection(self.timeout))
                    .await
                    .unwrap_or_else(|_| Err(timed_out()))
                    .map_err(|source| failed("cluster", source))?;
                let ping_one = |routing: RoutingInfo, name: String| {
                    let mut conn = (*conn).clone();
                    async move {
                        let started = Instant::now();
                        let ping = redis::cmd("PING");
                        let result =
                            tokio::time::timeout(self.timeout, conn.route_command(ping, routing))
                                .await
                                .unwrap_or_else(|_| Err(timed_out()));
                        result
                            .map(|_| started.elapsed())
                            .map_err(|source| failed(&name, source))
                    }
                };
                let pings: Vec<_> = if names.is_empty() {
                    vec![ping_one(
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                        "cluster".to_owned(),
                    )]
                } else {
                    names
                        .into_iter()
                        .map(|name| {
                            let (host, port) = name
                                .rsplit_once(':')
                                .and_then(|(host, port)| {
                                    Some((host.to_owned(), port.parse().ok()?))
                                })
                                .unwrap_or_default();
                            ping_one(
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                    host,
                                    port,
                                }),
                                name,
                            )
                        })
                        .collect()
                };
                let mut slowest = Duration::ZERO;
                for result in futures_util::future::join_all(pings).await {
                    slowest = slowest.max(result?);
                }
                Ok(slowest)
            }
        }
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

    /// `UNLINK`s every key, in batches; on a cluster, one batch per node
    /// through that node's breaker. The first failure is returned after
    /// every batch was tried.
    pub(crate) async fn delete_many(&self, keys: &[String]) -> Result<u64, Error> {
        let mut groups: Vec<(NodeRef<'_>, Vec<&String>)> = Vec::new();
        for key in keys {
            let node = self.node_for(key);
            match groups.iter_mut().find(|(n, _)| n.name == node.name) {
                Some((_, group)) => group.push(key),
                None => groups.push((node, vec![key])),
            }
        }
        let mut removed = 0;
        let mut failure = None;
        for (node, group) in &groups {
            for batch in group.chunks(BATCH) {
                let mut command = redis::cmd("UNLINK");
                command.arg(batch);
                let first = batch.first().map_or("", |key| key.as_str());
                match self
                    .run("UNLINK", first, node, async |link| {
                        command.query_async::<u64>(link).await
                    })
                    .await
                {
                    Ok(count) => removed += count,
                    Err(error) => failure = failure.or(Some(error)),
                }
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
                let reply = self
                    .run("GETRANGE", first, &node, async |link| {
                        pipeline
                            .query_async::<Vec<RedisResult<Vec<u8>>>>(link)
                            .await
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
                    let (host, port) = address
                        .rsplit_once(':')
                        .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
                        .unwrap_or_default();
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    let guard = self.node_named(address);
                    let reply = self
                        .run("SCAN", pattern, &guard, async |link| match link {
                            Link::Cluster(conn) => conn.route_command(scan, routing).await,
                            Link::Single(conn) => scan.query_async(conn).await,
                        })
                        .await?;
                    redis::from_redis_value(reply).map_err(|source| Error::Redis {
                        op: "SCAN",
                        key: pattern.to_owned(),
                        source: RedisFailure {
                            error: source.into(),
                            outage: false,
                        },
                    })?
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
            Target::Single(single) => NodeRef::Single(&single.node),
            Target::Cluster(cluster) => {
                let topology = cluster.topology.load();
                let node = topology
                    .nodes
                    .iter()
                    .find(|node| node.name == name)
                    .unwrap_or(&topology.nodes[0]);
                NodeRef::Cluster(node.clone())
            }
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
        self.run(op, key, &node, async |link| {
            invocation.invoke_async(link).await
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
    fn slots_follow_hash_tags() {
        assert_eq!(slot_of(b"123456789"), 0x31C3 % SLOTS as u16);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
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
