//! The run handle: streaming, internal events, sending from outside,
//! cancelling, run ids, many runs at once, and running without a runtime.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use stepwise::{
    Context, RunError, RunOptions, SendError, StartEvent, StepConfig, StepPhase, StepStateChanged, StopEvent,
    StreamError, StreamExt, UnhandledEvent, Workflow, WorkflowCancelled,
};

fn chain() -> Workflow {
    Workflow::builder("chain")
        .step("first", |ctx: Context, _: StartEvent| async move {
            ctx.write_event_to_stream(Progress("a".into()));
            Ping(1)
        })
        .step("second", |ctx: Context, ev: Ping| async move {
            ctx.write_event_to_stream(Progress("b".into()));
            ctx.write_event_to_stream(Progress("c".into()));
            StopEvent::new(ev.0)
        })
        .build()
        .unwrap()
}

/// Asks a human, then stops with the answer.
fn ask_and_answer() -> Workflow {
    Workflow::builder("hitl")
        .step("ask", |_: StartEvent| async {
            AskHuman {
                question: "name?".into(),
            }
        })
        .step("answer", |ev: HumanAnswer| async move { StopEvent::new(ev.text) })
        .build()
        .unwrap()
}

/// A workflow whose single step waits (on the paused clock) for an hour.
fn sleeper(dropped: Arc<AtomicBool>, woke: Arc<AtomicBool>) -> Workflow {
    Workflow::builder("sleeper")
        .step("sleep", move |ctx: Context, _: StartEvent| {
            let guard = DropFlag(Arc::clone(&dropped));
            let woke = Arc::clone(&woke);
            async move {
                let _guard = guard;
                ctx.write_event_to_stream(Progress("asleep".into()));
                tokio::time::sleep(Duration::from_secs(3600)).await;
                woke.store(true, Ordering::SeqCst);
                StopEvent::new("woke")
            }
        })
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn stream_yields_events_in_publish_order_and_ends_after_the_stop_event() {
    let handle = chain().run(StartEvent::new());
    let mut stream = handle.stream_events().unwrap();
    let mut seen = Vec::new();
    while let Some(ev) = settle(stream.next()).await {
        seen.push(ev);
    }
    assert_eq!(names(&seen), ["Progress", "Progress", "Progress", "StopEvent"]);
    let progress: Vec<String> = of_type::<Progress>(&seen).into_iter().map(|p| p.0).collect();
    assert_eq!(progress, ["a", "b", "c"]);
    assert!(settle(stream.next()).await.is_none(), "an ended stream stays ended");
    assert_eq!(settle(handle).await.unwrap().result, 1);
}

#[tokio::test(start_paused = true)]
async fn events_published_before_the_stream_is_taken_are_kept() {
    let mut handle = chain().run(StartEvent::new());
    assert_eq!(settle(&mut handle).await.unwrap().result, 1);
    let events = drain(handle.stream_events().unwrap()).await;
    assert_eq!(names(&events), ["Progress", "Progress", "Progress", "StopEvent"]);
}

#[tokio::test(start_paused = true)]
async fn internal_events_are_hidden_unless_asked_for() {
    let handle = chain().run(StartEvent::new());
    let events = drain(handle.stream_events().unwrap()).await;
    assert!(events.iter().all(|e| !e.is_internal()), "{:?}", names(&events));

    let handle = chain().run_with(StartEvent::new(), RunOptions::new().internal_events(true));
    let events = drain(handle.stream_events().unwrap()).await;
    assert!(events.iter().all(|e| e.is_internal() == e.is::<StepStateChanged>()));
    assert_eq!(
        names(&events),
        [
            "StepStateChanged", // first running
            "Progress",
            "StepStateChanged", // first finished
            "StepStateChanged", // second running
            "Progress",
            "Progress",
            "StepStateChanged", // second finished
            "StopEvent",
        ]
    );
    let changes = of_type::<StepStateChanged>(&events);
    assert_eq!(
        changes[0],
        StepStateChanged {
            step: "first".into(),
            phase: StepPhase::Running,
            worker: Some(0),
            input_event: "StartEvent".into(),
            output_events: vec![],
            error: None,
        }
    );
    assert_eq!(
        changes[1],
        StepStateChanged {
            step: "first".into(),
            phase: StepPhase::Finished,
            worker: Some(0),
            input_event: "StartEvent".into(),
            output_events: vec!["Ping".into()],
            error: None,
        }
    );
    assert_eq!(
        (changes[2].phase, changes[2].input_event.as_str()),
        (StepPhase::Running, "Ping")
    );
    assert_eq!(changes[3].output_events, ["StopEvent"]);
}

#[tokio::test(start_paused = true)]
async fn a_saturated_step_reports_queued_invocations() {
    let wf = Workflow::builder("queue")
        .step("start", |_: StartEvent| async {
            (0..3).map(|id| Item { id }).collect::<Vec<_>>()
        })
        .step_with(StepConfig::new("work").num_workers(1), |ev: Item| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Done { id: ev.id }
        })
        .step("join", |ctx: Context, ev: Done| async move {
            ctx.collect_n(&ev, 3).map(|_| StopEvent::default())
        })
        .build()
        .unwrap();
    let handle = wf.run_with(StartEvent::new(), RunOptions::new().internal_events(true));
    let events = drain(handle.stream_events().unwrap()).await;
    let work: Vec<StepStateChanged> = of_type::<StepStateChanged>(&events)
        .into_iter()
        .filter(|s| s.step == "work")
        .collect();
    let sequence: Vec<StepPhase> = work.iter().map(|s| s.phase).collect();
    use StepPhase::*;
    assert_eq!(
        sequence,
        [Running, Queued, Queued, Finished, Running, Finished, Running, Finished]
    );
    for change in &work {
        let expected_worker = if change.phase == Queued { None } else { Some(0) };
        assert_eq!(change.worker, expected_worker, "{change:?}");
        assert_eq!(change.input_event, "Item");
    }
}

