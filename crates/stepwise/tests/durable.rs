//! Durable runs: snapshots, resume after a crash (a tokio runtime shut down
//! mid-step), human-in-the-loop across a restart, retries pending across a
//! crash, damaged journals and snapshots, definition changes, run records and
//! the stored stream, and the SQLite store itself.

mod recording;
use recording::Recording;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stepwise::journal::DecodeError;
use stepwise::retry::RetryPolicy;
use stepwise::store::{
    EntryBatch, JournalStore, MemoryStore, PublishedRecord, RunFilter, RunRecord, RunStatus, SqliteStore, WriteBatch,
};
use stepwise::{
    Context, Event, HumanResponseEvent, InputRequiredEvent, Journal, JournalConfig, ResumeError, ResumeOptions,
    RunError, RunHandle, RunOptions, Snapshot, StartEvent, StepConfig, StepError, StopEvent, StreamExt, WaitFor,
    Workflow, WorkflowIdle, SNAPSHOT_FORMAT,
};

// ---------------------------------------------------------------- helpers

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Draft {
    text: String,
}
impl Event for Draft {
    const NAME: &'static str = "Draft";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Note {
    text: String,
}
impl Event for Note {
    const NAME: &'static str = "Note";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Progress {
    text: String,
}
impl Event for Progress {
    const NAME: &'static str = "Progress";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Num(u64);
impl Event for Num {
    const NAME: &'static str = "Num";
}

/// Counts calls, shared between sessions (the "side file" of a test).
#[derive(Clone, Default)]
struct Count(Arc<AtomicU32>);
impl Count {
    fn hit(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A database path in a fresh temporary directory, removed when dropped.
struct TempDb {
    dir: PathBuf,
    path: PathBuf,
}

impl std::ops::Deref for TempDb {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.path
    }
}

impl AsRef<Path> for TempDb {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_db(test: &str) -> TempDb {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "stepwise-durable-{}-{test}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDb {
        path: dir.join("runs.db"),
        dir,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// The stable names of stored events, in order.
fn names(events: &[PublishedRecord]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let value: Value = serde_json::from_str(&e.event).unwrap();
            value["type"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

/// Asserts the stored stream is numbered 0..n without gaps or repeats.
async fn stored_stream(store: &dyn JournalStore, run_id: &str) -> Vec<String> {
    let events = store.events(run_id, 0).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>(), "{events:?}");
    names(&events)
}

/// Reads the stream until `stop` says so (or the stream ends); returns the names seen.
async fn read_until<O: Event>(
    handle: &RunHandle<O>,
    stream: &mut stepwise::EventStream,
    mut stop: impl FnMut(&stepwise::AnyEvent) -> bool,
) -> Vec<&'static str> {
    let mut seen = Vec::new();
    let read = async {
        while let Some(event) = stream.next().await {
            seen.push(event.name());
            if stop(&event) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or_else(|_| panic!("run {} never got there; saw {seen:?}", handle.run_id()));
    seen
}

async fn finish<O: Event>(handle: RunHandle<O>) -> Result<O, RunError> {
    tokio::time::timeout(Duration::from_secs(20), handle)
        .await
        .expect("the run finishes")
}

// ------------------------------------------------ workflows used below

/// Human in the loop, returned form: `draft` returns an input request; a
/// `HumanResponseEvent` sent from outside goes to `review`.
fn returned_hitl(drafts: &Count, reviews: &Count) -> Workflow {
    let (drafts, reviews) = (drafts.clone(), reviews.clone());
    Workflow::builder("hitl-returned")
        .step("draft", move |ev: StartEvent| {
            let drafts = drafts.clone();
            async move {
                drafts.hit();
                let topic: String = ev.get("topic").unwrap_or_default();
                InputRequiredEvent::new(format!("approve a text about {topic}?"))
            }
        })
        .step("review", move |ev: HumanResponseEvent| {
            let reviews = reviews.clone();
            async move {
                reviews.hit();
                StopEvent::new(format!("approved: {}", ev.response))
            }
        })
        .build()
        .unwrap()
}

/// Human in the loop, `wait_for_event` form. `ask` writes to the stream and
/// sends a note before it waits, and works for `after_answer` ms once answered.
fn waiting_hitl(prepares: &Count, asks: &Count, notes: &Count, after_answer: &Arc<AtomicU64>) -> Workflow {
    let (prepares, asks, notes) = (prepares.clone(), asks.clone(), notes.clone());
    let after_answer = after_answer.clone();
    Workflow::builder("hitl-wait")
        .event::<Progress>()
        .step("prepare", move |_ev: StartEvent| {
            let prepares = prepares.clone();
            async move {
                prepares.hit();
                Draft { text: "v1".into() }
            }
        })
        .step_with(
            StepConfig::new("ask").emits::<Note>(),
            move |ctx: Context, draft: Draft| {
                let asks = asks.clone();
                let after_answer = after_answer.clone();
                async move {
                    asks.hit();
                    ctx.write_event_to_stream(Progress {
                        text: format!("asking about {}", draft.text),
                    });
                    ctx.send_event(Note { text: "asked".into() });
                    let answer = ctx
                        .wait_for_event(
                            WaitFor::<HumanResponseEvent>::new()
                                .id("approval")
                                .publish(InputRequiredEvent::new(format!("approve {}?", draft.text))),
                        )
                        .await
                        .map_err(StepError::new)?;
                    let work = Duration::from_millis(after_answer.load(Ordering::SeqCst));
                    tokio::time::sleep(work).await;
                    Ok::<_, StepError>(StopEvent::new(format!("{}: {}", draft.text, answer.response)))
                }
            },
        )
        .step("log", move |_note: Note| {
            let notes = notes.clone();
            async move {
                notes.hit();
            }
        })
        .build()
        .unwrap()
}

// ------------------------------------------------- snapshot and resume

#[test]
fn snapshot_at_idle_resumes_in_a_fresh_runtime_from_json() {
    let (drafts, reviews) = (Count::default(), Count::default());
    let wf = returned_hitl(&drafts, &reviews);
    let (run_id, json) = runtime().block_on(async {
        let handle = wf.run(StartEvent::new().with("topic", "owls"));
        let mut stream = handle.stream_events().unwrap();
        let seen = read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        assert_eq!(seen, ["InputRequiredEvent", "WorkflowIdle"]);
        let snapshot = handle.snapshot().await.unwrap();
        assert_eq!(snapshot.format, SNAPSHOT_FORMAT);
        assert_eq!(snapshot.status, RunStatus::Running);
        let json = snapshot.to_json().unwrap();
        handle.cancel();
        let run_id = handle.run_id().to_owned();
        assert!(matches!(finish(handle).await, Err(RunError::Cancelled { .. })));
        (run_id, json)
    });
    assert_eq!((drafts.get(), reviews.get()), (1, 0));

    runtime().block_on(async {
        let snapshot = Snapshot::from_json(&json).unwrap();
        assert_eq!(snapshot.run_id, run_id);
        let handle = wf.resume_from_snapshot(snapshot, RunOptions::new()).unwrap();
        assert_eq!(handle.run_id(), run_id);
        let mut stream = handle.stream_events().unwrap();
        handle.send_event(HumanResponseEvent::new("yes")).unwrap();
        let seen = read_until(&handle, &mut stream, |_| false).await;
        assert_eq!(seen.last(), Some(&"StopEvent"), "{seen:?}");
        assert_eq!(finish(handle).await.unwrap().result, "approved: yes");
    });
    assert_eq!((drafts.get(), reviews.get()), (1, 1), "draft ran once, review once");
}

#[test]
fn snapshot_taken_after_cancel_resumes() {
    let (drafts, reviews) = (Count::default(), Count::default());
    let wf = returned_hitl(&drafts, &reviews);
    let json = runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        handle.cancel();
        let snapshot = handle.snapshot().await.unwrap();
        assert_eq!(snapshot.status, RunStatus::Cancelled);
        assert!(matches!(finish(handle).await, Err(RunError::Cancelled { .. })));
        snapshot.to_json().unwrap()
    });
    runtime().block_on(async {
        let handle = wf
            .resume_from_snapshot(Snapshot::from_json(&json).unwrap(), RunOptions::new())
            .unwrap();
        let mut stream = handle.stream_events().unwrap();
        // The resumed run says what it waits for.
        let seen = read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        assert_eq!(seen, ["WorkflowIdle"]);
        handle.send_event(HumanResponseEvent::new("later")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, "approved: later");
    });
    assert_eq!((drafts.get(), reviews.get()), (1, 1));
}

#[test]
fn snapshot_of_a_finished_run_does_not_resume() {
    let (drafts, reviews) = (Count::default(), Count::default());
    let wf = returned_hitl(&drafts, &reviews);
    runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        handle.send_event(HumanResponseEvent::new("ok")).unwrap();
        read_until(&handle, &mut stream, |_| false).await;
        let snapshot = handle.snapshot().await.unwrap();
        assert_eq!(snapshot.status, RunStatus::Completed);
        let error = wf.resume_from_snapshot(snapshot, RunOptions::new()).unwrap_err();
        assert!(
            matches!(
                error,
                ResumeError::Finished {
                    status: RunStatus::Completed,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains(handle.run_id()), "{error}");
    });
}

#[test]
fn snapshot_while_waiting_reruns_the_waiting_step_without_repeating_its_effects() {
    let (prepares, asks, notes) = (Count::default(), Count::default(), Count::default());
    let wf = waiting_hitl(&prepares, &asks, &notes, &Arc::default());
    let json = runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        let seen = read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        assert_eq!(seen, ["Progress", "InputRequiredEvent", "WorkflowIdle"]);
        let snapshot = handle.snapshot().await.unwrap();
        handle.cancel();
        snapshot.to_json().unwrap()
    });
    assert_eq!((prepares.get(), asks.get(), notes.get()), (1, 1, 1));
    runtime().block_on(async {
        let handle = wf
            .resume_from_snapshot(Snapshot::from_json(&json).unwrap(), RunOptions::new())
            .unwrap();
        let mut stream = handle.stream_events().unwrap();
        let seen = read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        // The re-run's stream write and input request were already published.
        assert_eq!(seen, ["WorkflowIdle"]);
        handle.send_event(HumanResponseEvent::new("yes")).unwrap();
        let seen = read_until(&handle, &mut stream, |_| false).await;
        assert_eq!(seen, ["StopEvent"]);
        assert_eq!(finish(handle).await.unwrap().result, "v1: yes");
    });
    // `ask` ran again from its start (step bodies are at-least-once), but the
    // note it had sent before waiting was not sent again.
    assert_eq!((prepares.get(), asks.get(), notes.get()), (1, 2, 1));
}

// ------------------------------------- human in the loop across a restart

/// Something to do with the handle before the crash.
type Before<O> = Box<dyn FnOnce(&RunHandle<O>) + Send>;

/// Runs `wf` journaled to the SQLite file at `path` until `ready`, then
/// "crashes": the runtime is shut down with the run mid-flight.
fn run_then_crash<O: Event>(
    wf: &Workflow<StartEvent, O>,
    path: &PathBuf,
    start: StartEvent,
    ready: impl FnMut(&stepwise::AnyEvent) -> bool + Send,
    after: Option<Before<O>>,
) -> String {
    let rt = runtime();
    let run_id = rt.block_on(async {
        let store = SqliteStore::open(path).await.unwrap();
        let journal = Journal::new(store);
        let handle = wf.run_journaled(start, &journal, RunOptions::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, ready).await;
        if let Some(after) = after {
            after(&handle);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        journal.flush().await.unwrap();
        handle.run_id().to_owned()
    });
    rt.shutdown_background();
    run_id
}

#[test]
fn returned_input_request_survives_a_restart() {
    let (drafts, reviews) = (Count::default(), Count::default());
    let wf = returned_hitl(&drafts, &reviews);
    let path = temp_db("hitl-returned");
    let run_id = run_then_crash(&wf, &path, StartEvent::new(), |e| e.is::<WorkflowIdle>(), None);
    assert_eq!((drafts.get(), reviews.get()), (1, 0));
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let mut resumed = wf.resume_unfinished(&journal).await.unwrap();
        assert_eq!(resumed.len(), 1);
        let (id, handle) = resumed.pop().unwrap();
        assert_eq!(id, run_id);
        let handle = handle.unwrap();
        let mut stream = handle.stream_events().unwrap();
        let seen = read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        assert_eq!(seen, ["WorkflowIdle"]);
        handle.send_event(HumanResponseEvent::new("ship it")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, "approved: ship it");
        journal.flush().await.unwrap();
        let stream = stored_stream(&store, &run_id).await;
        assert_eq!(count(&stream, "InputRequiredEvent"), 1, "{stream:?}");
        assert_eq!(stream.last().map(String::as_str), Some("StopEvent"));
        assert_eq!(store.run(&run_id).await.unwrap().unwrap().status, RunStatus::Completed);
    });
    assert_eq!((drafts.get(), reviews.get()), (1, 1), "draft was not run again");
}

#[test]
fn wait_for_event_across_a_restart_reruns_the_step_and_publishes_once() {
    let (prepares, asks, notes) = (Count::default(), Count::default(), Count::default());
    let wf = waiting_hitl(&prepares, &asks, &notes, &Arc::default());
    let path = temp_db("hitl-wait");
    let run_id = run_then_crash(&wf, &path, StartEvent::new(), |e| e.is::<WorkflowIdle>(), None);
    assert_eq!((prepares.get(), asks.get(), notes.get()), (1, 1, 1));
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = wf.resume(&journal, &run_id).await.unwrap();
        let mut stream = handle.stream_events().unwrap();
        let seen = read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        assert_eq!(seen, ["WorkflowIdle"], "the input request is not published again");
        handle.send_event(HumanResponseEvent::new("yes")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, "v1: yes");
        journal.flush().await.unwrap();
        let stream = stored_stream(&store, &run_id).await;
        assert_eq!(
            stream,
            [
                "Progress",
                "InputRequiredEvent",
                "WorkflowIdle",
                "WorkflowIdle",
                "StopEvent"
            ]
        );
    });
    // The waiting step ran again from its start; its effects before the wait
    // (a stream write, a send) were not repeated; `prepare` did not run again.
    assert_eq!((prepares.get(), asks.get(), notes.get()), (1, 2, 1));
}

