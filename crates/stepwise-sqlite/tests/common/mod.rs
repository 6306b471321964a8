//! Helpers of the SQLite durability tests: the engine's shared durability
//! helpers (one file, included by path), plus database files and crashes.
#![allow(dead_code)]

#[path = "../../../stepwise/tests/common/durable.rs"]
pub mod durable;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use durable::{chain, read_until, runtime};
use stepwise::{Event, Journal, JournalConfig, ResumeError, RunHandle, RunOptions, StartEvent, Workflow, WorkflowIdle};
use stepwise_sqlite::SqliteStore;

/// A database path in a fresh temporary directory, removed when dropped.
pub struct TempDb {
    pub dir: PathBuf,
    pub path: PathBuf,
}

impl std::ops::Deref for TempDb {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.path
    }
}

impl AsRef<Path> for TempDb {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn temp_db(test: &str) -> TempDb {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "stepwise-durable-{}-{test}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDb {
        path: dir.join("runs.db"),
        dir,
    }
}

/// Something to do with the handle before the crash.
pub type Before<O> = Box<dyn FnOnce(&RunHandle<O>) + Send>;

/// Runs `wf` journaled to the SQLite file at `path` until `ready`, then
/// "crashes": the runtime is shut down with the run mid-flight.
pub fn run_then_crash<O: Event>(
    wf: &Workflow<StartEvent, O>,
    path: &PathBuf,
    start: StartEvent,
    ready: impl FnMut(&stepwise::AnyEvent) -> bool + Send,
    after: Option<Before<O>>,
) -> String {
    let rt = runtime();
    let run_id = rt.block_on(async {
        let store = SqliteStore::open(path).await.unwrap();
        let journal = Journal::new(store);
        let handle = wf.run_journaled(start, &journal, RunOptions::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, ready).await;
        if let Some(after) = after {
            after(&handle);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        journal.flush().await.unwrap();
        handle.run_id().to_owned()
    });
    rt.shutdown_background();
    run_id
}

/// Runs `chain` journaled to a new SQLite file until it waits for a person;
/// the run stays unfinished (resumable).
pub fn waiting_chain(test: &str, snapshot_every: u64) -> (TempDb, String) {
    let path = temp_db(test);
    let rt = runtime();
    let run_id = rt.block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let config = JournalConfig {
            snapshot_every,
            ..JournalConfig::default()
        };
        let journal = Journal::with_config(store.clone(), config);
        let handle = chain(false).run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        journal.flush().await.unwrap();
        handle.run_id().to_owned()
    });
    rt.shutdown_background();
    (path, run_id)
}

/// Damages the waiting chain run's rows with `sql`, then resumes it.
pub fn resume_damaged(test: &str, snapshot_every: u64, sql: &str) -> (String, ResumeError) {
    let (path, run_id) = waiting_chain(test, snapshot_every);
    let error = runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let changed = store.execute_raw(sql).await.unwrap();
        assert!(changed > 0, "`{sql}` changed nothing");
        let journal = Journal::new(store);
        chain(false).resume(&journal, &run_id).await.unwrap_err()
    });
    (run_id, error)
}
