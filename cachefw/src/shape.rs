//! How a cached function's return type maps to cache entries.
//!
//! `Result<T, E>` stores `Ok` only, `Option<T>` stores `Some` (and `None`
//! only when asked to), any other `T` is always stored. Every shape stores
//! the bare `T`, so functions of different shapes over one key share
//! entries: a `find_user -> Option<User>` reads what a
//! `get_user -> Result<User, _>` stored.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::Entry;

/// The value types a cache can hold: what the macros' functions may return
/// (inside `Result` or `Option`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached",
    label = "a cached value must be `Serialize + DeserializeOwned + Clone + Send + Sync + 'static`"
)]
pub trait Value: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Value for T {}

pub(crate) trait Shape {
    /// What the function returns.
    type Output;
    /// What the cache stores.
    type Value: Value;

    /// The function's answer for a stored entry, or `None` when the entry
    /// does not answer for this shape (it is then a miss).
    fn from_entry(entry: Entry<Self::Value>) -> Option<Self::Output>;

    /// The entry that stands for `output`, or `None` for an error, which is
    /// neither stored nor shared.
    fn to_entry(output: &Self::Output) -> Option<Entry<Self::Value>>;
}

/// `Result<T, E>`: `Ok` is the value; errors are never cached.
pub(crate) struct Fallible<T, E>(std::marker::PhantomData<fn() -> (T, E)>);

impl<T: Value, E> Shape for Fallible<T, E> {
    type Output = Result<T, E>;
    type Value = T;

    fn from_entry(entry: Entry<T>) -> Option<Result<T, E>> {
        match entry {
            Entry::Value(value) => Some(Ok(value)),
            Entry::Absent | Entry::Leased => None,
        }
    }

    fn to_entry(output: &Result<T, E>) -> Option<Entry<T>> {
        output
            .as_ref()
            .ok()
            .map(|value| Entry::Value(value.clone()))
    }
}

/// `Result<Option<T>, E>`: `Some` is the value, `None` the absent entry;
/// errors are never cached.
pub(crate) struct FallibleOptional<T, E>(std::marker::PhantomData<fn() -> (T, E)>);

impl<T: Value, E> Shape for FallibleOptional<T, E> {
    type Output = Result<Option<T>, E>;
    type Value = T;

    fn from_entry(entry: Entry<T>) -> Option<Result<Option<T>, E>> {
        Optional::<T>::from_entry(entry).map(Ok)
    }

    fn to_entry(output: &Result<Option<T>, E>) -> Option<Entry<T>> {
        output.as_ref().ok().and_then(Optional::<T>::to_entry)
    }
}

/// `Option<T>`: `Some` is the value; `None` is the absent entry.
pub(crate) struct Optional<T>(std::marker::PhantomData<fn() -> T>);

impl<T: Value> Shape for Optional<T> {
    type Output = Option<T>;
    type Value = T;

    fn from_entry(entry: Entry<T>) -> Option<Option<T>> {
        match entry {
            Entry::Value(value) => Some(Some(value)),
            Entry::Absent => Some(None),
            Entry::Leased => None,
        }
    }

    fn to_entry(output: &Option<T>) -> Option<Entry<T>> {
        Some(
            output
                .as_ref()
                .map_or(Entry::Absent, |value| Entry::Value(value.clone())),
        )
    }
}

/// Any other `T`: always a value.
pub(crate) struct Plain<T>(std::marker::PhantomData<fn() -> T>);

impl<T: Value> Shape for Plain<T> {
    type Output = T;
    type Value = T;

    fn from_entry(entry: Entry<T>) -> Option<T> {
        match entry {
            Entry::Value(value) => Some(value),
            Entry::Absent | Entry::Leased => None,
        }
    }

    fn to_entry(output: &T) -> Option<Entry<T>> {
        Some(Entry::Value(output.clone()))
    }
}