#[test]
fn an_answer_received_before_a_crash_is_not_lost() {
    let (prepares, asks, notes) = (Count::default(), Count::default(), Count::default());
    // Once answered, `ask` works for a minute: the crash comes during that work.
    let work_ms = Arc::new(AtomicU64::new(60_000));
    let wf = waiting_hitl(&prepares, &asks, &notes, &work_ms);
    let path = temp_db("hitl-answered");
    let answer: Before<StopEvent> = Box::new(|handle| {
        handle.send_event(HumanResponseEvent::new("yes")).unwrap();
    });
    let run_id = run_then_crash(&wf, &path, StartEvent::new(), |e| e.is::<WorkflowIdle>(), Some(answer));
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        work_ms.store(0, Ordering::SeqCst);
        let handle = wf.resume(&journal, &run_id).await.unwrap();
        // Without a new answer: the re-run of `ask` gets the one it had.
        assert_eq!(finish(handle).await.unwrap().result, "v1: yes");
        journal.flush().await.unwrap();
        let stream = stored_stream(&store, &run_id).await;
        assert_eq!(stream, ["Progress", "InputRequiredEvent", "WorkflowIdle", "StopEvent"]);
    });
    assert_eq!((prepares.get(), asks.get(), notes.get()), (1, 2, 1));
}

