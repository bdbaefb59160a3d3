//! [`CacheBuilder`]: every setting of a cache, checked once in `build()`.

use std::time::Duration;

use std::fmt;

use crate::backend::Backend;
#[cfg(feature = "redis")]
use crate::backend::breaker::Rules;
use crate::backend::breaker::{
    DEFAULT_BREAKER_FAILURES, DEFAULT_BREAKER_MAX_PROBE_INTERVAL, DEFAULT_BREAKER_PROBE_INTERVAL,
};
#[cfg(feature = "memory")]
use crate::backend::memory::MemoryBackend;
#[cfg(feature = "redis")]
use crate::backend::redis::RedisBackend;
#[cfg(feature = "redis")]
use crate::backend::redis::config::{Connect, install_crypto_provider, mask_password};
use crate::cache::Cache;
use crate::codec::Codec;
use crate::error::Error;
use crate::inner::{Inner, Settings};
use crate::journal::DEFAULT_JOURNAL_CAPACITY;
#[cfg(feature = "redis")]
use crate::key::Keys;
#[cfg(feature = "redis")]
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
/// The default largest value stored or read: 16 MiB.
pub const DEFAULT_MAX_VALUE_SIZE: u64 = 16 * 1024 * 1024;
/// The default longest rendered key stored as it is: 512 bytes. A longer
/// one is stored under its first 256 bytes, `#` and its hex SHA-256.
pub const DEFAULT_MAX_KEY_LEN: usize = 512;
/// The default size past which encoded values are stored compressed: 4 KiB.
pub const DEFAULT_COMPRESS_ABOVE: u64 = 4 * 1024;

/// A secret (a password, a private key) or a blob too long to show:
/// `Debug` prints neither.
#[derive(Clone)]
struct Redacted<T>(T);

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

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
    root_cert: Option<Redacted<Vec<u8>>>,
    client_cert: Option<Redacted<(Vec<u8>, Vec<u8>)>>,
    credentials: Option<(String, Redacted<String>)>,
    max_value_size: u64,
    compress_above: u64,
    max_key_len: usize,
    breaker_failures: u32,
    breaker_probe_interval: Duration,
    breaker_max_probe_interval: Duration,
}

/// The default time a key's failing source is spared after a stale value
/// was served for it (see [`CacheBuilder::fail_safe_throttle`]).
pub const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(1);

