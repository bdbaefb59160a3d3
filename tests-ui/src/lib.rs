//! Only a home for `tests/ui.rs`: see the package description.
#![forbid(unsafe_code)]
