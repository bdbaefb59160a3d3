//! [`CacheBuilder`]: every setting of a cache, checked once in `build()`.

use std::time::Duration;

use std::fmt;

use crate::backend::Backend;
use crate::backend::memory::MemoryBackend;
use crate::backend::redis::{RedisBackend, mask_password};
use crate::cache::Cache;
use crate::codec::Codec;
use crate::error::Error;
use crate::inner::{Inner, Settings};
use crate::journal::DEFAULT_JOURNAL_CAPACITY;
use crate::key::Keys;
use crate::near::{DEFAULT_NEAR_TTL, NearTier};
use crate::policy::Defaults;

/// The default namespace, the first part of every key.
pub const DEFAULT_NAMESPACE: &str = "cachefw";
/// The default bound on every Redis command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// The default TTL, for callers that give none (see [`Cache::default_ttl`]).
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);
/// The default size bound of the in-memory backend: keys and encoded values.
pub const DEFAULT_MEMORY_CAPACITY: u64 = 128 * 1024 * 1024;
/// The default lease time: how long a miss may load before others stop
/// waiting for it.
pub const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(3);

#[derive(Clone)]
enum Store {
    Memory,
    Redis(String),
    Cluster(Vec<String>),
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
///     .codec(Codec::MessagePack)
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
    lease_time: Duration,
    jitter: f64,
    journal_capacity: usize,
    refresh_beta: Option<f64>,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
    load_timeout: Option<Duration>,
    fail_safe_throttle: Duration,
    near_capacity: Option<u64>,
    near_ttl: Option<Duration>,
}

/// The default time a key's failing source is spared after a stale value
/// was served for it (see [`CacheBuilder::fail_safe_throttle`]).
pub const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(1);

