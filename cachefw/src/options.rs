//! Every option of a cache, declared once with its default beside it, and
//! how one call's options resolve against the cache's.
//!
//! - [`Options`]: what one call says (a macro's arguments, written as a
//!   constant); `None` means "the cache's default".
//! - [`CacheOptions`]: what a [`CacheBuilder`](crate::CacheBuilder) sets and a
//!   built cache keeps, each field starting at its `DEFAULT_*` constant;
//!   [`CacheOptions::validate`] checks them without any I/O.
//! - [`Policy`]: one call's options resolved against the cache's, once, the
//!   same way for every macro and for `get_or_load`. The cache's defaults are
//!   themselves a `Policy`: the one of a call that overrides nothing.
//!
//! The connection settings (the Redis URLs, TLS, credentials) stay in the
//! builder: they are secrets or addresses, not options a call can change.

use std::time::Duration;

use crate::codec::Codec;
use crate::error::Error;

use crate::telemetry::meters::NO_SITE;

/// The default namespace, the first part of every key.
pub const DEFAULT_NAMESPACE: &str = "cachefw";
/// The default key version.
const DEFAULT_VERSION: u32 = 1;
/// The default bound on every Redis command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// The default TTL, for callers that give none (see
/// [`Cache::default_ttl`](crate::Cache::default_ttl)).
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
/// The default bound on stranded evictions (keys and prefixes).
pub const DEFAULT_JOURNAL_CAPACITY: usize = 10_000;
/// The default time a key's failing source is spared after a stale value
/// was served for it (see
/// [`CacheBuilder::fail_safe_throttle`](crate::CacheBuilder::fail_safe_throttle)).
pub const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(1);
/// How long a near entry lives at most unless `near_ttl` says otherwise.
pub(crate) const DEFAULT_NEAR_TTL: Duration = Duration::from_secs(60);
/// The default number of consecutive failures that open the breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// The default first open interval; it doubles at each failed probe.
pub const DEFAULT_BREAKER_PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// The default longest open interval: Redis is probed at least this often.
pub const DEFAULT_BREAKER_MAX_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// The beta `refresh_ahead = true` means when the builder sets none.
const DEFAULT_BETA: f64 = 1.0;

/// What a macro's arguments say, written as a constant. `None` everywhere
/// means "the cache's default".
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// `ttl`.
    pub ttl: Option<Duration>,
    /// `cache_none`: how long a `None` is cached; `None`: not at all.
    pub none_ttl: Option<Duration>,
    /// `jitter`, as a fraction.
    pub jitter: Option<f64>,
    /// `refresh_ahead`: `Some(None)` for `true` (the builder's beta, or 1.0),
    /// `Some(Some(beta))` for a beta, `Some(Some(0.0))` for `false`.
    pub refresh_ahead: Option<Option<f64>>,
    /// `stale_while_revalidate`.
    pub stale_while_revalidate: Option<Duration>,
    /// `stale_if_error`.
    pub stale_if_error: Option<Duration>,
    /// `load_timeout`.
    pub load_timeout: Option<Duration>,
    /// The annotated function, `module_path!()::name`: the `function`
    /// label of its metrics.
    pub site: &'static str,
}

impl Default for Options {
    /// Every option the cache's default, at no call site (calls through
    /// `Cache` methods).
    fn default() -> Self {
        Self {
            ttl: None,
            none_ttl: None,
            jitter: None,
            refresh_ahead: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            load_timeout: None,
            site: NO_SITE,
        }
    }
}

/// A cache's options: what its builder sets (less the connection
/// settings) and what the built cache keeps.
#[derive(Clone, Debug)]
pub(crate) struct CacheOptions {
    /// `low_hit_ratio` / `no_low_hit_ratio_warning` (see `advice.rs`).
    pub(crate) advice: crate::telemetry::advice::Advice,
    pub(crate) namespace: String,
    pub(crate) version: u32,
    pub(crate) codec: Codec,
    /// What a call's [`Options`] fall back on: `default_ttl`, `ttl_jitter`,
    /// `refresh_ahead`, the stale windows, `load_timeout` and
    /// `fail_safe_throttle` (its `none_ttl` and `site` are never read).
    pub(crate) defaults: Policy,
    pub(crate) lease_time: Duration,
    /// `eviction_journal_capacity`.
    pub(crate) journal_capacity: usize,
    /// The largest encoded value stored or read.
    pub(crate) max_value_size: u64,
    /// The longest full key.
    pub(crate) max_key_len: usize,
    /// Encoded values larger than this are stored compressed; 0: never.
    pub(crate) compress_above: u64,
    /// The in-memory backend's bound.
    pub(crate) memory_capacity: u64,
    /// `near_cache`: the near tier's bytes; `None`: no near tier.
    pub(crate) near_capacity: Option<u64>,
    /// `near_ttl`; `None`: [`DEFAULT_NEAR_TTL`].
    pub(crate) near_ttl: Option<Duration>,
    /// The bound on each Redis command.
    pub(crate) timeout: Duration,
    pub(crate) breaker_failures: u32,
    pub(crate) breaker_probe_interval: Duration,
    pub(crate) breaker_max_probe_interval: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            advice: crate::telemetry::advice::Advice::default(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            version: DEFAULT_VERSION,
            codec: Codec::default(),
            defaults: Policy {
                ttl: DEFAULT_TTL,
                none_ttl: None,
                jitter: 0.0,
                refresh_beta: None,
                stale_while_revalidate: None,
                stale_if_error: None,
                load_timeout: None,
                fail_safe_throttle: DEFAULT_FAIL_SAFE_THROTTLE,
                site: NO_SITE,
                tags: None,
            },
            lease_time: DEFAULT_LEASE_TIME,
            journal_capacity: DEFAULT_JOURNAL_CAPACITY,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            max_key_len: DEFAULT_MAX_KEY_LEN,
            compress_above: DEFAULT_COMPRESS_ABOVE,
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
            near_capacity: None,
            near_ttl: None,
            timeout: DEFAULT_TIMEOUT,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_probe_interval: DEFAULT_BREAKER_PROBE_INTERVAL,
            breaker_max_probe_interval: DEFAULT_BREAKER_MAX_PROBE_INTERVAL,
        }
    }
}

