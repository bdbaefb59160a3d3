//! Where entries live. The cache talks to one [`Backend`]; each variant keeps
//! the same semantics (per-entry TTL, literal prefix eviction), so behaviour
//! tests run unchanged over both.
//!
//! An enum rather than a trait object: the hit path is one direct call with
//! no boxed future. Each variant exists with its cargo feature (`redis`,
//! `memory`); every arm over it carries the same `cfg`.

pub(crate) mod breaker;
#[cfg(feature = "memory")]
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "redis")]
pub(crate) mod scripts;
pub(crate) mod versioned_key;

use std::time::Duration;

use bytes::Bytes;

use crate::backend::breaker::BreakerState;
use crate::backend::versioned_key::VersionedKey;
use crate::error::Error;

// One per cache, behind its `Arc`: the size of the Redis variant costs
// nothing, and boxing it would add a pointer chase to every hit.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    #[cfg(feature = "redis")]
    Redis(redis::RedisBackend),
    #[cfg(feature = "memory")]
    Memory(memory::MemoryBackend),
}

impl Backend {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
            #[cfg(feature = "memory")]
            Self::Memory(_) => "memory",
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.get(key).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => Ok(b.get(key)),
        }
    }

    /// The bytes at each key, in order; a failure per key.
    pub(crate) async fn get_many(&self, keys: &[String]) -> Vec<Result<Option<Bytes>, Error>> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.get_many(keys).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => keys.iter().map(|key| Ok(b.get(key))).collect(),
        }
    }

    /// `ttl_ms` is already checked by [`crate::ttl::px`].
    pub(crate) async fn set(&self, key: &str, value: Bytes, ttl_ms: u64) -> Result<(), Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.set(key, &value, ttl_ms).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => {
                b.set(key, value, Duration::from_millis(ttl_ms));
                Ok(())
            }
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.delete(key).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => Ok(b.delete(key)),
        }
    }

    /// Removes every key given; how many existed.
    pub(crate) async fn delete_many(&self, keys: &[String]) -> Result<u64, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.delete_many(keys).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => Ok(keys.iter().filter(|key| b.delete(key)).count() as u64),
        }
    }

    /// See `lease.rs`: `None` when `marker` was written into the key (empty,
    /// or holding exactly `over`), else what the key holds.
    pub(crate) async fn acquire(
        &self,
        key: &str,
        marker: &Bytes,
        lease_ms: u64,
        over: Option<&Bytes>,
    ) -> Result<Option<Bytes>, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.acquire(key, marker, lease_ms, over).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => Ok(b.acquire(key, marker, Duration::from_millis(lease_ms), over)),
        }
    }

    /// Stores `value` only while `key` holds `marker`; `true` if it did.
    pub(crate) async fn fill(
        &self,
        key: &str,
        marker: &Bytes,
        value: Bytes,
        ttl_ms: u64,
    ) -> Result<bool, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.fill(key, marker, &value, ttl_ms).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => Ok(b.fill(key, marker, value, Duration::from_millis(ttl_ms))),
        }
    }

    /// Removes `key` only while it holds `marker`.
    pub(crate) async fn release(&self, key: &str, marker: &Bytes) -> Result<(), Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.release(key, marker).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => {
                b.release(key, marker);
                Ok(())
            }
        }
    }

    /// Claims the entry at `key` for a reload by `nonce`, for `claim_ms`,
    /// if it is still the one that expires at `expires_ms`; `true` if we
    /// hold the claim now.
    pub(crate) async fn take_reload_lease(
        &self,
        key: &str,
        nonce: &[u8; 8],
        claim_ms: u64,
        expires_ms: u64,
    ) -> Result<bool, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.take_reload_lease(key, nonce, claim_ms, expires_ms).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => {
                Ok(b.take_reload_lease(key, nonce, Duration::from_millis(claim_ms), expires_ms))
            }
        }
    }

    /// Stores `value` only while the entry carries the claim of `nonce`.
    pub(crate) async fn fill_claimed(
        &self,
        key: &str,
        nonce: &[u8; 8],
        value: Bytes,
        ttl_ms: u64,
    ) -> Result<bool, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.fill_claimed(key, nonce, &value, ttl_ms).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => Ok(b.fill_claimed(key, nonce, value, Duration::from_millis(ttl_ms))),
        }
    }

    /// Gives the claim of `nonce` up.
    pub(crate) async fn release_reload_lease(
        &self,
        key: &str,
        nonce: &[u8; 8],
    ) -> Result<(), Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.release_reload_lease(key, nonce).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => {
                b.release_reload_lease(key, nonce);
                Ok(())
            }
        }
    }

    /// The circuit breaker's state (on a cluster, the worst node's); memory
    /// never fails, so it stays closed.
    pub(crate) fn breaker(&self) -> BreakerState {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.breaker_state(),
            #[cfg(feature = "memory")]
            Self::Memory(_) => BreakerState::Closed,
        }
    }

    /// While `on`, open breakers let only the replay of pending evictions
    /// probe Redis (memory has no breaker).
    pub(crate) fn replay_first(&self, on: bool) {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.replay_first(on),
            #[cfg(feature = "memory")]
            Self::Memory(_) => {}
        }
    }

    /// One real round trip to every server, whatever the breakers say: the
    /// slowest. Memory has none to make.
    pub(crate) async fn ping(&self) -> Result<Duration, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.ping_now().await,
            #[cfg(feature = "memory")]
            Self::Memory(_) => Ok(Duration::ZERO),
        }
    }

    /// [`breaker`](Self::breaker), and how long it has held that state
    /// (memory: closed since the process started using it, reported as 0).
    pub(crate) fn breaker_for(&self) -> (BreakerState, Duration) {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.breaker_for(),
            #[cfg(feature = "memory")]
            Self::Memory(_) => (BreakerState::Closed, Duration::ZERO),
        }
    }

    /// Removes every entry whose full key starts with `prefix`, taken
    /// literally; how many were removed.
    pub(crate) async fn evict_prefix(&self, prefix: &str) -> Result<u64, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.evict_prefix(prefix).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => Ok(b.evict_prefix(prefix).await),
        }
    }
}

