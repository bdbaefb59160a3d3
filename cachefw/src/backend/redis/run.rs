//! A command through the breaker of the node that holds its key, and what
//! its errors mean: for the breaker (`outcome_of`), and for `build()` (a
//! certificate that does not verify, credentials refused: `misconfigured`).
//!
//! Every command goes through the circuit breaker of the node that holds its
//! key (one for a single Redis, one per primary on a cluster), so one dead
//! primary sends only its own keys to the loaders.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, ServerErrorKind,
};

use super::cluster::{CLUSTER_DOWN_RETRY, Cluster, MAX_REDIRECTS};
use super::connection::{Node, timed_out};
use super::{RedisBackend, Topology};
use crate::backend::breaker::{BreakerState, Verdict};
use crate::error::{Error, RedisFailure};
use crate::slots::slot_of;

/// What the server's answer or the connection's failure means for the
/// breaker.
pub(super) fn outcome_of(error: &RedisError) -> Verdict {
    match error.kind() {
        // This server cannot serve us now: it became a replica in a
        // failover, is loading its data, or lost its primary.
        ErrorKind::Server(
            ServerErrorKind::ReadOnly | ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown,
        ) => Verdict::Refused,
        ErrorKind::Server(ServerErrorKind::ClusterDown | ServerErrorKind::TryAgain)
        | ErrorKind::Io
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::AuthenticationFailed => Verdict::Failed,
        // The server wants credentials it was not given, or refuses them
        // (a password rotated under a running cache): it serves us nothing.
        _ if matches!(error.code(), Some("NOAUTH" | "WRONGPASS")) => Verdict::Failed,
        // An answer about the command itself (`WRONGTYPE`, `OOM`, `NOSCRIPT`
        // after its reload failed, a reply that does not convert): Redis is
        // up, and the breaker stays out of it.
        _ if error.is_timeout() || error.is_connection_dropped() => Verdict::Failed,
        _ => Verdict::Answered,
    }
}

/// The node a command goes to: borrowed for one Redis, counted for a
/// cluster (whose layout may be replaced meanwhile).
pub(super) enum NodeRef<'a> {
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

impl RedisBackend {
    /// Whether `error`, met by the first command, means the settings cannot
    /// work (a certificate that does not verify, credentials refused) rather
    /// than a Redis that is down: the error `build()` returns. A cluster's
    /// seed nodes are asked one by one.
    pub(crate) async fn misconfigured(&self, error: &Error) -> Option<Error> {
        match &self.topology {
            Topology::Single(node) => match error {
                Error::Redis { source, .. } => {
                    misconfigured(&source.error, &node.name, self.user.as_deref())
                }
                _ => None,
            },
            Topology::Cluster(cluster) => {
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
        if matches!(self.topology, Topology::Single(_)) {
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
        match &self.topology {
            Topology::Single(node) => node.breaker.state_for(),
            Topology::Cluster(cluster) => {
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

    pub(super) fn node_for(&self, key: &str) -> NodeRef<'_> {
        match &self.topology {
            Topology::Single(node) => NodeRef::Single(node),
            Topology::Cluster(cluster) => NodeRef::Cluster(
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
    pub(super) async fn run<T, F, C>(
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
        let cluster = match &self.topology {
            Topology::Single(_) => None,
            Topology::Cluster(cluster) => Some(cluster),
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
                            && outcome_of(error) != Verdict::Answered
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
                Ok(_) => Verdict::Answered,
                Err(_) if redirect.is_some() => Verdict::Answered,
                // The node is up and says the cluster is not (a primary
                // failed and is not replaced yet): that is no fault of this
                // node, whose breaker stays out of it.
                Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::ClusterDown) => {
                    if let Some(cluster) = cluster {
                        cluster.refresh();
                    }
                    Verdict::Answered
                }
                Err(error) => outcome_of(error),
            };
            pass.record(outcome);
            if let Some(cluster) = cluster {
                if outcome == Verdict::Answered {
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
    pub(super) fn error_of(&self, op: &'static str, key: &str, source: RedisError) -> Error {
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
                    outage: outcome_of(&source) != Verdict::Answered,
                    error: source,
                },
            }
        }
    }

    pub(super) async fn query<T: FromRedisValue>(
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

    /// The node of that name, for commands routed by address.
    pub(super) fn node_named(&self, name: &str) -> NodeRef<'_> {
        match &self.topology {
            Topology::Single(node) => NodeRef::Single(node),
            Topology::Cluster(cluster) => NodeRef::Cluster(cluster.node_named(name)),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

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
    fn errors_are_classified_by_meaning() {
        let server = |code: &str| {
            let reply = format!("-{code} detail\r\n");
            redis::parse_redis_value(reply.as_bytes())
                .and_then(Value::extract_error)
                .expect_err("an error reply")
        };
        assert_eq!(outcome_of(&server("READONLY")), Verdict::Refused);
        assert_eq!(outcome_of(&server("LOADING")), Verdict::Refused);
        assert_eq!(outcome_of(&server("MASTERDOWN")), Verdict::Refused);
        assert_eq!(outcome_of(&server("CLUSTERDOWN")), Verdict::Failed);
        assert_eq!(outcome_of(&server("TRYAGAIN")), Verdict::Failed);
        assert_eq!(outcome_of(&server("OOM")), Verdict::Answered);
        assert_eq!(outcome_of(&server("WRONGTYPE")), Verdict::Answered);
        assert_eq!(outcome_of(&server("NOSCRIPT")), Verdict::Answered);
        assert_eq!(outcome_of(&timed_out()), Verdict::Failed);
        assert_eq!(outcome_of(&server("NOAUTH")), Verdict::Failed);
        assert_eq!(outcome_of(&server("WRONGPASS")), Verdict::Failed);
        assert_eq!(outcome_of(&server("NOPERM")), Verdict::Answered);
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(outcome_of(&reset), Verdict::Failed);
    }
}
