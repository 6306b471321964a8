//! The store checks against `MemoryStore`, the engine's own store (the
//! engine crate cannot run them itself without depending on this crate).

stepwise_store_tests::store_conformance!(|| async { stepwise::store::MemoryStore::new() });

/// The macro's list of checks is written by hand: it must name every
/// public check function, or a new check would silently never run.
#[test]
fn the_macro_runs_every_public_check() {
    let source = include_str!("../src/checks.rs");
    let mut written: Vec<&str> = source
        .lines()
        .filter_map(|line| line.strip_prefix("pub async fn "))
        .map(|rest| rest.split(['(', '<']).next().unwrap())
        .collect();
    let mut listed = stepwise_store_tests::check_names();
    written.sort();
    listed.sort();
    assert_eq!(listed, written);
}
