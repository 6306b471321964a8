//! Steps: what a step accepts, what it returns, and how a plain async function
//! becomes a type-erased step handler.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::core::context::Context;
use crate::core::error::StepError;
use crate::core::event::{AnyEvent, Event, EventType};
use crate::core::retry::{Retry, RetryPolicy};

/// The parameter type of a step: one event type, or a union of several
/// (an enum with `#[derive(EventUnion)]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a step's input",
    note = "a step takes one event type (`#[derive(Event)]`) or an enum of events (`#[derive(EventUnion)]`)"
)]
pub trait StepInput: Sized + Send + 'static {
    /// The event types this input accepts.
    fn accepted_types() -> Vec<EventType>;
    /// Converts a routed event, or gives it back if its type is not accepted.
    fn from_event(event: AnyEvent) -> Result<Self, AnyEvent>;
}

impl<E: Event> StepInput for E {
    fn accepted_types() -> Vec<EventType> {
        vec![EventType::of::<E>()]
    }
    fn from_event(event: AnyEvent) -> Result<Self, AnyEvent> {
        event.downcast::<E>()
    }
}

/// What a step may return: an event, `Option`, an event union, `Vec` (fan-out),
/// `()`, or any of these inside `Result<_, E>` with `E` any error
/// ([`StepResult`](crate::StepResult), `anyhow::Result`, `Result<_, MyError>`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a step",
    note = "a step returns an event, an `Option`, a `Vec` or an `#[derive(EventUnion)]` enum of events, or `()`, optionally inside `Result<_, E>` where `E` is an error (`StepError`, `std::error::Error + Send + Sync + 'static`, `anyhow::Error`)"
)]
pub trait StepOutput: Send + 'static {
    /// The event types this output can carry (used by validation and drawing).
    fn emitted_types() -> Vec<EventType>;
    /// Moves the produced events into `out`, or reports the step's failure.
    fn emit(self, out: &mut Emitted) -> Result<(), StepError>;
}

impl<E: Event> StepOutput for E {
    fn emitted_types() -> Vec<EventType> {
        vec![EventType::of::<E>()]
    }
    fn emit(self, out: &mut Emitted) -> Result<(), StepError> {
        out.push(AnyEvent::new(self));
        Ok(())
    }
}

impl StepOutput for () {
    fn emitted_types() -> Vec<EventType> {
        Vec::new()
    }
    fn emit(self, _out: &mut Emitted) -> Result<(), StepError> {
        Ok(())
    }
}

impl<T: StepOutput> StepOutput for Option<T> {
    fn emitted_types() -> Vec<EventType> {
        T::emitted_types()
    }
    fn emit(self, out: &mut Emitted) -> Result<(), StepError> {
        match self {
            Some(inner) => inner.emit(out),
            None => Ok(()),
        }
    }
}

impl<T: StepOutput> StepOutput for Vec<T> {
    fn emitted_types() -> Vec<EventType> {
        T::emitted_types()
    }
    fn emit(self, out: &mut Emitted) -> Result<(), StepError> {
        out.reserve(self.len());
        self.into_iter().try_for_each(|item| item.emit(out))
    }
}

/// `E` is anything that converts into a [`StepError`]: `StepError` itself,
/// any `std::error::Error + Send + Sync + 'static`, `anyhow::Error`,
/// `Box<dyn Error + Send + Sync>`, or a `String`/`&str` message.
impl<T, E> StepOutput for Result<T, E>
where
    T: StepOutput,
    E: Into<StepError> + Send + 'static,
{
    fn emitted_types() -> Vec<EventType> {
        T::emitted_types()
    }
    fn emit(self, out: &mut Emitted) -> Result<(), StepError> {
        match self {
            Ok(inner) => inner.emit(out),
            Err(error) => Err(error.into()),
        }
    }
}

/// The events one step invocation produced, in order. Holds one event without
/// allocating a vector (the common case).
#[derive(Debug, Default)]
pub struct Emitted {
    first: Option<AnyEvent>,
    rest: Vec<AnyEvent>,
}

