//! Raw Redis commands for crates built on cachefw (the Cassandra adapter's
//! write-behind streams): each runs on the node that holds its key,
//! through that node's circuit breaker and within the operation timeout,
//! and its failures are counted and logged as every command of the cache.
//!
//! Keys are given whole: they are not put under the cache's namespace and
//! version, so they can live outside what `clear()` removes. A blocking
//! command (`BLPOP`, `XREAD … BLOCK`) would hold up every command sharing
//! the connection: poll instead. Not a stable API: reached through
//! `cachefw::__adapter`.

use crate::cache::Cache;
use crate::error::Error;

/// Runs `command` on the Redis node that holds `key` and returns the reply.
/// `op` names the command in errors and logs.
///
/// ```no_run
/// # async fn demo(cache: cachefw::Cache) -> Result<(), cachefw::Error> {
/// use cachefw::__adapter::{command, redis};
/// let key = format!("{}:wb:carts", cache.namespace());
/// let length = command::run(&cache, "XLEN", &key, redis::cmd("XLEN").arg(&key)).await?;
/// assert!(matches!(length, redis::Value::Int(_)));
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::Config`] on an in-memory cache; otherwise as any command:
/// [`Error::Redis`] (an error reply too), [`Error::Timeout`],
/// [`Error::Unavailable`].
pub async fn run(
    cache: &Cache,
    op: &'static str,
    key: &str,
    command: &redis::Cmd,
) -> Result<redis::Value, Error> {
    let inner = cache.inner();
    inner.observe(inner.backend().command(op, key, command).await)
}

/// Runs a Lua script on the Redis node that holds `key` (its first key;
/// every key it names must share that node's slot), by `EVALSHA`, loading
/// it on `NOSCRIPT`.
///
/// ```no_run
/// # async fn demo(cache: cachefw::Cache) -> Result<(), cachefw::Error> {
/// use cachefw::__adapter::{command, redis};
/// let script = redis::Script::new("return redis.call('XLEN', KEYS[1])");
/// let key = format!("{}:wb:carts", cache.namespace());
/// let length = command::invoke(&cache, "XLEN", &key, &script.key(&key)).await?;
/// assert!(matches!(length, redis::Value::Int(_)));
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`run`].
pub async fn invoke(
    cache: &Cache,
    op: &'static str,
    key: &str,
    invocation: &redis::ScriptInvocation<'_>,
) -> Result<redis::Value, Error> {
    let inner = cache.inner();
    inner.observe(inner.backend().invoke(op, key, invocation).await)
}
