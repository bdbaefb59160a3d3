//! What a call stores and for how long: the macro's constant [`Options`]
//! resolved against the cache's defaults into one [`Policy`], the same way
//! for every macro and for `get_or_load`.

use std::time::Duration;

/// What a macro's arguments say about storing, written as a constant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `ttl`; `None`: the cache's default TTL.
    pub ttl: Option<Duration>,
    /// `cache_none`: how long a `None` is cached; `None`: not at all.
    pub none_ttl: Option<Duration>,
    /// `jitter`, as a fraction; `None`: the cache's default.
    pub jitter: Option<f64>,
}

/// How long loaded entries are kept, resolved once per call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// For a value.
    pub(crate) ttl: Duration,
    /// For the record that the source had no value; `None`: not stored.
    pub(crate) absent_ttl: Option<Duration>,
    /// Up to this fraction of a TTL is taken off at random, so entries
    /// loaded together do not expire together.
    pub(crate) jitter: f64,
}

/// A cache's defaults, which options fall back on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Defaults {
    pub(crate) ttl: Duration,
    pub(crate) jitter: f64,
}

impl Policy {
    /// A macro call's policy.
    pub(crate) fn resolve(options: &Options, defaults: Defaults) -> Self {
        Self {
            ttl: options.ttl.unwrap_or(defaults.ttl),
            absent_ttl: options.none_ttl,
            jitter: options.jitter.unwrap_or(defaults.jitter),
        }
    }

    /// A `get_or_load` call's policy.
    pub(crate) fn with_ttl(
        ttl: Duration,
        absent_ttl: Option<Duration>,
        defaults: Defaults,
    ) -> Self {
        Self {
            ttl,
            absent_ttl,
            jitter: defaults.jitter,
        }
    }

    /// `ttl` less up to the jitter fraction, at random; at least 1 ms.
    pub(crate) fn jittered(&self, ttl: Duration) -> Duration {
        if self.jitter <= 0.0 {
            return ttl;
        }
        ttl.mul_f64(1.0 - self.jitter * fastrand::f64())
            .max(Duration::from_millis(1))
    }
}
