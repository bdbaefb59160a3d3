//! The links that carry Redis's invalidations to the near tier
//! (server-assisted client tracking, RESP3 push messages).
//!
//! **Broadcasting mode, on the cache's key prefix.** Each link is its own
//! RESP3 connection, named `cachefw-near`, that runs
//! `CLIENT TRACKING ON BCAST PREFIX {namespace}:v{version}:`: the server
//! then pushes an invalidation for every write of a key under the prefix,
//! by any client. The default mode would track only keys *read on the
//! tracking connection* (or on connections redirecting to it): our reads go
//! over the data connection, which reconnects on its own schedule and is
//! shared by pipelined callers, and every reconnect would silently end the
//! redirection. Broadcasting depends on nothing but this one link staying
//! up, costs the server no per-key table, and its cost (invalidations of
//! keys this process never read) is bounded by the write rate of one
//! cache's namespace.
//!
//! A supervisor task keeps one link per server (per primary on a Cluster),
//! probes them, and tells the near tier when it may serve: only while every
//! link is up, from an empty tier each time they come back. A link that
//! closes (the library pushes a disconnection), a probe that fails or times
//! out, a `FLUSHALL`/`FLUSHDB` (a null invalidation), and a change of the
//! cluster's slot layout (a failover, a slot migration) each stop or empty
//! the tier before it serves again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ProtocolVersion, PushInfo,
    PushKind, Value,
};
use tokio::sync::Notify;

use crate::near::Near;

/// The name of every tracking connection (`CLIENT LIST` shows it).
pub(crate) const LINK_NAME: &str = "cachefw-near";

/// How often the links are probed (a `PING` each; on a Cluster, the slot
/// layout too), and how long a probe may take before its link counts as
/// down.
const PROBE_EVERY: Duration = Duration::from_millis(250);
const PROBE_PATIENCE: Duration = Duration::from_secs(1);
/// Waits between failed attempts to bring the links up: doubling to the
/// cap.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Where the links go.
pub(crate) enum Servers {
    /// One server.
    Single(Box<ConnectionInfo>),
    /// A Redis Cluster, known by its seed nodes: a link per primary.
    Cluster(Vec<ConnectionInfo>),
}

