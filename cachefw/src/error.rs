use std::time::Duration;

/// Everything that can go wrong inside the cache.
///
/// The low-level operations ([`Cache::get`](crate::Cache::get),
/// [`Cache::set`](crate::Cache::set), …) return it so that manual cache-aside
/// code can decide what to do. [`Cache::get_or_load`](crate::Cache::get_or_load)
/// never does: there a cache error is counted in
/// [`Stats::errors`](crate::Stats::errors), logged, and the loader's value is
/// returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Redis URL given to [`CacheBuilder::redis`](crate::CacheBuilder::redis)
    /// could not be parsed. The password, if any, is masked in `url`.
    #[error(
        "invalid Redis URL {url:?}: {source} (expected redis://[user:password@]host[:port][/db] or unix:///path)"
    )]
    InvalidUrl {
        /// The URL as given, with any password replaced by `***`.
        url: String,
        /// What the Redis client said about it.
        #[source]
        source: redis::RedisError,
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
        /// The error from the Redis client.
        #[source]
        source: redis::RedisError,
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
    /// failures.
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
        retry_in: std::time::Duration,
    },

    /// A value could not be serialized with the cache's codec.
    #[error("could not encode the value for key {key:?} with {codec:?}: {reason}")]
    Encode {
        /// The key being written.
        key: String,
        /// The codec in use.
        codec: crate::Codec,
        /// What the serializer said.
        reason: String,
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

impl Error {
    /// Whether the backend failed (as opposed to a mistake in the call).
    pub(crate) fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            Self::Redis { .. } | Self::Timeout { .. } | Self::Unavailable { .. }
        )
    }
}

fn of_key(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" of {key:?}")
    }
}
