//! [`RunShared`]: everything one run shares between its driver, its steps and
//! its handle, and the one place its ticks are reduced and their commands
//! carried out.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::task::AtomicWaker;

use crate::core::codec::snapshot::{build_snapshot, Snapshot};
use crate::core::define::step::Emitted;
use crate::core::define::workflow::WorkflowCore;
use crate::core::error::{EventError, StepError, WaitError};
use crate::core::event::AnyEvent;
use crate::core::ids::RunStatus;
use crate::core::reducer::Effect;
use crate::core::reducer::{Command, InvocationId, Outcome, RunState, StartWorker, Tick, Timer};
use crate::core::state::{StateError, StateStore};

use super::end::{ended_status, outcome_result};
use super::error::RunError;
use super::recorder::{EffectPolicy, Recorder, RecorderSource};
use super::stream::Outbox;

/// Sender half of a suspended `wait_for_event`.
pub(super) type WaiterSender = tokio::sync::oneshot::Sender<Result<AnyEvent, WaitError>>;

/// State guarded by the run lock: the reducer state plus work for the driver.
pub(super) struct RunCore {
    pub(super) state: RunState,
    pub(super) commands: Vec<Command>,
    pub(super) starts: Vec<StartWorker>,
    /// Timers to arm: when (since the run started) and which.
    pub(super) timers: Vec<(Duration, Timer)>,
    pub(super) finish: Option<Outcome>,
    pub(super) waiters: HashMap<u64, WaiterSender>,
    /// Set for recorded (journaled) runs.
    pub(super) recorder: Option<Box<dyn Recorder>>,
    /// When step effects take effect: the recorder's choice.
    pub(super) policy: EffectPolicy,
    pub(super) snapshot_due: bool,
    /// Sends and stream writes of in-flight invocations, applied with their
    /// result ([`EffectPolicy::Deferred`] only, so a crash never applies half a step).
    pub(super) deferred: HashMap<InvocationId, Vec<Effect>>,
    /// How the run ended, once it has.
    pub(super) ended: Option<RunStatus>,
    /// Set when the journal gave the run up: the driver ends the run with it.
    /// Boxed, like the outbox's error: rare, and every run pays for its core.
    pub(super) fault: Option<Box<RunError>>,
    /// Invocations that made a wait or collect whose entry could not be
    /// journaled: each ends with this error whatever its body returns.
    pub(super) poisoned: Poisoned,
}

impl RunCore {
    /// Records `tick` in the journal (if any) before it is reduced. On error
    /// nothing was written, and the tick must not be reduced as it is.
    pub(super) fn record_tick(&mut self, tick: &Tick, now: Duration) -> Result<(), serde_json::Error> {
        if let Some(recorder) = self.recorder.as_mut() {
            if recorder.tick(tick, &self.state, now)? {
                self.snapshot_due = true;
            }
        }
        Ok(())
    }

    /// Records a wait or a collect (through `record`) before it is reduced
    /// (errors as for [`RunCore::record_tick`]).
    pub(super) fn record(
        &mut self,
        record: impl FnOnce(&mut dyn Recorder, &RunState) -> Result<bool, serde_json::Error>,
    ) -> Result<(), serde_json::Error> {
        if let Some(recorder) = self.recorder.as_deref_mut() {
            if record(recorder, &self.state)? {
                self.snapshot_due = true;
            }
        }
        Ok(())
    }

    /// The name of `invocation`'s step, if it is in flight.
    pub(super) fn step_name(&self, invocation: InvocationId) -> Option<String> {
        let step = self.state.invocation_step(invocation)?;
        Some(self.state.workflow().steps[step].name().to_owned())
    }
}

/// `event` as an [`EventError::TooDeep`] when it nests deeper than
/// [`MAX_EVENT_DEPTH`](crate::MAX_EVENT_DEPTH).
pub(super) fn too_deep(run_id: &str, step: impl FnOnce() -> Option<String>, event: &AnyEvent) -> Option<EventError> {
    event
        .exceeds_depth(crate::MAX_EVENT_DEPTH)
        .then(|| EventError::TooDeep {
            run_id: run_id.to_owned(),
            step: step(),
            event: event.name().to_owned(),
            limit: crate::MAX_EVENT_DEPTH,
        })
}

