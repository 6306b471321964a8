//! The anchor's smaller fields: `WorkflowFailed::elapsed_secs`,
//! `UnhandledEvent::idle`, `StepFailed::failed_at` and `cause`, and
//! user-written retry policies.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::durable::{finish, paused_runtime};
use common::*;
use stepwise::retry::{Retry, RetryPolicy, RetryState};
use stepwise::store::MemoryStore;
use stepwise::{
    CatchErrors, Context, HumanResponseEvent, Journal, RunError, RunOptions, StartEvent, StepConfig, StepError,
    StepFailed, StopEvent, UnhandledEvent, WaitFor, Workflow, WorkflowFailed,
};

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(start_paused = true)]
async fn workflow_failed_carries_the_run_time_until_the_failure() {
    let wf = Workflow::builder("late-failure")
        .step("work", |_: StartEvent| async {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            Err::<StopEvent, _>(StepError::msg("gave up"))
        })
        .build()
        .unwrap();
    let handle = wf.run(StartEvent::new());
    let stream = handle.stream_events().unwrap();
    assert!(matches!(settle(handle).await, Err(RunError::StepFailed { .. })));
    let failed = of_type::<WorkflowFailed>(&drain(stream).await);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].elapsed_secs, 2.5);
}

#[tokio::test(start_paused = true)]
async fn unhandled_event_says_whether_the_run_was_idle() {
    let wf = Workflow::builder("idle")
        .step_with(StepConfig::new("ask"), |ctx: Context, _: StartEvent| async move {
            // Nothing accepts `Pong`: unhandled while this step runs.
            ctx.send_event(Pong(1));
            let answer = ctx
                .wait_for_event(WaitFor::<HumanResponseEvent>::new())
                .await
                .map_err(StepError::new)?;
            Ok::<_, StepError>(StopEvent::new(answer.response))
        })
        .event::<Ping>()
        .event::<Pong>()
        .build()
        .unwrap();
    let handle = wf.run(StartEvent::new());
    let stream = handle.stream_events().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The run waits for an answer: an event nothing accepts finds it idle.
    handle.send_event(Ping(2)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.send_event(HumanResponseEvent::new("ok")).unwrap();
    assert_eq!(settle(handle).await.unwrap().result, "ok");
    let unhandled = of_type::<UnhandledEvent>(&drain(stream).await);
    let seen: Vec<(&str, bool)> = unhandled.iter().map(|u| (u.event.as_str(), u.idle)).collect();
    assert_eq!(seen, [("Pong", false), ("Ping", true)]);
}

#[derive(Debug, PartialEq)]
struct Quota {
    left: u32,
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "quota exhausted ({} left)", self.left)
    }
}

impl std::error::Error for Quota {}

#[tokio::test]
async fn step_failed_carries_the_wall_clock_time_and_the_typed_error() {
    let received: Arc<Mutex<Option<StepFailed>>> = Arc::default();
    let wf = {
        let received = received.clone();
        Workflow::builder("typed")
            .step("work", |_: StartEvent| async {
                Err::<StopEvent, _>(StepError::new(Quota { left: 0 }))
            })
            .step_with(
                StepConfig::new("rescue").catch_errors(CatchErrors::all()),
                move |ev: StepFailed| {
                    let received = received.clone();
                    async move {
                        *received.lock().unwrap() = Some(ev);
                        StopEvent::new("rescued")
                    }
                },
            )
            .build()
            .unwrap()
    };
    let before = wall_ms();
    assert_eq!(settle(wf.run(StartEvent::new())).await.unwrap().result, "rescued");
    let after = wall_ms();
    let failed = received.lock().unwrap().take().unwrap();
    assert!(
        (before..=after).contains(&failed.failed_at),
        "{before} ≤ {} ≤ {after}",
        failed.failed_at
    );
    let cause = failed.source.as_ref().expect("the error itself");
    assert_eq!(cause.downcast_ref::<Quota>(), Some(&Quota { left: 0 }));
    assert_eq!(failed.error, "quota exhausted (0 left)");
}

