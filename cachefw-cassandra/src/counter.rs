//! The counter type of an entity without `#[counter]` fields.

/// The [`Entity::Counter`](crate::Entity::Counter) of a table of rows (no
/// `#[counter]` field): it has no value, so
/// [`Repository::increment`](crate::Repository::increment) cannot be called
/// on such an entity; a call does not compile.
///
/// ```compile_fail,E0433
/// # use cachefw_cassandra::{Entity, Repository};
/// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
/// #[entity(keyspace = "shop", table = "users", ttl = "10m")]
/// pub struct User { #[partition_key] pub id: i64, pub visits: i64 }
///
/// async fn count(users: Repository<User>) -> Result<(), cachefw_cassandra::Error> {
///     users.increment(&UserKey { id: 1 }, UserCounter::Visits, 1).await // no `UserCounter`
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoCounter {}
