//! Input that must never break a run: events that do not serialise in a
//! journaled run (the step fails with a clear error, nothing partial is
//! journaled), and values nested deeper than `MAX_EVENT_DEPTH` (refused at
//! every entry point, and the process survives).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::retry::RetryPolicy;
use stepwise::store::{JournalStore, MemoryStore, RunStatus};
use stepwise::{
    Context, Event, EventError, EventKind, HumanResponseEvent, InputRequiredEvent, Journal, RunError, RunOptions,
    SendError, StartEvent, StepConfig, StepError, StopEvent, StreamExt, WaitFor, Workflow, WorkflowBuilder,
    WorkflowIdle, MAX_EVENT_DEPTH,
};

// ------------------------------------------------ events that do not serialise

/// Serialises only when its map is empty: JSON object keys must be strings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Lookup {
    #[serde(default)]
    by_pair: HashMap<(u32, u32), u32>,
}
impl Event for Lookup {
    const NAME: &'static str = "Lookup";
}

fn lookup(bad: bool) -> Lookup {
    let mut by_pair = HashMap::new();
    if bad {
        by_pair.insert((1, 2), 3);
    }
    Lookup { by_pair }
}

#[derive(Clone, Copy, Debug)]
enum How {
    Returned,
    Sent,
    Streamed,
}

/// `make` produces a `Lookup` (returned, sent, or written to the stream) that
/// does not serialise on its first `bad_attempts` attempts; it may retry
/// twice. `take` turns a `Lookup` into the stop event.
fn lookup_flow(how: How, bad_attempts: u32, attempts: &Arc<AtomicU32>) -> Workflow {
    let attempts = Arc::clone(attempts);
    Workflow::builder("lookup")
        .step_with(
            StepConfig::new("make")
                .emits::<Lookup>()
                .emits::<StopEvent>()
                .retry(RetryPolicy::fixed(3, Duration::ZERO)),
            move |ctx: Context, _ev: StartEvent| {
                let attempts = Arc::clone(&attempts);
                async move {
                    let bad = attempts.fetch_add(1, Ordering::SeqCst) < bad_attempts;
                    match how {
                        How::Returned => Some(lookup(bad)),
                        How::Sent => {
                            ctx.send_event(lookup(bad));
                            None
                        }
                        How::Streamed => {
                            ctx.write_event_to_stream(lookup(bad));
                            ctx.send_event(StopEvent::new("streamed"));
                            None
                        }
                    }
                }
            },
        )
        .step("take", |ev: Lookup| async move { StopEvent::new(ev.by_pair.len()) })
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

/// Runs `wf` journaled; returns the result, the run id, the store and journal.
async fn run_journaled(wf: &Workflow) -> (Result<StopEvent, RunError>, String, MemoryStore, Journal) {
    let store = MemoryStore::new();
    let journal = Journal::new(store.clone());
    let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
    let run_id = handle.run_id().to_owned();
    let result = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the run ends");
    journal.flush().await.expect("everything committed");
    (result, run_id, store, journal)
}

fn assert_fails_with_lookup_error(how: How) {
    let attempts = Arc::new(AtomicU32::new(0));
    let wf = lookup_flow(how, u32::MAX, &attempts);
    runtime().block_on(async {
    let (result, run_id, store, journal) = run_journaled(&wf).await;
    let Err(RunError::StepFailed {
        step,
        attempts: tries,
        source,
        ..
    }) = &result
    else {
        panic!("{how:?}: expected the step to fail, got {result:?}");
    };
    assert_eq!((step.as_str(), *tries), ("make", 3), "{how:?}: retried, then failed");
    let error = source.downcast_ref::<EventError>().expect("an EventError");
    assert!(
        matches!(error, EventError::NotSerializable { step: Some(step), event, .. } if step == "make" && event == "Lookup"),
        "{how:?}: {error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("step `make`: event `Lookup` cannot be serialised"),
        "{message}"
    );
    {
        // No gap: the journal reads back, and shows the failed attempts.
        let trace = wf.trace(&journal, &run_id).await.expect("the journal reads back");
        assert_eq!(trace.steps.len(), 3, "{how:?}: three attempts of make");
        let record = store.run(&run_id).await.unwrap().expect("a record");
        assert_eq!(record.status, RunStatus::Failed);
        let stored = store.events(&run_id, 0).await.unwrap();
        assert!(
            !stored.iter().any(|e| e.event.contains("\"Lookup\"")),
            "nothing of the failed attempts was stored: {stored:?}"
        );
    }
    });
}

#[test]
fn a_returned_event_that_does_not_serialise_fails_the_step() {
    assert_fails_with_lookup_error(How::Returned);
}

#[test]
fn a_sent_event_that_does_not_serialise_fails_the_step() {
    assert_fails_with_lookup_error(How::Sent);
}

#[test]
fn a_stream_write_that_does_not_serialise_fails_the_step() {
    assert_fails_with_lookup_error(How::Streamed);
}

#[test]
fn a_retry_after_an_event_that_did_not_serialise_can_succeed() {
    for how in [How::Returned, How::Sent, How::Streamed] {
        let attempts = Arc::new(AtomicU32::new(0));
        let wf = lookup_flow(how, 1, &attempts);
        runtime().block_on(async {
            let (result, run_id, _store, journal) = run_journaled(&wf).await;
            let expected = match how {
                How::Streamed => serde_json::json!("streamed"),
                _ => serde_json::json!(0),
            };
            assert_eq!(result.expect("the retry completes").result, expected, "{how:?}");
            assert_eq!(attempts.load(Ordering::SeqCst), 2);
            wf.trace(&journal, &run_id).await.expect("the journal reads back");
        });
    }
}

#[test]
fn a_start_event_that_does_not_serialise_is_refused_by_a_journaled_run() {
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct StartLookup(Lookup);
    impl Event for StartLookup {
        const NAME: &'static str = "Lookup";
        const KIND: EventKind = EventKind::Start;
    }
    let wf = WorkflowBuilder::<StartLookup, StopEvent>::new("lookup-start")
        .step(
            "take",
            |ev: StartLookup| async move { StopEvent::new(ev.0.by_pair.len()) },
        )
        .build()
        .expect("a valid workflow");
    runtime().block_on(async {
        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let handle = wf.run_journaled(
            StartLookup(lookup(true)),
            &journal,
            RunOptions::new().run_id("bad-start"),
        );
        let result = tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("ends");
        assert!(
            matches!(&result, Err(RunError::StartRejected { run_id, source: EventError::NotSerializable { event, .. } })
                if run_id == "bad-start" && event == "Lookup"),
            "{result:?}"
        );
        assert!(result
            .unwrap_err()
            .to_string()
            .starts_with("run bad-start could not start: event `Lookup`"));
        journal.flush().await.unwrap();
        assert!(store.run("bad-start").await.unwrap().is_none(), "nothing stored");
    });
}

#[test]
fn an_event_sent_from_outside_that_does_not_serialise_is_refused() {
    let wf = Workflow::builder("outside")
        .event::<Lookup>()
        .step("ask", |ctx: Context, _ev: StartEvent| async move {
            let answer = ctx
                .wait_for_event(WaitFor::<HumanResponseEvent>::new())
                .await
                .map_err(StepError::new)?;
            Ok::<_, StepError>(StopEvent::new(answer.response))
        })
        .build()
        .expect("a valid workflow");
    runtime().block_on(async {
        let journal = Journal::new(MemoryStore::new());
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let run_id = handle.run_id().to_owned();
        let mut stream = handle.stream_events().unwrap();
        while let Some(event) = stream.next().await {
            if event.is::<WorkflowIdle>() {
                break;
            }
        }
        let refused = handle.send_event(lookup(true));
        assert!(
            matches!(&refused, Err(SendError::Rejected(EventError::NotSerializable { event, step: None, .. })) if event == "Lookup"),
            "{refused:?}"
        );
        handle.send_event(HumanResponseEvent::new("fine")).unwrap();
        let stop = tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("ends")
            .expect("completes");
        assert_eq!(stop.result, "fine");
        journal.flush().await.unwrap();
        wf.trace(&journal, &run_id).await.expect("the journal reads back");
    });
}

// ------------------------------------------------------------- deep values

/// `[[[…1…]]]`, nested `depth` levels, built without recursion.
fn deep(depth: usize) -> serde_json::Value {
    let mut value = serde_json::json!(1);
    for _ in 0..depth {
        value = serde_json::Value::Array(vec![value]);
    }
    value
}

/// A recursive type of the user's own.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Nest {
    Leaf,
    Node(Box<Nest>),
}
impl Event for Nest {
    const NAME: &'static str = "Nest";
}

