//! Mirrors `bench_fanout.py 1000 64 0.01 collect`: K = 1,000 work events, the
//! worker sleeps 10 ms (`tokio::time::sleep`) with 64 workers, the collector
//! gathers all K. Compared with plain tokio in the same process: 1,000 spawned
//! tasks doing the same sleep under a 64-permit semaphore. The two are
//! alternated, and each figure is a median.

use std::sync::Arc;
use std::time::Duration;

use stepwise::{Context, StartEvent, StepConfig, StopEvent, Workflow};
use tokio::sync::Semaphore;

use crate::events::{ResultEvent, WorkEvent};
use crate::measure::{self, emit};

const K: u64 = 1_000;
const WORKERS: usize = 64;
const SLEEP: Duration = Duration::from_millis(10);
const REPS: usize = 9;

fn workflow() -> Workflow {
    Workflow::builder("io_fanout")
        .step_with(
            StepConfig::new("start").emits::<WorkEvent>(),
            |ctx: Context, _ev: StartEvent| async move {
                for i in 0..K {
                    ctx.send_event(WorkEvent { i });
                }
            },
        )
        .step_with(
            StepConfig::new("work").num_workers(WORKERS),
            |ev: WorkEvent| async move {
                tokio::time::sleep(SLEEP).await;
                ResultEvent { i: ev.i }
            },
        )
        .step("collect", |ctx: Context, ev: ResultEvent| async move {
            ctx.collect_n(&ev, K as usize)
                .map(|events| StopEvent::new(events.len()))
        })
        .build()
        .expect("I/O fan-out workflow is valid")
}

async fn stepwise_once(wf: &Workflow) -> f64 {
    let (dt, stop) = measure::time_async(wf.run(StartEvent::new())).await;
    assert_eq!(stop.expect("I/O fan-out run").result, K);
    dt.as_secs_f64()
}

async fn tokio_once() -> f64 {
    let (dt, ()) = measure::time_async(async {
        let permits = Arc::new(Semaphore::new(WORKERS));
        let tasks: Vec<_> = (0..K)
            .map(|i| {
                let permits = Arc::clone(&permits);
                tokio::spawn(async move {
                    let _permit = permits.acquire().await.expect("semaphore open");
                    tokio::time::sleep(SLEEP).await;
                    i
                })
            })
            .collect();
        let mut done = 0;
        for task in tasks {
            task.await.expect("baseline task");
            done += 1;
        }
        assert_eq!(done, K);
    })
    .await;
    dt.as_secs_f64()
}

pub fn bench() {
    let rt = measure::runtime(2);
    let (ours, base) = measure::run_on(&rt, async {
        let wf = workflow();
        stepwise_once(&wf).await; // warm-up
        tokio_once().await;
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for rep in 0..REPS {
            // Alternate which goes first so neither always follows the other.
            if rep % 2 == 0 {
                ours.push(stepwise_once(&wf).await);
                base.push(tokio_once().await);
            } else {
                base.push(tokio_once().await);
                ours.push(stepwise_once(&wf).await);
            }
        }
        (ours, base)
    });
    measure::comment(format!(
        "io_fanout stepwise s samples: {}",
        measure::samples_text(&ours)
    ));
    measure::comment(format!(
        "io_fanout tokio baseline s samples: {}",
        measure::samples_text(&base)
    ));
    let (ours, base) = (measure::median(ours), measure::median(base));
    let ideal = K as f64 / WORKERS as f64 * SLEEP.as_secs_f64();
    emit("io_fanout_s", ours, "s");
    emit("io_fanout_tokio_baseline_s", base, "s");
    emit("io_fanout_ideal_s", ideal, "s");
    emit("io_fanout_efficiency", base / ours * 100.0, "%_of_tokio_baseline");
    emit("io_fanout_efficiency_vs_ideal", ideal / ours * 100.0, "%_of_ideal");
}