/// Versioned entries and raw commands, with one semantics over both
/// backends (raw commands only over Redis).
impl Backend {
    /// Whether one script may touch both keys.
    pub(crate) fn same_slot(&self, first: &str, second: &str) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.same_slot(first, second),
            #[cfg(feature = "memory")]
            Self::Memory(_) => true,
        }
    }

    /// Stores `value` as `version` of the entry unless a version as new or
    /// newer is stored, or the stored one is not `expect`ed: 1 stored, 0
    /// superseded, 2 not the expected version. `ttl_ms` 0: no expiry.
    pub(crate) async fn store_versioned(
        &self,
        at: &VersionedKey,
        value: Bytes,
        ttl_ms: u64,
        version: u64,
        record_ttl_ms: u64,
        expect: Option<u64>,
    ) -> Result<u8, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => {
                b.store_versioned(at, &value, ttl_ms, version, record_ttl_ms, expect)
                    .await
            }
            #[cfg(feature = "memory")]
            Self::Memory(b) => {
                Ok(b.store_versioned(at, value, ttl_ms, version, record_ttl_ms, expect))
            }
        }
    }

    /// Removes the entry, recording `version`, unless a newer version's
    /// own write is there; whether it was removed.
    pub(crate) async fn evict_versioned(
        &self,
        at: &VersionedKey,
        version: u64,
        record_ttl_ms: u64,
    ) -> Result<bool, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.evict_versioned(at, version, record_ttl_ms).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => Ok(b.evict_versioned(at, version, record_ttl_ms)),
        }
    }

    /// After `version` reached the source: 1 its entry now expires in
    /// `ttl_ms` (0: removed instead), 2 whatever else was there removed, 0
    /// a newer version is stored.
    pub(crate) async fn settle_versioned(
        &self,
        at: &VersionedKey,
        version: u64,
        ttl_ms: u64,
        record_ttl_ms: u64,
    ) -> Result<u8, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.settle_versioned(at, version, ttl_ms, record_ttl_ms).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => Ok(b.settle_versioned(at, version, ttl_ms, record_ttl_ms)),
        }
    }

    /// The entry if it holds its version's own write, and the version.
    pub(crate) async fn peek_versioned(
        &self,
        at: &VersionedKey,
    ) -> Result<(Option<Bytes>, Option<u64>), Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.peek_versioned(at).await,
            #[cfg(feature = "memory")]
            Self::Memory(b) => Ok(b.peek_versioned(at)),
        }
    }

    /// Runs one raw command on the Redis node holding `key`.
    #[cfg(feature = "redis")]
    pub(crate) async fn command(
        &self,
        op: &'static str,
        key: &str,
        command: &::redis::Cmd,
    ) -> Result<::redis::Value, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.command(op, key, command).await,
            #[cfg(feature = "memory")]
            Self::Memory(_) => Err(needs_redis(op)),
        }
    }

    /// Runs a script on the Redis node holding `key`.
    #[cfg(feature = "redis")]
    pub(crate) async fn invoke(
        &self,
        op: &'static str,
        key: &str,
        invocation: &::redis::ScriptInvocation<'_>,
    ) -> Result<::redis::Value, Error> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.invoke(op, key, invocation).await,
            #[cfg(feature = "memory")]
            Self::Memory(_) => Err(needs_redis(op)),
        }
    }
}

#[cfg(all(feature = "redis", feature = "memory"))]
fn needs_redis(op: &str) -> Error {
    Error::Config {
        setting: "backend",
        reason: format!("`{op}` is a Redis command and this cache is in memory"),
    }
}
