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

/// A new file under cargo's per-target temporary directory, kept after the
/// run for inspection; an earlier run's files are removed by the next one.
fn fresh_path() -> std::path::PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static CLEAN: std::sync::Once = std::sync::Once::new();
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = root.join(format!("conformance-{}", std::process::id()));
    CLEAN.call_once(|| {
        for old in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = old.file_name().to_string_lossy().into_owned();
            if name.starts_with("conformance-") && old.path() != dir {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
    });
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}.db", NEXT.fetch_add(1, Ordering::Relaxed)))
}