/// URLs are shown with their passwords masked.
impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            #[cfg(feature = "redis")]
            Self::Redis(url) => f.debug_tuple("Redis").field(&mask_password(url)).finish(),
            #[cfg(feature = "redis")]
            Self::Cluster(nodes) => f
                .debug_tuple("Cluster")
                .field(&nodes.iter().map(|n| mask_password(n)).collect::<Vec<_>>())
                .finish(),
            // Without the feature nothing reads the URLs, and nothing masks
            // their passwords: they are not shown.
            #[cfg(not(feature = "redis"))]
            Self::Redis(_) => f.write_str("Redis(..)"),
            #[cfg(not(feature = "redis"))]
            Self::Cluster(_) => f.write_str("Cluster(..)"),
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
            root_cert: None,
            client_cert: None,
            credentials: None,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            compress_above: DEFAULT_COMPRESS_ABOVE,
            max_key_len: DEFAULT_MAX_KEY_LEN,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_probe_interval: DEFAULT_BREAKER_PROBE_INTERVAL,
            breaker_max_probe_interval: DEFAULT_BREAKER_MAX_PROBE_INTERVAL,
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

    /// Trusts this CA (PEM, one or more certificates) for `rediss://`
    /// connections, instead of the system's roots. A server certificate it
    /// did not sign, or one issued for another host name, fails `build()`
    /// with [`Error::Tls`] naming the problem (when Redis is reachable at
    /// start; later it counts as an error and calls go to the loaders).
    pub fn tls_root_cert(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.root_cert = Some(Redacted(pem.as_ref().to_vec()));
        self
    }

    /// Presents this client certificate (PEM chain) and private key (PEM:
    /// PKCS#8, PKCS#1 or SEC1) to Redis: mutual TLS, for a server started
    /// with `tls-auth-clients yes`. The key never appears in `Debug`,
    /// errors or logs.
    pub fn tls_client_cert(
        mut self,
        cert_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Self {
        self.client_cert = Some(Redacted((
            cert_pem.as_ref().to_vec(),
            key_pem.as_ref().to_vec(),
        )));
        self
    }

    /// Authenticates as this ACL user with this password (`AUTH user
    /// password`), so the password need not be in the URL; an empty `user`
    /// is the `default` user (`requirepass`). A URL that has a password
    /// too is an [`Error::Config`]. The password never appears in `Debug`,
    /// errors or logs; a password Redis refuses fails `build()` with
    /// [`Error::Auth`]. The README lists the least permissions cachefw
    /// needs, as an `ACL SETUSER` line.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), Redacted(password.into())));
        self
    }

    /// The largest encoded value stored or read, in bytes (default 16 MiB):
    /// a larger value is not stored (the old entry is evicted, and the
    /// refusal counted in [`Stats::errors`](crate::Stats::errors)); one
    /// found in Redis is a miss, counted too, that is never read in full:
    /// Redis sends at most one byte past the limit.
    pub fn max_value_size(mut self, bytes: u64) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Encoded values larger than this many bytes are stored compressed
    /// (LZ4, `lz4_flex`), when that saves space (default 4 KiB; 0: never).
    /// Each entry's header says whether it is compressed, so entries of
    /// both kinds are read whatever this says. `max_value_size` bounds the
    /// value before compression when storing, and the decompressed size
    /// when reading: an entry that claims to inflate past it is a miss,
    /// never allocated.
    pub fn compress_above(mut self, bytes: u64) -> Self {
        self.compress_above = bytes;
        self
    }

    /// The longest rendered key (the `{key}` part, without namespace and
    /// version) stored as it is, in bytes (default 512). A longer key is
    /// never refused: it is stored under its first 256 bytes (fewer when
    /// this limit is lower; cut back to a character boundary), `#` and the
    /// hex SHA-256 of the whole key. `get`, `set`, `delete`, the macros,
    /// tags and batch reads all render it alike, and `evict_prefix` of a
    /// prefix within those first bytes still finds it.
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }

    /// How many failures in a row (timeouts, lost connections; each
    /// answered by the loader) open the circuit breaker, after which calls
    /// skip Redis at the cost of one atomic load (default 5). Lower opens
    /// sooner on a dead Redis (fewer callers pay a timeout); higher rides
    /// out a few slow commands on a healthy one. A `READONLY`, `LOADING` or
    /// `MASTERDOWN` answer opens it at once whatever this says.
    ///
    /// Over Redis only: the in-memory backend has no breaker.
    pub fn breaker_failures(mut self, failures: u32) -> Self {
        self.breaker_failures = failures;
        self
    }

    /// How long an open breaker skips Redis before one call probes it
    /// (default 200 ms). Each failed probe doubles the interval, up to
    /// [`breaker_max_probe_interval`](Self::breaker_max_probe_interval),
    /// with ±20 % jitter so that a fleet does not probe a recovering server
    /// in step. Short: a restarted Redis is used again sooner; long: a
    /// dead one costs fewer probe timeouts. While evictions wait for
    /// Redis, it is probed every 100 ms whatever this says (see
    /// [`eviction_journal_capacity`](Self::eviction_journal_capacity)).
    ///
    /// Over Redis only: the in-memory backend has no breaker.
    pub fn breaker_probe_interval(mut self, interval: Duration) -> Self {
        self.breaker_probe_interval = interval;
        self
    }

    /// The cap of the open interval (default 5 s): a Redis that stays down
    /// is probed at least this often, so a cache notices its return within
    /// about this long (plus jitter) after the outage.
    ///
    /// Over Redis only: the in-memory backend has no breaker.
    pub fn breaker_max_probe_interval(mut self, interval: Duration) -> Self {
        self.breaker_max_probe_interval = interval;
        self
    }

    /// Checks every setting and builds the cache.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidUrl`]: a Redis URL that does not parse or has no
    ///   scheme Redis speaks (such as `127.0.0.1:6379` for
    ///   `redis://127.0.0.1:6379`); the message says what a valid one
    ///   looks like, with any password masked.
    /// - [`Error::Config`], naming the setting: an empty namespace; a zero
    ///   timeout, default TTL, lease time, memory capacity, journal
    ///   capacity, value or key limit (or a key limit the prefix fills); a
    ///   jitter outside `[0, 1)`; a refresh beta that is not positive; a
    ///   zero load timeout; breaker settings that cannot work (0 failures, an
    ///   interval under 1 ms, a cap below the interval); a cluster with no
    ///   seed node; a TLS PEM that
    ///   does not parse, a key that does not match its certificate, or
    ///   certificates with a `redis://` URL; a password both in the URL and
    ///   in [`credentials`](Self::credentials); a near tier on the
    ///   in-memory backend or of 0 bytes, or a `near_ttl` without one; a
    ///   backend whose cargo feature this build left out (`redis` for
    ///   `.redis(..)`, `.redis_cluster(..)` and `.near_cache(..)`; `memory`
    ///   for `.in_memory()` and for a builder that names no backend).
    /// - When Redis answers at start but cannot be used with these
    ///   settings: [`Error::Tls`] (a certificate that does not verify, a
    ///   client certificate the server wants) or [`Error::Auth`]
    ///   (`WRONGPASS`, `NOAUTH`, `NOPERM`).
    ///
    /// Never because Redis is unreachable: the cache then starts degraded
    /// (calls go to the loaders) and caches once Redis answers.
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
        if self.max_value_size == 0 {
            return Err(config("max_value_size", "must be greater than zero"));
        }
        if self.max_key_len == 0 {
            return Err(config(
                "max_key_len",
                "must be at least 1 byte: longer keys are stored under their digest",
            ));
        }
        if self.breaker_failures == 0 {
            return Err(config(
                "breaker_failures",
                "must be at least 1: the failures in a row that open the breaker",
            ));
        }
        if self.breaker_probe_interval < Duration::from_millis(1) {
            return Err(config("breaker_probe_interval", "must be at least 1ms"));
        }
        if self.breaker_max_probe_interval < self.breaker_probe_interval {
            return Err(config(
                "breaker_max_probe_interval",
                format!(
                    "{:?} is shorter than breaker_probe_interval ({:?}), the interval it caps",
                    self.breaker_max_probe_interval, self.breaker_probe_interval
                ),
            ));
        }
        #[cfg(not(feature = "redis"))]
        if self.near_capacity.is_some() {
            return Err(missing_feature("near_cache", "redis", "the near tier"));
        }
        // With the backend, whether Redis answered at start: a near tier
        // waits for its links only then.
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
        let (backend, answered) = match &self.store {
            #[cfg(feature = "memory")]
            Store::Memory => {
                if self.memory_capacity == 0 {
                    return Err(config("memory_capacity", "must be greater than zero"));
                }
                (
                    Backend::Memory(MemoryBackend::new(self.memory_capacity)),
                    false,
                )
            }
            #[cfg(not(feature = "memory"))]
            Store::Memory => {
                return Err(missing_feature(
                    "in_memory",
                    "memory",
                    "the in-memory backend (what a builder that names no backend builds)",
                ));
            }
            #[cfg(feature = "redis")]
            Store::Redis(url) => {
                let connect = self.connect()?;
                Self::started(RedisBackend::new(url, &connect)?, url).await?
            }
            #[cfg(feature = "redis")]
            Store::Cluster(nodes) => {
                if nodes.is_empty() {
                    return Err(config("redis_cluster", "needs at least one seed node URL"));
                }
                let connect = self.connect()?;
                let redis = RedisBackend::cluster(nodes, &connect)?;
                let masked: Vec<_> = nodes.iter().map(|node| mask_password(node)).collect();
                Self::started(redis, &masked.join(", ")).await?
            }
            #[cfg(not(feature = "redis"))]
            Store::Redis(_) => {
                return Err(missing_feature("redis", "redis", "the Redis backend"));
            }
            #[cfg(not(feature = "redis"))]
            Store::Cluster(_) => {
                return Err(missing_feature(
                    "redis_cluster",
                    "redis",
                    "the Redis backend",
                ));
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
            #[cfg(feature = "memory")]
            (Some(_), Backend::Memory(_)) => {
                return Err(config(
                    "near_cache",
                    "a near tier goes in front of Redis; the in-memory backend is in-process \
                     already (use .redis(url) or .redis_cluster(nodes), or drop .near_cache)",
                ));
            }
            #[cfg(feature = "redis")]
            (Some(0), _) => return Err(config("near_cache", "must be greater than zero bytes")),
            #[cfg(feature = "redis")]
            (Some(bytes), Backend::Redis(redis)) => {
                let cap = self.near_ttl.unwrap_or(DEFAULT_NEAR_TTL);
                if cap.is_zero() {
                    return Err(config("near_ttl", "must be greater than zero"));
                }
                let prefix = Keys::new(&self.namespace, self.version).prefix().to_owned();
                let near = NearTier::start(
                    bytes,
                    cap,
                    redis.tracking_servers(),
                    prefix,
                    redis.pairing(),
                );
                // The first reads find it serving, unless Redis is away: a
                // Redis that did not answer the ping costs `build()`
                // nothing more (the tier comes up by itself later).
                if answered {
                    near.wait_up(self.timeout.max(Duration::from_secs(1))).await;
                }
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
                max_value_size: self.max_value_size,
                compress_above: self.compress_above,
                max_key_len: self.max_key_len,
            },
        )))
    }
}

