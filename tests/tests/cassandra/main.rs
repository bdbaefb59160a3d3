//! The Cassandra adapter: reads and the repository against kassandra
//! (`repository.rs`), the write paths (`writes.rs`), and what only a real
//! node shows (`live.rs`, `#[ignore]`d unless `CACHEFW_CASSANDRA_URI` is
//! set). The kassandra setup is `cachefw_tests::cassandra`.
//!
//! One test binary per area (`tests/README.md`): a new file of this area
//! joins with one `mod` line below.

mod follow_changes;
mod hash_layout;
mod live;
mod repository;
// Public, as it was a crate root: what `#[derive(Entity)]` generates for its
// entities (a counter enum's every variant) is their API, not dead code.
pub mod writes;
