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
//! cache's namespace: each costs one hash and a lookup under one of 64
//! locks (`Near::invalidate`), and drops nothing but its own key's copy,
//! so internal keys (leases, claims, version records) cost no copy and the
//! link keeps up with tens of thousands of writes a second. Every key
//! under the prefix reaches every tier, keys that later versions add (tag
//! generations) included, so their writes can drop the copies that depend
//! on them within the same round trip.
//!
//! On a single server the link and the data connection must talk to one
//! server: [`Pairing`] compares their `run_id`s, and a data connection that
//! reached another server than the link (a DNS or VIP switch) stops the
//! tier until the link is made again and reaches the same one.
//!
//! A supervisor task keeps one link per server (per primary on a Cluster),
//! probes them, and tells the near tier when it may serve: only while every
//! link is up, from an empty tier each time they come back. A link that
//! closes (the library pushes a disconnection), a probe that fails or times
//! out (or finds the server no longer a primary, or a slot migrating), a `FLUSHALL`/`FLUSHDB` (a null invalidation), and a change of the
//! cluster's slot layout (a failover, a slot migration) each stop or empty
//! the tier before it serves again.
//!
//! **Heartbeat.** Besides those probes, every link gets a `PING` each
//! [`HEARTBEAT_EVERY`], sent whether or not the last one was answered (a
//! slow link still keeps the tier serving); when every link answered the
//! same beat, the tier may serve until a grace after it was sent
//! (`Near::heard`). A link that goes silent without closing (a frozen
//! server, a path that drops everything) so stops the tier within the
//! grace, 450 ms, on the hit path itself; the probes then take the link
//! down if it stays silent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
};
use tokio::sync::Notify;

use crate::near::Near;
use crate::slots::node_settings;

/// The name of every tracking connection (`CLIENT LIST` shows it).
pub(crate) const LINK_NAME: &str = "cachefw-near";

/// How often the links are probed (`ROLE` on a single server, which must
/// still be a primary; `CLUSTER NODES` on each cluster primary, which must
/// migrate no slot, and the slot layout), and how long a probe may take
/// before its link counts as down.
const PROBE_EVERY: Duration = Duration::from_millis(250);
const PROBE_PATIENCE: Duration = Duration::from_secs(1);
/// Waits between failed attempts to bring the links up: doubling to the
/// cap.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// How often every link is sent a heartbeat `PING`.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(100);
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
pub(crate) fn start(
    near: Arc<Near>,
    servers: Servers,
    prefix: String,
    pairing: Arc<Pairing>,
) -> Tracking {
    let supervisor = Supervisor {
        near,
        servers,
        prefix,
        pairing,
        generation: Arc::new(AtomicU64::new(0)),
    };
    Tracking {
        task: tokio::spawn(supervisor.run()),
    }
}

struct Supervisor {
    near: Arc<Near>,
    servers: Servers,
    prefix: String,
    /// On a single server: which server the data connection talks to.
    pairing: Arc<Pairing>,
    /// Links of older generations are gone: their disconnections are
    /// ignored.
    generation: Arc<AtomicU64>,
}

/// Takes the tier down when the supervisor stops for any reason (its cache
/// dropped, its runtime shut down, a panic): with nobody listening for
/// invalidations, nothing may be served.
struct DownOnDrop(Arc<Near>);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        self.0.down();
    }
}

/// One server's link, and that server's `run_id`.
struct Link {
    conn: MultiplexedConnection,
    server: String,
}

/// Which server (by `run_id`) the data connection of a single Redis talks
/// to, and which one its tracking link listens to. Both reach the server
/// through one URL, each on its own schedule: after a DNS or VIP switch
/// where the old server still answers as a primary, one may reach the new
/// server while the other stays on the old, and the link would not hear the
/// writes the reads come from. The backend tells each new data connection's
/// server ([`data_server`](Self::data_server)) before the connection serves
/// a command; a mismatch stops the tier at once and makes the link again,
/// and the tier serves only once both talk to one server.
#[derive(Default)]
pub(crate) struct Pairing {
    sides: std::sync::Mutex<Sides>,
    pub(super) near: std::sync::OnceLock<std::sync::Weak<Near>>,
    relink: Notify,
}

#[derive(Default)]
struct Sides {
    data: Option<String>,
    link: Option<String>,
}

impl Pairing {
    fn sides(&self) -> std::sync::MutexGuard<'_, Sides> {
        self.sides
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A data connection was made to the server `run_id`.
    pub(crate) fn data_server(&self, run_id: &str) {
        let mut sides = self.sides();
        sides.data = Some(run_id.to_owned());
        if sides.link.as_deref().is_some_and(|link| link != run_id) {
            sides.link = None;
            if let Some(near) = self.near.get().and_then(std::sync::Weak::upgrade) {
                near.down();
            }
            self.relink.notify_one();
        }
    }

