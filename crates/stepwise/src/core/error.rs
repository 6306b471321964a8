//! Error types, one enum per concern.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// Why a step invocation failed: the error it returned, or its panic.
///
/// Cheap to clone; keeps the original error for [`StepError::downcast_ref`].
#[derive(Clone)]
pub struct StepError {
    inner: Arc<dyn StdError + Send + Sync + 'static>,
    panicked: bool,
    /// For an error rebuilt from a journal: whether the retry policy retried
    /// it when it happened (the original error type is gone, so a type-based
    /// `RetryIf` could not decide again).
    recorded_retryable: Option<bool>,
}

impl StepError {
    /// Wraps any error.
    pub fn new<E: StdError + Send + Sync + 'static>(error: E) -> Self {
        StepError {
            inner: Arc::new(error),
            panicked: false,
            recorded_retryable: None,
        }
    }

    /// An error rebuilt from a journal entry.
    pub(crate) fn restored(message: String, panicked: bool, retryable: Option<bool>) -> Self {
        StepError {
            inner: Arc::new(Message(message)),
            panicked,
            recorded_retryable: retryable,
        }
    }

    pub(crate) fn recorded_retryable(&self) -> Option<bool> {
        self.recorded_retryable
    }

    /// A failure described by a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::new(Message(message.into()))
    }

    /// A failure caused by a panic in the step body.
    pub(crate) fn panic(message: String) -> Self {
        StepError {
            inner: Arc::new(Message(format!("step panicked: {message}"))),
            panicked: true,
            recorded_retryable: None,
        }
    }

    /// True when the step panicked rather than returning an error.
    pub fn is_panic(&self) -> bool {
        self.panicked
    }

    /// The original error, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.inner.downcast_ref::<E>()
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl StdError for StepError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner.source()
    }
}

#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Message {}

/// The longest run id accepted, in bytes.
pub const MAX_RUN_ID_BYTES: usize = 255;

/// Checks a run id chosen by the caller: it must not be empty or blank,
/// contain no control characters (newlines, tabs, …) and be at most
/// [`MAX_RUN_ID_BYTES`] bytes. `Err` says what is wrong and what to use.
/// [`RunOptions::run_id`](crate::RunOptions::run_id) and
/// [`Workflow::resume`](crate::Workflow::resume) apply it.
pub fn check_run_id(run_id: &str) -> Result<(), String> {
    const USE: &str = "use 1 to 255 bytes of printable text, e.g. `invoice-2041`";
    if run_id.is_empty() {
        return Err(format!("it is empty; {USE}"));
    }
    if run_id.chars().all(char::is_whitespace) {
        return Err(format!("it is blank (only whitespace); {USE}"));
    }
    if let Some(c) = run_id.chars().find(|c| c.is_control()) {
        return Err(format!("it contains the control character {c:?}; {USE}"));
    }
    if run_id.len() > MAX_RUN_ID_BYTES {
        return Err(format!("it is {} bytes long; {USE}", run_id.len()));
    }
    Ok(())
}

/// A run id for a message: quoted and escaped (so a newline shows as `\n`),
/// cut after 40 characters.
pub(crate) fn shown_run_id(run_id: &str) -> String {
    let mut chars = run_id.chars();
    let head: String = chars.by_ref().take(40).collect();
    match chars.next() {
        None => format!("{head:?}"),
        Some(_) => format!("{head:?}… ({} bytes)", run_id.len()),
    }
}

/// Why an event was refused where it entered a run (the start event, an
/// event sent from outside, or one a step returned, sent or wrote to the
/// stream). As a step's failure it is the source of its [`StepError`]
/// (`source.downcast_ref::<EventError>()`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The event's value nests deeper than
    /// [`MAX_EVENT_DEPTH`](crate::MAX_EVENT_DEPTH) levels.
    #[error(
        "{} `{event}` is nested more than {limit} levels deep (stepwise::MAX_EVENT_DEPTH); \
         flatten it, or keep the data elsewhere and send a reference to it",
        origin(.step)
    )]
    TooDeep {
        /// The run.
        run_id: String,
        /// The step that produced it, if a step did.
        step: Option<String>,
        /// The event's stable name.
        event: String,
        /// The limit.
        limit: usize,
    },
    /// A journaled run could not serialise the event, so it cannot be
    /// journaled; nothing of the step attempt that produced it was journaled.
    #[error(
        "{} `{event}` cannot be serialised for the journal ({reason}); \
         make its Serialize impl succeed (JSON maps need string keys)",
        origin(.step)
    )]
    NotSerializable {
        /// The run.
        run_id: String,
        /// The step that produced it, if a step did.
        step: Option<String>,
        /// The event's stable name.
        event: String,
        /// What serde said.
        reason: String,
    },
}

