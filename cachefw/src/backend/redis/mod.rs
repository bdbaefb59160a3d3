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
//! Where each concern lives:
//!
//! - `connection.rs`: a node's links and their generations;
//! - `cluster.rs`: the cluster's topology, its slots and their refreshes;
//! - `run.rs`: a command through its node's breaker, and what its errors
//!   mean (the breaker's outcome, settings that cannot work);
//! - `commands.rs`: the commands (`GET`-like reads, writes, deletions,
//!   prefix evictions, pings);
//! - `invoke.rs`: the script calls (leases, claims, versioned entries);
//! - `config.rs`: URLs, TLS, credentials and their masking.
//!
//! This file holds the `RedisBackend` type, its constructors and what the
//! near tier is given of it.

mod cluster;
mod commands;
pub(crate) mod config;
mod connection;
mod invoke;
mod run;

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use crate::backend::breaker::Rules;
use crate::backend::scripts;
use crate::error::Error;
use cluster::Cluster;
use config::{Connect, client_for, is_tls, mask_password, node_name};
use connection::Node;

/// Where commands go.
enum Topology {
    Single(Arc<Node>),
    Cluster(Arc<Cluster>),
}

pub(crate) struct RedisBackend {
    topology: Topology,
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
        Ok(Self::with_topology(Topology::Single(node), connect))
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
        Ok(Self::with_topology(
            Topology::Cluster(Arc::new(cluster)),
            connect,
        ))
    }

    fn with_topology(topology: Topology, connect: &Connect) -> Self {
        // The user of the credentials, or the URL's.
        let client = match &topology {
            Topology::Single(node) => Some(node.client()),
            Topology::Cluster(cluster) => cluster.seeds.first().map(|(_, client)| client),
        };
        let user = client
            .and_then(|client| client.get_connection_info().redis_settings().username())
            .map(str::to_owned);
        Self {
            topology,
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
        match &self.topology {
            Topology::Single(node) => crate::near::tracking::Servers::Single(Box::new(
                node.client().get_connection_info().clone(),
            )),
            Topology::Cluster(cluster) => crate::near::tracking::Servers::Cluster(
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
        match &self.topology {
            Topology::Single(node) => node.pairing(),
            Topology::Cluster(_) => Arc::default(),
        }
    }
}
