//! Workflow definitions: the builder, the validated [`Workflow`], and the
//! [`WorkflowDefinition`] trait that `#[workflow]` implements.

use std::any::TypeId;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::core::builtin::{StartEvent, StopEvent};
use crate::core::context::Context;
use crate::core::define::step::{GraphCheck, Handler, StepConfig, StepInfo, StepInput, StepOutput, StepSpec};
use crate::core::define::validate::{self, BuildError, Validated, ValidationIssue};
use crate::core::event::{Event, EventType};
use crate::core::state::{JsonState, State, StateStore};

/// A map keyed by event type. A `TypeId` is a hash already, so it is used as
/// it is: routing looks one up per event, and SipHash cost more than the
/// rest of the lookup.
type ByType<V> = HashMap<TypeId, V, BuildHasherDefault<TypeIdHasher>>;

/// Passes a `TypeId`'s own hash through (other input is mixed, in case a
/// future `TypeId` writes more than one word).
#[derive(Default)]
struct TypeIdHasher(u64);

impl Hasher for TypeIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = self.0.rotate_left(26) ^ word;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The validated, immutable definition shared by all runs of a workflow.
pub(crate) struct WorkflowCore {
    pub(crate) name: String,
    pub(crate) doc: Option<String>,
    pub(crate) steps: Vec<StepSpec>,
    pub(crate) start: EventType,
    pub(crate) stop: EventType,
    pub(crate) timeout: Option<Duration>,
    pub(crate) verbose: bool,
    pub(crate) state: StateSpec,
    /// At most this many runs of this workflow (this value and its clones)
    /// active at once in this process; `None`: no limit.
    pub(crate) num_concurrent_runs: Option<usize>,
    /// True when a run or step limit is set: launches check only this when
    /// there is none.
    pub(crate) limited: bool,
    /// The runtime's state for the limits (its semaphores), made on first use;
    /// opaque here so that core names no runtime type.
    pub(crate) limits: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
    /// Every event type the workflow can meet, by stable name (for decoding
    /// journals, snapshots and events from the network).
    pub(crate) registry: HashMap<&'static str, EventType>,
    /// A hash of the definition's shape; a journaled run records it so that a
    /// changed definition is noticed on resume.
    pub(crate) fingerprint: String,
    handlers: Vec<Option<(usize, u32)>>,
    routes: ByType<Vec<usize>>,
    by_name: HashMap<String, usize>,
}

impl WorkflowCore {
    /// Steps accepting `ty`, in definition order.
    pub(crate) fn acceptors(&self, ty: &EventType) -> &[usize] {
        self.routes.get(&ty.type_id()).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn step_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The error handler covering `step`, with its recovery budget.
    pub(crate) fn error_handler(&self, step: usize) -> Option<(usize, u32)> {
        self.handlers.get(step).copied().flatten()
    }
}

/// The workflow's state type and how to make a fresh store of it.
#[derive(Clone, Copy)]
pub(crate) struct StateSpec {
    pub(crate) type_id: TypeId,
    pub(crate) type_name: &'static str,
    pub(crate) fresh: fn() -> StateStore,
    pub(crate) from_json: fn(&str) -> Result<StateStore, String>,
}

impl StateSpec {
    fn of<T: State>() -> Self {
        StateSpec {
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
            fresh: StateStore::default_of::<T>,
            from_json: StateStore::from_json::<T>,
        }
    }
}

/// Builds a [`Workflow`] from steps, without macros.
///
/// `#[workflow]` expands to exactly these calls, so anything the macro does can
/// be written by hand:
///
/// ```
/// use stepwise::{Context, StartEvent, StopEvent, Workflow};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let wf = Workflow::builder("echo")
///     .step("echo", |ev: StartEvent| async move {
///         StopEvent::new(ev.get::<String>("text").unwrap_or_default())
///     })
///     .build()
///     .unwrap();
/// let stop = wf.run(StartEvent::new().with("text", "hi")).await.unwrap();
/// assert_eq!(stop.result, "hi");
/// # }
/// ```
pub struct WorkflowBuilder<S = StartEvent, O = StopEvent> {
    name: String,
    doc: Option<String>,
    steps: Vec<StepSpec>,
    timeout: Option<Duration>,
    verbose: bool,
    num_concurrent_runs: Option<usize>,
    skip_checks: Vec<GraphCheck>,
    state: StateSpec,
    extra_events: Vec<EventType>,
    _io: PhantomData<fn(S) -> O>,
}

impl<S: Event, O: Event> WorkflowBuilder<S, O> {
    /// A workflow called `name`, started by `S` and completed by `O`.
    pub fn new(name: impl Into<String>) -> Self {
        WorkflowBuilder {
            name: name.into(),
            doc: None,
            steps: Vec::new(),
            timeout: None,
            verbose: false,
            num_concurrent_runs: None,
            skip_checks: Vec::new(),
            state: StateSpec::of::<JsonState>(),
            extra_events: Vec::new(),
            _io: PhantomData,
        }
    }

