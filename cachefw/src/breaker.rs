//! The circuit breaker around Redis: after repeated failures it stops
//! calling Redis for a short interval that grows while Redis stays down,
//! then lets one call probe it. A dead Redis then costs a caller one atomic
//! load instead of a timeout.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Consecutive failures that open the breaker.
const THRESHOLD: u32 = 5;
/// The first open interval; it doubles at each failed probe.
const FIRST_INTERVAL: Duration = Duration::from_millis(200);
/// The longest open interval: Redis is probed at least this often.
const MAX_INTERVAL: Duration = Duration::from_secs(5);

/// The breaker's state, as [`Stats::breaker`](crate::Stats::breaker) reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go to the backend.
    #[default]
    Closed,
    /// Calls skip the backend until the next probe.
    Open,
    /// The interval is over: the next call probes the backend.
    HalfOpen,
}

pub(crate) struct Breaker {
    start: Instant,
    failures: AtomicU32,
    /// Milliseconds since `start` until which calls are refused; 0: closed.
    open_until: AtomicU64,
    /// The current open interval, in milliseconds.
    interval: AtomicU64,
    /// Whether a probe is out.
    probing: AtomicBool,
}

/// Why the breaker refused a call: how long until it probes again.
pub(crate) struct Refused {
    pub(crate) retry_in: Duration,
}

impl Breaker {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            interval: AtomicU64::new(FIRST_INTERVAL.as_millis() as u64),
            probing: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a call may go to the backend now.
    pub(crate) fn admit(&self) -> Result<(), Refused> {
        let open_until = self.open_until.load(Ordering::Acquire);
        if open_until == 0 {
            return Ok(());
        }
        let now = self.now();
        if now < open_until {
            return Err(Refused {
                retry_in: Duration::from_millis(open_until - now),
            });
        }
        // Half open: one caller probes, the others keep skipping.
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Ok(())
        } else {
            Err(Refused {
                retry_in: Duration::ZERO,
            })
        }
    }

    pub(crate) fn success(&self) {
        // Plain loads first: the hit path writes nothing while all is well.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.open_until.load(Ordering::Acquire) != 0 {
            self.open_until.store(0, Ordering::Release);
            self.interval
                .store(FIRST_INTERVAL.as_millis() as u64, Ordering::Relaxed);
            self.probing.store(false, Ordering::Release);
            tracing::info!("cachefw: circuit breaker closed: a probe of Redis succeeded");
        }
    }

    pub(crate) fn failure(&self) {
        if self.probing.swap(false, Ordering::AcqRel) {
            let interval =
                (self.interval.load(Ordering::Relaxed) * 2).min(MAX_INTERVAL.as_millis() as u64);
            self.interval.store(interval, Ordering::Relaxed);
            self.open_until
                .store(self.now() + interval, Ordering::Release);
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures == THRESHOLD && self.open_until.load(Ordering::Acquire) == 0 {
            let interval = self.interval.load(Ordering::Relaxed);
            self.open_until
                .store(self.now() + interval, Ordering::Release);
            tracing::warn!(
                failures,
                "cachefw: Redis keeps failing; circuit breaker open, calls skip Redis and \
                 probe it again after {interval}ms"
            );
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match self.open_until.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            until if self.now() < until => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_once() {
        let breaker = Breaker::new();
        for _ in 0..THRESHOLD - 1 {
            assert!(breaker.admit().is_ok());
            breaker.failure();
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.admit().is_err());

        std::thread::sleep(FIRST_INTERVAL + Duration::from_millis(20));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.admit().is_ok(), "one probe");
        assert!(breaker.admit().is_err(), "only one");
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(
            breaker.interval.load(Ordering::Relaxed),
            2 * FIRST_INTERVAL.as_millis() as u64,
            "a failed probe doubles the interval"
        );
    }

    #[test]
    fn a_success_closes_and_resets() {
        let breaker = Breaker::new();
        for _ in 0..THRESHOLD {
            breaker.failure();
        }
        // Skip the wait: the interval ended a moment ago.
        std::thread::sleep(Duration::from_millis(2));
        breaker.open_until.store(1, Ordering::Release);
        assert!(breaker.admit().is_ok());
        breaker.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.admit().is_ok());
        for _ in 0..THRESHOLD - 1 {
            breaker.failure();
        }
        assert_eq!(breaker.state(), BreakerState::Closed, "the count restarted");
    }
}
