//! What the cache tells its operators: metrics (through a recorder
//! installed for this binary), `tracing` spans, rate-limited logs, the
//! warning of an annotated fn run with no cache installed, and secrets
//! that never reach `Debug`, errors or logs.
//!
//! Process-wide state here: the `metrics` recorder (each metrics test
//! reads only the series of its own namespace), and the installed cache,
//! which `uninstalled.rs` needs empty until it installs one: no other test
//! here installs one. Log and span tests collect their own thread's events
//! with a thread-local subscriber, never a global one.
//!
//! One test binary per area (`tests/README.md`): a new file of this area
//! joins with one `mod` line below.

mod hit_ratio;
mod logging;
mod metrics;
mod secrets;
mod spans;
mod uninstalled;
