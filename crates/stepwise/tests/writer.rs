//! The journal writer: commits without a flush, a whole run in one commit,
//! run ids in creation order, a flush after a stream read.

use std::time::Duration;

use serde_json::json;
use stepwise::store::{JournalStore, MemoryStore, RunStatus};
use stepwise::{Journal, JournalConfig, RunOptions, StartEvent, WorkflowIdle};

mod common;
use common::durable::*;
mod recording;
use recording::Recording;

#[test]
fn commits_reach_the_store_within_the_commit_delay_without_a_flush() {
    paused_runtime().block_on(async {
        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let handle = outcomes_flow().run_journaled(StartEvent::new(), &journal, RunOptions::new().run_id("r"));
        assert_eq!(finish(handle).await.unwrap().result, 42);
        // Nothing forces a commit; the writer's own delay (1 ms) does.
        tokio::time::sleep(JournalConfig::default().commit_delay * 3).await;
        let record = store.run("r").await.unwrap().expect("the run was committed");
        assert_eq!(record.status, RunStatus::Completed);
        assert_eq!(
            record.result,
            Some(json!({"type": "StopEvent", "value": {"result": 42}}))
        );
    });
}

#[test]
fn a_run_that_starts_and_ends_in_one_commit_is_written_once_with_its_outcome() {
    runtime().block_on(async {
        let recording = Recording::default();
        // A long delay puts the whole run in one commit.
        let config = JournalConfig {
            commit_delay: Duration::from_secs(3600),
            ..JournalConfig::default()
        };
        let journal = Journal::with_config(recording.clone(), config);
        // A generated id: a run with an id of the caller's waits for its
        // record's commit before it runs, so it could not end in that commit.
        let handle = outcomes_flow().run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let run_id = handle.run_id().to_owned();
        assert_eq!(finish(handle).await.unwrap().result, 42);
        journal.flush().await.unwrap();
        let batches = recording.batches.lock().unwrap().clone();
        assert_eq!(batches.len(), 1, "one commit");
        assert_eq!(batches[0].runs.len(), 1);
        assert_eq!(batches[0].runs[0].status, RunStatus::Completed);
        assert!(batches[0].statuses.is_empty(), "no separate status update");
        let record = recording.run(&run_id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Completed);
        assert_eq!(record.result.unwrap()["value"]["result"], 42);
    });
}

#[test]
fn generated_run_ids_sort_by_creation_time() {
    runtime().block_on(async {
        let wf = outcomes_flow();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let handle = wf.run_with(StartEvent::new(), RunOptions::new());
            ids.push(handle.run_id().to_owned());
            handle.await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            ids.iter()
                .all(|id| id.len() == 16 && id.chars().all(|c| c.is_ascii_alphanumeric())),
            "{ids:?}"
        );
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
    });
}

#[test]
fn an_event_seen_on_the_stream_is_committed_by_a_flush_right_after() {
    // The reader runs on another worker thread than the run; without the
    // ordering guarantee a flush could overtake the tick that published.
    runtime().block_on(async {
        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let wf = outcomes_flow();
        for i in 0..1000 {
            let handle = wf.run_journaled(
                StartEvent::new().with("mode", "wait"),
                &journal,
                RunOptions::new().run_id(format!("seen-{i}")),
            );
            let mut stream = handle.stream_events().unwrap();
            read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
            journal.flush().await.unwrap();
            let stored = stored_stream(&store, &format!("seen-{i}")).await;
            assert_eq!(
                stored.last().map(String::as_str),
                Some("WorkflowIdle"),
                "run {i}: {stored:?}"
            );
            handle.cancel();
        }
    });
}
