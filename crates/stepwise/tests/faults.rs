//! Durability under faults: one owner per run (claims, fenced commits, dead
//! owners), a store that fails for a while or for good, state edits across a
//! crash at every commit boundary, and journal backpressure. (The faults only
//! a database file has are in `stepwise-sqlite`'s `tests/faults.rs`.)

mod common;
mod recording;
use common::durable::{asking, finish, runtime, slow_chain, until_idle, Tick};
use recording::Recording;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::store::{
    Claim, EntryBatch, JournalStore, MemoryStore, PublishedRecord, RunFilter, RunRecord, RunStatus, StoreError,
    StoreFuture, WriteBatch,
};
use stepwise::{
    Context, HumanResponseEvent, Journal, JournalConfig, JournalError, ResumeError, ResumeOptions, RunError,
    RunOptions, StartEvent, StateStore, StepConfig, StopEvent, Workflow,
};

// ------------------------------------------------------------ ownership

#[test]
fn a_run_held_by_a_live_journal_cannot_be_resumed_by_another() {
    runtime().block_on(async {
        let store = MemoryStore::new();
        let starts = Arc::new(AtomicU32::new(0));
        let wf = asking(&starts);
        let first = Journal::new(store.clone());
        let handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&first).run_id("w"));
        until_idle(&handle).await;
        first.flush().await.unwrap();

        // A second journal (another process, as far as the store knows).
        let second = Journal::new(store.clone());
        let error = wf.resume(&second, "w").await.unwrap_err();
        assert!(matches!(error, ResumeError::Held { .. }), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("run w") && text.contains(&format!("process {}", std::process::id())),
            "{text}"
        );

        // Asked to wait, it gets the run once the first journal lets go.
        let releasing = first.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            releasing.shutdown().await.unwrap();
        });
        let resumed = wf
            .resume_with(
                &second,
                "w",
                ResumeOptions::new().wait_for_owner(Duration::from_secs(10)),
            )
            .await
            .unwrap();
        let record = store.run("w").await.unwrap().unwrap();
        assert_eq!(record.epoch, 2, "the claim moved the run to a new epoch");
        assert_eq!(record.owner.unwrap().owner, *second.owner());

        // The first process's run is now a zombie: its next commit is
        // refused and reported to it, never merged.
        handle.send_event(HumanResponseEvent::new("zombie")).unwrap();
        let zombie = finish(handle).await.unwrap_err();
        match &zombie {
            RunError::Journal {
                run_id,
                source: JournalError::Fenced { reason, .. },
            } => {
                assert_eq!(run_id, "w");
                assert!(reason.contains("claimed by another journal"), "{reason}");
            }
            other => panic!("expected a fenced run, got {other}"),
        }
        resumed.send_event(HumanResponseEvent::new("real")).unwrap();
        assert_eq!(finish(resumed).await.unwrap().result, "got real");
        second.flush().await.unwrap();
        let record = store.run("w").await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Completed);
        assert_eq!(record.result.unwrap()["value"]["result"], "got real");
        let names: Vec<String> = store
            .events("w", 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.event.clone())
            .collect();
        assert!(
            names.iter().all(|e| !e.contains("zombie")),
            "nothing of the zombie merged: {names:?}"
        );
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn a_caller_chosen_run_id_in_use_is_refused_before_any_step_runs() {
    runtime().block_on(async {
        let store = MemoryStore::new();
        let starts = Arc::new(AtomicU32::new(0));
        let wf = asking(&starts);
        let first = Journal::new(store.clone());
        let handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&first).run_id("same"));
        until_idle(&handle).await;
        let second = Journal::new(store.clone());
        let again = wf.run_with(StartEvent::new(), RunOptions::new().journal(&second).run_id("same"));
        let error = finish(again).await.unwrap_err();
        assert!(
            error.to_string().contains("run same") && error.to_string().contains("already in use"),
            "{error}"
        );
        assert_eq!(starts.load(Ordering::SeqCst), 1, "the refused run ran no step");
        // The same journal cannot start it twice either.
        let twice = wf.run_with(StartEvent::new(), RunOptions::new().journal(&first).run_id("same"));
        assert!(matches!(finish(twice).await, Err(RunError::Journal { .. })));
        handle.send_event(HumanResponseEvent::new("yes")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, "got yes");
    });
}

