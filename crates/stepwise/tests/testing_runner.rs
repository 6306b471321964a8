//! The test runner users get: run a workflow, collect every published event
//! (internal ones optional), count them by type, get the result and the state,
//! answer input requests, all on tokio's paused clock.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::testing::WorkflowTestRunner;
use stepwise::{
    Context, Event, HumanResponseEvent, InputRequiredEvent, RetryPolicy, RunError, StartEvent, StateStore, StepConfig,
    StepError, StepStateChanged, StopEvent, WaitFor, Workflow, WorkflowFailed, WorkflowIdle,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
struct Progress(u32);

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
struct Work(u32);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Tally {
    seen: u32,
}

/// Start fans out three works; each reports progress, sleeps (work n for n
/// minutes) and bumps the tally; the last one stops the run with the tally.
fn pipeline() -> Workflow {
    Workflow::builder("pipeline")
        .state::<Tally>()
        .step("start", |_: StartEvent| async { vec![Work(1), Work(2), Work(3)] })
        .step("work", |ctx: Context, w: Work| async move {
            ctx.write_event_to_stream(Progress(w.0));
            tokio::time::sleep(Duration::from_secs(u64::from(w.0) * 60)).await;
            let seen = ctx.state().edit(|t: &mut Tally| {
                t.seen += 1;
                t.seen
            });
            let seen = seen.await.map_err(StepError::new)?;
            Ok::<_, StepError>((w.0 == 3).then(|| StopEvent::new(seen)))
        })
        .build()
        .expect("valid workflow")
}

#[tokio::test(start_paused = true)]
async fn collects_and_counts_every_published_event() {
    let started = tokio::time::Instant::now();
    let outcome = WorkflowTestRunner::new(&pipeline()).run(StartEvent::new()).await;
    // Three simulated minutes pass instantly on the paused clock.
    assert_eq!(started.elapsed(), Duration::from_secs(180));
    assert_eq!(outcome.result.as_ref().expect("run").result, 3);
    assert_eq!(outcome.count("Progress"), 3);
    assert_eq!(outcome.count_of::<Progress>(), 3);
    assert_eq!(outcome.count_of::<StopEvent>(), 1);
    assert_eq!(outcome.events_of::<Progress>(), [Progress(1), Progress(2), Progress(3)]);
    // Internal events are recorded by default: running + finished per invocation.
    assert_eq!(outcome.count_of::<StepStateChanged>(), 8);
    let counts = outcome.counts();
    assert_eq!(counts.get("StepStateChanged"), Some(&8));
    assert_eq!(counts.get("Progress"), Some(&3));
    assert_eq!(counts.values().sum::<usize>(), outcome.events.len());
    assert_eq!(outcome.names().last(), Some(&"StopEvent"));
    assert_eq!(outcome.state.get::<Tally>().await.unwrap().seen, 3);
}

#[tokio::test(start_paused = true)]
async fn internal_events_are_optional() {
    let outcome = WorkflowTestRunner::new(&pipeline())
        .internal_events(false)
        .run(StartEvent::new())
        .await;
    assert_eq!(outcome.count_of::<StepStateChanged>(), 0);
    assert_eq!(outcome.names(), ["Progress", "Progress", "Progress", "StopEvent"]);
}

#[tokio::test(start_paused = true)]
async fn the_state_store_given_to_the_runner_is_used_and_returned() {
    let store = StateStore::new(Tally { seen: 10 });
    let outcome = WorkflowTestRunner::new(&pipeline())
        .state(store.clone())
        .run(StartEvent::new())
        .await;
    assert_eq!(outcome.result.as_ref().expect("run").result, 13);
    assert_eq!(store.get::<Tally>().await.unwrap().seen, 13);
    assert_eq!(outcome.state.get::<Tally>().await.unwrap().seen, 13);
}

#[tokio::test(start_paused = true)]
async fn failures_are_recorded_not_raised() {
    let wf = Workflow::builder("fails")
        .step_with(
            StepConfig::new("flaky").retry(RetryPolicy::fixed(2, Duration::from_secs(1))),
            |_: StartEvent| async { Err::<StopEvent, _>(StepError::msg("always")) },
        )
        .build()
        .expect("valid workflow");
    let outcome = WorkflowTestRunner::new(&wf)
        .internal_events(false)
        .run(StartEvent::new())
        .await;
    assert!(matches!(outcome.result, Err(RunError::StepFailed { attempts: 2, .. })));
    let failed = outcome.events_of::<WorkflowFailed>();
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].step.as_str(), failed[0].attempts), ("flaky", 2));
    assert_eq!(outcome.names(), ["WorkflowFailed"]);
}

#[tokio::test(start_paused = true)]
async fn run_responding_answers_input_requests() {
    let wf = Workflow::builder("interview")
        .step("ask", |ctx: Context, _: StartEvent| async move {
            let mut answers = Vec::new();
            for question in ["name?", "quest?", "colour?"] {
                let wait = WaitFor::<HumanResponseEvent>::new()
                    .id(question)
                    .timeout(Duration::from_secs(60))
                    .publish(InputRequiredEvent::new(question));
                answers.push(ctx.wait_for_event(wait).await.map_err(StepError::new)?.response);
            }
            Ok::<_, StepError>(StopEvent::new(answers))
        })
        .build()
        .expect("valid workflow");
    let outcome = WorkflowTestRunner::new(&wf)
        .run_responding(StartEvent::new(), |ev| {
            let request = ev.downcast_ref::<InputRequiredEvent>()?;
            let answer = match request.prompt.as_str() {
                "name?" => "Arthur",
                "quest?" => "the Grail",
                _ => "blue",
            };
            Some(HumanResponseEvent::new(answer).into())
        })
        .await;
    assert_eq!(
        outcome.result.as_ref().expect("run").result,
        serde_json::json!(["Arthur", "the Grail", "blue"])
    );
    assert_eq!(outcome.count_of::<InputRequiredEvent>(), 3);
    assert_eq!(outcome.count_of::<WorkflowIdle>(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_request_times_out_on_the_paused_clock() {
    let wf = Workflow::builder("unanswered")
        .step("ask", |ctx: Context, _: StartEvent| async move {
            let wait = WaitFor::<HumanResponseEvent>::new()
                .timeout(Duration::from_secs(3600))
                .publish(InputRequiredEvent::new("anyone?"));
            let answer = ctx.wait_for_event(wait).await.map_err(StepError::new)?;
            Ok::<_, StepError>(StopEvent::new(answer.response))
        })
        .build()
        .expect("valid workflow");
    let started = tokio::time::Instant::now();
    let outcome = WorkflowTestRunner::new(&wf).run(StartEvent::new()).await;
    assert!(outcome.result.is_err());
    assert_eq!(started.elapsed(), Duration::from_secs(3600));
    assert_eq!(outcome.count_of::<WorkflowFailed>(), 1);
}
