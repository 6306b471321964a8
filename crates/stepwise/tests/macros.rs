//! Compile-fail tests: every misuse of the macros must produce a precise,
//! readable error. Regenerate the expected output with
//! `TRYBUILD=overwrite cargo test -p stepwise --test macros` and review it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