    /// The link is down: a data connection made meanwhile stops nothing
    /// more; the next link is compared with it. (A link that keeps reaching
    /// another server than a data connection that stays up keeps the tier
    /// down: it serves again once the data connection is replaced.)
    fn unlink(&self) {
        self.sides().link = None;
    }

    /// The link listens to `run_id` now: whether that is the data
    /// connection's server (or none is known yet).
    fn link_server(&self, run_id: &str) -> bool {
        let mut sides = self.sides();
        let paired = sides.data.as_deref().is_none_or(|data| data == run_id);
        sides.link = paired.then(|| run_id.to_owned());
        paired
    }
}

/// The `run_id` in an `INFO server` reply.
pub(crate) fn run_id(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(str::trim)
}

/// The `run_id` of the server at the other end of `conn`.
pub(crate) async fn server_of(
    conn: &mut MultiplexedConnection,
) -> Result<String, redis::RedisError> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    run_id(&info).map(str::to_owned).ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::Parse, "no run_id in INFO server"))
    })
}

/// The links of one generation, the slot layout they were made for (on a
/// cluster), and what wakes the watch when one of them closes.
struct Links {
    links: Vec<Link>,
    layout: Option<Vec<(usize, usize, String)>>,
    broken: Arc<Notify>,
}

/// How often a failure to bring the links up is logged at `warn`.
const WARN_EVERY: Duration = Duration::from_secs(30);

impl Supervisor {
    async fn run(self) {
        let _down = DownOnDrop(Arc::clone(&self.near));
        let mut retry = FIRST_RETRY;
        let mut warned: Option<tokio::time::Instant> = None;
        loop {
            let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            let budget = PROBE_PATIENCE * 4 + Duration::from_millis(100) * self.servers.len();
            let started = std::time::Instant::now();
            match tokio::time::timeout(budget, self.connect(generation)).await {
                Ok(Ok(links)) => {
                    // Every link tracks now: writes from here on reach us.
                    // The tier starts empty, so nothing written while we
                    // were not listening can be served. Their probes were
                    // answered: a heartbeat sent no later than `started`.
                    self.near.heard(started);
                    self.near.up();
                    retry = FIRST_RETRY;
                    warned = None;
                    tokio::select! {
                        () = self.watch(&links) => {}
                        () = heartbeat(&self.near, &links) => {}
                    }
                    self.near.down();
                    self.pairing.unlink();
                }
                failed => {
                    self.near.down();
                    let error = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => format!("not up within {budget:?}"),
                    };
                    // A setting that cannot work (an ACL without `CLIENT`,
                    // a renamed command) keeps the tier down for good:
                    // say so where operators look, now and then.
                    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        warned = Some(tokio::time::Instant::now());
                        tracing::warn!(
                            %error,
                            "cachefw: the near tier's invalidation links are not up; it serves \
                             nothing until they are (reads go to Redis)"
                        );
                    }
                }
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(MAX_RETRY);
        }
    }

    /// Links to every server (every primary of a cluster, as its layout
    /// says now, made together), tracking; refused while a slot is being
    /// migrated, or when the layout changed while the links were made.
    async fn connect(&self, generation: u64) -> Result<Links, redis::RedisError> {
        let broken = Arc::new(Notify::new());
        match &self.servers {
            Servers::Single(info) => {
                let link = self
                    .link(ConnectionInfo::clone(info), generation, &broken)
                    .await?;
                probe_single(&link).await?;
                if !self.pairing.link_server(&link.server) {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "the tracking link reached another server than the data connection",
                    )));
                }
                Ok(Links {
                    links: vec![link],
                    layout: None,
                    broken,
                })
            }
            Servers::Cluster(seeds) => {
                let layout = layout_from_seeds(seeds).await?;
                let seed = seeds.first().ok_or_else(unreadable_layout)?;
                let mut primaries: Vec<&str> =
                    layout.iter().map(|(_, _, node)| node.as_str()).collect();
                primaries.sort_unstable();
                primaries.dedup();
                let made = primaries
                    .into_iter()
                    .map(|node| async { self.link(at(seed, node)?, generation, &broken).await });
                let links = futures_util::future::try_join_all(made).await?;
                // Read again now that every link tracks: a layout that moved
                // while they were made could hide a primary we lack.
                let first = links.first().ok_or_else(unreadable_layout)?;
                if read_layout(first).await?.as_deref() != Some(layout.as_slice()) {
                    return Err(layout_moved());
                }
                for link in &links {
                    probe_cluster_node(link).await?;
                }
                Ok(Links {
                    links,
                    layout: Some(layout),
                    broken,
                })
            }
        }
    }

    async fn link(
        &self,
        info: ConnectionInfo,
        generation: u64,
        broken: &Arc<Notify>,
    ) -> Result<Link, redis::RedisError> {
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings))?;
        let near = Arc::clone(&self.near);
        let current = Arc::clone(&self.generation);
        let broken = Arc::clone(broken);
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
        let server = server_of(&mut conn).await?;
        Ok(Link { conn, server })
    }

    /// Probes the links until one fails, closes, stops being a primary, a
    /// slot starts migrating, or the cluster's layout changes.
    async fn watch(&self, links: &Links) {
        loop {
            tokio::select! {
                () = links.broken.notified() => return,
                () = self.pairing.relink.notified() => return,
                () = tokio::time::sleep(PROBE_EVERY) => {}
            }
            if !self.near.is_up() {
                return;
            }
            let probes = links.links.iter().map(|link| async move {
                match &links.layout {
                    None => probe_single(link).await,
                    Some(_) => probe_cluster_node(link).await,
                }
            });
            let probed =
                tokio::time::timeout(PROBE_PATIENCE, futures_util::future::try_join_all(probes))
                    .await;
            if !matches!(probed, Ok(Ok(_))) {
                return;
            }
            if let (Some(layout), Some(link)) = (&links.layout, links.links.first()) {
                match read_layout(link).await {
                    Ok(Some(now)) if now == *layout => {}
                    _ => return,
                }
            }
        }
    }
}

