//! Human in the loop: input requests published to the stream and answered
//! with `send_event`, `ctx.wait_for_event` (publish once, real suspension,
//! waiter ids, requirements, timeouts), and the idle event.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::testing::WorkflowTestRunner;
use stepwise::{
    workflow, AnyEvent, Context, Event, EventUnion, HumanResponseEvent, InputRequiredEvent, RunError, RunOptions,
    StartEvent, StepConfig, StepError, StepPhase, StepStateChanged, StopEvent, StreamExt, UnhandledEvent, WaitError,
    WaitFor, Workflow, WorkflowDefinition, WorkflowIdle,
};
use tokio::time::Instant;

const SEC: Duration = Duration::from_secs(1);

/// Answers every input request with `answer`.
fn answer_with(answer: &'static str) -> impl FnMut(&AnyEvent) -> Option<AnyEvent> {
    move |ev| {
        ev.is::<InputRequiredEvent>()
            .then(|| HumanResponseEvent::new(answer).into())
    }
}

// ------------------------------------------------- returned input requests

#[tokio::test]
async fn a_returned_input_request_is_published_and_answered_with_send_event() {
    let wf = Workflow::builder("ask")
        .step("ask", |ev: StartEvent| async move {
            let topic: String = ev.get("topic").unwrap_or_default();
            InputRequiredEvent::new(format!("Publish the post about {topic}?"))
        })
        .step("decide", |ev: HumanResponseEvent| async move {
            StopEvent::new(format!("answered: {}", ev.response))
        })
        .build()
        .expect("valid workflow: input requests may be terminal, responses come from outside");
    let handle = wf.run(StartEvent::new().with("topic", "rust"));
    let mut stream = handle.stream_events().unwrap();
    let mut names = Vec::new();
    while let Some(ev) = stream.next().await {
        if let Some(request) = ev.downcast_ref::<InputRequiredEvent>() {
            assert_eq!(request.prompt, "Publish the post about rust?");
            handle.send_event(HumanResponseEvent::new("yes")).unwrap();
        }
        names.push(ev.name());
    }
    assert_eq!(handle.await.expect("run").result, "answered: yes");
    assert_eq!(
        names,
        ["InputRequiredEvent", "WorkflowIdle", "StopEvent"],
        "published once, never reported unhandled"
    );
}

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(input_required)]
struct AskName {
    question: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(human_response, name = "name.given")]
struct NameGiven {
    name: String,
}

struct Greeter;

#[workflow]
impl Greeter {
    #[step]
    async fn ask(&self, _ev: StartEvent) -> AskName {
        AskName {
            question: "What is your name?".into(),
        }
    }

    #[step]
    async fn greet(&self, ev: NameGiven) -> StopEvent {
        StopEvent::new(format!("hello, {}", ev.name))
    }
}

#[tokio::test]
async fn custom_input_request_and_response_types() {
    let wf = Greeter.build().expect("valid workflow");
    let outcome = WorkflowTestRunner::new(&wf)
        .internal_events(false)
        .run_responding(StartEvent::new(), |ev| {
            let ask = ev.downcast_ref::<AskName>()?;
            assert_eq!(ask.question, "What is your name?");
            Some(NameGiven { name: "Ada".into() }.into())
        })
        .await;
    assert_eq!(outcome.result.as_ref().expect("run").result, "hello, Ada");
    assert_eq!(outcome.count_of::<AskName>(), 1);
    assert_eq!(outcome.count_of::<UnhandledEvent>(), 0);
}

// --------------------------------------------------------- wait_for_event

