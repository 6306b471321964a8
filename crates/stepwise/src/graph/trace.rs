//! One run's actual path, rebuilt from its journal: which step invocations ran
//! on which event instances, in order, with timings, failures and retries.
//!
//! The journal is replayed through the reducer (which is what makes the run
//! reproducible); the commands it produces say which invocation started on
//! which event, and each `step_done` entry says how it ended.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{EdgeStyle, GraphEdge, GraphNode, NodeKind, WorkflowGraph};
use crate::durable::{parse_entries, Journal, ResumeError};
use crate::event::{AnyEvent, Event};
use crate::journal::{Decoder, Replayed};
use crate::reducer::{Command, InvocationId, RunState, Timer};
use crate::store::StoreError;
use crate::workflow::{Workflow, WorkflowCore};

/// Why a trace could not be built.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TraceError {
    /// The run cannot be read or replayed.
    #[error(transparent)]
    Replay(#[from] ResumeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How an invocation ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TraceOutcome {
    /// Returned normally.
    Ok,
    /// Failed and was retried (a later invocation has the same input).
    Retried {
        /// The error.
        error: String,
    },
    /// Failed for good (or was handed to an error handler).
    Failed {
        /// The error.
        error: String,
    },
    /// Still running when the journal ends (or the run is being resumed).
    Running,
    /// Dropped when the run ended (stop event elsewhere, timeout, cancel).
    Cancelled,
}

/// One step invocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceStep {
    /// The step.
    pub step: String,
    /// Its worker slot.
    pub worker: u32,
    /// Index (in [`RunTrace::events`]) of the event it ran on.
    pub input: usize,
    /// When it started (µs on the run's clock).
    pub started_us: u64,
    /// When it finished.
    pub finished_us: Option<u64>,
    /// How it ended.
    pub outcome: TraceOutcome,
}

/// One event instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Its stable name.
    pub name: String,
    /// When it entered the run (µs).
    pub at_us: u64,
    /// The invocation (index in [`RunTrace::steps`]) that produced it, or
    /// `None` when it came from outside.
    pub source: Option<usize>,
}

/// A run's actual path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunTrace {
    /// The run.
    pub run_id: String,
    /// The workflow.
    pub workflow: String,
    /// Invocations in start order.
    pub steps: Vec<TraceStep>,
    /// Event instances in arrival order.
    pub events: Vec<TraceEvent>,
}

#[derive(Default)]
struct Builder {
    steps: Vec<TraceStep>,
    events: Vec<TraceEvent>,
    by_addr: HashMap<usize, usize>,
    open: HashMap<InvocationId, usize>,
}

impl Builder {
    fn event(&mut self, event: &AnyEvent, at_us: u64, source: Option<usize>) -> usize {
        if let Some(&index) = self.by_addr.get(&event.addr()) {
            return index;
        }
        self.events.push(TraceEvent {
            name: event.name().to_owned(),
            at_us,
            source,
        });
        let index = self.events.len() - 1;
        // Keep the event alive in the map's key space by address only; the
        // replayed state holds the instance for as long as it is routed.
        self.by_addr.insert(event.addr(), index);
        index
    }
}

impl RunTrace {
    pub(crate) async fn from_journal(
        workflow: &Arc<WorkflowCore>,
        journal: &Journal,
        run_id: &str,
    ) -> Result<RunTrace, TraceError> {
        let store = journal.store();
        let batches = store.entries(run_id, 0).await?;
        let entries = parse_entries(run_id, batches, 0)?;
        let mut state = RunState::new(Arc::clone(workflow), run_id.into(), false);
        let decoder = Decoder { workflow };
        let mut b = Builder::default();
        // Events stay referenced here so their addresses are never reused.
        let mut keep: Vec<AnyEvent> = Vec::new();
        let mut out = Vec::new();
        let mut finished = false;
        for entry in entries {
            let at = entry.at_us;
            let replayed = decoder
                .replay_into(&mut state, entry, &mut out)
                .map_err(|source| ResumeError::Decode {
                    run_id: run_id.to_owned(),
                    source,
                })?;
            let mut failed_step: Option<usize> = None;
            match replayed {
                Replayed::External(event) => {
                    b.event(&event, at, None);
                    keep.push(event);
                }
                Replayed::StepDone {
                    invocation,
                    outputs,
                    error,
                } => {
                    if let Some(index) = b.open.remove(&invocation) {
                        b.steps[index].finished_us = Some(at);
                        b.steps[index].outcome = match error {
                            None => TraceOutcome::Ok,
                            Some(error) => {
                                failed_step = Some(index);
                                TraceOutcome::Failed { error }
                            }
                        };
                        for event in outputs {
                            b.event(&event, at, Some(index));
                            keep.push(event);
                        }
                    }
                }
                Replayed::Other => {}
            }
            for command in out.drain(..) {
                match command {
                    Command::StartWorker(start) => {
                        let input = b.event(&start.event, at, None);
                        keep.push(start.event.clone());
                        b.steps.push(TraceStep {
                            step: workflow.steps[start.step].name().to_owned(),
                            worker: start.worker,
                            input,
                            started_us: at,
                            finished_us: None,
                            outcome: TraceOutcome::Running,
                        });
                        b.open.insert(start.invocation, b.steps.len() - 1);
                    }
                    Command::Schedule {
                        timer: Timer::Retry(_), ..
                    } => {
                        if let Some(index) = failed_step {
                            if let TraceOutcome::Failed { error } = &b.steps[index].outcome {
                                b.steps[index].outcome = TraceOutcome::Retried { error: error.clone() };
                            }
                        }
                    }
                    Command::Finish(_) => finished = true,
                    _ => {}
                }
            }
        }
        if finished {
            for index in b.open.values() {
                b.steps[*index].outcome = TraceOutcome::Cancelled;
            }
        }
        drop(keep);
        Ok(RunTrace {
            run_id: run_id.to_owned(),
            workflow: workflow.name.clone(),
            steps: b.steps,
            events: b.events,
        })
    }

