//! Steps suspended in `wait_for_event`: registering, answering, withdrawing
//! and timing out waiters, waiters recovered by a resume, and idleness.

use std::time::Duration;

use serde_json::Value;

use crate::core::builtin::WorkflowIdle;
use crate::core::context::wait::WaiterSpec;
use crate::core::error::WaitError;
use crate::core::event::{AnyEvent, EventType};
use crate::core::ids::{InvocationId, StepIdx};

use super::{Command, Effect, RunState, Timer};

/// A step suspended in `wait_for_event`.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) key: u64,
    pub(crate) invocation: InvocationId,
    /// Which wait of its invocation's body run this is.
    pub(crate) call: u32,
    pub(crate) step: StepIdx,
    pub(crate) id: String,
    pub(crate) ty: EventType,
    pub(crate) requirements: Vec<(String, Value)>,
}

/// A waiter whose invocation was re-queued by a resume, until the re-run
/// registers it again. It keeps the wait's event type and requirements, so an
/// answer that arrives before the re-run waits again is held for it instead
/// of being routed (or published as unhandled).
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) step: StepIdx,
    pub(crate) id: String,
    /// `None` only when read from a snapshot written before the type was kept.
    pub(crate) ty: Option<EventType>,
    pub(crate) requirements: Vec<(String, Value)>,
    /// The event that answered the wait before it was registered again.
    pub(crate) held: Option<AnyEvent>,
}

/// True when `event` (of type `ty`) satisfies a wait for `want` with
/// `requirements`; `json` caches the event's JSON between calls.
pub(super) fn wait_matches(
    want: EventType,
    requirements: &[(String, Value)],
    ty: EventType,
    event: &AnyEvent,
    json: &mut Option<Value>,
) -> bool {
    want == ty && {
        if requirements.is_empty() {
            true
        } else {
            let fields = json.get_or_insert_with(|| event.to_json().unwrap_or(Value::Null));
            requirements.iter().all(|(k, v)| fields.get(k) == Some(v))
        }
    }
}

impl RunState {
    /// Registers a waiter for `invocation`; returns its key, or `None` when the
    /// invocation is gone. `effects` are the invocation's deferred sends and
    /// stream writes: they are applied first (a step must not wait on events
    /// its own unapplied sends would cause) and counted as applied.
    pub(crate) fn add_waiter(
        &mut self,
        invocation: InvocationId,
        spec: WaiterSpec,
        effects: Vec<Effect>,
        now: Duration,
        out: &mut Vec<Command>,
    ) -> Result<u64, WaitError> {
        if self.finished || self.invocations.get(invocation).is_none() {
            return Err(WaitError::RunEnded { event: spec.ty.name() });
        }
        if !effects.is_empty() {
            let count = effects.len() as u32;
            self.apply_effects(invocation, effects, now, out);
            if self.finished {
                return Err(WaitError::RunEnded { event: spec.ty.name() });
            }
            self.mark_applied(invocation, count);
        }
        let Some(inflight) = self.invocations.get_mut(invocation) else {
            return Err(WaitError::RunEnded { event: spec.ty.name() });
        };
        let step = inflight.step;
        let call = inflight.waits;
        inflight.waits += 1;
        // Answered before a resume: the re-run gets the same answer at once.
        let answered = inflight
            .attempt
            .answers
            .iter()
            .position(|(c, id, _)| *c == call && *id == spec.id);
        if let Some(index) = answered {
            let (_, _, answer) = inflight.attempt.answers.remove(index);
            let key = self.next_timer;
            self.next_timer += 1;
            out.push(Command::ResolveWaiter {
                key,
                result: Ok(answer),
            });
            return Ok(key);
        }
        if self
            .waiters
            .iter()
            .any(|w| w.invocation == invocation && w.id == spec.id)
        {
            return Err(WaitError::DuplicateWaiter {
                step: self.workflow.steps[step].name().to_owned(),
                waiter_id: spec.id,
            });
        }
        let recovered = self
            .recovered_waiters
            .iter()
            .position(|r| r.step == step && r.id == spec.id)
            .map(|i| self.recovered_waiters.swap_remove(i));
        let key = self.next_timer;
        self.next_timer += 1;
        // Answered after the resume, before this re-run waited again.
        if let Some(answer) = recovered.as_ref().and_then(|r| r.held.clone()) {
            // Kept with the attempt, like an answer to a live wait.
            inflight.attempt.answers.push((call, spec.id, answer.clone()));
            out.push(Command::ResolveWaiter {
                key,
                result: Ok(answer),
            });
            return Ok(key);
        }
        inflight.waiting += 1;
        if inflight.waiting == 1 {
            self.waiting_invocations += 1;
        }
        if let Some(event) = spec.publish {
            if recovered.is_none() {
                out.push(Command::Publish(event));
            }
        }
        if let Some(after) = spec.timeout {
            out.push(Command::Schedule {
                at: now.saturating_add(after),
                timer: Timer::WaiterTimeout(key),
            });
        }
        self.waiters.push(Waiter {
            key,
            invocation,
            call,
            step,
            id: spec.id,
            ty: spec.ty,
            requirements: spec.requirements,
        });
        self.check_idle(out);
        Ok(key)
    }

