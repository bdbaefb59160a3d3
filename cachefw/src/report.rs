//! Counting and logging cache failures without flooding the log.
//!
//! A dead Redis fails every call; logging each would bury everything else.
//! The first failure is logged at once, later ones at most once per
//! interval, with how many were held back in between. When the backend
//! answers again after failing, that is logged once too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Error;
use crate::stats::Counters;

const INTERVAL: Duration = Duration::from_secs(5);

pub(crate) struct Reporter {
    start: Instant,
    /// Milliseconds since `start` before which failures are only counted.
    quiet_until: AtomicU64,
    held_back: AtomicU64,
    /// Whether the backend's last failure has not been followed by an answer.
    failing: AtomicBool,
}

impl Reporter {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            quiet_until: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        }
    }

    /// Notes that the backend answered; logs the recovery after failures.
    pub(crate) fn answered(&self, backend: &str) {
        // A plain load first: the hit path pays no write to a shared line.
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            let held_back = self.held_back.swap(0, Ordering::Relaxed);
            // The next failure is news again: log it at once.
            self.quiet_until.store(0, Ordering::Relaxed);
            tracing::info!(
                backend,
                held_back,
                "cachefw: the cache backend answers again (held_back counts failures not logged)"
            );
        }
    }

    /// Counts `error` in `stats` and logs it unless a failure was logged
    /// within the interval.
    pub(crate) fn failure(&self, stats: &Counters, backend: &str, error: &Error) {
        stats.error();
        if matches!(error, Error::Unavailable { .. }) {
            stats.short_circuited();
        }
        if error.is_backend_failure() {
            self.failing.store(true, Ordering::Relaxed);
        }
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let quiet_until = self.quiet_until.load(Ordering::Relaxed);
        let next = now.saturating_add(INTERVAL.as_millis() as u64);
        if now < quiet_until
            || self
                .quiet_until
                .compare_exchange(quiet_until, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let held_back = self.held_back.swap(0, Ordering::Relaxed);
        tracing::warn!(
            backend,
            %error,
            held_back,
            "cachefw: cache operation failed; callers are served from the source \
             (held_back counts failures not logged since the last report)"
        );
    }
}
