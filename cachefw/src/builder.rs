//! [`CacheBuilder`]: a cache's options (`options.rs`) and its connection
//! settings (the Redis URLs, TLS, credentials), checked by a pure
//! `validate()` before `build()` opens any connection.

use std::fmt;
use std::time::Duration;

use crate::backend::Backend;
#[cfg(feature = "redis")]
use crate::backend::breaker::Rules;
#[cfg(feature = "memory")]
use crate::backend::memory::MemoryBackend;
#[cfg(feature = "redis")]
use crate::backend::redis::RedisBackend;
#[cfg(feature = "redis")]
use crate::backend::redis::config::{Connect, mask_password};
use crate::cache::Cache;
use crate::codec::Codec;
use crate::error::Error;
use crate::inner::Inner;
#[cfg(feature = "redis")]
use crate::key::Keys;
#[cfg(feature = "redis")]
use crate::near::NearTier;
#[cfg(feature = "redis")]
use crate::options::DEFAULT_NEAR_TTL;
use crate::options::{CacheOptions, invalid};

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
    /// Every option but the connection settings below, at its default.
    options: CacheOptions,
    store: Store,
    root_cert: Option<Redacted<Vec<u8>>>,
    client_cert: Option<Redacted<(Vec<u8>, Vec<u8>)>>,
    credentials: Option<(String, Redacted<String>)>,
}

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
            options: CacheOptions::default(),
            store: Store::Memory,
            root_cert: None,
            client_cert: None,
            credentials: None,
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
        self.options.namespace = namespace.into();
        self
    }

    /// The key version (default 1). Bumping it makes every entry of the old
    /// version unreachable at once; they then expire by their TTL.
    pub fn version(mut self, version: u32) -> Self {
        self.options.version = version;
        self
    }

    /// The bound on each Redis command (default 250 ms). A command that takes
    /// longer counts as a failure, and the caller is served from the loader.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// How values are serialized (default [`Codec::MessagePack`]).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.options.codec = codec;
        self
    }

    /// The TTL used where a caller gives none (default 10 minutes).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.options.defaults.ttl = ttl;
        self
    }

    /// The most the in-memory backend holds, in bytes of keys and encoded
    /// values (default 128 MiB); the least recently used entries go first.
    pub fn memory_capacity(mut self, bytes: u64) -> Self {
        self.options.memory_capacity = bytes;
        self
    }

    /// How long one miss may load before the callers waiting on it, in this
    /// process or another, stop waiting and load themselves (default 3 s).
    /// Set it above your slowest load.
    pub fn lease_time(mut self, lease_time: Duration) -> Self {
        self.options.lease_time = lease_time;
        self
    }

    /// Takes up to this fraction of every TTL off at random (default 0:
    /// off), so that entries loaded together do not expire together. `0.1`
    /// stores a `10m` entry for 9 to 10 minutes. `#[cacheable(jitter =
    /// "10%")]` sets it per function.
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.options.defaults.jitter = fraction;
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
        self.options.journal_capacity = evictions;
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
        self.options.defaults.refresh_beta = Some(beta);
        self
    }

    /// Serves a value up to `window` past its TTL at once, and reloads it in
    /// the background (RFC 5861's `stale-while-revalidate`; default off).
    /// Entries stay in the backend for their TTL plus this window.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.options.defaults.stale_while_revalidate = Some(window);
        self
    }

    /// When a load fails (or outlasts the load timeout), serves a value up
    /// to `window` past its TTL instead of the error (RFC 5861's
    /// `stale-if-error`, a fail-safe; default off). The key's source is then
    /// spared for the [`fail_safe_throttle`](Self::fail_safe_throttle).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.options.defaults.stale_if_error = Some(window);
        self
    }

    /// When a load runs longer than `timeout` and a stale value (within
    /// either window above) is at hand, the caller gets the stale value and
    /// the load goes on in the background to fill the cache (default off).
    /// Without a stale value the caller waits for the load.
    pub fn load_timeout(mut self, timeout: Duration) -> Self {
        self.options.defaults.load_timeout = Some(timeout);
        self
    }

    /// How long a key's source is not called again after a failed load was
    /// answered with a stale value (default 1 s), so that a source that is
    /// down sees a trickle of calls, not one per caller.
    pub fn fail_safe_throttle(mut self, period: Duration) -> Self {
        self.options.defaults.fail_safe_throttle = period;
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
        self.options.near_capacity = Some(bytes);
        self
    }

    /// Caps how long an entry stays in the near tier (default: 60 s, and
    /// never past the entry's own TTL). A cap bounds how long a copy could
    /// outlive a write whose invalidation the server never sent.
    pub fn near_ttl(mut self, ttl: Duration) -> Self {
        self.options.near_ttl = Some(ttl);
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
        self.options.max_value_size = bytes;
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
        self.options.compress_above = bytes;
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
        self.options.max_key_len = bytes;
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
        self.options.breaker_failures = failures;
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
        self.options.breaker_probe_interval = interval;
        self
    }

    /// The cap of the open interval (default 5 s): a Redis that stays down
    /// is probed at least this often, so a cache notices its return within
    /// about this long (plus jitter) after the outage.
    ///
    /// Over Redis only: the in-memory backend has no breaker.
    pub fn breaker_max_probe_interval(mut self, interval: Duration) -> Self {
        self.options.breaker_max_probe_interval = interval;
        self
    }

    /// Checks every setting and builds the cache. The settings are all
    /// checked before any connection is opened, so a bad one fails at once,
    /// whether or not Redis answers.
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
        let plan = self.validate()?;
        // With the backend, whether Redis answered at start: a near tier
        // waits for its links only then.
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
        let (backend, answered) = match plan {
            #[cfg(feature = "memory")]
            Plan::Memory => (
                Backend::Memory(MemoryBackend::new(self.options.memory_capacity)),
                false,
            ),
            #[cfg(feature = "redis")]
            Plan::Redis { redis, shown } => Self::started(*redis, &shown).await?,
        };
        let near = match (self.options.near_capacity, &backend) {
            #[cfg(feature = "redis")]
            (Some(bytes), Backend::Redis(redis)) => {
                let options = &self.options;
                let prefix = Keys::new(&options.namespace, options.version)
                    .prefix()
                    .to_owned();
                let near = NearTier::start(
                    bytes,
                    options.near_ttl.unwrap_or(DEFAULT_NEAR_TTL),
                    redis.tracking_servers(),
                    prefix,
                    redis.pairing(),
                );
                // The first reads find it serving, unless Redis is away: a
                // Redis that did not answer the ping costs `build()`
                // nothing more (the tier comes up by itself later).
                if answered {
                    near.wait_up(options.timeout.max(Duration::from_secs(1)))
                        .await;
                }
                Some(near)
            }
            // `validate` refused a near tier without Redis.
            _ => None,
        };
        let cache = Cache::new(Inner::new(backend, near, self.options));
        crate::hot::start(&cache);
        Ok(cache)
    }

    /// Checks every setting, with no I/O (no connection is opened): what
    /// [`build`](Self::build) does first, so that a bad setting fails at
    /// once even when Redis is unreachable. On success, the backend to
    /// start, its Redis clients made but not connected.
    pub(crate) fn validate(&self) -> Result<Plan, Error> {
        let options = &self.options;
        options.validate()?;
        #[cfg(not(feature = "redis"))]
        if options.near_capacity.is_some() {
            return Err(missing_feature("near_cache", "redis", "the near tier"));
        }
        let plan = match &self.store {
            #[cfg(feature = "memory")]
            Store::Memory => {
                if options.memory_capacity == 0 {
                    return Err(invalid("memory_capacity", "must be greater than zero"));
                }
                if options.near_capacity.is_some() {
                    return Err(invalid(
                        "near_cache",
                        "a near tier goes in front of Redis; the in-memory backend is in-process \
                         already (use .redis(url) or .redis_cluster(nodes), or drop .near_cache)",
                    ));
                }
                Plan::Memory
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
            Store::Redis(url) => Plan::Redis {
                redis: Box::new(RedisBackend::new(url, &self.connect()?)?),
                shown: url.clone(),
            },
            #[cfg(feature = "redis")]
            Store::Cluster(nodes) => {
                if nodes.is_empty() {
                    return Err(invalid("redis_cluster", "needs at least one seed node URL"));
                }
                let masked: Vec<_> = nodes.iter().map(|node| mask_password(node)).collect();
                Plan::Redis {
                    redis: Box::new(RedisBackend::cluster(nodes, &self.connect()?)?),
                    shown: masked.join(", "),
                }
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
        match options.near_capacity {
            None if options.near_ttl.is_some() => Err(invalid(
                "near_ttl",
                "caps entries of a near tier, and there is none: add .near_cache(bytes)",
            )),
            Some(0) => Err(invalid("near_cache", "must be greater than zero bytes")),
            Some(_) if options.near_ttl.is_some_and(|ttl| ttl.is_zero()) => {
                Err(invalid("near_ttl", "must be greater than zero"))
            }
            _ => Ok(plan),
        }
    }
}

/// What [`CacheBuilder::build`] starts once every setting is checked.
pub(crate) enum Plan {
    #[cfg(feature = "memory")]
    Memory,
    /// `shown`: the URL (or the seed nodes') for the log, if Redis does not
    /// answer at start.
    #[cfg(feature = "redis")]
    Redis {
        redis: Box<RedisBackend>,
        shown: String,
    },
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

    /// The connection settings of a Redis backend, checked.
    fn connect(&self) -> Result<Connect, Error> {
        let connect = Connect {
            timeout: self.options.timeout,
            root_cert: self.root_cert.as_ref().map(|Redacted(pem)| pem.clone()),
            client_cert: self.client_cert.as_ref().map(|Redacted(pair)| pair.clone()),
            credentials: self
                .credentials
                .as_ref()
                .map(|(user, Redacted(password))| (user.clone(), password.clone())),
            max_value_size: self.options.max_value_size,
            breaker: std::sync::Arc::new(Rules::new(
                self.options.breaker_failures,
                self.options.breaker_probe_interval,
                self.options.breaker_max_probe_interval,
            )),
        };
        connect.check()?;
        Ok(connect)
    }
}

/// `setting` needs `what`, which the cargo feature `feature` of cachefw
/// compiles in, and this build left out.
#[cfg(not(all(feature = "redis", feature = "memory")))]
fn missing_feature(setting: &'static str, feature: &str, what: &str) -> Error {
    invalid(
        setting,
        format!(
            "{what} is not compiled in: enable the `{feature}` feature of cachefw \
             (`cachefw = {{ version = \"…\", features = [\"{feature}\"] }}`; it is on by default)"
        ),
    )
}

// Plain `#[test]`s with no runtime: `validate` opens no connection (a
// Redis client that tried would have no reactor to run on).
#[cfg(all(test, feature = "redis", feature = "memory"))]
mod tests {
    use super::*;

    /// The setting `builder` is refused for, by `validate`.
    fn refused(builder: &CacheBuilder) -> &'static str {
        match builder.validate() {
            Err(Error::Config { setting, .. }) => setting,
            Err(other) => panic!("not a setting error: {other}"),
            Ok(_) => panic!("accepted: {builder:?}"),
        }
    }

    const UNREACHABLE: &str = "redis://127.0.0.1:1";
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";

    #[test]
    fn validate_names_every_bad_setting() {
        let memory = Cache::builder;
        let redis = || Cache::builder().redis(UNREACHABLE);
        let cases = [
            (memory().namespace(""), "namespace"),
            (memory().timeout(Duration::ZERO), "timeout"),
            (memory().default_ttl(Duration::ZERO), "default_ttl"),
            (memory().lease_time(Duration::MAX), "lease_time"),
            (memory().ttl_jitter(1.0), "ttl_jitter"),
            (memory().ttl_jitter(f64::NAN), "ttl_jitter"),
            (memory().max_value_size(0), "max_value_size"),
            (memory().max_key_len(0), "max_key_len"),
            (memory().breaker_failures(0), "breaker_failures"),
            (
                memory().breaker_probe_interval(Duration::ZERO),
                "breaker_probe_interval",
            ),
            (
                memory().breaker_max_probe_interval(Duration::ZERO),
                "breaker_max_probe_interval",
            ),
            (
                redis().eviction_journal_capacity(0),
                "eviction_journal_capacity",
            ),
            (redis().refresh_ahead(0.0), "refresh_ahead"),
            (redis().refresh_ahead(f64::INFINITY), "refresh_ahead"),
            (redis().load_timeout(Duration::ZERO), "load_timeout"),
            (memory().memory_capacity(0), "memory_capacity"),
            (memory().near_cache(1 << 20), "near_cache"),
            (redis().near_cache(0), "near_cache"),
            (redis().near_ttl(Duration::from_secs(1)), "near_ttl"),
            (redis().near_cache(1).near_ttl(Duration::ZERO), "near_ttl"),
            (memory().redis_cluster::<_, &str>([]), "redis_cluster"),
            (redis().tls_root_cert(PEM), "tls_root_cert"),
            (redis().tls_root_cert("no PEM here"), "tls_root_cert"),
            (redis().tls_client_cert(PEM, "no key"), "tls_client_cert"),
            (redis().credentials("a user", "pw"), "credentials"),
            (
                memory().redis("redis://:pw@h").credentials("app", "pw"),
                "credentials",
            ),
        ];
        for (builder, setting) in cases {
            assert_eq!(refused(&builder), setting, "{builder:?}");
        }
    }

    #[test]
    fn validate_refuses_urls_without_connecting() {
        for builder in [
            Cache::builder().redis("127.0.0.1:6379"),
            Cache::builder().redis_cluster(["redis://127.0.0.1:1", "http://x"]),
            Cache::builder().redis_cluster(["redis://127.0.0.1:1", "rediss://127.0.0.1:2"]),
        ] {
            assert!(
                matches!(builder.validate(), Err(Error::InvalidUrl { .. })),
                "{builder:?}"
            );
        }
    }

    #[test]
    fn validate_accepts_what_build_accepts() {
        for builder in [
            Cache::builder(),
            Cache::builder().redis(UNREACHABLE).near_cache(1 << 20),
            Cache::builder().redis_cluster([UNREACHABLE, "redis://127.0.0.1:2"]),
            Cache::builder()
                .redis(UNREACHABLE)
                .refresh_ahead(2.0)
                .ttl_jitter(0.1)
                .load_timeout(Duration::from_millis(5))
                .stale_if_error(Duration::from_secs(1))
                .credentials("app", "pw"),
        ] {
            assert!(builder.validate().is_ok(), "{builder:?}");
        }
    }
}

/// Hit-ratio advice (see `advice.rs`).
impl CacheBuilder {
    /// Warns (`tracing`, level `warn`, once per `window`) about each
    /// function whose cache answered less than `threshold` of its reads in
    /// the last `window`, with at least 1,000 reads in it (calls through
    /// `Cache` methods count per namespace, as function `"-"`). The message
    /// contains `hit ratio`, names the function, the ratio and the reads:
    /// below about one hit in two the cache adds a round trip to most
    /// calls. The defaults are `0.5` and ten minutes;
    /// [`no_low_hit_ratio_warning`](Self::no_low_hit_ratio_warning) turns
    /// it off.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder()
    ///     .low_hit_ratio(0.8, Duration::from_secs(300))
    ///     .build()
    ///     .await?;
    /// # drop(cache); Ok(()) }
    /// ```
    ///
    /// `build()` refuses a threshold outside `0.0..=1.0` or a zero window.
    pub fn low_hit_ratio(mut self, threshold: f64, window: Duration) -> Self {
        self.options.advice = crate::telemetry::advice::Advice {
            threshold,
            window,
            enabled: true,
        };
        self
    }

    /// No hit-ratio warnings (see [`low_hit_ratio`](Self::low_hit_ratio)).
    pub fn no_low_hit_ratio_warning(mut self) -> Self {
        self.options.advice.enabled = false;
        self
    }
}
