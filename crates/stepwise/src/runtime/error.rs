//! Errors a run reports to its caller: why it ended without its stop event,
//! and why its event stream could not be opened.

use std::time::Duration;

use crate::core::error::{shown_run_id, EventError, StepError};
use crate::runtime::recorder::JournalError;

/// Why a run ended without its stop event.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A journaled run's commits failed or were refused, so it stopped: its
    /// stored journal ends at its last good commit (resumable from there,
    /// unless another journal took the run).
    #[error("run {run_id} stopped: {source}")]
    Journal {
        /// The run.
        run_id: String,
        /// What the journal reported.
        #[source]
        source: JournalError,
    },
    /// A step failed; the run stopped.
    #[error("run {run_id}: step `{step}` failed after {attempts} attempt(s): {source}")]
    StepFailed {
        /// The run.
        run_id: String,
        /// The step that failed.
        step: String,
        /// How many times the step ran on the failing event.
        attempts: u32,
        /// What the step returned or how it panicked.
        #[source]
        source: StepError,
    },
    /// The workflow's timeout elapsed.
    #[error("run {run_id} timed out after {timeout:?}; {}", active_steps_text(.active_steps))]
    TimedOut {
        /// The run.
        run_id: String,
        /// The configured timeout.
        timeout: Duration,
        /// Steps still running when it fired, in definition order.
        active_steps: Vec<String>,
    },
    /// The run was cancelled through its handle.
    #[error("run {run_id} was cancelled")]
    Cancelled {
        /// The run.
        run_id: String,
    },
    /// `run` was called outside a tokio runtime, so the run never started.
    #[error("run {run_id} could not start: no tokio runtime is running on this thread")]
    NoRuntime {
        /// The run.
        run_id: String,
    },
    /// The start event was refused (too deep, or it does not serialise for
    /// the run's journal); the run did not start and nothing was stored.
    #[error("run {run_id} could not start: {source}")]
    StartRejected {
        /// The run.
        run_id: String,
        /// What is wrong with the start event.
        #[source]
        source: EventError,
    },
    /// The run's driver task was aborted (the tokio runtime shut down).
    #[error("run {run_id} was aborted before it finished (its tokio runtime shut down)")]
    Aborted {
        /// The run.
        run_id: String,
    },
    /// The state store given in [`RunOptions`](crate::RunOptions) holds another
    /// type than the workflow declares; the run did not start.
    #[error("run {run_id} could not start: the workflow's state is `{expected}`, the store given holds `{found}`")]
    StateTypeMismatch {
        /// The run.
        run_id: String,
        /// The workflow's declared state type.
        expected: &'static str,
        /// What the store holds.
        found: &'static str,
    },
    /// The run id given in [`RunOptions::run_id`](crate::RunOptions::run_id)
    /// is empty, blank, contains a control character (a newline, a tab…) or
    /// is longer than [`MAX_RUN_ID_BYTES`](crate::MAX_RUN_ID_BYTES); the run did not start and nothing
    /// was journaled.
    #[error("run id {} is not valid: {reason}", shown_run_id(.run_id))]
    InvalidRunId {
        /// The id as given.
        run_id: String,
        /// What is wrong with it, and what to use instead.
        reason: String,
    },
    /// The run ended with a stop event of an unexpected type (an engine invariant
    /// broken by a hand-built step; validation normally prevents it).
    #[error("run {run_id} ended with `{found}`, expected `{expected}`")]
    WrongStopType {
        /// The run.
        run_id: String,
        /// The declared stop type.
        expected: &'static str,
        /// What arrived.
        found: &'static str,
    },
}

fn active_steps_text(steps: &[String]) -> String {
    if steps.is_empty() {
        "no steps were running".to_owned()
    } else {
        format!("steps still running: {}", steps.join(", "))
    }
}

/// Why the event stream could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// `stream_events` was already called on this handle; a run has one consumer.
    #[error("the event stream of run {run_id} was already taken; a run's stream has a single consumer")]
    AlreadyTaken {
        /// The run.
        run_id: String,
    },
}
