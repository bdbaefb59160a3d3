//! Links to Redis servers: one multiplexed connection per server, shared by
//! every command, made on first use and replaced as soon as it fails (a
//! restart, a failover, a timeout: a frozen server's connection may hold a
//! backlog of stale replies); and the node that owns it with its breaker.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};

use crate::backend::breaker::{Breaker, Rules};
use crate::near::tracking::{Pairing, server_of};

/// A server the breaker guards, and its connection: one Redis, or one
/// cluster node. Each node has its own connection, timeouts and breaker, so
/// a slow or dead node costs only the calls routed to it.
pub(super) struct Node {
    /// `host:port`, for errors, logs and routing.
    pub(super) name: String,
    pub(super) breaker: Breaker,
    client: Client,
    config: AsyncConnectionConfig,
    conn: Shared<MultiplexedConnection>,
    /// Milliseconds (on the cluster's clock) before which trouble on this
    /// node does not ask for the slot layout again, and the wait after the
    /// next such request: a node that stays unreachable asks ever less
    /// often; one that answers starts over.
    pub(super) quiet_until: AtomicU64,
    pub(super) backoff: AtomicU64,
    /// With a near tier on a single Redis: told the server of each new
    /// connection before it serves a command.
    pairing: OnceLock<Arc<Pairing>>,
}

impl Node {
    /// A node reached through `client`, each connect and reply bounded by
    /// `timeout`, its breaker following the builder's `rules`.
    pub(super) fn new(
        name: String,
        client: Client,
        timeout: Duration,
        rules: &Arc<Rules>,
    ) -> Arc<Self> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Arc::new(Self {
            name,
            breaker: Breaker::new(rules.clone()),
            client,
            config,
            conn: Shared::new(),
            quiet_until: AtomicU64::new(0),
            backoff: AtomicU64::new(0),
            pairing: OnceLock::new(),
        })
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// A handle onto the node's connection, and its number for
    /// [`discard`](Self::discard).
    pub(super) async fn connection(
        &self,
        timeout: Duration,
    ) -> RedisResult<(MultiplexedConnection, u64)> {
        self.conn
            .get(timeout, || async {
                let mut conn = self
                    .client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await?;
                if let Some(pairing) = self.pairing.get() {
                    match server_of(&mut conn).await {
                        Ok(server) => pairing.data_server(&server),
                        // `INFO` refused (an ACL without it): the data
                        // connection serves on, and no link pairs with it,
                        // so the near tier stays down (its links say why).
                        Err(error) if error.code().is_some() => pairing.data_server("?"),
                        Err(error) => return Err(error),
                    }
                }
                Ok(conn)
            })
            .await
    }

    /// A connection of its own, not shared (for `ASKING`, which holds for
    /// the next command on its connection only).
    pub(super) async fn private_connection(&self) -> RedisResult<MultiplexedConnection> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }

    /// Drops connection number `failed`, unless it was replaced already.
    pub(super) fn discard(&self, failed: u64) {
        self.conn.discard(failed);
    }

    /// The pairing of a near tier's link with this node's connection; the
    /// connection made before it is replaced, so that the next one tells
    /// its server.
    pub(super) fn pairing(&self) -> Arc<Pairing> {
        let pairing = self.pairing.get_or_init(Arc::default).clone();
        self.conn.current.store(None);
        pairing
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

pub(super) fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}