#[tokio::test]
async fn wait_for_event_publishes_once_and_suspends_without_replay() {
    let before = Arc::new(AtomicU32::new(0));
    let after = Arc::new(AtomicU32::new(0));
    let (b, a) = (Arc::clone(&before), Arc::clone(&after));
    let wf = Workflow::builder("wait")
        .step("ask", move |ctx: Context, _: StartEvent| {
            let (b, a) = (Arc::clone(&b), Arc::clone(&a));
            async move {
                b.fetch_add(1, Ordering::SeqCst);
                let answer = ctx
                    .wait_for_event(WaitFor::<HumanResponseEvent>::new().publish(InputRequiredEvent::new("Proceed?")))
                    .await
                    .map_err(StepError::new)?;
                a.fetch_add(1, Ordering::SeqCst);
                Ok::<_, StepError>(StopEvent::new(answer.response))
            }
        })
        .build()
        .expect("valid workflow");
    let outcome = WorkflowTestRunner::new(&wf)
        .run_responding(StartEvent::new(), answer_with("go"))
        .await;
    assert_eq!(outcome.result.as_ref().expect("run").result, "go");
    assert_eq!(before.load(Ordering::SeqCst), 1, "the code before the wait ran once");
    assert_eq!(after.load(Ordering::SeqCst), 1);
    assert_eq!(outcome.count_of::<InputRequiredEvent>(), 1, "published once");
    // One invocation: it started once and finished once, suspended in between.
    let phases: Vec<StepPhase> = outcome
        .events_of::<StepStateChanged>()
        .into_iter()
        .map(|c| c.phase)
        .collect();
    assert_eq!(phases, [StepPhase::Running, StepPhase::Finished]);
    assert_eq!(outcome.count_of::<UnhandledEvent>(), 0);
}

/// An answer that carries which question it answers.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(human_response)]
struct Reply {
    id: u32,
    text: String,
}

fn reply(id: u32, text: &str) -> Reply {
    Reply { id, text: text.into() }
}

#[derive(Debug, EventUnion)]
enum AskInput {
    Start(StartEvent),
    Reply(Reply),
}

#[tokio::test]
async fn requirements_ignore_non_matching_events_which_are_routed_as_usual() {
    let routed_to_ask: Arc<Mutex<Vec<u32>>> = Arc::default();
    let audited: Arc<Mutex<Vec<u32>>> = Arc::default();
    let (r, a) = (Arc::clone(&routed_to_ask), Arc::clone(&audited));
    let wf = Workflow::builder("require")
        // `ask` accepts replies as input too, so non-matching ones start it anew.
        .step("ask", move |ctx: Context, ev: AskInput| {
            // Recorded when the invocation starts: the stop event may cancel it
            // before its body runs.
            if let AskInput::Reply(other) = &ev {
                r.lock().unwrap().push(other.id);
            }
            async move {
                match ev {
                    AskInput::Start(_) => {
                        let wait = WaitFor::<Reply>::new()
                            .require("id", 1)
                            .publish(InputRequiredEvent::new("question 1"));
                        let answer = ctx.wait_for_event(wait).await.map_err(StepError::new)?;
                        Ok(Some(StopEvent::new(answer.text)))
                    }
                    AskInput::Reply(_) => Ok::<_, StepError>(None),
                }
            }
        })
        // Another acceptor of replies sees every reply, matching or not.
        .step("audit", move |ev: Reply| {
            a.lock().unwrap().push(ev.id);
            async {}
        })
        .build()
        .expect("valid workflow");
    let handle = wf.run(StartEvent::new());
    let mut stream = handle.stream_events().unwrap();
    while let Some(ev) = stream.next().await {
        if ev.is::<InputRequiredEvent>() {
            handle.send_event(reply(2, "wrong question")).unwrap();
            handle.send_event(reply(3, "another")).unwrap();
            handle.send_event(reply(1, "the answer")).unwrap();
        }
    }
    assert_eq!(handle.await.expect("run").result, "the answer");
    assert_eq!(
        *routed_to_ask.lock().unwrap(),
        [2, 3],
        "the match is not also routed to the waiting step"
    );
    assert_eq!(*audited.lock().unwrap(), [2, 3, 1]);
}

