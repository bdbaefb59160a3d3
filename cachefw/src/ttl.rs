//! What a TTL may be, checked once for every backend.

use std::time::Duration;

use crate::Error;

/// The longest TTL: Redis counts expiry in signed 64-bit milliseconds.
pub(crate) const MAX: Duration = Duration::from_millis(i64::MAX as u64);

/// Returns the TTL in whole milliseconds, rounding up so that a positive TTL
/// never becomes "no expiry" or "expire now".
pub(crate) fn millis(key: &str, ttl: Duration) -> Result<u64, Error> {
    if ttl.is_zero() || ttl > MAX {
        return Err(Error::InvalidTtl {
            key: key.to_owned(),
            ttl,
        });
    }
    let whole = ttl.as_millis();
    let rounded = if ttl.subsec_nanos().is_multiple_of(1_000_000) {
        whole
    } else {
        whole + 1
    };
    Ok(u64::try_from(rounded)
        .unwrap_or(i64::MAX as u64)
        .min(i64::MAX as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_to_whole_milliseconds() {
        assert_eq!(millis("k", Duration::from_micros(1)).ok(), Some(1));
        assert_eq!(millis("k", Duration::from_millis(1500)).ok(), Some(1500));
        assert_eq!(millis("k", Duration::from_micros(1500)).ok(), Some(2));
    }

    #[test]
    fn refuses_zero_and_overlong() {
        assert!(matches!(
            millis("k", Duration::ZERO),
            Err(Error::InvalidTtl { .. })
        ));
        assert!(matches!(
            millis("k", Duration::MAX),
            Err(Error::InvalidTtl { .. })
        ));
        assert!(millis("k", MAX).is_ok());
    }
}
