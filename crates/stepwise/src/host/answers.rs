//! Answers to input requests, and the prompt a waiting run waits on.

use serde_json::Value;

use super::registry::AnyWorkflow;
use super::runs::PublishedEvent;
use crate::store::{JournalStore, StoreError};
use crate::{AnyEvent, Event, EventKind, EventType, HumanResponseEvent};

/// Why an answer could not become an event the workflow takes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The workflow takes answers of its own type, as JSON, and the answer
    /// is not JSON.
    #[error("workflow `{workflow}` takes answers as JSON for `{event}`; `{answer}` is not JSON: {source}")]
    NotJson {
        /// The workflow.
        workflow: String,
        /// The first answer type it takes.
        event: &'static str,
        /// The answer as given.
        answer: String,
        /// serde's reason.
        #[source]
        source: serde_json::Error,
    },
    /// The answer is JSON but fits none of the workflow's answer types (the
    /// reason is the last type's).
    #[error("workflow `{workflow}`: the answer does not fit `{event}`: {source}")]
    DoesNotFit {
        /// The workflow.
        workflow: String,
        /// The (last) answer type tried.
        event: &'static str,
        /// serde's reason.
        #[source]
        source: serde_json::Error,
    },
}

/// The answer types the workflow's steps take or wait for (declared with
/// `waits_for`), from its graph: the events of kind
/// [`EventKind::HumanResponse`] that some step consumes. Empty when the
/// workflow never waits for people.
pub fn answer_types(workflow: &dyn AnyWorkflow) -> Vec<EventType> {
    let graph = workflow.graph();
    let names: Vec<&str> = graph
        .nodes
        .iter()
        .filter(|n| n.role == Some(EventKind::HumanResponse))
        .map(|n| n.label.as_str())
        .collect();
    workflow
        .events()
        .into_iter()
        .filter(|e| names.contains(&e.name()))
        .collect()
}

/// The event an answer typed by a person becomes: a [`HumanResponseEvent`]
/// with the text when the workflow takes those (or declares no answer type
/// at all); otherwise the text must be JSON for one of the workflow's own
/// answer types, tried in order.
///
/// ```
/// use stepwise::host::answer_event;
/// use stepwise::{HumanResponseEvent, StartEvent, StopEvent, Workflow};
///
/// let workflow = Workflow::builder("w")
///     .step("s", |_: StartEvent| async { StopEvent::new(()) })
///     .build()
///     .unwrap();
/// let event = answer_event(&workflow, "yes").unwrap();
/// assert_eq!(event.downcast_ref::<HumanResponseEvent>().unwrap().response, "yes");
/// ```
pub fn answer_event(workflow: &dyn AnyWorkflow, answer: &str) -> Result<AnyEvent, AnswerError> {
    let types = candidates(workflow);
    if takes_text(&types) {
        return Ok(AnyEvent::new(HumanResponseEvent::new(answer)));
    }
    let json: Value = serde_json::from_str(answer).map_err(|source| AnswerError::NotJson {
        workflow: workflow.name().to_owned(),
        event: types[0].name(),
        answer: answer.to_owned(),
        source,
    })?;
    decode_answer(workflow, &types, json)
}

/// The event an answer given as JSON becomes (what an HTTP client sends): a
/// JSON string is the text of a [`HumanResponseEvent`] when the workflow
/// takes those, any other JSON must fit one of the workflow's answer types.
pub fn answer_from_json(workflow: &dyn AnyWorkflow, answer: Value) -> Result<AnyEvent, AnswerError> {
    let types = candidates(workflow);
    if takes_text(&types) {
        if let Value::String(text) = &answer {
            return Ok(AnyEvent::new(HumanResponseEvent::new(text.as_str())));
        }
        if types.is_empty() {
            return decode_answer(workflow, &[EventType::of::<HumanResponseEvent>()], answer);
        }
    }
    decode_answer(workflow, &types, answer)
}

/// The prompt of an input request (an event of kind
/// [`EventKind::InputRequired`]): its `prompt` field, or its name and JSON.
/// `None` for other events.
pub fn input_prompt(event: &AnyEvent) -> Option<String> {
    if event.kind() != EventKind::InputRequired {
        return None;
    }
    let json = event.to_json().unwrap_or(Value::Null);
    Some(prompt_text(event.name(), &json))
}

/// The prompt of the latest input request a stored run published (the
/// question a run left waiting waits on), if any.
pub async fn waiting_prompt(
    store: &dyn JournalStore,
    run_id: &str,
    workflow: &dyn AnyWorkflow,
) -> Result<Option<String>, StoreError> {
    let requests: Vec<&'static str> = workflow
        .events()
        .iter()
        .filter(|e| e.kind() == EventKind::InputRequired)
        .map(|e| e.name())
        .collect();
    let events = PublishedEvent::list(store, run_id, 0).await?;
    Ok(events
        .iter()
        .rev()
        .find(|e| requests.contains(&e.name.as_str()))
        .map(|e| prompt_text(&e.name, &e.value)))
}

fn prompt_text(name: &str, value: &Value) -> String {
    value
        .get("prompt")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{name} {value}"))
}

/// The declared answer types, or, when none is declared, any answer type
/// the workflow knows.
fn candidates(workflow: &dyn AnyWorkflow) -> Vec<EventType> {
    let types = answer_types(workflow);
    if !types.is_empty() {
        return types;
    }
    workflow
        .events()
        .into_iter()
        .filter(|e| e.kind() == EventKind::HumanResponse)
        .collect()
}

fn takes_text(types: &[EventType]) -> bool {
    types.is_empty() || types.iter().any(|t| t.name() == HumanResponseEvent::NAME)
}

fn decode_answer(workflow: &dyn AnyWorkflow, types: &[EventType], json: Value) -> Result<AnyEvent, AnswerError> {
    let mut last = None;
    for ty in types {
        match ty.decode(json.clone()) {
            Ok(event) => return Ok(event),
            Err(source) => last = Some((ty.name(), source)),
        }
    }
    let (event, source) = last.expect("at least one answer type");
    Err(AnswerError::DoesNotFit {
        workflow: workflow.name().to_owned(),
        event,
        source,
    })
}
