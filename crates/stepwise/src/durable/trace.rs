//! One run's actual path, rebuilt from its journal: which step invocations ran
//! on which event instances, in order, with timings, failures and retries.
//!
//! The journal is replayed through the reducer (which is what makes the run
//! reproducible); the commands it produces say which invocation started on
//! which event, and each `step_done` entry says how it ended.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{parse_entries, Journal, ResumeError};
use crate::core::codec::journal::{Decoder, Replayed, TickData};
use crate::core::define::workflow::{Workflow, WorkflowCore};
use crate::core::event::{AnyEvent, Event, EventKind};
use crate::core::reducer::{Command, InvocationId, RunState, Timer};
use crate::store::StoreError;

/// Why a trace could not be built.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// Running when its process stopped; the run was resumed and the
    /// invocation ran again (a later invocation has the same input).
    Interrupted,
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
    /// Indexes (in [`RunTrace::events`]) of the events handed to it by
    /// `wait_for_event` (a person's answer, typically).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waited_for: Vec<usize>,
}

/// One event instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Its stable name.
    pub name: String,
    /// Its role (start, stop, input request, …).
    pub kind: EventKind,
    /// When it entered the run (µs).
    pub at_us: u64,
    /// The invocation (index in [`RunTrace::steps`]) that produced it (or
    /// published it, for an input request, or failed, for a
    /// [`StepFailed`](crate::StepFailed)), or `None` when it came from outside.
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
    /// Open waiters: key → invocation (index in `steps`).
    waiters: HashMap<u64, usize>,
}

impl Builder {
    fn event(&mut self, event: &AnyEvent, at_us: u64, source: Option<usize>) -> usize {
        if let Some(&index) = self.by_addr.get(&event.addr()) {
            return index;
        }
        self.events.push(TraceEvent {
            name: event.name().to_owned(),
            kind: event.kind(),
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
        let record = store.run(run_id).await?.ok_or_else(|| ResumeError::NotFound {
            run_id: run_id.to_owned(),
        })?;
        if record.workflow != workflow.name {
            return Err(ResumeError::WrongWorkflow {
                run_id: run_id.to_owned(),
                expected: workflow.name.clone(),
                found: record.workflow,
            }
            .into());
        }
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
            let resumed = matches!(entry.tick, TickData::Resume);
            let replayed = decoder
                .replay_into(&mut state, entry, &mut out)
                .map_err(|source| ResumeError::Decode {
                    run_id: run_id.to_owned(),
                    source,
                })?;
            if resumed {
                // Whatever ran when the process stopped runs again now.
                let mut interrupted: Vec<usize> = b.open.drain().map(|(_, index)| index).collect();
                interrupted.sort_unstable();
                for index in interrupted {
                    b.steps[index].outcome = TraceOutcome::Interrupted;
                }
                b.waiters.clear();
            }
            let mut failed_step: Option<usize> = None;
            let mut waiting: Option<usize> = None;
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
                Replayed::Waiter { invocation, key } => {
                    if let (Some(&index), Some(key)) = (b.open.get(&invocation), key) {
                        b.waiters.insert(key, index);
                        waiting = Some(index);
                    }
                }
                Replayed::Other => {}
            }
            for command in out.drain(..) {
                match command {
                    Command::StartWorker(start) => {
                        // A failure handed to an error handler comes from the failed step.
                        let source = failed_step.filter(|_| start.event.is::<crate::core::builtin::StepFailed>());
                        let input = b.event(&start.event, at, source);
                        keep.push(start.event.clone());
                        b.steps.push(TraceStep {
                            step: workflow.steps[start.step].name().to_owned(),
                            worker: start.worker,
                            input,
                            started_us: at,
                            finished_us: None,
                            outcome: TraceOutcome::Running,
                            waited_for: Vec::new(),
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
                    Command::Publish(event)
                        if waiting.is_some() && !event.is::<crate::core::builtin::WorkflowIdle>() =>
                    {
                        // The input request a waiter publishes.
                        b.event(&event, at, waiting);
                        keep.push(event);
                    }
                    Command::ResolveWaiter { key, result: Ok(event) } => {
                        if let Some(index) = b.waiters.remove(&key) {
                            let answer = b.event(&event, at, None);
                            b.steps[index].waited_for.push(answer);
                            keep.push(event);
                        }
                    }
                    Command::ResolveWaiter { key, result: Err(_) } => {
                        b.waiters.remove(&key);
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
}

impl<S: Event, O: Event> Workflow<S, O> {
    /// The actual path of a journaled run, rebuilt from its journal without
    /// running anything. Fails when the store has no such run, or the run
    /// belongs to another workflow.
    pub async fn trace(&self, journal: &Journal, run_id: &str) -> Result<RunTrace, TraceError> {
        RunTrace::from_journal(&self.core, journal, run_id).await
    }
}
