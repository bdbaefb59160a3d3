//! Procedural macros of `cachefw`.
//!
//! Use them through the `cachefw` crate, which re-exports them; the generated
//! code names only `::cachefw::__private`. The `#[cacheable]`,
//! `#[cache_evict]` and `#[cache_put]` attributes land in a later change.
#![warn(missing_docs)]
