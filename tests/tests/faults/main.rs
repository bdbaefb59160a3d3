//! Redis failing under the cache: down at build, stopped, restarted,
//! frozen, slow, read-only after a failover; how fast caching recovers; a
//! Redis Cluster, with its primaries killed and failed over; a soak with
//! faults; and the test kits that inject them.
//!
//! One test binary per area (`tests/README.md`): a new file of this area
//! joins with one `mod` line below.

mod classification;
mod cluster;
mod cluster_failover;
mod cluster_faults;
mod faults;
mod harness;
mod read_your_writes;
mod read_your_writes_batch;
mod read_your_writes_soak;
mod recovery;
mod soak;
mod testing_kit;
