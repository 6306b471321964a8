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

/// Events written in the slow-reader workload.
const SLOW_K: u64 = 1_000_000;
/// Events the slow reader takes between 1 ms pauses.
const SLOW_BATCH: u64 = 1_000;

/// One step writing `k` events, awaiting each write (so a slow reader holds
/// it back instead of the run buffering everything).
fn awaiting_writer(k: u64) -> Workflow {
    Workflow::builder("awaiting_writer")
        .step("produce", move |ctx: Context, _ev: StartEvent| async move {
            for i in 0..k {
                ctx.write_event_to_stream(Tick { i }).await;
            }
            StopEvent::new(k)
        })
        .build()
        .expect("awaiting writer workflow is valid")
}

/// Reads `handle`'s stream at `SLOW_BATCH` events per ms; returns how far the
/// process's resident memory rose above where it started (MiB) and the time.
async fn read_slowly(handle: stepwise::RunHandle<StopEvent>, k: u64) -> (f64, f64) {
    let base = measure::rss_mib();
    let mut peak = base;
    let (dt, ()) = measure::time_async(async {
        let mut stream = handle.stream_events().expect("stream not taken yet");
        let mut got = 0u64;
        while let Some(event) = stream.next().await {
            if event.is::<Tick>() {
                got += 1;
                if got.is_multiple_of(SLOW_BATCH) {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                if got.is_multiple_of(10_000) {
                    peak = peak.max(measure::rss_mib());
                }
            }
        }
        assert_eq!(got, k, "the slow reader missed events");
        handle.await.expect("slow-reader run");
    })
    .await;
    (peak - base, dt.as_secs_f64())
}

/// A reader slower than its run: memory stays bounded (issue 9, item 8).
/// In memory: one step writing 1,000,000 events. Journaled (SQLite): a loop
/// of 200,000 steps, each writing one event.
pub fn bench_slow_reader() {
    let rt = measure::runtime(2);
    // The run starts inside the runtime (a run needs one).
    let (memory_mib, memory_s) = measure::run_on(&rt, async {
        read_slowly(awaiting_writer(SLOW_K).run(StartEvent::new()), SLOW_K).await
    });
    measure::comment(format!(
        "slow reader, in memory: {SLOW_K} events read at {SLOW_BATCH}/ms in {memory_s:.2} s, RSS rose {memory_mib:.1} MiB"
    ));
    emit("slow_reader_memory_rss_mib", memory_mib, "MiB");
    // `STEPWISE_BENCH_SLOW_K` events (200,000 by default): the rise stays
    // the same for more (SQLite's page cache and the journal's backlog bound).
    let k = std::env::var("STEPWISE_BENCH_SLOW_K")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000u64);
    let dir = std::env::temp_dir().join(format!("stepwise-bench-slow-reader-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("slow.db");
    let (journaled_mib, journaled_s) = measure::run_on(&rt, async move {
        let store = stepwise_sqlite::SqliteStore::open(&path).await.expect("sqlite store");
        let journal = stepwise::Journal::new(store);
        let wf = crate::self_loop::writing_workflow(k);
        let handle = wf.run_with(StartEvent::new(), stepwise::RunOptions::new().journal(&journal));
        let measured = read_slowly(handle, k).await;
        journal.shutdown().await.expect("journal");
        measured
    });
    let _ = std::fs::remove_dir_all(&dir);
    measure::comment(format!(
        "slow reader, journaled: {k} events read at {SLOW_BATCH}/ms in {journaled_s:.2} s, RSS rose {journaled_mib:.1} MiB"
    ));
    emit("slow_reader_journaled_rss_mib", journaled_mib, "MiB");
}