#[test]
fn journaled_steps_can_send_or_write_then_wait() {
    // A journaled run holds a step's sends and stream writes until the step
    // ends — but applies them when it starts to wait, or these would deadlock.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Question(u64);
    impl Event for Question {
        const NAME: &'static str = "Question";
    }
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Answer(u64);
    impl Event for Answer {
        const NAME: &'static str = "Answer";
    }
    let send_then_wait = Workflow::builder("send-then-wait")
        .step_with(
            StepConfig::new("ask").emits::<Question>(),
            |ctx: Context, _ev: StartEvent| async move {
                ctx.send_event(Question(41));
                let answer = ctx
                    .wait_for_event(WaitFor::<Answer>::new())
                    .await
                    .map_err(StepError::new)?;
                Ok::<_, StepError>(StopEvent::new(answer.0))
            },
        )
        .step_with(
            StepConfig::new("oracle")
                .skip_check(stepwise::GraphCheck::TerminalEvent)
                .skip_check(stepwise::GraphCheck::DeadEnd),
            |q: Question| async move { Answer(q.0 + 1) },
        )
        .build()
        .unwrap();
    let write_then_wait = Workflow::builder("write-then-wait")
        .step("ask", |ctx: Context, _ev: StartEvent| async move {
            ctx.write_event_to_stream(InputRequiredEvent::new("name?"));
            let answer = ctx
                .wait_for_event(WaitFor::<HumanResponseEvent>::new())
                .await
                .map_err(StepError::new)?;
            Ok::<_, StepError>(StopEvent::new(answer.response))
        })
        .build()
        .unwrap();
    runtime().block_on(async {
        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let handle = send_then_wait.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        assert_eq!(finish(handle).await.unwrap().result, 42);

        let handle = write_then_wait.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<InputRequiredEvent>()).await;
        handle.send_event(HumanResponseEvent::new("ada")).unwrap();
        let run_id = handle.run_id().to_owned();
        assert_eq!(finish(handle).await.unwrap().result, "ada");
        journal.flush().await.unwrap();
        let stream = stored_stream(&store, &run_id).await;
        assert_eq!(stream, ["InputRequiredEvent", "WorkflowIdle", "StopEvent"]);
    });
}

// ------------------------------------------- a retry pending across a crash

#[test]
fn a_retry_pending_at_a_crash_fires_after_resume_on_the_run_clock() {
    let attempts: Arc<Mutex<Vec<(u32, String)>>> = Arc::default();
    let started_at: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
    let wf = {
        let (attempts, started_at) = (attempts.clone(), started_at.clone());
        Workflow::builder("retry-across-crash")
            .step_with(
                StepConfig::new("flaky").retry(RetryPolicy::fixed(3, Duration::from_secs(10))),
                move |ctx: Context, _ev: StartEvent| {
                    let (attempts, started_at) = (attempts.clone(), started_at.clone());
                    async move {
                        let info = ctx.retry_info();
                        let last = info.last_error.map(|e| e.to_string()).unwrap_or_default();
                        attempts.lock().unwrap().push((info.attempt, last));
                        started_at.lock().unwrap().push(tokio::time::Instant::now());
                        if info.attempt == 1 {
                            return Err(StepError::msg("flaky attempt 1"));
                        }
                        Ok(StopEvent::new(info.attempt))
                    }
                },
            )
            .build()
            .unwrap()
    };
    let store = MemoryStore::new();
    let rt = paused_runtime();
    let run_id = rt.block_on(async {
        let journal = Journal::new(store.clone());
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        // The first attempt fails at once; the retry is due 10 s later. The
        // process "crashes" 3 s into that wait.
        tokio::time::sleep(Duration::from_secs(3)).await;
        journal.flush().await.unwrap();
        handle.run_id().to_owned()
    });
    rt.shutdown_background();
    assert_eq!(attempts.lock().unwrap().len(), 1);

    paused_runtime().block_on(async {
        let journal = Journal::new(store.clone());
        let resumed_at = tokio::time::Instant::now();
        let handle = wf.resume(&journal, &run_id).await.unwrap();
        assert_eq!(finish(handle).await.unwrap().result, 2);
        // The run's clock stops while the run is not running: it goes on from
        // the run's last journaled tick (the failure), so the retry comes the
        // full 10 s of run time after it.
        let second = *started_at.lock().unwrap().last().unwrap();
        assert_eq!(second - resumed_at, Duration::from_secs(10));
    });
    assert_eq!(
        *attempts.lock().unwrap(),
        [(1, String::new()), (2, "flaky attempt 1".to_owned())],
        "attempt numbers and the last error survive the crash"
    );
}

// --------------------------------------------- damaged journals and snapshots

#[derive(Clone, Debug, Serialize, Deserialize)]
struct A(u64);
impl Event for A {
    const NAME: &'static str = "A";
}
#[derive(Clone, Debug, Serialize, Deserialize)]
struct B(u64);
impl Event for B {
    const NAME: &'static str = "B";
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Counter {
    count: u64,
}

/// `one` → `two` → `three`, which asks a person; the answer goes to `end`.
/// Typed state. `extra` adds a step (a changed definition).
fn chain(extra: bool) -> Workflow {
    let mut builder = Workflow::builder("chain")
        .state::<Counter>()
        .step("one", |ctx: Context, _ev: StartEvent| async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            ctx.state().edit(|c: &mut Counter| c.count += 1).await.unwrap();
            A(1)
        })
        .step("two", |ev: A| async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            B(ev.0 + 1)
        })
        .step("three", |ev: B| async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            InputRequiredEvent::new(format!("is {} right?", ev.0))
        })
        .step("end", |ctx: Context, ev: HumanResponseEvent| async move {
            let count = ctx.state().get::<Counter>().await.unwrap().count;
            StopEvent::new(format!("{} after {count}", ev.response))
        });
    if extra {
        builder = builder.step("audit", |_ev: HumanResponseEvent| async {});
    }
    builder.build().unwrap()
}

