//! The circuit breaker around one Redis server: after repeated failures it
//! stops calling the server for an interval that grows (with jitter, up to a
//! cap) while the server stays down, then lets one call probe it. A dead
//! Redis then costs a caller one atomic load instead of a timeout.
//!
//! The probe is a guard ([`Probe`]): if the probing call is cancelled before
//! its command settles, dropping the guard starts another open interval (not
//! a longer one), after which the next call probes; so the breaker can never
//! stay half-open, and callers that keep giving up early do not each pay for
//! a probe. Outcomes of calls admitted before the breaker last opened
//! (stragglers) are ignored: they neither fail the probe nor reopen a
//! breaker that a probe closed; only the probe's own outcome decides.
//!
//! **Evictions first.** While its cache holds evictions that did not reach
//! Redis, the replay of those evictions (`inner.rs`) runs every 100 ms
//! inside [`replaying`], and an open breaker admits it whatever the
//! interval says: its first command that Redis answers closes the breaker,
//! so no eviction waits for the breaker's growing interval. On one Redis
//! the breaker meanwhile lets no other call probe ([`Rules::replay_first`];
//! not on a cluster, see `redis/run.rs`), so the cache's first command after an
//! outage is the replay.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::options::{
    DEFAULT_BREAKER_FAILURES, DEFAULT_BREAKER_MAX_PROBE_INTERVAL, DEFAULT_BREAKER_PROBE_INTERVAL,
};

/// Each interval is drawn from ±this share around its nominal length, so
/// that many processes do not probe a recovering server in lockstep.
const JITTER: f64 = 0.2;

/// The breaker's state, as [`Stats::breaker`](crate::Stats::breaker) reports it
/// (serialized as `"closed"`, `"open"` or `"half_open"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go to the backend.
    #[default]
    Closed,
    /// Calls skip the backend until the next probe.
    Open,
    /// The interval is over: the next call probes the backend.
    HalfOpen,
}

/// How a call through the breaker ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The server answered (a value, or an error about the command itself).
    Answered,
    /// The server is unreachable or unwell: counts toward opening.
    Failed,
    /// The server said it cannot serve us (`READONLY` after a failover,
    /// `LOADING`, `MASTERDOWN`): open at once.
    Refused,
}

/// What the breakers of one cache share: their settings (from the
/// builder), and whether evictions wait for the replay.
#[derive(Debug)]
pub(crate) struct Rules {
    /// Consecutive failures that open a breaker.
    pub(crate) failures: u32,
    /// The first open interval, and the longest, in milliseconds.
    pub(crate) first_interval: u64,
    pub(crate) max_interval: u64,
    /// Set while evictions wait for the replay: only the replay probes.
    replay_first: AtomicBool,
}

impl Rules {
    /// Checked by the builder: at least one failure, a first interval of
    /// at least 1 ms, a cap no shorter than it.
    pub(crate) fn new(failures: u32, first_interval: Duration, max_interval: Duration) -> Self {
        Self {
            failures: failures.max(1),
            first_interval: crate::clock::millis(first_interval).max(1),
            max_interval: crate::clock::millis(max_interval)
                .max(crate::clock::millis(first_interval))
                .max(1),
            replay_first: AtomicBool::new(false),
        }
    }

    /// Whether evictions wait for the replay (see the module docs).
    pub(crate) fn replay_first(&self, on: bool) {
        self.replay_first.store(on, Ordering::Release);
    }
}

impl Default for Rules {
    fn default() -> Self {
        Self::new(
            DEFAULT_BREAKER_FAILURES,
            DEFAULT_BREAKER_PROBE_INTERVAL,
            DEFAULT_BREAKER_MAX_PROBE_INTERVAL,
        )
    }
}

tokio::task_local! {
    /// Marks the replay of pending evictions: the one caller an open
    /// breaker lets through at any time.
    static REPLAY: ();
}

/// Runs `replay` as the replay of pending evictions: an open breaker
/// admits its commands whatever its interval says.
pub(crate) async fn replaying<F: Future>(replay: F) -> F::Output {
    REPLAY.scope((), replay).await
}

