//! One run: its shared core, the driver task that executes reducer commands,
//! and the outbox that carries the stream and the result to the caller.
//!
//! Step invocations are futures polled by the run's driver task (one tokio task
//! per run, never one per event): starting a step is a push into a
//! `FuturesUnordered`, finishing one is a poll result, and cancelling the rest
//! is dropping them. Calls a step makes on its [`Context`] reduce their tick
//! right away under the run's lock, so fan-in is decided in one place.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use futures_util::task::AtomicWaker;
use tracing::Instrument;

use crate::core::codec::snapshot::{build_snapshot, Snapshot};
use crate::core::context::host::{StepHost, WaitAnswer};
use crate::core::context::Context;
use crate::core::define::step::{Emitted, StepFuture};
use crate::core::define::workflow::{Workflow, WorkflowCore};
use crate::core::error::{EventError, SendError, StepError, WaitError};
use crate::core::event::{AnyEvent, Event, EventType};
use crate::core::ids::RunStatus;
use crate::core::reducer::Effect;
use crate::core::reducer::{
    Command, InvocationId, Outcome, RetryInfo, RunState, StartWorker, StepIdx, Tick, Timer, WaiterSpec,
};
use crate::core::state::{StateError, StateStore};

pub(crate) mod error;
pub(crate) mod recorder;

pub use error::{RunError, StreamError};
use recorder::{Claimed, EffectPolicy, JournalError, Recorder, RecorderSource};

/// Per-run options.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    run_id: Option<String>,
    internal_events: bool,
    state: Option<StateStore>,
    /// Where the run's recorder comes from (a journal; see `durable`).
    pub(crate) recorder: Option<Arc<dyn RecorderSource>>,
    allow_changed_definition: bool,
    stream_buffer: Option<usize>,
}

/// How many published events a run keeps for its stream's reader by default
/// (see [`RunOptions::stream_buffer`]).
pub const DEFAULT_STREAM_BUFFER: usize = 10_000;

impl RunOptions {
    /// Default options: a generated run id, no internal events.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `run_id` instead of a generated id. An empty or blank id, one
    /// with a control character or one over 255 bytes
    /// ([`check_run_id`](crate::check_run_id)) is refused: the handle
    /// resolves to [`RunError::InvalidRunId`] and nothing runs or is
    /// journaled.
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Publishes [`StepStateChanged`](crate::StepStateChanged) events to the stream.
    /// Off by default: they cost an allocation per step transition.
    pub fn internal_events(mut self, on: bool) -> Self {
        self.internal_events = on;
        self
    }

    /// Runs with `store` as the run state: values set in it before the run are
    /// visible to the steps, and passing the store of a finished run
    /// (`handle.state()`) carries its state over. It must hold the workflow's
    /// declared state type.
    pub fn state(mut self, store: StateStore) -> Self {
        self.state = Some(store);
        self
    }

    /// How many published events the run keeps for a reader that is behind
    /// ([`DEFAULT_STREAM_BUFFER`] unless set; at least 1). Once a taken stream
    /// holds that many unread events the run's steps are paused (they are not
    /// polled, and [`Context::write_event_to_stream`](crate::Context::write_event_to_stream)
    /// awaited waits) until the reader catches up: nothing is dropped. Before
    /// anybody takes the stream the run keeps the latest that many, and a
    /// stream taken later starts with [`StreamLagged`](crate::StreamLagged).
    pub fn stream_buffer(mut self, events: usize) -> Self {
        self.stream_buffer = Some(events.max(1));
        self
    }

    /// When resuming from a snapshot: accept a changed workflow definition.
    pub fn allow_changed_definition(mut self, allow: bool) -> Self {
        self.allow_changed_definition = allow;
        self
    }

    pub(crate) fn allows_changed_definition(&self) -> bool {
        self.allow_changed_definition
    }

    pub(crate) fn wants_internal_events(&self) -> bool {
        self.internal_events
    }
}

/// Running a workflow in this process: one driver task per run.
impl<S: Event, O: Event> Workflow<S, O> {
    /// Starts a run. Must be called inside a tokio runtime; otherwise the handle
    /// resolves to [`RunError::NoRuntime`](crate::RunError::NoRuntime).
    pub fn run(&self, start: S) -> RunHandle<O> {
        self.run_with(start, RunOptions::default())
    }

    /// Starts a run with options (run id, internal events).
    pub fn run_with(&self, start: S, options: RunOptions) -> RunHandle<O> {
        launch(
            Arc::clone(&self.core),
            Begin::Fresh {
                start: start.into(),
                options,
            },
        )
    }
}

/// How a run begins: fresh from a start event, or resumed from rebuilt state.
pub(crate) enum Begin {
    Fresh {
        start: AnyEvent,
        options: RunOptions,
    },
    Resume {
        run_id: Arc<str>,
        state: Box<RunState>,
        /// The run's clock at the last journaled tick.
        at: Duration,
        journal_seq: u64,
        published: u64,
        store: StateStore,
        recorder: Option<Arc<dyn RecorderSource>>,
        /// The epoch the journal claimed the run at.
        epoch: u64,
        /// Answered once the run's record is committed (a run resumed from a
        /// snapshot into a journal waits for it before it runs steps).
        claim: Option<Claimed>,
    },
}

/// Sender half of a suspended `wait_for_event`.
type WaiterSender = tokio::sync::oneshot::Sender<Result<AnyEvent, WaitError>>;