    /// Registers an event type that no step accepts or returns (for example one
    /// only written to the stream), so stored runs and the network can name it.
    pub fn event<E: Event>(mut self) -> Self {
        self.extra_events.push(EventType::of::<E>());
        self
    }

    /// Declares the run state type: every run starts with `T::default()` (or
    /// the store given in [`RunOptions::state`](crate::RunOptions::state)), and steps use
    /// `ctx.state().edit(|s: &mut T| …)` and friends. Without it, runs get an
    /// untyped JSON store.
    pub fn state<T: State>(mut self) -> Self {
        self.state = StateSpec::of::<T>();
        self
    }

    /// The workflow's description (shown in drawings and listings).
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = Some(doc.into());
        self
    }

    /// Adds a step with default settings. `handler` is an async function taking
    /// the event (and optionally a [`Context`](crate::Context) first).
    pub fn step<H, Args>(self, name: impl Into<String>, handler: H) -> Self
    where
        H: Handler<Args>,
    {
        self.step_with(StepConfig::new(name), handler)
    }

    /// Adds a step with explicit settings.
    pub fn step_with<H, Args>(mut self, config: StepConfig, handler: H) -> Self
    where
        H: Handler<Args>,
    {
        self.steps.push(StepSpec::new(config, handler));
        self
    }

    /// The registration `#[workflow]` expands each step method to: `body`
    /// gets the shared workflow value, the context and the event.
    ///
    /// The event and output bounds sit here, on named types, so a wrong type
    /// is reported once, as itself — not as a closure that "is not a step
    /// handler" (a closure's printed type carries its file's absolute path,
    /// so such errors would also differ between checkouts).
    #[doc(hidden)]
    pub fn __step_method<W, E, F, Fut>(self, config: StepConfig, this: Arc<W>, body: F) -> Self
    where
        W: Send + Sync + 'static,
        E: StepInput,
        F: Fn(Arc<W>, Context, E) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: StepOutput,
    {
        self.step_with(config, move |ctx: Context, event: E| {
            body(Arc::clone(&this), ctx, event)
        })
    }

