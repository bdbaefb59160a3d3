//! The macros' compile-time contract: every misuse is a compile error
//! spanned on the offending text (snapshots in `tests-ui/ui/fail/*.stderr`),
//! and every accepted form compiles and runs (`tests-ui/ui/pass`).
//!
//! After changing a message on purpose, refresh the snapshots with
//! `TRYBUILD=overwrite cargo test -p cachefw-ui-tests --test ui` and review
//! the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/fail/*.rs");
    cases.pass("ui/pass/*.rs");
}
