//! Errors in steps: `?` on std errors and on anyhow errors, steps returning
//! `StepResult` or `anyhow::Result`, and the typed error recovered from the
//! run's error, from `StepFailed` and by a retry policy.

#![cfg_attr(not(feature = "anyhow"), allow(unused_imports))]
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use stepwise::retry::{RetryIf, Stop, Wait};
use stepwise::{
    step, workflow, CatchErrors, Event, RetryPolicy, RunError, StartEvent, StepConfig, StepError, StepFailed,
    StepResult, StopEvent, Workflow, WorkflowDefinition,
};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("quota exceeded for {0}")]
struct QuotaExceeded(String);

fn step_error(err: RunError) -> StepError {
    match err {
        RunError::StepFailed { source, .. } => source,
        other => panic!("expected a step failure, got {other}"),
    }
}

/// A one-step workflow around `body`.
fn one_step<F, Fut, R>(body: F) -> Workflow<StartEvent, StopEvent>
where
    F: Fn(StartEvent) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
    R: stepwise::StepOutput,
{
    Workflow::builder("errors")
        .step("only", body)
        .build()
        .expect("valid workflow")
}

#[tokio::test]
async fn question_mark_on_io_error_in_a_step_returning_step_result() {
    let wf = one_step(|_: StartEvent| async {
        let text = std::fs::read_to_string("/definitely/not/here")?;
        StepResult::Ok(StopEvent::new(text))
    });
    let err = step_error(wf.run(StartEvent::new()).await.expect_err("the file is missing"));
    let io = err.downcast_ref::<std::io::Error>().expect("the io::Error is kept");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(!err.is_panic());
}

#[tokio::test]
async fn question_mark_on_serde_json_and_messages() {
    let wf = one_step(|_: StartEvent| async {
        let n: u32 = serde_json::from_str("\"not a number\"")?;
        if n > 3 {
            Err("too big")?;
        }
        Ok::<_, StepError>(StopEvent::new(n))
    });
    let err = step_error(wf.run(StartEvent::new()).await.expect_err("bad JSON"));
    assert!(err.downcast_ref::<serde_json::Error>().is_some(), "{err:?}");

    let wf = one_step(|_: StartEvent| async {
        Err::<StopEvent, _>(format!("attempt {} failed", 1))?;
        StepResult::Ok(StopEvent::new(0))
    });
    let err = step_error(wf.run(StartEvent::new()).await.expect_err("message"));
    assert_eq!(err.to_string(), "attempt 1 failed");
}

#[cfg(feature = "anyhow")] // downcasts through anyhow's context
#[tokio::test]
async fn a_step_returning_anyhow_result_with_bail_and_context() {
    let wf = one_step(|_: StartEvent| async {
        anyhow::bail!(QuotaExceeded("acme".into()));
        #[allow(unreachable_code)]
        Ok(StopEvent::new(0))
    });
    let err = step_error(wf.run(StartEvent::new()).await.expect_err("bail"));
    assert_eq!(err.downcast_ref::<QuotaExceeded>(), Some(&QuotaExceeded("acme".into())));
    assert!(err.as_anyhow().is_some(), "the anyhow error itself is kept");

    let wf = one_step(|_: StartEvent| async {
        let text = std::fs::read_to_string("/definitely/not/here").context("reading the config")?;
        anyhow::Ok(StopEvent::new(text))
    });
    let err = step_error(wf.run(StartEvent::new()).await.expect_err("context"));
    assert_eq!(err.to_string(), "reading the config");
    let io = err
        .downcast_ref::<std::io::Error>()
        .expect("the error under the context");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    let chain: Vec<String> = err.as_anyhow().unwrap().chain().map(|e| e.to_string()).collect();
    assert_eq!(chain.len(), 2, "{chain:?}");
}

#[cfg(feature = "anyhow")] // downcasts through anyhow's context
#[tokio::test]
async fn question_mark_on_anyhow_error_in_a_step_returning_step_result() {
    fn lookup() -> anyhow::Result<u32> {
        Err(QuotaExceeded("beta".into())).context("looking up the quota")
    }
    let wf = one_step(|_: StartEvent| async {
        let n = lookup()?;
        StepResult::Ok(StopEvent::new(n))
    });
    let err = step_error(wf.run(StartEvent::new()).await.expect_err("anyhow through ?"));
    assert_eq!(err.to_string(), "looking up the quota");
    assert_eq!(err.downcast_ref::<QuotaExceeded>(), Some(&QuotaExceeded("beta".into())));
    // The error also reads as `dyn Error` (Deref), with its chain.
    assert_eq!(
        err.source().map(|e| e.to_string()).as_deref(),
        Some("quota exceeded for beta")
    );
}

