use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::testing::WorkflowTestRunner;
use stepwise::{
    CatchErrors, Context, HumanResponseEvent, InputRequiredEvent, RetryPolicy, StartEvent, StepConfig, StepError,
    StepFailed, StopEvent, WaitFor, Workflow,
};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Counter {
    n: u32,
}

#[tokio::test(start_paused = true)]
async fn hitl_retry_state() {
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let wf = Workflow::builder("smoke")
        .state::<Counter>()
        .step_with(
            StepConfig::new("ask").retry(RetryPolicy::fixed(3, Duration::from_secs(2))),
            move |ctx: Context, _ev: StartEvent| {
                let t = t.clone();
                async move {
                    let attempt = ctx.retry_info().attempt;
                    ctx.state().edit(|c: &mut Counter| c.n += 1).await.unwrap();
                    if t.fetch_add(1, Ordering::SeqCst) < 2 {
                        return Err(StepError::msg(format!("flaky attempt {attempt}")));
                    }
                    let answer = ctx
                        .wait_for_event(WaitFor::<HumanResponseEvent>::new().publish(InputRequiredEvent::new("ok?")))
                        .await
                        .map_err(StepError::new)?;
                    Ok(StopEvent::new(answer.response))
                }
            },
        )
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let out = WorkflowTestRunner::new(&wf)
        .run_responding(StartEvent::new(), |ev| {
            ev.is::<InputRequiredEvent>()
                .then(|| HumanResponseEvent::new("yes").into())
        })
        .await;
    assert_eq!(out.result.as_ref().unwrap().result, "yes");
    assert_eq!(start.elapsed(), Duration::from_secs(4));
    assert_eq!(out.state.get::<Counter>().await.unwrap().n, 3);
    assert_eq!(out.count("WorkflowIdle"), 1, "{:?}", out.names());
}

#[tokio::test]
async fn catch_handler_recovers() {
    let wf = Workflow::builder("catch")
        .step("boom", |_ev: StartEvent| async {
            Err::<StopEvent, _>(StepError::msg("kaboom"))
        })
        .step_with(
            StepConfig::new("rescue").catch_errors(CatchErrors::all()),
            |f: StepFailed| async move { StopEvent::new(format!("{} failed: {}", f.step, f.error)) },
        )
        .build()
        .unwrap();
    let stop = wf.run(StartEvent::new()).await.unwrap();
    assert_eq!(stop.result, "boom failed: kaboom");
}