/// Runs `chain` journaled to a new SQLite file until it waits for a person;
/// the run stays unfinished (resumable).
fn waiting_chain(test: &str, snapshot_every: u64) -> (TempDb, String) {
    let path = temp_db(test);
    let rt = runtime();
    let run_id = rt.block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let config = JournalConfig {
            snapshot_every,
            ..JournalConfig::default()
        };
        let journal = Journal::with_config(store.clone(), config);
        let handle = chain(false).run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        journal.flush().await.unwrap();
        handle.run_id().to_owned()
    });
    rt.shutdown_background();
    (path, run_id)
}

/// Damages the waiting chain run's rows with `sql`, then resumes it.
fn resume_damaged(test: &str, snapshot_every: u64, sql: &str) -> (String, ResumeError) {
    let (path, run_id) = waiting_chain(test, snapshot_every);
    let error = runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let changed = store.execute_raw(sql).await.unwrap();
        assert!(changed > 0, "`{sql}` changed nothing");
        let journal = Journal::new(store);
        chain(false).resume(&journal, &run_id).await.unwrap_err()
    });
    (run_id, error)
}

/// The error's message names the run and says what is wrong.
fn assert_message(error: &ResumeError, run_id: &str, what: &str) {
    let text = error.to_string();
    assert!(text.contains(run_id) && text.contains(what), "{text}");
}

#[test]
fn the_waiting_chain_resumes_when_undamaged() {
    for snapshot_every in [0, 2] {
        let (path, run_id) = waiting_chain("undamaged", snapshot_every);
        runtime().block_on(async {
            let store = SqliteStore::open(&path).await.unwrap();
            let rows: Vec<EntryBatch> = store.entries(&run_id, 0).await.unwrap();
            assert!(rows.len() >= 3, "entries spread over several rows: {rows:?}");
            assert_eq!(store.snapshot(&run_id).await.unwrap().is_some(), snapshot_every > 0);
            let journal = Journal::new(store);
            let handle = chain(false).resume(&journal, &run_id).await.unwrap();
            handle.send_event(HumanResponseEvent::new("yes")).unwrap();
            assert_eq!(finish(handle).await.unwrap().result, "yes after 1");
        });
    }
}

#[test]
fn a_truncated_journal_row_is_a_clear_error() {
    let (run_id, error) = resume_damaged("truncated", 0, "UPDATE journal SET entries = substr(entries, 1, 20)");
    let ResumeError::Decode {
        source: DecodeError::Malformed { what, .. },
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert!(what.starts_with("journal entries 0..="), "{what}");
    assert_message(&error, &run_id, "malformed journal entries 0..=");
}

#[test]
fn an_unknown_event_name_is_a_clear_error() {
    let (run_id, error) = resume_damaged(
        "unknown-event",
        0,
        // Events are `["A", ..]` in compact entries, `{"type":"A", ..}` in full ones.
        r#"UPDATE journal SET entries = replace(replace(entries, '"type":"A"', '"type":"Vanished"'), '["A",', '["Vanished",')"#,
    );
    assert!(
        matches!(&error, ResumeError::Decode { source: DecodeError::UnknownEvent { event, workflow }, .. }
            if event == "Vanished" && workflow == "chain"),
        "{error:?}"
    );
    assert_message(&error, &run_id, "event `Vanished` is not known to workflow `chain`");
}

#[test]
fn an_event_that_no_longer_decodes_is_a_clear_error() {
    let (run_id, error) = resume_damaged(
        "bad-event",
        0,
        r#"UPDATE journal SET entries = replace(replace(entries, '{"type":"A","value":1}', '{"type":"A","value":"one"}'), '["A",1]', '["A","one"]')"#,
    );
    assert!(
        matches!(&error, ResumeError::Decode { source: DecodeError::BadEvent { event, .. }, .. } if event == "A"),
        "{error:?}"
    );
    assert_message(&error, &run_id, "stored `A` no longer decodes");
}

#[test]
fn a_gap_in_the_journal_is_a_clear_error() {
    let (run_id, error) = resume_damaged(
        "gap",
        0,
        "DELETE FROM journal WHERE first_seq = (SELECT first_seq FROM journal ORDER BY first_seq LIMIT 1 OFFSET 1)",
    );
    assert!(
        matches!(&error, ResumeError::Decode { source: DecodeError::Malformed { reason, .. }, .. } if reason.contains("gap")),
        "{error:?}"
    );
    assert_message(&error, &run_id, "the journal has a gap");
}

#[test]
fn a_truncated_or_foreign_stored_snapshot_is_a_clear_error() {
    let (run_id, error) = resume_damaged(
        "snap-truncated",
        2,
        "UPDATE snapshots SET snapshot = substr(snapshot, 1, 30)",
    );
    assert!(
        matches!(&error, ResumeError::Decode { source: DecodeError::Malformed { what, .. }, .. } if what == "snapshot"),
        "{error:?}"
    );
    assert_message(&error, &run_id, "malformed snapshot");

    let (run_id, error) = resume_damaged(
        "snap-format",
        2,
        r#"UPDATE snapshots SET snapshot = replace(snapshot, '"format":1,', '"format":99,')"#,
    );
    assert_message(
        &error,
        &run_id,
        "format 99 is not supported (this build reads format 1)",
    );

    let (run_id, error) = resume_damaged(
        "snap-foreign",
        2,
        "UPDATE snapshots SET snapshot = replace(snapshot, run_id, 'someone-else')",
    );
    assert_message(&error, &run_id, "belongs to run someone-else of workflow `chain`");
}

#[test]
fn a_corrupt_run_record_is_a_clear_error() {
    let (run_id, error) = resume_damaged("bad-status", 0, "UPDATE runs SET status = 'paused'");
    assert!(matches!(error, ResumeError::Store { .. }), "{error:?}");
    assert_message(&error, &run_id, "unknown status `paused`");
}

#[test]
fn state_that_no_longer_decodes_is_a_clear_error() {
    let (run_id, error) = resume_damaged("bad-state", 0, r#"UPDATE run_state SET state = '{"count":"many"}'"#);
    assert!(
        matches!(&error, ResumeError::State { state_type, .. } if state_type.ends_with("Counter")),
        "{error:?}"
    );
    assert_message(&error, &run_id, "stored state does not decode as `durable::Counter`");

    // The same through a snapshot.
    let wf = chain(false);
    runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        let mut snapshot = handle.snapshot().await.unwrap();
        assert_eq!(snapshot.state, json!({ "count": 1 }));
        snapshot.state = json!({ "count": -1 });
        let error = wf.resume_from_snapshot(snapshot, RunOptions::new()).unwrap_err();
        assert!(matches!(error, ResumeError::State { .. }), "{error:?}");
        assert_message(&error, handle.run_id(), "Counter");
    });
}

