//! The timestamp of a write: the wall clock of the call, in microseconds
//! since the epoch, as Cassandra orders writes (the highest timestamp of a
//! cell wins) and as the cache orders versioned entries.
//!
//! Within one process every timestamp is greater than the one before, even
//! when two calls share a microsecond or the clock steps back: a later call
//! of this process never loses to an earlier one. Across processes, the
//! clocks decide (keep them synchronised, as Cassandra needs anyway).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the epoch; later than every earlier call's.
pub(crate) fn now() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        });
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = wall.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// `at` as the cache's entry version (timestamps before the epoch, which
/// [`now`] never gives, order first).
pub(crate) fn version(at: i64) -> u64 {
    u64::try_from(at).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_only_grow() {
        let mut last = now();
        assert!(
            last > 1_600_000_000_000_000,
            "microseconds since the epoch: {last}"
        );
        for _ in 0..10_000 {
            let next = now();
            assert!(next > last);
            last = next;
        }
    }
}
