//! What a TTL may be, checked once for every backend. A leaf: callers build
//! their own error from `None`.

use std::time::Duration;

/// The longest TTL: Redis counts expiry in signed 64-bit milliseconds.
pub(crate) const MAX: Duration = Duration::from_millis(i64::MAX as u64);

/// The TTL as Redis's `PX` argument: whole milliseconds, rounded up so that a positive TTL never
/// becomes "no expiry" or "expire now" (`PX 0`); `None` for a zero TTL or
/// one beyond [`MAX`].
pub(crate) fn px(ttl: Duration) -> Option<u64> {
    if ttl.is_zero() || ttl > MAX {
        return None;
    }
    let whole = ttl.as_millis();
    let rounded = if ttl.subsec_nanos().is_multiple_of(1_000_000) {
        whole
    } else {
        whole + 1
    };
    Some(
        u64::try_from(rounded)
            .unwrap_or(i64::MAX as u64)
            .min(i64::MAX as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_to_whole_milliseconds() {
        assert_eq!(px(Duration::from_micros(1)), Some(1));
        assert_eq!(px(Duration::from_millis(1500)), Some(1500));
        assert_eq!(px(Duration::from_micros(1500)), Some(2));
    }

    #[test]
    fn refuses_zero_and_overlong() {
        assert_eq!(px(Duration::ZERO), None);
        assert_eq!(px(Duration::MAX), None);
        assert_eq!(px(MAX), Some(i64::MAX as u64));
    }
}
