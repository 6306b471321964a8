//! One function per promise of [`JournalStore`]. Each takes a fresh, empty
//! store and panics (an assertion) when the store breaks the promise.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stepwise::store::{
    Claim, EntryBatch, FencedRun, JournalStore, Owner, OwnerLease, PublishedRecord, RunFilter, RunRecord, RunStatus,
    StatusUpdate, StoreError, WriteBatch,
};
use stepwise::{
    Context, Event, Journal, JournalConfig, RunError, RunHandle, RunOptions, StartEvent, StepConfig, StepError,
    StopEvent, StreamExt, Workflow, WorkflowIdle,
};

// ------------------------------------------------------------- fixtures

/// A running run's record, created at `created_at_ms`, at epoch 0, unowned.
fn record(run_id: &str, workflow: &str, created_at_ms: i64) -> RunRecord {
    RunRecord {
        run_id: run_id.into(),
        workflow: workflow.into(),
        fingerprint: "fingerprint".into(),
        status: RunStatus::Running,
        result: None,
        error: None,
        created_at_ms,
        updated_at_ms: created_at_ms,
        owner: None,
        epoch: 0,
    }
}

fn entries(run_id: &str, first_seq: u64, last_seq: u64) -> EntryBatch {
    EntryBatch {
        run_id: run_id.into(),
        first_seq,
        last_seq,
        data: format!("[[{first_seq}], [{last_seq}]]"),
    }
}