impl EventError {
    /// The run the event was meant for.
    pub fn run_id(&self) -> &str {
        match self {
            EventError::NotSerializable { run_id, .. } | EventError::TooDeep { run_id, .. } => run_id,
        }
    }
}

fn origin(step: &Option<String>) -> String {
    match step {
        Some(step) => format!("step `{step}`: event"),
        None => "event".to_owned(),
    }
}

/// Why `send_event` refused an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The target step does not exist.
    #[error("cannot send `{event}` to step `{step}`: workflow `{workflow}` has no such step")]
    UnknownStep {
        /// The workflow.
        workflow: String,
        /// The target that was named.
        step: String,
        /// The event's stable name.
        event: &'static str,
    },
    /// The target step does not accept that event type.
    #[error("cannot send `{event}` to step `{step}`: it accepts only {accepted}")]
    NotAccepted {
        /// The target step.
        step: String,
        /// The event's stable name.
        event: &'static str,
        /// The event types the step accepts, comma-separated.
        accepted: String,
    },
    /// The run has already ended.
    #[error("cannot send `{event}`: run {run_id} has already ended")]
    RunEnded {
        /// The run.
        run_id: String,
        /// The event's stable name.
        event: &'static str,
    },
    /// The event cannot enter the run (too deep, or it does not serialise
    /// for the run's journal); the run goes on without it.
    #[error("cannot send to run {run}: {0}", run = .0.run_id())]
    Rejected(EventError),
}

/// Why `wait_for_event` returned without an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// No matching event arrived in time.
    #[error("step `{step}` timed out waiting for `{event}` (waiter `{waiter_id}`)")]
    TimedOut {
        /// The waiting step.
        step: String,
        /// The awaited event type.
        event: &'static str,
        /// The waiter's id.
        waiter_id: String,
    },
    /// The same invocation already waits under this id.
    #[error("step `{step}` already waits under waiter id `{waiter_id}`")]
    DuplicateWaiter {
        /// The step.
        step: String,
        /// The repeated id.
        waiter_id: String,
    },
    /// The run ended (or the waiting invocation was finished) before an event came.
    #[error("the run ended while waiting for `{event}`")]
    RunEnded {
        /// The awaited event type.
        event: &'static str,
    },
    /// An event the wait would journal (a send or stream write made before
    /// it, or the event it publishes) was refused; the step attempt fails.
    #[error("step cannot wait in run {run}: {0}", run = .0.run_id())]
    EventRejected(EventError),
    /// The awaited event type is not part of the workflow's event registry,
    /// so a journal or snapshot of the wait could not be read back.
    #[error(
        "step `{step}` waits for `{event}`, which workflow `{workflow}` does not declare; \
         add it to the step's `waits_for = [...]` (or `StepConfig::waits_for::<{event}>()`)"
    )]
    UndeclaredEvent {
        /// The workflow.
        workflow: String,
        /// The waiting step.
        step: String,
        /// The awaited event type.
        event: &'static str,
    },
    /// The event the wait publishes is not part of the workflow's event
    /// registry, so a journal or snapshot of the wait could not be read back.
    #[error(
        "step `{step}` publishes `{event}` while it waits, but workflow `{workflow}` does not declare it; \
         add it to the step's `emits = [...]` (or register it with `WorkflowBuilder::event`)"
    )]
    UndeclaredPublish {
        /// The workflow.
        workflow: String,
        /// The waiting step.
        step: String,
        /// The published event type.
        event: String,
    },
}