impl CacheOptions {
    /// Checks every option whose validity does not depend on the backend
    /// (those that do, `memory_capacity` and the near tier's, are checked by
    /// the builder with it); no I/O. The error names the builder method.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.advice.check()?;
        let defaults = &self.defaults;
        if self.namespace.is_empty() {
            return Err(invalid("namespace", "must not be empty"));
        }
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be greater than zero"));
        }
        for (setting, ttl) in [
            ("default_ttl", defaults.ttl),
            ("lease_time", self.lease_time),
        ] {
            if crate::ttl::px(ttl).is_none() {
                return Err(invalid(
                    setting,
                    format!("{ttl:?} is not between 1ms and {:?}", crate::ttl::MAX),
                ));
            }
        }
        if !(0.0..1.0).contains(&defaults.jitter) {
            return Err(invalid(
                "ttl_jitter",
                format!(
                    "{} is not a fraction in [0, 1), such as 0.1 for 10%",
                    defaults.jitter
                ),
            ));
        }
        if self.max_value_size == 0 {
            return Err(invalid("max_value_size", "must be greater than zero"));
        }
        if self.max_key_len == 0 {
            return Err(invalid(
                "max_key_len",
                "must be at least 1 byte: longer keys are stored under their digest",
            ));
        }
        if self.breaker_failures == 0 {
            return Err(invalid(
                "breaker_failures",
                "must be at least 1: the failures in a row that open the breaker",
            ));
        }
        if self.breaker_probe_interval < Duration::from_millis(1) {
            return Err(invalid("breaker_probe_interval", "must be at least 1ms"));
        }
        if self.breaker_max_probe_interval < self.breaker_probe_interval {
            return Err(invalid(
                "breaker_max_probe_interval",
                format!(
                    "{:?} is shorter than breaker_probe_interval ({:?}), the interval it caps",
                    self.breaker_max_probe_interval, self.breaker_probe_interval
                ),
            ));
        }
        if self.journal_capacity == 0 {
            return Err(invalid(
                "eviction_journal_capacity",
                "must be greater than zero: evictions Redis missed are kept there",
            ));
        }
        if let Some(beta) = defaults.refresh_beta
            && !(beta.is_finite() && beta > 0.0)
        {
            return Err(invalid(
                "refresh_ahead",
                format!("beta {beta} is not a positive number, such as 1.0"),
            ));
        }
        if defaults
            .load_timeout
            .is_some_and(|timeout| timeout.is_zero())
        {
            return Err(invalid("load_timeout", "must be greater than zero"));
        }
        Ok(())
    }
}

/// The [`Error::Config`] for `setting`, the builder method it came from.
pub(crate) fn invalid(setting: &'static str, reason: impl Into<String>) -> Error {
    Error::Config {
        setting,
        reason: reason.into(),
    }
}

/// How one call treats its key, resolved once.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    /// For a value.
    pub(crate) ttl: Duration,
    /// For the record that the source had no value; `None`: not stored.
    pub(crate) none_ttl: Option<Duration>,
    /// Up to this fraction of a TTL is taken off at random, so entries
    /// loaded together do not expire together.
    pub(crate) jitter: f64,
    /// The XFetch beta, when refresh ahead is on.
    pub(crate) refresh_beta: Option<f64>,
    pub(crate) stale_while_revalidate: Option<Duration>,
    pub(crate) stale_if_error: Option<Duration>,
    pub(crate) load_timeout: Option<Duration>,
    /// How long a key's source is spared after a load failed and a stale
    /// value was served instead.
    pub(crate) fail_safe_throttle: Duration,
    /// The call site, for metrics and traces: an annotated function's
    /// path, or `"-"`.
    pub(crate) site: &'static str,
    /// The tags the stored entry carries, with their tokens from before
    /// the load (see `tags/`); `None`: untagged.
    pub(crate) tags: Option<std::sync::Arc<crate::codec::extended::Stamp>>,
}

