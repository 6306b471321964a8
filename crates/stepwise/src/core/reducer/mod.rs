//! The reducer: the only code that changes a run's state.
//!
//! `RunState::reduce` takes one [`Tick`] (something that happened) at time
//! `now` (from the run's one clock, passed in) and appends [`Command`]s (what
//! the driver must do). It performs no I/O and reads no clock, so feeding the
//! same ticks with the same times to a fresh state rebuilds the same state.
//! All work is O(1) amortised per tick: state is mutated in place, never copied.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::core::builtin::{
    StepFailed, StepPhase, StepStateChanged, UnhandledEvent, WorkflowCancelled, WorkflowFailed, WorkflowIdle,
    WorkflowTimedOut,
};
use crate::core::context::collect::{CollectBuffer, Expectation};
use crate::core::define::step::Emitted;
use crate::core::define::workflow::WorkflowCore;
use crate::core::error::{StepError, WaitError};
use crate::core::event::{AnyEvent, EventKind, EventType};
use crate::core::retry::retry_seed;

pub(crate) use crate::core::context::wait::WaiterSpec;
pub(crate) use crate::core::ids::{InvocationId, RetryInfo, StepIdx};

/// Recovery counts per error handler, carried by every event derived from a
/// handler's output. `None` (the common case) costs nothing.
pub(crate) type Lineage = Option<Arc<Vec<(StepIdx, u32)>>>;

fn recoveries(lineage: &Lineage, handler: StepIdx) -> u32 {
    lineage
        .as_ref()
        .and_then(|l| l.iter().find(|(h, _)| *h == handler))
        .map_or(0, |(_, n)| *n)
}

fn with_recovery(lineage: &Lineage, handler: StepIdx) -> Lineage {
    let mut counts: Vec<(StepIdx, u32)> = lineage.as_deref().cloned().unwrap_or_default();
    match counts.iter_mut().find(|(h, _)| *h == handler) {
        Some((_, n)) => *n += 1,
        None => counts.push((handler, 1)),
    }
    Some(Arc::new(counts))
}

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
    },
    /// A step asked to publish an event to the stream.
    Publish(AnyEvent),
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

/// Where an event stands in its retry history.
#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    /// 1 for the first try.
    pub(crate) number: u32,
    pub(crate) first_at: Duration,
    pub(crate) last_error: Option<StepError>,
    pub(crate) last_failed_at: Option<Duration>,
    /// How many of this attempt's sends and stream writes were already
    /// applied to the run while it was still running (at a `wait_for_event`
    /// in a journaled run, at once in an unjournaled one). When the attempt
    /// runs again after a resume, that many of its first effects are skipped.
    pub(crate) applied: u32,
    /// The waits of this attempt that were answered: (which wait of the step
    /// body's run it was, waiter id, answer). When the attempt runs again
    /// after a resume, the same waits get the same answers at once instead of
    /// waiting for new ones.
    pub(crate) answers: Vec<(u32, String, AnyEvent)>,
    /// Collect calls this attempt made (that reached the reducer).
    pub(crate) collected: u32,
    /// The full sets those calls returned: (call number, buffer, set). A
    /// failed attempt gives them back to their buffers; a re-run after a
    /// resume gets the same results for its first `collected` calls.
    pub(crate) sets: Vec<(u32, String, Vec<AnyEvent>)>,
}

/// An event waiting for a worker of its step.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) event: AnyEvent,
    /// `None` for a first try.
    pub(crate) attempt: Option<Box<Attempt>>,
    pub(crate) lineage: Lineage,
}

impl Queued {
    fn fresh(event: AnyEvent, lineage: Lineage) -> Self {
        Queued {
            event,
            attempt: None,
            lineage,
        }
    }
}

