//! A stream reader that falls behind bounds the run's memory: the run's steps
//! wait for it (nothing is dropped), and a stream nobody took yet keeps only
//! the latest events and says how many it missed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::{
    store::MemoryStore, Context, Event, EventUnion, Journal, JournalConfig, RunOptions, StartEvent, StopEvent,
    StreamExt, StreamLagged, Workflow,
};

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
struct Progress {
    i: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
struct Next {
    i: u64,
}

/// One step writes `n` events, awaiting each write; `written` counts them.
fn writer(n: u64, written: Arc<AtomicU64>) -> Workflow {
    Workflow::builder("writer")
        .step("write", move |ctx: Context, _: StartEvent| {
            let written = Arc::clone(&written);
            async move {
                for i in 0..n {
                    ctx.write_event_to_stream(Progress { i }).await;
                    written.fetch_add(1, Ordering::Relaxed);
                }
                StopEvent::new(n)
            }
        })
        .build()
        .unwrap()
}

#[derive(Debug, EventUnion)]
enum Turned {
    Next(Next),
    Stop(StopEvent),
}

/// A step per event: each writes one event and emits the next (a loop).
fn looper(n: u64, written: Arc<AtomicU64>) -> Workflow {
    Workflow::builder("looper")
        .step("begin", |_: StartEvent| async { Next { i: 0 } })
        .step("turn", move |ctx: Context, next: Next| {
            let written = Arc::clone(&written);
            async move {
                ctx.write_event_to_stream(Progress { i: next.i });
                written.fetch_add(1, Ordering::Relaxed);
                if next.i + 1 == n {
                    Turned::Stop(StopEvent::new(n))
                } else {
                    Turned::Next(Next { i: next.i + 1 })
                }
            }
        })
        .build()
        .unwrap()
}

/// Reads the whole stream slowly, checking order and how far the writers got
/// ahead of the reader; returns the most they were ahead.
async fn read_slowly(mut stream: stepwise::EventStream, n: u64, written: &AtomicU64) -> u64 {
    let mut next = 0;
    let mut ahead = 0;
    while let Some(event) = stream.next().await {
        if let Some(p) = event.downcast_ref::<Progress>() {
            assert_eq!(p.i, next, "events arrive in order, none dropped");
            next += 1;
            ahead = ahead.max(written.load(Ordering::Relaxed).saturating_sub(next));
            if next % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    assert_eq!(next, n, "the reader got every event");
    ahead
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_pauses_a_writing_step_instead_of_buffering_without_limit() {
    let n = 50_000;
    let written = Arc::new(AtomicU64::new(0));
    let handle = writer(n, Arc::clone(&written)).run_with(StartEvent::new(), RunOptions::new().stream_buffer(500));
    let stream = handle.stream_events().unwrap();
    let ahead = read_slowly(stream, n, &written).await;
    // The reader holds one batch it took, the buffer at most one more.
    assert!(ahead <= 2 * 500 + 1, "the writer got {ahead} events ahead");
    assert_eq!(handle.await.unwrap().result, serde_json::json!(n));
}

#[tokio::test(start_paused = true)]
async fn the_default_buffer_bounds_a_slow_reader_too() {
    let n = 60_000;
    let written = Arc::new(AtomicU64::new(0));
    let handle = writer(n, Arc::clone(&written)).run(StartEvent::new());
    let ahead = read_slowly(handle.stream_events().unwrap(), n, &written).await;
    assert!(ahead <= 2 * stepwise::DEFAULT_STREAM_BUFFER as u64 + 1, "{ahead}");
    handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn many_steps_wait_for_a_slow_reader() {
    let n = 5_000;
    let written = Arc::new(AtomicU64::new(0));
    let handle = looper(n, Arc::clone(&written)).run_with(StartEvent::new(), RunOptions::new().stream_buffer(100));
    let ahead = read_slowly(handle.stream_events().unwrap(), n, &written).await;
    assert!(ahead <= 2 * 100 + 2, "{ahead}");
    handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_journaled_run_waits_for_a_slow_reader() {
    let n = 3_000;
    let written = Arc::new(AtomicU64::new(0));
    let journal = Journal::with_config(MemoryStore::new(), JournalConfig::new());
    let options = RunOptions::new().journal(&journal).stream_buffer(100);
    let handle = looper(n, Arc::clone(&written)).run_with(StartEvent::new(), options);
    let ahead = read_slowly(handle.stream_events().unwrap(), n, &written).await;
    assert!(ahead <= 2 * 100 + 2, "{ahead}");
    handle.await.unwrap();
    journal.flush().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_stream_taken_late_keeps_the_latest_events_and_says_what_it_missed() {
    let n = 1_000;
    let written = Arc::new(AtomicU64::new(0));
    let mut handle = writer(n, Arc::clone(&written)).run_with(StartEvent::new(), RunOptions::new().stream_buffer(100));
    // Nobody reads while the run goes on: it is not held back.
    assert_eq!((&mut handle).await.unwrap().result, serde_json::json!(n));
    let events: Vec<_> = handle.stream_events().unwrap().collect().await;
    assert_eq!(events.len(), 101, "the lag notice and the latest 100 events");
    // 1,000 progress events and the stop event were published; 100 are kept.
    assert_eq!(
        events[0].downcast_ref::<StreamLagged>(),
        Some(&StreamLagged { missed: 901 })
    );
    assert_eq!(events[1].downcast_ref::<Progress>().map(|p| p.i), Some(901));
    assert!(events[100].is::<StopEvent>());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_stream_behind_lets_the_run_go_on() {
    let n = 10_000;
    let written = Arc::new(AtomicU64::new(0));
    let handle = writer(n, Arc::clone(&written)).run_with(StartEvent::new(), RunOptions::new().stream_buffer(50));
    let mut stream = handle.stream_events().unwrap();
    stream.next().await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(written.load(Ordering::Relaxed) < 200, "the writer waits for the reader");
    drop(stream);
    assert_eq!(handle.await.unwrap().result, serde_json::json!(n));
}
