//! The near tier (an in-process copy in front of Redis, kept fresh by
//! client-side tracking).
//!
//! One test binary per area (`tests/README.md`): a new file of this area
//! joins with one `mod` line below.

mod near;
mod near_other_writes;
mod near_pairing;
