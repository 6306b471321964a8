//! `wait_for_event` across a resume: an answer sent right after `resume` (or
//! `resume_from_snapshot`), before the waiting step has run again and waited
//! again, is held for that wait and delivered — never published as
//! `UnhandledEvent` with the run left waiting forever. And a wait on an event
//! type the workflow does not declare is refused at once with a clear
//! `WaitError`, instead of making the run impossible to resume.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::store::MemoryStore;
use stepwise::{
    Context, Event, InputRequiredEvent, Journal, RunError, RunHandle, RunOptions, Snapshot, StartEvent, StepConfig,
    StepError, StopEvent, StreamExt, UnhandledEvent, WaitError, WaitFor, Workflow, WorkflowIdle,
};

/// An answer type no step accepts: only `waits_for` puts it in the registry.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Approval {
    ticket: u32,
    verdict: String,
}
impl Event for Approval {
    const NAME: &'static str = "Approval";
}

/// `ask` waits for the `Approval` of ticket 7. Every run of its body but the
/// first sleeps before waiting, so an answer sent right after a resume
/// certainly arrives before the re-run waits again.
fn approval_flow(runs: &Arc<AtomicU32>) -> Workflow {
    let runs = Arc::clone(runs);
    Workflow::builder("approval")
        .step_with(
            StepConfig::new("ask").waits_for::<Approval>(),
            move |ctx: Context, _ev: StartEvent| {
                let runs = Arc::clone(&runs);
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) > 0 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    let answer = ctx
                        .wait_for_event(
                            WaitFor::<Approval>::new()
                                .id("approval")
                                .require("ticket", 7)
                                .publish(InputRequiredEvent::new("approve ticket 7?")),
                        )
                        .await
                        .map_err(StepError::new)?;
                    Ok::<_, StepError>(StopEvent::new(answer.verdict))
                }
            },
        )
        .build()
        .expect("a valid workflow")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Reads the stream until `stop` (20 s at most); returns the names seen.
