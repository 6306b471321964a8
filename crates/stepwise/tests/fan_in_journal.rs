//! Journaled fan-in over a K-long list: each collect entry is O(1) in K (the
//! list is written as runs), and journals written before that, with every
//! name of the list in every entry, still replay to the same trace.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stepwise::store::{JournalStore, MemoryStore, WriteBatch};
use stepwise::{Context, Event, EventType, Journal, RunOptions, StartEvent, StepConfig, StopEvent, Workflow};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Work {
    i: u64,
}
impl Event for Work {
    const NAME: &'static str = "Work";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Done {
    i: u64,
}
impl Event for Done {
    const NAME: &'static str = "Done";
}

/// `start` sends K `Work`; `work` answers each with `Done`; `gather` collects
/// K `Done` with the list form and stops with their ids in the order given.
fn fan_in(k: u64) -> Workflow<StartEvent, StopEvent> {
    let list: Arc<[EventType]> = vec![EventType::of::<Done>(); k as usize].into();
    Workflow::builder("fan_in")
        .step_with(
            StepConfig::new("start").emits::<Work>(),
            move |ctx: Context, _: StartEvent| async move {
                for i in 0..k {
                    ctx.send_event(Work { i });
                }
            },
        )
        .step_with(StepConfig::new("work").num_workers(3), |ev: Work| async move {
            Done { i: ev.i }
        })
        .step("gather", move |ctx: Context, ev: Done| {
            let list = Arc::clone(&list);
            async move {
                let set = ctx.collect_events(&ev, &list)?;
                let ids: Vec<u64> = set.iter().map(|e| e.downcast_ref::<Done>().unwrap().i).collect();
                Some(StopEvent::new(ids))
            }
        })
        .build()
        .expect("valid workflow")
}

/// The journal's entries, one JSON text per entry (a batch is an array).
async fn entries(store: &MemoryStore, run_id: &str) -> Vec<String> {
    let batches = store.entries(run_id, 0).await.unwrap();
    batches
        .iter()
        .flat_map(|b| serde_json::from_str::<Vec<serde_json::Value>>(&b.data).expect("a batch"))
        .map(|entry| entry.to_string())
        .collect()
}

async fn journaled_run(k: u64) -> (MemoryStore, Vec<u64>) {
    let store = MemoryStore::new();
    let journal = Journal::new(store.clone());
    let wf = fan_in(k);
    let stop = wf
        .run_with(StartEvent::new(), RunOptions::new().journal(&journal).run_id("fan"))
        .await
        .expect("run");
    journal.flush().await.expect("flush");
    (store, serde_json::from_value(stop.result).expect("ids"))
}

#[tokio::test]
async fn collect_entries_do_not_grow_with_the_list() {
    let mut largest = Vec::new();
    for k in [10u64, 1_000] {
        let (store, ids) = journaled_run(k).await;
        assert_eq!(ids.len() as u64, k);
        let collects: Vec<String> = entries(&store, "fan")
            .await
            .into_iter()
            .filter(|e| e.contains("\"collect\""))
            .collect();
        assert_eq!(collects.len() as u64, k, "one collect entry per Done");
        assert!(collects[0].contains(r#""runs":[["Done","#), "{}", collects[0]);
        largest.push(collects.iter().map(String::len).max().unwrap());
    }
    // The entries differ only in the numbers they carry.
    assert!(largest[1] < largest[0] + 16, "{largest:?}");
}

#[tokio::test]
async fn journals_with_full_lists_still_replay() {
    let k = 20u64;
    let (store, ids) = journaled_run(k).await;
    let wf = fan_in(k);
    let journal = Journal::new(store.clone());
    let trace = wf.trace(&journal, "fan").await.expect("trace");

    // The same journal as written before lists were run-length encoded.
    let runs = format!(r#"{{"runs":[["Done",{k}]]}}"#);
    let names = vec![r#""Done""#; k as usize].join(",");
    let full = format!(r#"{{"list":[{names}]}}"#);
    let mut batches = store.entries("fan", 0).await.unwrap();
    let mut rewritten = 0;
    for batch in &mut batches {
        rewritten += batch.data.matches(&runs).count();
        batch.data = batch.data.replace(&runs, &full);
    }
    assert_eq!(rewritten as u64, k);
    let old = MemoryStore::new();
    let batch = WriteBatch {
        runs: vec![store.run("fan").await.unwrap().expect("record")],
        entries: batches,
        ..WriteBatch::default()
    };
    old.write(&batch).await.unwrap();
    let old_trace = wf.trace(&Journal::new(old), "fan").await.expect("old journal replays");
    assert_eq!(old_trace, trace);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..k).collect::<Vec<_>>());
}
