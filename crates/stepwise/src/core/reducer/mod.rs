//! The reducer: the only code that changes a run's state.
//!
//! `RunState::reduce` takes one [`Tick`] (something that happened) at time
//! `now` (from the run's one clock, passed in) and appends [`Command`]s (what
//! the driver must do). It performs no I/O and reads no clock, so feeding the
//! same ticks with the same times to a fresh state rebuilds the same state.
//! All work is O(1) amortised per tick: state is mutated in place, never copied.
//!
//! One `impl RunState` per concern, in sibling files: [`routing`] (where
//! events go, what a finished step causes), [`fan_in`] (collect buffers),
//! [`waiters`], [`failure`] (retries, error handlers), [`resume`] (rewinding
//! after a restart); [`slots`] holds the bookkeeping types. The state's
//! snapshot form is in `codec::snapshot`.

mod failure;
mod fan_in;
mod resume;
mod routing;
mod slots;
mod waiters;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::core::builtin::{WorkflowCancelled, WorkflowTimedOut};
use crate::core::context::collect::CollectBuffer;
use crate::core::define::step::Emitted;
use crate::core::define::workflow::WorkflowCore;
use crate::core::error::{StepError, WaitError};
use crate::core::event::AnyEvent;

pub(crate) use crate::core::context::wait::WaiterSpec;
pub(crate) use crate::core::ids::{InvocationId, RetryInfo, StepIdx};
pub(crate) use slots::{Attempt, InFlight, Invocations, Lineage, PendingRetry, Queued, StepSlot};
pub(crate) use waiters::{Recovered, Waiter};

/// Something that happened to a run.
#[derive(Debug)]
pub(crate) enum Tick {
    /// An event entered the run: from the start, a step's `send_event`
    /// (`origin` is the sending invocation), or from outside.
    AddEvent {
        event: AnyEvent,
        target: Option<StepIdx>,
        origin: Option<InvocationId>,
    },
    /// A step invocation finished. `effects` are its sends and stream writes,
    /// when the run defers them to completion (journaled runs do, so a crash
    /// never applies half a step).
    StepDone {
        invocation: InvocationId,
        effects: Vec<Effect>,
        result: Result<Emitted, StepError>,
        /// For a failure: when it happened, in wall-clock ms since the Unix
        /// epoch, read by the runtime (the reducer reads no clock) and
        /// journaled, so a replay rebuilds the same `StepFailed`.
        failed_at: u64,
    },
    /// A step asked to publish an event to the stream.
    Publish(AnyEvent),
    /// An in-flight invocation's effects so far, applied before it ends: a
    /// journaled run's stream write reaches readers at once, together with
    /// the sends the step made before it (the effects are counted as
    /// applied, so a re-run after a resume does not repeat them).
    Effects {
        invocation: InvocationId,
        effects: Vec<Effect>,
    },
    /// A timer armed by [`Command::Schedule`] fired.
    Fire(Timer),
    /// The workflow timeout fired.
    Timeout,
    /// The caller cancelled the run.
    Cancel,
    /// The run resumes in a new session: in-flight invocations are re-queued
    /// (their collect sets given back, their waiters dropped) to run again.
    Resume,
}

/// A side effect a step invocation asked for through its context.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    /// `send_event` / `send_event_to`.
    Send { event: AnyEvent, target: Option<StepIdx> },
    /// `write_event_to_stream`.
    Publish(AnyEvent),
}

/// A timer the reducer asked for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// A failed step's retry is due.
    Retry(u64),
    /// A waiter's timeout.
    WaiterTimeout(u64),
}

/// What the driver must do after a tick.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start a step invocation on a worker slot.
    StartWorker(StartWorker),
    /// Append an event to the run's stream.
    Publish(AnyEvent),
    /// Fire `timer` at `at` (time since the run started).
    Schedule { at: Duration, timer: Timer },
    /// Wake the step suspended on waiter `key`.
    ResolveWaiter {
        key: u64,
        result: Result<AnyEvent, WaitError>,
    },
    /// End the run; in-flight invocations are cancelled.
    Finish(Outcome),
}

#[derive(Debug)]
pub(crate) struct StartWorker {
    pub(crate) invocation: InvocationId,
    pub(crate) step: StepIdx,
    pub(crate) worker: u32,
    pub(crate) event: AnyEvent,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Completed(AnyEvent),
    Failed {
        step: StepIdx,
        attempts: u32,
        error: StepError,
    },
    TimedOut {
        active_steps: Vec<String>,
    },
    Cancelled,
}

