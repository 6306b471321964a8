//! Error handlers: what a handler receives, what it may do (stop, route,
//! fail), the per-lineage recovery budget, which handler owns which step,
//! and the build-time checks on handler declarations.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::testing::WorkflowTestRunner;
use stepwise::{
    CatchErrors, Context, Event, RetryPolicy, RunError, StartEvent, StepConfig, StepError, StepFailed, StopEvent,
    ValidationIssue, Workflow, WorkflowFailed,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
struct Job {
    id: u32,
    recovered: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
struct Fallback {
    reason: String,
}

#[derive(Debug, thiserror::Error)]
#[error("job {0} exploded")]
struct Exploded(u32);

fn job(id: u32) -> Job {
    Job { id, recovered: false }
}

#[tokio::test(start_paused = true)]
async fn the_handler_receives_the_failure_with_its_input_error_attempts_and_elapsed() {
    let received: Arc<Mutex<Option<StepFailed>>> = Arc::default();
    let keep = Arc::clone(&received);
    let wf = Workflow::builder("recover")
        .step("start", |_: StartEvent| async { job(42) })
        .step_with(
            StepConfig::new("work").retry(RetryPolicy::fixed(3, Duration::from_secs(2))),
            |j: Job| async move {
                tokio::time::sleep(Duration::from_millis(250)).await;
                Err::<StopEvent, _>(Exploded(j.id))
            },
        )
        .step_with(
            StepConfig::new("rescue").catch_errors(CatchErrors::all()),
            move |failed: StepFailed| {
                let keep = Arc::clone(&keep);
                async move {
                    let text = format!("{} gave up: {}", failed.step, failed.error);
                    *keep.lock().unwrap() = Some(failed);
                    StopEvent::new(text)
                }
            },
        )
        .build()
        .expect("valid workflow");
    let stop = wf.run(StartEvent::new()).await.expect("recovered");
    assert_eq!(stop.result, "work gave up: job 42 exploded");
    let failed = received.lock().unwrap().take().expect("handler ran");
    assert_eq!(failed.step, "work");
    assert_eq!(failed.attempts, 3, "retries are exhausted before the handler runs");
    // 3 × 250 ms of work plus 2 × 2 s of waiting, on the run clock.
    assert_eq!(failed.elapsed_secs, 4.75);
    assert!(!failed.panicked);
    assert_eq!(failed.input_event_name, "Job");
    assert_eq!(failed.input_event, serde_json::json!({"id": 42, "recovered": false}));
    assert_eq!(failed.input_as::<Job>(), Some(job(42)));
    assert_eq!(failed.input_as::<Fallback>(), None);

    // Without the in-memory original, the input is decoded from its JSON.
    let decoded = StepFailed { input: None, ..failed };
    assert_eq!(decoded.input_as::<Job>(), Some(job(42)));
}

#[tokio::test]
async fn a_panic_reaches_the_handler_too() {
    let wf = Workflow::builder("panic")
        .step("work", |_: StartEvent| async {
            if true {
                panic!("kaboom");
            }
            StopEvent::new("unreachable")
        })
        .step_with(
            StepConfig::new("rescue").catch_errors(CatchErrors::for_steps(["work"])),
            |failed: StepFailed| async move { StopEvent::new((failed.panicked, failed.attempts, failed.error)) },
        )
        .build()
        .expect("valid workflow");
    let stop = wf.run(StartEvent::new()).await.expect("recovered");
    assert_eq!(stop.result, serde_json::json!([true, 1, "step panicked: kaboom"]));
}

#[tokio::test]
async fn the_handler_can_route_to_another_step() {
    let wf = Workflow::builder("route")
        .step("work", |_: StartEvent| async {
            Err::<StopEvent, _>(StepError::msg("primary down"))
        })
        .step_with(
            StepConfig::new("rescue").catch_errors(CatchErrors::all()),
            |failed: StepFailed| async move { Fallback { reason: failed.error } },
        )
        .step("fallback", |ev: Fallback| async move {
            StopEvent::new(format!("fallback after: {}", ev.reason))
        })
        .build()
        .expect("valid workflow");
    let outcome = WorkflowTestRunner::new(&wf).run(StartEvent::new()).await;
    assert_eq!(
        outcome.result.as_ref().expect("recovered").result,
        "fallback after: primary down"
    );
    assert_eq!(outcome.count_of::<WorkflowFailed>(), 0);
}

#[tokio::test]
async fn a_failing_handler_fails_the_run_under_its_own_name() {
    let wf = Workflow::builder("handler_fails")
        .step("work", |_: StartEvent| async {
            Err::<StopEvent, _>(StepError::msg("first failure"))
        })
        .step_with(
            StepConfig::new("rescue").catch_errors(CatchErrors::all()),
            |failed: StepFailed| async move {
                Err::<StopEvent, _>(StepError::msg(format!("cannot recover from: {}", failed.error)))
            },
        )
        .build()
        .expect("valid workflow");
    let outcome = WorkflowTestRunner::new(&wf).run(StartEvent::new()).await;
    let err = outcome.result.as_ref().expect_err("handler failed");
    let RunError::StepFailed { step, source, .. } = err else {
        panic!("{err}")
    };
    assert_eq!(step, "rescue");
    assert_eq!(source.to_string(), "cannot recover from: first failure");
    let failed = outcome.events_of::<WorkflowFailed>();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].step, "rescue");
}