/// The supervisor task: aborted, with its links, when this is dropped.
pub(crate) struct Tracking {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tracking {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the supervisor for `near`. Needs a Tokio runtime (`build()` runs
/// on one).
pub(crate) fn start(near: Arc<Near>, servers: Servers, prefix: String) -> Tracking {
    let supervisor = Supervisor {
        near,
        servers,
        prefix,
        generation: Arc::new(AtomicU64::new(0)),
        broken: Arc::new(Notify::new()),
    };
    Tracking {
        task: tokio::spawn(supervisor.run()),
    }
}

struct Supervisor {
    near: Arc<Near>,
    servers: Servers,
    prefix: String,
    /// Links of older generations are gone: their disconnections are
    /// ignored.
    generation: Arc<AtomicU64>,
    /// Woken by a link's disconnection.
    broken: Arc<Notify>,
}

/// One server's link, and the slot layout it was made for.
struct Link {
    conn: MultiplexedConnection,
}

impl Supervisor {
    async fn run(self) {
        let mut retry = FIRST_RETRY;
        loop {
            let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            match tokio::time::timeout(PROBE_PATIENCE * 4, self.connect(generation)).await {
                Ok(Ok((links, layout))) => {
                    // Every link tracks now: writes from here on reach us.
                    // The tier starts empty, so nothing written while we
                    // were not listening can be served.
                    self.near.up();
                    retry = FIRST_RETRY;
                    self.watch(&links, layout.as_deref()).await;
                    self.near.down();
                }
                Ok(Err(error)) => {
                    tracing::debug!(%error, "near cache: invalidation links not up");
                    self.near.down();
                }
                Err(_) => self.near.down(),
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(MAX_RETRY);
        }
    }

    /// Links to every server (every primary of a cluster, as its layout
    /// says now), tracking; and that layout.
    async fn connect(
        &self,
        generation: u64,
    ) -> Result<(Vec<Link>, Option<Vec<(usize, usize, String)>>), redis::RedisError> {
        match &self.servers {
            Servers::Single(info) => Ok((
                vec![self.link(ConnectionInfo::clone(info), generation).await?],
                None,
            )),
            Servers::Cluster(seeds) => {
                let layout = layout_from_seeds(seeds).await?;
                let seed = &seeds[0];
                let mut primaries: Vec<&str> =
                    layout.iter().map(|(_, _, node)| node.as_str()).collect();
                primaries.sort_unstable();
                primaries.dedup();
                let mut links = Vec::with_capacity(primaries.len());
                for node in primaries {
                    links.push(self.link(at(seed, node)?, generation).await?);
                }
                Ok((links, Some(layout)))
            }
        }
    }

    async fn link(&self, info: ConnectionInfo, generation: u64) -> Result<Link, redis::RedisError> {
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings))?;
        let near = Arc::clone(&self.near);
        let current = Arc::clone(&self.generation);
        let broken = Arc::clone(&self.broken);
        // Runs on the connection's own task as each push arrives: the key
        // leaves the tier before the next reply on this link is read.
        let on_push = move |push: PushInfo| {
            match push.kind {
                PushKind::Invalidate => invalidate(&near, &push.data),
                PushKind::Disconnection if current.load(Ordering::SeqCst) == generation => {
                    near.down();
                    broken.notify_one();
                }
                _ => {}
            }
            Ok::<(), redis::aio::SendError>(())
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(PROBE_PATIENCE))
            .set_response_timeout(Some(PROBE_PATIENCE))
            .set_push_sender(on_push);
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(LINK_NAME)
            .exec_async(&mut conn)
            .await?;
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("BCAST")
            .arg("PREFIX")
            .arg(&self.prefix)
            .exec_async(&mut conn)
            .await?;
        Ok(Link { conn })
    }

    /// Probes the links until one fails, closes, or the cluster's layout
    /// changes.
    async fn watch(&self, links: &[Link], layout: Option<&[(usize, usize, String)]>) {
        loop {
            tokio::select! {
                () = self.broken.notified() => return,
                () = tokio::time::sleep(PROBE_EVERY) => {}
            }
            if !self.near.is_up() {
                return;
            }
            for link in links {
                let mut conn = link.conn.clone();
                let ping = redis::cmd("PING");
                let ping = ping.exec_async(&mut conn);
                if !matches!(tokio::time::timeout(PROBE_PATIENCE, ping).await, Ok(Ok(()))) {
                    return;
                }
            }
            if let (Some(layout), Some(link)) = (layout, links.first()) {
                let mut conn = link.conn.clone();
                let mut slots = redis::cmd("CLUSTER");
                slots.arg("SLOTS");
                let read = slots.query_async::<Value>(&mut conn);
                let now = match tokio::time::timeout(PROBE_PATIENCE, read).await {
                    Ok(Ok(reply)) => crate::backend::redis::parse_slots(reply),
                    _ => return,
                };
                if !now.is_some_and(|mut now| {
                    now.sort_unstable();
                    now == layout
                }) {
                    return;
                }
            }
        }
    }
}

/// An invalidation push: `[keys]`, or `[nil]` when the server flushed.
fn invalidate(near: &Near, data: &[Value]) {
    match data.first() {
        Some(Value::Array(keys)) => {
            for key in keys {
                match key {
                    Value::BulkString(key) => match std::str::from_utf8(key) {
                        Ok(key) => near.invalidate(key),
                        // Not one of our keys (ours are UTF-8); but play it
                        // safe with whatever the server says.
                        Err(_) => near.flush(),
                    },
                    Value::SimpleString(key) => near.invalidate(key),
                    _ => near.flush(),
                }
            }
        }
        _ => near.flush(),
    }
}

/// The slot layout, from the first seed that answers; sorted, so two reads
/// compare equal when nothing moved.
async fn layout_from_seeds(
    seeds: &[ConnectionInfo],
) -> Result<Vec<(usize, usize, String)>, redis::RedisError> {
    let mut last = None;
    for seed in seeds {
        let read = async {
            let client = Client::open(seed.clone())?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(PROBE_PATIENCE))
                .set_response_timeout(Some(PROBE_PATIENCE));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<Value>(&mut conn)
                .await
        };
        match read.await {
            Ok(reply) => {
                if let Some(mut layout) = crate::backend::redis::parse_slots(reply) {
                    layout.sort_unstable();
                    return Ok(layout);
                }
                last = Some(unreadable_layout());
            }
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(unreadable_layout))
}

fn unreadable_layout() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Parse, "unreadable CLUSTER SLOTS reply"))
}

/// `seed`'s settings (credentials, TLS) for the node at `host:port`.
fn at(seed: &ConnectionInfo, node: &str) -> Result<ConnectionInfo, redis::RedisError> {
    let (host, port) = node
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
        .ok_or_else(unreadable_layout)?;
    let addr = match seed.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    Ok(seed.clone().set_addr(addr))
}
