//! A resumed run: rewinding in-flight work to be run again, and not
//! repeating the effects an earlier attempt already applied.

use std::time::Duration;

use crate::core::ids::InvocationId;

use super::slots::{InFlight, Queued};
use super::waiters::Recovered;
use super::{Command, Effect, RunState, Timer};

impl RunState {
    /// Starts a new session: every in-flight invocation goes back to the head
    /// of its step's queue (same event, attempt and lineage) and its waiters
    /// are dropped (the re-run registers them again, without publishing their
    /// events a second time); then queues are drained. The attempt keeps what
    /// its run had done — sends applied, waits answered, collect results — so
    /// that the re-run does not do it twice.
    pub(super) fn rewind(&mut self, now: Duration, out: &mut Vec<Command>) {
        // A new session starts a new idle period: if the run is (still) only
        // waiting for outside input, `WorkflowIdle` is published again, so the
        // resumed run's stream tells its caller what it waits for.
        self.idle = false;
        let mut requeued: Vec<(InvocationId, InFlight)> = Vec::new();
        for index in 0..self.invocations.slots.len() {
            let cell = &self.invocations.slots[index];
            if cell.1.is_some() {
                let id = InvocationId {
                    slot: index as u32,
                    generation: cell.0,
                };
                if let Some(inflight) = self.invocations.remove(id) {
                    requeued.push((id, inflight));
                }
            }
        }
        self.waiting_invocations = 0;
        for waiter in std::mem::take(&mut self.waiters) {
            self.recovered_waiters.push(Recovered {
                step: waiter.step,
                id: waiter.id,
                ty: Some(waiter.ty),
                requirements: waiter.requirements,
                held: None,
            });
        }
        // Re-queue in reverse so that, pushed to the front, they keep their order.
        for (_, inflight) in requeued.into_iter().rev() {
            let step = inflight.step;
            self.steps[step].release_worker(inflight.worker);
            self.steps[step].queue.push_front(Queued {
                event: inflight.event,
                attempt: Some(Box::new(inflight.attempt)),
                lineage: inflight.lineage,
            });
        }
        for step in 0..self.steps.len() {
            self.drain_queue(step, now, out);
        }
        for (id, retry) in &self.retries {
            out.push(Command::Schedule {
                at: retry.due,
                timer: Timer::Retry(*id),
            });
        }
    }

    /// Counts a send or stream write `invocation`'s body issues; true when
    /// its attempt already applied it before a resume (then it is skipped).
    pub(crate) fn issue_effect(&mut self, invocation: InvocationId) -> bool {
        match self.invocations.get_mut(invocation) {
            Some(inflight) => {
                inflight.issued += 1;
                inflight.issued <= inflight.attempt.applied
            }
            None => false,
        }
    }

    /// Applies `invocation`'s effects so far before it ends, and counts them
    /// as applied (see [`Tick::Effects`](super::Tick::Effects)).
    pub(crate) fn apply_early(
        &mut self,
        invocation: InvocationId,
        effects: Vec<Effect>,
        now: Duration,
        out: &mut Vec<Command>,
    ) {
        if effects.is_empty() || self.invocations.get(invocation).is_none() {
            return;
        }
        let count = effects.len() as u32;
        self.apply_effects(invocation, effects, now, out);
        if !self.finished {
            self.mark_applied(invocation, count);
        }
    }

    /// Counts `n` more effects of `invocation` as applied.
    pub(crate) fn mark_applied(&mut self, invocation: InvocationId, n: u32) {
        if let Some(inflight) = self.invocations.get_mut(invocation) {
            inflight.attempt.applied += n;
        }
    }
}
