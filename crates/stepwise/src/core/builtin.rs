//! The events stepwise defines itself: the default start and stop events, the
//! termination events published when a run ends abnormally, and the engine's
//! bookkeeping events.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::event::{Event, EventKind};

/// The default start event: free-form JSON fields with typed getters.
///
/// ```
/// use stepwise::StartEvent;
///
/// let ev = StartEvent::new().with("topic", "rust").with("limit", 3);
/// assert_eq!(ev.get::<String>("topic").unwrap(), "rust");
/// assert_eq!(ev.get::<u32>("limit").unwrap(), 3);
/// assert!(ev.get::<u32>("missing").is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StartEvent {
    fields: Map<String, Value>,
}

/// Why a [`StartEvent`] field could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// The field is not set.
    #[error("start event has no field `{field}`")]
    Missing {
        /// The field asked for.
        field: String,
    },
    /// The field is set but does not have the requested type.
    #[error("start event field `{field}` has the wrong type: {source}")]
    WrongType {
        /// The field asked for.
        field: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The value nests deeper than [`MAX_EVENT_DEPTH`](crate::MAX_EVENT_DEPTH).
    #[error("start event field `{field}` is nested more than {limit} levels deep; flatten it")]
    TooDeep {
        /// The field.
        field: String,
        /// The limit.
        limit: usize,
    },
    /// A value could not be turned into JSON.
    #[error("start event field `{field}` cannot be represented as JSON: {source}")]
    NotJson {
        /// The field being set.
        field: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

impl StartEvent {
    /// An empty start event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a start event from a JSON object (taken as it is, without
    /// recursion, however deep). Anything else is rejected.
    pub fn from_json(value: Value) -> Result<Self, serde_json::Error> {
        match value {
            Value::Object(fields) => Ok(StartEvent { fields }),
            other => serde_json::from_value(other),
        }
    }

    /// Sets `field` (builder style). A value that cannot be JSON is stored as `null`;
    /// use [`StartEvent::set`] to see that error. A value nested deeper than
    /// [`MAX_EVENT_DEPTH`](crate::MAX_EVENT_DEPTH) is replaced by a stand-in
    /// just over the limit, so a run refuses the event (to hand over a deep
    /// `serde_json::Value` without converting it, use [`StartEvent::with_json`]).
    pub fn with(mut self, field: impl Into<String>, value: impl Serialize) -> Self {
        let field = field.into();
        let value = crate::core::depth::bounded_value(&value);
        self.fields.insert(field, value);
        self
    }

    /// Sets `field` to a JSON value as it is (no conversion).
    pub fn with_json(mut self, field: impl Into<String>, value: Value) -> Self {
        if let Some(old) = self.fields.insert(field.into(), value) {
            crate::core::depth::dismantle(old);
        }
        self
    }

    /// Sets `field`.
    pub fn set(&mut self, field: impl Into<String>, value: impl Serialize) -> Result<(), FieldError> {
        let field = field.into();
        if crate::core::depth::exceeds(&value, crate::MAX_EVENT_DEPTH) {
            return Err(FieldError::TooDeep {
                field,
                limit: crate::MAX_EVENT_DEPTH,
            });
        }
        match serde_json::to_value(value) {
            Ok(value) => {
                self.fields.insert(field, value);
                Ok(())
            }
            Err(source) => Err(FieldError::NotJson { field, source }),
        }
    }

    /// Reads `field` as `T`.
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Result<T, FieldError> {
        let value = self.fields.get(field).ok_or_else(|| FieldError::Missing {
            field: field.to_owned(),
        })?;
        T::deserialize(value).map_err(|source| FieldError::WrongType {
            field: field.to_owned(),
            source,
        })
    }

    /// Reads `field` as `T`, or `default` when it is absent.
    pub fn get_or<T: DeserializeOwned>(&self, field: &str, default: T) -> Result<T, FieldError> {
        match self.fields.contains_key(field) {
            true => self.get(field),
            false => Ok(default),
        }
    }

    /// The raw JSON of `field`.
    pub fn raw(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }

    /// All fields.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }
}

/// Takes deep field values apart without recursion (a value built in code can
/// be nested far deeper than the stack allows `serde_json` to drop).
impl Drop for StartEvent {
    fn drop(&mut self) {
        let nested = |v: &Value| match v {
            Value::Array(items) => items.iter().any(|i| i.is_array() || i.is_object()),
            Value::Object(map) => map.values().any(|i| i.is_array() || i.is_object()),
            _ => false,
        };
        if self.fields.values().any(nested) {
            for (_, value) in std::mem::take(&mut self.fields) {
                crate::core::depth::dismantle(value);
            }
        }
    }
}

impl Event for StartEvent {
    const NAME: &'static str = "StartEvent";
    const KIND: EventKind = EventKind::Start;
    fn schema() -> Value {
        serde_json::json!({ "title": "StartEvent", "type": "object", "additionalProperties": true })
    }
}

/// The default stop event: completes a run with a JSON result.
///
/// ```
/// use stepwise::StopEvent;
///
/// let stop = StopEvent::new("done");
/// assert_eq!(stop.result_as::<String>().unwrap(), "done");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StopEvent {
    /// The run's result.
    #[serde(default)]
    pub result: Value,
}

impl StopEvent {
    /// A stop event carrying `result`. A value that cannot be JSON becomes `null`.
    pub fn new(result: impl Serialize) -> Self {
        StopEvent {
            result: crate::core::depth::bounded_value(&result),
        }
    }

    /// The result as `T`.
    pub fn result_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.result)
    }
}

