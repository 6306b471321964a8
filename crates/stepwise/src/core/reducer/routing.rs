//! Where events go: to the steps that accept them (queued behind busy
//! workers), to the stream when nobody does, and what a finished step's
//! result and effects cause.

use std::sync::Arc;
use std::time::Duration;

use crate::core::builtin::{StepPhase, StepStateChanged, UnhandledEvent};
use crate::core::define::step::Emitted;
use crate::core::error::{StepError, WaitError};
use crate::core::event::{AnyEvent, EventKind};
use crate::core::ids::{InvocationId, StepIdx};

use super::slots::{Attempt, InFlight, Lineage, Queued};
use super::{Command, Effect, Outcome, RunState, StartWorker};

impl RunState {
    /// Names of steps with at least one running invocation, in definition order.
    pub(crate) fn active_steps(&self) -> Vec<String> {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.active > 0)
            .map(|(i, _)| self.workflow.steps[i].name().to_owned())
            .collect()
    }

    pub(super) fn add_event(
        &mut self,
        event: AnyEvent,
        target: Option<StepIdx>,
        lineage: Lineage,
        now: Duration,
        out: &mut Vec<Command>,
    ) {
        let ty = event.event_type();
        if ty == self.workflow.stop {
            out.push(Command::Publish(event.clone()));
            self.finish(Outcome::Completed(event), out);
            return;
        }
        if ty.kind() == EventKind::InputRequired {
            out.push(Command::Publish(event.clone()));
        }
        let mut answered = if self.waiters.is_empty() {
            Vec::new()
        } else {
            self.resolve_waiters(&event, out)
        };
        if !self.recovered_waiters.is_empty() {
            self.hold_for_recovered(&event, &mut answered);
        }
        let workflow = Arc::clone(&self.workflow);
        let acceptors = workflow.acceptors(&ty);
        let routed: Vec<StepIdx> = match target {
            Some(step) if acceptors.contains(&step) => vec![step],
            Some(_) => Vec::new(),
            None => acceptors.iter().copied().filter(|s| !answered.contains(s)).collect(),
        };
        if routed.is_empty() {
            if answered.is_empty() {
                self.unhandled(&event, target, out);
            }
            return;
        }
        let (last, rest) = routed.split_last().unwrap_or((&0, &[]));
        for step in rest {
            self.deliver(*step, Queued::fresh(event.clone(), lineage.clone()), now, out);
        }
        self.deliver(*last, Queued::fresh(event, lineage), now, out);
    }

    pub(super) fn unhandled(&mut self, event: &AnyEvent, target: Option<StepIdx>, out: &mut Vec<Command>) {
        if event.kind() == EventKind::InputRequired {
            return; // answered from outside; publishing it was the point
        }
        let idle = self.is_idle();
        out.push(Command::Publish(AnyEvent::new(UnhandledEvent {
            event: event.name().to_owned(),
            target_step: target.map(|s| self.workflow.steps[s].name().to_owned()),
            idle,
        })));
    }

    /// Starts `queued` on a free worker of `step`, or queues it behind earlier arrivals.
    pub(super) fn deliver(&mut self, step: StepIdx, queued: Queued, now: Duration, out: &mut Vec<Command>) {
        let slot = &mut self.steps[step];
        if slot.queue.is_empty() && slot.active < self.workflow.steps[step].config.num_workers {
            self.start(step, queued, now, out);
        } else {
            if self.internal_events {
                out.push(self.phase_event(step, StepPhase::Queued, None, &queued.event, None, None));
            }
            self.steps[step].queue.push_back(queued);
        }
    }

    pub(super) fn start(&mut self, step: StepIdx, queued: Queued, now: Duration, out: &mut Vec<Command>) {
        let worker = self.steps[step].claim_worker();
        let attempt = match queued.attempt {
            Some(attempt) => *attempt,
            None => Attempt {
                number: 1,
                first_at: now,
                last_error: None,
                last_failed_at: None,
                applied: 0,
                answers: Vec::new(),
                collected: 0,
                sets: Vec::new(),
            },
        };
        let event = queued.event;
        let invocation = self.invocations.insert(InFlight {
            step,
            worker,
            event: event.clone(),
            attempt,
            lineage: queued.lineage,
            served: 0,
            issued: 0,
            waits: 0,
            waiting: 0,
        });
        if self.internal_events {
            out.push(self.phase_event(step, StepPhase::Running, Some(worker), &event, None, None));
        }
        out.push(Command::StartWorker(StartWorker {
            invocation,
            step,
            worker,
            event,
        }));
    }

    pub(super) fn step_done(
        &mut self,
        invocation: InvocationId,
        result: Result<Emitted, StepError>,
        failed_at: u64,
        now: Duration,
        out: &mut Vec<Command>,
    ) {
        let Some(done) = self.invocations.remove(invocation) else {
            return; // stale: the invocation was already accounted for
        };
        let step = done.step;
        if done.waiting > 0 {
            self.waiting_invocations -= 1;
            // Waits still open in tasks the step spawned end with an error.
            self.waiters.retain(|w| {
                if w.invocation != invocation {
                    return true;
                }
                out.push(Command::ResolveWaiter {
                    key: w.key,
                    result: Err(WaitError::RunEnded { event: w.ty.name() }),
                });
                false
            });
        }
        self.steps[done.step].release_worker(done.worker);
        if self.internal_events {
            let phase = self.phase_event(
                done.step,
                StepPhase::Finished,
                Some(done.worker),
                &done.event,
                result.as_ref().ok(),
                result.as_ref().err(),
            );
            out.push(phase);
        }
        match result {
            Ok(emitted) => {
                for event in emitted {
                    self.add_event(event, None, done.lineage.clone(), now, out);
                    if self.finished {
                        return;
                    }
                }
            }
            Err(error) => {
                self.failed(done, error, failed_at, now, out);
                if self.finished {
                    return;
                }
            }
        }
        self.drain_queue(step, now, out);
    }

    /// Applies the sends and stream writes a finished invocation deferred.
    pub(super) fn apply_effects(
        &mut self,
        invocation: InvocationId,
        effects: Vec<Effect>,
        now: Duration,
        out: &mut Vec<Command>,
    ) {
        if effects.is_empty() {
            return;
        }
        let lineage = self.invocations.get(invocation).and_then(|f| f.lineage.clone());
        for effect in effects {
            match effect {
                Effect::Send { event, target } => self.add_event(event, target, lineage.clone(), now, out),
                Effect::Publish(event) => out.push(Command::Publish(event)),
            }
            if self.finished {
                return;
            }
        }
    }

    pub(super) fn drain_queue(&mut self, step: StepIdx, now: Duration, out: &mut Vec<Command>) {
        let limit = self.workflow.steps[step].config.num_workers;
        while self.steps[step].active < limit {
            match self.steps[step].queue.pop_front() {
                Some(queued) => self.start(step, queued, now, out),
                None => break,
            }
        }
    }

    pub(super) fn phase_event(
        &self,
        step: StepIdx,
        phase: StepPhase,
        worker: Option<u32>,
        input: &AnyEvent,
        output: Option<&Emitted>,
        error: Option<&StepError>,
    ) -> Command {
        Command::Publish(AnyEvent::new(StepStateChanged {
            step: self.workflow.steps[step].name().to_owned(),
            phase,
            worker,
            input_event: input.name().to_owned(),
            output_events: output
                .map(|o| o.iter().map(|e| e.name().to_owned()).collect())
                .unwrap_or_default(),
            error: error.map(|e| e.to_string()),
        }))
    }
}
