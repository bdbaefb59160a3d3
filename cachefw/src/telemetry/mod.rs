//! What a cache tells about itself, recorded in one place: the counters
//! behind `Cache::stats` (`stats.rs`), the `metrics` handles
//! (`meters.rs`), the fields of a cached call's span, and the
//! rate-limited log of failures (`report.rs`).
//!
//! Every outcome of a read (hit, near hit, stale hit, miss, bypass) and
//! every failure no caller sees goes through [`Telemetry`], so the three
//! always agree.

pub(crate) mod advice;
pub(crate) mod meters;
pub(crate) mod report;

use crate::error::Error;
use crate::stats::Counters;

use self::meters::{Meters, Tier};
use self::report::Reporter;

/// The name of a cached call's span.
pub(crate) const GET_SPAN: &str = "cachefw.get";

/// A cache's counters, metric handles and failure log.
pub(crate) struct Telemetry {
    stats: Counters,
    meters: Meters,
    reporter: Reporter,
}

impl Telemetry {
    pub(crate) fn new(
        namespace: &str,
        advice: crate::telemetry::advice::Advice,
        tier: Tier,
    ) -> Self {
        Self {
            stats: Counters::default(),
            meters: Meters::new(namespace, advice, tier),
            reporter: Reporter::new(),
        }
    }

    pub(crate) fn stats(&self) -> &Counters {
        &self.stats
    }

    pub(crate) fn meters(&self) -> &Meters {
        &self.meters
    }

    /// A read answered from the backend (or, with `near`, from the near
    /// tier).
    pub(crate) fn hit(&self, site: &'static str, near: bool) {
        if near {
            self.stats.near_hit();
            self.meters.near_hit(site);
            record_outcome("tier", "near");
        } else {
            self.stats.hit();
            self.meters.hit(site);
        }
        record_outcome("outcome", "hit");
    }

    /// A read answered with a value past its TTL.
    pub(crate) fn stale_hit(&self, site: &'static str) {
        self.stats.stale_hit();
        self.meters.stale_hit(site);
        record_outcome("outcome", "stale");
    }

    /// A read that went to the loader or waited for one.
    pub(crate) fn miss(&self, site: &'static str) {
        self.stats.miss();
        self.meters.miss(site);
        record_outcome("outcome", "miss");
    }

    /// A read that skipped the cache for the loader: a key too long to
    /// cache, Redis out, or a pending eviction of the key. Counted as a
    /// miss; its span says `bypass`.
    pub(crate) fn bypass(&self, site: &'static str) {
        self.stats.miss();
        self.meters.miss(site);
        record_outcome("outcome", "bypass");
    }

    /// The backend answered: logs a recovery after failures. Whether it
    /// had been failing.
    pub(crate) fn answered(&self, backend: &'static str) -> bool {
        self.reporter.answered(backend)
    }

    /// Counts and logs a failure that no caller sees; `breaker_open` says
    /// whether the backend's breaker is open now (a backend failure moves
    /// the gauge).
    pub(crate) fn failure(
        &self,
        backend: &'static str,
        error: &Error,
        breaker_open: impl Fn() -> bool,
    ) {
        self.reporter.failure(&self.stats, backend, error);
        self.meters.error(error.kind());
        if error.is_backend_failure() {
            self.meters.breaker(breaker_open());
        }
    }
}

/// Records `field` on the current span when it is a cached call's
/// (`cachefw.get`): a span of the caller's own that happens to have a field
/// of that name is left alone.
fn record_outcome(field: &'static str, value: &'static str) {
    // The span is a `debug` one: with nothing listening at that level
    // (the common case in production), no span to look up.
    if !tracing::level_enabled!(tracing::Level::DEBUG) {
        return;
    }
    let span = tracing::Span::current();
    if span
        .metadata()
        .is_some_and(|metadata| metadata.name() == GET_SPAN)
    {
        span.record(field, value);
    }
}