fn nest(depth: usize) -> Nest {
    let mut nest = Nest::Leaf;
    for _ in 0..depth {
        nest = Nest::Node(Box::new(nest));
    }
    nest
}

/// Runs `f` on a thread with an ordinary 2 MiB stack (where a 10,000-deep
/// value overflows when serialised or dropped recursively), on a
/// current-thread runtime, so every task of the run is on that stack too.
fn on_small_stack<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(f());
        })
        .unwrap()
        .join()
        .expect("the thread survives");
}

const DEEP: usize = 10_000;

fn assert_too_deep(error: &EventError, step: Option<&str>, event: &str) {
    assert!(
        matches!(error, EventError::TooDeep { step: s, event: e, limit, .. }
            if s.as_deref() == step && e == event && *limit == MAX_EVENT_DEPTH),
        "{error:?}"
    );
    assert!(error.to_string().contains("MAX_EVENT_DEPTH"), "{error}");
}

#[test]
fn a_deep_start_event_is_refused_in_memory_and_journaled() {
    on_small_stack(|| async {
        let wf = Workflow::builder("deep-start")
            .step(
                "echo",
                |ev: StartEvent| async move { StopEvent::new(ev.fields().len()) },
            )
            .build()
            .unwrap();
        let start = StartEvent::new().with_json("doc", deep(DEEP));
        let result = wf.run_with(start, RunOptions::new().run_id("mem")).await;
        let Err(RunError::StartRejected { run_id, source }) = &result else {
            panic!("{result:?}");
        };
        assert_eq!(run_id, "mem");
        assert_too_deep(source, None, "StartEvent");

        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let start = StartEvent::new().with_json("doc", deep(DEEP));
        let result = wf
            .run_journaled(start, &journal, RunOptions::new().run_id("stored"))
            .await;
        assert!(matches!(result, Err(RunError::StartRejected { .. })), "{result:?}");
        journal.flush().await.unwrap();
        assert!(store.run("stored").await.unwrap().is_none(), "nothing stored");

        // At the limit it runs, and everything reads back.
        let start = StartEvent::new().with_json("doc", deep(MAX_EVENT_DEPTH - 1));
        let handle = wf.run_journaled(start, &journal, RunOptions::new());
        let run_id = handle.run_id().to_owned();
        assert_eq!(handle.await.unwrap().result, 1);
        journal.flush().await.unwrap();
        wf.trace(&journal, &run_id).await.expect("reads back");
    });
}