/// One in-flight step invocation.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) step: StepIdx,
    pub(crate) worker: u32,
    /// Kept so a retry (or a snapshot) can re-run the invocation.
    pub(crate) event: AnyEvent,
    pub(crate) attempt: Attempt,
    pub(crate) lineage: Lineage,
    /// Collect calls this run of the step body has made so far (not part of
    /// the run's state: a re-run after a resume starts from 0 and is served
    /// its attempt's earlier results first).
    pub(crate) served: u32,
    /// Sends and stream writes this run of the step body has issued so far
    /// (not part of the run's state, like `served`).
    pub(crate) issued: u32,
    /// `wait_for_event` calls this run of the step body has made so far (part
    /// of the state: the reducer matches remembered answers by it).
    pub(crate) waits: u32,
    /// Open waiters of this invocation.
    pub(crate) waiting: u32,
}

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
fn wait_matches(
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

/// A failed event waiting for its retry timer.
#[derive(Debug)]
pub(crate) struct PendingRetry {
    pub(crate) step: StepIdx,
    pub(crate) queued: Queued,
    pub(crate) due: Duration,
}

/// Per-step queue and worker slots.
#[derive(Debug, Default)]
pub(crate) struct StepSlot {
    pub(crate) queue: VecDeque<Queued>,
    /// Bit set of busy worker ids (worker ids are the smallest free integers).
    pub(crate) busy: Vec<u64>,
    pub(crate) active: usize,
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
pub(crate) struct Invocations {
    pub(crate) slots: Vec<(u32, Option<InFlight>)>,
    pub(crate) free: Vec<u32>,
    pub(crate) len: usize,
}

impl Invocations {
    fn insert(&mut self, entry: InFlight) -> InvocationId {
        self.len += 1;
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
                // Grow 1, 2, 4, … rather than Vec's default first step of 4:
                // most runs never have more than one invocation in flight, and
                // 100,000 concurrent runs feel every slot (an `InFlight` is ~180 B).
                if self.slots.len() == self.slots.capacity() {
                    self.slots.reserve_exact(self.slots.len().max(1));
                }
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
        self.len -= 1;
        cell.1.take()
    }

    fn get(&self, id: InvocationId) -> Option<&InFlight> {
        let cell = self.slots.get(id.slot as usize)?;
        (cell.0 == id.generation).then_some(cell.1.as_ref()).flatten()
    }

    fn get_mut(&mut self, id: InvocationId) -> Option<&mut InFlight> {
        let cell = self.slots.get_mut(id.slot as usize)?;
        (cell.0 == id.generation).then_some(cell.1.as_mut()).flatten()
    }
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
            } => {
                self.apply_effects(invocation, effects, now, out);
                if !self.finished {
                    self.step_done(invocation, result, now, out);
                }
            }
            Tick::Resume => self.rewind(now, out),
            Tick::Publish(event) => out.push(Command::Publish(event)),
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
        let inflight = self.invocations.get_mut(invocation)?;
        let step = inflight.step;
        let call = inflight.attempt.collected;
        inflight.attempt.collected += 1;
        inflight.served += 1;
        let key = (step, buffer.to_owned());
        let buf = self.buffers.entry(key).or_default();
        let set = buf.offer(event, expect)?;
        if buf.is_empty() {
            self.buffers.remove(&(step, buffer.to_owned()));
        }
        // Kept with the attempt: given back if it fails, handed again to its
        // re-run if the run is resumed before it ends.
        if let Some(inflight) = self.invocations.get_mut(invocation) {
            inflight.attempt.sets.push((call, buffer.to_owned(), set.clone()));
        }
        Some(set)
    }

    /// For a step body that runs again after a resume: the result of its next
    /// collect call, if its attempt made that call before (then the call must
    /// not offer its event again). `None` when the call is a new one.
    pub(crate) fn collected_before(&mut self, invocation: InvocationId, buffer: &str) -> Option<Option<Vec<AnyEvent>>> {
        let inflight = self.invocations.get_mut(invocation)?;
        if inflight.served >= inflight.attempt.collected {
            return None;
        }
        let call = inflight.served;
        inflight.served += 1;
        Some(
            inflight
                .attempt
                .sets
                .iter()
                .find(|(n, b, _)| *n == call && b == buffer)
                .map(|(_, _, set)| set.clone()),
        )
    }

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

    /// Counts `n` more effects of `invocation` as applied.
    pub(crate) fn mark_applied(&mut self, invocation: InvocationId, n: u32) {
        if let Some(inflight) = self.invocations.get_mut(invocation) {
            inflight.attempt.applied += n;
        }
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

    /// Names of steps with at least one running invocation, in definition order.
    pub(crate) fn active_steps(&self) -> Vec<String> {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.active > 0)
            .map(|(i, _)| self.workflow.steps[i].name().to_owned())
            .collect()
    }

    fn add_event(
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

    /// Hands `event` to every waiter it satisfies; returns the waiting steps,
    /// which do not also receive it through normal routing.
    fn resolve_waiters(&mut self, event: &AnyEvent, out: &mut Vec<Command>) -> Vec<StepIdx> {
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
    fn hold_for_recovered(&mut self, event: &AnyEvent, answered: &mut Vec<StepIdx>) {
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

    fn waiter_timed_out(&mut self, key: u64, out: &mut Vec<Command>) {
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

    fn waiter_closed(&mut self, invocation: InvocationId) {
        if let Some(inflight) = self.invocations.get_mut(invocation) {
            inflight.waiting = inflight.waiting.saturating_sub(1);
            if inflight.waiting == 0 {
                self.waiting_invocations -= 1;
            }
        }
    }

    /// Publishes `WorkflowIdle` when all remaining work waits for outside input:
    /// every in-flight invocation is suspended in `wait_for_event` and no retry
    /// is due. Queued events do not count as work: an event queues only while
    /// its step has no free worker, and those workers are all waiting, so the
    /// queue cannot move without outside input either.
    fn check_idle(&mut self, out: &mut Vec<Command>) {
        let idle = !self.finished && self.retries.is_empty() && self.invocations.len == self.waiting_invocations;
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

    fn unhandled(&mut self, event: &AnyEvent, target: Option<StepIdx>, out: &mut Vec<Command>) {
        if event.kind() == EventKind::InputRequired {
            return; // answered from outside; publishing it was the point
        }
        out.push(Command::Publish(AnyEvent::new(UnhandledEvent {
            event: event.name().to_owned(),
            target_step: target.map(|s| self.workflow.steps[s].name().to_owned()),
        })));
    }

    /// Starts `queued` on a free worker of `step`, or queues it behind earlier arrivals.
    fn deliver(&mut self, step: StepIdx, queued: Queued, now: Duration, out: &mut Vec<Command>) {
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

    fn start(&mut self, step: StepIdx, queued: Queued, now: Duration, out: &mut Vec<Command>) {
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

    fn step_done(
        &mut self,
        invocation: InvocationId,
        result: Result<Emitted, StepError>,
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
                self.failed(done, error, now, out);
                if self.finished {
                    return;
                }
            }
        }
        self.drain_queue(step, now, out);
    }

    /// A step attempt failed: give back its collect sets, then retry, hand the
    /// failure to an error handler, or fail the run.
    fn failed(&mut self, mut done: InFlight, error: StepError, now: Duration, out: &mut Vec<Command>) {
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
                    input: Some(done.event),
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
        })));
        self.finish(Outcome::Failed { step, attempts, error }, out);
    }

    /// Applies the sends and stream writes a finished invocation deferred.
    fn apply_effects(&mut self, invocation: InvocationId, effects: Vec<Effect>, now: Duration, out: &mut Vec<Command>) {
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

    /// Starts a new session: every in-flight invocation goes back to the head
    /// of its step's queue (same event, attempt and lineage) and its waiters
    /// are dropped (the re-run registers them again, without publishing their
    /// events a second time); then queues are drained. The attempt keeps what
    /// its run had done — sends applied, waits answered, collect results — so
    /// that the re-run does not do it twice.
    fn rewind(&mut self, now: Duration, out: &mut Vec<Command>) {
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

    fn drain_queue(&mut self, step: StepIdx, now: Duration, out: &mut Vec<Command>) {
        let limit = self.workflow.steps[step].config.num_workers;
        while self.steps[step].active < limit {
            match self.steps[step].queue.pop_front() {
                Some(queued) => self.start(step, queued, now, out),
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