#[test]
fn snapshots_that_do_not_fit_give_clear_errors() {
    let wf = chain(false);
    let (drafts, reviews) = (Count::default(), Count::default());
    let other = returned_hitl(&drafts, &reviews);
    runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        let json = handle.snapshot().await.unwrap().to_json().unwrap();

        // Truncated text.
        let error = Snapshot::from_json(&json[..json.len() / 2]).unwrap_err();
        assert!(
            matches!(&error, DecodeError::Malformed { what, .. } if what == "snapshot"),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("malformed snapshot: "), "{error}");

        // Another format.
        let mut value: Value = serde_json::from_str(&json).unwrap();
        value["format"] = json!(2);
        let error = Snapshot::from_json(&value.to_string()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "malformed snapshot: format 2 is not supported (this build reads format 1)"
        );
        value.as_object_mut().unwrap().remove("format");
        let error = Snapshot::from_json(&value.to_string()).unwrap_err();
        assert!(error.to_string().contains("no `format` field"), "{error}");

        // Not JSON at all, and JSON of the wrong shape.
        assert!(Snapshot::from_json("<html>").is_err());
        let error = Snapshot::from_json(r#"{"format":1,"workflow":"chain"}"#).unwrap_err();
        assert!(error.to_string().contains("missing field"), "{error}");

        // A snapshot of another workflow.
        let snapshot = Snapshot::from_json(&json).unwrap();
        let error = other
            .resume_from_snapshot(snapshot.clone(), RunOptions::new())
            .unwrap_err();
        assert!(matches!(error, ResumeError::WrongWorkflow { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "run {} belongs to workflow `chain`, not `hitl-returned`",
                handle.run_id()
            )
        );
    });
    // An event inside the snapshot (the waiting step's input) that the
    // workflow does not know, or that no longer decodes.
    let counts = (Count::default(), Count::default(), Count::default());
    let wf = waiting_hitl(&counts.0, &counts.1, &counts.2, &Arc::default());
    runtime().block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        let json = handle.snapshot().await.unwrap().to_json().unwrap();
        let damaged = json.replace(r#""type":"Draft""#, r#""type":"Draught""#);
        assert_ne!(damaged, json, "the snapshot holds the Draft");
        let error = wf
            .resume_from_snapshot(Snapshot::from_json(&damaged).unwrap(), RunOptions::new())
            .unwrap_err();
        assert_message(
            &error,
            handle.run_id(),
            "event `Draught` is not known to workflow `hitl-wait`",
        );
        let damaged = json.replace(r#"{"text":"v1"}"#, r#"{"txt":"v1"}"#);
        assert_ne!(damaged, json);
        let error = wf
            .resume_from_snapshot(Snapshot::from_json(&damaged).unwrap(), RunOptions::new())
            .unwrap_err();
        assert_message(
            &error,
            handle.run_id(),
            "stored `Draft` no longer decodes: missing field `text`",
        );
    });
}

// ------------------------------------------------------------- versioning

#[test]
fn a_changed_definition_is_refused_unless_allowed() {
    for snapshot_every in [0, 2] {
        let (path, run_id) = waiting_chain("changed", snapshot_every);
        runtime().block_on(async {
            let store = SqliteStore::open(&path).await.unwrap();
            let journal = Journal::new(store.clone());
            let changed = chain(true);
            assert_ne!(changed.fingerprint(), chain(false).fingerprint());
            let error = changed.resume(&journal, &run_id).await.unwrap_err();
            assert!(matches!(error, ResumeError::DefinitionChanged { .. }), "{error:?}");
            let text = error.to_string();
            assert!(
                text.contains(&run_id)
                    && text.contains("different definition of workflow `chain`")
                    && text.contains(chain(false).fingerprint())
                    && text.contains("allow_changed_definition"),
                "{text}"
            );
            let handle = changed
                .resume_with(&journal, &run_id, ResumeOptions::new().allow_changed_definition(true))
                .await
                .unwrap();
            handle.send_event(HumanResponseEvent::new("fine")).unwrap();
            assert_eq!(finish(handle).await.unwrap().result, "fine after 1");
        });
    }
    // The same for snapshots.
    runtime().block_on(async {
        let handle = chain(false).run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        let snapshot = handle.snapshot().await.unwrap();
        let error = chain(true)
            .resume_from_snapshot(snapshot.clone(), RunOptions::new())
            .unwrap_err();
        assert!(matches!(error, ResumeError::DefinitionChanged { .. }), "{error:?}");
        let resumed = chain(true)
            .resume_from_snapshot(snapshot, RunOptions::new().allow_changed_definition(true))
            .unwrap();
        resumed.send_event(HumanResponseEvent::new("ok")).unwrap();
        assert_eq!(finish(resumed).await.unwrap().result, "ok after 1");
    });
}

#[test]
fn resuming_a_finished_or_unknown_run_is_refused() {
    let (path, run_id) = waiting_chain("finished", 0);
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = chain(false).resume(&journal, &run_id).await.unwrap();
        handle.send_event(HumanResponseEvent::new("done")).unwrap();
        finish(handle).await.unwrap();
        journal.flush().await.unwrap();
        let error = chain(false).resume(&journal, &run_id).await.unwrap_err();
        assert!(
            matches!(
                error,
                ResumeError::Finished {
                    status: RunStatus::Completed,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.to_string(), format!("run {run_id} has already ended (Completed)"));
        assert!(chain(false).resume_unfinished(&journal).await.unwrap().is_empty());

        let error = chain(false).resume(&journal, "no-such-run").await.unwrap_err();
        assert_eq!(error.to_string(), "no run no-such-run in the journal store");
        let (drafts, reviews) = (Count::default(), Count::default());
        let error = returned_hitl(&drafts, &reviews)
            .resume(&journal, &run_id)
            .await
            .unwrap_err();
        assert!(matches!(error, ResumeError::WrongWorkflow { .. }), "{error:?}");
    });
}

#[test]
fn a_run_whose_end_was_journaled_but_not_its_status_is_finalized() {
    let (path, run_id) = waiting_chain("finalize", 0);
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = chain(false).resume(&journal, &run_id).await.unwrap();
        handle.send_event(HumanResponseEvent::new("done")).unwrap();
        finish(handle).await.unwrap();
        journal.flush().await.unwrap();
        // As if the status write had been lost.
        store
            .execute_raw("UPDATE runs SET status = 'running', result = NULL")
            .await
            .unwrap();
        let error = chain(false).resume(&journal, &run_id).await.unwrap_err();
        assert!(
            matches!(
                error,
                ResumeError::Finished {
                    status: RunStatus::Completed,
                    ..
                }
            ),
            "{error:?}"
        );
        journal.flush().await.unwrap();
        let record = store.run(&run_id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Completed);
        assert_eq!(
            record.result,
            Some(json!({ "type": "StopEvent", "value": { "result": "done after 1" } }))
        );
    });
}