#[test]
fn a_deep_event_sent_from_outside_is_refused() {
    on_small_stack(|| async {
        let wf = Workflow::builder("deep-send")
            .step("ask", |ctx: Context, _ev: StartEvent| async move {
                let answer = ctx
                    .wait_for_event(WaitFor::<HumanResponseEvent>::new())
                    .await
                    .map_err(StepError::new)?;
                Ok::<_, StepError>(StopEvent::new(answer.response))
            })
            .build()
            .unwrap();
        for journaled in [false, true] {
            let journal = Journal::new(MemoryStore::new());
            let options = if journaled {
                RunOptions::new().journal(&journal)
            } else {
                RunOptions::new()
            };
            let handle = wf.run_with(StartEvent::new(), options);
            let mut stream = handle.stream_events().unwrap();
            while let Some(event) = stream.next().await {
                if event.is::<WorkflowIdle>() {
                    break;
                }
            }
            let answer = HumanResponseEvent {
                response: "deep".into(),
                data: deep(DEEP),
            };
            let Err(SendError::Rejected(error)) = handle.send_event(answer) else {
                panic!("refused");
            };
            assert_too_deep(&error, None, "HumanResponseEvent");
            handle.send_event(HumanResponseEvent::new("flat")).unwrap();
            assert_eq!(handle.await.unwrap().result, "flat", "the run goes on");
        }
    });
}

#[derive(Clone, Copy, Debug)]
enum Deep {
    Returned,
    ReturnedOwnType,
    Sent,
    Streamed,
}

#[test]
fn a_deep_event_from_a_step_fails_the_step() {
    on_small_stack(|| async {
        for how in [Deep::Returned, Deep::ReturnedOwnType, Deep::Sent, Deep::Streamed] {
            let wf = Workflow::builder("deep-step")
                .step_with(
                    StepConfig::new("make")
                        .emits::<HumanResponseEvent>()
                        .emits::<InputRequiredEvent>()
                        .emits::<Nest>(),
                    move |ctx: Context, _ev: StartEvent| async move {
                        match how {
                            Deep::Returned => Ok(Some(StopEvent { result: deep(DEEP) })),
                            Deep::ReturnedOwnType => {
                                ctx.send_event(nest(DEEP));
                                Ok(None)
                            }
                            Deep::Sent => {
                                ctx.send_event(HumanResponseEvent {
                                    response: "x".into(),
                                    data: deep(DEEP),
                                });
                                Ok(None)
                            }
                            Deep::Streamed => {
                                ctx.write_event_to_stream(InputRequiredEvent {
                                    prompt: "x".into(),
                                    data: deep(DEEP),
                                });
                                Ok(Some(StopEvent::new("streamed")))
                            }
                        }
                        .map_err(|e: StepError| e)
                    },
                )
                .step("nest", |_: Nest| async { StopEvent::new("nest") })
                .step("answer", |_: HumanResponseEvent| async { StopEvent::new("answer") })
                .build()
                .unwrap();
            for journaled in [false, true] {
                let store = MemoryStore::new();
                let journal = Journal::new(store.clone());
                let options = if journaled {
                    RunOptions::new().journal(&journal)
                } else {
                    RunOptions::new()
                };
                let handle = wf.run_with(StartEvent::new(), options);
                let run_id = handle.run_id().to_owned();
                let result = tokio::time::timeout(Duration::from_secs(10), handle)
                    .await
                    .expect("ends");
                let Err(RunError::StepFailed { step, source, .. }) = &result else {
                    panic!("{how:?} journaled={journaled}: {result:?}");
                };
                assert_eq!(step, "make");
                let event = match how {
                    Deep::Returned => "StopEvent",
                    Deep::ReturnedOwnType => "Nest",
                    Deep::Sent => "HumanResponseEvent",
                    Deep::Streamed => "InputRequiredEvent",
                };
                let error = source.downcast_ref::<EventError>().expect("an EventError");
                assert_too_deep(error, Some("make"), event);
                if journaled {
                    journal.flush().await.unwrap();
                    wf.trace(&journal, &run_id).await.expect("the journal reads back");
                    assert_eq!(store.run(&run_id).await.unwrap().unwrap().status, RunStatus::Failed);
                }
            }
        }
    });
}