async fn read_until(stream: &mut stepwise::EventStream, stop: impl Fn(&stepwise::AnyEvent) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    let read = async {
        while let Some(event) = stream.next().await {
            seen.push(event.name().to_owned());
            if stop(&event) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or_else(|_| panic!("never got there; saw {seen:?}"));
    seen
}

/// The run's result within 10 s, and everything it published meanwhile.
async fn finish(handle: RunHandle<StopEvent>) -> (Result<StopEvent, RunError>, Vec<String>) {
    let mut stream = handle.stream_events().unwrap();
    let collect = tokio::spawn(async move {
        let mut names = Vec::new();
        while let Some(event) = stream.next().await {
            names.push(event.name().to_owned());
        }
        names
    });
    let result = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the run finishes (the answer was delivered), it does not wait forever");
    (result, collect.await.unwrap())
}

fn approval(ticket: u32, verdict: &str) -> Approval {
    Approval {
        ticket,
        verdict: verdict.into(),
    }
}

#[test]
fn an_answer_sent_right_after_a_journal_resume_is_delivered() {
    let runs = Arc::new(AtomicU32::new(0));
    let wf = approval_flow(&runs);
    let store = MemoryStore::new();
    // Session 1: the step waits; the process "dies" (its runtime shuts down).
    let rt = runtime();
    let run_id = rt.block_on(async {
        let journal = Journal::new(store.clone());
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&mut stream, |e| e.is::<WorkflowIdle>()).await;
        journal.flush().await.unwrap();
        handle.run_id().to_owned()
    });
    rt.shutdown_background();

    // Session 2: resume and answer at once, before `ask` has waited again.
    let rt = runtime();
    rt.block_on(async {
        let journal = Journal::new(store.clone());
        let handle = wf.resume(&journal, &run_id).await.expect("resumes");
        // Another ticket's approval does not answer the wait: routed as usual.
        handle.send_event(approval(8, "no")).unwrap();
        handle.send_event(approval(7, "yes")).unwrap();
        let (result, names) = finish(handle).await;
        assert_eq!(result.expect("completes").result, "yes");
        assert_eq!(
            names.iter().filter(|n| *n == UnhandledEvent::NAME).count(),
            1,
            "only ticket 8 is unhandled: {names:?}"
        );
        assert!(
            !names.iter().any(|n| n == "InputRequiredEvent"),
            "not asked again: {names:?}"
        );
        journal.flush().await.unwrap();

        // The journal replays to the same end: the held answer is in it.
        let journal = Journal::new(store.clone());
        let trace = wf.trace(&journal, &run_id).await.expect("the journal reads back");
        assert!(!trace.steps.is_empty());
    });
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn an_answer_sent_right_after_a_snapshot_resume_is_delivered_and_survives_another_snapshot() {
    let runs = Arc::new(AtomicU32::new(0));
    let wf = approval_flow(&runs);
    runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&mut stream, |e| e.is::<WorkflowIdle>()).await;
        let text = handle.snapshot().await.expect("a snapshot").to_json().unwrap();
        handle.cancel();

        // Resume and answer at once; then snapshot again before `ask` waits again.
        let resumed = wf
            .resume_from_snapshot(Snapshot::from_json(&text).unwrap(), RunOptions::new())
            .expect("resumes");
        resumed.send_event(approval(7, "from the first resume")).unwrap();
        let again = resumed.snapshot().await.expect("a snapshot").to_json().unwrap();
        resumed.cancel();
        assert!(
            again.contains("from the first resume"),
            "the held answer is part of the snapshot: {again}"
        );

        // The second resume needs no new answer: the held one is delivered.
        let resumed = wf
            .resume_from_snapshot(Snapshot::from_json(&again).unwrap(), RunOptions::new())
            .expect("resumes");
        let (result, names) = finish(resumed).await;
        assert_eq!(result.expect("completes").result, "from the first resume");
        assert!(!names.iter().any(|n| n == UnhandledEvent::NAME), "{names:?}");
    });
}

#[test]
fn an_answer_sent_right_after_a_snapshot_resume_is_delivered() {
    let runs = Arc::new(AtomicU32::new(0));
    let wf = approval_flow(&runs);
    runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&mut stream, |e| e.is::<WorkflowIdle>()).await;
        let snapshot = handle.snapshot().await.expect("a snapshot");
        handle.cancel();
        let resumed = wf.resume_from_snapshot(snapshot, RunOptions::new()).expect("resumes");
        resumed.send_event(approval(7, "ok")).unwrap();
        let (result, names) = finish(resumed).await;
        assert_eq!(result.expect("completes").result, "ok");
        assert!(!names.iter().any(|n| n == UnhandledEvent::NAME), "{names:?}");
    });
}

#[test]
fn a_wait_on_an_undeclared_event_type_fails_with_a_clear_error() {
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Secret(u32);
    impl Event for Secret {
        const NAME: &'static str = "Secret";
    }
    let wf = Workflow::builder("undeclared")
        .step("ask", |ctx: Context, _ev: StartEvent| async move {
            let secret = ctx
                .wait_for_event(WaitFor::<Secret>::new())
                .await
                .map_err(StepError::new)?;
            Ok::<_, StepError>(StopEvent::new(secret.0))
        })
        .build()
        .expect("a valid workflow");
    runtime().block_on(async {
        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let result = tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("fails at once rather than waiting for something it could not resume");
        let Err(RunError::StepFailed { step, source, .. }) = result else {
            panic!("expected the step to fail, got {result:?}");
        };
        assert_eq!(step, "ask");
        let error = source.downcast_ref::<WaitError>().expect("a WaitError");
        assert!(
            matches!(error, WaitError::UndeclaredEvent { step, event: "Secret", .. } if step == "ask"),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("waits_for"), "says how to fix it: {message}");
        assert!(message.starts_with("step `ask` waits for `Secret`"), "{message}");
    });
}