/// `work` fails every job; the handler sends the job back for another go.
/// The recovered path fails again, so only the budget ends the loop.
fn looping(budget: Option<u32>, handled: Arc<AtomicU32>, worked: Arc<AtomicU32>) -> Workflow {
    let catch = match budget {
        Some(n) => CatchErrors::all().max_recoveries(n),
        None => CatchErrors::all(),
    };
    Workflow::builder("loop")
        .step("start", |_: StartEvent| async { job(1) })
        .step("work", move |j: Job| {
            worked.fetch_add(1, Ordering::SeqCst);
            async move { Err::<StopEvent, _>(Exploded(j.id)) }
        })
        .step_with(
            StepConfig::new("again").catch_errors(catch),
            move |failed: StepFailed| {
                handled.fetch_add(1, Ordering::SeqCst);
                async move {
                    let mut j: Job = failed.input_as().expect("a Job failed");
                    j.recovered = true;
                    j
                }
            },
        )
        .build()
        .expect("valid workflow")
}

#[tokio::test]
async fn the_recovery_budget_stops_a_loop() {
    for (budget, recoveries) in [(None, 1), (Some(1), 1), (Some(2), 2), (Some(5), 5)] {
        let (handled, worked) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let wf = looping(budget, Arc::clone(&handled), Arc::clone(&worked));
        let err = wf
            .run(StartEvent::new())
            .await
            .expect_err("the loop must end in failure");
        let RunError::StepFailed { step, source, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(step, "work", "the step whose failure exhausted the budget");
        assert!(source.downcast_ref::<Exploded>().is_some());
        assert_eq!(handled.load(Ordering::SeqCst), recoveries, "budget {budget:?}");
        assert_eq!(worked.load(Ordering::SeqCst), recoveries + 1, "budget {budget:?}");
    }
}

#[tokio::test]
async fn the_budget_is_per_lineage_not_per_run() {
    // Two independent jobs each fail once and are recovered once: a budget of
    // 1 covers both, because each chain of events carries its own count.
    let handled = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&handled);
    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    struct Done(u32);
    let wf = Workflow::builder("lineages")
        .step("start", |_: StartEvent| async { vec![job(1), job(2)] })
        .step("work", |j: Job| async move {
            if j.recovered {
                Ok(Done(j.id))
            } else {
                Err(Exploded(j.id))
            }
        })
        .step_with(
            StepConfig::new("again").catch_errors(CatchErrors::for_steps(["work"])),
            move |failed: StepFailed| {
                count.fetch_add(1, Ordering::SeqCst);
                async move {
                    let mut j: Job = failed.input_as().expect("a Job failed");
                    j.recovered = true;
                    j
                }
            },
        )
        .step("finish", |ctx: Context, done: Done| async move {
            let all = ctx.collect_n(&done, 2)?;
            let mut ids: Vec<u32> = all.iter().map(|d| d.0).collect();
            ids.sort();
            Some(StopEvent::new(ids))
        })
        .build()
        .expect("valid workflow");
    let stop = wf.run(StartEvent::new()).await.expect("both recovered");
    assert_eq!(stop.result, serde_json::json!([1, 2]));
    assert_eq!(handled.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn events_sent_by_the_handler_carry_its_budget_too() {
    // The handler re-sends the job with `ctx.send_event` instead of returning it.
    let handled = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&handled);
    let wf = Workflow::builder("sent")
        .step("start", |_: StartEvent| async { job(1) })
        .step("work", |j: Job| async move { Err::<StopEvent, _>(Exploded(j.id)) })
        .step_with(
            StepConfig::new("again")
                .catch_errors(CatchErrors::all().max_recoveries(3))
                .emits::<Job>(),
            move |ctx: Context, failed: StepFailed| {
                count.fetch_add(1, Ordering::SeqCst);
                async move {
                    ctx.send_event(failed.input_as::<Job>().expect("a Job failed"));
                }
            },
        )
        .build()
        .expect("valid workflow");
    let err = wf.run(StartEvent::new()).await.expect_err("loop ends");
    assert!(
        matches!(&err, RunError::StepFailed { step, .. } if step == "work"),
        "{err}"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_scoped_handler_wins_over_the_catch_all() {
    let wf = |which: &'static str| {
        Workflow::builder("scoped")
            .step("a", move |ev: StartEvent| async move {
                match ev.get::<String>("fail").ok().as_deref() {
                    Some("a") => Err(StepError::msg("a failed")),
                    _ => Ok(Job {
                        id: 1,
                        recovered: false,
                    }),
                }
            })
            .step("b", move |_: Job| async move {
                Err::<StopEvent, _>(StepError::msg("b failed"))
            })
            .step_with(
                StepConfig::new("for_a").catch_errors(CatchErrors::for_steps(["a"])),
                |f: StepFailed| async move { StopEvent::new(format!("for_a handled {}", f.step)) },
            )
            .step_with(
                StepConfig::new("everything").catch_errors(CatchErrors::all()),
                |f: StepFailed| async move { StopEvent::new(format!("everything handled {}", f.step)) },
            )
            .build()
            .expect("valid workflow")
            .run(StartEvent::new().with("fail", which))
    };
    assert_eq!(wf("a").await.expect("recovered").result, "for_a handled a");
    assert_eq!(wf("b").await.expect("recovered").result, "everything handled b");
}

#[tokio::test]
async fn a_step_no_handler_covers_fails_the_run() {
    let wf = Workflow::builder("uncovered")
        .step("a", |_: StartEvent| async {
            Job {
                id: 1,
                recovered: false,
            }
        })
        .step("b", |_: Job| async { Err::<StopEvent, _>(StepError::msg("b failed")) })
        .step_with(
            StepConfig::new("for_a").catch_errors(CatchErrors::for_steps(["a"])),
            |_: StepFailed| async { StopEvent::new("handled") },
        )
        .build()
        .expect("valid workflow");
    let err = wf.run(StartEvent::new()).await.expect_err("b is not covered");
    assert!(
        matches!(&err, RunError::StepFailed { step, .. } if step == "b"),
        "{err}"
    );
}

#[test]
fn step_info_shows_the_handler_declaration() {
    let wf = Workflow::builder("info")
        .step("work", |_: StartEvent| async { StopEvent::new(1) })
        .step_with(
            StepConfig::new("rescue").catch_errors(CatchErrors::for_steps(["work"]).max_recoveries(4)),
            |_: StepFailed| async { StopEvent::new(0) },
        )
        .build()
        .expect("valid workflow");
    let steps = wf.steps();
    let catch = steps[1].catch_errors.as_ref().expect("a handler");
    assert_eq!(catch.steps(), Some(&["work".to_owned()][..]));
    assert_eq!(catch.recoveries(), 4);
    assert!(steps[0].catch_errors.is_none());
    assert_eq!(CatchErrors::all().steps(), None);
    assert_eq!(CatchErrors::all().recoveries(), 1);
}

// ------------------------------------------------------------ validation

fn base() -> stepwise::WorkflowBuilder {
    Workflow::builder("handlers")
        .step("work", |_: StartEvent| async {
            Job {
                id: 1,
                recovered: false,
            }
        })
        .step("finish", |_: Job| async { StopEvent::new("done") })
}

fn handler(name: &str, catch: CatchErrors) -> (StepConfig, fn(StepFailed) -> std::future::Ready<StopEvent>) {
    (StepConfig::new(name).catch_errors(catch), |_| {
        std::future::ready(StopEvent::new("handled"))
    })
}

fn issues(builder: stepwise::WorkflowBuilder) -> Vec<ValidationIssue> {
    let err = builder.build().expect_err("invalid handlers");
    assert!(!err.to_string().is_empty());
    err.issues
}

#[test]
fn a_handler_must_accept_step_failed() {
    let found = issues(base().step_with(
        StepConfig::new("rescue").catch_errors(CatchErrors::all()),
        |_: Job| async { StopEvent::new("not a handler") },
    ));
    let want = ValidationIssue::HandlerRejectsStepFailed {
        handler: "rescue".into(),
    };
    assert!(found.contains(&want), "{found:?}");
    assert!(want.to_string().contains("`rescue`") && want.to_string().contains("StepFailed"));
}

#[test]
fn a_handler_needs_a_budget_of_at_least_one() {
    let (config, body) = handler("rescue", CatchErrors::all().max_recoveries(0));
    let found = issues(base().step_with(config, body));
    assert_eq!(
        found,
        [ValidationIssue::ZeroRecoveries {
            handler: "rescue".into()
        }]
    );
}

#[test]
fn at_most_one_catch_all_handler() {
    let (c1, b1) = handler("first", CatchErrors::all());
    let (c2, b2) = handler("second", CatchErrors::all());
    let found = issues(base().step_with(c1, b1).step_with(c2, b2));
    assert_eq!(
        found,
        [ValidationIssue::SeveralCatchAllHandlers {
            handlers: vec!["first".into(), "second".into()]
        }]
    );
    assert!(found[0].to_string().contains("`first`, `second`"), "{}", found[0]);
}

#[test]
fn a_handler_must_name_existing_steps() {
    let (config, body) = handler("rescue", CatchErrors::for_steps(["work", "wrok"]));
    let found = issues(base().step_with(config, body));
    assert_eq!(
        found,
        [ValidationIssue::UnknownHandledStep {
            handler: "rescue".into(),
            step: "wrok".into()
        }]
    );
    assert!(found[0].to_string().contains("`wrok`"));
}

#[test]
fn a_handler_cannot_cover_another_handler() {
    let (c1, b1) = handler("outer", CatchErrors::for_steps(["inner"]));
    let (c2, b2) = handler("inner", CatchErrors::for_steps(["work"]));
    let found = issues(base().step_with(c1, b1).step_with(c2, b2));
    assert_eq!(
        found,
        [ValidationIssue::HandlerCoversHandler {
            handler: "outer".into(),
            step: "inner".into()
        }]
    );
}

#[test]
fn a_step_cannot_be_claimed_by_two_handlers() {
    let (c1, b1) = handler("one", CatchErrors::for_steps(["work"]));
    let (c2, b2) = handler("two", CatchErrors::for_steps(["finish", "work"]));
    let found = issues(base().step_with(c1, b1).step_with(c2, b2));
    assert_eq!(
        found,
        [ValidationIssue::StepClaimedTwice {
            step: "work".into(),
            handlers: ("one".into(), "two".into())
        }]
    );
    assert!(found[0].to_string().contains("`one` and `two`"), "{}", found[0]);
}

#[test]
fn every_handler_problem_is_reported_at_once() {
    let (c1, b1) = handler("a", CatchErrors::all().max_recoveries(0));
    let (c2, b2) = handler("b", CatchErrors::all());
    let (c3, b3) = handler("c", CatchErrors::for_steps(["ghost"]));
    let found = issues(base().step_with(c1, b1).step_with(c2, b2).step_with(c3, b3));
    assert_eq!(found.len(), 3, "{found:?}");
}

#[test]
fn a_scoped_and_a_catch_all_handler_are_fine_together() {
    let (c1, b1) = handler("scoped", CatchErrors::for_steps(["work"]));
    let (c2, b2) = handler("all", CatchErrors::all());
    base()
        .step_with(c1, b1)
        .step_with(c2, b2)
        .build()
        .expect("valid workflow");
}