/// State guarded by the run lock: the reducer state plus work for the driver.
struct RunCore {
    state: RunState,
    commands: Vec<Command>,
    starts: Vec<StartWorker>,
    /// Timers to arm: when (since the run started) and which.
    timers: Vec<(Duration, Timer)>,
    finish: Option<Outcome>,
    waiters: HashMap<u64, WaiterSender>,
    /// Set for recorded (journaled) runs.
    recorder: Option<Box<dyn Recorder>>,
    /// When step effects take effect: the recorder's choice.
    policy: EffectPolicy,
    snapshot_due: bool,
    /// Sends and stream writes of in-flight invocations, applied with their
    /// result ([`EffectPolicy::Deferred`] only, so a crash never applies half a step).
    deferred: HashMap<InvocationId, Vec<Effect>>,
    /// How the run ended, once it has.
    ended: Option<RunStatus>,
    /// Set when the journal gave the run up: the driver ends the run with it.
    /// Boxed, like the outbox's error: rare, and every run pays for its core.
    fault: Option<Box<RunError>>,
    /// Invocations that made a wait or collect whose entry could not be
    /// journaled: each ends with this error whatever its body returns.
    poisoned: Poisoned,
}

impl RunCore {
    /// Records `tick` in the journal (if any) before it is reduced. On error
    /// nothing was written, and the tick must not be reduced as it is.
    fn record_tick(&mut self, tick: &Tick, now: Duration) -> Result<(), serde_json::Error> {
        if let Some(recorder) = self.recorder.as_mut() {
            if recorder.tick(tick, &self.state, now)? {
                self.snapshot_due = true;
            }
        }
        Ok(())
    }

