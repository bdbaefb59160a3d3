//! TLS, ACL users, and limits on what the cache reads and writes. That
//! secrets never reach `Debug`, errors or logs is `telemetry/secrets.rs`,
//! beside the other tests that read the logs.
//!
//! One test binary per area (`tests/README.md`): a new file of this area
//! joins with one `mod` line below.

mod security;
