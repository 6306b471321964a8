//! A step body that never yields (a CPU loop, a blocking call) must not hold
//! back the run's timeout or a cancel: the handle resolves and the termination
//! event is published while the body still runs on its thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stepwise::{RunError, StartEvent, StopEvent, StreamExt, Workflow, WorkflowCancelled, WorkflowTimedOut};

/// A workflow whose one step spins on its thread until `release` is set (the
/// test sets it at the end, so the runtime can shut down).
fn hog(release: Arc<AtomicBool>, timeout: Option<Duration>) -> Workflow {
    Workflow::builder("hog")
        .step("spin", move |_: StartEvent| {
            let release = Arc::clone(&release);
            async move {
                while !release.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
                StopEvent::new("the spin ended")
            }
        })
        .timeout_opt(timeout)
        .build()
        .unwrap()
}

/// Sets the flag when dropped, so a failing assertion still frees the thread.
struct Release(Arc<AtomicBool>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_ends_a_run_whose_step_never_yields() {
    let release = Release(Arc::new(AtomicBool::new(false)));
    let wf = hog(Arc::clone(&release.0), Some(Duration::from_millis(300)));
    let started = Instant::now();
    let handle = wf.run(StartEvent::new());
    let mut stream = handle.stream_events().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the handle resolves while the step still spins");
    assert!(matches!(result, Err(RunError::TimedOut { .. })), "{result:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(
        waited < Duration::from_secs(5),
        "the timeout waited for the step: {waited:?}"
    );
    // The termination event was published and the stream ends after it.
    let events: Vec<_> = tokio::time::timeout(Duration::from_secs(10), stream.by_ref().collect::<Vec<_>>())
        .await
        .expect("the stream ends");
    assert!(events.iter().any(|e| e.is::<WorkflowTimedOut>()), "{events:?}");
    assert!(!release.0.load(Ordering::Relaxed), "the step was still spinning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_a_run_whose_step_never_yields() {
    let release = Release(Arc::new(AtomicBool::new(false)));
    let wf = hog(Arc::clone(&release.0), None);
    let handle = wf.run(StartEvent::new());
    let mut stream = handle.stream_events().unwrap();
    // Let the step start spinning.
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the handle resolves while the step still spins");
    assert!(matches!(result, Err(RunError::Cancelled { .. })), "{result:?}");
    let events: Vec<_> = tokio::time::timeout(Duration::from_secs(10), stream.by_ref().collect::<Vec<_>>())
        .await
        .expect("the stream ends");
    assert!(events.iter().any(|e| e.is::<WorkflowCancelled>()), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_step_longer_than_the_timeout_does_not_succeed() {
    // The case: 3 s of blocking work under a 300 ms timeout used to
    // succeed, because the timeout was only checked once the step returned.
    let wf = Workflow::builder("blocking")
        .step("work", |_: StartEvent| async {
            std::thread::sleep(Duration::from_secs(3));
            StopEvent::new("done")
        })
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let result = wf.run(StartEvent::new()).await;
    assert!(matches!(result, Err(RunError::TimedOut { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_hogging_body_does_after_the_end_is_discarded() {
    // The body finishes after the timeout with a stop event: the run stays
    // timed out, and the late result changes nothing.
    let wf = Workflow::builder("late")
        .step("work", |_: StartEvent| async {
            std::thread::sleep(Duration::from_millis(600));
            StopEvent::new("late")
        })
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let handle = wf.run(StartEvent::new());
    let mut stream = handle.stream_events().unwrap();
    let mut seen = Vec::new();
    while let Some(event) = stream.next().await {
        seen.push(event);
    }
    assert!(!seen.iter().any(|e| e.is::<StopEvent>()), "{seen:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let result = handle.await;
    assert!(matches!(result, Err(RunError::TimedOut { .. })), "{result:?}");
}
