//! What a step's context calls in this process: `impl StepHost for RunShared`
//! and the run-side calls behind it (sends, waits, collects).

use std::task::{Context as TaskContext, Poll};

use crate::core::context::host::{StepHost, WaitAnswer};
use crate::core::error::{SendError, StepError, WaitError};
use crate::core::event::{AnyEvent, EventType};
use crate::core::reducer::Effect;
use crate::core::reducer::{InvocationId, RetryInfo, StepIdx, Tick, WaiterSpec};
use crate::core::state::StateStore;

use super::shared::{effect_events, lock, not_serializable, too_deep, RunShared};

/// The in-process host of a run's step invocations: each call takes the
/// run's lock and reduces its tick at once.
impl StepHost for RunShared {
    fn run_id(&self) -> &str {
        &self.run_id
    }

    fn workflow_name(&self) -> &str {
        &self.workflow.name
    }

    fn step_name(&self, step: usize) -> &str {
        self.workflow.steps[step].name()
    }

    fn knows_event(&self, ty: EventType) -> bool {
        self.workflow.registry.get(ty.name()) == Some(&ty)
    }

    fn send(&self, event: AnyEvent, target: Option<&str>, from: InvocationId) -> Result<(), SendError> {
        RunShared::send(self, event, target, Some(from))
    }

    /// `write_event_to_stream` from a step.
    fn write_to_stream(&self, invocation: InvocationId, event: AnyEvent) {
        self.step_effect(invocation, Effect::Publish(event));
    }

    fn poll_room(&self, cx: &mut TaskContext<'_>) -> Poll<()> {
        RunShared::poll_room(self, cx)
    }

    fn state(&self) -> &StateStore {
        RunShared::state(self)
    }

    /// What `ctx.retry_info()` reports for `invocation`.
    fn retry_info(&self, invocation: InvocationId) -> Option<RetryInfo> {
        let now = self.now();
        lock(&self.core).state.retry_info(invocation, now)
    }

    /// Suspends `invocation` until an event matching `spec` arrives; returns
    /// the waiter's key and the receiver the answer arrives on.
    fn add_waiter(&self, invocation: InvocationId, spec: WaiterSpec) -> Result<(u64, WaitAnswer), WaitError> {
        let now = self.now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut guard = lock(&self.core);
        let core = &mut *guard;
        // The invocation's deferred effects are applied before it waits: what
        // it waits for may depend on them.
        if let Some(rejected) = spec
            .publish
            .as_ref()
            .and_then(|event| too_deep(&self.run_id, || core.step_name(invocation), event))
        {
            core.poisoned.mark(invocation, StepError::new(rejected.clone()));
            drop(guard);
            if let Some(event) = spec.publish {
                crate::core::depth::dispose(event);
            }
            return Err(WaitError::EventRejected(rejected));
        }
        let effects = core.deferred.remove(&invocation).unwrap_or_default();
        if let Err(error) = core.record(|recorder, state| recorder.waiter(invocation, &spec, &effects, state, now)) {
            // Not journaled, not applied; the invocation fails when it ends.
            let rejected = not_serializable(
                &self.run_id,
                core.step_name(invocation),
                effect_events(&effects).chain(spec.publish.as_ref()),
                &error,
            );
            core.poisoned.mark(invocation, StepError::new(rejected.clone()));
            return Err(WaitError::EventRejected(rejected));
        }
        let key = core
            .state
            .add_waiter(invocation, spec, effects, now, &mut core.commands);
        if let Ok(key) = key {
            core.waiters.insert(key, tx);
        }
        self.execute(core, now);
        key.map(|key| (key, rx))
    }

    /// Withdraws waiter `key`, whose `wait_for_event` was dropped unanswered.
    fn withdraw_waiter(&self, key: u64) {
        let now = self.now();
        let mut guard = lock(&self.core);
        let core = &mut *guard;
        core.waiters.remove(&key);
        core.state.withdraw_waiter(key, &mut core.commands);
        self.execute(core, now);
    }

    /// Offers `event` to a collect buffer of the invocation's step.
    fn collect(
        &self,
        invocation: InvocationId,
        buffer: &str,
        event: AnyEvent,
        expect: &crate::core::context::collect::Expectation<'_>,
    ) -> Option<Vec<AnyEvent>> {
        if expect.is_empty() {
            return Some(Vec::new());
        }
        let now = self.now();
        let mut guard = lock(&self.core);
        if guard.state.is_finished() {
            return None;
        }
        // A re-run after a resume: calls its attempt made before get the same
        // results, without offering their events a second time.
        if let Some(earlier) = guard.state.collected_before(invocation, buffer) {
            return earlier;
        }
        if let Some(rejected) = too_deep(&self.run_id, || guard.step_name(invocation), &event) {
            guard.poisoned.mark(invocation, StepError::new(rejected));
            drop(guard);
            crate::core::depth::dispose(event);
            return None;
        }
        if let Err(error) = guard.record(|recorder, _| recorder.collect(invocation, buffer, &event, expect, now)) {
            // Not journaled, not buffered; the invocation fails when it ends.
            let rejected = not_serializable(&self.run_id, guard.step_name(invocation), [&event], &error);
            guard.poisoned.mark(invocation, StepError::new(rejected));
            return None;
        }
        let set = guard.state.collect(invocation, buffer, event, expect);
        self.maybe_snapshot(&mut guard, now);
        if let Some(recorder) = guard.recorder.as_mut() {
            recorder.commit();
        }
        set
    }
}
impl RunShared {
    /// Sends an event into the run from a step or from outside.
    pub(crate) fn send(
        &self,
        event: AnyEvent,
        target: Option<&str>,
        origin: Option<InvocationId>,
    ) -> Result<(), SendError> {
        let target = match target {
            None => None,
            Some(name) => Some(self.check_target(name, &event)?),
        };
        if origin.is_none() {
            if let Some(rejected) = too_deep(&self.run_id, || None, &event) {
                crate::core::depth::dispose(event);
                return Err(SendError::Rejected(rejected));
            }
        }
        let now = self.now();
        let mut guard = lock(&self.core);
        if guard.state.is_finished() {
            return Err(SendError::RunEnded {
                run_id: self.run_id.to_string(),
                event: event.name(),
            });
        }
        if let Some(origin) = origin {
            drop(guard);
            self.step_effect(origin, Effect::Send { event, target });
            return Ok(());
        }
        let core = &mut *guard;
        let tick = Tick::AddEvent { event, target, origin };
        if let Err(error) = core.record_tick(&tick, now) {
            let Tick::AddEvent { event, .. } = &tick else {
                unreachable!("the tick was built as AddEvent above")
            };
            return Err(SendError::Rejected(not_serializable(
                &self.run_id,
                None,
                [event],
                &error,
            )));
        }
        core.state.reduce(tick, now, &mut core.commands);
        self.execute(core, now);
        Ok(())
    }

    pub(super) fn check_target(&self, name: &str, event: &AnyEvent) -> Result<StepIdx, SendError> {
        let Some(index) = self.workflow.step_index(name) else {
            return Err(SendError::UnknownStep {
                workflow: self.workflow.name.clone(),
                step: name.to_owned(),
                event: event.name(),
            });
        };
        let step = &self.workflow.steps[index];
        if !step.accepts(&event.event_type()) {
            return Err(SendError::NotAccepted {
                step: name.to_owned(),
                event: event.name(),
                accepted: step.accepts.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
            });
        }
        Ok(index)
    }
}
