//! Snapshots of runs without a journal: taken at idle, after a cancel or
//! while a step waits, resumed in a fresh runtime from their JSON; finished
//! runs and snapshots that do not fit are refused with clear errors.

use std::sync::Arc;

use serde_json::{json, Value};
use stepwise::journal::DecodeError;
use stepwise::store::{JournalStore, MemoryStore, RunStatus};
use stepwise::{
    HumanResponseEvent, Journal, ResumeError, RunError, RunOptions, Snapshot, StartEvent, WorkflowIdle, SNAPSHOT_FORMAT,
};

mod common;
use common::durable::*;

#[test]
fn snapshot_at_idle_resumes_in_a_fresh_runtime_from_json() {
    let (drafts, reviews) = (Count::default(), Count::default());
    let wf = returned_hitl(&drafts, &reviews);
    let (run_id, json) = runtime().block_on(async {
        let handle = wf.run(StartEvent::new().with("topic", "owls"));
        let mut stream = handle.stream_events().unwrap();
        let seen = read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        assert_eq!(seen, ["InputRequiredEvent", "WorkflowIdle"]);
        let snapshot = handle.snapshot().await.unwrap();
        assert_eq!(snapshot.format, SNAPSHOT_FORMAT);
        assert_eq!(snapshot.status, RunStatus::Running);
        let json = snapshot.to_json().unwrap();
        handle.cancel();
        let run_id = handle.run_id().to_owned();
        assert!(matches!(finish(handle).await, Err(RunError::Cancelled { .. })));
        (run_id, json)
    });
    assert_eq!((drafts.get(), reviews.get()), (1, 0));

    runtime().block_on(async {
        let snapshot = Snapshot::from_json(&json).unwrap();
        assert_eq!(snapshot.run_id, run_id);
        let handle = wf.resume_from_snapshot(snapshot, RunOptions::new()).unwrap();
        assert_eq!(handle.run_id(), run_id);
        let mut stream = handle.stream_events().unwrap();
        handle.send_event(HumanResponseEvent::new("yes")).unwrap();
        let seen = read_until(&handle, &mut stream, |_| false).await;
        assert_eq!(seen.last(), Some(&"StopEvent"), "{seen:?}");
        assert_eq!(finish(handle).await.unwrap().result, "approved: yes");
    });
    assert_eq!((drafts.get(), reviews.get()), (1, 1), "draft ran once, review once");
}

#[test]
fn snapshot_taken_after_cancel_resumes() {
    let (drafts, reviews) = (Count::default(), Count::default());
    let wf = returned_hitl(&drafts, &reviews);
    let json = runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        handle.cancel();
        let snapshot = handle.snapshot().await.unwrap();
        assert_eq!(snapshot.status, RunStatus::Cancelled);
        assert!(matches!(finish(handle).await, Err(RunError::Cancelled { .. })));
        snapshot.to_json().unwrap()
    });
    runtime().block_on(async {
        let handle = wf
            .resume_from_snapshot(Snapshot::from_json(&json).unwrap(), RunOptions::new())
            .unwrap();
        let mut stream = handle.stream_events().unwrap();
        // The resumed run says what it waits for.
        let seen = read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        assert_eq!(seen, ["WorkflowIdle"]);
        handle.send_event(HumanResponseEvent::new("later")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, "approved: later");
    });
    assert_eq!((drafts.get(), reviews.get()), (1, 1));
}

#[test]
fn snapshot_of_a_finished_run_does_not_resume() {
    let (drafts, reviews) = (Count::default(), Count::default());
    let wf = returned_hitl(&drafts, &reviews);
    runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        handle.send_event(HumanResponseEvent::new("ok")).unwrap();
        read_until(&handle, &mut stream, |_| false).await;
        let snapshot = handle.snapshot().await.unwrap();
        assert_eq!(snapshot.status, RunStatus::Completed);
        let error = wf.resume_from_snapshot(snapshot, RunOptions::new()).unwrap_err();
        assert!(
            matches!(
                error,
                ResumeError::Finished {
                    status: RunStatus::Completed,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains(handle.run_id()), "{error}");
    });
}

#[test]
fn snapshot_while_waiting_reruns_the_waiting_step_without_repeating_its_effects() {
    let (prepares, asks, notes) = (Count::default(), Count::default(), Count::default());
    let wf = waiting_hitl(&prepares, &asks, &notes, &Arc::default());
    let json = runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        let seen = read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        assert_eq!(seen, ["Progress", "InputRequiredEvent", "WorkflowIdle"]);
        let snapshot = handle.snapshot().await.unwrap();
        handle.cancel();
        snapshot.to_json().unwrap()
    });
    assert_eq!((prepares.get(), asks.get(), notes.get()), (1, 1, 1));
    runtime().block_on(async {
        let handle = wf
            .resume_from_snapshot(Snapshot::from_json(&json).unwrap(), RunOptions::new())
            .unwrap();
        let mut stream = handle.stream_events().unwrap();
        let seen = read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        // The re-run's stream write and input request were already published.
        assert_eq!(seen, ["WorkflowIdle"]);
        handle.send_event(HumanResponseEvent::new("yes")).unwrap();
        let seen = read_until(&handle, &mut stream, |_| false).await;
        assert_eq!(seen, ["StopEvent"]);
        assert_eq!(finish(handle).await.unwrap().result, "v1: yes");
    });
    // `ask` ran again from its start (step bodies are at-least-once), but the
    // note it had sent before waiting was not sent again.
    assert_eq!((prepares.get(), asks.get(), notes.get()), (1, 2, 1));
}

