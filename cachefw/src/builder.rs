//! [`CacheBuilder`]: every setting of a cache, checked once in `build()`.

use std::time::Duration;

use crate::backend::Backend;
use crate::backend::memory::MemoryBackend;
use crate::backend::redis::RedisBackend;
use crate::{Cache, Codec, Error};

/// The default namespace, the first part of every key.
pub const DEFAULT_NAMESPACE: &str = "cachefw";
/// The default bound on every Redis command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// The default TTL, for callers that give none (see [`Cache::default_ttl`]).
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);
/// The default size bound of the in-memory backend: keys and encoded values.
pub const DEFAULT_MEMORY_CAPACITY: u64 = 128 * 1024 * 1024;

#[derive(Clone, Debug)]
enum Store {
    Memory,
    Redis(String),
}

/// Configures and builds a [`Cache`]; start from [`Cache::builder`].
///
/// ```
/// use std::time::Duration;
/// use cachefw::{Cache, Codec};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = Cache::builder()
///     .in_memory()
///     .namespace("shop")
///     .version(2)
///     .codec(Codec::Bincode)
///     .timeout(Duration::from_millis(100))
///     .default_ttl(Duration::from_secs(60))
///     .build()
///     .await?;
/// assert_eq!(cache.namespace(), "shop");
///
/// let err = Cache::builder().redis("http://nope").build().await.unwrap_err();
/// assert!(err.to_string().contains("invalid Redis URL"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build().await`"]
pub struct CacheBuilder {
    store: Store,
    namespace: String,
    version: u32,
    timeout: Duration,
    codec: Codec,
    default_ttl: Duration,
    memory_capacity: u64,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        Self {
            store: Store::Memory,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            version: 1,
            timeout: DEFAULT_TIMEOUT,
            codec: Codec::default(),
            default_ttl: DEFAULT_TTL,
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
        }
    }
}

impl CacheBuilder {
    /// Stores entries in Redis at `url` (`redis://[user:password@]host[:port][/db]`).
    ///
    /// The connection is opened lazily and re-opened by itself after a
    /// failure; a Redis that is down when the cache is built does not fail
    /// `build()`, the cache serves from the loaders until Redis answers.
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.store = Store::Redis(url.into());
        self
    }

    /// Stores entries in this process's memory (the default).
    pub fn in_memory(mut self) -> Self {
        self.store = Store::Memory;
        self
    }

    /// The first part of every key (default `"cachefw"`): caches with
    /// different namespaces share a Redis without seeing each other.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The key version (default 1). Bumping it makes every entry of the old
    /// version unreachable at once; they then expire by their TTL.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// The bound on each Redis command (default 250 ms). A command that takes
    /// longer counts as a failure, and the caller is served from the loader.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How values are serialized (default [`Codec::Bincode`]).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The TTL used where a caller gives none (default 10 minutes).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The most the in-memory backend holds, in bytes of keys and encoded
    /// values (default 128 MiB); the least recently used entries go first.
    pub fn memory_capacity(mut self, bytes: u64) -> Self {
        self.memory_capacity = bytes;
        self
    }

    /// Checks every setting and builds the cache.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for a malformed Redis URL, [`Error::Config`] for
    /// an empty namespace, a zero timeout, default TTL or memory capacity.
    /// Never because Redis is unreachable.
    pub async fn build(self) -> Result<Cache, Error> {
        if self.namespace.is_empty() {
            return Err(config("namespace", "must not be empty"));
        }
        if self.timeout.is_zero() {
            return Err(config("timeout", "must be greater than zero"));
        }
        if crate::ttl::millis("", self.default_ttl).is_err() {
            return Err(config(
                "default_ttl",
                format!(
                    "{:?} is not between 1ms and {:?}",
                    self.default_ttl,
                    crate::ttl::MAX
                ),
            ));
        }
        let backend = match &self.store {
            Store::Memory => {
                if self.memory_capacity == 0 {
                    return Err(config("memory_capacity", "must be greater than zero"));
                }
                Backend::Memory(MemoryBackend::new(self.memory_capacity))
            }
            Store::Redis(url) => {
                let redis = RedisBackend::new(url, self.timeout)?;
                if let Err(error) = redis.ping().await {
                    tracing::warn!(
                        url = %crate::backend::redis::mask_password(url),
                        %error,
                        "cachefw: Redis is not reachable at start; serving from the source until it is"
                    );
                }
                Backend::Redis(redis)
            }
        };
        Ok(Cache::new(
            backend,
            &self.namespace,
            self.version,
            self.codec,
            self.default_ttl,
        ))
    }
}

fn config(setting: &'static str, reason: impl Into<String>) -> Error {
    Error::Config {
        setting,
        reason: reason.into(),
    }
}
