//! Return shapes: how a cached function's return type maps to cache entries,
//! and how the macros' generated code finds the shape of a return type.
//!
//! There are four, named alike everywhere (the macros' `shape = "…"`, the
//! marker types here, the `declare` checks):
//!
//! | shape | return type | stored | a success, for eviction |
//! | --- | --- | --- | --- |
//! | `result` ([`ResultShape`]) | `Result<T, E>` | `Ok(T)` | `Ok` |
//! | `option` ([`OptionShape`]) | `Option<T>` | `Some(T)`; `None` with `cache_none` | any |
//! | `result_option` ([`ResultOptionShape`]) | `Result<Option<T>, E>` | `Ok(Some(T))`; `Ok(None)` with `cache_none` | `Ok` |
//! | `plain` ([`PlainShape`]) | anything else | the value | any |
//!
//! Every shape stores the bare `T` (or the absent record), so functions of
//! different shapes over one key share entries: a `find_user -> Option<User>`
//! reads what a `get_user -> Result<User, _>` stored.
//!
//! The shape is found from the type, not from how it is spelled, so aliases
//! (`type ApiResult<T> = Result<T, ApiError>`) keep theirs: the generated code
//! calls [`Dispatch::shape`] on `&&&Tag<R>`, and method resolution takes the
//! first impl that matches while it strips references, the most specific
//! first (autoref specialization). That works for every concrete type, but
//! a type parameter `R` matches only the last impl: the macros require
//! `shape = "…"` when the return type is one.

// `Shape` is public because generated code names it in bounds, but its
// entry methods speak the crate-private `Entry`: that keeps them internal,
// and no other crate can implement `Shape`.
#![allow(private_interfaces)]

use std::future::Future;
use std::marker::PhantomData;

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

/// A function's return seen through its shape: the value inside a success,
/// the absence of one, or an error.
#[derive(Debug, PartialEq)]
pub(crate) enum Returned<'a, T> {
    /// `Ok(v)`, `Some(v)`, `Ok(Some(v))`, or a plain `v`.
    Value(&'a T),
    /// `None` or `Ok(None)`: the source has no value.
    Absent,
    /// `Err`.
    Failed,
}

/// What a function of a shape returns, which of its returns succeeded, and
/// the value inside one: all that eviction and `<result>` keys need, so it
/// asks nothing of the value type.
pub trait Returns {
    /// What the function returns.
    type Output;

    /// The value inside a success, which `<result>` placeholders name: `T`
    /// of `Result<T, E>`, `Option<T>`, `Result<Option<T>, E>`, or the plain
    /// `T` (for a [`Shape`], its `Value`).
    type Inner;

    /// Whether `output` is a success (`Ok`, or any value of a shape without
    /// errors).
    fn succeeded(output: &Self::Output) -> bool;

    /// `output` seen through the shape.
    fn returned(output: &Self::Output) -> Returned<'_, Self::Inner>;
}

/// A shape whose values can be cached.
pub trait Shape: Returns {
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
pub struct ResultShape<T, E>(PhantomData<fn() -> (T, E)>);

impl<T, E> Returns for ResultShape<T, E> {
    type Output = Result<T, E>;
    type Inner = T;

    fn succeeded(output: &Result<T, E>) -> bool {
        output.is_ok()
    }

    fn returned(output: &Result<T, E>) -> Returned<'_, T> {
        output.as_ref().map_or(Returned::Failed, Returned::Value)
    }
}

impl<T: Value, E> Shape for ResultShape<T, E> {
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

/// `Option<T>`: `Some` is the value; `None` is the absent entry.
pub struct OptionShape<T>(PhantomData<fn() -> T>);

impl<T> Returns for OptionShape<T> {
    type Output = Option<T>;
    type Inner = T;

    fn succeeded(_: &Option<T>) -> bool {
        true
    }

    fn returned(output: &Option<T>) -> Returned<'_, T> {
        output.as_ref().map_or(Returned::Absent, Returned::Value)
    }
}

impl<T: Value> Shape for OptionShape<T> {
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

/// `Result<Option<T>, E>`: `Some` is the value, `None` the absent entry;
/// errors are never cached.
pub struct ResultOptionShape<T, E>(PhantomData<fn() -> (T, E)>);

impl<T, E> Returns for ResultOptionShape<T, E> {
    type Output = Result<Option<T>, E>;
    type Inner = T;

    fn succeeded(output: &Result<Option<T>, E>) -> bool {
        output.is_ok()
    }

    fn returned(output: &Result<Option<T>, E>) -> Returned<'_, T> {
        output
            .as_ref()
            .map_or(Returned::Failed, OptionShape::<T>::returned)
    }
}

impl<T: Value, E> Shape for ResultOptionShape<T, E> {
    type Value = T;

    fn from_entry(entry: Entry<T>) -> Option<Result<Option<T>, E>> {
        OptionShape::<T>::from_entry(entry).map(Ok)
    }

