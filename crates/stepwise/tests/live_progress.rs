//! A journaled step's stream writes reach readers as they happen, and the
//! stored stream stays exactly-once when the run crashes and is resumed
//! between them.

mod common;
mod recording;

use std::time::Duration;

use common::{Item, Progress};
use recording::Recording;
use stepwise::store::{JournalStore, MemoryStore, RunStatus};
use stepwise::{Context, Journal, JournalConfig, RunOptions, StartEvent, StepConfig, StopEvent, StreamExt, Workflow};

/// `report` writes four progress events 250 ms apart, then stops the run.
fn reporter() -> Workflow {
    Workflow::builder("reporter")
        .event::<Progress>()
        .step("report", |ctx: Context, _: StartEvent| async move {
            for quarter in 1..=4 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                ctx.write_event_to_stream(Progress(format!("{quarter}/4")));
            }
            StopEvent::new("done")
        })
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_journaled_steps_progress_is_read_while_the_step_runs() {
    let journal = Journal::new(MemoryStore::new());
    let started = tokio::time::Instant::now();
    let handle = reporter().run_with(StartEvent::new(), RunOptions::new().journal(&journal));
    let mut stream = handle.stream_events().unwrap();
    let mut seen = Vec::new();
    while let Some(event) = stream.next().await {
        if let Some(progress) = event.downcast_ref::<Progress>() {
            seen.push((progress.0.clone(), started.elapsed().as_millis()));
        }
    }
    assert_eq!(
        seen,
        [
            ("1/4".to_owned(), 250),
            ("2/4".to_owned(), 500),
            ("3/4".to_owned(), 750),
            ("4/4".to_owned(), 1000)
        ],
        "each write is read when it is made, not when the step ends"
    );
    assert_eq!(handle.await.unwrap().result, "done");
    journal.flush().await.unwrap();
}

/// `split` sends two items with a progress write after each; `work`
/// collects both and stops the run. `split` flushes `journal` after each
/// write, so that each write is a commit boundary (a crash point) of its own.
fn split_flow(journal: Journal) -> Workflow {
    Workflow::builder("split")
        .event::<Progress>()
        .step_with(
            StepConfig::new("split").emits::<Item>(),
            move |ctx: Context, _: StartEvent| {
                let journal = journal.clone();
                async move {
                    ctx.send_event(Item { id: 1 });
                    ctx.write_event_to_stream(Progress("one sent".into()));
                    let _ = journal.flush().await;
                    ctx.send_event(Item { id: 2 });
                    ctx.write_event_to_stream(Progress("two sent".into()));
                    let _ = journal.flush().await;
                }
            },
        )
        .step("work", |ctx: Context, item: Item| async move {
            let all = ctx.collect_n(&item, 2)?;
            Some(StopEvent::new(all.iter().map(|i| i.id).sum::<u32>()))
        })
        .build()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_crash_between_live_writes_keeps_the_stored_stream_exactly_once() {
    let recording = Recording::default();
    // One commit per hand-over, so that every live write is a crash point.
    let config = JournalConfig {
        max_batch: 1,
        commit_delay: Duration::ZERO,
        ..JournalConfig::default()
    };
    let run_id = runtime().block_on(async {
        let journal = Journal::with_config(recording.clone(), config.clone());
        let wf = split_flow(journal.clone());
        let handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal));
        let run_id = handle.run_id().to_owned();
        assert_eq!(handle.await.unwrap().result, 3);
        journal.flush().await.unwrap();
        run_id
    });
    let batches = recording.batches.lock().unwrap().clone();
    assert!(batches.len() >= 3, "{} commits", batches.len());
    let mut resumed_midway = 0;
    for k in 1..=batches.len() {
        runtime().block_on(async {
            let store = MemoryStore::new();
            for batch in &batches[..k] {
                store.write(batch).await.unwrap();
            }
            let record = store.run(&run_id).await.unwrap().unwrap();
            let before = store.events(&run_id, 0).await.unwrap().len();
            if record.status == RunStatus::Running {
                if before > 0 {
                    resumed_midway += 1;
                }
                let journal = Journal::with_config(store.clone(), config.clone());
                let wf = split_flow(journal.clone());
                let handle = wf.resume(&journal, &run_id).await.unwrap();
                assert_eq!(handle.await.unwrap().result, 3, "crash after commit {k}");
                journal.flush().await.unwrap();
            }
            let stored: Vec<String> = store
                .events(&run_id, 0)
                .await
                .unwrap()
                .iter()
                .filter_map(|e| {
                    let event: serde_json::Value = serde_json::from_str(&e.event).unwrap();
                    (event["type"] == "Progress").then(|| event["value"].as_str().unwrap_or_default().to_owned())
                })
                .collect();
            assert_eq!(stored, ["one sent", "two sent"], "crash after commit {k}");
            let seqs: Vec<u64> = store.events(&run_id, 0).await.unwrap().iter().map(|e| e.seq).collect();
            assert_eq!(
                seqs,
                (0..seqs.len() as u64).collect::<Vec<_>>(),
                "crash after commit {k}"
            );
        });
    }
    assert!(resumed_midway > 0, "some crash point fell between the live writes");
}
