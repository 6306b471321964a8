//! Starting a run: fresh from a start event or resumed from rebuilt state,
//! and `Workflow::run` on top of it.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tracing::Instrument;

use crate::core::define::workflow::{Workflow, WorkflowCore};
use crate::core::error::EventError;
use crate::core::event::{AnyEvent, Event};
use crate::core::reducer::{RunState, Tick};
use crate::core::state::StateStore;

use super::driver::{as_driver, time_out};
use super::error::RunError;
use super::handle::RunHandle;
use super::limits::limits;
use super::options::{RunOptions, DEFAULT_STREAM_BUFFER};
use super::recorder::{Claimed, EffectPolicy, JournalError, RecorderSource};
use super::run_id::generate_run_id;
use super::shared::{lock, not_serializable, too_deep, Poisoned, RunCore, RunShared};
use super::stream::Outbox;

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

/// Spawns the task that times the run out, if the workflow has a timeout
/// (once the run's clock is going).
pub(super) fn arm_timeout(shared: &Arc<RunShared>, runtime: &tokio::runtime::Handle, span: tracing::Span) {
    if let Some(timeout) = shared.workflow.timeout {
        let deadline = shared.start_clock() + timeout;
        let watchdog = runtime.spawn(time_out(Arc::downgrade(shared), deadline).instrument(span));
        let _ = shared.watchdog.set(watchdog.abort_handle());
    }
}

/// Why the start event cannot enter a run, if it cannot: it must not nest
/// too deep, and a journaled run's start event must serialise.
pub(super) fn check_start(run_id: &str, start: &AnyEvent, journaled: bool) -> Option<EventError> {
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
pub(super) enum FirstTick {
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
    let (run_id, reducer, store, source, recorder, published, clock_at, first) = match begin {
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
                Duration::ZERO,
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
            (
                run_id,
                *state,
                Some(store),
                source,
                recorder,
                published,
                // The clock goes on from the last journaled tick.
                at,
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
        started: std::sync::OnceLock::new(),
        clock_at,
        workflow,
        run_id,
        state,
    });
    let _ = shared.this.set(Arc::downgrade(&shared));
    // A run under `num_concurrent_runs` starts its clock (and its timeout)
    // when it gets its slot; any other run now.
    let run_slot = limits(&shared.workflow).and_then(|l| l.runs.clone());
    if run_slot.is_none() {
        let origin = now.checked_sub(clock_at).unwrap_or(now);
        let _ = shared.started.set(origin);
    }
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
        return RunHandle::new(shared);
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            // As for steps' spans: none unless a subscriber listens at INFO.
            let span = if tracing::level_enabled!(tracing::Level::INFO) {
                tracing::info_span!("stepwise.run", workflow = %shared.workflow.name, run_id = %shared.run_id)
            } else {
                tracing::Span::none()
            };
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
            let waits = run_slot.is_some();
            runtime.spawn(as_driver(Arc::clone(&shared), claim, run_slot).instrument(span.clone()));
            if !waits {
                arm_timeout(&shared, &runtime, span);
            }
        }
        Err(_) => shared.close(Err(RunError::NoRuntime {
            run_id: shared.run_id.to_string(),
        })),
    }
    RunHandle::new(shared)
}