#[test]
fn a_run_with_no_journal_entries_is_marked_failed() {
    runtime().block_on(async {
        let store = MemoryStore::new();
        let wf = chain(false);
        let record = RunRecord {
            run_id: "early".into(),
            workflow: "chain".into(),
            fingerprint: wf.fingerprint().into(),
            status: RunStatus::Running,
            result: None,
            error: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            owner: None,
            epoch: 0,
        };
        store
            .write(&WriteBatch {
                runs: vec![record],
                ..WriteBatch::default()
            })
            .await
            .unwrap();
        let journal = Journal::new(store.clone());
        let resumed = wf.resume_unfinished(&journal).await.unwrap();
        assert_eq!(resumed.len(), 1);
        let error = resumed.into_iter().next().unwrap().1.unwrap_err();
        assert!(matches!(error, ResumeError::NothingRecorded { .. }), "{error:?}");
        assert!(
            error.to_string().contains("run early has no journal entries"),
            "{error}"
        );
        journal.flush().await.unwrap();
        let record = store.run("early").await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Failed);
        assert!(wf.resume_unfinished(&journal).await.unwrap().is_empty());
    });
}

// ------------------------------------------------- run records and streams

fn outcomes_flow() -> Workflow {
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
        .unwrap()
}

async fn check_records(store: impl JournalStore + Clone) {
    let wf = outcomes_flow();
    let journal = Journal::new(store.clone());
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
    read_until(&waiting, &mut stream, |e| e.is::<WorkflowIdle>()).await;
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
    let all = stored_stream(&store, "ok").await;
    assert_eq!(
        all,
        ["Progress", "Progress", "Progress", "Progress", "Progress", "StopEvent"]
    );
    let tail = store.events("ok", 3).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(tail[0].event, r#"{"type":"Progress","value":{"text":"3"}}"#);
    assert!(store.events("ok", 6).await.unwrap().is_empty());
    assert!(store.events("nobody", 0).await.unwrap().is_empty());
    let failed = stored_stream(&store, "failed").await;
    assert_eq!(failed.last().map(String::as_str), Some("WorkflowFailed"));
    let cancelled = stored_stream(&store, "cancelled").await;
    assert_eq!(cancelled.last().map(String::as_str), Some("WorkflowCancelled"));
}

#[test]
fn run_records_and_streams_in_memory() {
    runtime().block_on(check_records(MemoryStore::new()));
}

#[test]
fn run_records_and_streams_in_sqlite() {
    let path = temp_db("records");
    runtime().block_on(async {
        check_records(SqliteStore::open(&path).await.unwrap()).await;
        // A second store on the same file sees everything.
        let other = SqliteStore::open(&path).await.unwrap();
        assert_eq!(other.schema_version().await.unwrap(), 3);
        assert_eq!(other.run("ok").await.unwrap().unwrap().status, RunStatus::Completed);
        assert_eq!(other.events("ok", 0).await.unwrap().len(), 6);
        assert!(!other.entries("ok", 0).await.unwrap().is_empty());
    });
    runtime().block_on(async {
        // And so does one opened later, in another runtime.
        let reopened = SqliteStore::open(&path).await.unwrap();
        assert_eq!(reopened.schema_version().await.unwrap(), 3);
        assert_eq!(reopened.runs(RunFilter::default()).await.unwrap().len(), 3);
    });
}

#[test]
fn the_sqlite_store_is_one_file_in_wal_mode() {
    use sqlx::Connection;
    let path = temp_db("wal");
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = outcomes_flow().run_journaled(StartEvent::new(), &journal, RunOptions::new());
        finish(handle).await.unwrap();
        journal.flush().await.unwrap();
        assert!(
            path.with_file_name("runs.db-wal").exists(),
            "a write-ahead log next to the file"
        );
        // WAL mode is a property of the file: a plain connection sees it.
        let url = format!("sqlite://{}", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(version, 3);
        conn.close().await.unwrap();
    });
}

#[test]
fn resume_from_snapshot_into_a_journal_survives_a_crash() {
    let (drafts, reviews) = (Count::default(), Count::default());
    let wf = returned_hitl(&drafts, &reviews);
    let path = temp_db("snapshot-journal");
    let rt = runtime();
    let run_id = rt.block_on(async {
        // An unjournaled run, snapshotted while it waits...
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        let snapshot = handle.snapshot().await.unwrap();
        handle.cancel();
        assert_eq!(snapshot.published, 2);
        // ...resumed into a journal...
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let resumed = wf
            .resume_from_snapshot(snapshot, RunOptions::new().journal(&journal))
            .unwrap();
        let mut stream = resumed.stream_events().unwrap();
        read_until(&resumed, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        journal.flush().await.unwrap();
        let record = store.run(resumed.run_id()).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Running);
        resumed.run_id().to_owned()
    });
    // ...and the process crashes.
    rt.shutdown_background();
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = wf.resume(&journal, &run_id).await.unwrap();
        handle.send_event(HumanResponseEvent::new("yes")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, "approved: yes");
        journal.flush().await.unwrap();
        assert_eq!(store.run(&run_id).await.unwrap().unwrap().status, RunStatus::Completed);
        // The journal's stream goes on from the snapshot's count.
        let seqs: Vec<u64> = store.events(&run_id, 0).await.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3, 4], "WorkflowIdle, WorkflowIdle, StopEvent");
    });
    assert_eq!((drafts.get(), reviews.get()), (1, 1));
}

// ------------------------------------------- a crash at every commit boundary

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

/// Compile-time check: opening a store can happen inside `tokio::spawn`
/// (its future was not `Send` before, because of how the migrations used
/// their transaction).
#[test]
fn sqlite_store_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let path = temp_db("send");
    let open = async move { SqliteStore::open(&path).await };
    assert_send(&open);
    let in_memory = async { SqliteStore::in_memory().await };
    assert_send(&in_memory);
    runtime().block_on(async {
        let store = tokio::spawn(open).await.unwrap().unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 3);
        let store = tokio::spawn(in_memory).await.unwrap().unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 3);
    });
}

#[test]
fn an_event_sent_right_after_a_resume_does_not_run_a_step_twice() {
    // On a current-thread runtime the run's driver cannot run before the
    // caller's first await: the resume's rewind must already have happened
    // when the handle is returned, or it would re-queue the work the event
    // just started.
    let (drafts, reviews) = (Count::default(), Count::default());
    let wf = returned_hitl(&drafts, &reviews);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let handle = wf.run(StartEvent::new());
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        let snapshot = handle.snapshot().await.unwrap();
        handle.cancel();
        let resumed = wf.resume_from_snapshot(snapshot, RunOptions::new()).unwrap();
        resumed.send_event(HumanResponseEvent::new("at once")).unwrap();
        assert_eq!(finish(resumed).await.unwrap().result, "approved: at once");
        // A fresh run, too: an event sent at once comes after the start event.
        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        handle.send_event(HumanResponseEvent::new("early")).unwrap();
        let run_id = handle.run_id().to_owned();
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        handle.cancel();
        journal.flush().await.unwrap();
        let entries = store.entries(&run_id, 0).await.unwrap();
        let first: Value = serde_json::from_str(&entries[0].data).unwrap();
        // The compact form of "an event entered": [seq, at_us, "a", [name, fields]].
        assert_eq!(
            (&first[0][2], &first[0][3][0]),
            (&json!("a"), &json!("StartEvent")),
            "{first}"
        );
    });
    assert_eq!((drafts.get(), reviews.get()), (2, 2), "one review per answer");
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
        .unwrap()
}

