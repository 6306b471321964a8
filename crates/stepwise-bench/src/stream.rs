//! Mirrors `bench_stream.py K 0`: one step writes K events with
//! `ctx.write_event_to_stream` (no yielding) and returns the stop event while
//! the caller consumes `stream_events()`. Every one of the K events must
//! arrive: the run fails loudly otherwise.

use stepwise::{Context, StartEvent, StopEvent, StreamExt, Workflow};

use crate::events::Tick;
use crate::measure::{self, emit};

fn workflow(k: u64) -> Workflow {
    Workflow::builder("stream")
        .step("produce", move |ctx: Context, _ev: StartEvent| async move {
            for i in 0..k {
                ctx.write_event_to_stream(Tick { i });
            }
            StopEvent::new(k)
        })
        .build()
        .expect("stream workflow is valid")
}

async fn once(wf: &Workflow, k: u64) -> f64 {
    let (dt, ()) = measure::time_async(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().expect("stream not taken yet");
        let mut got = 0u64;
        let mut next = 0u64;
        while let Some(event) = stream.next().await {
            if let Some(tick) = event.downcast_ref::<Tick>() {
                assert_eq!(tick.i, next, "stream events out of order");
                next += 1;
                got += 1;
            }
        }
        let stop = handle.await.expect("stream run");
        assert_eq!(stop.result, k);
        assert_eq!(got, k, "the stream dropped events");
    })
    .await;
    k as f64 / dt.as_secs_f64()
}

pub fn bench() {
    let rt = measure::runtime(2);
    for (k, reps, name) in [
        (10_000u64, 41usize, "stream_10k_events_per_s"),
        (1_000_000, 5, "stream_events_per_s"),
    ] {
        let samples = measure::run_on(&rt, async move {
            let wf = workflow(k);
            once(&workflow(10), 10).await; // warm-up
            let mut samples = Vec::with_capacity(reps);
            for _ in 0..reps {
                samples.push(once(&wf, k).await);
            }
            samples
        });
        measure::comment(format!(
            "stream K = {k}: events/s samples: {}",
            measure::samples_text(&samples)
        ));
        emit(name, measure::median(samples), "events/s");
    }
}
