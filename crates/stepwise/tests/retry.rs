//! Retries: attempt counts and delays exactly as configured (on tokio's
//! paused clock), seeded jitter, stop conditions, retry predicates,
//! `ctx.retry_info()`, and collect sets given back to a retried step.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::retry::{RetryIf, Stop, Wait};
use stepwise::{
    Context, Event, RetryPolicy, RunError, RunOptions, StartEvent, StepConfig, StepError, StopEvent, StreamExt,
    Workflow, WorkflowFailed,
};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// When each attempt started, relative to the test's start.
type Starts = Arc<Mutex<Vec<Duration>>>;

/// A workflow whose only step fails its first `failures` attempts (forever
/// when `None`), recording when each attempt started.
fn flaky(policy: RetryPolicy, failures: Option<usize>, starts: Starts, origin: Instant) -> Workflow {
    Workflow::builder("flaky")
        .step_with(StepConfig::new("call").retry(policy), move |_: StartEvent| {
            let starts = Arc::clone(&starts);
            async move {
                let attempt = {
                    let mut starts = starts.lock().unwrap();
                    starts.push(origin.elapsed());
                    starts.len()
                };
                match failures {
                    Some(n) if attempt > n => Ok(StopEvent::new(attempt)),
                    _ => Err(StepError::msg(format!("attempt {attempt} failed"))),
                }
            }
        })
        .build()
        .expect("valid workflow")
}

/// Runs `policy` on a step that always fails; returns the delays between
/// attempts and the run's error.
async fn delays_of(policy: RetryPolicy, options: RunOptions) -> (Vec<Duration>, RunError) {
    let starts: Starts = Arc::default();
    let origin = Instant::now();
    let wf = flaky(policy, None, Arc::clone(&starts), origin);
    let err = wf.run_with(StartEvent::new(), options).await.expect_err("always fails");
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts[0], Duration::ZERO, "the first attempt starts at once");
    (starts.windows(2).map(|w| w[1] - w[0]).collect(), err)
}

