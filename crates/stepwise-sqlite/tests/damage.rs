//! Damaged journals, snapshots, records and state (rows changed with SQL):
//! resuming gives an error naming the run and what is wrong.

use serde_json::json;
use stepwise::journal::DecodeError;
use stepwise::store::{EntryBatch, JournalStore};
use stepwise::{HumanResponseEvent, Journal, ResumeError, RunOptions, StartEvent, WorkflowIdle};

mod common;
use common::durable::*;
use common::*;
use stepwise_sqlite::SqliteStore;

#[test]
fn the_waiting_chain_resumes_when_undamaged() {
    for snapshot_every in [0, 2] {
        let (path, run_id) = waiting_chain("undamaged", snapshot_every);
        runtime().block_on(async {
            let store = SqliteStore::open(&path).await.unwrap();
            let rows: Vec<EntryBatch> = store.entries(&run_id, 0).await.unwrap();
            assert!(rows.len() >= 3, "entries spread over several rows: {rows:?}");
            assert_eq!(store.snapshot(&run_id).await.unwrap().is_some(), snapshot_every > 0);
            let journal = Journal::new(store);
            let handle = chain(false).resume(&journal, &run_id).await.unwrap();
            handle.send_event(HumanResponseEvent::new("yes")).unwrap();
            assert_eq!(finish(handle).await.unwrap().result, "yes after 1");
        });
    }
}

#[test]
fn a_truncated_journal_row_is_a_clear_error() {
    let (run_id, error) = resume_damaged("truncated", 0, "UPDATE journal SET entries = substr(entries, 1, 20)");
    let ResumeError::Decode {
        source: DecodeError::Malformed { what, .. },
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert!(what.starts_with("journal entries 0..="), "{what}");
    assert_message(&error, &run_id, "malformed journal entries 0..=");
}

#[test]
fn an_unknown_event_name_is_a_clear_error() {
    let (run_id, error) = resume_damaged(
        "unknown-event",
        0,
        // Events are `["A", ..]` in compact entries, `{"type":"A", ..}` in full ones.
        r#"UPDATE journal SET entries = replace(replace(entries, '"type":"A"', '"type":"Vanished"'), '["A",', '["Vanished",')"#,
    );
    assert!(
        matches!(&error, ResumeError::Decode { source: DecodeError::UnknownEvent { event, workflow }, .. }
            if event == "Vanished" && workflow == "chain"),
        "{error:?}"
    );
    assert_message(&error, &run_id, "event `Vanished` is not known to workflow `chain`");
}

#[test]
fn an_event_that_no_longer_decodes_is_a_clear_error() {
    let (run_id, error) = resume_damaged(
        "bad-event",
        0,
        r#"UPDATE journal SET entries = replace(replace(entries, '{"type":"A","value":1}', '{"type":"A","value":"one"}'), '["A",1]', '["A","one"]')"#,
    );
    assert!(
        matches!(&error, ResumeError::Decode { source: DecodeError::BadEvent { event, .. }, .. } if event == "A"),
        "{error:?}"
    );
    assert_message(&error, &run_id, "stored `A` no longer decodes");
}

#[test]
fn a_gap_in_the_journal_is_a_clear_error() {
    let (run_id, error) = resume_damaged(
        "gap",
        0,
        "DELETE FROM journal WHERE first_seq = (SELECT first_seq FROM journal ORDER BY first_seq LIMIT 1 OFFSET 1)",
    );
    assert!(
        matches!(&error, ResumeError::Decode { source: DecodeError::Malformed { reason, .. }, .. } if reason.contains("gap")),
        "{error:?}"
    );
    assert_message(&error, &run_id, "the journal has a gap");
}

#[test]
fn a_truncated_or_foreign_stored_snapshot_is_a_clear_error() {
    let (run_id, error) = resume_damaged(
        "snap-truncated",
        2,
        "UPDATE snapshots SET snapshot = substr(snapshot, 1, 30)",
    );
    assert!(
        matches!(&error, ResumeError::Decode { source: DecodeError::Malformed { what, .. }, .. } if what == "snapshot"),
        "{error:?}"
    );
    assert_message(&error, &run_id, "malformed snapshot");

    let (run_id, error) = resume_damaged(
        "snap-format",
        2,
        r#"UPDATE snapshots SET snapshot = replace(snapshot, '"format":1,', '"format":99,')"#,
    );
    assert_message(
        &error,
        &run_id,
        "format 99 is not supported (this build reads format 1)",
    );

    let (run_id, error) = resume_damaged(
        "snap-foreign",
        2,
        "UPDATE snapshots SET snapshot = replace(snapshot, run_id, 'someone-else')",
    );
    assert_message(&error, &run_id, "belongs to run someone-else of workflow `chain`");
}

#[test]
fn a_corrupt_run_record_is_a_clear_error() {
    let (run_id, error) = resume_damaged("bad-status", 0, "UPDATE runs SET status = 'paused'");
    assert!(matches!(error, ResumeError::Store { .. }), "{error:?}");
    assert_message(&error, &run_id, "unknown status `paused`");
}

#[test]
fn state_that_no_longer_decodes_is_a_clear_error() {
    let (run_id, error) = resume_damaged("bad-state", 0, r#"UPDATE run_state SET state = '{"count":"many"}'"#);
    assert!(
        matches!(&error, ResumeError::State { state_type, .. } if state_type.ends_with("Counter")),
        "{error:?}"
    );
    assert_message(&error, &run_id, "stored state does not decode as `");
    assert_message(&error, &run_id, "durable::Counter`");

    // The same through a snapshot.
    let wf = chain(false);
    runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        let mut snapshot = handle.snapshot().await.unwrap();
        assert_eq!(snapshot.state, json!({ "count": 1 }));
        snapshot.state = json!({ "count": -1 });
        let error = wf.resume_from_snapshot(snapshot, RunOptions::new()).unwrap_err();
        assert!(matches!(error, ResumeError::State { .. }), "{error:?}");
        assert_message(&error, handle.run_id(), "Counter");
    });
}