#[test]
fn events_stored_before_the_new_fields_still_decode() {
    let failed: WorkflowFailed = serde_json::from_str(r#"{"step":"s","error":"e","attempts":1}"#).unwrap();
    assert_eq!(failed.elapsed_secs, 0.0);
    let unhandled: UnhandledEvent = serde_json::from_str(r#"{"event":"Ping","target_step":null}"#).unwrap();
    assert!(!unhandled.idle);
    let step: StepFailed = serde_json::from_str(
        r#"{"step":"s","input_event_name":"StartEvent","input_event":{},"error":"e","panicked":false,"attempts":1,"elapsed_secs":0.0}"#,
    )
    .unwrap();
    assert_eq!(step.failed_at, 0);
    assert!(step.source.is_none());
}

#[test]
fn a_resumed_handler_gets_the_same_failed_at() {
    let seen: Log<(u64, bool)> = Log::new();
    let wf = {
        let seen = seen.clone();
        Workflow::builder("resumed-failure")
            .step("work", |_: StartEvent| async {
                Err::<StopEvent, _>(StepError::new(Quota { left: 1 }))
            })
            .step_with(
                StepConfig::new("rescue").catch_errors(CatchErrors::all()),
                move |ctx: Context, ev: StepFailed| {
                    let seen = seen.clone();
                    async move {
                        seen.push((
                            ev.failed_at,
                            ev.source.and_then(|c| c.downcast_ref::<Quota>().map(|_| ())).is_some(),
                        ));
                        let answer = ctx
                            .wait_for_event(WaitFor::<HumanResponseEvent>::new())
                            .await
                            .map_err(StepError::new)?;
                        Ok::<_, StepError>(StopEvent::new(answer.response))
                    }
                },
            )
            .build()
            .unwrap()
    };
    let store = MemoryStore::new();
    let rt = paused_runtime();
    let run_id = rt.block_on(async {
        let journal = Journal::new(store.clone());
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        tokio::time::sleep(Duration::from_secs(1)).await;
        journal.flush().await.unwrap();
        handle.run_id().to_owned()
    });
    rt.shutdown_background();
    std::thread::sleep(Duration::from_millis(5));
    paused_runtime().block_on(async {
        let journal = Journal::new(store.clone());
        let handle = wf.resume(&journal, &run_id).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        handle.send_event(HumanResponseEvent::new("done")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, "done");
    });
    let seen = seen.get();
    assert_eq!(seen.len(), 2, "the handler ran before the crash and again after it");
    assert_eq!(seen[0].0, seen[1].0, "failed_at comes from the journal, not the resume");
    assert!(seen[0].0 > 0);
    // The original error is in memory only: after the resume it is rebuilt
    // from its message.
    assert_eq!((seen[0].1, seen[1].1), (true, false));
}

/// Waits 1 s, 2 s, 3 s …; gives up after `max` failures; never retries a
/// `Quota` error.
struct Linear {
    max: u32,
}

impl Retry for Linear {
    fn retries(&self, error: &StepError) -> bool {
        error.downcast_ref::<Quota>().is_none()
    }

    fn next_delay(&self, state: &RetryState<'_>) -> Option<Duration> {
        (state.attempts < self.max).then(|| Duration::from_secs(u64::from(state.attempts)))
    }
}

fn flaky(policy: impl Retry, starts: Log<()>, quota: bool) -> Workflow {
    Workflow::builder("flaky")
        .step_with(StepConfig::new("call").retry(policy), move |_: StartEvent| {
            let starts = starts.clone();
            async move {
                starts.push(());
                if quota {
                    return Err::<StopEvent, _>(StepError::new(Quota { left: 0 }));
                }
                Err(StepError::msg("down"))
            }
        })
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_user_written_retry_policy_decides_the_waits_and_the_end() {
    let starts = Log::new();
    let began = tokio::time::Instant::now();
    let wf = flaky(Linear { max: 4 }, starts.clone(), false);
    let Err(RunError::StepFailed { attempts, .. }) = settle(wf.run(StartEvent::new())).await else {
        panic!("the step fails for good");
    };
    assert_eq!(attempts, 4);
    // 1 + 2 + 3 s of waiting between four attempts.
    assert_eq!(began.elapsed(), Duration::from_secs(6));
    assert_eq!(starts.len(), 4);

    // `retries` sees the typed error: a `Quota` error is not retried.
    let starts = Log::new();
    let wf = flaky(RetryPolicy::custom(Linear { max: 4 }), starts.clone(), true);
    let Err(RunError::StepFailed { attempts, .. }) = settle(wf.run(StartEvent::new())).await else {
        panic!("the step fails for good");
    };
    assert_eq!((attempts, starts.len()), (1, 1));
}

struct Retried;

#[stepwise::workflow]
impl Retried {
    #[stepwise::step(retry = Linear { max: 3 })]
    async fn call(&self, ctx: &Context, _ev: StartEvent) -> Result<StopEvent, StepError> {
        if ctx.retry_info().attempt < 3 {
            return Err(StepError::msg("not yet"));
        }
        Ok(StopEvent::new(ctx.retry_info().attempt))
    }
}

#[tokio::test(start_paused = true)]
async fn the_step_macro_takes_a_user_written_policy() {
    use stepwise::WorkflowDefinition;
    let wf = Retried.build().unwrap();
    let began = tokio::time::Instant::now();
    assert_eq!(settle(wf.run(StartEvent::new())).await.unwrap().result, 3);
    assert_eq!(began.elapsed(), Duration::from_secs(3));
}
