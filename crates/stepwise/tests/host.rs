//! The host layer (`stepwise::host`): workflows of any type by name, start
//! events and answers from JSON with typed errors, the prompt a waiting run
//! waits on, and stored runs summarised — over a `MemoryStore`.

use std::error::Error as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use stepwise::host::{
    answer_event, answer_from_json, answer_types, bare_result, input_prompt, waiting_prompt, AnswerError, AnyWorkflow,
    EventDecodeError, PublishedEvent, RunSummary, StartError, WorkflowRegistry,
};
use stepwise::store::{MemoryStore, RunFilter, RunStatus};
use stepwise::{
    AnyEvent, Context, Event, EventKind, HumanResponseEvent, InputRequiredEvent, Journal, ResumeOptions, RunOptions,
    StartEvent, StepConfig, StepError, StopEvent, StreamExt, WaitFor, Workflow, WorkflowBuilder, MAX_EVENT_DEPTH,
};

// ---------------------------------------------------------------- workflows

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Order {
    item: String,
    quantity: u32,
}
impl Event for Order {
    const NAME: &'static str = "Order";
    const KIND: EventKind = EventKind::Start;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Priced {
    total: u32,
}
impl Event for Priced {
    const NAME: &'static str = "Priced";
    const KIND: EventKind = EventKind::Stop;
}

fn order() -> Workflow<Order, Priced> {
    WorkflowBuilder::<Order, Priced>::new("order")
        .doc("Prices an order.")
        .step("price", |order: Order| async move {
            Priced {
                total: order.quantity * 3,
            }
        })
        .build()
        .unwrap()
}

fn echo() -> Workflow {
    Workflow::builder("echo")
        .step("echo", |ev: StartEvent| async move {
            StopEvent::new(ev.get_or("text", "nothing".to_owned()).unwrap())
        })
        .build()
        .unwrap()
}

fn fails() -> Workflow {
    Workflow::builder("fails")
        .step("print", |_: StartEvent| async {
            Err::<StopEvent, _>(StepError::msg("the printer is on fire"))
        })
        .build()
        .unwrap()
}

/// Waits for a `HumanResponseEvent` after asking.
fn interview() -> Workflow {
    Workflow::builder("interview")
        .step_with(
            StepConfig::new("ask")
                .emits::<InputRequiredEvent>()
                .waits_for::<HumanResponseEvent>(),
            |ctx: Context, _: StartEvent| async move {
                let answer = ctx
                    .wait_for_event(WaitFor::<HumanResponseEvent>::new().publish(InputRequiredEvent::new("name?")))
                    .await
                    .map_err(StepError::new)?;
                Ok::<_, StepError>(StopEvent::new(answer.response))
            },
        )
        .build()
        .unwrap()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Approval {
    approved: bool,
}
impl Event for Approval {
    const NAME: &'static str = "Approval";
    const KIND: EventKind = EventKind::HumanResponse;
}

/// Takes its own answer type.
fn approval() -> Workflow {
    Workflow::builder("approval")
        .step_with(
            StepConfig::new("ask")
                .emits::<InputRequiredEvent>()
                .waits_for::<Approval>(),
            |ctx: Context, _: StartEvent| async move {
                let answer = ctx
                    .wait_for_event(WaitFor::<Approval>::new().publish(InputRequiredEvent::new("approve?")))
                    .await
                    .map_err(StepError::new)?;
                Ok::<_, StepError>(StopEvent::new(answer.approved))
            },
        )
        .build()
        .unwrap()
}

fn registry() -> WorkflowRegistry {
    let mut registry = WorkflowRegistry::new();
    registry.register(order()).unwrap();
    registry.register(echo()).unwrap();
    registry.register(fails()).unwrap();
    registry.register(interview()).unwrap();
    registry.register(approval()).unwrap();
    registry
}

// ----------------------------------------------------------------- registry

#[test]
fn the_registry_holds_workflows_of_different_types_in_registration_order() {
    let registry = registry();
    assert_eq!(registry.names(), ["order", "echo", "fails", "interview", "approval"]);
    assert_eq!(registry.len(), 5);
    let order = registry.get("order").unwrap();
    assert_eq!(order.start_type().name(), "Order");
    assert_eq!(order.stop_type().name(), "Priced");
    assert_eq!(order.doc(), Some("Prices an order."));
    assert_eq!(order.steps().len(), 1);
    assert!(!order.fingerprint().is_empty());
    assert_eq!(order.event_type("Order").unwrap().kind(), EventKind::Start);
    assert!(order.event_type("Nope").is_none());
    let names: Vec<&str> = registry.iter().map(|w| w.name()).collect();
    assert_eq!(names, registry.names());
    assert_eq!(format!("{registry:?}").matches("order").count(), 1);
}

#[test]
fn a_duplicate_name_is_refused_and_the_first_workflow_kept() {
    let mut registry = registry();
    let error = registry.register(echo()).unwrap_err();
    assert_eq!(error.name, "echo");
    assert_eq!(error.to_string(), "a workflow named `echo` is already registered");
    let error = registry.register_arc(Arc::new(echo())).unwrap_err();
    assert_eq!(error.name, "echo");
    assert_eq!(registry.len(), 5);
}

#[test]
fn an_unknown_name_lists_what_is_registered() {
    let error = registry().find("nope").err().unwrap();
    assert_eq!(error.name, "nope");
    assert_eq!(error.known, ["order", "echo", "fails", "interview", "approval"]);
    assert_eq!(
        error.to_string(),
        "unknown workflow `nope`; registered: order, echo, fails, interview, approval"
    );
    let empty = WorkflowRegistry::new();
    assert!(empty.is_empty());
    assert_eq!(
        empty.find("nope").err().unwrap().to_string(),
        "unknown workflow `nope`; no workflows are registered"
    );
}

// ------------------------------------------------------------- start events

#[tokio::test]
async fn a_typed_workflow_runs_from_json_by_name() {
    let registry = registry();
    let workflow = registry.find("order").unwrap();
    let handle = workflow
        .run_json(json!({"item": "tea", "quantity": 2}), RunOptions::new())
        .unwrap();
    let stop = handle.await.unwrap();
    assert_eq!(stop.to_json().unwrap(), json!({"total": 6}));
}

#[test]
fn json_that_does_not_fit_names_the_workflow_the_type_and_serdes_reason() {
    let order = order();
    let error = order.decode_start(json!({"item": "tea"})).unwrap_err();
    match &error {
        StartError::DoesNotFit {
            workflow,
            event,
            source,
        } => {
            assert_eq!(workflow, "order");
            assert_eq!(*event, "Order");
            assert!(source.to_string().contains("missing field `quantity`"), "{source}");
        }
        other => panic!("expected DoesNotFit, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "workflow `order`: the input does not fit `Order`: missing field `quantity`"
    );
    assert!(error.source().is_some(), "serde's error is the source");
    let error = echo().decode_start(json!([1, 2])).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("workflow `echo`: the input does not fit `StartEvent`"),
        "{error}"
    );
}

#[test]
fn json_nested_deeper_than_a_run_accepts_is_refused() {
    let nest = |depth: usize| {
        let mut value = json!(1);
        for _ in 0..depth - 1 {
            value = json!({ "a": value });
        }
        json!({ "text": value })
    };
    let echo = echo();
    let deep = nest(MAX_EVENT_DEPTH + 5);
    let expected = stepwise::json_depth(&deep);
    assert!(expected > MAX_EVENT_DEPTH);
    let error = echo.decode_start(deep).unwrap_err();
    match error {
        StartError::TooDeep { workflow, depth, limit } => {
            assert_eq!(workflow, "echo");
            assert_eq!(depth, expected);
            assert_eq!(limit, MAX_EVENT_DEPTH);
        }
        other => panic!("expected TooDeep, got {other:?}"),
    }
    assert!(echo.decode_start(nest(MAX_EVENT_DEPTH - 1)).is_ok());
}

#[tokio::test]
async fn a_start_event_of_another_type_is_refused() {
    let error = order()
        .run_any(AnyEvent::new(StartEvent::new()), RunOptions::new())
        .err()
        .unwrap();
    assert!(matches!(
        error,
        StartError::WrongType {
            expected: "Order",
            given: "StartEvent",
            ..
        }
    ));
    assert_eq!(
        error.to_string(),
        "workflow `order` starts with `Order`, not `StartEvent`"
    );
}

#[test]
fn events_sent_to_a_run_decode_by_type_name_with_errors_that_say_why() {
    let approval = approval();
    let event = approval.decode_event("Approval", json!({"approved": true})).unwrap();
    assert!(event.downcast_ref::<Approval>().unwrap().approved);
    match approval.decode_event("Nope", json!({})).unwrap_err() {
        EventDecodeError::UnknownType { workflow, name, known } => {
            assert_eq!((workflow.as_str(), name.as_str()), ("approval", "Nope"));
            assert!(
                known.contains(&"Approval") && known.contains(&"StartEvent"),
                "{known:?}"
            );
        }
        other => panic!("expected UnknownType, got {other:?}"),
    }
    let error = approval
        .decode_event("Approval", json!({"approved": "very"}))
        .unwrap_err();
    assert!(matches!(error, EventDecodeError::DoesNotFit { event: "Approval", .. }));
    assert!(
        error
            .to_string()
            .starts_with("workflow `approval`: the event does not fit `Approval`: "),
        "{error}"
    );
    let mut deep = json!(true);
    for _ in 0..MAX_EVENT_DEPTH + 1 {
        deep = json!([deep]);
    }
    assert!(matches!(
        approval.decode_event("Approval", json!({ "approved": deep })),
        Err(EventDecodeError::TooDeep { event: "Approval", .. })
    ));
}

// ------------------------------------------------------------------ answers

#[test]
fn answers_become_human_responses_or_the_workflows_own_type() {
    let interview = interview();
    assert_eq!(
        answer_types(&interview).iter().map(|t| t.name()).collect::<Vec<_>>(),
        ["HumanResponseEvent"]
    );
    let answer = answer_event(&interview, "Ada").unwrap();
    assert_eq!(answer.downcast_ref::<HumanResponseEvent>().unwrap().response, "Ada");
    // A workflow that never waits takes text too.
    assert!(answer_types(&echo()).is_empty());
    assert!(answer_event(&echo(), "anything").unwrap().is::<HumanResponseEvent>());

    let approval = approval();
    assert_eq!(
        answer_types(&approval).iter().map(|t| t.name()).collect::<Vec<_>>(),
        ["Approval"]
    );
    let answer = answer_event(&approval, r#"{"approved": true}"#).unwrap();
    assert!(answer.downcast_ref::<Approval>().unwrap().approved);
}

#[test]
fn answers_that_do_not_fit_say_why() {
    let approval = approval();
    let error = answer_event(&approval, "yes").unwrap_err();
    assert!(
        matches!(error, AnswerError::NotJson { event: "Approval", .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("workflow `approval` takes answers as JSON for `Approval`; `yes` is not JSON: "),
        "{error}"
    );
    let error = answer_event(&approval, r#"{"approved": "very"}"#).unwrap_err();
    assert!(
        matches!(error, AnswerError::DoesNotFit { event: "Approval", .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("workflow `approval`: the answer does not fit `Approval`: "),
        "{error}"
    );
    assert!(error.source().is_some());
}

#[test]
fn answers_given_as_json_take_strings_for_human_responses() {
    let interview = interview();
    let answer = answer_from_json(&interview, json!("Ada")).unwrap();
    assert_eq!(answer.downcast_ref::<HumanResponseEvent>().unwrap().response, "Ada");
    let answer = answer_from_json(&interview, json!({"response": "Grace"})).unwrap();
    assert_eq!(answer.downcast_ref::<HumanResponseEvent>().unwrap().response, "Grace");
    let approval = approval();
    assert!(answer_from_json(&approval, json!({"approved": false}))
        .unwrap()
        .is::<Approval>());
    assert!(matches!(
        answer_from_json(&approval, json!("yes")),
        Err(AnswerError::DoesNotFit { .. })
    ));
}

#[test]
fn the_prompt_of_an_input_request_is_its_prompt_field() {
    let request = AnyEvent::new(InputRequiredEvent::new("name?"));
    assert_eq!(input_prompt(&request).as_deref(), Some("name?"));
    assert_eq!(input_prompt(&AnyEvent::new(StopEvent::new(1))), None);
}

#[tokio::test]
async fn a_run_left_waiting_tells_what_it_waits_on_and_resumes_with_an_answer() {
    let store = Arc::new(MemoryStore::new());
    let registry = registry();
    let workflow = registry.find("interview").unwrap();
    {
        let journal = Journal::from_arc(store.clone(), Default::default());
        let handle = workflow
            .run_json(json!({}), RunOptions::new().journal(&journal).run_id("waiting-1"))
            .unwrap();
        let mut stream = handle.stream_events().unwrap();
        while let Some(event) = stream.next().await {
            if event.is::<stepwise::WorkflowIdle>() {
                break;
            }
        }
        journal.flush().await.unwrap();
        assert_eq!(
            waiting_prompt(&*store, "waiting-1", &**workflow)
                .await
                .unwrap()
                .as_deref(),
            Some("name?")
        );
        // The process goes away with the run unfinished.
        journal.shutdown().await.unwrap();
    }
    let summary = RunSummary::load(&*store, "waiting-1").await.unwrap().unwrap();
    assert_eq!(summary.status, RunStatus::Running);
    assert_eq!(summary.result_line(), "");
    assert_eq!(summary.duration_ms(), None);

    let journal = Journal::from_arc(store.clone(), Default::default());
    let handle = workflow
        .resume(&journal, "waiting-1", ResumeOptions::new())
        .await
        .unwrap();
    handle.send_any(answer_event(&**workflow, "Ada").unwrap()).unwrap();
    let stop = handle.await.unwrap();
    assert_eq!(bare_result(&stop.to_json().unwrap()), &json!("Ada"));
    journal.flush().await.unwrap();
    let summary = RunSummary::load(&*store, "waiting-1").await.unwrap().unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(summary.result_line(), "\"Ada\"");
    assert!(summary.duration_ms().is_some());
    let trace = workflow.trace(&journal, "waiting-1").await.unwrap();
    assert!(!trace.steps.is_empty());
}

// --------------------------------------------------------------------- runs

#[tokio::test]
async fn stored_runs_are_listed_filtered_and_summarised() {
    let store = Arc::new(MemoryStore::new());
    let journal = Journal::from_arc(store.clone(), Default::default());
    let registry = registry();
    let options = |id: &str| RunOptions::new().journal(&journal).run_id(id);
    registry
        .find("echo")
        .unwrap()
        .run_json(json!({"text": "hi"}), options("r1"))
        .unwrap()
        .await
        .unwrap();
    registry
        .find("order")
        .unwrap()
        .run_json(json!({"item": "tea", "quantity": 2}), options("r2"))
        .unwrap()
        .await
        .unwrap();
    registry
        .find("fails")
        .unwrap()
        .run_json(json!({}), options("r3"))
        .unwrap()
        .await
        .unwrap_err();
    journal.flush().await.unwrap();

    let all = RunSummary::list(&*store, RunFilter::default()).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2", "r3"], "oldest first");
    assert_eq!(all[0].result, Some(json!({"result": "hi"})));
    assert_eq!(all[0].result_line(), "\"hi\"", "the default stop event's result bare");
    assert_eq!(all[1].result_line(), r#"{"total":6}"#, "other stop events whole");
    assert_eq!(all[2].status, RunStatus::Failed);
    assert!(all[2].result_line().contains("the printer is on fire"), "{:?}", all[2]);
    assert!(all
        .iter()
        .all(|r| r.started_ms <= r.updated_ms && r.duration_ms().is_some()));

    let failed = RunSummary::list(
        &*store,
        RunFilter {
            statuses: vec![RunStatus::Failed],
            workflow: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(failed.len(), 1);
    let orders = RunSummary::list(
        &*store,
        RunFilter {
            statuses: Vec::new(),
            workflow: Some("order".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].workflow, "order");
    assert!(RunSummary::load(&*store, "nope").await.unwrap().is_none());
}

#[tokio::test]
async fn published_events_read_back_in_sequence() {
    let store = Arc::new(MemoryStore::new());
    let journal = Journal::from_arc(store.clone(), Default::default());
    echo()
        .run_json(
            json!({"text": "hi"}),
            RunOptions::new().journal(&journal).run_id("e1").internal_events(true),
        )
        .unwrap()
        .await
        .unwrap();
    journal.flush().await.unwrap();
    let events = PublishedEvent::list(journal.store(), "e1", 0).await.unwrap();
    assert!(!events.is_empty());
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>());
    assert!(events.iter().any(|e| e.is_step_state()), "internal events were on");
    let stop = events.iter().find(|e| e.name == "StopEvent").unwrap();
    assert_eq!(stop.value, json!({"result": "hi"}));
    let later = PublishedEvent::list(journal.store(), "e1", 1).await.unwrap();
    assert_eq!(later.len(), events.len() - 1);
}
