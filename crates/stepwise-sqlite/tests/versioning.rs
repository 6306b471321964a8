//! Resuming a stored run under a changed definition, a finished or unknown
//! run, and a run whose end was journaled but not its status.

use serde_json::json;
use stepwise::store::{JournalStore, RunStatus};
use stepwise::{HumanResponseEvent, Journal, ResumeError, ResumeOptions, RunOptions, StartEvent, WorkflowIdle};

mod common;
use common::durable::*;
use common::*;
use stepwise_sqlite::SqliteStore;

#[test]
fn a_changed_definition_is_refused_unless_allowed() {
    for snapshot_every in [0, 2] {
        let (path, run_id) = waiting_chain("changed", snapshot_every);
        runtime().block_on(async {
            let store = SqliteStore::open(&path).await.unwrap();
            let journal = Journal::new(store.clone());
            let changed = chain(true);
            assert_ne!(changed.fingerprint(), chain(false).fingerprint());
            let error = changed.resume(&journal, &run_id).await.unwrap_err();
            assert!(matches!(error, ResumeError::DefinitionChanged { .. }), "{error:?}");
            let text = error.to_string();
            assert!(
                text.contains(&run_id)
                    && text.contains("different definition of workflow `chain`")
                    && text.contains(chain(false).fingerprint())
                    && text.contains("allow_changed_definition"),
                "{text}"
            );
            let handle = changed
                .resume_with(&journal, &run_id, ResumeOptions::new().allow_changed_definition(true))
                .await
                .unwrap();
            handle.send_event(HumanResponseEvent::new("fine")).unwrap();
            assert_eq!(finish(handle).await.unwrap().result, "fine after 1");
        });
    }
    // The same for snapshots.
    runtime().block_on(async {
        let handle = chain(false).run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        let snapshot = handle.snapshot().await.unwrap();
        let error = chain(true)
            .resume_from_snapshot(snapshot.clone(), RunOptions::new())
            .unwrap_err();
        assert!(matches!(error, ResumeError::DefinitionChanged { .. }), "{error:?}");
        let resumed = chain(true)
            .resume_from_snapshot(snapshot, RunOptions::new().allow_changed_definition(true))
            .unwrap();
        resumed.send_event(HumanResponseEvent::new("ok")).unwrap();
        assert_eq!(finish(resumed).await.unwrap().result, "ok after 1");
    });
}

#[test]
fn resuming_a_finished_or_unknown_run_is_refused() {
    let (path, run_id) = waiting_chain("finished", 0);
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = chain(false).resume(&journal, &run_id).await.unwrap();
        handle.send_event(HumanResponseEvent::new("done")).unwrap();
        finish(handle).await.unwrap();
        journal.flush().await.unwrap();
        let error = chain(false).resume(&journal, &run_id).await.unwrap_err();
        assert!(
            matches!(
                error,
                ResumeError::Finished {
                    status: RunStatus::Completed,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.to_string(), format!("run {run_id} has already ended (Completed)"));
        assert!(chain(false).resume_unfinished(&journal).await.unwrap().is_empty());

        let error = chain(false).resume(&journal, "no-such-run").await.unwrap_err();
        assert_eq!(error.to_string(), "no run no-such-run in the journal store");
        let (drafts, reviews) = (Count::default(), Count::default());
        let error = returned_hitl(&drafts, &reviews)
            .resume(&journal, &run_id)
            .await
            .unwrap_err();
        assert!(matches!(error, ResumeError::WrongWorkflow { .. }), "{error:?}");
    });
}

#[test]
fn a_run_whose_end_was_journaled_but_not_its_status_is_finalized() {
    let (path, run_id) = waiting_chain("finalize", 0);
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = chain(false).resume(&journal, &run_id).await.unwrap();
        handle.send_event(HumanResponseEvent::new("done")).unwrap();
        finish(handle).await.unwrap();
        journal.flush().await.unwrap();
        // As if the status write had been lost.
        store
            .execute_raw("UPDATE runs SET status = 'running', result = NULL")
            .await
            .unwrap();
        let error = chain(false).resume(&journal, &run_id).await.unwrap_err();
        assert!(
            matches!(
                error,
                ResumeError::Finished {
                    status: RunStatus::Completed,
                    ..
                }
            ),
            "{error:?}"
        );
        journal.flush().await.unwrap();
        let record = store.run(&run_id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Completed);
        assert_eq!(
            record.result,
            Some(json!({ "type": "StopEvent", "value": { "result": "done after 1" } }))
        );
    });
}