impl Emitted {
    /// Appends an event.
    pub fn push(&mut self, event: AnyEvent) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(event);
        } else {
            self.rest.push(event);
        }
    }

    fn reserve(&mut self, additional: usize) {
        if additional > 1 {
            self.rest.reserve(additional);
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// True when the invocation produced nothing.
    pub fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    /// The events, in order.
    pub fn iter(&self) -> impl Iterator<Item = &AnyEvent> {
        self.first.iter().chain(self.rest.iter())
    }
}

impl IntoIterator for Emitted {
    type Item = AnyEvent;
    type IntoIter = std::iter::Chain<std::option::IntoIter<AnyEvent>, std::vec::IntoIter<AnyEvent>>;
    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

/// A boxed step future, as the engine stores it.
pub(crate) type StepFuture = Pin<Box<dyn Future<Output = Result<Emitted, StepError>> + Send>>;

/// A type-erased step body.
pub(crate) type ErasedHandler = Arc<dyn Fn(Context, AnyEvent) -> StepFuture + Send + Sync>;

/// An async function usable as a step body: `Fn(E) -> impl Future<Output = R>`
/// or `Fn(Context, E) -> impl Future<Output = R>`, where `E: StepInput` and
/// `R: StepOutput`. `Args` only tells the two shapes apart.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a step handler",
    note = "a step handler is `Fn(E) -> impl Future<Output = R>` or `Fn(Context, E) -> impl Future<Output = R>` with an event input `E` and a step output `R`, and must be `Send + Sync + 'static`",
    note = "if `R` is `Result<_, X>`, `X` must be an error: `StepError`, `anyhow::Error` or a type implementing `std::error::Error + Send + Sync + 'static`"
)]
pub trait Handler<Args>: Send + Sync + 'static {
    /// The step's input.
    type Input: StepInput;
    /// The step's output.
    type Output: StepOutput;
    /// Runs the body.
    fn call(&self, ctx: Context, input: Self::Input) -> impl Future<Output = Self::Output> + Send + 'static;
}

impl<F, Fut, I, R> Handler<(I,)> for F
where
    F: Fn(I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    I: StepInput,
    R: StepOutput,
{
    type Input = I;
    type Output = R;
    fn call(&self, _ctx: Context, input: I) -> impl Future<Output = R> + Send + 'static {
        self(input)
    }
}

impl<F, Fut, I, R> Handler<(Context, I)> for F
where
    F: Fn(Context, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    I: StepInput,
    R: StepOutput,
{
    type Input = I;
    type Output = R;
    fn call(&self, ctx: Context, input: I) -> impl Future<Output = R> + Send + 'static {
        self(ctx, input)
    }
}

/// Erases a handler: downcast the routed event, run the body, collect its output.
pub(crate) fn erase<H, Args>(handler: H) -> ErasedHandler
where
    H: Handler<Args>,
{
    Arc::new(move |ctx: Context, event: AnyEvent| -> StepFuture {
        match H::Input::from_event(event) {
            Ok(input) => {
                let body = handler.call(ctx, input);
                Box::pin(async move {
                    let mut out = Emitted::default();
                    body.await.emit(&mut out).map(|()| out)
                })
            }
            Err(event) => {
                let error = StepError::msg(format!(
                    "step `{}` was handed `{}`, which it does not accept (routing bug)",
                    ctx.step_name(),
                    event.name()
                ));
                Box::pin(std::future::ready(Err(error)))
            }
        }
    })
}

/// A graph check that can be skipped per step or per workflow.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum GraphCheck {
    /// Every step is reachable from the start event (or a human response).
    Reachability,
    /// Every step that emits something has a path to the stop event (or an input request).
    DeadEnd,
    /// Every produced event is consumed by some step.
    TerminalEvent,
}

impl GraphCheck {
    /// The check's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            GraphCheck::Reachability => "reachability",
            GraphCheck::DeadEnd => "dead_end",
            GraphCheck::TerminalEvent => "terminal_event",
        }
    }
}

/// Default number of concurrent invocations per step.
pub const DEFAULT_NUM_WORKERS: usize = 4;

/// How a step is registered: its name, concurrency and declarations.
#[derive(Clone, Debug)]
pub struct StepConfig {
    pub(crate) name: String,
    pub(crate) num_workers: usize,
    pub(crate) extra_emits: Vec<EventType>,
    pub(crate) waits_for: Vec<EventType>,
    pub(crate) skip_checks: Vec<GraphCheck>,
    pub(crate) doc: Option<String>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) catch: Option<CatchErrors>,
    /// At most this many invocations in flight over all runs of the workflow.
    pub(crate) max_concurrent_across_runs: Option<usize>,
}

/// Makes a step the error handler of other steps: when a covered step fails
/// for good (retries exhausted), the handler receives a
/// [`StepFailed`](crate::StepFailed) event and may return a stop event, route
/// to another step, or fail the run by failing itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchErrors {
    pub(crate) for_steps: Option<Vec<String>>,
    pub(crate) max_recoveries: u32,
}

impl CatchErrors {
    /// Handles failures of every step that no scoped handler claims
    /// (at most one catch-all per workflow).
    pub fn all() -> Self {
        CatchErrors {
            for_steps: None,
            max_recoveries: 1,
        }
    }

    /// Handles failures of the named steps.
    pub fn for_steps<I, S>(steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CatchErrors {
            for_steps: Some(steps.into_iter().map(Into::into).collect()),
            max_recoveries: 1,
        }
    }