#[test]
fn a_dead_runtimes_runs_are_taken_at_once() {
    let store = MemoryStore::new();
    let starts = Arc::new(AtomicU32::new(0));
    let wf = asking(&starts);
    let rt = runtime();
    rt.block_on(async {
        let journal = Journal::new(store.clone());
        let handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal).run_id("d"));
        until_idle(&handle).await;
        journal.flush().await.unwrap();
    });
    drop(rt); // the "process" dies: its journal's writer stops
    runtime().block_on(async {
        let journal = Journal::new(store.clone());
        let handle = wf.resume(&journal, "d").await.unwrap();
        handle.send_event(HumanResponseEvent::new("ok")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, "got ok");
    });
}

// ------------------------------------------------------- a failing store

/// A store that fails every write while `failing` is set (transient errors
/// by default, or `damaged` ones retrying cannot fix).
#[derive(Clone, Default)]
struct Flaky {
    inner: MemoryStore,
    failing: Arc<AtomicBool>,
    damaged: Arc<AtomicBool>,
    refused: Arc<AtomicU32>,
}

impl JournalStore for Flaky {
    fn write<'a>(&'a self, batch: &'a WriteBatch) -> StoreFuture<'a, ()> {
        if self.failing.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            let error = if self.damaged.load(Ordering::SeqCst) {
                StoreError::Damaged("injected: the disk went away".into())
            } else {
                StoreError::Database("injected: database or disk is full".into())
            };
            return Box::pin(std::future::ready(Err(error)));
        }
        self.inner.write(batch)
    }
    fn run(&self, run_id: &str) -> StoreFuture<'_, Option<RunRecord>> {
        self.inner.run(run_id)
    }
    fn runs(&self, filter: RunFilter) -> StoreFuture<'_, Vec<RunRecord>> {
        self.inner.runs(filter)
    }
    fn entries(&self, run_id: &str, from_seq: u64) -> StoreFuture<'_, Vec<EntryBatch>> {
        self.inner.entries(run_id, from_seq)
    }
    fn events(&self, run_id: &str, from_seq: u64) -> StoreFuture<'_, Vec<PublishedRecord>> {
        self.inner.events(run_id, from_seq)
    }
    fn state(&self, run_id: &str) -> StoreFuture<'_, Option<String>> {
        self.inner.state(run_id)
    }
    fn snapshot(&self, run_id: &str) -> StoreFuture<'_, Option<String>> {
        self.inner.snapshot(run_id)
    }
    fn claim<'a>(&'a self, claim: &'a Claim) -> StoreFuture<'a, Option<u64>> {
        self.inner.claim(claim)
    }
}

#[test]
fn a_store_failing_past_the_retry_budget_stops_the_run_and_leaves_no_gap() {
    runtime().block_on(async {
        let store = Flaky::default();
        let config = JournalConfig {
            retry_for: Duration::from_millis(100),
            ..JournalConfig::default()
        };
        let journal = Journal::with_config(store.clone(), config.clone());
        let wf = slow_chain();
        let handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal).run_id("f"));
        // The store fails once the run's first commit is in (however loaded
        // the machine), so that what it keeps is a prefix to resume from.
        tokio::time::timeout(Duration::from_secs(20), async {
            while store.run("f").await.unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the run's first commit lands");
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.failing.store(true, Ordering::SeqCst);
        let error = finish(handle).await.unwrap_err();
        match &error {
            RunError::Journal {
                run_id,
                source: JournalError::Lost { runs, source },
            } => {
                assert_eq!(run_id, "f");
                assert_eq!(runs, &["f".to_owned()]);
                assert!(source.to_string().contains("disk is full"), "{source}");
            }
            other => panic!("expected a lost commit, got {other}"),
        }
        let flushed = journal.flush().await.unwrap_err();
        assert!(flushed.to_string().contains("run f"), "{flushed}");
        assert!(journal.flush().await.is_ok(), "a loss is reported once");

        // The store heals. What it holds is a readable prefix, still running,
        // and the run resumes from it to the right result.
        store.failing.store(false, Ordering::SeqCst);
        let record = store.run("f").await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Running);
        // The same process resumes it with its journal.
        let handle = wf.resume(&journal, "f").await.unwrap();
        assert_eq!(finish(handle).await.unwrap().result, 9);
        journal.flush().await.unwrap();
        assert_eq!(store.run("f").await.unwrap().unwrap().status, RunStatus::Completed);
    });
}