    /// Hands `event` to every waiter it satisfies; returns the waiting steps,
    /// which do not also receive it through normal routing.
    pub(super) fn resolve_waiters(&mut self, event: &AnyEvent, out: &mut Vec<Command>) -> Vec<StepIdx> {
        let ty = event.event_type();
        let mut json: Option<Value> = None;
        let mut answered = Vec::new();
        let mut index = 0;
        while index < self.waiters.len() {
            let waiter = &self.waiters[index];
            if !wait_matches(waiter.ty, &waiter.requirements, ty, event, &mut json) {
                index += 1;
                continue;
            }
            let waiter = self.waiters.remove(index);
            self.waiter_closed(waiter.invocation);
            if let Some(inflight) = self.invocations.get_mut(waiter.invocation) {
                inflight.attempt.answers.push((waiter.call, waiter.id, event.clone()));
            }
            answered.push(waiter.step);
            out.push(Command::ResolveWaiter {
                key: waiter.key,
                result: Ok(event.clone()),
            });
        }
        answered
    }

    /// Holds `event` for every recovered waiter (one whose step has not waited
    /// again since a resume) that it satisfies and that has no answer yet;
    /// adds their steps to `answered`, so the event is not also routed to them.
    pub(super) fn hold_for_recovered(&mut self, event: &AnyEvent, answered: &mut Vec<StepIdx>) {
        let ty = event.event_type();
        let mut json: Option<Value> = None;
        for recovered in &mut self.recovered_waiters {
            let Some(want) = recovered.ty else { continue };
            if recovered.held.is_none() && wait_matches(want, &recovered.requirements, ty, event, &mut json) {
                recovered.held = Some(event.clone());
                answered.push(recovered.step);
            }
        }
    }

    /// Withdraws waiter `key`: its `wait_for_event` future was dropped before an
    /// event came (the step gave up on it with `select!` or a timeout of its own).
    pub(crate) fn withdraw_waiter(&mut self, key: u64, out: &mut Vec<Command>) {
        if self.finished {
            return;
        }
        let Some(index) = self.waiters.iter().position(|w| w.key == key) else {
            return; // already answered or timed out
        };
        let waiter = self.waiters.remove(index);
        self.waiter_closed(waiter.invocation);
        self.check_idle(out);
    }

    pub(super) fn waiter_timed_out(&mut self, key: u64, out: &mut Vec<Command>) {
        let Some(index) = self.waiters.iter().position(|w| w.key == key) else {
            return; // already answered
        };
        let waiter = self.waiters.remove(index);
        self.waiter_closed(waiter.invocation);
        out.push(Command::ResolveWaiter {
            key,
            result: Err(WaitError::TimedOut {
                step: self.workflow.steps[waiter.step].name().to_owned(),
                event: waiter.ty.name(),
                waiter_id: waiter.id,
            }),
        });
    }

    pub(super) fn waiter_closed(&mut self, invocation: InvocationId) {
        if let Some(inflight) = self.invocations.get_mut(invocation) {
            inflight.waiting = inflight.waiting.saturating_sub(1);
            if inflight.waiting == 0 {
                self.waiting_invocations -= 1;
            }
        }
    }

    /// True when all remaining work waits for outside input (see
    /// [`RunState::check_idle`]).
    pub(super) fn is_idle(&self) -> bool {
        !self.finished && self.retries.is_empty() && self.invocations.len == self.waiting_invocations
    }

    /// Publishes `WorkflowIdle` when all remaining work waits for outside input:
    /// every in-flight invocation is suspended in `wait_for_event` and no retry
    /// is due. Queued events do not count as work: an event queues only while
    /// its step has no free worker, and those workers are all waiting, so the
    /// queue cannot move without outside input either.
    pub(super) fn check_idle(&mut self, out: &mut Vec<Command>) {
        let idle = self.is_idle();
        if idle && !self.idle {
            let waiting = self
                .waiters
                .iter()
                .map(|w| format!("{}/{}", self.workflow.steps[w.step].name(), w.id))
                .collect();
            out.push(Command::Publish(AnyEvent::new(WorkflowIdle { waiting })));
        }
        self.idle = idle;
    }
}