pub(crate) struct Breaker {
    rules: Arc<Rules>,
    clock: Instant,
    /// Counts openings: a pass remembers the one it was admitted in.
    epoch: AtomicU64,
    failures: AtomicU32,
    /// Milliseconds since `clock` until which calls are refused; 0: closed.
    open_until: AtomicU64,
    /// The current nominal open interval, in milliseconds.
    interval: AtomicU64,
    /// Whether a probe is out.
    probing: AtomicBool,
    /// Milliseconds since `clock` when it last opened or closed.
    changed_at: AtomicU64,
}

/// Why the breaker refused a call: how long until it probes again.
pub(crate) struct Refused {
    pub(crate) retry_in: Duration,
}

/// Leave to call the server, to be settled with the call's [`Verdict`].
pub(crate) enum Pass<'a> {
    /// The breaker is closed; the epoch it was admitted in.
    Closed(&'a Breaker, u64),
    /// This call probes an open breaker.
    Probe(Probe<'a>),
    /// A command of the replay, through an open breaker: an answer closes
    /// it, a failure leaves it as it was (the replay tries again soon).
    Replay(&'a Breaker),
}

/// The one call that probes an open breaker. Dropped unsettled (the caller
/// was cancelled), it starts another open interval of the same length, so
/// the breaker never sticks and the next probe comes after it.
pub(crate) struct Probe<'a> {
    breaker: &'a Breaker,
    settled: bool,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let interval = self.breaker.interval.load(Ordering::Relaxed);
            self.breaker
                .open_until
                .store(self.breaker.now() + jittered(interval), Ordering::Release);
        }
        self.breaker.probing.store(false, Ordering::Release);
    }
}

impl Pass<'_> {
    /// Records how the call ended.
    pub(crate) fn record(self, outcome: Verdict) {
        match self {
            Self::Closed(breaker, epoch) => breaker.record_closed(epoch, outcome),
            Self::Probe(mut probe) => {
                match outcome {
                    Verdict::Answered => probe.breaker.close(),
                    Verdict::Failed | Verdict::Refused => probe.breaker.reopen(),
                }
                // Dropping the guard lets the next interval's probe out.
                probe.settled = true;
            }
            Self::Replay(breaker) => {
                if outcome == Verdict::Answered {
                    breaker.close();
                }
            }
        }
    }
}

impl Breaker {
    pub(crate) fn new(rules: Arc<Rules>) -> Self {
        Self {
            clock: Instant::now(),
            epoch: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            interval: AtomicU64::new(rules.first_interval),
            rules,
            probing: AtomicBool::new(false),
            changed_at: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        // Never 0, which means "closed".
        crate::clock::millis(self.clock.elapsed()).max(1)
    }

    /// Whether a call may go to the backend now.
    pub(crate) fn admit(&self) -> Result<Pass<'_>, Refused> {
        let open_until = self.open_until.load(Ordering::Acquire);
        if open_until == 0 {
            return Ok(Pass::Closed(self, self.epoch.load(Ordering::Acquire)));
        }
        if REPLAY.try_with(|()| ()).is_ok() {
            return Ok(Pass::Replay(self));
        }
        let now = self.now();
        if now < open_until {
            return Err(Refused {
                retry_in: Duration::from_millis(open_until - now),
            });
        }
        // Half open: one caller probes, the others keep skipping; none
        // while evictions wait for the replay, which probes instead.
        if self.rules.replay_first.load(Ordering::Acquire) {
            return Err(Refused {
                retry_in: Duration::ZERO,
            });
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Ok(Pass::Probe(Probe {
                breaker: self,
                settled: false,
            }))
        } else {
            Err(Refused {
                retry_in: Duration::ZERO,
            })
        }
    }

