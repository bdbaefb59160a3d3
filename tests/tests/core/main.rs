//! The cache's own behaviour, over each backend: `build()`, the low-level
//! operations, `get_or_load` and batches, prefix eviction, what is stored,
//! versioned entries, stampedes and leases, freshness, invalidation, and
//! cancellation at every await.
//!
//! One test binary per area (`tests/README.md`): a new file of this area
//! joins with one `mod` line below.

mod batch;
mod batch_keys;
mod build;
mod cancellation;
mod evict_prefix;
mod follow_evictions;
mod freshness;
mod get_or_load;
mod hot_keys;
mod invalidation;
mod long_keys;
mod operations;
mod stampede;
mod stored_values;
mod tags;
mod validate;
mod versioned;
