//! Run traces: a journaled run's actual path rebuilt from its journal —
//! step invocations, the event instances they ran on, order, timings (on
//! tokio's paused clock, so they are exact), retries, failures,
//! cancellations, error handlers, people answering, crashes and resumes —
//! and its drawing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::graph::{EdgeStyle, NodeKind, RunTrace, TraceOutcome, WorkflowGraph};
use stepwise::store::{MemoryStore, RunStatus};
use stepwise::{
    CatchErrors, Context, Event, EventKind, HumanResponseEvent, InputRequiredEvent, Journal, RetryPolicy, RunError,
    RunOptions, StartEvent, StepConfig, StepError, StepFailed, StopEvent, StreamExt, WaitFor, Workflow,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Item(u64);
impl Event for Item {
    const NAME: &'static str = "Item";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Done(u64);
impl Event for Done {
    const NAME: &'static str = "Done";
}

#[derive(Debug, thiserror::Error)]
#[error("item {0} broke")]
struct Broke(u64);

const MS: u64 = 1000;

/// `split` fans out three items; `work` (two workers) takes (i+1)·10 ms per
/// item and fails the first attempt on item 1 (retried after 100 ms);
/// `gather` waits for the three results.
fn fan_out_with_retry() -> Workflow {
    Workflow::builder("fan_out")
        .step("split", |_: StartEvent| async { vec![Item(0), Item(1), Item(2)] })
        .step_with(
            StepConfig::new("work")
                .num_workers(2)
                .retry(RetryPolicy::fixed(3, Duration::from_millis(100))),
            |ctx: Context, item: Item| async move {
                tokio::time::sleep(Duration::from_millis((item.0 + 1) * 10)).await;
                if item.0 == 1 && ctx.retry_info().attempt == 1 {
                    return Err(StepError::new(Broke(1)));
                }
                Ok(Done(item.0))
            },
        )
        .step("gather", |ctx: Context, done: Done| async move {
            let all = ctx.collect_n(&done, 3)?;
            Some(StopEvent::new(all.iter().map(|d| d.0).sum::<u64>()))
        })
        .build()
        .unwrap()
}

async fn journaled<S: Event, O: Event>(wf: &Workflow<S, O>, start: S, run_id: &str) -> (Journal, Result<O, RunError>) {
    let journal = Journal::new(MemoryStore::new());
    let result = wf
        .run_with(start, RunOptions::new().journal(&journal).run_id(run_id))
        .await;
    journal.flush().await.unwrap();
    (journal, result)
}

/// (step, input event name, started ms, finished ms, outcome) per invocation.
fn rows(trace: &RunTrace) -> Vec<(String, String, u64, Option<u64>, TraceOutcome)> {
    trace
        .steps
        .iter()
        .map(|s| {
            (
                s.step.clone(),
                trace.events[s.input].name.clone(),
                s.started_us / MS,
                s.finished_us.map(|f| f / MS),
                s.outcome.clone(),
            )
        })
        .collect()
}

fn node<'a>(graph: &'a WorkflowGraph, id: &str) -> &'a stepwise::graph::GraphNode {
    graph.node(id).unwrap_or_else(|| panic!("no node {id}"))
}