#[tokio::test]
async fn a_non_matching_event_nobody_accepts_is_reported_unhandled() {
    let wf = Workflow::builder("unhandled")
        .event::<Reply>() // waited for: part of the registry
        .step("ask", |ctx: Context, _: StartEvent| async move {
            let wait = WaitFor::<Reply>::new()
                .require("id", 7)
                .require("text", "yes")
                .publish(InputRequiredEvent::new("question 7"));
            let answer = ctx.wait_for_event(wait).await.map_err(StepError::new)?;
            Ok::<_, StepError>(StopEvent::new(answer.id))
        })
        .build()
        .expect("valid workflow");
    let outcome = WorkflowTestRunner::new(&wf)
        .internal_events(false)
        .run_responding(StartEvent::new(), |ev| {
            // Answer the request with a wrong one, then (seeing it unhandled) the right one.
            if ev.is::<InputRequiredEvent>() {
                return Some(reply(7, "no").into());
            }
            ev.is::<UnhandledEvent>().then(|| reply(7, "yes").into())
        })
        .await;
    assert_eq!(outcome.result.as_ref().expect("run").result, 7);
    let unhandled = outcome.events_of::<UnhandledEvent>();
    assert_eq!(unhandled.len(), 1, "{:?}", outcome.names());
    assert_eq!(unhandled[0].event, "Reply");
}

#[tokio::test]
async fn one_event_resolves_waiters_in_several_steps() {
    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    #[event(human_response)]
    struct Go(u32);
    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    struct Got(String);

    let waiter = |name: &'static str| {
        move |ctx: Context, _: StartEvent| async move {
            let go = ctx.wait_for_event(WaitFor::<Go>::new()).await.map_err(StepError::new)?;
            Ok::<_, StepError>(Got(format!("{name}:{}", go.0)))
        }
    };
    let wf = Workflow::builder("several")
        .event::<Go>() // waited for: part of the registry
        .step("a", waiter("a"))
        .step("b", waiter("b"))
        .step("join", |ctx: Context, ev: Got| async move {
            let mut got: Vec<String> = ctx.collect_n(&ev, 2)?.into_iter().map(|g| g.0).collect();
            got.sort();
            Some(StopEvent::new(got))
        })
        .build()
        .expect("valid workflow");
    let outcome = WorkflowTestRunner::new(&wf)
        .run_responding(StartEvent::new(), |ev| {
            let idle = ev.downcast_ref::<WorkflowIdle>()?;
            let mut waiting = idle.waiting.clone();
            waiting.sort();
            assert_eq!(waiting, ["a/Go", "b/Go"]);
            Some(Go(5).into())
        })
        .await;
    assert_eq!(
        outcome.result.as_ref().expect("run").result,
        serde_json::json!(["a:5", "b:5"])
    );
    assert_eq!(outcome.count_of::<WorkflowIdle>(), 1);
}

// ----------------------------------------------------- ids and timeouts

