//! Mirrors `bench_fanout.py K 8 0 collect`: the start step sends K `WorkEvent`s
//! with `ctx.send_event` and returns nothing; `work` (8 workers, no I/O) turns
//! each into a `ResultEvent`; `collect` gathers all K and stops with the count.
//!
//! The typed figures use `ctx.collect_n::<ResultEvent>(&ev, K)`; the untyped
//! one uses `ctx.collect_events(&ev, &[ResultEvent; K])`, the anchor's exact
//! call shape (the list is built once and shared, as a Rust user would).

use std::sync::Arc;

use stepwise::{Context, EventType, StartEvent, StepConfig, StopEvent, Workflow};

use crate::events::{ResultEvent, WorkEvent};
use crate::measure::{self, emit};

/// How the collector gathers its K results.
#[derive(Clone, Copy)]
pub enum Collect {
    /// `ctx.collect_n::<ResultEvent>(&ev, K)`
    Typed,
    /// `ctx.collect_events(&ev, &[ResultEvent; K])`
    Untyped,
}

fn workflow(k: u64, collect: Collect) -> Workflow {
    let builder = Workflow::builder("fanout")
        .step_with(
            StepConfig::new("start").emits::<WorkEvent>(),
            move |ctx: Context, _ev: StartEvent| async move {
                for i in 0..k {
                    ctx.send_event(WorkEvent { i });
                }
            },
        )
        .step_with(StepConfig::new("work").num_workers(8), |ev: WorkEvent| async move {
            ResultEvent { i: ev.i }
        });
    let builder = match collect {
        Collect::Typed => builder.step("collect", move |ctx: Context, ev: ResultEvent| async move {
            ctx.collect_n(&ev, k as usize)
                .map(|events| StopEvent::new(events.len()))
        }),
        Collect::Untyped => {
            let expected: Arc<[EventType]> = vec![EventType::of::<ResultEvent>(); k as usize].into();
            builder.step("collect", move |ctx: Context, ev: ResultEvent| {
                let expected = Arc::clone(&expected);
                async move {
                    ctx.collect_events(&ev, &expected)
                        .map(|events| StopEvent::new(events.len()))
                }
            })
        }
    };
    builder.build().expect("fan-out workflow is valid")
}

/// Median wall time in seconds of `reps` fan-out runs of K events.
pub fn time_fanout(rt: &tokio::runtime::Runtime, k: u64, collect: Collect, reps: usize) -> Vec<f64> {
    measure::run_on(rt, async move {
        let stop = workflow(4, collect).run(StartEvent::new()).await.expect("warm-up run");
        assert_eq!(stop.result, 4);
        let mut samples = Vec::with_capacity(reps);
        for _ in 0..reps {
            let wf = workflow(k, collect);
            let (dt, stop) = measure::time_async(wf.run(StartEvent::new())).await;
            assert_eq!(stop.expect("fan-out run").result, k);
            samples.push(dt.as_secs_f64());
        }
        samples
    })
}

pub fn bench() {
    let rt = measure::runtime(2);
    let mut medians = Vec::new();
    for (k, reps, name) in [
        (1_000u64, 41usize, "fanout_collect_1k_s"),
        (10_000, 21, "fanout_collect_10k_s"),
        (100_000, 7, "fanout_collect_100k_s"),
    ] {
        let samples = time_fanout(&rt, k, Collect::Typed, reps);
        measure::comment(format!(
            "fanout K = {k}: s samples: {}",
            measure::samples_text(&samples)
        ));
        let m = measure::median(samples);
        emit(name, m, "s");
        medians.push((k, m));
    }
    let (k10, t10) = medians[1];
    let (k100, t100) = medians[2];
    emit(
        "fanout_linearity",
        (t100 / k100 as f64) / (t10 / k10 as f64),
        "ratio(per-event 100k/10k)",
    );
    emit("fanout_collect_100k_events_per_s", k100 as f64 / t100, "events/s");
}

/// The typed and the untyped figures.
pub fn bench_all() {
    bench();
    bench_untyped();
}

pub fn bench_untyped() {
    let rt = measure::runtime(2);
    for (k, reps, name) in [
        (1_000u64, 9usize, "fanout_collect_untyped_1k_s"),
        (10_000, 5, "fanout_collect_untyped_10k_s"),
        (100_000, 3, "fanout_collect_untyped_100k_s"),
    ] {
        let samples = time_fanout(&rt, k, Collect::Untyped, reps);
        measure::comment(format!(
            "fanout untyped K = {k}: s samples: {}",
            measure::samples_text(&samples)
        ));
        emit(name, measure::median(samples), "s");
    }
}
