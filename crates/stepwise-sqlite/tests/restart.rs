//! Runs journaled to a SQLite file across a restart (the runtime shut down
//! mid-run, the file opened again): input requests, waits, answers received
//! before the crash, a snapshot resumed into a journal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;
use stepwise::store::{JournalStore, MemoryStore, RunStatus};
use stepwise::{
    Context, HumanResponseEvent, InputRequiredEvent, Journal, RunOptions, StartEvent, StepError, StopEvent, WaitFor,
    Workflow, WorkflowIdle,
};

mod common;
use common::durable::*;
use common::*;
use stepwise_sqlite::SqliteStore;

#[test]
fn returned_input_request_survives_a_restart() {
    let (drafts, reviews) = (Count::default(), Count::default());
    let wf = returned_hitl(&drafts, &reviews);
    let path = temp_db("hitl-returned");
    let run_id = run_then_crash(&wf, &path, StartEvent::new(), |e| e.is::<WorkflowIdle>(), None);
    assert_eq!((drafts.get(), reviews.get()), (1, 0));
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let mut resumed = wf.resume_unfinished(&journal).await.unwrap();
        assert_eq!(resumed.len(), 1);
        let (id, handle) = resumed.pop().unwrap();
        assert_eq!(id, run_id);
        let handle = handle.unwrap();
        let mut stream = handle.stream_events().unwrap();
        let seen = read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        assert_eq!(seen, ["WorkflowIdle"]);
        handle.send_event(HumanResponseEvent::new("ship it")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, "approved: ship it");
        journal.flush().await.unwrap();
        let stream = stored_stream(&store, &run_id).await;
        assert_eq!(count(&stream, "InputRequiredEvent"), 1, "{stream:?}");
        assert_eq!(stream.last().map(String::as_str), Some("StopEvent"));
        assert_eq!(store.run(&run_id).await.unwrap().unwrap().status, RunStatus::Completed);
    });
    assert_eq!((drafts.get(), reviews.get()), (1, 1), "draft was not run again");
}

#[test]
fn wait_for_event_across_a_restart_reruns_the_step_and_publishes_once() {
    let (prepares, asks, notes) = (Count::default(), Count::default(), Count::default());
    let wf = waiting_hitl(&prepares, &asks, &notes, &Arc::default());
    let path = temp_db("hitl-wait");
    let run_id = run_then_crash(&wf, &path, StartEvent::new(), |e| e.is::<WorkflowIdle>(), None);
    assert_eq!((prepares.get(), asks.get(), notes.get()), (1, 1, 1));
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = wf.resume(&journal, &run_id).await.unwrap();
        let mut stream = handle.stream_events().unwrap();
        let seen = read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        assert_eq!(seen, ["WorkflowIdle"], "the input request is not published again");
        handle.send_event(HumanResponseEvent::new("yes")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, "v1: yes");
        journal.flush().await.unwrap();
        let stream = stored_stream(&store, &run_id).await;
        assert_eq!(
            stream,
            [
                "Progress",
                "InputRequiredEvent",
                "WorkflowIdle",
                "WorkflowIdle",
                "StopEvent"
            ]
        );
    });
    // The waiting step ran again from its start; its effects before the wait
    // (a stream write, a send) were not repeated; `prepare` did not run again.
    assert_eq!((prepares.get(), asks.get(), notes.get()), (1, 2, 1));
}

#[test]
fn an_answer_received_before_a_crash_is_not_lost() {
    let (prepares, asks, notes) = (Count::default(), Count::default(), Count::default());
    // Once answered, `ask` works for a minute: the crash comes during that work.
    let work_ms = Arc::new(AtomicU64::new(60_000));
    let wf = waiting_hitl(&prepares, &asks, &notes, &work_ms);
    let path = temp_db("hitl-answered");
    let answer: Before<StopEvent> = Box::new(|handle| {
        handle.send_event(HumanResponseEvent::new("yes")).unwrap();
    });
    let run_id = run_then_crash(&wf, &path, StartEvent::new(), |e| e.is::<WorkflowIdle>(), Some(answer));
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        work_ms.store(0, Ordering::SeqCst);
        let handle = wf.resume(&journal, &run_id).await.unwrap();
        // Without a new answer: the re-run of `ask` gets the one it had.
        assert_eq!(finish(handle).await.unwrap().result, "v1: yes");
        journal.flush().await.unwrap();
        let stream = stored_stream(&store, &run_id).await;
        assert_eq!(stream, ["Progress", "InputRequiredEvent", "WorkflowIdle", "StopEvent"]);
    });
    assert_eq!((prepares.get(), asks.get(), notes.get()), (1, 2, 1));
}

