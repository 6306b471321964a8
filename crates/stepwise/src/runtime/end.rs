//! How a run ends: its outcome as the caller sees it, and the one place the
//! handle and the stream are resolved.

use std::sync::atomic::Ordering;
use std::task::Waker;

use crate::core::define::workflow::WorkflowCore;
use crate::core::event::AnyEvent;
use crate::core::ids::RunStatus;
use crate::core::reducer::Outcome;

use super::driver::DRIVER_GRACE;
use super::error::RunError;
use super::recorder::JournalError;
use super::shared::{lock, RunShared};

/// What awaiting a run's handle gives for `outcome`.
pub(crate) fn outcome_result(workflow: &WorkflowCore, run_id: &str, outcome: Outcome) -> Result<AnyEvent, RunError> {
    if let Outcome::Completed(stop) = outcome {
        return Ok(stop);
    }
    let run_id = run_id.to_owned();
    match outcome {
        Outcome::Completed(stop) => Ok(stop),
        Outcome::Failed { step, attempts, error } => Err(RunError::StepFailed {
            run_id,
            step: workflow.steps[step].name().to_owned(),
            attempts,
            source: error,
        }),
        Outcome::TimedOut { active_steps } => Err(RunError::TimedOut {
            run_id,
            timeout: workflow.timeout.unwrap_or_default(),
            active_steps,
        }),
        Outcome::Cancelled => Err(RunError::Cancelled { run_id }),
    }
}

/// The stored status of a run that ended with `result`, with its stop event
/// or error text.
pub(crate) fn ended_status(result: &Result<AnyEvent, RunError>) -> (RunStatus, Option<&AnyEvent>, Option<String>) {
    match result {
        Ok(stop) => (RunStatus::Completed, Some(stop), None),
        Err(error @ RunError::Cancelled { .. }) => (RunStatus::Cancelled, None, Some(error.to_string())),
        Err(error) => (RunStatus::Failed, None, Some(error.to_string())),
    }
}

pub(super) fn finish_run(shared: &RunShared, outcome: Outcome) {
    let result = outcome_result(&shared.workflow, &shared.run_id, outcome);
    match &result {
        Ok(stop) => tracing::debug!(result = ?stop, "run completed"),
        Err(error) => tracing::warn!(%error, "run ended without a result"),
    }
    if shared.workflow.verbose {
        match &result {
            Ok(stop) => println!("[{}] result: {:?}", shared.run_id, stop),
            Err(error) => println!("[{}] ended: {error}", shared.run_id),
        }
    }
    if let Some(store) = shared.state.get() {
        store.observe(None);
    }
    shared.close(result);
}

impl RunShared {
    /// The journal gave the run up: the driver ends it with `error`.
    pub(super) fn journal_failed(&self, error: JournalError) {
        {
            let mut core = lock(&self.core);
            if core.fault.is_none() {
                core.fault = Some(Box::new(RunError::Journal {
                    run_id: self.run_id.to_string(),
                    source: error,
                }));
            }
        }
        self.pending.store(true, Ordering::Release);
        self.driver.wake();
    }

    /// Ends the run if a tick just decided its outcome (cancel, timeout) and
    /// the driver does not: normally the driver drops the in-flight steps and
    /// then resolves the handle, but it polls the steps itself, so a body that
    /// hogs its thread would hold the end back for as long as it runs. Then
    /// the run ends from here, and the driver drops the steps when it next
    /// gets control.
    pub(super) async fn finish_soon(&self) {
        if !self.stepping.load(Ordering::Acquire) {
            // The driver is free: give it a moment to end the run in order.
            tokio::time::sleep(DRIVER_GRACE).await;
        }
        self.finish_now();
    }

    /// Ends the run now if a tick decided its outcome and nobody ended it yet.
    pub(super) fn finish_now(&self) {
        let outcome = {
            let mut core = lock(&self.core);
            let outcome = core.finish.take();
            if outcome.is_some() {
                core.waiters.clear();
            }
            outcome
        };
        if let Some(outcome) = outcome {
            finish_run(self, outcome);
        }
    }

    /// Resolves the handle and the stream with `result`; the first result wins.
    pub(super) fn close(&self, result: Result<AnyEvent, RunError>) {
        if let Some(watchdog) = self.watchdog.get() {
            watchdog.abort();
        }
        let (stream_waker, result_waker) = {
            let mut outbox = lock(&self.outbox);
            if outbox.result.is_some() {
                return;
            }
            outbox.result = Some(result.map_err(Box::new));
            outbox.room.drain(..).for_each(Waker::wake);
            (outbox.stream_waker.take(), outbox.result_waker.take())
        };
        stream_waker.into_iter().chain(result_waker).for_each(Waker::wake);
    }

    pub(super) fn is_closed(&self) -> bool {
        lock(&self.outbox).result.is_some()
    }
}