impl Event for StopEvent {
    const NAME: &'static str = "StopEvent";
    const KIND: EventKind = EventKind::Stop;
    fn schema() -> Value {
        serde_json::json!({ "title": "StopEvent", "type": "object", "properties": { "result": {} } })
    }
}

/// Published when a run hits its timeout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowTimedOut {
    /// The configured timeout in seconds.
    pub timeout_secs: f64,
    /// The steps that were still running, in definition order.
    pub active_steps: Vec<String>,
}

impl Event for WorkflowTimedOut {
    const NAME: &'static str = "WorkflowTimedOut";
    const KIND: EventKind = EventKind::Termination;
}

/// Published when a run is cancelled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowCancelled {}

impl Event for WorkflowCancelled {
    const NAME: &'static str = "WorkflowCancelled";
    const KIND: EventKind = EventKind::Termination;
}

/// Published when a step failure ends a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowFailed {
    /// The step that failed.
    pub step: String,
    /// The failure, as text.
    pub error: String,
    /// How many times the step ran on the failing event.
    pub attempts: u32,
    /// Run time (seconds on the run's clock) until the failure ended the run.
    #[serde(default)]
    pub elapsed_secs: f64,
}

impl Event for WorkflowFailed {
    const NAME: &'static str = "WorkflowFailed";
    const KIND: EventKind = EventKind::Termination;
}

/// Published when an event reaches no step: nothing accepts its type, or its
/// target step does not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnhandledEvent {
    /// The stable name of the event that was not handled.
    pub event: String,
    /// The step it was sent to, for targeted sends.
    pub target_step: Option<String>,
    /// True when the run was idle at that moment: no step running except
    /// ones waiting in `wait_for_event`, and no retry due (an event sent
    /// from outside to a run that waits for something else).
    #[serde(default)]
    pub idle: bool,
}

impl Event for UnhandledEvent {
    const NAME: &'static str = "UnhandledEvent";
}

/// Where a step invocation is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepPhase {
    /// Queued, waiting for a free worker.
    Queued,
    /// Running on a worker.
    Running,
    /// Finished (successfully or not).
    Finished,
}

/// Internal: a step invocation changed phase. Streams hide it unless the run
/// was started with [`RunOptions::internal_events`](crate::RunOptions::internal_events).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepStateChanged {
    /// The step.
    pub step: String,
    /// The new phase.
    pub phase: StepPhase,
    /// The worker slot (`None` while queued).
    pub worker: Option<u32>,
    /// The stable name of the input event.
    pub input_event: String,
    /// The stable names of the events the invocation returned (when finished).
    pub output_events: Vec<String>,
    /// The failure, if the invocation failed.
    pub error: Option<String>,
}

impl Event for StepStateChanged {
    const NAME: &'static str = "StepStateChanged";
    const KIND: EventKind = EventKind::Internal;
}

