//! What a call keeps of a loaded value: whether it is stored at all
//! (`unless`), and for how long (`ttl = <expr>`, computed from the value).

use std::time::Duration;

/// Decides, per loaded value, whether it is stored and for how long.
/// Every `FnOnce(&V) -> bool` is one: an `unless` predicate (`true`: not
/// stored), storing for the call's TTL.
pub trait Keep<V> {
    /// `None`: not stored; `Some(None)`: stored for the call's TTL;
    /// `Some(Some(ttl))`: stored for `ttl`.
    fn keep(self, value: &V) -> Option<Option<Duration>>;
}

impl<V, F: FnOnce(&V) -> bool> Keep<V> for F {
    fn keep(self, value: &V) -> Option<Option<Duration>> {
        (!self(value)).then_some(None)
    }
}

/// An `unless` predicate with a TTL computed from the value
/// (`ttl = <expr>`; `None`: the call's TTL); [`Duration::ZERO`] stores
/// nothing.
pub struct TtlFrom<U, T>(pub U, pub T);

impl<V, U, T> Keep<V> for TtlFrom<U, T>
where
    U: FnOnce(&V) -> bool,
    T: FnOnce(&V) -> Option<Duration>,
{
    fn keep(self, value: &V) -> Option<Option<Duration>> {
        if (self.0)(value) {
            return None;
        }
        match (self.1)(value) {
            Some(ttl) if ttl.is_zero() => None,
            ttl => Some(ttl),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unless_and_ttl_from_the_value() {
        assert_eq!((|_: &u8| false).keep(&1), Some(None));
        assert_eq!((|_: &u8| true).keep(&1), None);
        let by_value = |v: &u8| Some(Duration::from_secs(u64::from(*v)));
        assert_eq!(
            TtlFrom(|_: &u8| false, by_value).keep(&5),
            Some(Some(Duration::from_secs(5)))
        );
        assert_eq!(
            TtlFrom(|_: &u8| false, by_value).keep(&0),
            None,
            "zero stores nothing"
        );
        assert_eq!(TtlFrom(|_: &u8| true, by_value).keep(&5), None);
        assert_eq!(TtlFrom(|_: &u8| false, |_: &u8| None).keep(&5), Some(None));
    }
}
