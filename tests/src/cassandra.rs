//! The Cassandra side of the adapter's tests: a fresh kassandra (an
//! in-memory server of the CQL native protocol) per test, a driver session
//! on it, and repositories with their tables.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cachefw::Cache;
use cachefw_cassandra::{Entity, Repository};
use kassandra_tester::KassandraTester;
use kassandra_tester::kassandra::KassandraSession;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

/// The keyspace [`with_kassandra`] creates.
pub const KEYSPACE: &str = "shop";

/// A driver session on the kassandra at `addr`, with `request_timeout`
/// (`None`: requests wait as long as the server takes). kassandra has no
/// schema-agreement tables, so the session does not wait on them.
///
/// # Panics
///
/// When the driver cannot connect.
pub async fn connect(addr: SocketAddr, request_timeout: Option<Duration>) -> Arc<Session> {
    let profile = ExecutionProfile::builder()
        .request_timeout(request_timeout)
        .build()
        .into_handle();
    let session = SessionBuilder::new()
        .known_node(addr.to_string())
        .auto_await_schema_agreement(false)
        .default_execution_profile_handle(profile)
        .build()
        .await
        .expect("the driver connects to kassandra");
    Arc::new(session)
}

/// Runs `test` against a fresh kassandra: its address, and a session on
/// it with keyspace [`KEYSPACE`]. The server stops when `test` is done.
///
/// # Panics
///
/// When kassandra does not start or the keyspace cannot be created.
pub async fn with_kassandra<F, Fut>(test: F)
where
    F: FnOnce(SocketAddr, Arc<Session>) -> Fut,
    Fut: Future<Output = ()>,
{
    // `in_scope` takes an `FnMut`; the test runs once.
    let mut once = Some(test);
    KassandraTester::new(KassandraSession::new())
        .in_scope(|addr| {
            let test = once.take();
            async move {
                let test = test.expect("kassandra runs the test once");
                let session = connect(addr, None).await;
                cachefw_cassandra::create_keyspace(&session, KEYSPACE, 1)
                    .await
                    .expect("keyspace");
                test(addr, session).await;
                Ok::<(), ()>(())
            }
        })
        .await
        .expect("kassandra serves");
}

/// A repository of `T` over `session` and `cache`, with its table created.
///
/// # Panics
///
/// When the repository or its table cannot be made.
pub async fn repository<T: Entity>(session: &Arc<Session>, cache: &Cache) -> Repository<T> {
    let repository = Repository::new(session.clone(), cache.clone())
        .await
        .expect("repository");
    repository.create_table().await.expect("create table");
    repository
}