    fn record_closed(&self, epoch: u64, outcome: Verdict) {
        if self.open_until.load(Ordering::Acquire) != 0
            || self.epoch.load(Ordering::Acquire) != epoch
        {
            // A straggler admitted before the breaker (last) opened: its
            // outcome is old news; only the probe decides.
            return;
        }
        match outcome {
            Verdict::Answered => {
                // A plain load first: the hit path writes nothing while all
                // is well.
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
            Verdict::Failed => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= self.rules.failures {
                    self.open(failures);
                }
            }
            Verdict::Refused => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                self.open(failures);
            }
        }
    }

    /// Opens a closed breaker; racing callers open it once.
    fn open(&self, failures: u32) {
        let interval = self.interval.load(Ordering::Relaxed);
        let until = self.now() + jittered(interval);
        if self
            .open_until
            .compare_exchange(0, until, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            self.changed_at.store(self.now(), Ordering::Relaxed);
            tracing::warn!(
                failures,
                "cachefw: Redis keeps failing; circuit breaker open, calls skip Redis and \
                 probe it again after about {interval}ms"
            );
        }
    }

    fn close(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.interval
            .store(self.rules.first_interval, Ordering::Relaxed);
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            self.changed_at.store(self.now(), Ordering::Relaxed);
            tracing::info!("cachefw: circuit breaker closed: a probe of Redis succeeded");
        }
    }

    fn reopen(&self) {
        let interval = self
            .interval
            .load(Ordering::Relaxed)
            .saturating_mul(2)
            .min(self.rules.max_interval);
        self.interval.store(interval, Ordering::Relaxed);
        self.open_until
            .store(self.now() + jittered(interval), Ordering::Release);
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> BreakerState {
        self.state_for().0
    }

    /// The state, and how long it has held: closed since it last closed
    /// (or was made), open since it opened (failed probes keep it open),
    /// half open since its interval ended.
    pub(crate) fn state_for(&self) -> (BreakerState, Duration) {
        let now = self.now();
        let since = |at: u64| Duration::from_millis(now.saturating_sub(at));
        match self.open_until.load(Ordering::Acquire) {
            0 => (
                BreakerState::Closed,
                since(self.changed_at.load(Ordering::Relaxed)),
            ),
            until if now < until => (
                BreakerState::Open,
                since(self.changed_at.load(Ordering::Relaxed)),
            ),
            until => (BreakerState::HalfOpen, since(until)),
        }
    }
}

