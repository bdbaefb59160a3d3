//! Hit-ratio advice: a `warn` when a function's cache (or, for calls
//! through `Cache` methods, a namespace's) answers too few of its reads to
//! pay for itself.
//!
//! A read that misses costs the cache's round trip on top of the loader's,
//! so below about one hit in two the cache slows most calls down and adds
//! a moving part. Each call site keeps one packed counter of its reads and
//! hits in the current window (one atomic add per read); every 64th read
//! looks at the clock, and the first read after the window ends judges it:
//! with at least [`MIN_READS`] reads and a ratio below the threshold, one
//! `warn` for that window. A window in which no read comes after its end is
//! judged at the next read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::now_ms;

/// The default threshold of [`CacheBuilder::low_hit_ratio`](crate::CacheBuilder::low_hit_ratio).
pub const DEFAULT_LOW_HIT_RATIO: f64 = 0.5;
/// The default window of [`CacheBuilder::low_hit_ratio`](crate::CacheBuilder::low_hit_ratio).
pub const DEFAULT_HIT_RATIO_WINDOW: Duration = Duration::from_secs(600);
/// Reads a window needs before its ratio is judged.
pub(crate) const MIN_READS: u64 = 1_000;

/// One read in this many looks at the clock.
const CHECK_EVERY: u64 = 64;
/// Hits live in the high half of the packed counter, reads in the low.
const HIT: u64 = 1 << 32;
const READS: u64 = HIT - 1;

/// The builder's choice: a threshold and a window, or no advice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Advice {
    pub(crate) threshold: f64,
    pub(crate) window: Duration,
    pub(crate) enabled: bool,
}

impl Default for Advice {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_LOW_HIT_RATIO,
            window: DEFAULT_HIT_RATIO_WINDOW,
            enabled: true,
        }
    }
}

impl Advice {
    /// Refuses a threshold outside `0.0..=1.0` or an empty window, naming
    /// the setting.
    pub(crate) fn check(&self) -> Result<(), crate::error::Error> {
        let reason = if !(0.0..=1.0).contains(&self.threshold) {
            format!(
                "threshold {} is not a ratio between 0.0 and 1.0, such as 0.5",
                self.threshold
            )
        } else if self.window.is_zero() {
            "the window must be longer than zero, such as Duration::from_secs(600)".to_owned()
        } else {
            return Ok(());
        };
        Err(crate::error::Error::Config {
            setting: "low_hit_ratio",
            reason,
        })
    }
}

/// The current window of one call site.
#[derive(Debug)]
pub(crate) struct Window {
    /// Hits (high half) and reads (low half) in the window.
    counts: AtomicU64,
    /// When the window began, in ms since the epoch.
    started_ms: AtomicU64,
}

impl Window {
    pub(crate) fn new() -> Self {
        Self {
            counts: AtomicU64::new(0),
            started_ms: AtomicU64::new(now_ms()),
        }
    }

    /// A read of `site` in `namespace`, answered from the cache or not.
    #[inline]
    pub(crate) fn read(&self, hit: bool, advice: &Advice, namespace: &str, site: &str) {
        if !advice.enabled {
            return;
        }
        let before = self
            .counts
            .fetch_add(if hit { HIT + 1 } else { 1 }, Ordering::Relaxed);
        let reads = (before & READS) + 1;
        // Judged early when the low half nears its end.
        if reads.is_multiple_of(CHECK_EVERY) || reads >= READS >> 1 {
            self.check(advice, namespace, site);
        }
    }

    #[cold]
    #[inline(never)]
    fn check(&self, advice: &Advice, namespace: &str, site: &str) {
        let now = now_ms();
        let started = self.started_ms.load(Ordering::Relaxed);
        let window = crate::clock::millis(advice.window);
        if now.saturating_sub(started) < window {
            return;
        }
        // One reader judges the window; the others see it begun anew.
        if self
            .started_ms
            .compare_exchange(started, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let counts = self.counts.swap(0, Ordering::AcqRel);
        let (hits, reads) = (counts >> 32, counts & READS);
        if let Some(ratio) = low(hits, reads, advice.threshold) {
            tracing::warn!(
                namespace,
                function = site,
                hit_ratio = ratio,
                reads,
                "cachefw: hit ratio of {site} was {ratio:.2} over {reads} reads in the last {:?}, \
                 below {}: the cache then adds a round trip to most calls (a longer TTL, fewer \
                 evictions, or not caching this function would serve better)",
                advice.window,
                advice.threshold,
            );
        }
    }
}

/// The ratio of a window worth a warning: enough reads, too few hits.
fn low(hits: u64, reads: u64, threshold: f64) -> Option<f64> {
    if reads < MIN_READS {
        return None;
    }
    let ratio = hits as f64 / reads as f64;
    (ratio < threshold).then_some(ratio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_only_windows_with_enough_reads() {
        assert_eq!(low(0, 999, 0.5), None);
        assert_eq!(low(0, 1_000, 0.5), Some(0.0));
        assert_eq!(low(499, 1_000, 0.5), Some(0.499));
        assert_eq!(low(500, 1_000, 0.5), None);
    }

    #[test]
    fn packs_hits_and_reads() {
        let window = Window::new();
        let advice = Advice {
            window: Duration::from_secs(3_600),
            ..Advice::default()
        };
        for at in 0..10 {
            window.read(at % 2 == 0, &advice, "ns", "f");
        }
        let counts = window.counts.load(Ordering::Relaxed);
        assert_eq!((counts >> 32, counts & READS), (5, 10));
    }

    #[test]
    fn refuses_impossible_settings() {
        let bad = Advice {
            threshold: 1.5,
            ..Advice::default()
        };
        assert!(bad.check().is_err());
        let empty = Advice {
            window: Duration::ZERO,
            ..Advice::default()
        };
        assert!(empty.check().is_err());
        assert!(Advice::default().check().is_ok());
    }
}
