//! Declarative cache-aside for async Rust, over Redis or an in-process store.
//!
//! Build a [`Cache`], then read through it with [`Cache::get_or_load`]: on a
//! hit the stored value is returned; on a miss the loader runs once however
//! many callers are waiting, its value is stored for the TTL and returned to
//! all of them. A cache failure (Redis down, slow, or holding garbage) never
//! fails the caller: it is counted in [`Stats`], logged through `tracing`,
//! and the loader's value is returned.
//!
//! ```
//! use std::time::Duration;
//! use cachefw::Cache;
//!
//! #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct User { id: u64, name: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cachefw::Error> {
//! // In memory by default; `.redis("redis://127.0.0.1:6379")` for Redis.
//! let cache = Cache::builder().namespace("shop").version(1).build().await?;
//!
//! let load = || async { Ok::<_, std::io::Error>(User { id: 42, name: "Ada".into() }) };
//! let user = cache.get_or_load("user:42", Duration::from_secs(600), load).await;
//! assert_eq!(user.ok().map(|u| u.name).as_deref(), Some("Ada"));
//!
//! // Stored at "shop:v1:user:42".
//! assert!(cache.get::<User>("user:42").await?.is_some());
//! assert!(cache.delete("user:42").await?);
//! # Ok(()) }
//! ```
//!
//! The attribute macros [`cacheable`], [`cache_evict`] and [`cache_put`]
//! declare the same cache-aside on async functions, with keys and TTLs
//! checked at compile time; [`cache_config`] gives the methods of an
//! `impl` block one cache and defaults. Coming from Spring? [`spring`] maps
//! its cache annotations to them, and says where cachefw differs. Before
//! serving real traffic, read the [`production`] checklist: timeouts, the
//! breaker, deploys, metrics and what to alert on.
//!
//! Keys are laid out as `{namespace}:v{version}:{key}`; bumping the version
//! makes every old entry unreachable at once. Values carry a small header
//! naming their codec ([`Codec`]), so foreign or corrupt bytes read as a
//! miss, and are stored with their field names, so a deploy that changes a
//! cached type reads old entries by name or as a miss, never as a wrong
//! value.
//!
//! Over Redis (one server or a cluster), a miss takes a lease written into
//! the key itself: callers in other processes wait for its value instead of
//! loading, and a load that began before a `delete`, `set` or eviction of
//! the key cannot store its stale value afterwards. A circuit breaker keeps a
//! dead Redis from costing each call a timeout; [`Stats`] reports it. An
//! eviction that cannot reach Redis is kept and replayed when Redis answers,
//! and until then reads of its key bypass Redis.

#![warn(missing_docs)]
#![forbid(unsafe_code)]
// A build with one backend leaves helpers shared with the other unused (the
// breaker, the claim codec, arms over one variant); the default build, with
// both, is the one the lints hold to account.
#![cfg_attr(
    not(all(feature = "redis", feature = "memory")),
    allow(dead_code, unused_imports, unused_variables)
)]

#[cfg(not(any(feature = "redis", feature = "memory")))]
compile_error!(
    "cachefw needs a backend: enable its `redis` feature, its `memory` feature, or both (the \
     default)"
);

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod aside;
mod backend;
mod batch;
mod builder;
mod cache;
mod call;
mod clock;
mod codec;
#[cfg(feature = "redis")]
mod command;
mod error;
mod flight;
mod inner;
mod install;
mod journal;
mod keep;
mod key;
mod lease;
mod macros;
mod meters;
// Without Redis there is no near tier to start, but `Inner` still holds an
// (always empty) slot for one.
mod near;
mod policy;
#[doc = include_str!("../docs/production.md")]
pub mod production {}
mod report;
mod shape;
#[cfg(feature = "redis")]
mod slots;
#[doc = include_str!("../docs/spring.md")]
pub mod spring {}
mod stats;
mod tags;
#[cfg(all(feature = "testing", unix))]
pub mod testing;
mod ttl;
mod versioned;

pub use backend::breaker::{
    BreakerState, DEFAULT_BREAKER_FAILURES, DEFAULT_BREAKER_MAX_PROBE_INTERVAL,
    DEFAULT_BREAKER_PROBE_INTERVAL,
};
pub use builder::{
    CacheBuilder, DEFAULT_COMPRESS_ABOVE, DEFAULT_LEASE_TIME, DEFAULT_MAX_KEY_LEN,
    DEFAULT_MAX_VALUE_SIZE, DEFAULT_MEMORY_CAPACITY, DEFAULT_NAMESPACE, DEFAULT_TIMEOUT,
    DEFAULT_TTL,
};
pub use cache::Cache;
pub use codec::Codec;
pub use error::{Error, RedisFailure};
pub use install::{install, installed};
pub use journal::DEFAULT_JOURNAL_CAPACITY;
pub use macros::{cache_config, cache_evict, cache_put, cacheable};
pub use stats::Stats;
