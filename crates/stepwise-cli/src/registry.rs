//! Workflows of different start and stop types behind one object-safe trait,
//! so the CLI can list, draw, run and resume them by name.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use stepwise::graph::{RunTrace, TraceError, WorkflowGraph};
use stepwise::{AnyEvent, Event, EventType, Journal, ResumeError, ResumeOptions, RunHandle, RunOptions, Workflow};

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A registered workflow, type-erased.
pub(crate) trait DynWorkflow: Send + Sync {
    fn name(&self) -> &str;
    fn doc(&self) -> Option<&str>;
    fn start_type(&self) -> EventType;
    fn stop_type(&self) -> EventType;
    fn step_count(&self) -> usize;
    /// Every event type the workflow knows.
    fn events(&self) -> Vec<EventType>;
    fn graph(&self) -> WorkflowGraph;
    /// Builds the start event from JSON and starts a run.
    fn run_json(&self, input: Value, options: RunOptions) -> Result<RunHandle<AnyEvent>, String>;
    fn resume<'a>(
        &'a self,
        journal: &'a Journal,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<RunHandle<AnyEvent>, ResumeError>>;
    fn trace<'a>(&'a self, journal: &'a Journal, run_id: &'a str) -> BoxFuture<'a, Result<RunTrace, TraceError>>;
}

impl<S: Event, O: Event> DynWorkflow for Workflow<S, O> {
    fn name(&self) -> &str {
        Workflow::name(self)
    }

    fn doc(&self) -> Option<&str> {
        Workflow::doc(self)
    }

    fn start_type(&self) -> EventType {
        self.start_event()
    }

    fn stop_type(&self) -> EventType {
        self.stop_event()
    }

    fn step_count(&self) -> usize {
        self.steps().len()
    }

    fn events(&self) -> Vec<EventType> {
        Workflow::events(self)
    }

    fn graph(&self) -> WorkflowGraph {
        Workflow::graph(self)
    }

    fn run_json(&self, input: Value, options: RunOptions) -> Result<RunHandle<AnyEvent>, String> {
        let start = S::deserialize(input).map_err(|e| format!("the input does not fit `{}`: {e}", S::NAME))?;
        Ok(self.run_with(start, options).erase())
    }

    fn resume<'a>(
        &'a self,
        journal: &'a Journal,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<RunHandle<AnyEvent>, ResumeError>> {
        Box::pin(async move {
            let options = ResumeOptions::new().internal_events(true);
            Workflow::resume_with(self, journal, run_id, options)
                .await
                .map(RunHandle::erase)
        })
    }

    fn trace<'a>(&'a self, journal: &'a Journal, run_id: &'a str) -> BoxFuture<'a, Result<RunTrace, TraceError>> {
        Box::pin(Workflow::trace(self, journal, run_id))
    }
}
