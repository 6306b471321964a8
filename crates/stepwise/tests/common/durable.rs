//! Events, workflows and helpers shared by the durability tests of the
//! engine (on `MemoryStore`) and of `stepwise-sqlite` (which includes this
//! file by path, so the two crates' tests share one copy).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stepwise::store::{JournalStore, PublishedRecord, RunStatus};
use stepwise::{
    Context, Event, HumanResponseEvent, InputRequiredEvent, Journal, ResumeError, RunError, RunHandle, StartEvent,
    StepConfig, StepError, StopEvent, StreamExt, WaitFor, Workflow, WorkflowIdle,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Draft {
    pub text: String,
}

impl Event for Draft {
    const NAME: &'static str = "Draft";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Note {
    pub text: String,
}

impl Event for Note {
    const NAME: &'static str = "Note";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Progress {
    pub text: String,
}

impl Event for Progress {
    const NAME: &'static str = "Progress";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Num(pub u64);

impl Event for Num {
    const NAME: &'static str = "Num";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct A(pub u64);

impl Event for A {
    const NAME: &'static str = "A";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct B(pub u64);

impl Event for B {
    const NAME: &'static str = "B";
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    pub count: u64,
}

/// Counts calls, shared between sessions (the "side file" of a test).
#[derive(Clone, Default)]
pub struct Count(pub Arc<AtomicU32>);

impl Count {
    pub fn hit(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// The stable names of stored events, in order.
pub fn names(events: &[PublishedRecord]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let value: Value = serde_json::from_str(&e.event).unwrap();
            value["type"].as_str().unwrap().to_owned()
        })
        .collect()
}

pub fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

/// Asserts the stored stream is numbered 0..n without gaps or repeats.
pub async fn stored_stream(store: &dyn JournalStore, run_id: &str) -> Vec<String> {
    let events = store.events(run_id, 0).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>(), "{events:?}");
    names(&events)
}

/// Reads the stream until `stop` says so (or the stream ends); returns the names seen.
pub async fn read_until<O: Event>(
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

pub async fn finish<O: Event>(handle: RunHandle<O>) -> Result<O, RunError> {
    tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("the run finishes")
}

/// The error's message names the run and says what is wrong.
pub fn assert_message(error: &ResumeError, run_id: &str, what: &str) {
    let text = error.to_string();
    assert!(text.contains(run_id) && text.contains(what), "{text}");
}

/// Human in the loop, returned form: `draft` returns an input request; a
/// `HumanResponseEvent` sent from outside goes to `review`.
pub fn returned_hitl(drafts: &Count, reviews: &Count) -> Workflow {
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
pub fn waiting_hitl(prepares: &Count, asks: &Count, notes: &Count, after_answer: &Arc<AtomicU64>) -> Workflow {
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

/// `one` → `two` → `three`, which asks a person; the answer goes to `end`.
/// Typed state. `extra` adds a step (a changed definition).
pub fn chain(extra: bool) -> Workflow {
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

pub fn outcomes_flow() -> Workflow {
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

/// start → returns an input request; the answer → stop. Counts starts.
pub fn asking(starts: &Arc<AtomicU32>) -> Workflow {
    let starts = Arc::clone(starts);
    Workflow::builder("asking")
        .step("ask", move |_: StartEvent| {
            let starts = Arc::clone(&starts);
            async move {
                starts.fetch_add(1, Ordering::SeqCst);
                InputRequiredEvent::new("go?")
            }
        })
        .step("answer", |ev: HumanResponseEvent| async move {
            // Slow enough that a refused commit is known before the run ends.
            tokio::time::sleep(Duration::from_millis(300)).await;
            StopEvent::new(format!("got {}", ev.response))
        })
        .build()
        .unwrap()
}

pub async fn until_idle<O: Event>(handle: &stepwise::RunHandle<O>) {
    let mut stream = handle.stream_events().unwrap();
    let read = async {
        while let Some(event) = stream.next().await {
            if event.is::<WorkflowIdle>() {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the run goes idle");
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tick(pub u32);

impl Event for Tick {
    const NAME: &'static str = "Tick";
}

/// Ten steps in a row, 50 ms apart.
pub fn slow_chain() -> Workflow {
    Workflow::builder("slow_chain")
        .step("begin", |_: StartEvent| async { Tick(0) })
        .step_with(
            StepConfig::new("tick").emits::<Tick>().emits::<StopEvent>(),
            |ctx: Context, tick: Tick| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if tick.0 == 9 {
                    ctx.send_event(StopEvent::new(tick.0));
                } else {
                    ctx.send_event(Tick(tick.0 + 1));
                }
            },
        )
        .build()
        .unwrap()
}

pub fn crash_mid_step_flow(first: Arc<AtomicU32>, second: Arc<AtomicU32>) -> Workflow {
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

pub fn crash_and_resume(store: impl JournalStore + Clone) {
    let (first, second) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let wf = crash_mid_step_flow(first.clone(), second.clone());
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