async fn check_long_run(store: impl JournalStore + Clone) {
    let wf = counting_loop(3_000);
    for snapshot_every in [0, 1_500] {
        let config = JournalConfig {
            snapshot_every,
            ..JournalConfig::default()
        };
        let journal = Journal::with_config(store.clone(), config);
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let run_id = handle.run_id().to_owned();
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |_| false).await;
        let live = handle.snapshot().await.unwrap();
        assert_eq!(finish(handle).await.unwrap().result, 3_000);
        journal.flush().await.unwrap();
        // Rows hold at most 1,024 consecutive entries.
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
        // From any point inside a row, the store returns that row onwards.
        let from = store.entries(&run_id, 1_500).await.unwrap();
        assert!(
            from[0].first_seq <= 1_500 && from[0].last_seq >= 1_500,
            "{}",
            from[0].first_seq
        );
        assert_eq!(from.last(), rows.last());
        // Replay (from the start, or from the snapshot inside a row) is exact.
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

#[test]
fn long_runs_are_stored_in_bounded_rows_and_replay_exactly() {
    runtime().block_on(async {
        check_long_run(MemoryStore::new()).await;
        check_long_run(SqliteStore::in_memory().await.unwrap()).await;
    });
}

/// `chat` waits for two answers in a row under the same waiter id.
fn two_questions(asks: &Count) -> Workflow {
    let asks = asks.clone();
    Workflow::builder("two-questions")
        .step("chat", move |ctx: Context, _ev: StartEvent| {
            let asks = asks.clone();
            async move {
                asks.hit();
                let mut answers = Vec::new();
                for question in ["first?", "second?"] {
                    let answer = ctx
                        .wait_for_event(WaitFor::<HumanResponseEvent>::new().publish(InputRequiredEvent::new(question)))
                        .await
                        .map_err(StepError::new)?;
                    answers.push(answer.response);
                }
                Ok::<_, StepError>(StopEvent::new(answers))
            }
        })
        .build()
        .unwrap()
}

#[test]
fn a_step_can_wait_twice_under_the_same_id_and_resume_between() {
    let asks = Count::default();
    let wf = two_questions(&asks);
    // In one session, journaled or not: the second wait waits for a new answer.
    runtime().block_on(async {
        let journal = Journal::new(MemoryStore::new());
        for options in [RunOptions::new(), RunOptions::new().journal(&journal)] {
            let handle = wf.run_with(StartEvent::new(), options);
            let mut stream = handle.stream_events().unwrap();
            for answer in ["a", "b"] {
                read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
                handle.send_event(HumanResponseEvent::new(answer)).unwrap();
            }
            assert_eq!(finish(handle).await.unwrap().result, json!(["a", "b"]));
        }
    });
    // Across a restart after the first answer: the re-run gets it again at once
    // and waits for the second.
    let path = temp_db("two-questions");
    let answer: Before<StopEvent> = Box::new(|handle| {
        handle.send_event(HumanResponseEvent::new("a")).unwrap();
    });
    let run_id = run_then_crash(&wf, &path, StartEvent::new(), |e| e.is::<WorkflowIdle>(), Some(answer));
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let journal = Journal::new(store.clone());
        let handle = wf.resume(&journal, &run_id).await.unwrap();
        let mut stream = handle.stream_events().unwrap();
        read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
        handle.send_event(HumanResponseEvent::new("b")).unwrap();
        assert_eq!(finish(handle).await.unwrap().result, json!(["a", "b"]));
        journal.flush().await.unwrap();
        let stream = stored_stream(&store, &run_id).await;
        assert_eq!(count(&stream, "InputRequiredEvent"), 2, "{stream:?}");
    });
    assert_eq!(asks.get(), 4, "two runs in one session, then one run re-run once");
}

#[test]
fn replay_matches_live_when_times_are_not_whole_microseconds() {
    // The journal keeps microseconds. A retry delay with a sub-microsecond
    // part, added to a time that is not a whole microsecond, must give the
    // same due time live and in a replay.
    use stepwise::retry::{Stop, Wait};
    let wf = Workflow::builder("sub-micro")
        .step_with(
            StepConfig::new("flaky").retry(
                RetryPolicy::new()
                    .stop(Stop::after_attempts(3))
                    .wait(Wait::random(Duration::ZERO, Duration::from_millis(10))),
            ),
            |ctx: Context, _ev: StartEvent| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if ctx.retry_info().attempt == 1 {
                    return Err(StepError::msg("first attempt fails"));
                }
                Ok(StopEvent::new("done"))
            },
        )
        .build()
        .unwrap();
    paused_runtime().block_on(async {
        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new().run_id("fixed-id"));
        // The paused clock moves in whole milliseconds from wherever it is:
        // moved by 999 ns right after the start, the run's times are
        // x.000999 ms.
        tokio::time::advance(Duration::from_nanos(999)).await;
        tokio::time::sleep(Duration::from_millis(3)).await; // the first attempt has failed
        let live = handle.snapshot().await.unwrap();
        journal.flush().await.unwrap();
        let replayed = wf.rebuild(&journal, "fixed-id", Some(live.journal_seq)).await.unwrap();
        assert_eq!(
            replayed.reducer_state()["retries"],
            live.reducer_state()["retries"],
            "the pending retry's due time"
        );
        assert_eq!(replayed.reducer_state(), live.reducer_state());
        assert_eq!(finish(handle).await.unwrap().result, "done");
    });
}

// ------------------------------------------------------- the journal writer

#[test]
fn commits_reach_the_store_within_the_commit_delay_without_a_flush() {
    paused_runtime().block_on(async {
        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let handle = outcomes_flow().run_journaled(StartEvent::new(), &journal, RunOptions::new().run_id("r"));
        assert_eq!(finish(handle).await.unwrap().result, 42);
        // Nothing forces a commit; the writer's own delay (1 ms) does.
        tokio::time::sleep(JournalConfig::default().commit_delay * 3).await;
        let record = store.run("r").await.unwrap().expect("the run was committed");
        assert_eq!(record.status, RunStatus::Completed);
        assert_eq!(
            record.result,
            Some(json!({"type": "StopEvent", "value": {"result": 42}}))
        );
    });
}

