//! Where entries live. The cache talks to one [`Backend`]; each variant keeps
//! the same semantics (per-entry TTL, literal prefix eviction), so behaviour
//! tests run unchanged over both.
//!
//! An enum rather than a trait object: the hit path is one direct call with
//! no boxed future.

pub(crate) mod memory;
pub(crate) mod redis;

use std::time::Duration;

use bytes::Bytes;

use crate::Error;
use crate::key::Keys;

pub(crate) enum Backend {
    Redis(redis::RedisBackend),
    Memory(memory::MemoryBackend),
}

impl Backend {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            Self::Memory(_) => "memory",
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        match self {
            Self::Redis(b) => b.get(key).await,
            Self::Memory(b) => Ok(b.get(key)),
        }
    }

    /// `ttl_ms` is already checked by [`crate::ttl::millis`].
    pub(crate) async fn set(&self, key: &str, value: Bytes, ttl_ms: u64) -> Result<(), Error> {
        match self {
            Self::Redis(b) => b.set(key, &value, ttl_ms).await,
            Self::Memory(b) => {
                b.set(key, value, Duration::from_millis(ttl_ms));
                Ok(())
            }
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, Error> {
        match self {
            Self::Redis(b) => b.delete(key).await,
            Self::Memory(b) => Ok(b.delete(key)),
        }
    }

    pub(crate) async fn ttl(&self, key: &str) -> Result<Option<Duration>, Error> {
        match self {
            Self::Redis(b) => b.ttl(key).await,
            Self::Memory(b) => Ok(b.ttl(key)),
        }
    }

    /// Removes every entry of this cache whose user key starts with `prefix`.
    pub(crate) async fn evict_prefix(&self, keys: &Keys, prefix: &str) -> Result<u64, Error> {
        match self {
            Self::Redis(b) => b.evict_matching(&keys.scan_pattern(prefix)).await,
            Self::Memory(b) => Ok(b.evict_where(|full| {
                keys.user_key(full)
                    .is_some_and(|user| user.starts_with(prefix))
            })),
        }
    }
}