#[test]
fn snapshots_that_do_not_fit_give_clear_errors() {
    let wf = chain(false);
    let (drafts, reviews) = (Count::default(), Count::default());
    let other = returned_hitl(&drafts, &reviews);
    runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        let json = handle.snapshot().await.unwrap().to_json().unwrap();

        // Truncated text.
        let error = Snapshot::from_json(&json[..json.len() / 2]).unwrap_err();
        assert!(
            matches!(&error, DecodeError::Malformed { what, .. } if what == "snapshot"),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("malformed snapshot: "), "{error}");

        // Another format.
        let mut value: Value = serde_json::from_str(&json).unwrap();
        value["format"] = json!(2);
        let error = Snapshot::from_json(&value.to_string()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "malformed snapshot: format 2 is not supported (this build reads format 1)"
        );
        value.as_object_mut().unwrap().remove("format");
        let error = Snapshot::from_json(&value.to_string()).unwrap_err();
        assert!(error.to_string().contains("no `format` field"), "{error}");

        // Not JSON at all, and JSON of the wrong shape.
        assert!(Snapshot::from_json("<html>").is_err());
        let error = Snapshot::from_json(r#"{"format":1,"workflow":"chain"}"#).unwrap_err();
        assert!(error.to_string().contains("missing field"), "{error}");

        // A snapshot of another workflow.
        let snapshot = Snapshot::from_json(&json).unwrap();
        let error = other
            .resume_from_snapshot(snapshot.clone(), RunOptions::new())
            .unwrap_err();
        assert!(matches!(error, ResumeError::WrongWorkflow { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "run {} belongs to workflow `chain`, not `hitl-returned`",
                handle.run_id()
            )
        );
    });
    // An event inside the snapshot (the waiting step's input) that the
    // workflow does not know, or that no longer decodes.
    let counts = (Count::default(), Count::default(), Count::default());
    let wf = waiting_hitl(&counts.0, &counts.1, &counts.2, &Arc::default());
    runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        let json = handle.snapshot().await.unwrap().to_json().unwrap();
        let damaged = json.replace(r#""type":"Draft""#, r#""type":"Draught""#);
        assert_ne!(damaged, json, "the snapshot holds the Draft");
        let error = wf
            .resume_from_snapshot(Snapshot::from_json(&damaged).unwrap(), RunOptions::new())
            .unwrap_err();
        assert_message(
            &error,
            handle.run_id(),
            "event `Draught` is not known to workflow `hitl-wait`",
        );
        let damaged = json.replace(r#"{"text":"v1"}"#, r#"{"txt":"v1"}"#);
        assert_ne!(damaged, json);
        let error = wf
            .resume_from_snapshot(Snapshot::from_json(&damaged).unwrap(), RunOptions::new())
            .unwrap_err();
        assert_message(
            &error,
            handle.run_id(),
            "stored `Draft` no longer decodes: missing field `text`",
        );
    });
}

#[test]
fn an_event_sent_right_after_a_resume_does_not_run_a_step_twice() {
    // On a current-thread runtime the run's driver cannot run before the
    // caller's first await: the resume's rewind must already have happened
    // when the handle is returned, or it would re-queue the work the event
    // just started.
    let (drafts, reviews) = (Count::default(), Count::default());
    let wf = returned_hitl(&drafts, &reviews);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        let snapshot = handle.snapshot().await.unwrap();
        handle.cancel();
        let resumed = wf.resume_from_snapshot(snapshot, RunOptions::new()).unwrap();
        resumed.send_event(HumanResponseEvent::new("at once")).unwrap();
        assert_eq!(finish(resumed).await.unwrap().result, "approved: at once");
        // A fresh run, too: an event sent at once comes after the start event.
        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        handle.send_event(HumanResponseEvent::new("early")).unwrap();
        let run_id = handle.run_id().to_owned();
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        handle.cancel();
        journal.flush().await.unwrap();
        let entries = store.entries(&run_id, 0).await.unwrap();
        let first: Value = serde_json::from_str(&entries[0].data).unwrap();
        // The compact form of "an event entered": [seq, at_us, "a", [name, fields]].
        assert_eq!(
            (&first[0][2], &first[0][3][0]),
            (&json!("a"), &json!("StartEvent")),
            "{first}"
        );
    });
    assert_eq!((drafts.get(), reviews.get()), (2, 2), "one review per answer");
}
