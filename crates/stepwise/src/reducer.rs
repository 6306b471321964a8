//! The reducer: the only code that changes a run's state.
//!
//! `RunState::reduce` takes one [`Tick`] (something that happened) and appends
//! [`Command`]s (what the driver must do). It performs no I/O and reads no
//! clock, so feeding the same ticks to a fresh state rebuilds the same state.
//! All work is O(1) amortised per tick: state is mutated in place, never copied.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::builtin::{
    StepPhase, StepStateChanged, UnhandledEvent, WorkflowCancelled, WorkflowFailed, WorkflowTimedOut,
};
use crate::collect::{CollectBuffer, Expectation};
use crate::error::StepError;
use crate::event::{AnyEvent, EventKind};
use crate::step::Emitted;
use crate::workflow::WorkflowCore;

/// Index of a step in its workflow's definition order.
pub(crate) type StepIdx = usize;

/// Identifies one step invocation within a run. Allocated deterministically
/// (slot plus generation), so a replay hands out the same ids.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct InvocationId {
    slot: u32,
    generation: u32,
}

/// Something that happened to a run.
#[derive(Debug)]
pub(crate) enum Tick {
    /// An event entered the run: from the start, a step's `send_event`, or outside.
    AddEvent { event: AnyEvent, target: Option<StepIdx> },
    /// A step invocation finished.
    StepDone {
        invocation: InvocationId,
        result: Result<Emitted, StepError>,
    },
    /// A step asked to publish an event to the stream.
    Publish(AnyEvent),
    /// The workflow timeout fired.
    Timeout,
    /// The caller cancelled the run.
    Cancel,
}

/// What the driver must do after a tick.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start a step invocation on a worker slot.
    StartWorker(StartWorker),
    /// Append an event to the run's stream.
    Publish(AnyEvent),
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

/// One in-flight step invocation.
#[derive(Debug)]
struct InFlight {
    step: StepIdx,
    worker: u32,
    /// Kept so a snapshot or a retry can re-run the invocation.
    event: AnyEvent,
    attempts: u32,
}

/// Per-step queue and worker slots.
#[derive(Debug, Default)]
struct StepSlot {
    queue: VecDeque<AnyEvent>,
    /// Bit set of busy worker ids (worker ids are the smallest free integers).
    busy: Vec<u64>,
    active: usize,
}

impl StepSlot {
    fn claim_worker(&mut self) -> u32 {
        let word = match self.busy.iter().position(|w| *w != u64::MAX) {
            Some(i) => i,
            None => {
                self.busy.push(0);
                self.busy.len() - 1
            }
        };
        let bit = self.busy[word].trailing_ones();
        self.busy[word] |= 1 << bit;
        self.active += 1;
        (word as u32) * 64 + bit
    }

    fn release_worker(&mut self, worker: u32) {
        let (word, bit) = ((worker / 64) as usize, worker % 64);
        if let Some(w) = self.busy.get_mut(word) {
            if *w & (1 << bit) != 0 {
                *w &= !(1 << bit);
                self.active -= 1;
            }
        }
    }
}

/// Slab of in-flight invocations with generation-checked ids.
#[derive(Debug, Default)]
struct Invocations {
    slots: Vec<(u32, Option<InFlight>)>,
    free: Vec<u32>,
}

impl Invocations {
    fn insert(&mut self, entry: InFlight) -> InvocationId {
        match self.free.pop() {
            Some(slot) => {
                let cell = &mut self.slots[slot as usize];
                cell.0 = cell.0.wrapping_add(1);
                cell.1 = Some(entry);
                InvocationId {
                    slot,
                    generation: cell.0,
                }
            }
            None => {
                self.slots.push((0, Some(entry)));
                InvocationId {
                    slot: (self.slots.len() - 1) as u32,
                    generation: 0,
                }
            }
        }
    }

    fn remove(&mut self, id: InvocationId) -> Option<InFlight> {
        let cell = self.slots.get_mut(id.slot as usize)?;
        if cell.0 != id.generation || cell.1.is_none() {
            return None;
        }
        self.free.push(id.slot);
        cell.1.take()
    }

    fn get(&self, id: InvocationId) -> Option<&InFlight> {
        let cell = self.slots.get(id.slot as usize)?;
        (cell.0 == id.generation).then_some(cell.1.as_ref()).flatten()
    }

    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = &InFlight> {
        self.slots.iter().filter_map(|(_, e)| e.as_ref())
    }
}

/// The state of one run.
pub(crate) struct RunState {
    workflow: Arc<WorkflowCore>,
    steps: Vec<StepSlot>,
    invocations: Invocations,
    buffers: HashMap<(StepIdx, String), CollectBuffer>,
    finished: bool,
    internal_events: bool,
}