#[test]
fn a_store_failing_briefly_loses_nothing() {
    runtime().block_on(async {
        let store = Flaky::default();
        let journal = Journal::new(store.clone());
        let wf = slow_chain();
        let handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal));
        let run_id = handle.run_id().to_owned();
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        store.failing.store(false, Ordering::SeqCst);
        assert_eq!(finish(handle).await.unwrap().result, 9);
        journal.flush().await.unwrap();
        assert!(store.refused.load(Ordering::SeqCst) > 0, "the fault was hit");
        assert!(journal.last_error().is_some());
        let record = store.run(&run_id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Completed);
        let trace = wf.trace(&journal, &run_id).await.unwrap();
        assert_eq!(trace.steps.len(), 11, "every step is in the journal");
    });
}

#[test]
fn a_damaged_store_is_given_up_at_once() {
    runtime().block_on(async {
        let store = Flaky::default();
        let journal = Journal::new(store.clone()); // a 60 s budget: not waited for
        store.damaged.store(true, Ordering::SeqCst);
        store.failing.store(true, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let handle = slow_chain().run_with(StartEvent::new(), RunOptions::new().journal(&journal));
        let error = finish(handle).await.unwrap_err();
        assert!(error.to_string().contains("store damaged"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(journal.flush().await.is_err());
    });
}

// ------------------------------------------------ state across a crash

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Counter {
    n: u32,
}

/// Eight steps in a row, each adding one to the state, then stop.
fn counting() -> Workflow<StartEvent, StopEvent> {
    Workflow::builder("counting")
        .state::<Counter>()
        .step("begin", |_: StartEvent| async { Tick(0) })
        .step_with(
            StepConfig::new("add").emits::<Tick>().emits::<StopEvent>(),
            |ctx: Context, tick: Tick| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ctx.state().edit(|c: &mut Counter| c.n += 1).await.unwrap();
                if tick.0 + 1 == 8 {
                    ctx.send_event(StopEvent::new(tick.0 + 1));
                } else {
                    ctx.send_event(Tick(tick.0 + 1));
                }
            },
        )
        .build()
        .unwrap()
}

/// A crash after every commit: resuming from what was committed never loses
/// a finished step's state edit (the counter ends at 8, or 9 when the step
/// that was running at the crash had its edit committed and ran again).
#[test]
fn state_edits_survive_a_crash_at_every_commit_boundary() {
    runtime().block_on(async {
        let recording = Recording::default();
        let config = JournalConfig {
            commit_delay: Duration::ZERO,
            ..JournalConfig::default()
        };
        let journal = Journal::with_config(recording.clone(), config.clone());
        let wf = counting();
        let handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal));
        let run_id = handle.run_id().to_owned();
        assert_eq!(finish(handle).await.unwrap().result, 8);
        journal.shutdown().await.unwrap();
        let batches = recording.batches.lock().unwrap().clone();
        assert!(batches.len() >= 6, "commit boundaries to crash at: {}", batches.len());
        for k in 1..batches.len() {
            let store = MemoryStore::new();
            for batch in &batches[..k] {
                store.write(batch).await.unwrap();
            }
            let record = store.run(&run_id).await.unwrap().unwrap();
            let journal = Journal::with_config(store.clone(), config.clone());
            let n = if record.status == RunStatus::Running {
                let handle = wf.resume(&journal, &run_id).await.unwrap();
                let state: StateStore = handle.state().clone();
                finish(handle).await.unwrap();
                state.get::<Counter>().await.unwrap().n
            } else {
                let json = store.state(&run_id).await.unwrap().unwrap();
                serde_json::from_str::<Counter>(&json).unwrap().n
            };
            assert!((8..=9).contains(&n), "crash after commit {k}: counter {n}");
            journal.shutdown().await.unwrap();
        }
    });
}

// ------------------------------------------------------- backpressure

#[test]
fn a_tiny_backlog_limit_slows_runs_down_but_loses_nothing() {
    runtime().block_on(async {
        let store = MemoryStore::new();
        let config = JournalConfig {
            max_backlog_bytes: 1,
            ..JournalConfig::default()
        };
        let journal = Journal::with_config(store.clone(), config);
        let wf = slow_chain();
        let handles: Vec<_> = (0..50)
            .map(|_| wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal)))
            .collect();
        for handle in handles {
            assert_eq!(finish(handle).await.unwrap().result, 9);
        }
        journal.flush().await.unwrap();
        let completed = store
            .runs(RunFilter {
                statuses: vec![RunStatus::Completed],
                workflow: None,
            })
            .await
            .unwrap();
        assert_eq!(completed.len(), 50);
        let lag = journal.commit_lag();
        assert_eq!(lag.count, 50);
        assert!(lag.p50 <= lag.p99 && lag.p99 <= lag.max);
    });
}