/// The state of one run.
pub(crate) struct RunState {
    pub(crate) workflow: Arc<WorkflowCore>,
    pub(crate) run_id: Arc<str>,
    pub(crate) steps: Vec<StepSlot>,
    pub(crate) invocations: Invocations,
    pub(crate) buffers: HashMap<(StepIdx, String), CollectBuffer>,
    /// Failed events waiting for their retry timer, by timer id.
    pub(crate) retries: BTreeMap<u64, PendingRetry>,
    /// Waiters whose invocation was re-queued by a resume: when the re-run
    /// registers the same waiter again, its event is not published twice, and
    /// an answer that came in meanwhile is handed to it at once.
    pub(crate) recovered_waiters: Vec<Recovered>,
    pub(crate) waiters: Vec<Waiter>,
    pub(crate) next_timer: u64,
    /// Invocations with at least one open waiter.
    pub(crate) waiting_invocations: usize,
    pub(crate) idle: bool,
    pub(crate) finished: bool,
    pub(crate) internal_events: bool,
}

impl RunState {
    pub(crate) fn new(workflow: Arc<WorkflowCore>, run_id: Arc<str>, internal_events: bool) -> Self {
        let steps = workflow.steps.iter().map(|_| StepSlot::default()).collect();
        RunState {
            workflow,
            run_id,
            steps,
            invocations: Invocations::default(),
            buffers: HashMap::new(),
            retries: BTreeMap::new(),
            recovered_waiters: Vec::new(),
            waiters: Vec::new(),
            next_timer: 0,
            waiting_invocations: 0,
            idle: false,
            finished: false,
            internal_events,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    pub(crate) fn workflow(&self) -> &WorkflowCore {
        &self.workflow
    }

    /// The step an in-flight invocation belongs to.
    pub(crate) fn invocation_step(&self, invocation: InvocationId) -> Option<StepIdx> {
        self.invocations.get(invocation).map(|f| f.step)
    }

    /// Applies one tick at `now`. Ticks after the run finished are ignored.
    pub(crate) fn reduce(&mut self, tick: Tick, now: Duration, out: &mut Vec<Command>) {
        if self.finished {
            return;
        }
        match tick {
            Tick::AddEvent { event, target, origin } => {
                let lineage = origin
                    .and_then(|o| self.invocations.get(o))
                    .and_then(|f| f.lineage.clone());
                self.add_event(event, target, lineage, now, out);
            }
            Tick::StepDone {
                invocation,
                effects,
                result,
                failed_at,
            } => {
                self.apply_effects(invocation, effects, now, out);
                if !self.finished {
                    self.step_done(invocation, result, failed_at, now, out);
                }
            }
            Tick::Resume => self.rewind(now, out),
            Tick::Publish(event) => out.push(Command::Publish(event)),
            Tick::Effects { invocation, effects } => self.apply_early(invocation, effects, now, out),
            Tick::Fire(Timer::Retry(id)) => {
                if let Some(retry) = self.retries.remove(&id) {
                    self.deliver(retry.step, retry.queued, now, out);
                }
            }
            Tick::Fire(Timer::WaiterTimeout(key)) => self.waiter_timed_out(key, out),
            Tick::Timeout => {
                let active_steps = self.active_steps();
                let timeout_secs = self.workflow.timeout.map_or(0.0, |t| t.as_secs_f64());
                out.push(Command::Publish(AnyEvent::new(WorkflowTimedOut {
                    timeout_secs,
                    active_steps: active_steps.clone(),
                })));
                self.finish(Outcome::TimedOut { active_steps }, out);
            }
            Tick::Cancel => {
                out.push(Command::Publish(AnyEvent::new(WorkflowCancelled {})));
                self.finish(Outcome::Cancelled, out);
            }
        }
        self.check_idle(out);
    }

    fn finish(&mut self, outcome: Outcome, out: &mut Vec<Command>) {
        self.finished = true;
        out.push(Command::Finish(outcome));
    }
}

#[cfg(test)]
impl RunState {
    /// Number of invocations currently running (all steps).
    pub(crate) fn running(&self) -> usize {
        self.invocations.len
    }

    /// Total queued events (all steps).
    pub(crate) fn queued(&self) -> usize {
        self.steps.iter().map(|s| s.queue.len()).sum()
    }
}

/// What only the reducer can show: invocation-id bookkeeping, stale ticks and
/// deterministic replay. Everything observable through a run is tested in
/// `tests/`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StartEvent, StepConfig, StopEvent, Workflow};
    use serde::{Deserialize, Serialize};
    use std::collections::VecDeque;

    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Job(u32);
    impl crate::Event for Job {
        const NAME: &'static str = "Job";
    }

    /// `start` → `Job`s → `work` (with `num_workers`) → stop.
    fn state(num_workers: usize) -> RunState {
        let workflow = Workflow::builder("reducer")
            .step("start", |_: StartEvent| async { Vec::<Job>::new() })
            .step_with(StepConfig::new("work").num_workers(num_workers), |_: Job| async {
                StopEvent::default()
            })
            .build()
            .unwrap();
        RunState::new(workflow.core, "run".into(), false)
    }

    fn reduce(state: &mut RunState, tick: Tick) -> Vec<Command> {
        let mut out = Vec::new();
        state.reduce(tick, Duration::ZERO, &mut out);
        out
    }

    fn add(state: &mut RunState, event: impl crate::Event) -> Vec<Command> {
        let event = AnyEvent::new(event);
        reduce(
            state,
            Tick::AddEvent {
                event,
                target: None,
                origin: None,
            },
        )
    }

    fn done(state: &mut RunState, invocation: InvocationId) -> Vec<Command> {
        let result = Ok(Emitted::default());
        reduce(
            state,
            Tick::StepDone {
                invocation,
                effects: Vec::new(),
                result,
                failed_at: 0,
            },
        )
    }

    fn started(commands: &[Command]) -> Vec<InvocationId> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::StartWorker(start) => Some(start.invocation),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_saturated_step_queues_and_a_finished_invocation_starts_the_next() {
        let mut state = state(2);
        let mut running = Vec::new();
        for id in 0..5 {
            running.extend(started(&add(&mut state, Job(id))));
        }
        assert_eq!((running.len(), state.running(), state.queued()), (2, 2, 3));
        let next = started(&done(&mut state, running[0]));
        assert_eq!(next.len(), 1);
        assert_eq!((state.running(), state.queued()), (2, 2));
    }

    #[test]
    fn a_stale_step_done_is_ignored_even_after_its_slot_is_reused() {
        let mut state = state(1);
        let first = started(&add(&mut state, Job(0)));
        assert!(started(&add(&mut state, Job(1))).is_empty(), "queued behind the first");
        let second = started(&done(&mut state, first[0]));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].slot, first[0].slot, "the slot is reused");
        assert_ne!(second[0], first[0], "with a new generation");

