//! Faults only a database file has: a run held by a journal on another host
//! (its lease), and a write-ahead log deleted under the store.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use stepwise::store::JournalStore;
use stepwise::store::{now_ms, Claim, Owner, OwnerLease};
use stepwise::{HumanResponseEvent, Journal, ResumeError, RunOptions, StartEvent};

mod common;
use common::durable::*;
use stepwise_sqlite::SqliteStore;

/// A claim of run `d` by a journal on another host whose lease ends at
/// `until_ms` (only the lease can tell whether such an owner is alive).
fn foreign_claim(until_ms: i64) -> Claim {
    Claim {
        run_id: "d".into(),
        lease: OwnerLease {
            owner: Owner {
                id: "f0reign0journal".into(),
                host: "another-host.invalid".into(),
                pid: 4242,
                started: 1,
            },
            until_ms,
        },
    }
}

#[test]
fn a_run_held_on_another_host_is_taken_only_once_its_lease_expired() {
    let dir = std::env::temp_dir().join(format!("stepwise-faults-lease-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("runs.db");
    let starts = Arc::new(AtomicU32::new(0));
    let wf = asking(&starts);
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal).run_id("d"));
        until_idle(&handle).await;
        journal.shutdown().await.unwrap();
        // Another host's journal takes the run (ours let go) with a live lease.
        assert_eq!(store.claim(&foreign_claim(now_ms() + 60_000)).await.unwrap(), Some(2));
    });
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let Err(error) = wf.resume(&journal, "d").await else {
            panic!("a run under another host's live lease was taken");
        };
        assert!(matches!(error, ResumeError::Held { .. }), "{error}");
        assert!(error.to_string().contains("another-host.invalid"), "{error}");
        // Its lease runs out (the host died without a word): the run is taken.
        assert_eq!(store.claim(&foreign_claim(now_ms() - 1)).await.unwrap(), Some(3));
        let handle = wf.resume(&journal, "d").await.unwrap();
        let record = store.run("d").await.unwrap().unwrap();
        assert_eq!(record.epoch, 4);
        assert_eq!(record.owner.unwrap().owner, *journal.owner());
        handle.send_event(HumanResponseEvent::new("ok")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, "got ok");
        journal.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deleting_the_write_ahead_log_is_detected_and_reported() {
    let dir = std::env::temp_dir().join(format!("stepwise-faults-wal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("runs.db");
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let wf = slow_chain();
        let before = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal));
        assert_eq!(finish(before).await.unwrap().result, 9);
        journal.flush().await.unwrap();
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        std::fs::remove_file(&wal).unwrap();
        let after = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal));
        let error = finish(after).await.unwrap_err();
        assert!(error.to_string().contains("write-ahead log"), "{error}");
        let flushed = journal.flush().await.unwrap_err();
        assert!(flushed.to_string().contains("write-ahead log"), "{flushed}");
    });
    let _ = std::fs::remove_dir_all(&dir);
}