#[tokio::test(start_paused = true)]
async fn a_fan_out_with_a_retry_is_traced_exactly() {
    let wf = fan_out_with_retry();
    let (journal, result) = journaled(&wf, StartEvent::new(), "fan").await;
    assert_eq!(result.unwrap().result, 3);
    let trace = wf.trace(&journal, "fan").await.unwrap();
    assert_eq!(trace.run_id, "fan");
    assert_eq!(trace.workflow, "fan_out");

    // Events in arrival order, with where they came from.
    let events: Vec<(&str, u64, Option<&str>)> = trace
        .events
        .iter()
        .map(|e| {
            (
                e.name.as_str(),
                e.at_us / MS,
                e.source.map(|s| trace.steps[s].step.as_str()),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("StartEvent", 0, None),
            ("Item", 0, Some("split")),
            ("Item", 0, Some("split")),
            ("Item", 0, Some("split")),
            ("Done", 10, Some("work")),
            ("Done", 40, Some("work")),
            ("Done", 140, Some("work")),
            ("StopEvent", 140, Some("gather")),
        ]
    );
    assert_eq!(trace.events[0].kind, EventKind::Start);
    assert_eq!(trace.events[7].kind, EventKind::Stop);

    // Invocations in start order, with exact timings on the paused clock:
    // item 2 waits for a free worker (two workers) and starts when item 0's
    // result has been routed, item 1's retry starts 100 ms after its failure.
    let failure = TraceOutcome::Retried {
        error: "item 1 broke".into(),
    };
    assert_eq!(
        rows(&trace),
        [
            ("split".into(), "StartEvent".into(), 0, Some(0), TraceOutcome::Ok),
            ("work".into(), "Item".into(), 0, Some(10), TraceOutcome::Ok),
            ("work".into(), "Item".into(), 0, Some(20), failure),
            ("gather".into(), "Done".into(), 10, Some(10), TraceOutcome::Ok),
            ("work".into(), "Item".into(), 10, Some(40), TraceOutcome::Ok),
            ("gather".into(), "Done".into(), 40, Some(40), TraceOutcome::Ok),
            ("work".into(), "Item".into(), 120, Some(140), TraceOutcome::Ok),
            ("gather".into(), "Done".into(), 140, Some(140), TraceOutcome::Ok),
        ]
    );
    // Which instance each ran on: the retry ran on the very event the failed
    // attempt had, and each work invocation on its own item.
    let inputs: Vec<usize> = trace.steps.iter().map(|s| s.input).collect();
    assert_eq!(inputs, [0, 1, 2, 4, 3, 5, 2, 6]);
    let workers: Vec<u32> = trace.steps.iter().map(|s| s.worker).collect();
    assert_eq!(
        [workers[1], workers[2], workers[4]],
        [0, 1, 0],
        "item 2 took worker 0 once item 0 was done"
    );

    // The drawing: one node per invocation and per event instance.
    let graph = trace.graph();
    assert_eq!(graph.nodes.len(), trace.steps.len() + trace.events.len());
    assert_eq!(node(&graph, "run:2").status.as_deref(), Some("retried"));
    assert_eq!(node(&graph, "run:2").details["error"], "item 1 broke");
    assert_eq!(node(&graph, "run:6").status.as_deref(), Some("ok"));
    assert_eq!(node(&graph, "run:6").details["started_ms"], 120.0);
    assert_eq!(node(&graph, "run:6").kind, NodeKind::StepRun);
    assert_eq!(node(&graph, "run:6").label, "work (w0) · 20.0 ms");
    assert_eq!(node(&graph, "ev:0").role, Some(EventKind::Start));
    assert_eq!(node(&graph, "ev:0").kind, NodeKind::EventInstance);
    assert_eq!(node(&graph, "ev:7").role, Some(EventKind::Stop));
    let retry = graph
        .edges
        .iter()
        .find(|e| e.label.as_deref() == Some("retry"))
        .expect("a retry edge");
    assert_eq!(
        (retry.from.as_str(), retry.to.as_str(), retry.style),
        ("run:2", "run:6", EdgeStyle::Dashed)
    );
    // The retry is reached through the retry edge, not a second input edge.
    assert!(!graph.edges.iter().any(|e| e.from == "ev:2" && e.to == "run:6"));
    assert!(graph.edges.iter().any(|e| e.from == "ev:2" && e.to == "run:2"));
    // Fan-out: split produced the three items.
    for item in 1..=3 {
        assert!(graph
            .edges
            .iter()
            .any(|e| e.from == "run:0" && e.to == format!("ev:{item}")));
    }
    let mermaid = graph.to_mermaid();
    assert!(
        mermaid.contains("run_2[\"work (w1) · 20.0 ms\"]:::retried"),
        "{mermaid}"
    );
    assert!(mermaid.contains("run_2 -.->|\"retry\"| run_6"), "{mermaid}");
    assert!(mermaid.contains("ev_1([\"Item #1\"]):::event"), "{mermaid}");
    assert!(mermaid.contains("classDef retried fill:"), "{mermaid}");
    let dot = graph.to_dot();
    assert!(
        dot.contains("\"run:2\" -> \"run:6\" [style=dashed, label=\"retry\"];"),
        "{dot}"
    );
    // The trace serialises (for the server and web UI).
    let json: RunTrace = serde_json::from_str(&serde_json::to_string(&trace).unwrap()).unwrap();
    assert_eq!(json, trace);
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_marked_and_the_other_invocations_are_cancelled() {
    let wf = Workflow::builder("breaks")
        .step("split", |_: StartEvent| async { vec![Item(0), Item(1), Item(2)] })
        .step("work", |item: Item| async move {
            let ms = if item.0 == 1 { 20 } else { 50 };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if item.0 == 1 {
                return Err(StepError::new(Broke(1)));
            }
            Ok(StopEvent::new(item.0))
        })
        .build()
        .unwrap();
    let (journal, result) = journaled(&wf, StartEvent::new(), "breaks").await;
    assert!(matches!(result, Err(RunError::StepFailed { .. })), "{result:?}");
    assert_eq!(
        journal.store().run("breaks").await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    let trace = wf.trace(&journal, "breaks").await.unwrap();
    assert_eq!(
        rows(&trace),
        [
            ("split".into(), "StartEvent".into(), 0, Some(0), TraceOutcome::Ok),
            ("work".into(), "Item".into(), 0, None, TraceOutcome::Cancelled),
            (
                "work".into(),
                "Item".into(),
                0,
                Some(20),
                TraceOutcome::Failed {
                    error: "item 1 broke".into()
                }
            ),
            ("work".into(), "Item".into(), 0, None, TraceOutcome::Cancelled),
        ]
    );
    let graph = trace.graph();
    assert_eq!(node(&graph, "run:2").status.as_deref(), Some("failed"));
    assert_eq!(node(&graph, "run:2").details["error"], "item 1 broke");
    assert_eq!(node(&graph, "run:1").status.as_deref(), Some("cancelled"));
    assert_eq!(
        node(&graph, "run:1").label,
        "work (w0)",
        "no duration for an unfinished invocation"
    );
    let mermaid = graph.to_mermaid();
    assert!(
        mermaid.contains(":::failed") && mermaid.contains(":::cancelled"),
        "{mermaid}"
    );
    assert!(mermaid.contains("classDef failed fill:#F4A6A6"), "{mermaid}");
}

#[tokio::test(start_paused = true)]
async fn a_failure_handed_to_an_error_handler_comes_from_the_failed_step() {
    let wf = Workflow::builder("guarded")
        .step("work", |_: StartEvent| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Err::<StopEvent, _>(StepError::new(Broke(7)))
        })
        .step_with(
            StepConfig::new("recover").catch_errors(CatchErrors::all()),
            |failed: StepFailed| async move { StopEvent::new(format!("recovered: {}", failed.error)) },
        )
        .build()
        .unwrap();
    let (journal, result) = journaled(&wf, StartEvent::new(), "guarded").await;
    assert_eq!(result.unwrap().result, "recovered: item 7 broke");
    let trace = wf.trace(&journal, "guarded").await.unwrap();
    let names: Vec<&str> = trace.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["StartEvent", "StepFailed", "StopEvent"]);
    assert_eq!(
        trace.events[1].source,
        Some(0),
        "StepFailed comes from the failed invocation"
    );
    assert_eq!(trace.events[1].at_us, 5 * MS);
    assert!(matches!(trace.steps[0].outcome, TraceOutcome::Failed { .. }));
    assert_eq!(trace.steps[1].step, "recover");
    assert_eq!(trace.steps[1].outcome, TraceOutcome::Ok);
    let graph = trace.graph();
    let fails = graph
        .edges
        .iter()
        .find(|e| e.from == "run:0" && e.to == "ev:1")
        .unwrap();
    assert_eq!(
        (fails.label.as_deref(), fails.style),
        (Some("fails"), EdgeStyle::Dashed)
    );
}

#[tokio::test(start_paused = true)]
async fn a_person_answering_is_traced_with_the_question() {
    let wf = Workflow::builder("asks")
        .step_with(
            StepConfig::new("ask")
                .emits::<InputRequiredEvent>()
                .waits_for::<HumanResponseEvent>(),
            |ctx: Context, _: StartEvent| async move {
                let question = InputRequiredEvent {
                    prompt: "name?".into(),
                    data: serde_json::Value::Null,
                };
                let answer = ctx
                    .wait_for_event(WaitFor::<HumanResponseEvent>::new().id("name").publish(question))
                    .await
                    .map_err(StepError::new)?;
                Ok::<_, StepError>(StopEvent::new(answer.response))
            },
        )
        .build()
        .unwrap();
    let journal = Journal::new(MemoryStore::new());
    let handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal).run_id("asks"));
    let mut stream = handle.stream_events().unwrap();
    while let Some(event) = stream.next().await {
        if event.kind() == EventKind::InputRequired {
            tokio::time::sleep(Duration::from_millis(30)).await;
            handle.send_event(HumanResponseEvent::new("Ada")).unwrap();
        }
    }
    assert_eq!(handle.await.unwrap().result, "Ada");
    journal.flush().await.unwrap();
    let trace = wf.trace(&journal, "asks").await.unwrap();
    let events: Vec<(&str, EventKind, u64, Option<usize>)> = trace
        .events
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.at_us / MS, e.source))
        .collect();
    assert_eq!(
        events,
        [
            ("StartEvent", EventKind::Start, 0, None),
            ("InputRequiredEvent", EventKind::InputRequired, 0, Some(0)),
            ("HumanResponseEvent", EventKind::HumanResponse, 30, None),
            ("StopEvent", EventKind::Stop, 30, Some(0)),
        ]
    );
    assert_eq!(trace.steps.len(), 1);
    assert_eq!(trace.steps[0].waited_for, [2]);
    assert_eq!(trace.steps[0].finished_us, Some(30 * MS));
    let graph = trace.graph();
    let asks = graph.edges.iter().find(|e| e.to == "ev:1").unwrap();
    assert_eq!((asks.from.as_str(), asks.label.as_deref()), ("run:0", Some("asks")));
    let answers = graph.edges.iter().find(|e| e.from == "ev:2").unwrap();
    assert_eq!(
        (answers.to.as_str(), answers.label.as_deref()),
        ("run:0", Some("answers"))
    );
    assert_eq!(node(&graph, "ev:2").role, Some(EventKind::HumanResponse));
}

