//! [`Error`]: everything that can go wrong inside the cache.

use std::fmt;
use std::time::Duration;

/// Everything that can go wrong inside the cache.
///
/// The low-level operations ([`Cache::get`](crate::Cache::get),
/// [`Cache::set`](crate::Cache::set), …) return it so that manual cache-aside
/// code can decide what to do. [`Cache::get_or_load`](crate::Cache::get_or_load)
/// and the macros never do: there a cache error is counted in
/// [`Stats::errors`](crate::Stats::errors), logged, and the loader's value is
/// returned.
///
/// Messages never contain a password: URLs are shown with it masked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Redis URL given to the builder could not be used. The password, if
    /// any, is masked in `url`.
    #[error(
        "invalid Redis URL {url:?}: {reason} (expected redis://[user:password@]host[:port][/db], \
         rediss://… or redis+unix:///path)"
    )]
    InvalidUrl {
        /// The URL as given, with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A builder setting that cannot work, such as a zero timeout.
    #[error("invalid cache setting `{setting}`: {reason}")]
    Config {
        /// The builder method the setting came from.
        setting: &'static str,
        /// Why it cannot be used, and what would be valid.
        reason: String,
    },

    /// A TTL Redis cannot store: shorter than a millisecond, or beyond what fits
    /// in a signed 64-bit count of milliseconds.
    #[error("invalid TTL {ttl:?} for key {key:?}: a TTL must be between 1ms and {max:?}", max = crate::ttl::MAX)]
    InvalidTtl {
        /// The key being written.
        key: String,
        /// The TTL that was refused.
        ttl: Duration,
    },

    /// Redis answered with an error, or the connection to it failed.
    #[error("Redis {op}{} failed: {source}", of_key(.key))]
    Redis {
        /// The command, such as `GET`.
        op: &'static str,
        /// The full Redis key (namespace and version included), or the
        /// pattern of a `SCAN`; empty for commands on no key.
        key: String,
        /// What Redis or the connection said.
        #[source]
        source: RedisFailure,
    },

    /// Redis did not answer within the operation timeout.
    #[error("Redis {op}{} timed out after {after:?}", of_key(.key))]
    Timeout {
        /// The command, such as `GET`.
        op: &'static str,
        /// The full Redis key (namespace and version included), or the
        /// pattern of a `SCAN`; empty for commands on no key.
        key: String,
        /// The operation timeout in force.
        after: Duration,
    },

    /// The call skipped Redis: the circuit breaker is open after repeated
    /// failures (or the Redis node holding the key is known to be down).
    #[error(
        "Redis {op}{} skipped: the circuit breaker is open after repeated failures (next probe in {retry_in:?})",
        of_key(.key)
    )]
    Unavailable {
        /// The command, such as `GET`.
        op: &'static str,
        /// The full Redis key (namespace and version included).
        key: String,
        /// Time until the breaker lets a call probe Redis again.
        retry_in: Duration,
    },

    /// A prefix eviction on a Redis Cluster could not reach every primary:
    /// entries on the nodes named may survive it. The eviction is kept and
    /// replayed when they answer; until then reads under the prefix bypass
    /// the cache.
    #[error(
        "evicting {prefix:?} removed {removed} entries but could not reach {}: entries there may survive",
        unreachable.join(", ")
    )]
    PartialEviction {
        /// The full key prefix.
        prefix: String,
        /// Entries removed on the nodes that answered.
        removed: u64,
        /// The nodes (`host:port`) that did not answer.
        unreachable: Vec<String>,
    },

    /// A value could not be serialized with the cache's codec.
    #[error("could not encode the value for key {key:?} with {codec:?}: {reason}")]
    Encode {
        /// The key being written.
        key: String,
        /// The codec in use.
        codec: crate::codec::Codec,
        /// What the serializer said.
        reason: String,
    },

    /// A TLS connection to Redis that cannot work: the server's certificate
    /// does not verify (signed by an unknown CA, issued for another host
    /// name, expired), the server requires a client certificate, or the
    /// handshake failed. Returned by `build()` when Redis is reachable at
    /// start; later such failures count as errors and calls go to the
    /// loaders. Never names key material.
    #[error("TLS with Redis at {node} failed: {reason}")]
    Tls {
        /// The node, `host:port`.
        node: String,
        /// What failed, and what setting would fix it.
        reason: String,
    },

    /// Redis refused the credentials (`WRONGPASS`), wanted some and was
    /// given none (`NOAUTH`), or the ACL user may not run the commands
    /// cachefw needs (`NOPERM`). Returned by `build()` when Redis is
    /// reachable at start. Never names the password.
    #[error("Redis at {node} refused {}: {reason}", user_of(.user.as_deref()))]
    Auth {
        /// The node, `host:port`.
        node: String,
        /// The ACL user, if one was given (not a secret).
        user: Option<String>,
        /// What Redis said (the password is never part of it).
        reason: String,
    },

    /// No longer returned: a key longer than
    /// [`CacheBuilder::max_key_len`](crate::CacheBuilder::max_key_len) is
    /// stored under its digest instead of being refused. Kept so that code
    /// matching on it still compiles.
    #[error("the key {key:?}… is {len} bytes, longer than the limit of {max} bytes (max_key_len)")]
    KeyTooLong {
        /// The first characters of the full key (namespace and version
        /// included), enough to recognise it.
        key: String,
        /// Its length in bytes.
        len: usize,
        /// The limit in force.
        max: usize,
    },

    /// A value larger than
    /// [`CacheBuilder::max_value_size`](crate::CacheBuilder::max_value_size):
    /// not stored when written (the old entry is evicted), a miss when read
    /// (and never read in full). Counted in
    /// [`Stats::errors`](crate::Stats::errors) either way.
    #[error("{}", too_large(.key, *.size, *.max))]
    ValueTooLarge {
        /// The full Redis key (namespace and version included).
        key: String,
        /// Its encoded size in bytes; `None` for a value read from Redis,
        /// of which no more than `max + 1` bytes are read.
        size: Option<u64>,
        /// The limit in force.
        max: u64,
    },

    /// A stored value that is not a cachefw value of the requested type:
    /// garbage, another codec's or format's entry, or another type's. Reads
    /// treat it as a miss (so the next load replaces it); this variant is
    /// what they count and log.
    #[error("the value at key {key:?} does not decode: {reason}")]
    Decode {
        /// The full Redis key (namespace and version included).
        key: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// What Redis, or the connection to it, said: the source of
/// [`Error::Redis`]. Opaque, so that the Redis client can change without
/// changing this crate's API.
#[derive(Debug)]
pub struct RedisFailure {
    pub(crate) error: RedisError,
    /// Whether it means the server is unreachable or unwell (as opposed to
    /// an answer about the command, such as `WRONGTYPE`).
    pub(crate) outage: bool,
}

#[cfg(feature = "redis")]
type RedisError = redis::RedisError;

/// Without the `redis` feature no Redis failure can be made; the type stays,
/// so that code matching on [`Error`] compiles with every set of features.
#[cfg(not(feature = "redis"))]
type RedisError = std::convert::Infallible;

impl RedisFailure {
    /// The error code Redis answered with, such as `READONLY`, `WRONGTYPE`
    /// or `OOM`; `None` for a failure of the connection.
    pub fn code(&self) -> Option<&str> {
        #[cfg(feature = "redis")]
        return self.error.code();
        #[cfg(not(feature = "redis"))]
        match self.error {}
    }
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for RedisFailure {}

impl Error {
    /// Whether the backend failed (as opposed to a mistake in the call).
    pub(crate) fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            Self::Redis { .. }
                | Self::Timeout { .. }
                | Self::Unavailable { .. }
                | Self::PartialEviction { .. }
        )
    }

    /// Whether the backend is unreachable or unwell: a timeout, the open
    /// breaker, a lost connection. Not an answer about one command.
    pub(crate) fn is_outage(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Unavailable { .. } | Self::PartialEviction { .. } => true,
            Self::Redis { source, .. } => source.outage,
            _ => false,
        }
    }

    /// A short name for the kind of failure, for logs and metrics.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::Redis { .. } | Self::PartialEviction { .. } => "redis",
            Self::Decode { .. } => "decode",
            Self::Encode { .. } => "encode",
            Self::InvalidUrl { .. } | Self::Config { .. } | Self::InvalidTtl { .. } => "usage",
            Self::Tls { .. } => "tls",
            Self::Auth { .. } => "auth",
            Self::KeyTooLong { .. } => "key_too_long",
            Self::ValueTooLarge { .. } => "value_too_large",
        }
    }

    /// Whether the cache counted and logged this error where it arose
    /// (backend failures, and the limits on keys and values), so that a
    /// caller must not count it again.
    pub(crate) fn is_counted(&self) -> bool {
        self.is_backend_failure()
            || matches!(self, Self::KeyTooLong { .. } | Self::ValueTooLarge { .. })
    }
}

fn user_of(user: Option<&str>) -> String {
    match user {
        Some(user) => format!("the ACL user {user:?}"),
        None => "the connection".to_owned(),
    }
}

fn too_large(key: &str, size: Option<u64>, max: u64) -> String {
    match size {
        Some(size) => format!(
            "the value for key {key:?} is {size} bytes, more than max_value_size ({max} bytes): not stored"
        ),
        None => format!(
            "the value at key {key:?} is larger than max_value_size ({max} bytes): read as a miss, \
             and no more than the limit of it was read"
        ),
    }
}

fn of_key(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" of {key:?}")
    }
}
