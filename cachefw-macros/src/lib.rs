//! Procedural macros of `cachefw`: `#[cacheable]`, `#[cache_evict]` and
//! `#[cache_put]`, `#[cache_config]` for the methods of an `impl` block,
//! and `#[derive(Entity)]` for `cachefw-cassandra`.
//!
//! Use them through the `cachefw` crate, which re-exports and documents
//! them; the generated code names only `::cachefw::__private`.
//!
//! Each macro keeps the function's signature as written and wraps its body
//! in one call of the runtime. The `#[cache_put]` and `#[cache_evict]`
//! attributes stacked on one function are expanded as one, by the
//! outermost: the body runs once, and the writes follow it in the order
//! written. When the arguments are wrong, the function is emitted untouched
//! beside the errors, so the rest of the crate still type-checks.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod args;
mod config;
mod entity;
mod errors;
mod expand;
mod owned;
mod signature;
mod stack;
mod template;
mod ttl;
mod writes;

use proc_macro::TokenStream;

use crate::args::Kind;

/// Caches the function's result. Documented on `cachefw::cacheable`.
#[proc_macro_attribute]
pub fn cacheable(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::Cacheable, args.into(), item.into()).into()
}

/// Evicts cache entries when the function runs. Documented on
/// `cachefw::cache_evict`.
#[proc_macro_attribute]
pub fn cache_evict(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::Evict, args.into(), item.into()).into()
}

/// Stores the function's result in the cache. Documented on
/// `cachefw::cache_put`.
#[proc_macro_attribute]
pub fn cache_put(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::Put, args.into(), item.into()).into()
}

/// Gives the cachefw attributes on an `impl` block's methods a cache and
/// defaults. Documented on `cachefw::cache_config`.
#[proc_macro_attribute]
pub fn cache_config(args: TokenStream, item: TokenStream) -> TokenStream {
    config::expand(args.into(), item.into()).into()
}

/// Derives a Cassandra repository entity. Documented on
/// `cachefw_cassandra::Entity`.
#[proc_macro_derive(
    Entity,
    attributes(entity, partition_key, clustering_key, column, counter)
)]
pub fn derive_entity(input: TokenStream) -> TokenStream {
    entity::derive(input.into()).into()
}
