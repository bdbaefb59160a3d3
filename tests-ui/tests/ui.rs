//! The macros' compile-time contract: every misuse is a compile error
//! spanned on the offending text (snapshots in `tests-ui/ui/fail/*.stderr`).
//! Every accepted form compiles and runs in `tests/pass/`, an ordinary
//! test binary: without pass cases, trybuild only type-checks (`cargo
//! check`), so its project builds no dependency's code and links nothing.
//!
//! After changing a message on purpose, refresh the snapshots with
//! `TRYBUILD=overwrite cargo test -p cachefw-ui-tests --test ui` and review
//! the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/fail/*.rs");
}