/// Sends every link a `PING` each [`HEARTBEAT_EVERY`] and tells the tier
/// when all of them answered one (see the module docs). Each beat is
/// bounded by the probe patience, so at most a few are out at once; they
/// are aborted with this future.
async fn heartbeat(near: &Near, links: &Links) {
    let mut beats = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let conns: Vec<MultiplexedConnection> =
                    links.links.iter().map(|link| link.conn.clone()).collect();
                let sent = std::time::Instant::now();
                beats.spawn(async move {
                    let pings = conns.into_iter().map(|mut conn| async move {
                        redis::cmd("PING").query_async::<()>(&mut conn).await
                    });
                    let answered =
                        tokio::time::timeout(PROBE_PATIENCE, futures_util::future::try_join_all(pings))
                            .await;
                    matches!(answered, Ok(Ok(_))).then_some(sent)
                });
            }
            Some(beat) = beats.join_next() => {
                if let Ok(Some(sent)) = beat {
                    near.heard(sent);
                }
            }
        }
    }
}

impl Servers {
    /// How many servers the seeds name (at least one).
    fn len(&self) -> u32 {
        match self {
            Self::Single(_) => 1,
            Self::Cluster(seeds) => u32::try_from(seeds.len()).unwrap_or(u32::MAX).max(1),
        }
    }
}

/// A single server must still be a primary: after a failover behind one
/// address (DNS, a proxy), the old node may answer `PING` while the writes
/// go elsewhere.
async fn probe_single(link: &Link) -> Result<(), redis::RedisError> {
    let mut conn = link.conn.clone();
    let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
    match role.first() {
        Some(Value::BulkString(role)) if role.as_slice() == b"master" => Ok(()),
        Some(Value::SimpleString(role)) if role == "master" => Ok(()),
        _ => Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the tracked server is no longer a primary",
        ))),
    }
}

/// A cluster primary answers, and migrates no slot: while one moves
/// (`MIGRATING`/`IMPORTING`, shown as `[slot->-node]` and `[slot-<-node]`
/// in `CLUSTER NODES`), its keys are read and written through `ASK` on a
/// node that may have no link, so the tier stays down until it is done.
async fn probe_cluster_node(link: &Link) -> Result<(), redis::RedisError> {
    let mut conn = link.conn.clone();
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await?;
    if nodes.contains("->-") || nodes.contains("-<-") {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "a slot is migrating",
        )));
    }
    Ok(())
}

/// The slot layout as one link's server sees it, sorted.
async fn read_layout(
    link: &Link,
) -> Result<Option<Vec<(usize, usize, String)>>, redis::RedisError> {
    let mut conn = link.conn.clone();
    let reply: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await?;
    Ok(crate::slots::parse_slots(reply, "").map(|mut layout| {
        layout.sort_unstable();
        layout
    }))
}

fn layout_moved() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Client,
        "the slot layout changed while the links were made",
    ))
}

/// An invalidation push: `[keys]`, or `[nil]` when the server flushed.
fn invalidate(near: &Near, data: &[Value]) {
    match data.first() {
        Some(Value::Array(keys)) => {
            for key in keys {
                match key {
                    Value::BulkString(key) => match std::str::from_utf8(key) {
                        Ok(key) => near.evict(key),
                        // Not one of our keys (ours are UTF-8); but play it
                        // safe with whatever the server says.
                        Err(_) => near.evict_all(),
                    },
                    Value::SimpleString(key) => near.evict(key),
                    _ => near.evict_all(),
                }
            }
        }
        _ => near.evict_all(),
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
                if let Some(mut layout) = crate::slots::parse_slots(reply, "") {
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
    node_settings(seed, node).ok_or_else(unreadable_layout)
}