#[tokio::test]
async fn a_typed_error_type_still_works_and_run_error_has_the_source() {
    let wf = one_step(|_: StartEvent| async { Err::<StopEvent, _>(QuotaExceeded("gamma".into())) });
    let run_err = wf.run(StartEvent::new()).await.expect_err("typed error");
    let source = std::error::Error::source(&run_err).expect("RunError has a source");
    assert_eq!(source.to_string(), "quota exceeded for gamma");
    assert_eq!(
        step_error(run_err).downcast_ref::<QuotaExceeded>(),
        Some(&QuotaExceeded("gamma".into()))
    );
}

#[cfg(feature = "anyhow")] // downcasts through anyhow's context
#[tokio::test]
async fn retry_if_sees_the_typed_error_through_anyhow() {
    let calls = Arc::new(AtomicU32::new(0));
    let policy = RetryPolicy::new()
        .stop(Stop::after_attempts(3))
        .wait(Wait::none())
        .retry_if(RetryIf::error_type::<QuotaExceeded>());
    let counted = Arc::clone(&calls);
    let wf = Workflow::builder("retry")
        .step_with(StepConfig::new("call").retry(policy), move |_: StartEvent| {
            let calls = Arc::clone(&counted);
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n < 3 {
                    Err(QuotaExceeded(format!("try {n}"))).context("calling the service")?;
                }
                anyhow::Ok(StopEvent::new(n))
            }
        })
        .build()
        .expect("valid workflow");
    let stop = wf.run(StartEvent::new()).await.expect("third attempt succeeds");
    assert_eq!(stop.result, 3);

    // Another error type is not retried.
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let policy = RetryPolicy::fixed(5, Duration::ZERO).retry_if(RetryIf::error_type::<QuotaExceeded>());
    let wf = Workflow::builder("retry")
        .step_with(StepConfig::new("call").retry(policy), move |_: StartEvent| {
            let calls = Arc::clone(&counted);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                anyhow::bail!("not a quota problem");
                #[allow(unreachable_code)]
                anyhow::Ok(StopEvent::new(0))
            }
        })
        .build()
        .expect("valid workflow");
    let RunError::StepFailed { attempts, .. } = wf.run(StartEvent::new()).await.expect_err("fails") else {
        panic!("expected a step failure");
    };
    assert_eq!((attempts, calls.load(Ordering::SeqCst)), (1, 1));
}

/// Without the feature an anyhow error still converts, as a plain `dyn Error`.
#[cfg(not(feature = "anyhow"))]
#[tokio::test]
async fn anyhow_errors_convert_without_the_feature() {
    let wf = one_step(|_: StartEvent| async {
        let text = std::fs::read_to_string("/definitely/not/here").context("reading the config")?;
        anyhow::Ok(StopEvent::new(text))
    });
    let err = step_error(wf.run(StartEvent::new()).await.expect_err("context"));
    assert_eq!(err.to_string(), "reading the config");
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Job {
    name: String,
}
impl Event for Job {
    const NAME: &'static str = "Job";
}

struct Pipeline;

#[workflow]
impl Pipeline {
    #[step]
    async fn start(&self, _ev: StartEvent) -> anyhow::Result<Job> {
        let name: String = serde_json::from_str("\"nightly\"")?;
        Ok(Job { name })
    }

    #[step]
    async fn run_job(&self, ev: Job) -> StepResult<StopEvent> {
        let limit: u32 = "many".parse()?;
        Ok(StopEvent::new(format!("{} x{limit}", ev.name)))
    }
}

#[tokio::test]
async fn step_methods_use_question_mark_too() {
    let wf = Pipeline.build().expect("valid workflow");
    let err = step_error(wf.run(StartEvent::new()).await.expect_err("parse fails"));
    assert!(err.downcast_ref::<std::num::ParseIntError>().is_some(), "{err:?}");
}

#[cfg(feature = "anyhow")] // downcasts through anyhow's context
#[tokio::test]
async fn an_error_handler_gets_the_typed_error_in_step_failed() {
    let wf = Workflow::builder("handled")
        .step("call", |_: StartEvent| async {
            Err::<StopEvent, _>(anyhow::Error::new(QuotaExceeded("delta".into())).context("calling"))
        })
        .step_with(
            StepConfig::new("on_error").catch_errors(CatchErrors::all()),
            |failed: StepFailed| async move {
                let source = failed.source.as_ref().expect("in memory, the error is there");
                let quota = source.downcast_ref::<QuotaExceeded>().expect("typed");
                StopEvent::new(format!("{}: {}", failed.error, quota.0))
            },
        )
        .build()
        .expect("valid workflow");
    let stop = wf.run(StartEvent::new()).await.expect("handled");
    assert_eq!(stop.result, "calling: delta");
}