    /// Ends every run that takes longer than `timeout` (off by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets or clears the timeout.
    pub fn timeout_opt(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// At most `n` runs of this workflow (this value and its clones) are
    /// active at once in this process; further runs wait for a slot in the
    /// order they were started (they are not refused). A waiting run's
    /// handle works as usual: events sent to it are delivered once it starts,
    /// cancelling it ends it without running a step. Its timeout counts from
    /// when it gets its slot. Resumed runs take a slot too. `0` is refused
    /// by [`build`](WorkflowBuilder::build).
    pub fn num_concurrent_runs(mut self, n: usize) -> Self {
        self.num_concurrent_runs = Some(n);
        self
    }

    /// Sets or clears the run limit (see
    /// [`num_concurrent_runs`](WorkflowBuilder::num_concurrent_runs)).
    pub fn num_concurrent_runs_opt(mut self, n: Option<usize>) -> Self {
        self.num_concurrent_runs = n;
        self
    }

    /// Prints each step start and finish and the result as runs proceed.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// Skips a graph check for the whole workflow.
    pub fn skip_check(mut self, check: GraphCheck) -> Self {
        self.skip_checks.push(check);
        self
    }

    /// Validates the definition and returns the runnable workflow.
    pub fn build(self) -> Result<Workflow<S, O>, BuildError> {
        let validated = match validate::validate::<S, O>(&self.name, &self.steps, &self.skip_checks) {
            Err(mut error) if self.num_concurrent_runs == Some(0) => {
                error.issues.insert(0, ValidationIssue::ZeroConcurrentRuns);
                return Err(error);
            }
            Err(error) => return Err(error),
            Ok(_) if self.num_concurrent_runs == Some(0) => {
                return Err(BuildError {
                    workflow: self.name,
                    issues: vec![ValidationIssue::ZeroConcurrentRuns],
                })
            }
            Ok(validated) => validated,
        };
        let limited = self.num_concurrent_runs.is_some()
            || self.steps.iter().any(|s| s.config.max_concurrent_across_runs.is_some());
        let registry = registry(&self.name, &self.steps, &self.extra_events)?;
        let fingerprint = fingerprint(&self.name, &self.steps, &validated, self.state.type_name);
        let mut routes: ByType<Vec<usize>> = ByType::default();
        let mut by_name = HashMap::new();
        for (index, step) in self.steps.iter().enumerate() {
            by_name.insert(step.name().to_owned(), index);
            for ty in &step.accepts {
                let acceptors = routes.entry(ty.type_id()).or_default();
                if !acceptors.contains(&index) {
                    acceptors.push(index);
                }
            }
        }
        Ok(Workflow {
            core: Arc::new(WorkflowCore {
                name: self.name,
                doc: self.doc,
                steps: self.steps,
                start: validated.start,
                stop: validated.stop,
                timeout: self.timeout,
                verbose: self.verbose,
                state: self.state,
                num_concurrent_runs: self.num_concurrent_runs,
                limited,
                limits: std::sync::OnceLock::new(),
                registry,
                fingerprint,
                handlers: validated.handlers,
                routes,
                by_name,
            }),
            _io: PhantomData,
        })
    }
}

/// A validated workflow. Cheap to clone; many runs may proceed at once.
///
/// `S` is the start event type (what [`run`](Workflow::run) takes) and `O` the
/// stop event type (what the run's handle resolves to).
pub struct Workflow<S = StartEvent, O = StopEvent> {
    pub(crate) core: Arc<WorkflowCore>,
    _io: PhantomData<fn(S) -> O>,
}

impl<S, O> Clone for Workflow<S, O> {
    fn clone(&self) -> Self {
        Workflow {
            core: Arc::clone(&self.core),
            _io: PhantomData,
        }
    }
}

impl Workflow<StartEvent, StopEvent> {
    /// A builder for a workflow started by [`StartEvent`] and completed by
    /// [`StopEvent`]. Use [`WorkflowBuilder::new`] for custom start/stop types.
    pub fn builder(name: impl Into<String>) -> WorkflowBuilder<StartEvent, StopEvent> {
        WorkflowBuilder::new(name)
    }
}

impl<S: Event, O: Event> Workflow<S, O> {
    /// The workflow's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The workflow's description.
    pub fn doc(&self) -> Option<&str> {
        self.core.doc.as_deref()
    }

    /// The start event type.
    pub fn start_event(&self) -> EventType {
        self.core.start
    }

    /// The stop event type.
    pub fn stop_event(&self) -> EventType {
        self.core.stop
    }

    /// The configured timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.core.timeout
    }

    /// The run limit set with
    /// [`WorkflowBuilder::num_concurrent_runs`], if any.
    pub fn num_concurrent_runs(&self) -> Option<usize> {
        self.core.num_concurrent_runs
    }

    /// A hash of the definition's shape (steps, their events and settings,
    /// start, stop and state types). Journaled runs record it.
    pub fn fingerprint(&self) -> &str {
        &self.core.fingerprint
    }

    /// Every event type the workflow knows, by stable name.
    pub fn events(&self) -> Vec<EventType> {
        let mut events: Vec<EventType> = self.core.registry.values().copied().collect();
        events.sort_by_key(|e| e.name());
        events
    }

