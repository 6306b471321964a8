//! The events stepwise defines itself: the default start and stop events, the
//! termination events published when a run ends abnormally, and the engine's
//! bookkeeping events.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{Event, EventKind};

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

    /// Builds a start event from a JSON object. Anything else is rejected.
    pub fn from_json(value: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }

    /// Sets `field` (builder style). A value that cannot be JSON is stored as `null`;
    /// use [`StartEvent::set`] to see that error.
    pub fn with(mut self, field: impl Into<String>, value: impl Serialize) -> Self {
        let field = field.into();
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.fields.insert(field, value);
        self
    }

    /// Sets `field`.
    pub fn set(&mut self, field: impl Into<String>, value: impl Serialize) -> Result<(), FieldError> {
        let field = field.into();
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

impl Event for StartEvent {
    const NAME: &'static str = "StartEvent";
    const KIND: EventKind = EventKind::Start;
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
            result: serde_json::to_value(result).unwrap_or(Value::Null),
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