#[tokio::test(start_paused = true)]
async fn a_waiter_times_out_with_a_clear_error() {
    let wf = Workflow::builder("timeout")
        .step("approve", |ctx: Context, _: StartEvent| async move {
            let wait = WaitFor::<HumanResponseEvent>::new()
                .id("approval")
                .timeout(30 * SEC)
                .publish(InputRequiredEvent::new("Approve?"));
            let answer = ctx.wait_for_event(wait).await.map_err(StepError::new)?;
            Ok::<_, StepError>(StopEvent::new(answer.response))
        })
        .build()
        .expect("valid workflow");
    let started = Instant::now();
    let err = wf.run(StartEvent::new()).await.expect_err("nobody answers");
    assert_eq!(started.elapsed(), 30 * SEC);
    let RunError::StepFailed { step, source, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(step, "approve");
    let wait_error = source.downcast_ref::<WaitError>().expect("a WaitError");
    assert_eq!(
        *wait_error,
        WaitError::TimedOut {
            step: "approve".into(),
            event: "HumanResponseEvent",
            waiter_id: "approval".into(),
        }
    );
    let text = wait_error.to_string();
    for part in ["approve", "HumanResponseEvent", "approval", "timed out"] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn default_waiter_ids_name_the_event_and_requirements() {
    let wf = Workflow::builder("ids")
        .event::<Reply>() // waited for: part of the registry
        .step("ask", |ctx: Context, _: StartEvent| async move {
            let plain = ctx
                .wait_for_event(WaitFor::<HumanResponseEvent>::new().timeout(SEC))
                .await
                .unwrap_err();
            let required = ctx
                .wait_for_event(WaitFor::<Reply>::new().require("id", 3).timeout(SEC))
                .await
                .unwrap_err();
            let ids: Vec<String> = [plain, required]
                .into_iter()
                .map(|e| match e {
                    WaitError::TimedOut { waiter_id, .. } => waiter_id,
                    other => panic!("{other}"),
                })
                .collect();
            StopEvent::new(ids)
        })
        .build()
        .expect("valid workflow");
    let started = Instant::now();
    let stop = wf.run(StartEvent::new()).await.expect("timeouts are values");
    assert_eq!(stop.result, serde_json::json!(["HumanResponseEvent", "Reply[id=3]"]));
    assert_eq!(started.elapsed(), 2 * SEC);
}

#[tokio::test(start_paused = true)]
async fn an_answer_in_time_cancels_the_timeout() {
    let wf = Workflow::builder("in_time")
        .step("ask", |ctx: Context, _: StartEvent| async move {
            let wait = WaitFor::<HumanResponseEvent>::new()
                .timeout(10 * SEC)
                .publish(InputRequiredEvent::new("?"));
            let answer = ctx.wait_for_event(wait).await.map_err(StepError::new)?;
            // Keep working past the old deadline: nothing fires.
            tokio::time::sleep(60 * SEC).await;
            Ok::<_, StepError>(StopEvent::new(answer.response))
        })
        .build()
        .expect("valid workflow");
    let started = Instant::now();
    let outcome = WorkflowTestRunner::new(&wf)
        .run_responding(StartEvent::new(), answer_with("ok"))
        .await;
    assert_eq!(outcome.result.as_ref().expect("run").result, "ok");
    assert_eq!(started.elapsed(), 60 * SEC);
}

#[tokio::test]
async fn two_waits_under_one_id_in_one_invocation_are_refused() {
    let wf = Workflow::builder("dup")
        .step("ask", |ctx: Context, _: StartEvent| async move {
            let first = ctx.wait_for_event(WaitFor::<HumanResponseEvent>::new().id("same"));
            let second = ctx.wait_for_event(WaitFor::<HumanResponseEvent>::new().id("same"));
            let (first, second) = tokio::join!(first, second);
            let refused = matches!(
                &second,
                Err(WaitError::DuplicateWaiter { step, waiter_id }) if step == "ask" && waiter_id == "same"
            );
            Ok::<_, WaitError>(StopEvent::new((first?.response, refused)))
        })
        .build()
        .expect("valid workflow");
    let outcome = WorkflowTestRunner::new(&wf)
        .run_responding(StartEvent::new(), |ev| {
            ev.is::<WorkflowIdle>().then(|| HumanResponseEvent::new("one").into())
        })
        .await;
    assert_eq!(
        outcome.result.as_ref().expect("run").result,
        serde_json::json!(["one", true])
    );
}

// ------------------------------------------------------ abandoned waits

#[tokio::test(start_paused = true)]
async fn an_abandoned_wait_is_withdrawn() {
    // The step gives up on a wait with its own timer, then waits again under
    // the same (default) id; the answer comes for the second wait.
    let wf = Workflow::builder("abandon")
        .event::<Reply>() // waited for: part of the registry
        .step("ask", |ctx: Context, _: StartEvent| async move {
            let first = tokio::time::timeout(SEC, ctx.wait_for_event(WaitFor::<Reply>::new())).await;
            assert!(first.is_err(), "nobody answered in the first second");
            let answer = ctx
                .wait_for_event(WaitFor::<Reply>::new())
                .await
                .map_err(StepError::new)?;
            Ok::<_, StepError>(StopEvent::new(answer.text))
        })
        .build()
        .expect("valid workflow");
    let handle = wf.run(StartEvent::new());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    handle.send_event(reply(1, "second wait")).unwrap();
    assert_eq!(handle.await.expect("no duplicate waiter").result, "second wait");
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_wait_does_not_swallow_later_events() {
    let wf = Workflow::builder("swallow")
        .event::<Reply>() // waited for: part of the registry
        .step("ask", |ctx: Context, _: StartEvent| async move {
            let _ = tokio::time::timeout(SEC, ctx.wait_for_event(WaitFor::<Reply>::new())).await;
            // No longer waiting: busy for a while.
            tokio::time::sleep(10 * SEC).await;
            StopEvent::new("done")
        })
        .build()
        .expect("valid workflow");
    let handle = wf.run(StartEvent::new());
    let mut stream = handle.stream_events().unwrap();
    tokio::time::sleep(2 * SEC).await;
    handle.send_event(reply(1, "late")).unwrap();
    let mut names = Vec::new();
    while let Some(ev) = stream.next().await {
        names.push(ev.name());
    }
    assert_eq!(handle.await.expect("run").result, "done");
    assert_eq!(
        names,
        ["WorkflowIdle", "UnhandledEvent", "StopEvent"],
        "idle while waiting; the late reply reaches nobody and says so"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiter_of_a_finished_invocation_is_told_so() {
    // A task spawned by the step waits on the step's context; the step then
    // returns. The task's wait ends instead of hanging.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let wf = Workflow::builder("orphan")
        .step_with(
            StepConfig::new("ask").emits::<Reply>(),
            move |ctx: Context, _: StartEvent| {
                let tx = tx.lock().unwrap().take();
                async move {
                    let task_ctx = ctx.clone();
                    tokio::spawn(async move {
                        let result = task_ctx.wait_for_event(WaitFor::<Reply>::new()).await;
                        if let Some(tx) = tx {
                            let _ = tx.send(result);
                        }
                    });
                    // Long enough for the task to register its waiter.
                    tokio::time::sleep(SEC).await;
                }
            },
        )
        .step("never", |_: Reply| async { StopEvent::new("unreachable") })
        .build()
        .expect("valid workflow");
    let handle = wf.run(StartEvent::new());
    let result = tokio::time::timeout(60 * SEC, rx)
        .await
        .expect("the orphaned wait ends")
        .expect("the task reports");
    assert!(
        matches!(result, Err(WaitError::RunEnded { event: "Reply" })),
        "{result:?}"
    );
    handle.cancel();
    assert!(matches!(handle.await, Err(RunError::Cancelled { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_wait_in_a_spawned_task_ends_when_the_run_ends() {
    // The step that spawned the task is still in flight when another step
    // stops the run; the task's wait ends with the run.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let wf = Workflow::builder("ended")
        .event::<Reply>() // waited for: part of the registry
        .step("ask", move |ctx: Context, _: StartEvent| {
            let tx = tx.lock().unwrap().take();
            async move {
                let task_ctx = ctx.clone();
                tokio::spawn(async move {
                    let result = task_ctx.wait_for_event(WaitFor::<Reply>::new()).await;
                    if let Some(tx) = tx {
                        let _ = tx.send(result);
                    }
                });
                tokio::time::sleep(3600 * SEC).await;
            }
        })
        .step("stop", |_: StartEvent| async {
            tokio::time::sleep(SEC).await;
            StopEvent::new("stopped")
        })
        .build()
        .expect("valid workflow");
    assert_eq!(wf.run(StartEvent::new()).await.expect("run").result, "stopped");
    let result = tokio::time::timeout(60 * SEC, rx)
        .await
        .expect("the wait ends with the run")
        .expect("the task reports");
    assert!(
        matches!(result, Err(WaitError::RunEnded { event: "Reply" })),
        "{result:?}"
    );
}

// ------------------------------------------------------------ idle event

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
struct Slow;

/// Records each published event with the time it was seen.
type Seen = Arc<Mutex<Vec<(Duration, &'static str)>>>;

#[tokio::test(start_paused = true)]
async fn idle_fires_once_when_all_work_waits_and_again_after_new_work() {
    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    struct Ask;

    let wf = Workflow::builder("idle")
        .step_with(
            StepConfig::new("start").emits::<Ask>().emits::<Slow>(),
            |ctx: Context, _: StartEvent| async move {
                ctx.send_event(Ask);
                ctx.send_event(Slow);
            },
        )
        .step("ask", |ctx: Context, _: Ask| async move {
            let first = ctx
                .wait_for_event(WaitFor::<HumanResponseEvent>::new().publish(InputRequiredEvent::new("first?")))
                .await?;
            tokio::time::sleep(SEC).await; // new work after the answer
            let second = ctx
                .wait_for_event(
                    WaitFor::<HumanResponseEvent>::new()
                        .id("second")
                        .publish(InputRequiredEvent::new("second?")),
                )
                .await?;
            Ok::<_, WaitError>(StopEvent::new(format!("{} {}", first.response, second.response)))
        })
        // Sleeping is work in progress, not waiting for input.
        .step("slow", |_: Slow| async {
            tokio::time::sleep(5 * SEC).await;
        })
        .build()
        .expect("valid workflow");
    let started = Instant::now();
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    let idles: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let keep = Arc::clone(&idles);
    let outcome = WorkflowTestRunner::new(&wf)
        .internal_events(false)
        .run_responding(StartEvent::new(), move |ev| {
            record.lock().unwrap().push((started.elapsed(), ev.name()));
            let idle = ev.downcast_ref::<WorkflowIdle>()?;
            keep.lock().unwrap().push(idle.waiting.clone());
            Some(HumanResponseEvent::new("yes").into())
        })
        .await;
    assert_eq!(outcome.result.as_ref().expect("run").result, "yes yes");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Duration::ZERO, "InputRequiredEvent"),
            (5 * SEC, "WorkflowIdle"),
            (6 * SEC, "InputRequiredEvent"),
            (6 * SEC, "WorkflowIdle"),
            (6 * SEC, "StopEvent"),
        ]
    );
    assert_eq!(
        *idles.lock().unwrap(),
        [vec!["ask/HumanResponseEvent".to_owned()], vec!["ask/second".to_owned()]]
    );
}

#[tokio::test(start_paused = true)]
async fn no_idle_while_a_step_merely_sleeps() {
    let wf = Workflow::builder("sleepy")
        .step("nap", |_: StartEvent| async {
            tokio::time::sleep(3600 * SEC).await;
            StopEvent::new("rested")
        })
        .build()
        .expect("valid workflow");
    let outcome = WorkflowTestRunner::new(&wf).run(StartEvent::new()).await;
    assert_eq!(outcome.result.as_ref().expect("run").result, "rested");
    assert_eq!(outcome.count_of::<WorkflowIdle>(), 0);
}

#[tokio::test(start_paused = true)]
async fn no_idle_while_a_retry_is_pending() {
    let tries = Arc::new(AtomicU32::new(0));
    let t = Arc::clone(&tries);
    let wf = Workflow::builder("retrying")
        .step("start", |_: StartEvent| async { Slow })
        .step("ask", |ctx: Context, _: StartEvent| async move {
            let answer = ctx.wait_for_event(WaitFor::<HumanResponseEvent>::new()).await?;
            Ok::<_, WaitError>(StopEvent::new(answer.response))
        })
        .step_with(
            StepConfig::new("flaky").retry(stepwise::RetryPolicy::fixed(3, 2 * SEC)),
            move |_: Slow| {
                let attempt = t.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if attempt < 3 {
                        return Err(StepError::msg("not yet"));
                    }
                    Ok(())
                }
            },
        )
        .skip_check(stepwise::GraphCheck::DeadEnd)
        .build()
        .expect("valid workflow");
    let started = Instant::now();
    let idle_at: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let record = Arc::clone(&idle_at);
    let outcome = WorkflowTestRunner::new(&wf)
        .run_responding(StartEvent::new(), move |ev| {
            ev.is::<WorkflowIdle>().then(|| {
                record.lock().unwrap().push(started.elapsed());
                HumanResponseEvent::new("ok").into()
            })
        })
        .await;
    assert_eq!(outcome.result.as_ref().expect("run").result, "ok");
    assert_eq!(
        *idle_at.lock().unwrap(),
        [4 * SEC],
        "idle only once the retries are done"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_counts_work_queued_behind_waiting_steps_as_waiting() {
    // One worker: the second question queues behind the first, which waits for
    // a person. Nothing can move without outside input, so the run is idle.
    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    struct Question(u32);
    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    struct Answered(String);

    let wf = Workflow::builder("queued")
        .event::<Reply>() // waited for: part of the registry
        .step("start", |_: StartEvent| async { vec![Question(1), Question(2)] })
        .step_with(
            StepConfig::new("ask").num_workers(1),
            |ctx: Context, q: Question| async move {
                let wait = WaitFor::<Reply>::new()
                    .require("id", q.0)
                    .publish(InputRequiredEvent::new(format!("question {}", q.0)));
                let answer = ctx.wait_for_event(wait).await?;
                Ok::<_, WaitError>(Answered(answer.text))
            },
        )
        .step("done", |ctx: Context, a: Answered| async move {
            let all = ctx.collect_n(&a, 2)?;
            Some(StopEvent::new(all.into_iter().map(|a| a.0).collect::<Vec<_>>()))
        })
        .timeout(3600 * SEC)
        .build()
        .expect("valid workflow");
    let asked: Arc<Mutex<Vec<u32>>> = Arc::default();
    let record = Arc::clone(&asked);
    let outcome = WorkflowTestRunner::new(&wf)
        .internal_events(false)
        .run_responding(StartEvent::new(), move |ev| {
            if let Some(request) = ev.downcast_ref::<InputRequiredEvent>() {
                let id = request.prompt.trim_start_matches("question ").parse().unwrap();
                record.lock().unwrap().push(id);
                return None;
            }
            // Answer the latest question once the run is idle.
            ev.is::<WorkflowIdle>().then(|| {
                let id = *record.lock().unwrap().last().unwrap();
                reply(id, &format!("answer {id}")).into()
            })
        })
        .await;
    assert_eq!(
        outcome
            .result
            .as_ref()
            .expect("idle fired while question 2 was queued")
            .result,
        serde_json::json!(["answer 1", "answer 2"])
    );
    assert_eq!(outcome.count_of::<WorkflowIdle>(), 2);
}

#[tokio::test]
async fn an_external_answer_to_a_suspended_step_with_run_options() {
    // The plain handle API with a chosen run id: stream, see the request, answer.
    let wf = Workflow::builder("plain")
        .step("ask", |ctx: Context, _: StartEvent| async move {
            let wait = WaitFor::<HumanResponseEvent>::new().publish(InputRequiredEvent::new(ctx.run_id().to_owned()));
            let answer = ctx.wait_for_event(wait).await.map_err(StepError::new)?;
            Ok::<_, StepError>(StopEvent::new(answer.response))
        })
        .build()
        .expect("valid workflow");
    let handle = wf.run_with(StartEvent::new(), RunOptions::new().run_id("hitl-1"));
    let mut stream = handle.stream_events().unwrap();
    while let Some(ev) = stream.next().await {
        if let Some(request) = ev.downcast_ref::<InputRequiredEvent>() {
            assert_eq!(request.prompt, "hitl-1");
            handle.send_event(HumanResponseEvent::new("sure")).unwrap();
        }
    }
    assert_eq!(handle.await.expect("run").result, "sure");
}