/// `interval` ± [`JITTER`], at least 1 ms.
fn jittered(interval: u64) -> u64 {
    let factor = 1.0 - JITTER + 2.0 * JITTER * fastrand::f64();
    ((interval as f64 * factor) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLD: u32 = DEFAULT_BREAKER_FAILURES;
    const FIRST_INTERVAL: Duration = DEFAULT_BREAKER_PROBE_INTERVAL;
    const MAX_INTERVAL: Duration = DEFAULT_BREAKER_MAX_PROBE_INTERVAL;

    impl Breaker {
        fn new_default() -> Self {
            Self::new(Arc::new(Rules::default()))
        }
    }

    fn fail(breaker: &Breaker) {
        if let Ok(pass) = breaker.admit() {
            pass.record(Verdict::Failed);
        }
    }

    /// Makes the open interval end now.
    fn expire(breaker: &Breaker) {
        breaker.open_until.store(1, Ordering::Release);
    }

    #[test]
    fn opens_at_the_threshold_and_probes_once() {
        let breaker = Breaker::new_default();
        for _ in 0..THRESHOLD - 1 {
            fail(&breaker);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        fail(&breaker);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.admit().is_err());

        expire(&breaker);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let probe = breaker.admit().ok().expect("one probe");
        assert!(breaker.admit().is_err(), "only one");
        probe.record(Verdict::Failed);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(
            breaker.interval.load(Ordering::Relaxed),
            2 * crate::clock::millis(FIRST_INTERVAL),
            "a failed probe doubles the interval"
        );
    }

    #[test]
    fn racing_failures_never_skip_the_threshold() {
        let breaker = Breaker::new_default();
        // Passes taken while closed, settled after the count passed the
        // threshold: `>=`, not `==`, opens it.
        let passes: Vec<_> = (0..THRESHOLD + 3)
            .map(|_| breaker.admit().ok().expect("closed"))
            .collect();
        breaker.failures.store(THRESHOLD + 1, Ordering::Relaxed);
        for pass in passes {
            pass.record(Verdict::Failed);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn a_cancelled_probe_starts_another_interval_not_a_stuck_one() {
        let breaker = Breaker::new_default();
        for _ in 0..THRESHOLD {
            fail(&breaker);
        }
        expire(&breaker);
        let probe = breaker.admit().ok().expect("probe");
        drop(probe); // the probing caller was cancelled
        assert_eq!(breaker.state(), BreakerState::Open, "a new interval");
        assert_eq!(
            breaker.interval.load(Ordering::Relaxed),
            crate::clock::millis(FIRST_INTERVAL),
            "not a longer one"
        );
        expire(&breaker);
        let probe = breaker.admit().ok().expect("the next call probes");
        probe.record(Verdict::Answered);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn stragglers_do_not_reopen_a_recovered_breaker() {
        let breaker = Breaker::new_default();
        let stragglers: Vec<_> = (0..THRESHOLD * 2)
            .map(|_| breaker.admit().ok().expect("closed"))
            .collect();
        for _ in 0..THRESHOLD {
            fail(&breaker);
        }
        expire(&breaker);
        breaker
            .admit()
            .ok()
            .expect("probe")
            .record(Verdict::Answered);
        assert_eq!(breaker.state(), BreakerState::Closed);
        for straggler in stragglers {
            straggler.record(Verdict::Failed);
        }
        assert_eq!(breaker.state(), BreakerState::Closed, "old news");
    }

    #[test]
    fn stragglers_neither_fail_nor_consume_the_probe() {
        let breaker = Breaker::new_default();
        let straggler = breaker.admit().ok().expect("closed");
        for _ in 0..THRESHOLD {
            fail(&breaker);
        }
        expire(&breaker);
        let probe = breaker.admit().ok().expect("probe");
        straggler.record(Verdict::Failed);
        assert_eq!(breaker.state(), BreakerState::HalfOpen, "still probing");
        probe.record(Verdict::Answered);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn refusals_open_at_once_and_answers_reset_the_count() {
        let breaker = Breaker::new_default();
        for _ in 0..THRESHOLD - 1 {
            fail(&breaker);
        }
        breaker
            .admit()
            .ok()
            .expect("closed")
            .record(Verdict::Answered);
        for _ in 0..THRESHOLD - 1 {
            fail(&breaker);
        }
        assert_eq!(breaker.state(), BreakerState::Closed, "the count restarted");
        breaker
            .admit()
            .ok()
            .expect("closed")
            .record(Verdict::Refused);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[tokio::test]
    async fn only_the_replay_probes_while_evictions_wait() {
        let rules = Arc::new(Rules::new(
            2,
            Duration::from_secs(60),
            Duration::from_secs(60),
        ));
        let breaker = Breaker::new(rules.clone());
        fail(&breaker);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "two failures open it"
        );
        fail(&breaker);
        assert_eq!(breaker.state(), BreakerState::Open);
        rules.replay_first(true);
        expire(&breaker);
        assert!(
            breaker.admit().is_err(),
            "no read probes while evictions wait"
        );
        // The replay passes whatever the interval, and its answer closes
        // the breaker.
        breaker.open_until.store(u64::MAX, Ordering::Release);
        let pass = replaying(async { breaker.admit().ok().expect("the replay passes") }).await;
        assert!(matches!(pass, Pass::Replay(_)));
        pass.record(Verdict::Failed);
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "a failure changes nothing"
        );
        replaying(async { breaker.admit().ok().expect("again") })
            .await
            .record(Verdict::Answered);
        assert_eq!(breaker.state(), BreakerState::Closed);
        rules.replay_first(false);
    }

    #[test]
    fn intervals_grow_to_a_cap_with_jitter() {
        let breaker = Breaker::new_default();
        for _ in 0..THRESHOLD {
            fail(&breaker);
        }
        for _ in 0..20 {
            expire(&breaker);
            breaker.admit().ok().expect("probe").record(Verdict::Failed);
        }
        assert_eq!(
            breaker.interval.load(Ordering::Relaxed),
            crate::clock::millis(MAX_INTERVAL)
        );
        let left = breaker.open_until.load(Ordering::Acquire) - breaker.now();
        let max = crate::clock::millis(MAX_INTERVAL) as f64;
        assert!(
            (left as f64) <= max * (1.0 + JITTER) && (left as f64) >= max * (1.0 - JITTER) - 5.0,
            "{left}"
        );
    }
}