    /// The trace as a graph: one node per invocation and per event instance.
    pub fn graph(&self) -> WorkflowGraph {
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        for (i, event) in self.events.iter().enumerate() {
            let mut node = GraphNode::new(
                format!("ev:{i}"),
                NodeKind::EventInstance,
                format!("{} #{i}", event.name),
            );
            node.details
                .insert("at_ms".into(), (event.at_us as f64 / 1000.0).into());
            node.role = Some(match event.name.as_str() {
                n if n == crate::builtin::StopEvent::NAME => crate::event::EventKind::Stop,
                n if n == crate::builtin::StartEvent::NAME => crate::event::EventKind::Start,
                _ => crate::event::EventKind::Regular,
            });
            nodes.push(node);
            if let Some(source) = event.source {
                edges.push(GraphEdge {
                    from: format!("run:{source}"),
                    to: format!("ev:{i}"),
                    label: None,
                    style: EdgeStyle::Solid,
                });
            }
        }
        let mut last_attempt: HashMap<(String, usize), usize> = HashMap::new();
        for (j, step) in self.steps.iter().enumerate() {
            let took = step
                .finished_us
                .map(|f| format!(" · {:.1} ms", (f.saturating_sub(step.started_us)) as f64 / 1000.0))
                .unwrap_or_default();
            let mut node = GraphNode::new(
                format!("run:{j}"),
                NodeKind::StepRun,
                format!("{} (w{}){took}", step.step, step.worker),
            );
            let status = match &step.outcome {
                TraceOutcome::Ok => "ok",
                TraceOutcome::Retried { error } | TraceOutcome::Failed { error } => {
                    node.details.insert("error".into(), error.clone().into());
                    if matches!(step.outcome, TraceOutcome::Retried { .. }) {
                        "retried"
                    } else {
                        "failed"
                    }
                }
                TraceOutcome::Running => "running",
                TraceOutcome::Cancelled => "cancelled",
            };
            node.status = Some(status.into());
            node.details
                .insert("started_ms".into(), (step.started_us as f64 / 1000.0).into());
            nodes.push(node);
            let key = (step.step.clone(), step.input);
            match last_attempt.insert(key, j) {
                Some(previous) => edges.push(GraphEdge {
                    from: format!("run:{previous}"),
                    to: format!("run:{j}"),
                    label: Some("retry".into()),
                    style: EdgeStyle::Dashed,
                }),
                None => edges.push(GraphEdge {
                    from: format!("ev:{}", step.input),
                    to: format!("run:{j}"),
                    label: None,
                    style: EdgeStyle::Solid,
                }),
            }
        }
        WorkflowGraph {
            name: format!("{} — run {}", self.workflow, self.run_id),
            description: Some(format!(
                "{} step invocations, {} events",
                self.steps.len(),
                self.events.len()
            )),
            nodes,
            edges,
        }
    }
}

impl<S: Event, O: Event> Workflow<S, O> {
    /// The graph of every possible flow, built from the definition.
    pub fn graph(&self) -> WorkflowGraph {
        WorkflowGraph::of_workflow(&self.core)
    }

    /// The actual path of a journaled run.
    pub async fn trace(&self, journal: &Journal, run_id: &str) -> Result<RunTrace, TraceError> {
        RunTrace::from_journal(&self.core, journal, run_id).await
    }
}
