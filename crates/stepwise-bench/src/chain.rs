//! Mirrors `bench_chain.py`: a linear workflow of 10 steps
//! (StartEvent → E1 → … → E9 → StopEvent), one event per step, many runs one
//! after another. Figure: wall time / (runs × 10), the cost of one step
//! transition including the run's own start and finish.

use stepwise::{StartEvent, StopEvent, Workflow};

use crate::events::*;
use crate::measure::{self, emit};

const STEPS: u64 = 10;
const RUNS: u64 = 20_000;
const WARMUP_RUNS: u64 = 2_000;
const REPS: usize = 9;

pub fn workflow() -> Workflow {
    Workflow::builder("chain")
        .step("s1", |_ev: StartEvent| async move { E1 { x: 0 } })
        .step("s2", |ev: E1| async move { E2 { x: ev.x + 1 } })
        .step("s3", |ev: E2| async move { E3 { x: ev.x + 1 } })
        .step("s4", |ev: E3| async move { E4 { x: ev.x + 1 } })
        .step("s5", |ev: E4| async move { E5 { x: ev.x + 1 } })
        .step("s6", |ev: E5| async move { E6 { x: ev.x + 1 } })
        .step("s7", |ev: E6| async move { E7 { x: ev.x + 1 } })
        .step("s8", |ev: E7| async move { E8 { x: ev.x + 1 } })
        .step("s9", |ev: E8| async move { E9 { x: ev.x + 1 } })
        .step("s10", |ev: E9| async move { StopEvent::new(ev.x + 1) })
        .build()
        .expect("chain workflow is valid")
}

async fn runs(wf: &Workflow, n: u64) {
    for _ in 0..n {
        let stop = wf.run(StartEvent::new()).await.expect("chain run");
        debug_assert_eq!(stop.result, 9);
    }
}

pub fn bench() {
    let rt = measure::runtime(2);
    let samples = measure::run_on(&rt, async {
        let wf = workflow();
        let stop = wf.run(StartEvent::new()).await.expect("chain run");
        assert_eq!(stop.result, 9);
        runs(&wf, WARMUP_RUNS).await;
        let mut samples = Vec::with_capacity(REPS);
        for _ in 0..REPS {
            let (dt, ()) = measure::time_async(runs(&wf, RUNS)).await;
            samples.push(dt.as_secs_f64() / (RUNS * STEPS) as f64 * 1e6);
        }
        samples
    });
    measure::comment(format!(
        "chain: {REPS} reps of {RUNS} sequential runs, us/step samples: {}",
        measure::samples_text(&samples)
    ));
    let per_step = measure::median(samples);
    emit("chain_step_us", per_step, "us");
    emit("chain_run_us", per_step * STEPS as f64, "us");
}
