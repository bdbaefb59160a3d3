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
//!
//! # Glossary
//!
//! One name per concept, in the docs, the code and the adapter crate:
//!
//! - **key**: what a caller names (`user:42`); the **full key** adds the
//!   namespace and version (`shop:v1:user:42`).
//! - **entry**: what is stored at a full key: a header (codec, expiry, and
//!   a reload lease when one is held), then the value, or the record that
//!   the source had none (`cache_none`, the `none_ttl` of a policy).
//! - **hit** / **miss** / **stale hit** / **bypass**: how a read was
//!   answered: by a fresh entry; by the loader; by an entry past its TTL
//!   within a stale window; by the loader without asking the cache (a
//!   pending eviction, an outage).
//! - **load**: one call of the loader; **fill**: storing its value, which
//!   only the lease holder may do.
//! - **lease**: the right to fill one key, held by one caller across
//!   processes. On a miss, a marker written into the empty key
//!   (`lease.rs`); on a reload of a present entry (a refresh ahead, a
//!   revalidation), a **reload lease** written into the entry's header.
//!   The caller that holds it is its **holder**. (Redis streams'
//!   `XCLAIM`, in the Cassandra adapter's write-behind, is Redis's word for
//!   taking over a stream entry, not a lease.)
//! - **flight**: the in-process single-flight of one key: a **leader**
//!   loads, **followers** wait for its outcome.
//! - **delete**: a caller's removal of one key (`Cache::delete`).
//!   **evict**: any removal that makes reads miss (a delete, a prefix, a
//!   write that replaces an entry, a clear); every eviction goes through
//!   the **journal**, which keeps one Redis has not confirmed and
//!   **replays** it. The near tier evicts its copies too.
//! - **near copy**: the in-process copy of an entry the near tier holds.
//! - **settle**: (Cassandra adapter) make the cache agree with a source
//!   write that completed: store the row's new entry, versioned.
//! - **breaker**: the per-node circuit breaker; it **records** a
//!   **verdict** for each call through it.
//! - **policy**: a call's options resolved against the cache's defaults.

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
#[path = "adapter.rs"]
pub mod __adapter;
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod aside;
mod backend;
mod background;
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
pub mod follow;
mod hashed;
mod hot;
mod inner;
mod install;
mod journal;
mod keep;
mod key;
mod lease;
mod macros;
// Without Redis there is no near tier to start, but `Inner` still holds an
// (always empty) slot for one.
mod near;
mod options;
#[doc = include_str!("../docs/production.md")]
pub mod production {}
mod shape;
#[cfg(feature = "redis")]
mod slots;
#[doc = include_str!("../docs/spring.md")]
pub mod spring {}
mod stats;
mod tags;
mod telemetry;
#[cfg(all(feature = "testing", unix))]
pub mod testing;
mod ttl;
mod versioned;

pub use backend::breaker::BreakerState;
pub use builder::CacheBuilder;
pub use cache::Cache;
pub use codec::Codec;
pub use error::{Error, RedisFailure};
pub use install::{install, installed};
pub use macros::{cache_config, cache_evict, cache_put, cacheable};
pub use options::{
    DEFAULT_BREAKER_FAILURES, DEFAULT_BREAKER_MAX_PROBE_INTERVAL, DEFAULT_BREAKER_PROBE_INTERVAL,
    DEFAULT_COMPRESS_ABOVE, DEFAULT_JOURNAL_CAPACITY, DEFAULT_LEASE_TIME, DEFAULT_MAX_KEY_LEN,
    DEFAULT_MAX_VALUE_SIZE, DEFAULT_MEMORY_CAPACITY, DEFAULT_NAMESPACE, DEFAULT_TIMEOUT,
    DEFAULT_TTL,
};
pub use stats::Stats;
pub use telemetry::advice::{DEFAULT_HIT_RATIO_WINDOW, DEFAULT_LOW_HIT_RATIO};