impl Policy {
    /// A macro call's policy: its options, or else the cache's `defaults`.
    pub(crate) fn resolve(options: &Options, defaults: &Policy) -> Self {
        let refresh_beta = match options.refresh_ahead {
            None => defaults.refresh_beta,
            Some(None) => Some(defaults.refresh_beta.unwrap_or(DEFAULT_BETA)),
            Some(Some(beta)) => Some(beta),
        };
        Self {
            ttl: options.ttl.unwrap_or(defaults.ttl),
            none_ttl: options.none_ttl,
            jitter: options.jitter.unwrap_or(defaults.jitter),
            refresh_beta: refresh_beta.filter(|beta| *beta > 0.0),
            stale_while_revalidate: options
                .stale_while_revalidate
                .or(defaults.stale_while_revalidate),
            stale_if_error: options.stale_if_error.or(defaults.stale_if_error),
            load_timeout: options.load_timeout.or(defaults.load_timeout),
            fail_safe_throttle: defaults.fail_safe_throttle,
            site: options.site,
            tags: None,
        }
    }

    /// A `get_or_load` call's policy: the builder's defaults.
    pub(crate) fn with_ttl(ttl: Duration, none_ttl: Option<Duration>, defaults: &Policy) -> Self {
        Self::resolve(
            &Options {
                ttl: Some(ttl),
                none_ttl,
                ..Options::default()
            },
            defaults,
        )
    }

    /// `ttl` less up to the jitter fraction, at random; at least 1 ms.
    pub(crate) fn jittered(&self, ttl: Duration) -> Duration {
        if self.jitter <= 0.0 {
            return ttl;
        }
        ttl.mul_f64(1.0 - self.jitter * fastrand::f64())
            .max(Duration::from_millis(1))
    }

    /// How long past its TTL an entry stays in the backend: the longest
    /// window in which a stale copy may still be served.
    pub(crate) fn stale_window(&self) -> Duration {
        self.stale_while_revalidate
            .unwrap_or_default()
            .max(self.stale_if_error.unwrap_or_default())
    }

    /// Whether an entry whose load took `delta_ms` and which expires at
    /// `expires_ms` should be recomputed now, ahead of its expiry: XFetch
    /// (Vattani, Chierichetti, Lowenstein, VLDB 2015),
    /// `now - delta * beta * ln(rand) >= expiry`.
    pub(crate) fn refresh_due(&self, now_ms: u64, expires_ms: u64, delta_ms: u32) -> bool {
        let Some(beta) = self.refresh_beta else {
            return false;
        };
        // In (0, 1], so the logarithm is finite and not positive.
        let rand = 1.0 - fastrand::f64();
        let ahead = f64::from(delta_ms) * beta * -rand.ln();
        now_ms as f64 + ahead >= expires_ms as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Policy {
        Policy {
            ttl: Duration::from_secs(60),
            stale_while_revalidate: Some(Duration::from_secs(5)),
            ..CacheOptions::default().defaults
        }
    }

    #[test]
    fn attributes_override_defaults() {
        let policy = Policy::resolve(
            &Options {
                refresh_ahead: Some(None),
                stale_if_error: Some(Duration::from_secs(30)),
                ..Options::default()
            },
            &defaults(),
        );
        assert_eq!(policy.refresh_beta, Some(DEFAULT_BETA));
        assert_eq!(policy.stale_window(), Duration::from_secs(30));
        let off = Policy::resolve(
            &Options {
                refresh_ahead: Some(Some(0.0)),
                ..Options::default()
            },
            &Policy {
                refresh_beta: Some(2.0),
                ..defaults()
            },
        );
        assert_eq!(off.refresh_beta, None, "refresh_ahead = false");
    }

    #[test]
    fn xfetch_recomputes_more_often_near_expiry() {
        let policy = Policy::resolve(
            &Options {
                refresh_ahead: Some(Some(1.0)),
                ..Options::default()
            },
            &defaults(),
        );
        let early = (0..10_000)
            .filter(|_| policy.refresh_due(0, 1_000, 50))
            .count();
        let late = (0..10_000)
            .filter(|_| policy.refresh_due(950, 1_000, 50))
            .count();
        // P(due) = exp(-(expiry - now) / (delta * beta)).
        assert!(early < 10, "{early}");
        assert!((3_300..4_000).contains(&late), "{late}");
        assert!(policy.refresh_due(1_000, 1_000, 0), "expired is due");
        assert!(
            !Policy::with_ttl(Duration::from_secs(1), None, &defaults())
                .refresh_due(999, 1_000, 50)
        );
    }

    #[test]
    fn the_defaults_are_valid() {
        assert!(CacheOptions::default().validate().is_ok());
    }
}
