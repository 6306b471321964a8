//! How runs end badly: timeouts, step errors, panics; and what happens to the
//! other steps when they do.

mod common;

use std::error::Error as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use stepwise::{
    RunError, RunOptions, StartEvent, StepError, StepPhase, StepStateChanged, StopEvent, Workflow, WorkflowFailed,
    WorkflowTimedOut,
};
use tokio::time::Instant;

/// Start emits `Go`; `zeta` and `alpha` (defined in that order) take an hour each.
fn two_sleepers(timeout: Option<Duration>) -> Workflow {
    Workflow::builder("sleepers")
        .step("start", |_: StartEvent| async { Go })
        .step("zeta", |_: Go| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StopEvent::new("zeta")
        })
        .step("alpha", |_: Go| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StopEvent::new("alpha")
        })
        .timeout_opt(timeout)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_timeout_ends_the_run_and_names_the_active_steps() {
    let wf = two_sleepers(Some(Duration::from_secs(5)));
    assert_eq!(wf.timeout(), Some(Duration::from_secs(5)));
    let t0 = Instant::now();
    let handle = wf.run(StartEvent::new());
    let run_id = handle.run_id().to_owned();
    let stream = handle.stream_events().unwrap();
    let err = settle(handle).await.unwrap_err();
    assert_eq!(t0.elapsed(), Duration::from_secs(5));
    match &err {
        RunError::TimedOut {
            run_id: id,
            timeout,
            active_steps,
        } => {
            assert_eq!(id, &run_id);
            assert_eq!(*timeout, Duration::from_secs(5));
            // Definition order; `start` had finished.
            assert_eq!(active_steps, &["zeta", "alpha"]);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("timed out") && text.contains("zeta") && text.contains("alpha"),
        "{text}"
    );

    let events = drain(stream).await;
    assert_eq!(
        of_type::<WorkflowTimedOut>(&events),
        [WorkflowTimedOut {
            timeout_secs: 5.0,
            active_steps: vec!["zeta".into(), "alpha".into()],
        }]
    );
    assert_eq!(events.last().unwrap().name(), "WorkflowTimedOut");
}

#[tokio::test(start_paused = true)]
async fn a_timeout_with_nothing_running_says_so() {
    let wf = Workflow::builder("waits")
        .step("ask", |_: StartEvent| async { AskHuman { question: "?".into() } })
        .step("answer", |ev: HumanAnswer| async move { StopEvent::new(ev.text) })
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let err = settle(wf.run(StartEvent::new())).await.unwrap_err();
    assert!(matches!(&err, RunError::TimedOut { active_steps, .. } if active_steps.is_empty()));
    assert!(err.to_string().contains("no steps were running"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn there_is_no_timeout_by_default() {
    let wf = two_sleepers(None);
    assert_eq!(wf.timeout(), None);
    let t0 = Instant::now();
    let stop = settle_within(Duration::from_secs(7200), wf.run(StartEvent::new()))
        .await
        .unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(3600));
    assert!(stop.result == "zeta" || stop.result == "alpha");
}

#[tokio::test(start_paused = true)]
async fn a_run_that_finishes_in_time_is_not_timed_out() {
    let wf = Workflow::builder("quick")
        .step("s", |_: StartEvent| async {
            tokio::time::sleep(Duration::from_secs(9)).await;
            StopEvent::new("ok")
        })
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(settle(wf.run(StartEvent::new())).await.unwrap().result, "ok");
}

#[tokio::test(start_paused = true)]
async fn a_step_error_fails_the_run_with_the_original_error() {
    let wf = Workflow::builder("errs")
        .step("start", |_: StartEvent| async { Go })
        .step("explode", |_: Go| async { Err::<StopEvent, _>(MyError { code: 7 }) })
        .build()
        .unwrap();
    let handle = wf.run_with(StartEvent::new(), RunOptions::new().internal_events(true));
    let run_id = handle.run_id().to_owned();
    let stream = handle.stream_events().unwrap();
    let err = settle(handle).await.unwrap_err();
    let RunError::StepFailed {
        run_id: id,
        step,
        attempts,
        source,
    } = &err
    else {
        panic!("expected a step failure, got {err:?}");
    };
    assert_eq!((id.as_str(), step.as_str(), *attempts), (run_id.as_str(), "explode", 1));
    assert_eq!(source.downcast_ref::<MyError>(), Some(&MyError { code: 7 }));
    assert!(!source.is_panic());
    let text = err.to_string();
    assert!(
        text.contains("explode") && text.contains("my error with code 7"),
        "{text}"
    );
    assert!(err.source().is_some(), "the step error is the run error's source");

    let events = drain(stream).await;
    assert_eq!(
        of_type::<WorkflowFailed>(&events),
        [WorkflowFailed {
            step: "explode".into(),
            error: "my error with code 7".into(),
            attempts: 1,
            elapsed_secs: 0.0,
        }]
    );
    assert_eq!(events.last().unwrap().name(), "WorkflowFailed");
    let finished = of_type::<StepStateChanged>(&events)
        .into_iter()
        .find(|s| s.step == "explode" && s.phase == StepPhase::Finished)
        .unwrap();
    assert_eq!(finished.error.as_deref(), Some("my error with code 7"));
    assert!(finished.output_events.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_returned_step_error_is_not_wrapped_twice() {
    let wf = Workflow::builder("step-errors")
        .step("start", |ev: StartEvent| async move {
            if ev.get_or("wrapped", false).unwrap() {
                Err(StepError::new(MyError { code: 3 }))
            } else {
                Err::<StopEvent, _>(StepError::msg("plain message"))
            }
        })
        .build()
        .unwrap();
    let err = settle(wf.run(StartEvent::new())).await.unwrap_err();
    let RunError::StepFailed { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.to_string(), "plain message");

    let err = settle(wf.run(StartEvent::new().with("wrapped", true)))
        .await
        .unwrap_err();
    let RunError::StepFailed { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.downcast_ref::<MyError>(), Some(&MyError { code: 3 }));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_step_fails_the_run_not_the_process() {
    let wf = Workflow::builder("panics")
        .step("start", |_: StartEvent| async { Go })
        .step("boom", |_: Go| async {
            let code = 42;
            if code == 42 {
                panic!("kaboom {code}");
            }
            StopEvent::default()
        })
        .build()
        .unwrap();
    let handle = wf.run(StartEvent::new());
    let stream = handle.stream_events().unwrap();
    let err = settle(handle).await.unwrap_err();
    let RunError::StepFailed { step, source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(step, "boom");
    assert!(source.is_panic());
    assert!(source.to_string().contains("kaboom 42"), "{source}");
    assert!(err.to_string().contains("boom"));
    let failed = of_type::<WorkflowFailed>(&drain(stream).await);
    assert_eq!(failed.len(), 1);
    assert!(failed[0].error.contains("kaboom 42"));

    // The process, the runtime and the workflow all keep working.
    let other = Workflow::builder("fine")
        .step("s", |_: StartEvent| async { StopEvent::new("still here") })
        .build()
        .unwrap();
    assert_eq!(settle(other.run(StartEvent::new())).await.unwrap().result, "still here");
    assert!(settle(wf.run(StartEvent::new())).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_step_panicking_before_its_future_fails_the_run() {
    // A plain closure that does work before returning its future.
    let wf = Workflow::builder("eager")
        .step("start", |ev: StartEvent| {
            let n: u32 = ev.get("n").expect("n is required");
            async move { StopEvent::new(n) }
        })
        .build()
        .unwrap();
    let run = tokio::time::timeout(Duration::from_secs(10), wf.run(StartEvent::new()));
    let err = run.await.expect("the run ends instead of hanging").unwrap_err();
    let RunError::StepFailed { step, source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(step, "start");
    assert!(source.is_panic());
    assert!(source.to_string().contains("n is required"), "{source}");
    assert_eq!(settle(wf.run(StartEvent::new().with("n", 5))).await.unwrap().result, 5);
}

#[tokio::test(start_paused = true)]
async fn a_failure_cancels_the_other_in_flight_steps() {
    let slow = SlowStep::default();
    let wf = Workflow::builder("fail-fast")
        .step("start", |_: StartEvent| async { Go })
        .step("slow", slow.body(Duration::from_secs(60)))
        .step("fail", |_: Go| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Err::<StopEvent, _>(MyError { code: 1 })
        })
        .build()
        .unwrap();
    let t0 = Instant::now();
    let err = settle(wf.run(StartEvent::new())).await.unwrap_err();
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
    assert!(matches!(&err, RunError::StepFailed { step, .. } if step == "fail"));
    assert!(slow.dropped.load(Ordering::SeqCst), "the sibling was dropped");
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(!slow.finished.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn one_failing_run_does_not_affect_another() {
    let wf = Workflow::builder("maybe")
        .step("s", |ev: StartEvent| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            match ev.get_or("fail", false).unwrap() {
                true => Err(MyError { code: 9 }),
                false => Ok(StopEvent::new("ok")),
            }
        })
        .build()
        .unwrap();
    let failing = wf.run(StartEvent::new().with("fail", true));
    let passing = wf.run(StartEvent::new());
    let (failing, passing) = tokio::join!(failing, passing);
    assert!(failing.is_err());
    assert_eq!(passing.unwrap().result, "ok");
}
