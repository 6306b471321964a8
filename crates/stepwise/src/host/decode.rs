//! Start events and events sent to a run, from JSON.

use serde_json::Value;

use crate::{json_depth, AnyEvent, Event, EventType, MAX_EVENT_DEPTH};

/// Why a run could not be started from what a front end was given.
///
/// ```
/// use stepwise::host::{AnyWorkflow, StartError};
/// use stepwise::{StartEvent, StopEvent, Workflow};
///
/// let echo = Workflow::builder("echo")
///     .step("echo", |_: StartEvent| async { StopEvent::new(()) })
///     .build()
///     .unwrap();
/// let error = echo.decode_start(serde_json::json!([1, 2])).unwrap_err();
/// assert!(matches!(error, StartError::DoesNotFit { .. }));
/// assert!(error.to_string().starts_with("workflow `echo`: the input does not fit `StartEvent`: "));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The JSON does not deserialize into the workflow's start type.
    #[error("workflow `{workflow}`: the input does not fit `{event}`: {source}")]
    DoesNotFit {
        /// The workflow.
        workflow: String,
        /// The start event type's name.
        event: &'static str,
        /// serde's reason.
        #[source]
        source: serde_json::Error,
    },
    /// The JSON is nested deeper than a run accepts (it could not be read
    /// back from a journal).
    #[error("workflow `{workflow}`: the input is nested {depth} levels deep; the limit is {limit} (stepwise::MAX_EVENT_DEPTH)")]
    TooDeep {
        /// The workflow.
        workflow: String,
        /// How deep the input is.
        depth: usize,
        /// [`MAX_EVENT_DEPTH`].
        limit: usize,
    },
    /// A start event of another type than the workflow's was given.
    #[error("workflow `{workflow}` starts with `{expected}`, not `{given}`")]
    WrongType {
        /// The workflow.
        workflow: String,
        /// Its start event type.
        expected: &'static str,
        /// The type given.
        given: &'static str,
    },
}

/// Decodes `S` from `input` for `workflow`.
pub(super) fn decode<S: Event>(workflow: &str, input: Value) -> Result<S, StartError> {
    // What a run accepts must read back: refuse what the engine would.
    let depth = json_depth(&input);
    if depth > MAX_EVENT_DEPTH {
        return Err(StartError::TooDeep {
            workflow: workflow.to_owned(),
            depth,
            limit: MAX_EVENT_DEPTH,
        });
    }
    S::deserialize(input).map_err(|source| StartError::DoesNotFit {
        workflow: workflow.to_owned(),
        event: S::NAME,
        source,
    })
}

/// Why JSON sent to a run as `{"type": <name>, "value": <fields>}` could not
/// become one of its workflow's events (see
/// [`AnyWorkflow::decode_event`](super::AnyWorkflow::decode_event)).
///
/// ```
/// use stepwise::host::{AnyWorkflow, EventDecodeError};
/// use stepwise::{StartEvent, StopEvent, Workflow};
///
/// let echo = Workflow::builder("echo")
///     .step("echo", |_: StartEvent| async { StopEvent::new(()) })
///     .build()
///     .unwrap();
/// let error = echo.decode_event("Nope", serde_json::json!({})).unwrap_err();
/// assert!(matches!(error, EventDecodeError::UnknownType { .. }));
/// assert!(error.to_string().starts_with("workflow `echo` has no event type `Nope`; it knows: "));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventDecodeError {
    /// The workflow knows no event type of that name.
    #[error("workflow `{workflow}` has no event type `{name}`; it knows: {}", .known.join(", "))]
    UnknownType {
        /// The workflow.
        workflow: String,
        /// The name given.
        name: String,
        /// The event types it knows.
        known: Vec<&'static str>,
    },
    /// The fields do not deserialize into the named type.
    #[error("workflow `{workflow}`: the event does not fit `{event}`: {source}")]
    DoesNotFit {
        /// The workflow.
        workflow: String,
        /// The event type's name.
        event: &'static str,
        /// serde's reason.
        #[source]
        source: serde_json::Error,
    },
    /// The fields are nested deeper than a run accepts.
    #[error("workflow `{workflow}`: the event `{event}` is nested {depth} levels deep; the limit is {limit} (stepwise::MAX_EVENT_DEPTH)")]
    TooDeep {
        /// The workflow.
        workflow: String,
        /// The event type's name.
        event: &'static str,
        /// How deep it is.
        depth: usize,
        /// [`MAX_EVENT_DEPTH`].
        limit: usize,
    },
}

/// Decodes an event of one of `types` named `name` for `workflow`.
pub(super) fn decode_event(
    workflow: &str,
    types: Vec<EventType>,
    name: &str,
    value: Value,
) -> Result<AnyEvent, EventDecodeError> {
    let Some(ty) = types.iter().find(|t| t.name() == name) else {
        return Err(EventDecodeError::UnknownType {
            workflow: workflow.to_owned(),
            name: name.to_owned(),
            known: types.iter().map(EventType::name).collect(),
        });
    };
    let depth = json_depth(&value);
    if depth > MAX_EVENT_DEPTH {
        return Err(EventDecodeError::TooDeep {
            workflow: workflow.to_owned(),
            event: ty.name(),
            depth,
            limit: MAX_EVENT_DEPTH,
        });
    }
    ty.decode(value).map_err(|source| EventDecodeError::DoesNotFit {
        workflow: workflow.to_owned(),
        event: ty.name(),
        source,
    })
}
