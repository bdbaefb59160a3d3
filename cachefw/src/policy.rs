//! What a call stores, for how long, and how it treats entries past their
//! TTL: the macro's constant [`Options`] resolved against the cache's
//! defaults into one [`Policy`], the same way for every macro and for
//! `get_or_load`.

use std::time::Duration;

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
            site: crate::meters::NO_SITE,
        }
    }
}

/// A cache's defaults, which options fall back on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Defaults {
    pub(crate) ttl: Duration,
    pub(crate) jitter: f64,
    /// The XFetch beta; `None`: no refresh ahead.
    pub(crate) refresh_beta: Option<f64>,
    pub(crate) stale_while_revalidate: Option<Duration>,
    pub(crate) stale_if_error: Option<Duration>,
    pub(crate) load_timeout: Option<Duration>,
    /// How long a key's source is spared after a load failed and a stale
    /// value was served instead.
    pub(crate) fail_safe_throttle: Duration,
}

/// How one call treats its key, resolved once.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    /// For a value.
    pub(crate) ttl: Duration,
    /// For the record that the source had no value; `None`: not stored.
    pub(crate) absent_ttl: Option<Duration>,
    /// Up to this fraction of a TTL is taken off at random, so entries
    /// loaded together do not expire together.
    pub(crate) jitter: f64,
    /// The XFetch beta, when refresh ahead is on.
    pub(crate) refresh_beta: Option<f64>,
    pub(crate) stale_while_revalidate: Option<Duration>,
    pub(crate) stale_if_error: Option<Duration>,
    pub(crate) load_timeout: Option<Duration>,
    pub(crate) fail_safe_throttle: Duration,
    /// The call site, for metrics and traces: an annotated function's
    /// path, or `"-"`.
    pub(crate) site: &'static str,
    /// The tags the stored entry carries, with their tokens from before
    /// the load (see `tags/`); `None`: untagged.
    pub(crate) tags: Option<std::sync::Arc<crate::codec::extended::Stamp>>,
}

/// The beta `refresh_ahead = true` means when the builder sets none.
const DEFAULT_BETA: f64 = 1.0;

impl Policy {
    /// A macro call's policy.
    pub(crate) fn resolve(options: &Options, defaults: Defaults) -> Self {
        let refresh_beta = match options.refresh_ahead {
            None => defaults.refresh_beta,
            Some(None) => Some(defaults.refresh_beta.unwrap_or(DEFAULT_BETA)),
            Some(Some(beta)) => Some(beta),
        };
        Self {
            ttl: options.ttl.unwrap_or(defaults.ttl),
            absent_ttl: options.none_ttl,
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
    pub(crate) fn with_ttl(
        ttl: Duration,
        absent_ttl: Option<Duration>,
        defaults: Defaults,
    ) -> Self {
        Self::resolve(
            &Options {
                ttl: Some(ttl),
                none_ttl: absent_ttl,
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

    fn defaults() -> Defaults {
        Defaults {
            ttl: Duration::from_secs(60),
            jitter: 0.0,
            refresh_beta: None,
            stale_while_revalidate: Some(Duration::from_secs(5)),
            stale_if_error: None,
            load_timeout: None,
            fail_safe_throttle: Duration::from_secs(1),
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
            defaults(),
        );
        assert_eq!(policy.refresh_beta, Some(DEFAULT_BETA));
        assert_eq!(policy.stale_window(), Duration::from_secs(30));
        let off = Policy::resolve(
            &Options {
                refresh_ahead: Some(Some(0.0)),
                ..Options::default()
            },
            Defaults {
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
            defaults(),
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
            !Policy::with_ttl(Duration::from_secs(1), None, defaults()).refresh_due(999, 1_000, 50)
        );
    }
}