#[test]
fn an_interrupted_invocation_is_marked_and_linked_to_its_rerun() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let wf = Workflow::builder("slow")
        .step("first", |_: StartEvent| async { Item(1) })
        .step("slow", move |item: Item| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                StopEvent::new(item.0)
            }
        })
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let journal = Journal::new(store.clone());
        let _handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal).run_id("crash"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        journal.flush().await.unwrap();
    });
    rt.shutdown_background(); // the crash: `slow` dropped mid-step
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let journal = Journal::new(store.clone());
        let trace = wf.trace(&journal, "crash").await.unwrap();
        assert_eq!(
            trace.steps[1].outcome,
            TraceOutcome::Running,
            "still running as far as the journal knows"
        );
        let handle = wf.resume(&journal, "crash").await.unwrap();
        assert_eq!(handle.await.unwrap().result, 1);
        journal.flush().await.unwrap();
        let trace = wf.trace(&journal, "crash").await.unwrap();
        let outcomes: Vec<(&str, &TraceOutcome)> = trace.steps.iter().map(|s| (s.step.as_str(), &s.outcome)).collect();
        assert_eq!(
            outcomes,
            [
                ("first", &TraceOutcome::Ok),
                ("slow", &TraceOutcome::Interrupted),
                ("slow", &TraceOutcome::Ok)
            ]
        );
        assert_eq!(
            trace.steps[1].input, trace.steps[2].input,
            "the rerun had the same input"
        );
        let graph = trace.graph();
        assert_eq!(node(&graph, "run:1").status.as_deref(), Some("interrupted"));
        let resumed = graph.edges.iter().find(|e| e.from == "run:1").unwrap();
        assert_eq!(
            (resumed.to.as_str(), resumed.label.as_deref()),
            ("run:2", Some("resumed"))
        );
    });
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tracing_an_unknown_run_or_another_workflows_run_is_an_error() {
    let wf = fan_out_with_retry();
    let (journal, _) = journaled(&wf, StartEvent::new(), "fan").await;
    let error = wf.trace(&journal, "nope").await.unwrap_err();
    assert!(error.to_string().contains("no run nope"), "{error}");
    let other = Workflow::builder("other")
        .step("stop", |_: StartEvent| async { StopEvent::new(0) })
        .build()
        .unwrap();
    let error = other.trace(&journal, "fan").await.unwrap_err();
    assert!(error.to_string().contains("belongs to workflow `fan_out`"), "{error}");
}
