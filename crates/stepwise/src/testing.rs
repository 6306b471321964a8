//! A test runner for workflows: run, collect every published event, count
//! them by type, get the result. Works on tokio's paused clock.
//!
//! ```
//! use stepwise::testing::WorkflowTestRunner;
//! use stepwise::{StartEvent, StopEvent, Workflow};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let wf = Workflow::builder("echo")
//!     .step("echo", |_: StartEvent| async { StopEvent::new("hi") })
//!     .build()
//!     .unwrap();
//! let outcome = WorkflowTestRunner::new(&wf).run(StartEvent::new()).await;
//! assert_eq!(outcome.result.as_ref().unwrap().result, "hi");
//! assert_eq!(outcome.count("StopEvent"), 1);
//! assert_eq!(outcome.count_of::<stepwise::StepStateChanged>(), 2); // running, finished
//! assert_eq!(outcome.result.unwrap().result, "hi");
//! # }
//! ```

use std::collections::BTreeMap;

use futures_util::StreamExt;

use crate::core::define::workflow::Workflow;
use crate::core::event::{AnyEvent, Event};
use crate::core::state::StateStore;
use crate::runtime::RunError;
use crate::runtime::{RunHandle, RunOptions};

/// Runs a workflow and records everything it publishes.
pub struct WorkflowTestRunner<S, O> {
    workflow: Workflow<S, O>,
    internal: bool,
    state: Option<StateStore>,
}

/// What a test run produced.
#[derive(Debug)]
pub struct TestOutcome<O> {
    /// Every published event, in order.
    pub events: Vec<AnyEvent>,
    /// The run's result.
    pub result: Result<O, RunError>,
    /// The run's state store after it ended.
    pub state: StateStore,
}

impl<O> TestOutcome<O> {
    /// How many published events have the stable name `name`.
    pub fn count(&self, name: &str) -> usize {
        self.events.iter().filter(|e| e.name() == name).count()
    }

    /// How many published events are `E`s.
    pub fn count_of<E: Event>(&self) -> usize {
        self.events.iter().filter(|e| e.is::<E>()).count()
    }

    /// Published event counts by name.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for event in &self.events {
            *counts.entry(event.name()).or_default() += 1;
        }
        counts
    }

    /// The published `E`s, in order.
    pub fn events_of<E: Event>(&self) -> Vec<E> {
        self.events
            .iter()
            .filter_map(|e| e.downcast_ref::<E>().cloned())
            .collect()
    }

    /// The names of the published events, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.events.iter().map(AnyEvent::name).collect()
    }
}

impl<S: Event, O: Event> WorkflowTestRunner<S, O> {
    /// A runner that records internal step events too.
    pub fn new(workflow: &Workflow<S, O>) -> Self {
        WorkflowTestRunner {
            workflow: workflow.clone(),
            internal: true,
            state: None,
        }
    }

    /// Records internal step events (`true` by default).
    pub fn internal_events(mut self, on: bool) -> Self {
        self.internal = on;
        self
    }

    /// Starts the run with this state store.
    pub fn state(mut self, store: StateStore) -> Self {
        self.state = Some(store);
        self
    }

    fn start(&self, start: S) -> RunHandle<O> {
        let mut options = RunOptions::new().internal_events(self.internal);
        if let Some(store) = &self.state {
            options = options.state(store.clone());
        }
        self.workflow.run_with(start, options)
    }

    /// Runs to the end.
    pub async fn run(&self, start: S) -> TestOutcome<O> {
        self.run_responding(start, |_| None).await
    }

    /// Runs to the end, calling `respond` on every published event; whatever
    /// it returns is sent into the run (answer input requests this way).
    pub async fn run_responding(
        &self,
        start: S,
        mut respond: impl FnMut(&AnyEvent) -> Option<AnyEvent>,
    ) -> TestOutcome<O> {
        let handle = self.start(start);
        let mut events = Vec::new();
        if let Ok(mut stream) = handle.stream_events() {
            while let Some(event) = stream.next().await {
                if let Some(answer) = respond(&event) {
                    // A run that already ended cannot take the answer; the
                    // outcome shows how it ended.
                    let _ = handle.send_any(answer);
                }
                events.push(event);
            }
        }
        let state = handle.state().clone();
        let result = handle.await;
        TestOutcome { events, result, state }
    }
}
