use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::store::{JournalStore, MemoryStore, RunStatus, SqliteStore};
use stepwise::{Context, Event, Journal, StartEvent, StepConfig, StopEvent, StreamExt, Workflow};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct A(u32);
impl Event for A {
    const NAME: &'static str = "A";
}
#[derive(Clone, Debug, Serialize, Deserialize)]
struct B(u32);
impl Event for B {
    const NAME: &'static str = "B";
}

fn flow(first: Arc<AtomicU32>, second: Arc<AtomicU32>) -> Workflow {
    Workflow::builder("durable")
        .step("one", move |ctx: Context, _ev: StartEvent| {
            let first = first.clone();
            async move {
                first.fetch_add(1, Ordering::SeqCst);
                ctx.write_event_to_stream(A(1));
                A(1)
            }
        })
        .step_with(StepConfig::new("two"), move |ev: A| {
            let second = second.clone();
            async move {
                second.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                B(ev.0 + 1)
            }
        })
        .step("three", |ev: B| async move { StopEvent::new(ev.0) })
        .build()
        .unwrap()
}

fn crash_and_resume(store: impl JournalStore + Clone) {
    let (first, second) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let wf = flow(first.clone(), second.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run_id = rt.block_on(async {
        let journal = Journal::new(store.clone());
        let handle = wf.run_with(StartEvent::new(), stepwise::RunOptions::new().journal(&journal));
        tokio::time::sleep(Duration::from_millis(100)).await;
        journal.flush().await.unwrap();
        handle.run_id().to_owned()
    });
    rt.shutdown_background(); // the "crash": every task dropped mid-step
    assert_eq!(first.load(Ordering::SeqCst), 1);
    assert_eq!(second.load(Ordering::SeqCst), 1);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let journal = Journal::new(store.clone());
        let record = journal.store().run(&run_id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Running);
        let resumed = wf.resume_unfinished(&journal).await.unwrap();
        assert_eq!(resumed.len(), 1);
        let handle = resumed.into_iter().next().unwrap().1.unwrap();
        let mut stream = handle.stream_events().unwrap();
        let mut names = Vec::new();
        while let Some(ev) = stream.next().await {
            names.push(ev.name());
        }
        let stop = handle.await.unwrap();
        assert_eq!(stop.result, 2);
        assert_eq!(names, ["StopEvent"]);
        journal.flush().await.unwrap();
        let record = journal.store().run(&run_id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Completed);
        let events = journal.store().events(&run_id, 0).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [0, 1], "{events:?}");
        assert!(events[0].event.contains("\"A\""));
    });
    assert_eq!(first.load(Ordering::SeqCst), 1, "completed step not recomputed");
    assert_eq!(second.load(Ordering::SeqCst), 2, "in-flight step ran again");
}

#[test]
fn memory_store_crash_and_resume() {
    crash_and_resume(MemoryStore::new());
}

#[test]
fn sqlite_store_crash_and_resume() {
    let dir = std::env::temp_dir().join(format!("stepwise-smoke4-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("runs.db");
    let _ = std::fs::remove_file(&path);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(SqliteStore::open(&path)).unwrap();
    crash_and_resume(store);
}