    /// Records a wait or a collect (through `record`) before it is reduced
    /// (errors as for [`RunCore::record_tick`]).
    fn record(
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
    fn step_name(&self, invocation: InvocationId) -> Option<String> {
        let step = self.state.invocation_step(invocation)?;
        Some(self.state.workflow().steps[step].name().to_owned())
    }
}

/// `event` as an [`EventError::TooDeep`] when it nests deeper than
/// [`MAX_EVENT_DEPTH`](crate::MAX_EVENT_DEPTH).
fn too_deep(run_id: &str, step: impl FnOnce() -> Option<String>, event: &AnyEvent) -> Option<EventError> {
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
fn not_serializable<'a>(
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

fn effect_events(effects: &[Effect]) -> impl Iterator<Item = &AnyEvent> {
    effects.iter().map(|e| match e {
        Effect::Send { event, .. } | Effect::Publish(event) => event,
    })
}

/// Attempts that fail when they end because an event of theirs was refused,
/// with the error. Boxed: almost no run has any, and every run pays for its core.
#[derive(Default)]
#[allow(clippy::box_collection)] // 8 bytes in every run instead of a map's 48
struct Poisoned(Option<Box<HashMap<InvocationId, StepError>>>);

impl Poisoned {
    /// Marks `invocation`'s attempt as failed; an earlier refusal wins.
    fn mark(&mut self, invocation: InvocationId, error: StepError) {
        self.0
            .get_or_insert_with(Default::default)
            .entry(invocation)
            .or_insert(error);
    }

    /// The error `invocation`'s attempt fails with, if it was marked.
    fn take(&mut self, invocation: InvocationId) -> Option<StepError> {
        self.0.as_mut()?.remove(&invocation)
    }
}

/// What the caller side reads: published events and the final result.
struct Outbox {
    events: VecDeque<AnyEvent>,
    /// Unread events kept at most (see [`RunOptions::stream_buffer`]).
    capacity: usize,
    /// Events dropped before the stream was taken (oldest first).
    missed: u64,
    /// Steps awaiting room in a full stream buffer.
    room: Vec<Waker>,
    stream: StreamState,
    stream_waker: Option<Waker>,
    /// The error boxed: most runs complete, and every run pays for its outbox.
    result: Option<Result<AnyEvent, Box<RunError>>>,
    result_waker: Option<Waker>,
    /// Events published so far (the next event's sequence number).
    published: u64,
}

#[derive(Default, PartialEq, Eq)]
enum StreamState {
    /// Nobody took the stream yet; keep events for a later `stream_events`.
    #[default]
    Waiting,
    Taken,
    /// Nobody will read; drop published events.
    Detached,
}

/// Everything one run shares between its driver, its steps and its handle.
pub(crate) struct RunShared {
    pub(crate) workflow: Arc<WorkflowCore>,
    pub(crate) run_id: Arc<str>,
    /// The run state, made on first use (see [`RunShared::state`]).
    state: std::sync::OnceLock<StateStore>,
    /// The run's one clock: every time the reducer sees is measured from here.
    started: tokio::time::Instant,
    core: Mutex<RunCore>,
    outbox: Mutex<Outbox>,
    /// Set when the driver has starts or a finish to pick up.
    pending: AtomicBool,
    driver: AtomicWaker,
    /// Where the run's recorder came from, for backpressure (recorded runs only).
    recorder: Option<Arc<dyn RecorderSource>>,
    /// This run, for callbacks that must not keep it alive.
    this: std::sync::OnceLock<std::sync::Weak<RunShared>>,
    /// The task that times the run out (runs with a timeout only), stopped
    /// when the run ends.
    watchdog: std::sync::OnceLock<tokio::task::AbortHandle>,
    /// True while the driver is inside a step body's poll.
    stepping: AtomicBool,
    /// Set while a taken stream's buffer is full: the driver polls no steps.
    stream_full: AtomicBool,
}

thread_local! {
    /// The run whose driver is polling steps on this thread (address of its
    /// `RunShared`), so steps' context calls can skip waking their own driver.
    static POLLING_RUN: Cell<usize> = const { Cell::new(0) };
}

impl Outbox {
    fn new(published: u64, capacity: usize) -> Self {
        Outbox {
            events: VecDeque::new(),
            capacity,
            missed: 0,
            room: Vec::new(),
            stream: StreamState::Waiting,
            stream_waker: None,
            result: None,
            result_waker: None,
            published,
        }
    }
}

/// Queues `event` for the stream's reader (dropped when nobody will read).
/// A taken stream keeps everything and marks the buffer full for the driver;
/// a stream nobody took yet keeps the latest `capacity` events.
fn enqueue(shared: &RunShared, mut outbox: MutexGuard<'_, Outbox>, event: AnyEvent) {
    match outbox.stream {
        StreamState::Detached => return,
        StreamState::Waiting => {
            if outbox.events.len() >= outbox.capacity {
                outbox.events.pop_front();
                outbox.missed += 1;
            }
        }
        StreamState::Taken => {
            // Set and cleared under the outbox lock, so a plain load suffices.
            if outbox.events.len() + 1 >= outbox.capacity && !shared.stream_full.load(Ordering::Relaxed) {
                shared.stream_full.store(true, Ordering::Release);
                tracing::debug!(run_id = %shared.run_id, "the stream's reader is behind: the run's steps wait for it");
            }
        }
    }
    outbox.events.push_back(event);
    if let Some(waker) = outbox.stream_waker.take() {
        drop(outbox);
        waker.wake();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the reducer half-updated in a
    // way that matters more than losing the run, so keep going.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RunShared {
    fn address(&self) -> usize {
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
    fn step_done(&self, invocation: InvocationId, result: Result<Emitted, StepError>) {
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
        let mut tick = Tick::StepDone {
            invocation,
            effects,
            result,
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
                };
                if let Err(error) = core.record_tick(&tick, now) {
                    tracing::error!(run_id = %self.run_id, %error, "journal entry does not serialise");
                }
            }
        }
        core.state.reduce(tick, now, &mut core.commands);
        self.execute(core, now);
    }

    /// `write_event_to_stream` from a step.
    pub(crate) fn write_to_stream(&self, invocation: InvocationId, event: AnyEvent) {
        self.step_effect(invocation, Effect::Publish(event));
    }

    /// A send or stream write from a step invocation. A journaled run defers
    /// it to the invocation's next `wait_for_event` or its end, so that a
    /// crash never applies half a step; an unjournaled run applies it at once.
    /// Either way the attempt counts what was applied: when it runs again
    /// after a resume, its first effects that were already applied are
    /// skipped (step bodies are expected to repeat them in the same order).
    fn step_effect(&self, invocation: InvocationId, effect: Effect) {
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
    fn state_observer(&self) -> crate::core::state::StateObserver {
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

    /// The journal gave the run up: the driver ends it with `error`.
    fn journal_failed(&self, error: JournalError) {
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

    /// Time since the run started, on tokio's clock (so a paused test clock
    /// drives timeouts, retries and waiters alike), in whole microseconds:
    /// the journal keeps microseconds, so the reducer sees exactly the same
    /// times live and in a replay.
    pub(crate) fn now(&self) -> Duration {
        Duration::from_micros(self.elapsed().as_micros() as u64)
    }

    /// Time since the run started, at the clock's full resolution.
    fn elapsed(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.started)
    }

    /// What `ctx.retry_info()` reports for `invocation`.
    pub(crate) fn retry_info(&self, invocation: InvocationId) -> Option<RetryInfo> {
        let now = self.now();
        lock(&self.core).state.retry_info(invocation, now)
    }

    /// Suspends `invocation` until an event matching `spec` arrives; returns
    /// the waiter's key and the receiver the answer arrives on.
    pub(crate) fn add_waiter(
        &self,
        invocation: InvocationId,
        spec: WaiterSpec,
    ) -> Result<(u64, tokio::sync::oneshot::Receiver<Result<AnyEvent, WaitError>>), WaitError> {
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
    pub(crate) fn withdraw_waiter(&self, key: u64) {
        let now = self.now();
        let mut guard = lock(&self.core);
        let core = &mut *guard;
        core.waiters.remove(&key);
        core.state.withdraw_waiter(key, &mut core.commands);
        self.execute(core, now);
    }

    /// Offers `event` to a collect buffer of the invocation's step.
    pub(crate) fn collect(
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

    /// Writes a journal snapshot when one is due.
    fn maybe_snapshot(&self, core: &mut RunCore, now: Duration) {
        if !std::mem::take(&mut core.snapshot_due) || core.state.is_finished() {
            return;
        }
        let published = lock(&self.outbox).published;
        if let Some(recorder) = core.recorder.as_mut() {
            recorder.snapshot(&self.workflow, &core.state, now, published);
        }
    }

    fn execute(&self, core: &mut RunCore, now: Duration) {
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

    /// Numbers `event` and puts it on the stream (unjournaled runs).
    fn publish(&self, event: AnyEvent) {
        let mut outbox = lock(&self.outbox);
        outbox.published += 1;
        enqueue(self, outbox, event);
    }

    /// Gives `event` the run's next stream sequence number and records it in
    /// the journal; [`RunShared::deliver`] puts it on the stream later.
    fn number(&self, event: &AnyEvent, recorder: &mut dyn Recorder) {
        let mut outbox = lock(&self.outbox);
        let seq = outbox.published;
        outbox.published += 1;
        recorder.published(seq, event);
    }

    /// Puts an already numbered event on the stream.
    fn deliver(&self, event: AnyEvent) {
        enqueue(self, lock(&self.outbox), event);
    }

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

    fn check_target(&self, name: &str, event: &AnyEvent) -> Result<StepIdx, SendError> {
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

    /// Ends the run if a tick just decided its outcome (cancel, timeout) and
    /// the driver does not: normally the driver drops the in-flight steps and
    /// then resolves the handle, but it polls the steps itself, so a body that
    /// hogs its thread would hold the end back for as long as it runs. Then
    /// the run ends from here, and the driver drops the steps when it next
    /// gets control.
    async fn finish_soon(&self) {
        if !self.stepping.load(Ordering::Acquire) {
            // The driver is free: give it a moment to end the run in order.
            tokio::time::sleep(DRIVER_GRACE).await;
        }
        self.finish_now();
    }

    /// Ends the run now if a tick decided its outcome and nobody ended it yet.
    fn finish_now(&self) {
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

    /// The stream's buffer was emptied: steps paused by a full buffer go on.
    fn make_room(&self, outbox: &mut Outbox) {
        if self.stream_full.load(Ordering::Relaxed) {
            self.stream_full.store(false, Ordering::Release);
            outbox.room.drain(..).for_each(Waker::wake);
            self.driver.wake();
        }
    }

    /// Ready once the stream's buffer has room (see [`StreamWrite`]).
    pub(crate) fn poll_room(&self, cx: &mut TaskContext<'_>) -> Poll<()> {
        if !self.stream_full.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut outbox = lock(&self.outbox);
        if !self.stream_full.load(Ordering::Acquire) || outbox.result.is_some() {
            return Poll::Ready(());
        }
        outbox.room.push(cx.waker().clone());
        Poll::Pending
    }

    /// Resolves the handle and the stream with `result`; the first result wins.
    fn close(&self, result: Result<AnyEvent, RunError>) {
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

    fn is_closed(&self) -> bool {
        lock(&self.outbox).result.is_some()
    }
}

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

    fn write_to_stream(&self, from: InvocationId, event: AnyEvent) {
        RunShared::write_to_stream(self, from, event);
    }

    fn poll_room(&self, cx: &mut TaskContext<'_>) -> Poll<()> {
        RunShared::poll_room(self, cx)
    }

    fn state(&self) -> &StateStore {
        RunShared::state(self)
    }

    fn retry_info(&self, invocation: InvocationId) -> Option<RetryInfo> {
        RunShared::retry_info(self, invocation)
    }

    fn add_waiter(&self, invocation: InvocationId, spec: WaiterSpec) -> Result<(u64, WaitAnswer), WaitError> {
        RunShared::add_waiter(self, invocation, spec)
    }

    fn withdraw_waiter(&self, key: u64) {
        RunShared::withdraw_waiter(self, key);
    }

    fn collect(
        &self,
        invocation: InvocationId,
        buffer: &str,
        event: AnyEvent,
        expect: &crate::core::context::collect::Expectation<'_>,
    ) -> Option<Vec<AnyEvent>> {
        RunShared::collect(self, invocation, buffer, event, expect)
    }
}

/// A new run id: 7 base62 characters of the wall-clock millisecond, then 9
/// random ones (16 in all). Ids sort by creation time, so a store's indexes
/// keyed by run id grow at one end instead of at random places (which is
/// what makes SQLite's group commits cheap).
fn generate_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    /// `n` in `width` base62 digits, most significant first (so the text
    /// sorts like the number; higher digits of a wider `n` are dropped).
    fn push_base62(id: &mut String, mut n: u64, width: usize) {
        let mut digits = [b'0'; 11];
        for digit in digits[..width].iter_mut().rev() {
            *digit = ALPHABET[(n % 62) as usize];
            n /= 62;
        }
        id.extend(digits[..width].iter().map(|&b| char::from(b)));
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut id = String::with_capacity(16);
    push_base62(&mut id, millis, 7);
    push_base62(&mut id, hasher.finish(), 9);
    id
}

/// Why the start event cannot enter a run, if it cannot: it must not nest
/// too deep, and a journaled run's start event must serialise.
fn check_start(run_id: &str, start: &AnyEvent, journaled: bool) -> Option<EventError> {
    if let Some(error) = too_deep(run_id, || None, start) {
        return Some(error);
    }
    if !journaled {
        return None;
    }
    let mut scratch = Vec::new();
    let error = start.write_json(&mut scratch).err()?;
    Some(not_serializable(run_id, None, [start], &error))
}

/// What the driver reduces first.
enum FirstTick {
    Start(AnyEvent),
    Resume,
}

/// Creates the run and spawns its driver.
pub(crate) fn launch<O: Event>(workflow: Arc<WorkflowCore>, begin: Begin) -> RunHandle<O> {
    let now = tokio::time::Instant::now();
    let mut claim = None;
    // Set when the journal already runs a run with this id.
    let mut duplicate = false;
    let mut stream_buffer = DEFAULT_STREAM_BUFFER;
    // Set when the start event cannot enter the run.
    let mut rejected = None;
    // Set when the caller's run id is refused (the run is not journaled).
    let mut invalid_id = None;
    let (run_id, reducer, store, source, recorder, published, started, first) = match begin {
        Begin::Fresh { start, mut options } => {
            stream_buffer = options.stream_buffer.unwrap_or(DEFAULT_STREAM_BUFFER);
            if let Some(Err(reason)) = options.run_id.as_deref().map(crate::check_run_id) {
                options.recorder = None;
                invalid_id = Some(reason);
            }
            let explicit_id = options.run_id.is_some();
            let run_id: Arc<str> = options.run_id.take().unwrap_or_else(generate_run_id).into();
            rejected = check_start(&run_id, &start, options.recorder.is_some());
            if rejected.is_some() {
                options.recorder = None; // nothing is stored of a refused run
            }
            let reducer = RunState::new(Arc::clone(&workflow), Arc::clone(&run_id), options.internal_events);
            // The state store is made on first use unless the caller gave
            // one: most runs never touch it.
            let store = options.state;
            // A run id the caller chose may be in use already (by another
            // process, too): such a run waits until its record — its claim of
            // the id — is committed before any step runs. A generated id is
            // new by construction and does not wait.
            let source = options.recorder;
            let recorder = source.as_ref().and_then(|source| {
                // A fresh state is not recorded: a resume without a stored
                // state starts from a fresh one, which is the same thing.
                let json = store.as_ref().and_then(StateStore::try_json);
                let Some((recorder, confirmed)) = source.start(&run_id, &workflow, json, explicit_id) else {
                    duplicate = true;
                    return None;
                };
                claim = confirmed;
                Some(recorder)
            });
            (
                run_id,
                reducer,
                store,
                source,
                recorder,
                0,
                now,
                FirstTick::Start(start),
            )
        }
        Begin::Resume {
            run_id,
            state,
            at,
            journal_seq,
            published,
            store,
            recorder: source,
            epoch,
            claim: confirmed,
        } => {
            claim = confirmed;
            let recorder = source.as_ref().and_then(|source| {
                let recorder = source.resume(&run_id, journal_seq, epoch);
                duplicate |= recorder.is_none();
                recorder
            });
            // The clock goes on from the last journaled tick.
            let started = now.checked_sub(at).unwrap_or(now);
            (
                run_id,
                *state,
                Some(store),
                source,
                recorder,
                published,
                started,
                FirstTick::Resume,
            )
        }
    };
    let policy = recorder.as_ref().map_or(EffectPolicy::Immediate, |r| r.policy());
    let state_ok = store.as_ref().is_none_or(|s| s.type_id() == workflow.state.type_id);
    let state = std::sync::OnceLock::new();
    if let Some(store) = store {
        let _ = state.set(store);
    }
    let shared = Arc::new(RunShared {
        core: Mutex::new(RunCore {
            state: reducer,
            // Small first allocations: a tick rarely produces more than two
            // commands, and every concurrent run pays for these buffers.
            commands: Vec::with_capacity(2),
            starts: Vec::with_capacity(1),
            timers: Vec::new(),
            finish: None,
            waiters: HashMap::new(),
            recorder,
            policy,
            snapshot_due: false,
            deferred: HashMap::new(),
            ended: None,
            fault: None,
            poisoned: Poisoned::default(),
        }),
        outbox: Mutex::new(Outbox::new(published, stream_buffer)),
        pending: AtomicBool::new(false),
        driver: AtomicWaker::new(),
        recorder: source,
        this: std::sync::OnceLock::new(),
        watchdog: std::sync::OnceLock::new(),
        stepping: AtomicBool::new(false),
        stream_full: AtomicBool::new(false),
        started,
        workflow,
        run_id,
        state,
    });
    let _ = shared.this.set(Arc::downgrade(&shared));
    if shared.recorder.is_some() {
        if let Some(store) = shared.state.get() {
            store.observe(Some(shared.state_observer()));
        }
        let this = Arc::downgrade(&shared);
        if let Some(recorder) = lock(&shared.core).recorder.as_ref() {
            recorder.on_fault(Box::new(move |error| {
                if let Some(shared) = this.upgrade() {
                    shared.journal_failed(error);
                }
            }));
        }
    }
    // A run refused before it starts ends at once, with the reason.
    let id = || shared.run_id.to_string();
    let refused = if duplicate {
        Some(RunError::Journal {
            run_id: id(),
            source: JournalError::Fenced {
                run_id: id(),
                reason: "this journal is running a run with that id already".into(),
            },
        })
    } else if let Some(reason) = invalid_id {
        Some(RunError::InvalidRunId { run_id: id(), reason })
    } else if let Some(source) = rejected {
        Some(RunError::StartRejected { run_id: id(), source })
    } else if !state_ok {
        Some(RunError::StateTypeMismatch {
            run_id: id(),
            expected: shared.workflow.state.type_name,
            found: shared.state().type_name(),
        })
    } else {
        None
    };
    if let Some(error) = refused {
        if let FirstTick::Start(start) = first {
            crate::core::depth::dispose(start);
        }
        shared.close(Err(error));
        return RunHandle {
            guard: HandleGuard { shared },
            _out: PhantomData,
        };
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let span = tracing::info_span!("stepwise.run", workflow = %shared.workflow.name, run_id = %shared.run_id);
            // The first tick is reduced before the handle is returned, so that
            // events the caller sends at once come after it (a resumed run
            // must rewind its in-flight work before anything new starts).
            span.in_scope(|| match first {
                FirstTick::Start(event) => shared.apply(Tick::AddEvent {
                    event,
                    target: None,
                    origin: None,
                }),
                FirstTick::Resume => shared.apply(Tick::Resume),
            });
            runtime.spawn(as_driver(Arc::clone(&shared), claim).instrument(span.clone()));
            if let Some(timeout) = shared.workflow.timeout {
                let watchdog =
                    runtime.spawn(time_out(Arc::downgrade(&shared), shared.started + timeout).instrument(span));
                let _ = shared.watchdog.set(watchdog.abort_handle());
            }
        }
        Err(_) => shared.close(Err(RunError::NoRuntime {
            run_id: shared.run_id.to_string(),
        })),
    }
    RunHandle {
        guard: HandleGuard { shared },
        _out: PhantomData,
    }
}

/// A step invocation being polled by the driver. Catches panics so a failing
/// step fails its run, never the process.
struct StepTask {
    invocation: InvocationId,
    step: StepIdx,
    worker: u32,
    future: StepFuture,
    span: tracing::Span,
}

impl Future for StepTask {
    type Output = StepFinished;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let _entered = this.span.enter();
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.future.as_mut().poll(cx)));
        let result = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(result)) => result,
            Err(payload) => Err(StepError::panic(panic_message(&*payload))),
        };
        Poll::Ready(StepFinished {
            invocation: this.invocation,
            step: this.step,
            worker: this.worker,
            result,
        })
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// A step invocation's outcome, as the driver receives it.
struct StepFinished {
    invocation: InvocationId,
    step: StepIdx,
    worker: u32,
    result: Result<Emitted, StepError>,
}

enum Wake {
    StepDone(StepFinished),
    Handoff,
    TimersDue,
}

/// The driver's timers: a min-heap of (due, sequence, timer) and one sleep
/// armed for the earliest. The sequence breaks ties in arming order, so two
/// timers due at the same instant fire deterministically.
struct Timers {
    heap: BinaryHeap<Reverse<(Duration, u64, TimerKey)>>,
    next_seq: u64,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    started: tokio::time::Instant,
}

/// `Timer` with a total order, for the heap.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Retry(u64),
    Waiter(u64),
}

impl Timers {
    fn new(started: tokio::time::Instant) -> Self {
        Timers {
            heap: BinaryHeap::new(),
            next_seq: 0,
            sleep: None,
            started,
        }
    }

    fn arm(&mut self, due: Duration, timer: Timer) {
        let key = match timer {
            Timer::Retry(id) => TimerKey::Retry(id),
            Timer::WaiterTimeout(id) => TimerKey::Waiter(id),
        };
        self.heap.push(Reverse((due, self.next_seq, key)));
        self.next_seq += 1;
        self.rearm();
    }

    /// Points the sleep at the earliest timer.
    fn rearm(&mut self) {
        let Some(Reverse((due, _, _))) = self.heap.peek() else {
            self.sleep = None;
            return;
        };
        let deadline = self.started + *due;
        match &mut self.sleep {
            Some(sleep) if sleep.deadline() == deadline => {}
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    fn poll(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }

    /// Removes and returns the timers due at `now`, in order.
    fn take_due(&mut self, now: Duration) -> Vec<Timer> {
        let mut due = Vec::new();
        while let Some(Reverse((at, _, key))) = self.heap.peek() {
            if *at > now {
                break;
            }
            due.push(match key {
                TimerKey::Retry(id) => Timer::Retry(*id),
                TimerKey::Waiter(id) => Timer::WaiterTimeout(*id),
            });
            self.heap.pop();
        }
        self.rearm();
        due
    }
}

/// How long a cancel or a timeout leaves the run's end to a driver that is
/// not inside a step body before ending it from outside.
const DRIVER_GRACE: Duration = Duration::from_millis(20);

/// Times the run out at `deadline`. A task of its own rather than a timer in
/// the driver, so that a step body that never yields (a CPU loop, a blocking
/// call) cannot hold the timeout back: on a multi-threaded runtime this task
/// runs on another thread and ends the run while the body still runs.
async fn time_out(run: std::sync::Weak<RunShared>, deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await;
    if let Some(shared) = run.upgrade() {
        shared.apply(Tick::Timeout);
        shared.finish_soon().await;
    }
}

/// Runs the driver with `POLLING_RUN` set while it is polled, so ticks that
/// steps and the driver itself reduce never wake the driver needlessly.
fn as_driver(shared: Arc<RunShared>, claim: Option<Claimed>) -> impl Future<Output = ()> + Send {
    let address = shared.address();
    let mut driver = Box::pin(drive(shared, claim));
    poll_fn(move |cx| {
        let previous = POLLING_RUN.replace(address);
        let polled = driver.as_mut().poll(cx);
        POLLING_RUN.set(previous);
        polled
    })
}

/// How many loop turns the driver makes before yielding to the scheduler, so a
/// busy run cannot starve other tasks on its worker thread.
const TURNS_PER_YIELD: u32 = 512;

/// The run's driver: executes worker starts and the finish produced by the
/// reducer, and turns step completions and the timer into ticks.
async fn drive(shared: Arc<RunShared>, claim: Option<Claimed>) {
    // Declared first so that it drops last, after the in-flight steps.
    let _abort = AbortOnDrop(Arc::clone(&shared));
    if let Some(claim) = claim {
        // No step runs before the run is known to be this journal's.
        let error = match claim.await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(_) => Some(JournalError::Stopped),
        };
        if let Some(error) = error {
            end_by_journal(&shared, error);
            return;
        }
    }
    let mut running: FuturesUnordered<StepTask> = FuturesUnordered::new();
    let mut starts: Vec<StartWorker> = Vec::with_capacity(1);
    let mut timers = Timers::new(shared.started);
    let mut armed: Vec<(Duration, Timer)> = Vec::new();
    let mut turns = 0u32;
    loop {
        let (finish, fault, ended) = {
            let mut core = lock(&shared.core);
            shared.pending.store(false, Ordering::Release);
            std::mem::swap(&mut core.starts, &mut starts);
            std::mem::swap(&mut core.timers, &mut armed);
            (core.finish.take(), core.fault.take(), core.ended.is_some())
        };
        if let Some(error) = fault {
            drop(running);
            lock(&shared.core).waiters.clear();
            if let Some(store) = shared.state.get() {
                store.observe(None);
            }
            tracing::error!(%error, "run stopped by its journal");
            shared.close(Err(*error));
            return;
        }
        // Backpressure: while the journal is too far behind, the run's steps
        // are not polled (they wait for the store, not the other way round).
        if let Some(source) = &shared.recorder {
            if source.backlogged() {
                source.drained().await;
            }
        }
        for (due, timer) in armed.drain(..) {
            timers.arm(due, timer);
        }
        if let Some(outcome) = finish {
            // Cancel every in-flight invocation; waits in tasks that steps
            // spawned then end with `WaitError::RunEnded`.
            drop(running);
            lock(&shared.core).waiters.clear();
            finish_run(&shared, outcome);
            return;
        }
        if ended {
            // Ended without the driver (cancel, timeout): drop what still runs.
            return;
        }
        for start in starts.drain(..) {
            running.push(step_task(&shared, start));
        }
        let wake = poll_fn(|cx| {
            shared.driver.register(cx.waker());
            if shared.pending.load(Ordering::Acquire) {
                return Poll::Ready(Wake::Handoff);
            }
            if !running.is_empty() && !shared.stream_full.load(Ordering::Acquire) {
                shared.stepping.store(true, Ordering::Release);
                let polled = running.poll_next_unpin(cx);
                shared.stepping.store(false, Ordering::Release);
                if let Poll::Ready(Some(finished)) = polled {
                    return Poll::Ready(Wake::StepDone(finished));
                }
                if shared.pending.load(Ordering::Acquire) {
                    return Poll::Ready(Wake::Handoff);
                }
            }
            match timers.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Wake::TimersDue),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match wake {
            Wake::StepDone(finished) => {
                report_step(&shared, &finished);
                shared.step_done(finished.invocation, finished.result);
            }
            Wake::TimersDue => {
                // The timers' own resolution, so that a timer due within the
                // current microsecond is not missed.
                for timer in timers.take_due(shared.elapsed()) {
                    shared.apply(Tick::Fire(timer));
                }
            }
            Wake::Handoff => {}
        }
        turns += 1;
        if turns % TURNS_PER_YIELD == 0 {
            tokio::task::yield_now().await;
        }
    }
}

/// Ends a run its journal refused before any step ran.
fn end_by_journal(shared: &RunShared, error: JournalError) {
    lock(&shared.core).waiters.clear();
    if let Some(store) = shared.state.get() {
        store.observe(None);
    }
    let error = RunError::Journal {
        run_id: shared.run_id.to_string(),
        source: error,
    };
    tracing::error!(%error, "run refused by its journal");
    shared.close(Err(error));
}

/// Logs a finished invocation (and prints it in verbose mode).
fn report_step(shared: &RunShared, finished: &StepFinished) {
    let step = shared.workflow.steps[finished.step].name();
    match &finished.result {
        Ok(_) => tracing::trace!(step, worker = finished.worker, "step finished"),
        Err(error) => tracing::warn!(step, worker = finished.worker, %error, "step failed"),
    }
    if shared.workflow.verbose {
        let what = match &finished.result {
            Ok(emitted) if emitted.is_empty() => "finished with no event".to_owned(),
            Ok(emitted) => {
                let names: Vec<&str> = emitted.iter().map(AnyEvent::name).collect();
                format!("finished with {}", names.join(", "))
            }
            Err(error) => format!("failed: {error}"),
        };
        println!("[{} {}:{}] {what}", shared.run_id, step, finished.worker);
    }
}

/// Ends the run with [`RunError::Aborted`] when its driver is dropped before
/// it finished the run (its tokio runtime shut down), so that the handle and
/// the stream resolve instead of waiting forever.
struct AbortOnDrop(Arc<RunShared>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.0.is_closed() {
            self.0.close(Err(RunError::Aborted {
                run_id: self.0.run_id.to_string(),
            }));
        }
    }
}

fn step_task(shared: &Arc<RunShared>, start: StartWorker) -> StepTask {
    let step = &shared.workflow.steps[start.step];
    let span = tracing::info_span!(
        "stepwise.step",
        run_id = %shared.run_id,
        step = %step.name(),
        worker = start.worker,
        event = start.event.name()
    );
    let ctx = Context::new(
        Arc::clone(shared) as Arc<dyn StepHost>,
        start.step,
        start.worker,
        start.invocation,
    );
    // A handler may panic before it returns its future (a plain closure doing
    // work before its `async` block): that fails the step like a panic inside it.
    let future = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (step.handler)(ctx, start.event))) {
        Ok(future) => future,
        Err(payload) => Box::pin(std::future::ready(Err(StepError::panic(panic_message(&*payload))))),
    };
    StepTask {
        invocation: start.invocation,
        step: start.step,
        worker: start.worker,
        future,
        span,
    }
}

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

fn finish_run(shared: &RunShared, outcome: Outcome) {
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

/// The caller's side of a run: await it for the typed result, stream its
/// events, send it events, cancel it.
///
/// Dropping the handle does not stop the run.
#[must_use = "a run keeps going without its handle, but its result is lost"]
pub struct RunHandle<O> {
    guard: HandleGuard,
    _out: PhantomData<fn() -> O>,
}

/// Owns the handle's reference to the run; dropping it without having taken
/// the stream tells the run nobody will read its events.
struct HandleGuard {
    shared: Arc<RunShared>,
}

/// What a handle resolves to: a typed stop event, or [`AnyEvent`] for
/// handles erased with [`RunHandle::erase`].
pub trait StopOutput: Send + 'static {
    /// Converts the run's stop event.
    fn from_stop(stop: AnyEvent, run_id: &str) -> Result<Self, RunError>
    where
        Self: Sized;
}

impl<E: Event> StopOutput for E {
    fn from_stop(stop: AnyEvent, run_id: &str) -> Result<Self, RunError> {
        let found = stop.name();
        stop.downcast::<E>().map_err(|_| RunError::WrongStopType {
            run_id: run_id.to_owned(),
            expected: E::NAME,
            found,
        })
    }
}

impl StopOutput for AnyEvent {
    fn from_stop(stop: AnyEvent, _run_id: &str) -> Result<Self, RunError> {
        Ok(stop)
    }
}

impl<O> RunHandle<O> {
    /// A handle that resolves to the stop event as an [`AnyEvent`] (for code
    /// that handles workflows of different types alike, such as a CLI).
    pub fn erase(self) -> RunHandle<AnyEvent> {
        RunHandle {
            guard: self.guard,
            _out: PhantomData,
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.guard.shared.run_id
    }

    /// The run's published events, in order. The stream ends after the stop
    /// event or a termination event. A run has one stream consumer: a second
    /// call gets [`StreamError::AlreadyTaken`].
    pub fn stream_events(&self) -> Result<EventStream, StreamError> {
        let mut outbox = lock(&self.guard.shared.outbox);
        if outbox.stream != StreamState::Waiting {
            return Err(StreamError::AlreadyTaken {
                run_id: self.guard.shared.run_id.to_string(),
            });
        }
        outbox.stream = StreamState::Taken;
        let mut local = VecDeque::new();
        if outbox.missed > 0 {
            local.push_back(AnyEvent::new(crate::StreamLagged { missed: outbox.missed }));
        }
        Ok(EventStream {
            shared: Arc::clone(&self.guard.shared),
            local,
            ended: false,
        })
    }

    /// Sends an event into the run, to every step that accepts its type.
    pub fn send_event<E: Event>(&self, event: E) -> Result<(), SendError> {
        self.guard.shared.send(AnyEvent::new(event), None, None)
    }

    /// Sends an event to one step, which must exist and accept its type.
    pub fn send_event_to<E: Event>(&self, step: &str, event: E) -> Result<(), SendError> {
        self.guard.shared.send(AnyEvent::new(event), Some(step), None)
    }

    /// Sends an already type-erased event (see [`RunHandle::send_event`]).
    pub fn send_any(&self, event: AnyEvent) -> Result<(), SendError> {
        self.guard.shared.send(event, None, None)
    }

    /// The run's state store. Pass it to the next run with
    /// [`RunOptions::state`] to carry the state over.
    pub fn state(&self) -> &StateStore {
        self.guard.shared.state()
    }

    /// Cancels the run: in-flight steps are dropped,
    /// [`WorkflowCancelled`](crate::WorkflowCancelled) is published, and
    /// awaiting the handle gives [`RunError::Cancelled`]. Does nothing if the
    /// run already ended.
    ///
    /// A step body that never yields (a CPU loop, a blocking call) cannot be
    /// dropped while it runs: the run ends anyway (on a multi-threaded
    /// runtime, within milliseconds), the body keeps its thread until it
    /// returns or yields, and whatever it does after the end is discarded.
    pub fn cancel(&self) {
        let shared = &self.guard.shared;
        shared.apply(Tick::Cancel);
        if shared.is_closed() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let run = Arc::downgrade(shared);
                runtime.spawn(async move {
                    if let Some(shared) = run.upgrade() {
                        shared.finish_soon().await;
                    }
                });
            }
            Err(_) => shared.finish_now(),
        }
    }

    /// True once the run has ended (with a result or an error).
    pub fn is_done(&self) -> bool {
        self.guard.shared.is_closed()
    }

    /// The run as it is now, as a serialisable snapshot: queued and in-flight
    /// events (in-flight ones run again on resume), collect buffers, waiters,
    /// pending retries, state and run id. Resume it with
    /// [`Workflow::resume_from_snapshot`](crate::Workflow::resume_from_snapshot),
    /// here or in another process. Typically taken while the run is idle
    /// (waiting for a person), then the run is cancelled or the process stops.
    /// A snapshot taken after [`cancel`](RunHandle::cancel) resumes too (the
    /// run goes on as if it had not been cancelled); one of a completed or
    /// failed run does not ([`Snapshot::status`] says which).
    pub async fn snapshot(&self) -> Result<Snapshot, serde_json::Error> {
        self.guard.shared.snapshot().await
    }
}

impl<O: StopOutput> Future for RunHandle<O> {
    type Output = Result<O, RunError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut outbox = lock(&self.guard.shared.outbox);
        match &outbox.result {
            Some(result) => {
                let result = result.clone().map_err(|error| *error);
                drop(outbox);
                Poll::Ready(result.and_then(|stop| O::from_stop(stop, &self.guard.shared.run_id)))
            }
            None => {
                outbox.result_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for HandleGuard {
    fn drop(&mut self) {
        let mut outbox = lock(&self.shared.outbox);
        if outbox.stream == StreamState::Waiting {
            outbox.stream = StreamState::Detached;
            outbox.events = VecDeque::new();
        }
    }
}

impl<O> std::fmt::Debug for RunHandle<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("run_id", &self.guard.shared.run_id)
            .finish()
    }
}

/// A run's published events, lossless and in order. Ends after the stop event
/// or a termination event (when the run is over).
pub struct EventStream {
    shared: Arc<RunShared>,
    /// Events already moved out of the outbox (taken in batches, one lock each).
    local: VecDeque<AnyEvent>,
    ended: bool,
}

impl Stream for EventStream {
    type Item = AnyEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<AnyEvent>> {
        let this = &mut *self;
        if let Some(event) = this.local.pop_front() {
            return Poll::Ready(Some(event));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let mut outbox = lock(&this.shared.outbox);
        std::mem::swap(&mut outbox.events, &mut this.local);
        if !this.local.is_empty() {
            this.shared.make_room(&mut outbox);
        }
        match this.local.pop_front() {
            Some(event) => Poll::Ready(Some(event)),
            None if outbox.result.is_some() => {
                this.ended = true;
                Poll::Ready(None)
            }
            None => {
                outbox.stream_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let mut outbox = lock(&self.shared.outbox);
        outbox.stream = StreamState::Detached;
        outbox.events = VecDeque::new();
        self.shared.make_room(&mut outbox);
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("run_id", &self.shared.run_id)
            .finish()
    }
}
