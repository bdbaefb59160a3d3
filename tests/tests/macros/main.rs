//! The attributes (`#[cacheable]`, `#[cache_put]`, `#[cache_evict]`,
//! `#[cache_config]`) at run time, and Spring's annotation scenarios. What
//! they refuse at compile time is in `tests-ui`.
//!
//! Not here: `telemetry/uninstalled.rs` (annotated fns with no cache
//! installed), because it installs the process-wide cache, and
//! `crate_names_the_runtime_through_a_reexport` here needs none installed.
//!
//! One test binary per area (`tests/README.md`): a new file of this area
//! joins with one `mod` line below.

mod cache_config;
mod macros;
mod spring;
mod tags;
mod ttl_from_result;