#[cfg(feature = "redis")]
impl CacheBuilder {
    /// Opens the connection now, so the first call does not wait for it; a
    /// Redis that does not answer is logged, not an error. One that answers
    /// but cannot be used with these settings (a certificate that does not
    /// verify, credentials it refuses) is the error.
    /// With the backend, whether Redis answered.
    async fn started(redis: RedisBackend, url: &str) -> Result<(Backend, bool), Error> {
        let answered = match redis.ping().await {
            Ok(()) => true,
            Err(error) => {
                if let Some(fatal) = redis.misconfigured(&error).await {
                    return Err(fatal);
                }
                tracing::warn!(
                    url = %mask_password(url),
                    %error,
                    "cachefw: Redis is not reachable at start; serving from the source until it is"
                );
                false
            }
        };
        Ok((Backend::Redis(redis), answered))
    }

    /// The connection settings of a Redis backend, the PEM checked.
    fn connect(&self) -> Result<Connect, Error> {
        if let Some(Redacted(pem)) = &self.root_cert {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates("tls_root_cert", pem)? {
                roots.add(cert).map_err(|error| {
                    config(
                        "tls_root_cert",
                        format!("a certificate in the PEM is not a usable CA certificate: {error}"),
                    )
                })?;
            }
        }
        if let Some(Redacted((cert, key))) = &self.client_cert {
            use rustls::pki_types::PrivateKeyDer;
            use rustls::pki_types::pem::PemObject;

            let chain = certificates("tls_client_cert", cert)?;
            // The PEM parser's own messages may quote a line of the key:
            // only ours are shown.
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
                config(
                    "tls_client_cert",
                    "the key PEM holds no private key that parses (PKCS#8, PKCS#1 or SEC1)",
                )
            })?;
            install_crypto_provider();
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .and_then(|builder| {
                    builder
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_client_auth_cert(chain, key)
                })
                .map_err(|error| {
                    config(
                        "tls_client_cert",
                        format!("the certificate and key cannot be used together: {error}"),
                    )
                })?;
        }
        if let Some((user, _)) = &self.credentials
            && user.contains(char::is_whitespace)
        {
            return Err(config(
                "credentials",
                "the user name must not contain spaces",
            ));
        }
        Ok(Connect {
            timeout: self.timeout,
            root_cert: self.root_cert.as_ref().map(|Redacted(pem)| pem.clone()),
            client_cert: self.client_cert.as_ref().map(|Redacted(pair)| pair.clone()),
            credentials: self
                .credentials
                .as_ref()
                .map(|(user, Redacted(password))| (user.clone(), password.clone())),
            max_value_size: self.max_value_size,
            breaker: std::sync::Arc::new(Rules::new(
                self.breaker_failures,
                self.breaker_probe_interval,
                self.breaker_max_probe_interval,
            )),
        })
    }
}

/// The certificates of a PEM given to `setting`: at least one, all parsed.
#[cfg(feature = "redis")]
fn certificates(
    setting: &'static str,
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| config(setting, format!("the PEM does not parse: {error}")))?;
    if certs.is_empty() {
        return Err(config(
            setting,
            "the PEM holds no certificate (`-----BEGIN CERTIFICATE-----`)",
        ));
    }
    Ok(certs)
}

fn config(setting: &'static str, reason: impl Into<String>) -> Error {
    Error::Config {
        setting,
        reason: reason.into(),
    }
}

/// `setting` needs `what`, which the cargo feature `feature` of cachefw
/// compiles in, and this build left out.
#[cfg(not(all(feature = "redis", feature = "memory")))]
fn missing_feature(setting: &'static str, feature: &str, what: &str) -> Error {
    config(
        setting,
        format!(
            "{what} is not compiled in: enable the `{feature}` feature of cachefw \
             (`cachefw = {{ version = \"…\", features = [\"{feature}\"] }}`; it is on by default)"
        ),
    )
}