impl RunState {
    pub(crate) fn new(workflow: Arc<WorkflowCore>, internal_events: bool) -> Self {
        let steps = workflow.steps.iter().map(|_| StepSlot::default()).collect();
        RunState {
            workflow,
            steps,
            invocations: Invocations::default(),
            buffers: HashMap::new(),
            finished: false,
            internal_events,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Applies one tick. Ticks after the run finished are ignored.
    pub(crate) fn reduce(&mut self, tick: Tick, out: &mut Vec<Command>) {
        if self.finished {
            return;
        }
        match tick {
            Tick::AddEvent { event, target } => self.add_event(event, target, out),
            Tick::StepDone { invocation, result } => self.step_done(invocation, result, out),
            Tick::Publish(event) => out.push(Command::Publish(event)),
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
    }

    /// Offers `event` to the collect buffer `buffer` of the invocation's step.
    /// Returns the full set to exactly one caller.
    pub(crate) fn collect(
        &mut self,
        invocation: InvocationId,
        buffer: &str,
        event: AnyEvent,
        expect: &Expectation<'_>,
    ) -> Option<Vec<AnyEvent>> {
        if expect.is_empty() {
            return Some(Vec::new());
        }
        let step = self.invocations.get(invocation)?.step;
        let key = (step, buffer.to_owned());
        let buf = self.buffers.entry(key).or_default();
        let set = buf.offer(event, expect);
        if set.is_some() && buf.is_empty() {
            self.buffers.remove(&(step, buffer.to_owned()));
        }
        set
    }

    /// Names of steps with at least one running invocation, in definition order.
    pub(crate) fn active_steps(&self) -> Vec<String> {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.active > 0)
            .map(|(i, _)| self.workflow.steps[i].name().to_owned())
            .collect()
    }

    fn add_event(&mut self, event: AnyEvent, target: Option<StepIdx>, out: &mut Vec<Command>) {
        let ty = event.event_type();
        if ty == self.workflow.stop {
            out.push(Command::Publish(event.clone()));
            self.finish(Outcome::Completed(event), out);
            return;
        }
        if ty.kind() == EventKind::InputRequired {
            out.push(Command::Publish(event.clone()));
        }
        let workflow = Arc::clone(&self.workflow);
        let acceptors = workflow.acceptors(&ty);
        match target {
            Some(step) if acceptors.contains(&step) => self.deliver(step, event, out),
            Some(step) => self.unhandled(&event, Some(step), out),
            None => match acceptors {
                [] => self.unhandled(&event, None, out),
                [only] => self.deliver(*only, event, out),
                [rest @ .., last] => {
                    for step in rest {
                        self.deliver(*step, event.clone(), out);
                    }
                    self.deliver(*last, event, out);
                }
            },
        }
    }

    fn unhandled(&mut self, event: &AnyEvent, target: Option<StepIdx>, out: &mut Vec<Command>) {
        if event.kind() == EventKind::InputRequired {
            return; // answered from outside; publishing it was the point
        }
        out.push(Command::Publish(AnyEvent::new(UnhandledEvent {
            event: event.name().to_owned(),
            target_step: target.map(|s| self.workflow.steps[s].name().to_owned()),
        })));
    }

    /// Starts `event` on a free worker of `step`, or queues it behind earlier arrivals.
    fn deliver(&mut self, step: StepIdx, event: AnyEvent, out: &mut Vec<Command>) {
        let slot = &mut self.steps[step];
        if slot.queue.is_empty() && slot.active < self.workflow.steps[step].config.num_workers {
            self.start(step, event, out);
        } else {
            if self.internal_events {
                out.push(self.phase_event(step, StepPhase::Queued, None, &event, None, None));
            }
            self.steps[step].queue.push_back(event);
        }
    }

    fn start(&mut self, step: StepIdx, event: AnyEvent, out: &mut Vec<Command>) {
        let worker = self.steps[step].claim_worker();
        let invocation = self.invocations.insert(InFlight {
            step,
            worker,
            event: event.clone(),
            attempts: 1,
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

    fn step_done(&mut self, invocation: InvocationId, result: Result<Emitted, StepError>, out: &mut Vec<Command>) {
        let Some(done) = self.invocations.remove(invocation) else {
            return; // stale: the invocation was already accounted for
        };
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
                    self.add_event(event, None, out);
                    if self.finished {
                        return;
                    }
                }
                self.drain_queue(done.step, out);
            }
            Err(error) => {
                out.push(Command::Publish(AnyEvent::new(WorkflowFailed {
                    step: self.workflow.steps[done.step].name().to_owned(),
                    error: error.to_string(),
                    attempts: done.attempts,
                })));
                self.finish(
                    Outcome::Failed {
                        step: done.step,
                        attempts: done.attempts,
                        error,
                    },
                    out,
                );
            }
        }
    }

    fn drain_queue(&mut self, step: StepIdx, out: &mut Vec<Command>) {
        let limit = self.workflow.steps[step].config.num_workers;
        while self.steps[step].active < limit {
            match self.steps[step].queue.pop_front() {
                Some(event) => self.start(step, event, out),
                None => break,
            }
        }
    }

    fn finish(&mut self, outcome: Outcome, out: &mut Vec<Command>) {
        self.finished = true;
        out.push(Command::Finish(outcome));
    }

    fn phase_event(
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

    /// Number of invocations currently running (all steps).
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.invocations.iter().count()
    }

    /// Total queued events (all steps).
    #[cfg(test)]
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
        RunState::new(workflow.core, false)
    }

    fn reduce(state: &mut RunState, tick: Tick) -> Vec<Command> {
        let mut out = Vec::new();
        state.reduce(tick, &mut out);
        out
    }

    fn add(state: &mut RunState, event: impl crate::Event) -> Vec<Command> {
        let event = AnyEvent::new(event);
        reduce(state, Tick::AddEvent { event, target: None })
    }

    fn done(state: &mut RunState, invocation: InvocationId) -> Vec<Command> {
        let result = Ok(Emitted::default());
        reduce(state, Tick::StepDone { invocation, result })
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