        // The first invocation reports again: nothing happens, the second keeps running.
        assert!(done(&mut state, first[0]).is_empty());
        assert_eq!((state.running(), state.queued()), (1, 0));
        assert!(started(&add(&mut state, Job(2))).is_empty(), "the worker is still busy");
        assert_eq!(started(&done(&mut state, second[0])).len(), 1);
    }

    #[test]
    fn nothing_changes_after_the_run_finished() {
        let mut state = state(1);
        let running = started(&add(&mut state, Job(0)));
        let end = add(&mut state, StopEvent::new(1));
        assert!(matches!(
            end.as_slice(),
            [Command::Publish(_), Command::Finish(Outcome::Completed(_))]
        ));
        assert!(state.is_finished());
        assert!(add(&mut state, Job(1)).is_empty());
        assert!(done(&mut state, running[0]).is_empty());
        assert!(reduce(&mut state, Tick::Publish(AnyEvent::new(Job(2)))).is_empty());
        assert!(reduce(&mut state, Tick::Timeout).is_empty());
        assert!(reduce(&mut state, Tick::Cancel).is_empty());
    }

    #[test]
    fn replaying_the_same_ticks_gives_the_same_commands() {
        fn script(state: &mut RunState) -> String {
            let mut log = String::new();
            let mut running = VecDeque::new();
            for id in 0..20 {
                let commands = add(state, Job(id));
                running.extend(started(&commands));
                log += &format!("{commands:?}\n");
                if id % 3 == 0 {
                    let invocation = running.pop_front().unwrap();
                    let commands = done(state, invocation);
                    running.extend(started(&commands));
                    log += &format!("{commands:?}\n");
                }
            }
            log + &format!("{:?}\n", reduce(state, Tick::Cancel))
        }
        let (mut a, mut b) = (state(3), state(3));
        a.internal_events = true;
        b.internal_events = true;
        let first = script(&mut a);
        assert!(first.contains("StepStateChanged") && first.contains("Cancelled"));
        assert_eq!(first, script(&mut b));
    }
}