    fn to_entry(output: &Result<Option<T>, E>) -> Option<Entry<T>> {
        output.as_ref().ok().and_then(OptionShape::<T>::to_entry)
    }
}

/// Any other `T`: always a value.
pub struct PlainShape<T>(PhantomData<fn() -> T>);

impl<T> Returns for PlainShape<T> {
    type Output = T;
    type Inner = T;

    fn succeeded(_: &T) -> bool {
        true
    }

    fn returned(output: &T) -> Returned<'_, T> {
        Returned::Value(output)
    }
}

impl<T: Value> Shape for PlainShape<T> {
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

/// The return type `R` of a function, as a value that [`Dispatch`] maps to
/// the marker of its shape.
pub struct Tag<R>(PhantomData<fn() -> R>);

impl<R> Tag<R> {
    /// The tag of the output of `body`: it names the return type where the
    /// function's signature cannot (`impl Trait`).
    pub fn of<F: Future<Output = R>>(_: &F) -> Self {
        Self(PhantomData)
    }

    /// The tag of the output of the future `loader` makes.
    pub fn of_loader<F: FnOnce() -> Fut, Fut: Future<Output = R>>(_: &F) -> Self {
        Self(PhantomData)
    }
}

/// What a method's receiver must be for background options: the cache
/// finishes loads in the background with a clone of it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must be `Clone + Send + Sync + 'static` for background options",
    label = "`refresh_ahead`, `stale_while_revalidate` and `load_timeout` run the body in the background with a clone of `self`",
    note = "derive or implement `Clone` (an `Arc` inside keeps it cheap), or drop the background option"
)]
pub trait OwnedReceiver: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> OwnedReceiver for T {}

/// Clones the receiver for a background load, checking it can be one.
pub fn own_receiver<T: OwnedReceiver>(receiver: &T) -> T {
    receiver.clone()
}

impl<R> Clone for Tag<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Tag<R> {}

/// The shape of a [`Tag`]'s type: called as `(&&&tag).shape()`, it resolves
/// to the impl with the most references that matches, so the most specific
/// shape wins. The impls are at different depths, so they never overlap.
pub trait Dispatch {
    /// The shape marker.
    type Shape;

    /// The shape marker, a zero-sized value.
    fn shape(self) -> Self::Shape;
}

impl<T, E> Dispatch for &&&Tag<Result<Option<T>, E>> {
    type Shape = ResultOptionShape<T, E>;

    fn shape(self) -> Self::Shape {
        ResultOptionShape(PhantomData)
    }
}

impl<T, E> Dispatch for &&Tag<Result<T, E>> {
    type Shape = ResultShape<T, E>;

    fn shape(self) -> Self::Shape {
        ResultShape(PhantomData)
    }
}

impl<T> Dispatch for &Tag<Option<T>> {
    type Shape = OptionShape<T>;

    fn shape(self) -> Self::Shape {
        OptionShape(PhantomData)
    }
}

impl<R> Dispatch for Tag<R> {
    type Shape = PlainShape<R>;

    fn shape(self) -> Self::Shape {
        PlainShape(PhantomData)
    }
}

/// The shapes that have a `None` to cache.
#[diagnostic::on_unimplemented(
    message = "`cache_none` needs a function that can return `None`",
    label = "the return type has the shape `{Self}`, which has no `None`",
    note = "`cache_none` applies to `Option<T>` and `Result<Option<T>, E>` (or aliases of them)"
)]
pub trait HasNone: Shape {}

impl<T: Value> HasNone for OptionShape<T> {}

impl<T: Value, E> HasNone for ResultOptionShape<T, E> {}

/// `cache_none = "…"`: checks at compile time that the shape has a `None`.
pub fn caching_none<S: HasNone>(shape: S) -> S {
    shape
}

/// `shape = "…"`: each function checks at compile time that the detected
/// shape is the declared one, and returns it.
pub mod declare {
    use super::{OptionShape, PlainShape, ResultOptionShape, ResultShape};

