//! The Redis backend: one auto-reconnecting multiplexed connection (or a
//! Redis Cluster connection), every command bounded by the operation timeout
//! and guarded by the circuit breaker.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    Client, Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult, Script,
    ScriptInvocation, Value,
};

use crate::Error;
use crate::breaker::Breaker;
use crate::lease::scripts;

/// Keys removed per `UNLINK` during a prefix eviction, and the `COUNT` hint
/// of each `SCAN` step.
const EVICT_BATCH: usize = 500;

/// Where commands go.
// One per cache, behind its `Arc`: the size of the larger variant costs
// nothing, and boxing it would add a pointer chase to every command.
#[allow(clippy::large_enum_variant)]
enum Target {
    Single(ConnectionManager),
    /// Connected on first use, and again after a failed attempt, so that a
    /// cluster that is down at start does not fail `build()`.
    Cluster {
        client: ClusterClient,
        conn: tokio::sync::OnceCell<ClusterConnection>,
    },
}

/// A connection to either target, for one command.
enum Link {
    Single(ConnectionManager),
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

pub(crate) struct RedisBackend {
    target: Target,
    timeout: Duration,
    pub(crate) breaker: Breaker,
    acquire: Script,
    fill: Script,
    release: Script,
}

/// Whether an error says Redis is unreachable or unwell, as opposed to an
/// answer it gave (a wrong type, a reply that does not convert).
fn is_outage(error: &RedisError) -> bool {
    !matches!(
        error.kind(),
        ErrorKind::Server(_) | ErrorKind::Parse | ErrorKind::UnexpectedReturnType
    )
}

impl RedisBackend {
    /// Parses `url` and prepares a connection without opening it, so a Redis
    /// that is down at start leaves the cache degraded rather than failing.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, Error> {
        let client = Client::open(url).map_err(|source| Error::InvalidUrl {
            url: mask_password(url),
            source,
        })?;
        // Reconnection is driven by use: a failed attempt is not retried in
        // the background, the next command starts a fresh one. Each attempt
        // and each reply is bounded like the commands themselves.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|source| {
            Error::Config {
                setting: "redis",
                reason: source.to_string(),
            }
        })?;
        Ok(Self::with_target(Target::Single(conn), timeout))
    }

    /// Parses the cluster's seed node URLs; connects on first use.
    pub(crate) fn cluster(nodes: &[String], timeout: Duration) -> Result<Self, Error> {
        let client = ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(1)
            .build()
            .map_err(|source| Error::InvalidUrl {
                url: nodes
                    .iter()
                    .map(|node| mask_password(node))
                    .collect::<Vec<_>>()
                    .join(", "),
                source,
            })?;
        let target = Target::Cluster {
            client,
            conn: tokio::sync::OnceCell::new(),
        };
        Ok(Self::with_target(target, timeout))
    }

    fn with_target(target: Target, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            breaker: Breaker::new(),
            acquire: Script::new(scripts::ACQUIRE),
            fill: Script::new(scripts::FILL),
            release: Script::new(scripts::RELEASE),
        }
    }

    async fn link(&self) -> RedisResult<Link> {
        match &self.target {
            Target::Single(conn) => Ok(Link::Single(conn.clone())),
            Target::Cluster { client, conn } => {
                let conn = conn
                    .get_or_try_init(|| client.get_async_connection())
                    .await?;
                Ok(Link::Cluster(conn.clone()))
            }
        }
    }

    /// Runs `command` unless the breaker is open, bounded by the operation
    /// timeout. `key` is for the error's context.
    async fn run<T>(
        &self,
        op: &'static str,
        key: &str,
        command: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, Error> {
        if let Err(refused) = self.breaker.admit() {
            return Err(Error::Unavailable {
                op,
                key: key.to_owned(),
                retry_in: refused.retry_in,
            });
        }
        // One Redis's client bounds the connect and each reply by the
        // timeout itself: a second timer here would only cost the hit path.
        // The cluster client's slot discovery is not bounded that way.
        let replied = match &self.target {
            Target::Single(_) => Ok(command.await),
            Target::Cluster { .. } => tokio::time::timeout(self.timeout, command).await,
        };
        let result = match replied {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) if !source.is_timeout() => Err(Error::Redis {
                op,
                key: key.to_owned(),
                source,
            }),
            Ok(Err(_)) | Err(_) => Err(Error::Timeout {
                op,
                key: key.to_owned(),
                after: self.timeout,
            }),
        };
        match &result {
            Err(Error::Redis { source, .. }) if is_outage(source) => self.breaker.failure(),
            Err(Error::Timeout { .. }) => self.breaker.failure(),
            _ => self.breaker.success(),
        }
        result
    }

    async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        command: &Cmd,
    ) -> Result<T, Error> {
        self.run(op, key, async {
            command.query_async(&mut self.link().await?).await
        })
        .await
    }

    /// Runs a script: `EVALSHA`, loading it on `NOSCRIPT` (after a restart
    /// or a `SCRIPT FLUSH`).
    async fn invoke<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        call: &ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        self.run(op, key, async {
            call.invoke_async(&mut self.link().await?).await
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
        call.arg(marker).arg(lease_ms);
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

    /// Opens the connection now rather than on the first command.
    pub(crate) async fn ping(&self) -> Result<(), Error> {
        self.query("PING", "", &redis::cmd("PING")).await
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        let reply: Option<Vec<u8>> = self.query("GET", key, redis::cmd("GET").arg(key)).await?;
        Ok(reply.map(Bytes::from))
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

    /// `None` when the key is missing or has no expiry.
    pub(crate) async fn ttl(&self, key: &str) -> Result<Option<Duration>, Error> {
        let ms: i64 = self.query("PTTL", key, redis::cmd("PTTL").arg(key)).await?;
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }

    /// `SCAN`s for `pattern` and `UNLINK`s what it finds, batch by batch, so a
    /// large keyspace never blocks Redis the way `KEYS` would.
    pub(crate) async fn evict_matching(&self, pattern: &str) -> Result<u64, Error> {
        let Target::Cluster { .. } = &self.target else {
            return self.evict_on(pattern, None).await;
        };
        let mut removed = 0;
        for node in self.primaries().await? {
            removed += self.evict_on(pattern, Some(node)).await?;
        }
        Ok(removed)
    }

    /// The addresses of a cluster's primaries, where its keys live.
    async fn primaries(&self) -> Result<Vec<(String, u16)>, Error> {
        let nodes: String = self
            .query("CLUSTER NODES", "", redis::cmd("CLUSTER").arg("NODES"))
            .await?;
        Ok(nodes
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(' ');
                let address = fields.nth(1)?;
                let flags = fields.next()?;
                if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                    return None;
                }
                let (host, port) = address.split('@').next()?.rsplit_once(':')?;
                Some((host.to_owned(), port.parse().ok()?))
            })
            .collect())
    }

    /// `SCAN`s one node (all of a single Redis when `node` is `None`) and
    /// `UNLINK`s what it finds, batch by batch.
    async fn evict_on(&self, pattern: &str, node: Option<(String, u16)>) -> Result<u64, Error> {
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(EVICT_BATCH);
            let (next, keys): (u64, Vec<Vec<u8>>) = match &node {
                None => self.query("SCAN", pattern, &scan).await?,
                Some((host, port)) => {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    });
                    let reply = self
                        .run("SCAN", pattern, async {
                            match self.link().await? {
                                Link::Cluster(mut conn) => conn.route_command(scan, routing).await,
                                Link::Single(mut conn) => scan.query_async(&mut conn).await,
                            }
                        })
                        .await?;
                    redis::from_redis_value(reply).map_err(|source| Error::Redis {
                        op: "SCAN",
                        key: pattern.to_owned(),
                        source: source.into(),
                    })?
                }
            };
            // In a cluster, UNLINK of keys in several slots is split by slot.
            for batch in keys.chunks(EVICT_BATCH) {
                let count: u64 = self
                    .query("UNLINK", pattern, redis::cmd("UNLINK").arg(batch))
                    .await?;
                removed += count;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}

/// The URL with any password replaced, fit for error messages and logs.
pub(crate) fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::mask_password;

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
        assert_eq!(mask_password("redis://app@host"), "redis://app@host");
        assert_eq!(mask_password("not a url"), "not a url");
    }
}