fn attempts_of(err: &RunError) -> u32 {
    match err {
        RunError::StepFailed { attempts, .. } => *attempts,
        other => panic!("expected a step failure, got {other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn fixed_waits_and_attempt_count_are_exact() {
    let started = Instant::now();
    let (delays, err) = delays_of(RetryPolicy::fixed(4, 100 * MS), RunOptions::new()).await;
    assert_eq!(delays, [100 * MS; 3], "4 attempts in total: the first try counts");
    assert_eq!(attempts_of(&err), 4);
    assert_eq!(started.elapsed(), 300 * MS);
    let RunError::StepFailed { step, source, .. } = &err else {
        unreachable!()
    };
    assert_eq!(step, "call");
    assert_eq!(source.to_string(), "attempt 4 failed", "the last error is reported");
}

#[tokio::test(start_paused = true)]
async fn the_default_policy_is_three_attempts_five_seconds_apart() {
    let (delays, err) = delays_of(RetryPolicy::new(), RunOptions::new()).await;
    assert_eq!(delays, [Duration::from_secs(5); 2]);
    assert_eq!(attempts_of(&err), 3);
}

#[tokio::test(start_paused = true)]
async fn exponential_waits_double_up_to_the_cap() {
    let policy = RetryPolicy::new()
        .stop(Stop::after_attempts(6))
        .wait(Wait::exponential(100 * MS).max(500 * MS));
    let (delays, err) = delays_of(policy, RunOptions::new()).await;
    assert_eq!(delays, [100 * MS, 200 * MS, 400 * MS, 500 * MS, 500 * MS]);
    assert_eq!(attempts_of(&err), 6);

    let policy = RetryPolicy::new()
        .stop(Stop::after_attempts(4))
        .wait(Wait::exponential(10 * MS).base(3.0).min(20 * MS));
    let (delays, _) = delays_of(policy, RunOptions::new()).await;
    assert_eq!(delays, [20 * MS, 30 * MS, 90 * MS], "floor, then 10·3^n");
}

#[tokio::test(start_paused = true)]
async fn chained_waits_use_one_entry_per_attempt_and_repeat_the_last() {
    let policy = RetryPolicy::new().stop(Stop::after_attempts(6)).wait(Wait::chain([
        Wait::fixed(10 * MS),
        Wait::fixed(50 * MS),
        Wait::fixed(200 * MS),
    ]));
    let (delays, _) = delays_of(policy, RunOptions::new()).await;
    assert_eq!(delays, [10 * MS, 50 * MS, 200 * MS, 200 * MS, 200 * MS]);
}

#[tokio::test(start_paused = true)]
async fn incrementing_and_summed_waits() {
    let policy = RetryPolicy::new()
        .stop(Stop::after_attempts(5))
        .wait(Wait::incrementing(10 * MS, 20 * MS).max(45 * MS) + Wait::fixed(5 * MS));
    let (delays, _) = delays_of(policy, RunOptions::new()).await;
    assert_eq!(delays, [15 * MS, 35 * MS, 50 * MS, 50 * MS]);
}

#[tokio::test(start_paused = true)]
async fn jitter_is_seeded_from_the_run_id_step_and_attempt() {
    let policy = || {
        RetryPolicy::new()
            .stop(Stop::after_attempts(5))
            .wait(Wait::fixed(100 * MS) + Wait::random(Duration::ZERO, Duration::from_secs(1)))
    };
    let (x1, _) = delays_of(policy(), RunOptions::new().run_id("x")).await;
    let (x2, _) = delays_of(policy(), RunOptions::new().run_id("x")).await;
    let (y, _) = delays_of(policy(), RunOptions::new().run_id("y")).await;
    assert_eq!(x1.len(), 4);
    for d in x1.iter().chain(&y) {
        // The timer wheel fires on whole milliseconds, so allow 1 ms of rounding up.
        assert!(*d >= 100 * MS && *d <= 1101 * MS, "{d:?} outside the configured range");
    }
    assert_eq!(x1, x2, "same run id: a replay makes the same choices");
    assert_ne!(x1, y, "another run id: other delays");
    let mut distinct = x1.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 1, "the attempt number is part of the seed: {x1:?}");

    let jittered = || {
        RetryPolicy::new()
            .stop(Stop::after_attempts(4))
            .wait(Wait::exponential_jitter(100 * MS, 50 * MS))
    };
    let (a, _) = delays_of(jittered(), RunOptions::new().run_id("x")).await;
    let (b, _) = delays_of(jittered(), RunOptions::new().run_id("x")).await;
    assert_eq!(a, b);
    for (d, base) in a.iter().zip([100 * MS, 200 * MS, 400 * MS]) {
        assert!(*d >= base && *d <= base + 51 * MS, "{d:?} vs {base:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn stop_after_delay_uses_the_run_clock() {
    let started = Instant::now();
    let policy = RetryPolicy::new()
        .stop(Stop::after_delay(Duration::from_secs(3)))
        .wait(Wait::fixed(Duration::from_secs(1)));
    let (delays, err) = delays_of(policy, RunOptions::new()).await;
    // Failures at 0, 1, 2 s are retried; the one at 3 s is not.
    assert_eq!(delays, [Duration::from_secs(1); 3]);
    assert_eq!(attempts_of(&err), 4);
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn stop_conditions_compose() {
    // Whichever comes first: 3 attempts.
    let policy = RetryPolicy::new()
        .stop(Stop::after_attempts(3) | Stop::after_delay(Duration::from_secs(60)))
        .wait(Wait::fixed(Duration::from_secs(1)));
    assert_eq!(attempts_of(&delays_of(policy, RunOptions::new()).await.1), 3);

    // Both: 3 attempts are not enough while less than 5 s have passed.
    let policy = RetryPolicy::new()
        .stop(Stop::after_attempts(3) & Stop::after_delay(Duration::from_secs(5)))
        .wait(Wait::fixed(Duration::from_secs(1)));
    assert_eq!(attempts_of(&delays_of(policy, RunOptions::new()).await.1), 6);

    // Before delay: give up when the next attempt would start at 2.5 s or later.
    let policy = RetryPolicy::new()
        .stop(Stop::before_delay(2500 * MS))
        .wait(Wait::fixed(Duration::from_secs(1)));
    let (delays, err) = delays_of(policy, RunOptions::new()).await;
    assert_eq!(delays.len(), 2);
    assert_eq!(attempts_of(&err), 3);
}

#[tokio::test(start_paused = true)]
async fn a_step_that_recovers_returns_its_result() {
    let starts: Starts = Arc::default();
    let wf = flaky(
        RetryPolicy::fixed(5, 10 * MS),
        Some(2),
        Arc::clone(&starts),
        Instant::now(),
    );
    let handle = wf.run(StartEvent::new());
    let mut stream = handle.stream_events().unwrap();
    let mut failed = 0;
    while let Some(ev) = stream.next().await {
        failed += usize::from(ev.is::<WorkflowFailed>());
    }
    let stop = handle.await.expect("third attempt succeeds");
    assert_eq!(stop.result, 3);
    assert_eq!(*starts.lock().unwrap(), [Duration::ZERO, 10 * MS, 20 * MS]);
    assert_eq!(failed, 0, "retried failures are not run failures");
}

#[derive(Debug, thiserror::Error)]
#[error("transient: {0}")]
struct Transient(u32);

#[derive(Debug, thiserror::Error)]
#[error("fatal")]
struct Fatal;

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Transient(#[from] Transient),
    #[error(transparent)]
    Fatal(#[from] Fatal),
}

/// A step failing with the errors of `plan`, in order, then succeeding.
fn planned(policy: RetryPolicy, plan: Vec<bool>) -> (Workflow, Starts) {
    let starts: Starts = Arc::default();
    let origin = Instant::now();
    let record = Arc::clone(&starts);
    let wf = Workflow::builder("planned")
        .step_with(StepConfig::new("call").retry(policy), move |_: StartEvent| {
            let (starts, plan) = (Arc::clone(&record), plan.clone());
            async move {
                let attempt = {
                    let mut starts = starts.lock().unwrap();
                    starts.push(origin.elapsed());
                    starts.len()
                };
                match plan.get(attempt - 1) {
                    Some(true) => Err(StepError::new(Transient(attempt as u32))),
                    Some(false) => Err(StepError::new(Fatal)),
                    None => Ok(StopEvent::new(attempt)),
                }
            }
        })
        .build()
        .expect("valid workflow");
    (wf, starts)
}

#[tokio::test(start_paused = true)]
async fn retry_if_error_type_retries_only_that_type() {
    let policy = || RetryPolicy::fixed(10, MS).retry_if(RetryIf::error_type::<Transient>());

    // Transient, transient, then success.
    let (wf, _) = planned(policy(), vec![true, true]);
    assert_eq!(wf.run(StartEvent::new()).await.expect("run").result, 3);

    // Transient is retried; Fatal is not, and ends the run at once.
    let (wf, starts) = planned(policy(), vec![true, false, true]);
    let err = wf.run(StartEvent::new()).await.expect_err("fatal");
    assert_eq!(attempts_of(&err), 2);
    assert_eq!(starts.lock().unwrap().len(), 2);
    let RunError::StepFailed { source, .. } = &err else {
        unreachable!()
    };
    assert!(source.downcast_ref::<Fatal>().is_some(), "{source:?}");

    // Fatal first: no retry at all.
    let (wf, starts) = planned(policy(), vec![false]);
    assert_eq!(attempts_of(&wf.run(StartEvent::new()).await.expect_err("fatal")), 1);
    assert_eq!(starts.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_if_predicates_compose() {
    // Only errors whose message says "transient", and never panics.
    let policy = RetryPolicy::fixed(10, MS).retry_if(RetryIf::message_contains("transient") & RetryIf::panics(false));
    let (wf, _) = planned(policy, vec![true, true, true]);
    assert_eq!(wf.run(StartEvent::new()).await.expect("run").result, 4);

    // Either: transient errors, or Fatal.
    let policy = RetryPolicy::fixed(10, MS)
        .retry_if(RetryIf::error_type::<Fatal>() | RetryIf::error(|e| e.to_string().starts_with("transient")));
    let (wf, _) = planned(policy, vec![true, false, true]);
    assert_eq!(wf.run(StartEvent::new()).await.expect("run").result, 4);

    // Never.
    let (wf, starts) = planned(RetryPolicy::fixed(10, MS).retry_if(RetryIf::never()), vec![true]);
    assert_eq!(attempts_of(&wf.run(StartEvent::new()).await.expect_err("no retry")), 1);
    assert_eq!(starts.lock().unwrap().len(), 1);

    let (wf, starts) = planned(
        RetryPolicy::fixed(10, MS).retry_if(RetryIf::error_type::<Fatal>().negate()),
        vec![true, false],
    );
    assert_eq!(attempts_of(&wf.run(StartEvent::new()).await.expect_err("fatal")), 2);
    assert_eq!(starts.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_step_error_enum_is_matched_by_its_own_type() {
    // `RetryIf::error_type` sees the error the step returned: here the enum.
    let wf = Workflow::builder("enum")
        .step_with(
            StepConfig::new("call").retry(RetryPolicy::fixed(3, MS).retry_if(RetryIf::error_type::<CallError>())),
            |ctx: Context, _: StartEvent| async move {
                match ctx.retry_info().attempt {
                    1 => Err(CallError::from(Transient(1))),
                    2 => Err(CallError::from(Fatal)),
                    _ => Ok(StopEvent::new("third")),
                }
            },
        )
        .build()
        .expect("valid workflow");
    assert_eq!(wf.run(StartEvent::new()).await.expect("run").result, "third");
}

#[tokio::test(start_paused = true)]
async fn panics_are_retried_unless_excluded() {
    let body = |ctx: Context, _: StartEvent| async move {
        if ctx.retry_info().attempt < 3 {
            panic!("boom {}", ctx.retry_info().attempt);
        }
        StopEvent::new("survived")
    };
    let wf = Workflow::builder("panics")
        .step_with(StepConfig::new("call").retry(RetryPolicy::fixed(3, MS)), body)
        .build()
        .expect("valid workflow");
    assert_eq!(wf.run(StartEvent::new()).await.expect("run").result, "survived");

    let wf = Workflow::builder("panics")
        .step_with(
            StepConfig::new("call").retry(RetryPolicy::fixed(3, MS).retry_if(RetryIf::panics(false))),
            body,
        )
        .build()
        .expect("valid workflow");
    let err = wf.run(StartEvent::new()).await.expect_err("panic not retried");
    let RunError::StepFailed { source, attempts, .. } = &err else {
        panic!("{err}")
    };
    assert!(source.is_panic());
    assert_eq!(*attempts, 1);
    assert!(source.to_string().contains("boom 1"), "{source}");
}

#[tokio::test(start_paused = true)]
async fn retry_info_reports_attempt_elapsed_and_the_last_error() {
    type Seen = (u32, Duration, Option<String>, Option<Duration>);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = Arc::clone(&seen);
    let wf = Workflow::builder("info")
        .step_with(
            StepConfig::new("call").retry(RetryPolicy::fixed(5, Duration::from_secs(1))),
            move |ctx: Context, _: StartEvent| {
                let record = Arc::clone(&record);
                async move {
                    let info = ctx.retry_info();
                    record.lock().unwrap().push((
                        info.attempt,
                        info.elapsed,
                        info.last_error.map(|e| e.to_string()),
                        info.last_failed_at,
                    ));
                    // Each attempt works for 50 ms before it fails.
                    tokio::time::sleep(50 * MS).await;
                    if info.attempt < 3 {
                        return Err(StepError::msg(format!("failure {}", info.attempt)));
                    }
                    Ok(StopEvent::new(info.attempt))
                }
            },
        )
        .build()
        .expect("valid workflow");
    assert_eq!(wf.run(StartEvent::new()).await.expect("run").result, 3);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (1, Duration::ZERO, None, None),
            (2, 1050 * MS, Some("failure 1".into()), Some(50 * MS)),
            (3, 2100 * MS, Some("failure 2".into()), Some(1100 * MS)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn retry_info_outside_retries_is_the_first_attempt() {
    let wf = Workflow::builder("plain")
        .step("call", |ctx: Context, _: StartEvent| async move {
            tokio::time::sleep(MS).await;
            let info = ctx.retry_info();
            StopEvent::new((info.attempt, info.elapsed.as_millis() as u64, info.last_error.is_none()))
        })
        .build()
        .expect("valid workflow");
    let stop = wf.run(StartEvent::new()).await.expect("run");
    // Elapsed counts from the attempt's start, on the run clock.
    assert_eq!(stop.result, serde_json::json!([1, 1, true]));
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
struct Job {
    id: u32,
}

#[tokio::test(start_paused = true)]
async fn a_retry_runs_the_step_again_with_the_same_input() {
    let inputs: Arc<Mutex<Vec<(u32, u32)>>> = Arc::default();
    let record = Arc::clone(&inputs);
    let wf = Workflow::builder("same_input")
        .step("start", |_: StartEvent| async { vec![Job { id: 7 }, Job { id: 8 }] })
        .step_with(
            StepConfig::new("work").retry(RetryPolicy::fixed(3, MS)),
            move |ctx: Context, job: Job| {
                let record = Arc::clone(&record);
                async move {
                    let attempt = ctx.retry_info().attempt;
                    record.lock().unwrap().push((job.id, attempt));
                    if job.id == 8 && attempt < 3 {
                        return Err(StepError::msg("not yet"));
                    }
                    Ok(Some(StopEvent::new(job.id)).filter(|_| job.id == 8))
                }
            },
        )
        .build()
        .expect("valid workflow");
    assert_eq!(wf.run(StartEvent::new()).await.expect("run").result, 8);
    let mut inputs = inputs.lock().unwrap().clone();
    inputs.sort();
    assert_eq!(inputs, [(7, 1), (8, 1), (8, 2), (8, 3)]);
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
struct Item {
    n: u32,
}

#[tokio::test(start_paused = true)]
async fn a_retried_collector_gets_the_same_full_set_again() {
    let sets: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
    let record = Arc::clone(&sets);
    let wf = Workflow::builder("collector")
        .step_with(
            StepConfig::new("start").emits::<Item>(),
            |ctx: Context, _: StartEvent| async move {
                for n in [1, 2, 3] {
                    ctx.send_event(Item { n });
                }
            },
        )
        .step_with(
            StepConfig::new("gather")
                .num_workers(1)
                .retry(RetryPolicy::fixed(3, Duration::from_secs(1))),
            move |ctx: Context, item: Item| {
                let record = Arc::clone(&record);
                async move {
                    let Some(set) = ctx.collect_n(&item, 3) else {
                        return Ok(None);
                    };
                    let ns: Vec<u32> = set.iter().map(|i| i.n).collect();
                    record.lock().unwrap().push(ns.clone());
                    if ctx.retry_info().attempt == 1 {
                        // Fails after consuming the full set.
                        return Err(StepError::msg("lost the set?"));
                    }
                    Ok(Some(StopEvent::new(ns)))
                }
            },
        )
        // Without the set given back, the retry would wait forever for it.
        .timeout(Duration::from_secs(3600))
        .build()
        .expect("valid workflow");
    let started = Instant::now();
    let stop = wf.run(StartEvent::new()).await.expect("run");
    assert_eq!(stop.result, serde_json::json!([1, 2, 3]));
    assert_eq!(*sets.lock().unwrap(), [vec![1, 2, 3], vec![1, 2, 3]]);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_retried_typed_collector_gets_its_tuple_again() {
    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    struct A(u32);
    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    struct B(u32);
    #[derive(Debug, stepwise::EventUnion)]
    enum AOrB {
        A(A),
        B(B),
    }

    let attempts: Arc<Mutex<Vec<(u32, u32, u32)>>> = Arc::default();
    let record = Arc::clone(&attempts);
    let wf = Workflow::builder("typed_collector")
        .step("a", |_: StartEvent| async { A(10) })
        .step("b", |_: StartEvent| async { B(20) })
        .step_with(
            StepConfig::new("join").retry(RetryPolicy::fixed(4, MS)),
            move |ctx: Context, ev: AOrB| {
                let record = Arc::clone(&record);
                async move {
                    let Some((a, b)) = ctx.collect::<(A, B)>(&ev) else {
                        return Ok(None);
                    };
                    let attempt = ctx.retry_info().attempt;
                    record.lock().unwrap().push((attempt, a.0, b.0));
                    if attempt < 3 {
                        return Err(StepError::msg("again"));
                    }
                    Ok(Some(StopEvent::new(a.0 + b.0)))
                }
            },
        )
        .timeout(Duration::from_secs(3600))
        .build()
        .expect("valid workflow");
    assert_eq!(wf.run(StartEvent::new()).await.expect("run").result, 30);
    assert_eq!(*attempts.lock().unwrap(), [(1, 10, 20), (2, 10, 20), (3, 10, 20)]);
}

#[test]
fn step_info_exposes_the_policy() {
    let wf = flaky(RetryPolicy::fixed(2, MS), None, Arc::default(), Instant::now());
    let info = wf.steps();
    assert!(info[0].retry.is_some());
}