#[tokio::test(start_paused = true)]
async fn the_stream_has_a_single_consumer() {
    let handle = chain().run(StartEvent::new());
    let run_id = handle.run_id().to_owned();
    let first = handle.stream_events().unwrap();
    let err = handle.stream_events().unwrap_err();
    assert_eq!(err, StreamError::AlreadyTaken { run_id: run_id.clone() });
    assert!(err.to_string().contains(&run_id));
    drop(first);
    assert!(
        handle.stream_events().is_err(),
        "still taken after the first stream is dropped"
    );
    settle(handle).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_human_answer_sent_from_outside_reaches_the_waiting_step() {
    let handle = ask_and_answer().run(StartEvent::new());
    let mut stream = handle.stream_events().unwrap();
    let mut seen = Vec::new();
    while let Some(ev) = settle(stream.next()).await {
        if let Some(ask) = ev.downcast_ref::<AskHuman>() {
            assert_eq!(ask.question, "name?");
            handle.send_event(HumanAnswer { text: "Ada".into() }).unwrap();
        }
        seen.push(ev);
    }
    assert_eq!(
        names(&seen),
        ["AskHuman", "WorkflowIdle", "StopEvent"],
        "an input request is never unhandled; the run is idle while it waits"
    );
    assert!(of_type::<UnhandledEvent>(&seen).is_empty());
    assert_eq!(settle(handle).await.unwrap().result, "Ada");
}

#[tokio::test(start_paused = true)]
async fn an_event_sent_right_after_run_is_handled_after_the_start_event() {
    let order = Log::new();
    let (ask, answer) = (order.clone(), order.clone());
    let wf = Workflow::builder("eager-answer")
        .step("ask", move |_: StartEvent| {
            ask.push("ask");
            async {
                AskHuman {
                    question: "name?".into(),
                }
            }
        })
        .step("answer", move |ev: HumanAnswer| {
            answer.push("answer");
            async move { StopEvent::new(ev.text) }
        })
        .build()
        .unwrap();
    let handle = wf.run_with(StartEvent::new(), RunOptions::new().internal_events(true));
    handle.send_event(HumanAnswer { text: "early".into() }).unwrap();
    let events = drain(handle.stream_events().unwrap()).await;
    assert_eq!(order.get(), ["ask", "answer"]);
    let running: Vec<String> = phases(&events)
        .into_iter()
        .filter(|(_, phase)| *phase == StepPhase::Running)
        .map(|(step, _)| step)
        .collect();
    assert_eq!(running, ["ask", "answer"]);
    assert_eq!(settle(handle).await.unwrap().result, "early");
}

#[tokio::test(start_paused = true)]
async fn send_event_to_from_outside() {
    let handle = ask_and_answer().run(StartEvent::new());
    let run_id = handle.run_id().to_owned();
    let answer = || HumanAnswer { text: "Bo".into() };
    assert_eq!(
        handle.send_event_to("nobody", answer()),
        Err(SendError::UnknownStep {
            workflow: "hitl".into(),
            step: "nobody".into(),
            event: "HumanAnswer"
        })
    );
    let err = handle.send_event_to("ask", answer()).unwrap_err();
    assert!(matches!(&err, SendError::NotAccepted { step, event: "HumanAnswer", .. } if step == "ask"));
    handle.send_event_to("answer", answer()).unwrap();
    let mut handle = handle;
    assert_eq!(settle(&mut handle).await.unwrap().result, "Bo");

    let err = handle.send_event(answer()).unwrap_err();
    assert_eq!(
        err,
        SendError::RunEnded {
            run_id: run_id.clone(),
            event: "HumanAnswer"
        }
    );
    assert!(err.to_string().contains(&run_id) && err.to_string().contains("HumanAnswer"));
    assert!(matches!(
        handle.send_event_to("answer", answer()),
        Err(SendError::RunEnded { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn an_event_nobody_accepts_sent_from_outside_is_unhandled() {
    let handle = ask_and_answer().run(StartEvent::new());
    let mut stream = handle.stream_events().unwrap();
    assert!(settle(stream.next()).await.unwrap().is::<AskHuman>());
    handle.send_event(Ping(1)).unwrap();
    handle.send_event(HumanAnswer { text: "x".into() }).unwrap();
    let rest = drain(stream).await;
    assert_eq!(names(&rest), ["WorkflowIdle", "UnhandledEvent", "StopEvent"]);
}

#[tokio::test(start_paused = true)]
async fn cancel_ends_the_run_and_drops_in_flight_steps() {
    let dropped = Arc::new(AtomicBool::new(false));
    let woke = Arc::new(AtomicBool::new(false));
    let wf = sleeper(Arc::clone(&dropped), Arc::clone(&woke));
    let handle = wf.run(StartEvent::new());
    let run_id = handle.run_id().to_owned();
    let mut stream = handle.stream_events().unwrap();
    // Wait until the step's body is running.
    let first = settle(stream.next()).await.unwrap();
    assert_eq!(first.downcast_ref::<Progress>(), Some(&Progress("asleep".into())));
    assert!(!handle.is_done());
    handle.cancel();
    let rest = drain(stream).await;
    assert_eq!(names(&rest), ["WorkflowCancelled"]);
    assert_eq!(of_type::<WorkflowCancelled>(&rest), [WorkflowCancelled {}]);
    assert!(handle.is_done());
    let err = settle(handle).await.unwrap_err();
    assert!(
        matches!(&err, RunError::Cancelled { run_id: id } if *id == run_id),
        "{err}"
    );
    assert!(err.to_string().contains("cancelled"));
    assert!(dropped.load(Ordering::SeqCst), "the in-flight step was dropped");
    tokio::time::sleep(Duration::from_secs(7200)).await;
    assert!(!woke.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn cancel_after_the_run_ended_does_nothing() {
    let mut handle = chain().run(StartEvent::new());
    assert_eq!(settle(&mut handle).await.unwrap().result, 1);
    handle.cancel();
    assert_eq!(settle(&mut handle).await.unwrap().result, 1);
    let events = drain(handle.stream_events().unwrap()).await;
    assert_eq!(events.last().unwrap().name(), "StopEvent");
    assert!(of_type::<WorkflowCancelled>(&events).is_empty());
}

#[tokio::test(start_paused = true)]
async fn is_done_turns_true_when_the_run_ends() {
    let wf = Workflow::builder("nap")
        .step("nap", |_: StartEvent| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            StopEvent::default()
        })
        .build()
        .unwrap();
    let mut handle = wf.run(StartEvent::new());
    assert!(!handle.is_done());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!handle.is_done());
    settle(&mut handle).await.unwrap();
    assert!(handle.is_done());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_does_not_stop_the_run() {
    let finished = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&finished);
    let wf = Workflow::builder("detached")
        .step("work", move |_: StartEvent| {
            let flag = Arc::clone(&flag);
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                flag.store(true, Ordering::SeqCst);
                StopEvent::default()
            }
        })
        .build()
        .unwrap();
    drop(wf.run(StartEvent::new()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(finished.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn generated_run_ids_are_distinct() {
    let seen = Log::new();
    let log = seen.clone();
    let wf = Workflow::builder("ids")
        .step("id", move |ctx: Context, _: StartEvent| {
            log.push(ctx.run_id().to_owned());
            async { StopEvent::default() }
        })
        .build()
        .unwrap();
    let mut ids = HashSet::new();
    let mut handles = Vec::new();
    for _ in 0..1000 {
        let handle = wf.run(StartEvent::new());
        assert!(!handle.run_id().is_empty());
        assert!(
            ids.insert(handle.run_id().to_owned()),
            "duplicate run id {}",
            handle.run_id()
        );
        handles.push(handle);
    }
    for handle in handles {
        settle(handle).await.unwrap();
    }
    let from_steps: HashSet<String> = seen.get().into_iter().collect();
    assert_eq!(from_steps, ids, "each step saw its own run's id");
}

#[tokio::test(start_paused = true)]
async fn a_given_run_id_is_honoured() {
    let seen = Log::new();
    let log = seen.clone();
    let wf = Workflow::builder("named")
        .step("id", move |ctx: Context, _: StartEvent| {
            log.push(ctx.run_id().to_owned());
            async { StopEvent::default() }
        })
        .build()
        .unwrap();
    let mut handle = wf.run_with(StartEvent::new(), RunOptions::new().run_id("order-42"));
    assert_eq!(handle.run_id(), "order-42");
    settle(&mut handle).await.unwrap();
    assert_eq!(seen.get(), ["order-42"]);
    assert!(matches!(handle.send_event(Ping(0)), Err(SendError::RunEnded { run_id, .. }) if run_id == "order-42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_each_get_their_own_result() {
    let wf = Workflow::builder("arith")
        .step("double", |ev: StartEvent| async move {
            let n: u32 = ev.get("n").unwrap();
            tokio::task::yield_now().await;
            Ping(n * 2)
        })
        .step("inc", |ctx: Context, ev: Ping| async move {
            ctx.write_event_to_stream(Progress(ctx.run_id().to_owned()));
            tokio::time::sleep(Duration::from_millis(u64::from(ev.0 % 7))).await;
            StopEvent::new(ev.0 + 1)
        })
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..200u32)
        .map(|n| {
            let handle = wf.run(StartEvent::new().with("n", n));
            tokio::spawn(async move {
                let run_id = handle.run_id().to_owned();
                let events = drain(handle.stream_events().unwrap()).await;
                assert_eq!(of_type::<Progress>(&events), [Progress(run_id)]);
                (n, settle(handle).await.unwrap().result_as::<u32>().unwrap())
            })
        })
        .collect();
    for task in tasks {
        let (n, result) = task.await.unwrap();
        assert_eq!(result, n * 2 + 1);
    }
}

#[test]
fn running_outside_a_runtime_fails_the_run_instead_of_panicking() {
    let ran = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&ran);
    let wf = Workflow::builder("no-rt")
        .step("s", move |_: StartEvent| {
            count.fetch_add(1, Ordering::SeqCst);
            async { StopEvent::default() }
        })
        .build()
        .unwrap();
    let handle = wf.run(StartEvent::new());
    let run_id = handle.run_id().to_owned();
    assert!(handle.is_done());
    let stream = handle.stream_events().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (events, result) = runtime.block_on(async { (drain(stream).await, settle(handle).await) });
    assert!(events.is_empty());
    let err = result.unwrap_err();
    assert!(
        matches!(&err, RunError::NoRuntime { run_id: id } if *id == run_id),
        "{err:?}"
    );
    assert!(err.to_string().contains("runtime"));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn a_run_whose_runtime_shuts_down_is_aborted() {
    let dropped = Arc::new(AtomicBool::new(false));
    let wf = sleeper(Arc::clone(&dropped), Arc::default());
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = {
        let _inside = first.enter();
        wf.run(StartEvent::new())
    };
    // Let the driver start the step.
    first.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
    let stream = handle.stream_events().unwrap();
    assert!(!handle.is_done());
    drop(first);
    assert!(
        dropped.load(Ordering::SeqCst),
        "shutting the runtime down dropped the step"
    );
    assert!(handle.is_done());
    let run_id = handle.run_id().to_owned();
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (events, result) = second.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            (drain(stream).await, settle(handle).await)
        })
        .await
        .expect("the handle resolves instead of hanging")
    });
    assert_eq!(names(&events), ["Progress"], "published before the shutdown");
    let err = result.unwrap_err();
    assert!(
        matches!(&err, RunError::Aborted { run_id: id } if *id == run_id),
        "{err:?}"
    );
}