    /// The Rust type name of the run state.
    pub fn state_type(&self) -> &'static str {
        self.core.state.type_name
    }

    /// Every step, in definition order.
    pub fn steps(&self) -> Vec<StepInfo> {
        self.core
            .steps
            .iter()
            .map(|s| StepInfo {
                name: s.name().to_owned(),
                accepts: s.accepts.clone(),
                returns: s.returns.clone(),
                sends: s.config.extra_emits.clone(),
                num_workers: s.config.num_workers,
                doc: s.config.doc.clone(),
                retry: s.config.retry.clone(),
                catch_errors: s.config.catch.clone(),
            })
            .collect()
    }
}

impl<S, O> std::fmt::Debug for Workflow<S, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflow")
            .field("name", &self.core.name)
            .field("steps", &self.core.steps.iter().map(StepSpec::name).collect::<Vec<_>>())
            .finish()
    }
}

/// The built-in events every workflow can meet.
fn builtin_events() -> [EventType; 12] {
    use crate::core::builtin::*;
    [
        EventType::of::<StartEvent>(),
        EventType::of::<StopEvent>(),
        EventType::of::<WorkflowTimedOut>(),
        EventType::of::<WorkflowCancelled>(),
        EventType::of::<WorkflowFailed>(),
        EventType::of::<UnhandledEvent>(),
        EventType::of::<StepStateChanged>(),
        EventType::of::<InputRequiredEvent>(),
        EventType::of::<HumanResponseEvent>(),
        EventType::of::<StepFailed>(),
        EventType::of::<WorkflowIdle>(),
        EventType::of::<crate::core::builtin::RawEvent>(),
    ]
}

/// Maps stable names to types; two types sharing a name is an error (the name
/// is what journals and the network use).
fn registry(
    workflow: &str,
    steps: &[StepSpec],
    extra: &[EventType],
) -> Result<HashMap<&'static str, EventType>, BuildError> {
    let mut registry: HashMap<&'static str, EventType> = HashMap::new();
    let mut clashes = Vec::new();
    let all = builtin_events()
        .into_iter()
        .chain(steps.iter().flat_map(|s| {
            s.accepts
                .iter()
                .copied()
                .chain(s.emits())
                .chain(s.config.waits_for.iter().copied())
        }))
        .chain(extra.iter().copied());
    for ty in all {
        match registry.get(ty.name()) {
            Some(existing) if *existing != ty => {
                if !clashes.contains(&ty.name()) {
                    clashes.push(ty.name());
                }
            }
            Some(_) => {}
            None => {
                registry.insert(ty.name(), ty);
            }
        }
    }
    if clashes.is_empty() {
        return Ok(registry);
    }
    Err(BuildError {
        workflow: workflow.to_owned(),
        issues: clashes
            .into_iter()
            .map(|name| ValidationIssue::DuplicateEventName { event: name.to_owned() })
            .collect(),
    })
}

/// FNV-1a over a canonical description of the definition.
fn fingerprint(name: &str, steps: &[StepSpec], validated: &Validated, state: &str) -> String {
    let mut text = format!("{name}|{}|{}|{state}", validated.start.name(), validated.stop.name());
    for step in steps {
        let names = |types: &mut dyn Iterator<Item = EventType>| types.map(|t| t.name()).collect::<Vec<_>>().join(",");
        text.push_str(&format!(
            "|{}:{}:{}:{}:{}",
            step.name(),
            names(&mut step.accepts.iter().copied()),
            names(&mut step.emits()),
            step.config.num_workers,
            step.config.catch.is_some()
        ));
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// A type that defines a workflow; `#[workflow]` implements it.
pub trait WorkflowDefinition: Sized + Send + Sync + 'static {
    /// The start event type.
    type Start: Event;
    /// The stop event type.
    type Stop: Event;

    /// The unvalidated builder, to adjust (timeout, verbose) before building.
    fn builder(self) -> WorkflowBuilder<Self::Start, Self::Stop>;

    /// Validates and returns the runnable workflow.
    fn build(self) -> Result<Workflow<Self::Start, Self::Stop>, BuildError> {
        self.builder().build()
    }
}
