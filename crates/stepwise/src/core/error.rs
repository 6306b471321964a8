//! Error types, one enum per concern.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// Why a step invocation failed: the error it returned, or its panic.
///
/// Any error converts into it, so `?` works in a step that returns
/// `Result<T, StepError>` (or [`StepResult<T>`]): every
/// `std::error::Error + Send + Sync + 'static`, `anyhow::Error`,
/// `Box<dyn Error + Send + Sync>`, and `String`/`&str` messages. Like
/// `anyhow::Error`, it does not implement `std::error::Error` itself (that
/// would collide with that conversion); it derefs to
/// `dyn Error + Send + Sync` instead, and converts into `Box<dyn Error>`.
///
/// Cheap to clone; keeps the original error for [`StepError::downcast_ref`].
#[derive(Clone)]
pub struct StepError {
    inner: Inner,
    panicked: bool,
    /// For an error rebuilt from a journal: whether the retry policy retried
    /// it when it happened (the original error type is gone, so a type-based
    /// `RetryIf` could not decide again).
    recorded_retryable: Option<bool>,
}

/// What a step returns as `Result<T, StepError>`.
pub type StepResult<T> = Result<T, StepError>;

#[derive(Clone)]
enum Inner {
    Std(Arc<dyn StdError + Send + Sync + 'static>),
    /// Kept as it is, so its context chain and the error inside it can be
    /// downcast.
    #[cfg(feature = "anyhow")]
    Anyhow(Arc<anyhow::Error>),
}

impl<E> From<E> for StepError
where
    E: Into<Box<dyn StdError + Send + Sync + 'static>> + 'static,
{
    fn from(error: E) -> Self {
        // The bound hides the concrete type; `Any` finds an anyhow error,
        // which is kept as it is.
        #[cfg(feature = "anyhow")]
        let error = {
            let mut slot = Some(error);
            let any = &mut slot as &mut dyn std::any::Any;
            if let Some(error) = any.downcast_mut::<Option<anyhow::Error>>().and_then(Option::take) {
                return StepError::with(Inner::Anyhow(Arc::new(error)));
            }
            match slot {
                Some(error) => error,
                None => unreachable!("taken only on return"),
            }
        };
        let boxed: Box<dyn StdError + Send + Sync + 'static> = error.into();
        StepError::with(Inner::Std(Arc::from(boxed)))
    }
}

impl StepError {
    fn with(inner: Inner) -> Self {
        StepError {
            inner,
            panicked: false,
            recorded_retryable: None,
        }
    }

    /// Wraps any error.
    pub fn new<E: StdError + Send + Sync + 'static>(error: E) -> Self {
        Self::from(error)
    }

    /// An error rebuilt from a journal entry.
    pub(crate) fn restored(message: String, panicked: bool, retryable: Option<bool>) -> Self {
        StepError {
            inner: Inner::Std(Arc::new(Message(message))),
            panicked,
            recorded_retryable: retryable,
        }
    }

    pub(crate) fn recorded_retryable(&self) -> Option<bool> {
        self.recorded_retryable
    }

    /// A failure described by a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::with(Inner::Std(Arc::new(Message(message.into()))))
    }

    /// A failure caused by a panic in the step body.
    pub(crate) fn panic(message: String) -> Self {
        StepError {
            inner: Inner::Std(Arc::new(Message(format!("step panicked: {message}")))),
            panicked: true,
            recorded_retryable: None,
        }
    }

    /// True when the step panicked rather than returning an error.
    pub fn is_panic(&self) -> bool {
        self.panicked
    }

    /// The original error, if it is an `E`. For an `anyhow::Error` (with the
    /// `anyhow` feature) this looks through its context layers: the first
    /// `E` in its chain.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        match &self.inner {
            Inner::Std(error) => error.downcast_ref::<E>(),
            #[cfg(feature = "anyhow")]
            Inner::Anyhow(error) => error.chain().find_map(|e| e.downcast_ref::<E>()),
        }
    }

    /// The `anyhow::Error` the step returned, if it returned one.
    #[cfg(feature = "anyhow")]
    pub fn as_anyhow(&self) -> Option<&anyhow::Error> {
        match &self.inner {
            Inner::Anyhow(error) => Some(error),
            Inner::Std(_) => None,
        }
    }

    /// The error as `dyn Error` (also what `*step_error` gives).
    pub fn as_dyn_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        match &self.inner {
            Inner::Std(error) => &**error,
            #[cfg(feature = "anyhow")]
            Inner::Anyhow(error) => &***error,
        }
    }
}

impl std::ops::Deref for StepError {
    type Target = dyn StdError + Send + Sync + 'static;
    fn deref(&self) -> &Self::Target {
        self.as_dyn_error()
    }
}

impl AsRef<dyn StdError + Send + Sync + 'static> for StepError {
    fn as_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        self.as_dyn_error()
    }
}

impl AsRef<dyn StdError + 'static> for StepError {
    fn as_ref(&self) -> &(dyn StdError + 'static) {
        self.as_dyn_error()
    }
}

impl From<StepError> for Box<dyn StdError + 'static> {
    fn from(error: StepError) -> Self {
        Box::new(Boxed(error))
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Std(error) => fmt::Display::fmt(error, f),
            #[cfg(feature = "anyhow")]
            Inner::Anyhow(error) => fmt::Display::fmt(error, f),
        }
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Std(error) => fmt::Debug::fmt(error, f),
            #[cfg(feature = "anyhow")]
            Inner::Anyhow(error) => fmt::Debug::fmt(error, f),
        }
    }
}

/// A `StepError` as a `std::error::Error` (in a `Box<dyn Error>`).
struct Boxed(StepError);

impl fmt::Display for Boxed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Boxed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl StdError for Boxed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.as_dyn_error().source()
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
