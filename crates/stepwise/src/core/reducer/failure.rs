//! A failed attempt: its retry timer, the error handler that takes over, or
//! the end of the run; and what a step can learn about its retries.

use std::time::Duration;

use serde_json::Value;

use crate::core::builtin::{StepFailed, WorkflowFailed};
use crate::core::error::StepError;
use crate::core::event::AnyEvent;
use crate::core::ids::{InvocationId, RetryInfo};
use crate::core::retry::retry_seed;

use super::slots::{recoveries, with_recovery, Attempt, InFlight, PendingRetry, Queued};
use super::{Command, Outcome, RunState, Timer};

impl RunState {
    /// A step attempt failed: give back its collect sets, then retry, hand the
    /// failure to an error handler, or fail the run.
    pub(super) fn failed(
        &mut self,
        mut done: InFlight,
        error: StepError,
        failed_at: u64,
        now: Duration,
        out: &mut Vec<Command>,
    ) {
        let step = done.step;
        for (_, buffer, set) in std::mem::take(&mut done.attempt.sets) {
            self.buffers.entry((step, buffer)).or_default().restore(set);
        }
        let name = self.workflow.steps[step].name();
        let attempts = done.attempt.number;
        let elapsed = now.saturating_sub(done.attempt.first_at);
        let delay = self.workflow.steps[step].config.retry.as_ref().and_then(|policy| {
            let seed = retry_seed(&self.run_id, name, attempts);
            policy.next_delay(attempts, elapsed, &error, seed)
        });
        if let Some(after) = delay {
            tracing::debug!(step = name, attempts, ?after, %error, "step failed; retrying");
            let timer = self.next_timer;
            self.next_timer += 1;
            let retry = Queued {
                event: done.event,
                attempt: Some(Box::new(Attempt {
                    number: attempts + 1,
                    first_at: done.attempt.first_at,
                    last_error: Some(error),
                    last_failed_at: Some(now),
                    applied: 0,
                    answers: Vec::new(),
                    collected: 0,
                    sets: Vec::new(),
                })),
                lineage: done.lineage,
            };
            let due = now.saturating_add(after);
            self.retries.insert(
                timer,
                PendingRetry {
                    step,
                    queued: retry,
                    due,
                },
            );
            out.push(Command::Schedule {
                at: due,
                timer: Timer::Retry(timer),
            });
            return;
        }
        if let Some((handler, budget)) = self.workflow.error_handler(step) {
            if recoveries(&done.lineage, handler) < budget {
                let failure = StepFailed {
                    step: name.to_owned(),
                    input_event_name: done.event.name().to_owned(),
                    input_event: done.event.to_json().unwrap_or(Value::Null),
                    error: error.to_string(),
                    panicked: error.is_panic(),
                    attempts,
                    elapsed_secs: elapsed.as_secs_f64(),
                    failed_at,
                    input: Some(done.event),
                    source: Some(error.clone()),
                };
                let lineage = with_recovery(&done.lineage, handler);
                self.deliver(handler, Queued::fresh(AnyEvent::new(failure), lineage), now, out);
                return;
            }
            tracing::warn!(
                step = name,
                handler = self.workflow.steps[handler].name(),
                "recovery budget exhausted"
            );
        }
        out.push(Command::Publish(AnyEvent::new(WorkflowFailed {
            step: name.to_owned(),
            error: error.to_string(),
            attempts,
            elapsed_secs: now.as_secs_f64(),
        })));
        self.finish(Outcome::Failed { step, attempts, error }, out);
    }

    /// What `ctx.retry_info()` reports.
    pub(crate) fn retry_info(&self, invocation: InvocationId, now: Duration) -> Option<RetryInfo> {
        let attempt = &self.invocations.get(invocation)?.attempt;
        Some(RetryInfo {
            attempt: attempt.number,
            elapsed: now.saturating_sub(attempt.first_at),
            last_error: attempt.last_error.clone(),
            last_failed_at: attempt.last_failed_at,
        })
    }
}
