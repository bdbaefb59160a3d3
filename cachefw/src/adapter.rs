//! The hooks the Cassandra adapter (`cachefw-cassandra`) builds on, as
//! `::cachefw::__adapter::…`: versioned entries, raw Redis commands through
//! the cache's connections and breakers, the Redis client they speak (one
//! version for both crates), and the key parts its row keys share with the
//! macros' keys. Not a public API: it changes in lockstep with the adapter.
//! Re-exports only: the behaviour lives in the modules named. What the
//! macros' generated code names is in `private.rs`.

pub use crate::key::push_part;
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

/// Hash entries (field-level rows): see the module `hashed.rs`.
pub mod hashed {
    #[cfg(feature = "redis")]
    pub use crate::hashed::write;
    pub use crate::hashed::{
        HashKeys, NearRead, bypasses, count, decode, encode, keys, keys_under, lease_time,
        max_value_size, near_get, near_offer, near_read,
    };
}

/// Stream followers: the loop `Cache::follow_evictions` runs, for other
/// formats of entries (the adapter's change streams).
pub mod follow {
    pub use crate::follow::{Apply, Fields, Verdict, spawn};
}
