//! Every accepted form of the attributes compiles and runs: a module per
//! form, each with its test. (They were trybuild pass cases: trybuild
//! builds them in a project of its own, which compiles every dependency
//! again, unoptimised and with full debug info, and links each case; here
//! they share the workspace's build, and trybuild only type-checks the
//! failing cases in `tests/ui.rs`.)
//!
//! `free_fn.rs` installs the process-wide cache; the other forms name
//! their cache, or pass whether or not one is installed.

mod async_trait;
mod background_options;
mod cache_config;
mod free_fn;
mod generic;
mod impl_trait_refs_patterns;
mod methods;
mod shapes;
mod stacked_writes;
