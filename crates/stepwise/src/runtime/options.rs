//! [`RunOptions`]: what a caller may choose for one run.

use std::sync::Arc;

use crate::core::state::StateStore;

use super::recorder::RecorderSource;

/// Per-run options.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub(super) run_id: Option<String>,
    pub(super) internal_events: bool,
    pub(super) state: Option<StateStore>,
    /// Where the run's recorder comes from (a journal; see `durable`).
    pub(crate) recorder: Option<Arc<dyn RecorderSource>>,
    pub(super) allow_changed_definition: bool,
    pub(super) stream_buffer: Option<usize>,
}

/// How many published events a run keeps for its stream's reader by default
/// (see [`RunOptions::stream_buffer`]).
pub const DEFAULT_STREAM_BUFFER: usize = 10_000;

impl RunOptions {
    /// Default options: a generated run id, no internal events.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `run_id` instead of a generated id. An empty or blank id, one
    /// with a control character or one over 255 bytes
    /// ([`check_run_id`](crate::check_run_id)) is refused: the handle
    /// resolves to [`RunError::InvalidRunId`](crate::RunError::InvalidRunId) and nothing runs or is
    /// journaled.
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Publishes [`StepStateChanged`](crate::StepStateChanged) events to the stream.
    /// Off by default: they cost an allocation per step transition.
    pub fn internal_events(mut self, on: bool) -> Self {
        self.internal_events = on;
        self
    }

    /// Runs with `store` as the run state: values set in it before the run are
    /// visible to the steps, and passing the store of a finished run
    /// (`handle.state()`) carries its state over. It must hold the workflow's
    /// declared state type.
    pub fn state(mut self, store: StateStore) -> Self {
        self.state = Some(store);
        self
    }

    /// How many published events the run keeps for a reader that is behind
    /// ([`DEFAULT_STREAM_BUFFER`] unless set; at least 1). Once a taken stream
    /// holds that many unread events the run's steps are paused (they are not
    /// polled, and [`Context::write_event_to_stream`](crate::Context::write_event_to_stream)
    /// awaited waits) until the reader catches up: nothing is dropped. Before
    /// anybody takes the stream the run keeps the latest that many, and a
    /// stream taken later starts with [`StreamLagged`](crate::StreamLagged).
    pub fn stream_buffer(mut self, events: usize) -> Self {
        self.stream_buffer = Some(events.max(1));
        self
    }

    /// When resuming from a snapshot: accept a changed workflow definition.
    pub fn allow_changed_definition(mut self, allow: bool) -> Self {
        self.allow_changed_definition = allow;
        self
    }

    pub(crate) fn allows_changed_definition(&self) -> bool {
        self.allow_changed_definition
    }

    pub(crate) fn wants_internal_events(&self) -> bool {
        self.internal_events
    }
}