/// Which of `events` does not serialise, as an [`EventError`] (`error` is
/// what the journal reported, for when each serialises on its own).
pub(super) fn not_serializable<'a>(
    run_id: &str,
    step: Option<String>,
    events: impl IntoIterator<Item = &'a AnyEvent>,
    error: &serde_json::Error,
) -> EventError {
    let mut scratch = Vec::new();
    let (event, reason) = events
        .into_iter()
        .find_map(|event| {
            scratch.clear();
            event
                .write_json(&mut scratch)
                .err()
                .map(|e| (event.name(), e.to_string()))
        })
        .unwrap_or(("(unknown)", error.to_string()));
    EventError::NotSerializable {
        run_id: run_id.to_owned(),
        step,
        event: event.to_owned(),
        reason,
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub(super) fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn effect_events(effects: &[Effect]) -> impl Iterator<Item = &AnyEvent> {
    effects.iter().map(|e| match e {
        Effect::Send { event, .. } | Effect::Publish(event) => event,
    })
}

/// Attempts that fail when they end because an event of theirs was refused,
/// with the error. Boxed: almost no run has any, and every run pays for its core.
#[derive(Default)]
#[allow(clippy::box_collection)] // 8 bytes in every run instead of a map's 48
pub(super) struct Poisoned(Option<Box<HashMap<InvocationId, StepError>>>);

impl Poisoned {
    /// Marks `invocation`'s attempt as failed; an earlier refusal wins.
    pub(super) fn mark(&mut self, invocation: InvocationId, error: StepError) {
        self.0
            .get_or_insert_with(Default::default)
            .entry(invocation)
            .or_insert(error);
    }

    /// The error `invocation`'s attempt fails with, if it was marked.
    pub(super) fn take(&mut self, invocation: InvocationId) -> Option<StepError> {
        self.0.as_mut()?.remove(&invocation)
    }
}

/// Everything one run shares between its driver, its steps and its handle.
pub(crate) struct RunShared {
    pub(crate) workflow: Arc<WorkflowCore>,
    pub(crate) run_id: Arc<str>,
    /// The run state, made on first use (see [`RunShared::state`]).
    pub(super) state: std::sync::OnceLock<StateStore>,
    /// The run's one clock: every time the reducer sees is measured from here.
    /// Unset while the run waits for its slot under `num_concurrent_runs`
    /// (its clock stands at `clock_at` then: waiting is not running).
    pub(super) started: std::sync::OnceLock<tokio::time::Instant>,
    /// The run's clock when it was launched (zero, or where a resumed run was).
    pub(super) clock_at: Duration,
    pub(super) core: Mutex<RunCore>,
    pub(super) outbox: Mutex<Outbox>,
    /// Set when the driver has starts or a finish to pick up.
    pub(super) pending: AtomicBool,
    pub(super) driver: AtomicWaker,
    /// Where the run's recorder came from, for backpressure (recorded runs only).
    pub(super) recorder: Option<Arc<dyn RecorderSource>>,
    /// This run, for callbacks that must not keep it alive.
    pub(super) this: std::sync::OnceLock<std::sync::Weak<RunShared>>,
    /// The task that times the run out (runs with a timeout only), stopped
    /// when the run ends.
    pub(super) watchdog: std::sync::OnceLock<tokio::task::AbortHandle>,
    /// True while the driver is inside a step body's poll.
    pub(super) stepping: AtomicBool,
    /// Set while a taken stream's buffer is full: the driver polls no steps.
    pub(super) stream_full: AtomicBool,
}

thread_local! {
    /// The run whose driver is polling steps on this thread (address of its
    /// `RunShared`), so steps' context calls can skip waking their own driver.
    pub(super) static POLLING_RUN: Cell<usize> = const { Cell::new(0) };
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the reducer half-updated in a
    // way that matters more than losing the run, so keep going.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RunShared {
    pub(super) fn address(&self) -> usize {
        self as *const RunShared as usize
    }

    /// Reduces `tick` and executes its commands: publishes go out at once
    /// (preserving order), worker starts and the finish go to the driver.
    pub(crate) fn apply(&self, tick: Tick) {
        let now = self.now();
        let mut guard = lock(&self.core);
        let core = &mut *guard;
        if !core.state.is_finished() {
            if let Err(error) = core.record_tick(&tick, now) {
                // Only the first tick (the start event, checked beforehand)
                // and the engine's own ticks come here.
                tracing::error!(run_id = %self.run_id, %error, "journal entry does not serialise");
            }
        }
        core.state.reduce(tick, now, &mut core.commands);
        self.execute(core, now);
    }

    /// A step invocation finished: its deferred effects go with its result.
    pub(super) fn step_done(&self, invocation: InvocationId, result: Result<Emitted, StepError>) {
        let now = self.now();
        let mut guard = lock(&self.core);
        let core = &mut *guard;
        let mut effects = if core.deferred.is_empty() {
            Vec::new()
        } else {
            core.deferred.remove(&invocation).unwrap_or_default()
        };
        let mut result = result;
        if let Ok(emitted) = &result {
            let deep = emitted
                .iter()
                .find_map(|event| too_deep(&self.run_id, || core.step_name(invocation), event));
            if let Some(rejected) = deep {
                // An earlier refusal of this attempt wins.
                core.poisoned.mark(invocation, StepError::new(rejected));
            }
        }
        if let Some(error) = core.poisoned.take(invocation) {
            // Nothing of the attempt is applied (or journaled).
            for effect in effects.drain(..) {
                let (Effect::Send { event, .. } | Effect::Publish(event)) = effect;
                crate::core::depth::dispose(event);
            }
            if let Ok(emitted) = std::mem::replace(&mut result, Err(error)) {
                emitted.into_iter().for_each(crate::core::depth::dispose);
            }
        }
        // Wall clock read for failures only (successes pay nothing).
        let failed_at = if result.is_err() { wall_clock_ms() } else { 0 };
        let mut tick = Tick::StepDone {
            invocation,
            effects,
            result,
            failed_at,
        };
        if !core.state.is_finished() {
            if let Err(error) = core.record_tick(&tick, now) {
                // An event of the step's does not serialise: the attempt
                // fails instead (its retry policy applies), and nothing of
                // it is journaled or applied.
                let Tick::StepDone { effects, result, .. } = tick else {
                    unreachable!("the tick was built as StepDone above")
                };
                let emitted = result.as_ref().ok().into_iter().flat_map(|e| e.iter());
                let rejected = not_serializable(
                    &self.run_id,
                    core.step_name(invocation),
                    effect_events(&effects).chain(emitted),
                    &error,
                );
                tracing::warn!(run_id = %self.run_id, %rejected, "step attempt fails: an event does not serialise");
                tick = Tick::StepDone {
                    invocation,
                    effects: Vec::new(),
                    result: Err(StepError::new(rejected)),
                    failed_at: wall_clock_ms(),
                };
                if let Err(error) = core.record_tick(&tick, now) {
                    tracing::error!(run_id = %self.run_id, %error, "journal entry does not serialise");
                }
            }
        }
        core.state.reduce(tick, now, &mut core.commands);
        self.execute(core, now);
    }

    /// A send or stream write from a step invocation. A journaled run defers
    /// it to the invocation's next `wait_for_event` or its end, so that a
    /// crash never applies half a step; an unjournaled run applies it at once.
    /// Either way the attempt counts what was applied: when it runs again
    /// after a resume, its first effects that were already applied are
    /// skipped (step bodies are expected to repeat them in the same order).
    pub(super) fn step_effect(&self, invocation: InvocationId, effect: Effect) {
        let mut guard = lock(&self.core);
        let core = &mut *guard;
        if core.state.is_finished() {
            return;
        }
        let (Effect::Send { event, .. } | Effect::Publish(event)) = &effect;
        if let Some(rejected) = too_deep(&self.run_id, || core.step_name(invocation), event) {
            // Refused: the attempt fails when it ends (nothing of it applies).
            tracing::warn!(run_id = %self.run_id, %rejected, "event refused");
            if core.state.invocation_step(invocation).is_some() {
                core.poisoned.mark(invocation, StepError::new(rejected));
            }
            drop(guard);
            let (Effect::Send { event, .. } | Effect::Publish(event)) = effect;
            crate::core::depth::dispose(event);
            return;
        }
        if core.state.invocation_step(invocation).is_none() {
            // A context kept past its step's end: apply the effect on its own.
            let now = self.now();
            let tick = match effect {
                Effect::Send { event, target } => Tick::AddEvent {
                    event,
                    target,
                    origin: None,
                },
                Effect::Publish(event) => Tick::Publish(event),
            };
            if let Err(error) = core.record_tick(&tick, now) {
                // Nobody to fail: the event is dropped, loudly.
                tracing::error!(run_id = %self.run_id, %error, "an event sent after its step ended does not serialise; dropped");
                return;
            }
            core.state.reduce(tick, now, &mut core.commands);
            self.execute(core, now);
            return;
        }
        if core.state.issue_effect(invocation) {
            return; // applied by this attempt's run before the resume
        }
        if core.policy == EffectPolicy::Deferred {
            if let Effect::Publish(_) = effect {
                // A stream write is progress: it reaches readers now, with
                // the sends made before it (they are applied in order), as
                // one recorded tick that a re-run does not repeat.
                let mut effects = core.deferred.remove(&invocation).unwrap_or_default();
                effects.push(effect);
                self.apply_early(core, invocation, effects);
                return;
            }
            // Deferred: no clock read (a step may send millions of events).
            core.deferred.entry(invocation).or_default().push(effect);
            return;
        }
        let now = self.now();
        let tick = match effect {
            Effect::Send { event, target } => Tick::AddEvent {
                event,
                target,
                origin: Some(invocation),
            },
            Effect::Publish(event) => Tick::Publish(event),
        };
        core.state.reduce(tick, now, &mut core.commands);
        core.state.mark_applied(invocation, 1);
        self.execute(core, now);
    }

    /// Applies `invocation`'s effects so far before it ends (see
    /// [`Tick::Effects`]). If one does not serialise, nothing of them is
    /// recorded or applied and the attempt fails when it ends.
    fn apply_early(&self, core: &mut RunCore, invocation: InvocationId, effects: Vec<Effect>) {
        let now = self.now();
        let tick = Tick::Effects { invocation, effects };
        if let Err(error) = core.record_tick(&tick, now) {
            let Tick::Effects { effects, .. } = tick else {
                unreachable!("the tick was built as Effects above")
            };
            let rejected = not_serializable(
                &self.run_id,
                core.step_name(invocation),
                effect_events(&effects),
                &error,
            );
            tracing::warn!(run_id = %self.run_id, %rejected, "step attempt fails: an event does not serialise");
            core.poisoned.mark(invocation, StepError::new(rejected));
            for effect in effects {
                let (Effect::Send { event, .. } | Effect::Publish(event)) = effect;
                crate::core::depth::dispose(event);
            }
            return;
        }
        core.state.reduce(tick, now, &mut core.commands);
        self.execute(core, now);
    }

    /// A snapshot of the run as it is now (in-flight invocations included;
    /// they run again when the snapshot is resumed).
    pub(crate) async fn snapshot(&self) -> Result<Snapshot, serde_json::Error> {
        let state = self.state().to_json().await.map_err(|e| match e {
            StateError::Json { source, .. } => source,
            other => <serde_json::Error as serde::ser::Error>::custom(other.to_string()),
        })?;
        let now = self.now();
        let published = lock(&self.outbox).published;
        let core = lock(&self.core);
        let seq = core.recorder.as_ref().map_or(0, |r| r.seq());
        let status = core.ended.unwrap_or(RunStatus::Running);
        build_snapshot(
            &self.workflow,
            &self.run_id,
            &core.state,
            seq,
            now,
            published,
            state,
            status,
        )
    }

    /// The run's state store, made (empty, of the declared type) on first use.
    pub(crate) fn state(&self) -> &StateStore {
        self.state.get_or_init(|| {
            let store = (self.workflow.state.fresh)();
            // A recorded run records every change of its state.
            if self.recorder.is_some() {
                store.observe(Some(self.state_observer()));
            }
            store
        })
    }

    /// Journals each change of the run's state in the run's own log, in
    /// order with its ticks: an edit a step makes is committed no later than
    /// that step's result (in the same commit or an earlier one), so a
    /// finished step's edits are never lost.
    pub(super) fn state_observer(&self) -> crate::core::state::StateObserver {
        let this = self.this.get().cloned().unwrap_or_default();
        Arc::new(move |json: String| {
            let Some(shared) = this.upgrade() else { return };
            let mut core = lock(&shared.core);
            if let Some(recorder) = core.recorder.as_mut() {
                recorder.state_changed(json);
                recorder.commit();
            }
        })
    }

    /// Time since the run started, on tokio's clock (so a paused test clock
    /// drives timeouts, retries and waiters alike), in whole microseconds:
    /// the journal keeps microseconds, so the reducer sees exactly the same
    /// times live and in a replay.
    pub(crate) fn now(&self) -> Duration {
        Duration::from_micros(self.elapsed().as_micros() as u64)
    }

    /// Time since the run started, at the clock's full resolution.
    pub(super) fn elapsed(&self) -> Duration {
        match self.started.get() {
            Some(started) => tokio::time::Instant::now().saturating_duration_since(*started),
            None => self.clock_at,
        }
    }

    /// Starts the run's clock (if it is not going yet) and returns its origin.
    pub(super) fn start_clock(&self) -> tokio::time::Instant {
        *self.started.get_or_init(|| {
            let now = tokio::time::Instant::now();
            now.checked_sub(self.clock_at).unwrap_or(now)
        })
    }

    /// Writes a journal snapshot when one is due.
    pub(super) fn maybe_snapshot(&self, core: &mut RunCore, now: Duration) {
        if !std::mem::take(&mut core.snapshot_due) || core.state.is_finished() {
            return;
        }
        let published = lock(&self.outbox).published;
        if let Some(recorder) = core.recorder.as_mut() {
            recorder.snapshot(&self.workflow, &core.state, now, published);
        }
    }

    pub(super) fn execute(&self, core: &mut RunCore, now: Duration) {
        let mut handoff = false;
        // A journaled run's published events reach its stream only once the
        // tick's journal group is handed to the writer: whoever sees an event
        // and then flushes the journal finds it committed.
        let mut held = Vec::new();
        for command in core.commands.drain(..) {
            match command {
                Command::Publish(event) => match core.recorder.as_deref_mut() {
                    Some(recorder) => {
                        self.number(&event, recorder);
                        held.push(event);
                    }
                    None => self.publish(event),
                },
                Command::Schedule { at, timer } => {
                    core.timers.push((at, timer));
                    handoff = true;
                }
                Command::ResolveWaiter { key, result } => {
                    if let Some(waiter) = core.waiters.remove(&key) {
                        let _ = waiter.send(result); // the step may be gone already
                    }
                }
                Command::StartWorker(start) => {
                    if self.workflow.verbose {
                        println!(
                            "[{} {}:{}] started from {}",
                            self.run_id,
                            self.workflow.steps[start.step].name(),
                            start.worker,
                            start.event.name()
                        );
                    }
                    core.starts.push(start);
                    handoff = true;
                }
                Command::Finish(outcome) => {
                    core.ended = Some(match &outcome {
                        Outcome::Completed(_) => RunStatus::Completed,
                        Outcome::Cancelled => RunStatus::Cancelled,
                        Outcome::Failed { .. } | Outcome::TimedOut { .. } => RunStatus::Failed,
                    });
                    // The final status is committed with the tick that ended the run.
                    if let Some(recorder) = core.recorder.as_mut() {
                        let result = outcome_result(&self.workflow, &self.run_id, outcome.clone());
                        let (status, stop, error) = ended_status(&result);
                        recorder.status(status, stop, error);
                    }
                    core.finish = Some(outcome);
                    handoff = true;
                }
            }
        }
        self.maybe_snapshot(core, now);
        if let Some(recorder) = core.recorder.as_mut() {
            recorder.commit();
        }
        for event in held {
            self.deliver(event);
        }
        if handoff && !self.pending.swap(true, Ordering::AcqRel) && POLLING_RUN.get() != self.address() {
            self.driver.wake();
        }
    }
}
