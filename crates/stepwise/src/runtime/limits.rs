//! Run limits: a workflow's `num_concurrent_runs` and its steps'
//! `max_concurrent_across_runs`, as FIFO semaphores shared by every run of one
//! [`Workflow`](crate::Workflow) value and its clones in this process.
//!
//! A run or invocation waiting for a slot is a future waiting on the
//! semaphore (tokio's is fair: first come, first served); no thread blocks.
//! A slot is an owned permit, freed when its holder is dropped — the run's
//! driver when the run ends (however it ends), the invocation's future when
//! the attempt ends or is dropped with its run.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::core::define::step::StepFuture;
use crate::core::define::workflow::WorkflowCore;
use crate::core::error::StepError;

/// The semaphores of one workflow.
pub(super) struct Limits {
    pub(super) runs: Option<Arc<Semaphore>>,
    steps: Vec<Option<Arc<Semaphore>>>,
}

/// The workflow's limits, or `None` when it has none (one branch).
pub(super) fn limits(workflow: &WorkflowCore) -> Option<&Limits> {
    if !workflow.limited {
        return None;
    }
    let slot = workflow.limits.get_or_init(|| {
        Box::new(Limits {
            runs: workflow.num_concurrent_runs.map(|n| Arc::new(Semaphore::new(n))),
            steps: workflow
                .steps
                .iter()
                .map(|s| s.config.max_concurrent_across_runs.map(|n| Arc::new(Semaphore::new(n))))
                .collect(),
        })
    });
    slot.downcast_ref::<Limits>()
}

impl Limits {
    /// The semaphore of `step`'s limit, if it has one.
    pub(super) fn step_slot(&self, step: usize) -> Option<Arc<Semaphore>> {
        self.steps.get(step)?.clone()
    }
}

/// A step body that waits for a slot of `semaphore` first; `make` builds the
/// body once the slot is held (so a waiting invocation's body has not started).
pub(super) fn gated(semaphore: Arc<Semaphore>, make: impl FnOnce() -> StepFuture + Send + 'static) -> StepFuture {
    Box::pin(async move {
        let permit: OwnedSemaphorePermit = semaphore
            .acquire_owned()
            .await
            .map_err(|_| StepError::msg("the step's concurrency limit was closed"))?;
        let result = make().await;
        drop(permit);
        result
    })
}