#[test]
fn a_run_that_starts_and_ends_in_one_commit_is_written_once_with_its_outcome() {
    runtime().block_on(async {
        let recording = Recording::default();
        // A long delay puts the whole run in one commit.
        let config = JournalConfig {
            commit_delay: Duration::from_secs(3600),
            ..JournalConfig::default()
        };
        let journal = Journal::with_config(recording.clone(), config);
        // A generated id: a run with an id of the caller's waits for its
        // record's commit before it runs, so it could not end in that commit.
        let handle = outcomes_flow().run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let run_id = handle.run_id().to_owned();
        assert_eq!(finish(handle).await.unwrap().result, 42);
        journal.flush().await.unwrap();
        let batches = recording.batches.lock().unwrap().clone();
        assert_eq!(batches.len(), 1, "one commit");
        assert_eq!(batches[0].runs.len(), 1);
        assert_eq!(batches[0].runs[0].status, RunStatus::Completed);
        assert!(batches[0].statuses.is_empty(), "no separate status update");
        let record = recording.run(&run_id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Completed);
        assert_eq!(record.result.unwrap()["value"]["result"], 42);
    });
}

#[test]
fn generated_run_ids_sort_by_creation_time() {
    runtime().block_on(async {
        let wf = outcomes_flow();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let handle = wf.run_with(StartEvent::new(), RunOptions::new());
            ids.push(handle.run_id().to_owned());
            handle.await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            ids.iter()
                .all(|id| id.len() == 16 && id.chars().all(|c| c.is_ascii_alphanumeric())),
            "{ids:?}"
        );
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
    });
}

#[test]
fn sqlite_checkpoints_the_log_into_the_database_file_in_the_background() {
    let db = temp_db("checkpoint");
    runtime().block_on(async {
        let store = SqliteStore::open(&db.path).await.unwrap();
        let empty = std::fs::metadata(&db.path).unwrap().len();
        let journal = Journal::new(store.clone());
        let wf = outcomes_flow();
        for _ in 0..300 {
            wf.run_journaled(StartEvent::new(), &journal, RunOptions::new())
                .await
                .unwrap();
        }
        journal.flush().await.unwrap();
        // Far below SQLite's own checkpoint threshold; only ours copies it.
        let mut grown = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if std::fs::metadata(&db.path).unwrap().len() > empty + 64 * 1024 {
                grown = true;
                break;
            }
        }
        assert!(grown, "the database file did not grow from {empty} bytes");
        assert_eq!(store.runs(RunFilter::default()).await.unwrap().len(), 300);
    });
}

#[test]
fn a_sqlite_batch_that_fails_part_way_leaves_nothing_and_the_store_usable() {
    let db = temp_db("atomic");
    runtime().block_on(async {
        let store = SqliteStore::open(&db.path).await.unwrap();
        let record = |id: &str| RunRecord {
            run_id: id.into(),
            workflow: "w".into(),
            fingerprint: "f".into(),
            status: RunStatus::Running,
            result: None,
            error: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            owner: None,
            epoch: 0,
        };
        let row = |id: &str| EntryBatch {
            run_id: id.into(),
            first_seq: 0,
            last_seq: 0,
            data: "[]".into(),
        };
        store
            .write(&WriteBatch {
                runs: vec![record("a")],
                entries: vec![row("a")],
                ..WriteBatch::default()
            })
            .await
            .unwrap();
        // The run record goes in first; the entry row then collides.
        let failing = WriteBatch {
            runs: vec![record("b")],
            entries: vec![row("a")],
            ..WriteBatch::default()
        };
        assert!(store.write(&failing).await.is_err());
        assert!(store.run("b").await.unwrap().is_none(), "half a batch was kept");
        store
            .write(&WriteBatch {
                runs: vec![record("c")],
                ..WriteBatch::default()
            })
            .await
            .unwrap();
        assert!(store.run("c").await.unwrap().is_some());
    });
}

#[test]
fn new_sqlite_files_use_16_kib_pages() {
    let db = temp_db("pages");
    runtime().block_on(async {
        SqliteStore::open(&db.path).await.unwrap();
        // The page size is in the file's header (bytes 16–17, big-endian).
        let header = std::fs::read(&db.path).unwrap();
        assert_eq!(u16::from_be_bytes([header[16], header[17]]), 16384);
    });
}

#[test]
fn a_version_1_file_is_migrated_and_lists_its_unfinished_runs_from_an_index() {
    use sqlx::Connection;
    let db = temp_db("migrate-v1");
    runtime().block_on(async {
        // A file as the first schema left it (migration 1, verbatim).
        let url = format!("sqlite://{}?mode=rwc", db.path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0);
             CREATE TABLE runs (run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, fingerprint TEXT NOT NULL,
                 status TEXT NOT NULL, result TEXT, error TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
             CREATE INDEX runs_by_status ON runs (status, workflow);
             CREATE TABLE journal (run_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
                 entries TEXT NOT NULL, PRIMARY KEY (run_id, first_seq));
             CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL, PRIMARY KEY (run_id, seq));
             CREATE TABLE run_state (run_id TEXT PRIMARY KEY, state TEXT NOT NULL);
             CREATE TABLE snapshots (run_id TEXT PRIMARY KEY, snapshot TEXT NOT NULL);
             INSERT INTO runs VALUES ('b-done', 'w', 'f', 'completed', NULL, NULL, 2, 2);
             INSERT INTO runs VALUES ('a-open', 'w', 'f', 'running', NULL, NULL, 1, 1);
             INSERT INTO runs VALUES ('c-open', 'w', 'f', 'running', NULL, NULL, 3, 3);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();

        let store = SqliteStore::open(&db.path).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 3);
        let unfinished = store
            .runs(RunFilter {
                statuses: vec![RunStatus::Running],
                ..RunFilter::default()
            })
            .await
            .unwrap();
        let ids: Vec<&str> = unfinished.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["a-open", "c-open"], "oldest first");
        assert_eq!(store.runs(RunFilter::default()).await.unwrap().len(), 3);

        let url = format!("sqlite://{}", db.path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        // The listing reads the partial index, not the whole table.
        let detail: Vec<(i64, i64, i64, String)> =
            sqlx::query_as("EXPLAIN QUERY PLAN SELECT * FROM runs WHERE status = 'running' ORDER BY created_at, rowid")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert!(
            detail.iter().any(|(_, _, _, d)| d.contains("runs_unfinished")),
            "{detail:?}"
        );
        conn.close().await.unwrap();
    });
}

#[test]
fn an_event_seen_on_the_stream_is_committed_by_a_flush_right_after() {
    // The reader runs on another worker thread than the run; without the
    // ordering guarantee a flush could overtake the tick that published.
    runtime().block_on(async {
        let store = MemoryStore::new();
        let journal = Journal::new(store.clone());
        let wf = outcomes_flow();
        for i in 0..1000 {
            let handle = wf.run_journaled(
                StartEvent::new().with("mode", "wait"),
                &journal,
                RunOptions::new().run_id(format!("seen-{i}")),
            );
            let mut stream = handle.stream_events().unwrap();
            read_until(&handle, &mut stream, |e| e.is::<WorkflowIdle>()).await;
            journal.flush().await.unwrap();
            let stored = stored_stream(&store, &format!("seen-{i}")).await;
            assert_eq!(
                stored.last().map(String::as_str),
                Some("WorkflowIdle"),
                "run {i}: {stored:?}"
            );
            handle.cancel();
        }
    });
}