    /// The `result` shape.
    #[diagnostic::on_unimplemented(
        message = "`shape = \"result\"` does not match the function's return type",
        label = "the return type has the shape `{Self}`",
        note = "\"result\" is for `Result<T, E>` (or an alias of it)"
    )]
    pub trait IsResult {}

    impl<T, E> IsResult for ResultShape<T, E> {}

    /// The `option` shape.
    #[diagnostic::on_unimplemented(
        message = "`shape = \"option\"` does not match the function's return type",
        label = "the return type has the shape `{Self}`",
        note = "\"option\" is for `Option<T>` (or an alias of it)"
    )]
    pub trait IsOption {}

    impl<T> IsOption for OptionShape<T> {}

    /// The `result_option` shape.
    #[diagnostic::on_unimplemented(
        message = "`shape = \"result_option\"` does not match the function's return type",
        label = "the return type has the shape `{Self}`",
        note = "\"result_option\" is for `Result<Option<T>, E>` (or an alias of it)"
    )]
    pub trait IsResultOption {}

    impl<T, E> IsResultOption for ResultOptionShape<T, E> {}

    /// The `plain` shape.
    #[diagnostic::on_unimplemented(
        message = "`shape = \"plain\"` does not match the function's return type",
        label = "the return type has the shape `{Self}`",
        note = "\"plain\" caches every value returned, so it is refused for a `Result` or an \
                `Option`, whose `Err` or `None` it would cache"
    )]
    pub trait IsPlain {}

    impl<T> IsPlain for PlainShape<T> {}

    /// `shape = "result"`.
    pub fn result<S: IsResult>(shape: S) -> S {
        shape
    }

    /// `shape = "option"`.
    pub fn option<S: IsOption>(shape: S) -> S {
        shape
    }

    /// `shape = "result_option"`.
    pub fn result_option<S: IsResultOption>(shape: S) -> S {
        shape
    }

    /// `shape = "plain"`.
    pub fn plain<S: IsPlain>(shape: S) -> S {
        shape
    }
}

#[cfg(test)]
// The borrows clippy finds needless are the dispatch under test.
#[allow(clippy::needless_borrow)]
mod tests {
    use super::*;

    type ApiResult<T> = Result<T, String>;
    type Maybe<T> = Option<T>;

    /// Compiles only because a type parameter dispatches to the plain shape.
    fn shape_of<R>(_: &R) -> PlainShape<R> {
        (&&&Tag::<R>(PhantomData)).shape()
    }

    /// The shape markers of concrete types, as generated code finds them.
    #[test]
    fn dispatch_sees_through_aliases() {
        let body = async { ApiResult::<u8>::Ok(1) };
        let _: ResultShape<u8, String> = (&&&Tag::of(&body)).shape();
        let body = async { Result::<Option<u8>, ()>::Ok(None) };
        let _: ResultOptionShape<u8, ()> = (&&&Tag::of(&body)).shape();
        let body = async { Maybe::<u8>::None };
        let _: OptionShape<u8> = (&&&Tag::of(&body)).shape();
        let body = async { 5u8 };
        let _: PlainShape<u8> = (&&&Tag::of(&body)).shape();
    }

    /// Inside a generic function, a type parameter is a plain value
    /// whatever it stands for: why the macros ask for `shape = "…"`.
    #[test]
    fn a_type_parameter_is_plain() {
        let _: PlainShape<Result<u8, ()>> = shape_of(&Ok::<u8, ()>(1));
    }

    #[test]
    fn what_each_shape_stores_and_counts_as_success() {
        assert_eq!(
            ResultShape::<u8, ()>::to_entry(&Ok(1)),
            Some(Entry::Value(1))
        );
        assert_eq!(ResultShape::<u8, ()>::to_entry(&Err(())), None);
        assert_eq!(ResultShape::<u8, ()>::from_entry(Entry::Absent), None);
        assert!(!ResultShape::<u8, ()>::succeeded(&Err(())));

        assert_eq!(OptionShape::<u8>::to_entry(&None), Some(Entry::Absent));
        assert_eq!(OptionShape::<u8>::from_entry(Entry::Absent), Some(None));
        assert!(OptionShape::<u8>::succeeded(&None));

        type Ro = ResultOptionShape<u8, ()>;
        assert_eq!(Ro::to_entry(&Ok(Some(2))), Some(Entry::Value(2)));
        assert_eq!(Ro::to_entry(&Ok(None)), Some(Entry::Absent));
        assert_eq!(Ro::to_entry(&Err(())), None);
        assert_eq!(Ro::from_entry(Entry::Absent), Some(Ok(None)));
        assert_eq!(Ro::from_entry(Entry::Leased), None);
        assert!(Ro::succeeded(&Ok(None)));
        assert!(!Ro::succeeded(&Err(())));

        assert_eq!(PlainShape::<u8>::to_entry(&3), Some(Entry::Value(3)));
        assert_eq!(PlainShape::<u8>::from_entry(Entry::Absent), None);
    }

    /// What `<result>` names in each shape, and when there is nothing to name.
    #[test]
    fn the_value_inside_each_return() {
        assert_eq!(ResultShape::<u8, ()>::returned(&Ok(1)), Returned::Value(&1));
        assert_eq!(ResultShape::<u8, ()>::returned(&Err(())), Returned::Failed);
        assert_eq!(OptionShape::<u8>::returned(&Some(2)), Returned::Value(&2));
        assert_eq!(OptionShape::<u8>::returned(&None), Returned::Absent);
        type Ro = ResultOptionShape<u8, ()>;
        assert_eq!(Ro::returned(&Ok(Some(3))), Returned::Value(&3));
        assert_eq!(Ro::returned(&Ok(None)), Returned::Absent);
        assert_eq!(Ro::returned(&Err(())), Returned::Failed);
        assert_eq!(PlainShape::<()>::returned(&()), Returned::Value(&()));
    }
}
