//! Cassandra/ScyllaDB repositories cached through `cachefw`.
//!
//! This crate is a placeholder: the `Entity` derive and `Repository<T>`
//! land in a later change.
#![warn(missing_docs)]
