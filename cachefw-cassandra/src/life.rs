//! How long a row read from Cassandra may stay cached: never longer than the
//! row lives.
//!
//! `TTL(column)` answers whole seconds, rounded down from the server's
//! clock, so a row read with `TTL() = s` lives more than `s - 1` seconds
//! after the request was sent (the read happened after that), and that is
//! the bound used. The entry is written after the read returns; a margin
//! covers that last step.

use std::time::{Duration, Instant};

/// The time between the loader's return and the cache's write of the
/// entry, which starts the entry's TTL.
const FILL_MARGIN: Duration = Duration::from_millis(500);

/// How much sooner than the first a second read of the same row may find
/// it expiring: `TTL()` loses up to a second to rounding at each read.
pub(crate) const REREAD_SLACK: Duration = Duration::from_secs(2);

/// The shortest life worth caching a row for.
pub(crate) const MIN_LIFE: Duration = Duration::from_secs(1);

/// The earliest the row can expire: it was read by a request sent at
/// `sent`, with `ttl_seconds` the least `TTL()` of its columns.
pub(crate) fn expiry(sent: Instant, ttl_seconds: i32) -> Instant {
    let whole = u64::try_from(ttl_seconds.saturating_sub(1)).unwrap_or(0);
    sent + Duration::from_secs(whole)
}

/// How long an entry written now may live without outliving a row that
/// expires no sooner than `expiry` (`None`: the row does not expire).
pub(crate) fn remaining(expiry: Option<Instant>, now: Instant) -> Option<Duration> {
    expiry.map(|at| {
        at.saturating_duration_since(now)
            .saturating_sub(FILL_MARGIN)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_lives_at_least_its_ttl_less_a_second() {
        let sent = Instant::now();
        assert_eq!(expiry(sent, 30), sent + Duration::from_secs(29));
        assert_eq!(expiry(sent, 1), sent);
        assert_eq!(expiry(sent, 0), sent);
        assert_eq!(expiry(sent, -5), sent);
    }

    #[test]
    fn the_entry_ends_before_the_row() {
        let now = Instant::now();
        assert_eq!(remaining(None, now), None);
        let life = remaining(Some(now + Duration::from_secs(10)), now);
        assert_eq!(life, Some(Duration::from_millis(9_500)));
        assert_eq!(
            remaining(Some(now), now + Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
    }
}