/// A request for outside input. Returning it from a step publishes it to the
/// stream; the caller answers with `send_event` (usually a
/// [`HumanResponseEvent`]). Define your own with `#[event(input_required)]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InputRequiredEvent {
    /// What to ask.
    pub prompt: String,
    /// Anything else the asker needs to show.
    #[serde(default)]
    pub data: Value,
}

impl InputRequiredEvent {
    /// A request with a prompt.
    pub fn new(prompt: impl Into<String>) -> Self {
        InputRequiredEvent {
            prompt: prompt.into(),
            data: Value::Null,
        }
    }
}

impl Event for InputRequiredEvent {
    const NAME: &'static str = "InputRequiredEvent";
    const KIND: EventKind = EventKind::InputRequired;
    fn schema() -> Value {
        serde_json::json!({
            "title": "InputRequiredEvent", "type": "object",
            "properties": { "prompt": { "type": "string" }, "data": {} }, "required": ["prompt"]
        })
    }
}

/// An answer from outside. Define your own with `#[event(human_response)]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HumanResponseEvent {
    /// The answer.
    pub response: String,
    /// Anything else the answerer sends.
    #[serde(default)]
    pub data: Value,
}

impl HumanResponseEvent {
    /// An answer.
    pub fn new(response: impl Into<String>) -> Self {
        HumanResponseEvent {
            response: response.into(),
            data: Value::Null,
        }
    }
}

impl Event for HumanResponseEvent {
    const NAME: &'static str = "HumanResponseEvent";
    const KIND: EventKind = EventKind::HumanResponse;
    fn schema() -> Value {
        serde_json::json!({
            "title": "HumanResponseEvent", "type": "object",
            "properties": { "response": { "type": "string" }, "data": {} }, "required": ["response"]
        })
    }
}

/// Delivered to a step's error handler when the step has failed for good
/// (its retries, if any, are exhausted).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepFailed {
    /// The step that failed.
    pub step: String,
    /// The stable name of the event it failed on.
    pub input_event_name: String,
    /// That event, as JSON.
    pub input_event: Value,
    /// The failure, as text.
    pub error: String,
    /// True when the step panicked.
    pub panicked: bool,
    /// How many times the step ran on the event.
    pub attempts: u32,
    /// Seconds from the first attempt's start to the last failure.
    pub elapsed_secs: f64,
    /// When the last attempt failed: wall-clock milliseconds since the Unix
    /// epoch (0 in events stored before this field existed).
    #[serde(default)]
    pub failed_at: u64,
    /// The input event itself (in memory only; not serialised).
    #[serde(skip)]
    pub input: Option<crate::core::event::AnyEvent>,
    /// The failure itself, for `downcast_ref` (in memory only; not serialised).
    #[serde(skip)]
    pub source: Option<crate::core::error::StepError>,
}

impl StepFailed {
    /// The input event as `E`: the original when in memory, otherwise decoded
    /// from its JSON.
    pub fn input_as<E: Event>(&self) -> Option<E> {
        if let Some(event) = self.input.as_ref().and_then(|e| e.downcast_ref::<E>()) {
            return Some(event.clone());
        }
        (self.input_event_name == E::NAME)
            .then(|| E::deserialize(&self.input_event).ok())
            .flatten()
    }
}

impl Event for StepFailed {
    const NAME: &'static str = "StepFailed";
}

/// Published when every piece of work in a run is waiting for outside input
/// (steps suspended in `wait_for_event`, nothing running or queued). Published
/// once per idle period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowIdle {
    /// The waiters still open, as `step/waiter id`.
    pub waiting: Vec<String>,
}

impl Event for WorkflowIdle {
    const NAME: &'static str = "WorkflowIdle";
}

/// The first event of a stream taken late, when the run had published more
/// events than its stream buffer holds before anybody took the stream: the
/// oldest `missed` events were not kept for it (a journaled run has all of
/// them in its store). A stream that was taken is never lagged: a reader
/// that falls behind pauses the run's steps instead.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamLagged {
    /// How many events, from the run's first, the stream does not have.
    pub missed: u64,
}

impl Event for StreamLagged {
    const NAME: &'static str = "StreamLagged";
}

/// An event kept as its stored JSON (its Rust type is unknown here). Used for
/// published events read back from a journal or store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    /// The original event's stable name.
    pub name: String,
    /// Its fields.
    pub value: Value,
}

impl Event for RawEvent {
    const NAME: &'static str = "RawEvent";
}