/// `chat` waits for two answers in a row under the same waiter id.
fn two_questions(asks: &Count) -> Workflow {
    let asks = asks.clone();
    Workflow::builder("two-questions")
        .step("chat", move |ctx: Context, _ev: StartEvent| {
            let asks = asks.clone();
            async move {
                asks.hit();
                let mut answers = Vec::new();
                for question in ["first?", "second?"] {
                    let answer = ctx
                        .wait_for_event(WaitFor::<HumanResponseEvent>::new().publish(InputRequiredEvent::new(question)))
                        .await
                        .map_err(StepError::new)?;
                    answers.push(answer.response);
                }
                Ok::<_, StepError>(StopEvent::new(answers))
            }
        })
        .build()
        .unwrap()
}

#[test]
fn a_step_can_wait_twice_under_the_same_id_and_resume_between() {
    let asks = Count::default();
    let wf = two_questions(&asks);
    // In one session, journaled or not: the second wait waits for a new answer.
    runtime().block_on(async {
        let journal = Journal::new(MemoryStore::new());
        for options in [RunOptions::new(), RunOptions::new().journal(&journal)] {
            let handle = wf.run_with(StartEvent::new(), options);
            let mut stream = handle.stream_events().unwrap();
            for answer in ["a", "b"] {
                read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
                handle.send_event(HumanResponseEvent::new(answer)).unwrap();
            }
            assert_eq!(finish(handle).await.unwrap().result, json!(["a", "b"]));
        }
    });
    // Across a restart after the first answer: the re-run gets it again at once
    // and waits for the second.
    let path = temp_db("two-questions");
    let answer: Before<StopEvent> = Box::new(|handle| {
        handle.send_event(HumanResponseEvent::new("a")).unwrap();
    });
    let run_id = run_then_crash(&wf, &path, StartEvent::new(), |e| e.is::<WorkflowIdle>(), Some(answer));
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = wf.resume(&journal, &run_id).await.unwrap();
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        handle.send_event(HumanResponseEvent::new("b")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, json!(["a", "b"]));
        journal.flush().await.unwrap();
        let stream = stored_stream(&store, &run_id).await;
        assert_eq!(count(&stream, "InputRequiredEvent"), 2, "{stream:?}");
    });
    assert_eq!(asks.get(), 4, "two runs in one session, then one run re-run once");
}

#[test]
fn resume_from_snapshot_into_a_journal_survives_a_crash() {
    let (drafts, reviews) = (Count::default(), Count::default());
    let wf = returned_hitl(&drafts, &reviews);
    let path = temp_db("snapshot-journal");
    let rt = runtime();
    let run_id = rt.block_on(async {
        // An unjournaled run, snapshotted while it waits...
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        let snapshot = handle.snapshot().await.unwrap();
        handle.cancel();
        assert_eq!(snapshot.published, 2);
        // ...resumed into a journal...
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let resumed = wf
            .resume_from_snapshot(snapshot, RunOptions::new().journal(&journal))
            .unwrap();
        let mut stream = resumed.stream_events().unwrap();
        read_until(&resumed, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        journal.flush().await.unwrap();
        let record = store.run(resumed.run_id()).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Running);
        resumed.run_id().to_owned()
    });
    // ...and the process crashes.
    rt.shutdown_background();
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = wf.resume(&journal, &run_id).await.unwrap();
        handle.send_event(HumanResponseEvent::new("yes")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, "approved: yes");
        journal.flush().await.unwrap();
        assert_eq!(store.run(&run_id).await.unwrap().unwrap().status, RunStatus::Completed);
        // The journal's stream goes on from the snapshot's count.
        let seqs: Vec<u64> = store.events(&run_id, 0).await.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3, 4], "WorkflowIdle, WorkflowIdle, StopEvent");
    });
    assert_eq!((drafts.get(), reviews.get()), (1, 1));
}