fn event(run_id: &str, seq: u64) -> PublishedRecord {
    PublishedRecord {
        run_id: run_id.into(),
        seq,
        event: format!(r#"{{"type":"E","value":{seq}}}"#),
    }
}

fn status(run_id: &str, status: RunStatus, at_ms: i64) -> StatusUpdate {
    StatusUpdate {
        run_id: run_id.into(),
        status,
        result: None,
        error: None,
        at_ms,
    }
}

/// An owner on another host: only its lease can say whether it lives.
fn remote_owner(id: &str) -> Owner {
    Owner {
        id: id.into(),
        host: "elsewhere.invalid".into(),
        pid: 4242,
        started: 7,
    }
}

fn lease(owner: &Owner, until_ms: i64) -> OwnerLease {
    OwnerLease {
        owner: owner.clone(),
        until_ms,
    }
}

async fn write(store: &impl JournalStore, batch: WriteBatch) {
    store.write(&batch).await.unwrap_or_else(|e| panic!("{e}: {batch:?}"));
}

async fn ids(store: &impl JournalStore, filter: RunFilter) -> Vec<String> {
    let runs = store.runs(filter).await.unwrap();
    runs.into_iter().map(|r| r.run_id).collect()
}

/// Asserts `store` holds nothing of `batch`'s new runs and rows.
async fn nothing_written(store: &impl JournalStore, runs: &[&str], rows_of: &str) {
    for run in runs {
        assert_eq!(
            store.run(run).await.unwrap(),
            None,
            "run {run} of a refused batch was written"
        );
    }
    assert!(
        store.entries(rows_of, 0).await.unwrap().is_empty(),
        "entries of a refused batch"
    );
    assert!(
        store.events(rows_of, 0).await.unwrap().is_empty(),
        "events of a refused batch"
    );
    assert_eq!(store.state(rows_of).await.unwrap(), None, "state of a refused batch");
    assert_eq!(
        store.snapshot(rows_of).await.unwrap(),
        None,
        "snapshot of a refused batch"
    );
}

fn fenced(error: StoreError) -> Vec<FencedRun> {
    match error {
        StoreError::Fenced { runs } => runs,
        other => panic!("expected StoreError::Fenced, got {other:?}"),
    }
}

// ------------------------------------------------------- batches and reads

/// Every part of a batch is there when it has been written.
pub async fn a_batch_is_read_back_whole(store: impl JournalStore) {
    let run = record("r", "w", 1);
    write(
        &store,
        WriteBatch {
            runs: vec![run.clone()],
            entries: vec![entries("r", 0, 2), entries("r", 3, 3)],
            events: vec![event("r", 0), event("r", 1)],
            states: vec![("r".into(), r#"{"n":1}"#.into())],
            snapshots: vec![("r".into(), r#"{"format":1}"#.into())],
            ..WriteBatch::default()
        },
    )
    .await;
    assert_eq!(store.run("r").await.unwrap(), Some(run));
    assert_eq!(
        store.entries("r", 0).await.unwrap(),
        [entries("r", 0, 2), entries("r", 3, 3)]
    );
    assert_eq!(store.events("r", 0).await.unwrap(), [event("r", 0), event("r", 1)]);
    assert_eq!(store.state("r").await.unwrap().as_deref(), Some(r#"{"n":1}"#));
    assert_eq!(store.snapshot("r").await.unwrap().as_deref(), Some(r#"{"format":1}"#));
    // An empty batch is a no-op, not an error.
    write(&store, WriteBatch::default()).await;
    assert_eq!(ids(&store, RunFilter::default()).await, ["r"]);
}

/// An unknown run is no error: there is nothing to read.
pub async fn reads_of_an_unknown_run_find_nothing(store: impl JournalStore) {
    assert_eq!(store.run("nobody").await.unwrap(), None);
    assert!(store.runs(RunFilter::default()).await.unwrap().is_empty());
    assert!(store.entries("nobody", 0).await.unwrap().is_empty());
    assert!(store.events("nobody", 0).await.unwrap().is_empty());
    assert_eq!(store.state("nobody").await.unwrap(), None);
    assert_eq!(store.snapshot("nobody").await.unwrap(), None);
    let claim = Claim {
        run_id: "nobody".into(),
        lease: lease(&remote_owner("claimant"), i64::MAX),
    };
    assert_eq!(store.claim(&claim).await.unwrap(), None);
}

/// A new run's insert is its claim: an id in use refuses the whole batch,
/// naming that run, and writes nothing of it.
pub async fn a_new_run_whose_id_is_in_use_fences_the_batch_and_nothing_is_written(store: impl JournalStore) {
    write(
        &store,
        WriteBatch {
            runs: vec![record("taken", "w", 1)],
            ..WriteBatch::default()
        },
    )
    .await;
    let refused = WriteBatch {
        runs: vec![record("fresh", "w", 2), record("taken", "other", 3)],
        entries: vec![entries("fresh", 0, 0)],
        events: vec![event("fresh", 0)],
        states: vec![("fresh".into(), "{}".into())],
        snapshots: vec![("fresh".into(), "{}".into())],
        statuses: vec![status("taken", RunStatus::Failed, 9)],
        ..WriteBatch::default()
    };
    let runs = fenced(store.write(&refused).await.unwrap_err());
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(&*runs[0].run_id, "taken");
    assert!(runs[0].reason.contains("already in use"), "{}", runs[0].reason);
    nothing_written(&store, &["fresh"], "fresh").await;
    let taken = store.run("taken").await.unwrap().unwrap();
    assert_eq!((taken.workflow.as_str(), taken.status), ("w", RunStatus::Running));
    // The store is still usable, and the refused run may be written alone.
    write(
        &store,
        WriteBatch {
            runs: vec![record("fresh", "w", 2)],
            ..WriteBatch::default()
        },
    )
    .await;
    assert_eq!(ids(&store, RunFilter::default()).await, ["taken", "fresh"]);
}

/// Writes to a stored run carry the epoch the writer holds it at: another
/// epoch, or a run that is gone, refuses the whole batch, naming each run.
pub async fn a_stale_or_missing_epoch_fences_the_batch_and_nothing_is_written(store: impl JournalStore) {
    let mut held = record("held", "w", 1);
    held.epoch = 3;
    write(
        &store,
        WriteBatch {
            runs: vec![held],
            ..WriteBatch::default()
        },
    )
    .await;
    let refused = WriteBatch {
        fences: vec![("held".into(), 2), ("gone".into(), 1)],
        runs: vec![record("fresh", "w", 2)],
        entries: vec![entries("held", 0, 0)],
        events: vec![event("held", 0)],
        states: vec![("held".into(), "{}".into())],
        snapshots: vec![("held".into(), "{}".into())],
        statuses: vec![status("held", RunStatus::Completed, 9)],
        ..WriteBatch::default()
    };
    let mut runs = fenced(store.write(&refused).await.unwrap_err());
    runs.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    let named: Vec<&str> = runs.iter().map(|r| &*r.run_id).collect();
    assert_eq!(named, ["gone", "held"], "{runs:?}");
    assert!(runs[1].reason.contains("epoch 3"), "{}", runs[1].reason);
    nothing_written(&store, &["fresh"], "held").await;
    assert_eq!(store.run("held").await.unwrap().unwrap().status, RunStatus::Running);
    // At the stored epoch the same writes go in.
    write(
        &store,
        WriteBatch {
            fences: vec![("held".into(), 3)],
            entries: vec![entries("held", 0, 0)],
            statuses: vec![status("held", RunStatus::Completed, 9)],
            ..WriteBatch::default()
        },
    )
    .await;
    assert_eq!(store.run("held").await.unwrap().unwrap().status, RunStatus::Completed);
    assert_eq!(store.entries("held", 0).await.unwrap().len(), 1);
}

/// Entry rows come back in sequence order from the row holding `from_seq`
/// (so a replay from a snapshot inside a row gets that row), and only the
/// asked run's.
pub async fn entries_are_read_from_a_cursor_in_order(store: impl JournalStore) {
    write(
        &store,
        WriteBatch {
            runs: vec![record("a", "w", 1), record("b", "w", 2)],
            entries: vec![entries("a", 0, 2), entries("b", 0, 0), entries("a", 3, 5)],
            ..WriteBatch::default()
        },
    )
    .await;
    write(
        &store,
        WriteBatch {
            entries: vec![entries("a", 6, 6), entries("b", 1, 4)],
            ..WriteBatch::default()
        },
    )
    .await;
    let firsts =
        |rows: Vec<EntryBatch>| -> Vec<(u64, u64)> { rows.iter().map(|r| (r.first_seq, r.last_seq)).collect() };
    assert_eq!(firsts(store.entries("a", 0).await.unwrap()), [(0, 2), (3, 5), (6, 6)]);
    assert_eq!(firsts(store.entries("a", 2).await.unwrap()), [(0, 2), (3, 5), (6, 6)]);
    assert_eq!(firsts(store.entries("a", 4).await.unwrap()), [(3, 5), (6, 6)]);
    assert_eq!(firsts(store.entries("a", 5).await.unwrap()), [(3, 5), (6, 6)]);
    assert_eq!(firsts(store.entries("a", 6).await.unwrap()), [(6, 6)]);
    assert!(store.entries("a", 7).await.unwrap().is_empty());
    assert_eq!(firsts(store.entries("b", 3).await.unwrap()), [(1, 4)]);
    let rows = store.entries("a", 3).await.unwrap();
    assert!(rows.iter().all(|r| &*r.run_id == "a"));
    assert_eq!(rows[0].data, "[[3], [5]]", "the row's text is kept as written");
}

/// Published events come back in sequence order from `from_seq` on, only
/// the asked run's, with their text as written.
pub async fn events_are_read_from_a_cursor_in_order(store: impl JournalStore) {
    write(
        &store,
        WriteBatch {
            runs: vec![record("a", "w", 1), record("b", "w", 2)],
            events: vec![event("a", 0), event("b", 0), event("a", 1)],
            ..WriteBatch::default()
        },
    )
    .await;
    write(
        &store,
        WriteBatch {
            events: vec![event("a", 2), event("a", 3), event("b", 1)],
            ..WriteBatch::default()
        },
    )
    .await;
    let seqs = |events: Vec<PublishedRecord>| -> Vec<u64> { events.iter().map(|e| e.seq).collect() };
    assert_eq!(seqs(store.events("a", 0).await.unwrap()), [0, 1, 2, 3]);
    assert_eq!(seqs(store.events("a", 2).await.unwrap()), [2, 3]);
    assert!(store.events("a", 4).await.unwrap().is_empty());
    assert_eq!(seqs(store.events("b", 0).await.unwrap()), [0, 1]);
    assert_eq!(store.events("a", 3).await.unwrap(), [event("a", 3)]);
}

/// State and snapshot are one value per run: a later write replaces it.
pub async fn state_and_snapshot_keep_the_latest_per_run(store: impl JournalStore) {
    write(
        &store,
        WriteBatch {
            runs: vec![record("a", "w", 1), record("b", "w", 2)],
            states: vec![("a".into(), "1".into()), ("b".into(), "b1".into())],
            snapshots: vec![("a".into(), "s1".into())],
            ..WriteBatch::default()
        },
    )
    .await;
    write(
        &store,
        WriteBatch {
            states: vec![("a".into(), "2".into())],
            snapshots: vec![("a".into(), "s2".into()), ("b".into(), "sb".into())],
            ..WriteBatch::default()
        },
    )
    .await;
    assert_eq!(store.state("a").await.unwrap().as_deref(), Some("2"));
    assert_eq!(store.state("b").await.unwrap().as_deref(), Some("b1"));
    assert_eq!(store.snapshot("a").await.unwrap().as_deref(), Some("s2"));
    assert_eq!(store.snapshot("b").await.unwrap().as_deref(), Some("sb"));
}

/// A status update sets the status, result, error and update time of its
/// run and nothing else.
pub async fn status_updates_change_only_their_run(store: impl JournalStore) {
    let mut owned = record("a", "w", 1);
    owned.epoch = 2;
    write(
        &store,
        WriteBatch {
            runs: vec![owned.clone(), record("b", "w", 2), record("c", "w", 3)],
            ..WriteBatch::default()
        },
    )
    .await;
    let done = StatusUpdate {
        result: Some(json!({"type": "StopEvent", "value": {"result": [1, "two"]}})),
        ..status("a", RunStatus::Completed, 50)
    };
    let failed = StatusUpdate {
        error: Some("run failed: step `s` failed".into()),
        ..status("b", RunStatus::Failed, 60)
    };
    write(
        &store,
        WriteBatch {
            statuses: vec![done.clone(), failed],
            ..WriteBatch::default()
        },
    )
    .await;
    let a = store.run("a").await.unwrap().unwrap();
    assert_eq!(
        a,
        RunRecord {
            status: RunStatus::Completed,
            result: done.result,
            updated_at_ms: 50,
            ..owned
        }
    );
    let b = store.run("b").await.unwrap().unwrap();
    assert_eq!((b.status, b.result, b.updated_at_ms), (RunStatus::Failed, None, 60));
    assert_eq!(b.error.as_deref(), Some("run failed: step `s` failed"));
    assert_eq!(store.run("c").await.unwrap().unwrap(), record("c", "w", 3));
    // A run cancelled after all.
    write(
        &store,
        WriteBatch {
            statuses: vec![StatusUpdate {
                error: Some("cancelled".into()),
                ..status("c", RunStatus::Cancelled, 70)
            }],
            ..WriteBatch::default()
        },
    )
    .await;
    let c = store.run("c").await.unwrap().unwrap();
    assert_eq!(
        (c.status, c.error.as_deref()),
        (RunStatus::Cancelled, Some("cancelled"))
    );
}

/// `runs` lists oldest first, filtered by any of the statuses given and by
/// workflow; unfinished runs alone (what a restart lists) too.
pub async fn runs_are_listed_oldest_first_and_filtered(store: impl JournalStore) {
    write(
        &store,
        WriteBatch {
            runs: vec![record("r1", "w", 10), record("r2", "v", 20), record("r3", "w", 30)],
            ..WriteBatch::default()
        },
    )
    .await;
    write(
        &store,
        WriteBatch {
            runs: vec![record("r4", "w", 40), record("r5", "v", 50)],
            statuses: vec![
                status("r1", RunStatus::Completed, 60),
                status("r2", RunStatus::Failed, 60),
                status("r4", RunStatus::Cancelled, 60),
            ],
            ..WriteBatch::default()
        },
    )
    .await;
    let only = |statuses: &[RunStatus], workflow: Option<&str>| RunFilter {
        statuses: statuses.to_vec(),
        workflow: workflow.map(str::to_owned),
    };
    assert_eq!(ids(&store, RunFilter::default()).await, ["r1", "r2", "r3", "r4", "r5"]);
    assert_eq!(ids(&store, only(&[RunStatus::Running], None)).await, ["r3", "r5"]);
    assert_eq!(ids(&store, only(&[RunStatus::Running], Some("w"))).await, ["r3"]);
    assert_eq!(
        ids(&store, only(&[RunStatus::Failed, RunStatus::Cancelled], None)).await,
        ["r2", "r4"]
    );
    assert_eq!(ids(&store, only(&[], Some("v"))).await, ["r2", "r5"]);
    assert_eq!(
        ids(&store, only(&[RunStatus::Completed], Some("v"))).await,
        Vec::<String>::new()
    );
    assert!(ids(&store, only(&[], Some("nothing"))).await.is_empty());
}

/// Every field of a run record comes back as written.
pub async fn a_record_round_trips_every_field(store: impl JournalStore) {
    let owner = remote_owner("owner-1");
    let run = RunRecord {
        run_id: "ünï-cødé/42 with spaces".into(),
        workflow: "workflow \"quoted\"".into(),
        fingerprint: "0123456789abcdef".into(),
        status: RunStatus::Completed,
        result: Some(json!({"type": "StopEvent", "value": {"result": {"nested": [1, 2.5, null, "x"]}}})),
        error: Some("line one\nline two".into()),
        created_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_123,
        owner: Some(lease(&owner, 1_700_000_030_000)),
        epoch: 7,
    };
    write(
        &store,
        WriteBatch {
            owner: Some(lease(&owner, 1_700_000_030_000)),
            runs: vec![run.clone()],
            ..WriteBatch::default()
        },
    )
    .await;
    assert_eq!(store.run(&run.run_id).await.unwrap().as_ref(), Some(&run));
    assert_eq!(store.runs(RunFilter::default()).await.unwrap(), [run]);
}

/// A batch's `owner` renews that journal's lease: every run it holds shows
/// the renewed lease (a claim judges the holder by it).
pub async fn a_batchs_owner_lease_renews_the_lease_its_runs_show(store: impl JournalStore) {
    let owner = remote_owner("renewing");
    let mut run = record("r", "w", 1);
    run.owner = Some(lease(&owner, 1_000));
    write(
        &store,
        WriteBatch {
            owner: Some(lease(&owner, 1_000)),
            runs: vec![run],
            ..WriteBatch::default()
        },
    )
    .await;
    write(
        &store,
        WriteBatch {
            owner: Some(lease(&owner, 5_000)),
            ..WriteBatch::default()
        },
    )
    .await;
    let stored = store.run("r").await.unwrap().unwrap();
    assert_eq!(stored.owner, Some(lease(&owner, 5_000)));
    let listed = store.runs(RunFilter::default()).await.unwrap();
    assert_eq!(listed[0].owner, Some(lease(&owner, 5_000)));
}

/// A claim of a free run bumps its epoch, records the claimant with its
/// lease and returns the new epoch; commits at the old epoch are fenced.
pub async fn a_claim_bumps_the_epoch_and_fences_the_old_one(store: impl JournalStore) {
    write(
        &store,
        WriteBatch {
            runs: vec![record("r", "w", 1)],
            ..WriteBatch::default()
        },
    )
    .await;
    let claimant = remote_owner("claimant");
    let claim = Claim {
        run_id: "r".into(),
        lease: lease(&claimant, i64::MAX),
    };
    assert_eq!(store.claim(&claim).await.unwrap(), Some(1));
    let stored = store.run("r").await.unwrap().unwrap();
    assert_eq!((stored.epoch, stored.owner), (1, Some(lease(&claimant, i64::MAX))));
    let stale = WriteBatch {
        fences: vec![("r".into(), 0)],
        entries: vec![entries("r", 0, 0)],
        ..WriteBatch::default()
    };
    assert_eq!(fenced(store.write(&stale).await.unwrap_err()).len(), 1);
    write(
        &store,
        WriteBatch {
            fences: vec![("r".into(), 1)],
            entries: vec![entries("r", 0, 0)],
            ..WriteBatch::default()
        },
    )
    .await;
    // The holder may claim its own run again (a resume in the same journal).
    assert_eq!(store.claim(&claim).await.unwrap(), Some(2));
}

/// A run held by another journal whose lease has not expired cannot be
/// taken; once its (renewed-to-the-past) lease expired, it can.
pub async fn a_claim_on_a_run_under_a_live_lease_is_refused_until_it_expires(store: impl JournalStore) {
    let holder = remote_owner("holder");
    let mut run = record("r", "w", 1);
    run.owner = Some(lease(&holder, i64::MAX));
    run.epoch = 1;
    write(
        &store,
        WriteBatch {
            owner: Some(lease(&holder, i64::MAX)),
            runs: vec![run],
            ..WriteBatch::default()
        },
    )
    .await;
    let claim = Claim {
        run_id: "r".into(),
        lease: lease(&remote_owner("claimant"), i64::MAX),
    };
    match store.claim(&claim).await {
        Err(StoreError::Claimed { run_id, reason }) => {
            assert_eq!(run_id, "r");
            assert!(
                reason.contains("elsewhere.invalid"),
                "the reason names the holder: {reason}"
            );
        }
        other => panic!("expected StoreError::Claimed, got {other:?}"),
    }
    let stored = store.run("r").await.unwrap().unwrap();
    assert_eq!((stored.epoch, stored.owner), (1, Some(lease(&holder, i64::MAX))));
    // The holder's lease, as its journal last wrote it, has run out.
    write(
        &store,
        WriteBatch {
            owner: Some(lease(&holder, 1)),
            ..WriteBatch::default()
        },
    )
    .await;
    assert_eq!(store.claim(&claim).await.unwrap(), Some(2));
    assert_eq!(store.run("r").await.unwrap().unwrap().owner, Some(claim.lease));
}

// ------------------------------------------------------- through a journal

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Progress {
    text: String,
}
impl Event for Progress {
    const NAME: &'static str = "Progress";
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Num(u64);
impl Event for Num {
    const NAME: &'static str = "Num";
}

/// Writes five progress events, then stops, fails or waits (`mode`).
fn outcomes() -> Workflow {
    Workflow::builder("outcomes")
        .event::<Progress>()
        .step("work", |ctx: Context, ev: StartEvent| async move {
            for i in 0..5 {
                ctx.write_event_to_stream(Progress { text: format!("{i}") });
            }
            match ev.get::<String>("mode").unwrap_or_default().as_str() {
                "fail" => Err(StepError::msg("it broke")),
                "wait" => Ok(None),
                _ => Ok(Some(StopEvent::new(42))),
            }
        })
        .build()
        .expect("a valid workflow")
}

async fn finish<O: Event>(handle: RunHandle<O>) -> Result<O, RunError> {
    tokio::time::timeout(Duration::from_secs(20), handle)
        .await
        .expect("the run finishes")
}

/// The type names of a run's stored stream, checked to be numbered 0..n.
async fn stored_names(store: &dyn JournalStore, run_id: &str) -> Vec<String> {
    let events = store.events(run_id, 0).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>(), "{events:?}");
    events
        .iter()
        .map(|e| {
            let value: serde_json::Value = serde_json::from_str(&e.event).unwrap();
            value["type"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Runs that complete, fail and are cancelled, journaled: their records
/// say how each ended, listings filter them, and their streams read back
/// from any cursor.
pub async fn journaled_runs_keep_their_records_and_streams(store: impl JournalStore) {
    let wf = outcomes();
    let journal = Journal::new(store);
    let store = journal.store();
    let ok = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new().run_id("ok"));
    assert_eq!(finish(ok).await.unwrap().result, 42);
    let failed = wf.run_journaled(
        StartEvent::new().with("mode", "fail"),
        &journal,
        RunOptions::new().run_id("failed"),
    );
    assert!(finish(failed).await.is_err());
    let waiting = wf.run_journaled(
        StartEvent::new().with("mode", "wait"),
        &journal,
        RunOptions::new().run_id("cancelled"),
    );
    let mut stream = waiting.stream_events().unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = stream.next().await {
            if event.is::<WorkflowIdle>() {
                break;
            }
        }
    })
    .await
    .expect("the run goes idle");
    waiting.cancel();
    assert!(matches!(finish(waiting).await, Err(RunError::Cancelled { .. })));
    journal.flush().await.unwrap();

    let ok = store.run("ok").await.unwrap().unwrap();
    assert_eq!((ok.status, ok.workflow.as_str()), (RunStatus::Completed, "outcomes"));
    assert_eq!(ok.fingerprint, wf.fingerprint());
    assert_eq!(
        ok.result,
        Some(json!({ "type": "StopEvent", "value": { "result": 42 } }))
    );
    assert_eq!(ok.error, None);
    assert_eq!(ok.owner.as_ref().map(|l| &l.owner), Some(journal.owner()));
    let failed = store.run("failed").await.unwrap().unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.result, None);
    assert_eq!(
        failed.error.as_deref(),
        Some("run failed: step `work` failed after 1 attempt(s): it broke")
    );
    let cancelled = store.run("cancelled").await.unwrap().unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!(cancelled.error.as_deref(), Some("run cancelled was cancelled"));

    let only_failed = store
        .runs(RunFilter {
            statuses: vec![RunStatus::Failed, RunStatus::Cancelled],
            workflow: Some("outcomes".into()),
        })
        .await
        .unwrap();
    let ids: Vec<&str> = only_failed.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["failed", "cancelled"]);
    assert_eq!(store.runs(RunFilter::default()).await.unwrap().len(), 3);

    // The stream from a cursor.
    let all = stored_names(store, "ok").await;
    assert_eq!(
        all,
        ["Progress", "Progress", "Progress", "Progress", "Progress", "StopEvent"]
    );
    let tail = store.events("ok", 3).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(tail[0].event, r#"{"type":"Progress","value":{"text":"3"}}"#);
    assert!(store.events("ok", 6).await.unwrap().is_empty());
    let failed = stored_names(store, "failed").await;
    assert_eq!(failed.last().map(String::as_str), Some("WorkflowFailed"));
    let cancelled = stored_names(store, "cancelled").await;
    assert_eq!(cancelled.last().map(String::as_str), Some("WorkflowCancelled"));
    assert!(!store.entries("ok", 0).await.unwrap().is_empty());
}

/// `loop` sends itself `Num(n + 1)` until `n` reaches `until`.
fn counting_loop(until: u64) -> Workflow {
    Workflow::builder("counting-loop")
        .step("begin", |_ev: StartEvent| async { Num(0) })
        .step_with(
            StepConfig::new("loop").emits::<StopEvent>(),
            move |ctx: Context, n: Num| async move {
                if n.0 >= until {
                    ctx.send_event(StopEvent::new(n.0));
                    None
                } else {
                    Some(Num(n.0 + 1))
                }
            },
        )
        .build()
        .expect("a valid workflow")
}

/// A run of thousands of ticks, with and without snapshots: its journal is
/// stored in rows of at most 1,024 consecutive entries, a cursor inside a
/// row returns that row onwards, and replay from anywhere is exact.
pub async fn long_runs_are_stored_in_bounded_rows_and_replay_exactly(store: impl JournalStore) {
    let store: Arc<dyn JournalStore> = Arc::new(store);
    let wf = counting_loop(3_000);
    for snapshot_every in [0, 1_500] {
        let config = JournalConfig {
            snapshot_every,
            ..JournalConfig::default()
        };
        let journal = Journal::from_arc(Arc::clone(&store), config);
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let run_id = handle.run_id().to_owned();
        let mut stream = handle.stream_events().unwrap();
        tokio::time::timeout(Duration::from_secs(60), async {
            while stream.next().await.is_some() {}
        })
        .await
        .expect("the run ends");
        let live = handle.snapshot().await.unwrap();
        assert_eq!(finish(handle).await.unwrap().result, 3_000);
        journal.flush().await.unwrap();
        let rows = store.entries(&run_id, 0).await.unwrap();
        assert!(rows.len() >= 3, "{} rows", rows.len());
        let mut next = 0;
        for row in &rows {
            assert_eq!(row.first_seq, next);
            assert!(
                row.last_seq - row.first_seq < 1_024,
                "{}..={}",
                row.first_seq,
                row.last_seq
            );
            next = row.last_seq + 1;
        }
        assert_eq!(next, live.journal_seq);
        let from = store.entries(&run_id, 1_500).await.unwrap();
        assert!(
            from[0].first_seq <= 1_500 && from[0].last_seq >= 1_500,
            "{}",
            from[0].first_seq
        );
        assert_eq!(from.last(), rows.last());
        for upto in [None, Some(1_500), Some(2_999), Some(live.journal_seq)] {
            let rebuilt = wf.rebuild(&journal, &run_id, upto).await.unwrap();
            if upto.is_none_or(|n| n == live.journal_seq) {
                assert_eq!(rebuilt.reducer_state(), live.reducer_state());
            } else {
                assert_eq!(Some(rebuilt.journal_seq), upto);
            }
        }
    }
}
