//! The items the macros' generated code names, as `::cachefw::__private::…`
//! (or through the path given as `crate = …`). Not a public API: it changes
//! in lockstep with `cachefw-macros`. Re-exports only: the behaviour lives
//! in the modules named.

pub use std::option::Option;
pub use std::sync::atomic::AtomicBool;
pub use std::time::Duration;
pub use std::{concat, file, line, module_path};

pub use crate::call::{
    Attribute, CacheRef, Call, KeyWriter, Writes, installed_or_warn, render_key,
};
pub use crate::keep::TtlFrom;
pub use crate::key::push_part;
pub use crate::policy::Options;
pub use crate::shape::{Dispatch, Tag, caching_none, declare, own_receiver};
pub use std::string::String;

// For cachefw-cassandra: versioned entries and raw commands, and the
// Redis client they speak (one version for both crates).
#[cfg(feature = "redis")]
pub use redis;

/// Versioned entries: see the module `versioned.rs`.
pub mod versioned {
    pub use crate::versioned::{
        Peeked, RECORD_MARGIN, Settled, Stored, evict, peek, prefix, settle, settle_under, store,
    };
}

/// Raw Redis commands through the cache's connections and breakers.
#[cfg(feature = "redis")]
pub mod command {
    pub use crate::command::{invoke, run};
}