    /// How many times the handler may recover along one chain of events
    /// (default 1). Events derived from the handler's output carry the count,
    /// so a failure that recurs after recovery cannot loop forever.
    pub fn max_recoveries(mut self, n: u32) -> Self {
        self.max_recoveries = n;
        self
    }

    /// The steps covered (`None` for a catch-all).
    pub fn steps(&self) -> Option<&[String]> {
        self.for_steps.as_deref()
    }

    /// The recovery budget.
    pub fn recoveries(&self) -> u32 {
        self.max_recoveries
    }
}

impl StepConfig {
    /// A step called `name` with the default settings (4 workers).
    pub fn new(name: impl Into<String>) -> Self {
        StepConfig {
            name: name.into(),
            num_workers: DEFAULT_NUM_WORKERS,
            extra_emits: Vec::new(),
            waits_for: Vec::new(),
            skip_checks: Vec::new(),
            doc: None,
            retry: None,
            catch: None,
            max_concurrent_across_runs: None,
        }
    }

    /// At most `n` invocations of this step are in flight over all runs of
    /// the workflow (this value and its clones) in this process together.
    /// Further invocations wait, in the order the runs started them, without
    /// blocking a thread or their run's other steps; each holds its run's
    /// worker slot ([`num_workers`](StepConfig::num_workers)) while it waits.
    /// The slot is held for the whole body, its `wait_for_event`s included,
    /// and freed when the attempt ends (a retry waits again) or its run ends.
    /// `0` is refused when the workflow is built.
    pub fn max_concurrent_across_runs(mut self, n: usize) -> Self {
        self.max_concurrent_across_runs = Some(n);
        self
    }

    /// Retries the step on failure according to `policy`. A retry runs the
    /// step again with the same input event (and any collect set the failed
    /// attempt had taken).
    /// `policy` is a composed [`RetryPolicy`] or any [`Retry`].
    pub fn retry(mut self, policy: impl Retry) -> Self {
        self.retry = Some(policy.into_policy());
        self
    }

    /// Makes this step an error handler (see [`CatchErrors`]). Its input must
    /// accept [`StepFailed`](crate::StepFailed).
    pub fn catch_errors(mut self, catch: CatchErrors) -> Self {
        self.catch = Some(catch);
        self
    }

    /// At most `n` invocations of this step run at once; the rest queue in
    /// arrival order. Must be at least 1 (checked when the workflow is built).
    pub fn num_workers(mut self, n: usize) -> Self {
        self.num_workers = n;
        self
    }

    /// Declares that the step sends `E` through [`Context::send_event`], so that
    /// validation and drawings know about it.
    pub fn emits<E: Event>(mut self) -> Self {
        self.extra_emits.push(EventType::of::<E>());
        self
    }

    /// Declares that the step waits for `E` with `ctx.wait_for_event`, so
    /// drawings show where the answer goes (routing is unaffected).
    pub fn waits_for<E: Event>(mut self) -> Self {
        self.waits_for.push(EventType::of::<E>());
        self
    }

    /// Skips a graph check for this step.
    pub fn skip_check(mut self, check: GraphCheck) -> Self {
        self.skip_checks.push(check);
        self
    }

    /// The step's documentation (shown in drawings).
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = Some(doc.into());
        self
    }
}

/// A registered step: configuration, declared types and erased body.
pub(crate) struct StepSpec {
    pub(crate) config: StepConfig,
    pub(crate) accepts: Vec<EventType>,
    pub(crate) returns: Vec<EventType>,
    pub(crate) handler: ErasedHandler,
}

impl StepSpec {
    pub(crate) fn new<H: Handler<Args>, Args>(config: StepConfig, handler: H) -> Self {
        StepSpec {
            accepts: <H::Input as StepInput>::accepted_types(),
            returns: <H::Output as StepOutput>::emitted_types(),
            config,
            handler: erase(handler),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// Everything the step can emit: its return types plus declared sends.
    pub(crate) fn emits(&self) -> impl Iterator<Item = EventType> + '_ {
        self.returns.iter().chain(self.config.extra_emits.iter()).copied()
    }

    pub(crate) fn accepts(&self, ty: &EventType) -> bool {
        self.accepts.contains(ty)
    }
}

/// A read-only description of a step, for tools and drawings.
#[derive(Clone, Debug)]
pub struct StepInfo {
    /// The step's name.
    pub name: String,
    /// Events that trigger it.
    pub accepts: Vec<EventType>,
    /// Events it can return.
    pub returns: Vec<EventType>,
    /// Events it declared it sends with `send_event`.
    pub sends: Vec<EventType>,
    /// Its concurrency limit.
    pub num_workers: usize,
    /// Its doc comment.
    pub doc: Option<String>,
    /// Its retry policy.
    pub retry: Option<RetryPolicy>,
    /// Its error-handler role.
    pub catch_errors: Option<CatchErrors>,
}