/// URLs are shown with their passwords masked.
impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Redis(url) => f.debug_tuple("Redis").field(&mask_password(url)).finish(),
            Self::Cluster(nodes) => f
                .debug_tuple("Cluster")
                .field(&nodes.iter().map(|n| mask_password(n)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl Cache {
    /// Starts configuring a cache. With no backend named, it is in memory.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }
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
            lease_time: DEFAULT_LEASE_TIME,
            jitter: 0.0,
            journal_capacity: DEFAULT_JOURNAL_CAPACITY,
            refresh_beta: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            load_timeout: None,
            fail_safe_throttle: DEFAULT_FAIL_SAFE_THROTTLE,
            near_capacity: None,
            near_ttl: None,
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

    /// Stores entries in a Redis Cluster, found from these seed nodes
    /// (`redis://host:port` each). Keys are spread over the cluster's slots;
    /// every script touches one key, and prefix eviction scans each primary.
    /// Like [`redis`](Self::redis), a cluster that is down at start does not
    /// fail `build()`.
    pub fn redis_cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.store = Store::Cluster(nodes.into_iter().map(Into::into).collect());
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

    /// How values are serialized (default [`Codec::MessagePack`]).
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

    /// How long one miss may load before the callers waiting on it, in this
    /// process or another, stop waiting and load themselves (default 3 s).
    /// Set it above your slowest load.
    pub fn lease_time(mut self, lease_time: Duration) -> Self {
        self.lease_time = lease_time;
        self
    }

    /// Takes up to this fraction of every TTL off at random (default 0:
    /// off), so that entries loaded together do not expire together. `0.1`
    /// stores a `10m` entry for 9 to 10 minutes. `#[cacheable(jitter =
    /// "10%")]` sets it per function.
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// How many evictions may wait for an unreachable Redis (default
    /// 10,000). An eviction that cannot reach Redis (it is down, frozen,
    /// the breaker is open, or the caller was cancelled) is kept and
    /// replayed when Redis answers; meanwhile reads of its key bypass
    /// Redis. Beyond this many, the cache bypasses Redis for every read
    /// until it has cleared its whole namespace and version, which it does
    /// as soon as Redis answers: no eviction is ever dropped.
    pub fn eviction_journal_capacity(mut self, evictions: usize) -> Self {
        self.journal_capacity = evictions;
        self
    }

    /// Recomputes hot entries ahead of their expiry (default off): a hit
    /// reloads the entry early with a probability that grows as the expiry
    /// nears and with how long the entry's load took (XFetch, Vattani,
    /// Chierichetti, Lowenstein, VLDB 2015: recompute when
    /// `now - delta * beta * ln(rand) >= expiry`). `beta` above 1 favours
    /// earlier refreshes; 1.0 is the paper's choice. The refresh runs in the
    /// background under a claim on the entry (one per key across
    /// processes), and every caller keeps getting the current value at hit
    /// speed. `#[cacheable(refresh_ahead = …)]` overrides it per function.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder().refresh_ahead(1.0).build().await?;
    /// # drop(cache); Ok(()) }
    /// ```
    pub fn refresh_ahead(mut self, beta: f64) -> Self {
        self.refresh_beta = Some(beta);
        self
    }

    /// Serves a value up to `window` past its TTL at once, and reloads it in
    /// the background (RFC 5861's `stale-while-revalidate`; default off).
    /// Entries stay in the backend for their TTL plus this window.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = Some(window);
        self
    }

    /// When a load fails (or outlasts the load timeout), serves a value up
    /// to `window` past its TTL instead of the error (RFC 5861's
    /// `stale-if-error`, a fail-safe; default off). The key's source is then
    /// spared for the [`fail_safe_throttle`](Self::fail_safe_throttle).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = Some(window);
        self
    }

    /// When a load runs longer than `timeout` and a stale value (within
    /// either window above) is at hand, the caller gets the stale value and
    /// the load goes on in the background to fill the cache (default off).
    /// Without a stale value the caller waits for the load.
    pub fn load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = Some(timeout);
        self
    }

    /// How long a key's source is not called again after a failed load was
    /// answered with a stale value (default 1 s), so that a source that is
    /// down sees a trickle of calls, not one per caller.
    pub fn fail_safe_throttle(mut self, period: Duration) -> Self {
        self.fail_safe_throttle = period;
        self
    }

    /// Puts a near tier of `bytes` in front of Redis: an in-process copy of
    /// the entries this cache reads, answered with no round trip, and kept
    /// correct by Redis itself.
    ///
    /// - Any write of a key on the Redis server, by any client (another
    ///   `Cache`, another process, `redis-cli`), removes the key from every
    ///   near tier within about one network round trip: each cache keeps a
    ///   RESP3 connection named `cachefw-near` per server (per primary on a
    ///   Cluster) in broadcasting client tracking on its key prefix
    ///   (`CLIENT TRACKING ON BCAST PREFIX {namespace}:v{version}:`;
    ///   broadcasting, rather than tracking the keys each connection read,
    ///   because our reads go over a shared, reconnecting data connection
    ///   whose reconnects would silently end the tracking).
    /// - Writes through this cache remove the key from its own near tier
    ///   before they return; a read that raced a write never stores what it
    ///   read.
    /// - While the tracking connection is down (lost, Redis restarting or
    ///   frozen, a failover, a slot layout change), the tier serves
    ///   nothing; it starts empty when the connection is back. A
    ///   `FLUSHALL` or `FLUSHDB` empties it.
    /// - Only entries fresh under their own TTL are held, at most for the
    ///   rest of it (and [`near_ttl`](Self::near_ttl)): refresh-ahead, stale
    ///   windows, leases and the breaker keep working through Redis.
    ///
    /// `bytes` bounds the keys and encoded values held, plus about 160
    /// bytes of bookkeeping per entry; the least recently used go first.
    /// Refused with [`Error::Config`] on the in-memory backend (it is in
    /// process already) or for 0 bytes.
    pub fn near_cache(mut self, bytes: u64) -> Self {
        self.near_capacity = Some(bytes);
        self
    }

    /// Caps how long an entry stays in the near tier (default: 60 s, and
    /// never past the entry's own TTL). A cap bounds how long a copy could
    /// outlive a write whose invalidation the server never sent.
    pub fn near_ttl(mut self, ttl: Duration) -> Self {
        self.near_ttl = Some(ttl);
        self
    }

    /// Checks every setting and builds the cache.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for a malformed Redis URL, [`Error::Config`] for
    /// an empty namespace, a zero timeout, default TTL, lease time or memory
    /// capacity, or a jitter outside `[0, 1)`, a near tier on the
    /// in-memory backend or of 0 bytes, or a `near_ttl` without a near
    /// tier.
    /// Never because Redis is unreachable.
    pub async fn build(self) -> Result<Cache, Error> {
        if self.namespace.is_empty() {
            return Err(config("namespace", "must not be empty"));
        }
        if self.timeout.is_zero() {
            return Err(config("timeout", "must be greater than zero"));
        }
        if crate::ttl::millis(self.default_ttl).is_none() {
            return Err(config(
                "default_ttl",
                format!(
                    "{:?} is not between 1ms and {:?}",
                    self.default_ttl,
                    crate::ttl::MAX
                ),
            ));
        }
        if crate::ttl::millis(self.lease_time).is_none() {
            return Err(config(
                "lease_time",
                format!(
                    "{:?} is not between 1ms and {:?}",
                    self.lease_time,
                    crate::ttl::MAX
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(config(
                "ttl_jitter",
                format!(
                    "{} is not a fraction in [0, 1), such as 0.1 for 10%",
                    self.jitter
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
            Store::Redis(url) => Self::started(RedisBackend::new(url, self.timeout)?, url).await,
            Store::Cluster(nodes) => {
                if nodes.is_empty() {
                    return Err(config("redis_cluster", "needs at least one seed node URL"));
                }
                let backend = RedisBackend::cluster(nodes, self.timeout)?;
                let masked: Vec<_> = nodes.iter().map(|node| mask_password(node)).collect();
                Self::started(backend, &masked.join(", ")).await
            }
        };
        if self.journal_capacity == 0 {
            return Err(config(
                "eviction_journal_capacity",
                "must be greater than zero: evictions Redis missed are kept there",
            ));
        }
        if let Some(beta) = self.refresh_beta
            && !(beta.is_finite() && beta > 0.0)
        {
            return Err(config(
                "refresh_ahead",
                format!("beta {beta} is not a positive number, such as 1.0"),
            ));
        }
        if self.load_timeout.is_some_and(|timeout| timeout.is_zero()) {
            return Err(config("load_timeout", "must be greater than zero"));
        }
        let near = match (self.near_capacity, &backend) {
            (None, _) => {
                if self.near_ttl.is_some() {
                    return Err(config(
                        "near_ttl",
                        "caps entries of a near tier, and there is none: add .near_cache(bytes)",
                    ));
                }
                None
            }
            (Some(_), Backend::Memory(_)) => {
                return Err(config(
                    "near_cache",
                    "a near tier goes in front of Redis; the in-memory backend is in-process \
                     already (use .redis(url) or .redis_cluster(nodes), or drop .near_cache)",
                ));
            }
            (Some(0), _) => return Err(config("near_cache", "must be greater than zero bytes")),
            (Some(bytes), Backend::Redis(redis)) => {
                let cap = self.near_ttl.unwrap_or(DEFAULT_NEAR_TTL);
                if cap.is_zero() {
                    return Err(config("near_ttl", "must be greater than zero"));
                }
                let prefix = Keys::new(&self.namespace, self.version).prefix().to_owned();
                let near = NearTier::start(bytes, cap, redis.tracking_servers(), prefix);
                // The first reads find it serving, unless Redis is away.
                near.wait_up(self.timeout.max(Duration::from_secs(1))).await;
                Some(near)
            }
        };
        Ok(Cache::new(Inner::new(
            backend,
            near,
            Settings {
                namespace: self.namespace,
                version: self.version,
                codec: self.codec,
                defaults: Defaults {
                    ttl: self.default_ttl,
                    jitter: self.jitter,
                    refresh_beta: self.refresh_beta,
                    stale_while_revalidate: self.stale_while_revalidate,
                    stale_if_error: self.stale_if_error,
                    load_timeout: self.load_timeout,
                    fail_safe_throttle: self.fail_safe_throttle,
                },
                lease_time: self.lease_time,
                journal_capacity: self.journal_capacity,
            },
        )))
    }
}

impl CacheBuilder {
    /// Opens the connection now, so the first call does not wait for it; a
    /// Redis that does not answer is logged, not an error.
    async fn started(redis: RedisBackend, url: &str) -> Backend {
        if let Err(error) = redis.ping().await {
            tracing::warn!(
                url = %mask_password(url),
                %error,
                "cachefw: Redis is not reachable at start; serving from the source until it is"
            );
        }
        Backend::Redis(redis)
    }
}

fn config(setting: &'static str, reason: impl Into<String>) -> Error {
    Error::Config {
        setting,
        reason: reason.into(),
    }
}
