//! The checks every store must pass (`stepwise-store-tests`), against an
//! in-memory database and against a database file (WAL mode, background
//! checkpoints: the store as it is used).

use std::sync::atomic::{AtomicU64, Ordering};

use stepwise_sqlite::SqliteStore;

mod in_memory {
    use super::*;
    stepwise_store_tests::store_conformance!(|| async { SqliteStore::in_memory().await.unwrap() });
}

mod file {
    use super::*;
    stepwise_store_tests::store_conformance!(|| async { SqliteStore::open(fresh_path()).await.unwrap() });
}

/// A new file under cargo's per-target temporary directory (kept for
/// inspection after a failure; `cargo clean` removes it).
fn fresh_path() -> std::path::PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}.db", NEXT.fetch_add(1, Ordering::Relaxed)))
}
