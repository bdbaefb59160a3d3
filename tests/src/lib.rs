//! The cachefw test kit: private `redis-server` processes on free loopback
//! ports, which tests stop and restart to inject faults, and a proxy that
//! makes a server slow; and what the integration tests share: fixtures,
//! [`eventually`], the kassandra setup.
//!
//! Every server has its own port and directory, persists nothing (unless
//! started with [`RedisServer::start_durable`]), and is
//! killed when its [`RedisServer`] is dropped (and, on Linux, when the test
//! process dies). Nothing here assumes a server on 6379.
//!
//! TLS servers ([`RedisServer::start_tls`], [`RedisCluster::start_tls`])
//! use certificates made fresh by [`TestPki`].
//!
//! Set `REDIS_SERVER` to use a `redis-server` binary that is not on `PATH`.

#![warn(missing_docs)]

#[cfg(feature = "cassandra")]
pub mod cassandra;
mod cluster;
pub mod fixtures;
mod proxy;
mod redis_server;
mod tls;
mod wait;

pub use cluster::RedisCluster;
pub use proxy::DelayProxy;
pub use redis_server::RedisServer;
pub use tls::TestPki;
pub use wait::{eventually, eventually_async};
