//! A crash at every commit boundary: the run's batches are replayed into a
//! fresh store up to each commit, and the resumed run ends with the full
//! stream exactly once.

use std::time::Duration;

use stepwise::store::{JournalStore, MemoryStore, RunStatus};
use stepwise::{Context, Journal, JournalConfig, RunOptions, StartEvent, StepConfig, StopEvent, Workflow};

mod common;
use common::durable::*;
mod recording;
use recording::Recording;

/// start → `split` (writes to the stream, fans out 3 items) → `work` (one
/// stream write each) → `gather` (collects 3) → stop.
fn fan_flow() -> Workflow {
    Workflow::builder("fan")
        .event::<Progress>()
        .step("split", |ctx: Context, _ev: StartEvent| async move {
            // Steps pause between ticks, so that the writer commits most ticks
            // on their own: more commit boundaries for the crash test below.
            tokio::time::sleep(Duration::from_millis(2)).await;
            ctx.write_event_to_stream(Progress { text: "split".into() });
            vec![Num(1), Num(2), Num(3)]
        })
        .step_with(
            StepConfig::new("work").num_workers(2),
            |ctx: Context, n: Num| async move {
                tokio::time::sleep(Duration::from_millis(n.0 * 3)).await;
                ctx.write_event_to_stream(Progress {
                    text: format!("work {}", n.0),
                });
                A(n.0 * 10)
            },
        )
        .step("gather", |ctx: Context, a: A| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let all = ctx.collect_n(&a, 3);
            tokio::time::sleep(Duration::from_millis(2)).await;
            all.map(|all| StopEvent::new(all.iter().map(|a| a.0).sum::<u64>()))
        })
        .build()
        .unwrap()
}

#[test]
fn a_crash_at_any_commit_resumes_with_the_full_stream_exactly_once() {
    let wf = fan_flow();
    let recording = Recording::default();
    // The writer commits as soon as it is told (no gathering delay): every
    // commit boundary is a point a crash could hit.
    let config = JournalConfig {
        max_batch: 1,
        snapshot_every: 4,
        ..JournalConfig::default()
    };
    let (run_id, full) = runtime().block_on(async {
        let journal = Journal::with_config(recording.clone(), config.clone());
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let run_id = handle.run_id().to_owned();
        assert_eq!(finish(handle).await.unwrap().result, 60);
        journal.flush().await.unwrap();
        let full = recording.inner.events(&run_id, 0).await.unwrap();
        (run_id, full)
    });
    let mut full_names = names(&full);
    full_names.sort();
    let batches = recording.batches.lock().unwrap().clone();
    // About one commit per tick (10); fewer when a loaded machine lets the
    // writer take two ticks at once.
    assert!(batches.len() >= 6, "{} commits", batches.len());
    for k in 0..=batches.len() {
        runtime().block_on(async {
            let store = MemoryStore::new();
            for batch in &batches[..k] {
                store.write(batch).await.unwrap();
            }
            let journal = Journal::with_config(store.clone(), config.clone());
            let Some(record) = store.run(&run_id).await.unwrap() else {
                assert_eq!(k, 0, "the first commit holds the run and its start");
                return;
            };
            if record.status == RunStatus::Running {
                let handle = wf
                    .resume(&journal, &run_id)
                    .await
                    .unwrap_or_else(|e| panic!("crash after commit {k}: {e}"));
                assert_eq!(finish(handle).await.unwrap().result, 60, "crash after commit {k}");
                journal.flush().await.unwrap();
            }
            let record = store.run(&run_id).await.unwrap().unwrap();
            assert_eq!(record.status, RunStatus::Completed, "crash after commit {k}");
            let mut stream = stored_stream(&store, &run_id).await;
            stream.sort();
            assert_eq!(stream, full_names, "crash after commit {k}");
        });
    }
}
