//! The [`Context`] a step sees: send events, collect fan-in sets, publish to
//! the stream, and know which run, step and worker it is.

pub(crate) mod collect;
pub(crate) mod host;
pub(crate) mod wait;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use crate::core::context::collect::{CollectSet, Expectation, ExpectedEvents};
use crate::core::context::wait::WaitFor;
use crate::core::error::{SendError, WaitError};
use crate::core::event::{AnyEvent, Event, EventType, ToAnyEvent};
use crate::core::ids::RetryInfo;
use crate::core::ids::{InvocationId, StepIdx};
use crate::core::state::StateStore;

use host::StepHost;

/// The buffer used when a collect call names none.
const DEFAULT_BUFFER: &str = "default";

/// What a step invocation can do to its run. Cheap to clone (one `Arc`), so a
/// step may hand it to tasks it spawns.
#[derive(Clone)]
pub struct Context {
    /// The run, behind the port (see [`host`]).
    run: Arc<dyn StepHost>,
    step: StepIdx,
    worker: u32,
    invocation: InvocationId,
}

impl Context {
    pub(crate) fn new(run: Arc<dyn StepHost>, step: StepIdx, worker: u32, invocation: InvocationId) -> Self {
        Context {
            run,
            step,
            worker,
            invocation,
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        self.run.run_id()
    }

    /// The workflow's name.
    pub fn workflow_name(&self) -> &str {
        self.run.workflow_name()
    }

    /// The name of the step this invocation belongs to.
    pub fn step_name(&self) -> &str {
        self.run.step_name(self.step)
    }

    /// The worker slot (0 ≤ id < `num_workers`) this invocation runs on.
    pub fn worker_id(&self) -> u32 {
        self.worker
    }

    /// Sends `event` to every step that accepts its type. An event nobody
    /// accepts is published as [`UnhandledEvent`](crate::UnhandledEvent).
    /// Sending the workflow's stop event completes the run. Does nothing once
    /// the run has ended.
    pub fn send_event<E: Event>(&self, event: E) {
        // The only possible error is "run ended", which a step cannot act on.
        let _ = self.run.send(AnyEvent::new(event), None, self.invocation);
    }

    /// Sends `event` to the step named `step` only.
    ///
    /// Fails, naming both, when the step does not exist or does not accept `E`.
    pub fn send_event_to<E: Event>(&self, step: &str, event: E) -> Result<(), SendError> {
        match self.run.send(AnyEvent::new(event), Some(step), self.invocation) {
            Err(SendError::RunEnded { .. }) => Ok(()),
            other => other,
        }
    }

    /// Sends an already type-erased event (see [`Context::send_event`]).
    pub fn send_any(&self, event: AnyEvent) {
        let _ = self.run.send(event, None, self.invocation);
    }

    /// Publishes `event` to the run's stream (it is not routed to steps).
    ///
    /// The event is written when this returns. Awaiting the result as well
    /// (`ctx.write_event_to_stream(e).await`) waits while the stream's reader
    /// is a full buffer behind (see [`RunOptions::stream_buffer`](crate::RunOptions::stream_buffer)):
    /// do that in a loop that writes many events without awaiting anything
    /// else, or memory grows with what the reader has not read yet.
    ///
    /// In a journaled run the write is committed as it is made, together with
    /// the step's earlier `send_event`s (which are otherwise held until the
    /// step ends), so readers see progress while the step runs; after a
    /// crash, the step's re-run does not write it a second time.
    pub fn write_event_to_stream<E: Event>(&self, event: E) -> StreamWrite<'_> {
        self.run.write_to_stream(self.invocation, AnyEvent::new(event));
        StreamWrite { run: &*self.run }
    }

    /// The run's state, shared by all steps: typed
    /// (`ctx.state().edit(|s: &mut MyState| s.count += 1).await?`) or untyped
    /// (`ctx.state().set_path("user.name", "ada").await?`).
    pub fn state(&self) -> &StateStore {
        self.run.state()
    }

    /// This invocation's place in its retry history: attempt 1 is the first
    /// try; later attempts carry the previous error.
    pub fn retry_info(&self) -> RetryInfo {
        self.run.retry_info(self.invocation).unwrap_or(RetryInfo {
            attempt: 1,
            elapsed: std::time::Duration::ZERO,
            last_error: None,
            last_failed_at: None,
        })
    }

    /// Suspends this step until an event matching `wait` arrives (sent by
    /// another step or from outside with `send_event`), and returns it. The
    /// matching event is not also routed to this step as a new invocation;
    /// other steps that accept its type still receive it. When every piece of
    /// work in the run is waiting like this, the run publishes
    /// [`WorkflowIdle`](crate::WorkflowIdle).
    ///
    /// Dropping the returned future before it resolves (in a `select!`, or
    /// under a timeout of the step's own) withdraws the wait: later events are
    /// routed as if it had never been made.
    ///
    /// In a journaled run, the step's earlier `send_event`s are applied when
    /// it starts to wait (they are otherwise held until the step ends or
    /// writes to the stream), so it can wait for what they cause.
    ///
    /// After a resume (from a journal or a snapshot) a step that was waiting
    /// runs again from its start: it does not repeat the sends and stream
    /// writes it made before the wait, the wait's event is not published a
    /// second time, and a wait that had already been answered returns the
    /// same answer at once. See [`Workflow::resume`](crate::Workflow::resume).
    ///
    /// `E` must be part of the workflow's event registry (declare it with the
    /// step's `waits_for = [E]`, or have a step accept it), and so must the
    /// event the wait publishes: otherwise the wait fails at once with
    /// [`WaitError::UndeclaredEvent`] / [`WaitError::UndeclaredPublish`],
    /// since a journal or snapshot of it could not be resumed.
    pub async fn wait_for_event<E: Event>(&self, wait: WaitFor<E>) -> Result<E, WaitError> {
        let spec = wait.into_spec();
        self.check_declared(&spec)?;
        let (key, receiver) = self.run.add_waiter(self.invocation, spec)?;
        let mut withdraw = WithdrawOnDrop {
            run: &*self.run,
            key: Some(key),
        };
        let received = receiver.await;
        withdraw.key = None; // answered, timed out or ended: nothing to withdraw
        match received {
            Ok(Ok(event)) => event
                .downcast::<E>()
                .map_err(|_| WaitError::RunEnded { event: E::NAME }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(WaitError::RunEnded { event: E::NAME }),
        }
    }

    /// A wait whose types the registry lacks could be run but never read back.
    fn check_declared(&self, spec: &crate::core::context::wait::WaiterSpec) -> Result<(), WaitError> {
        let known = |ty: EventType| self.run.knows_event(ty);
        if !known(spec.ty) {
            return Err(WaitError::UndeclaredEvent {
                workflow: self.run.workflow_name().to_owned(),
                step: self.step_name().to_owned(),
                event: spec.ty.name(),
            });
        }
        if let Some(publish) = &spec.publish {
            if !known(publish.event_type()) {
                return Err(WaitError::UndeclaredPublish {
                    workflow: self.run.workflow_name().to_owned(),
                    step: self.step_name().to_owned(),
                    event: publish.name().to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Fan-in, untyped: buffers `event` (a copy) for this step and returns the
    /// whole set once one event per entry of `expected` has arrived, ordered by
    /// `expected` (arrival order within a type). Returns `None` until then. An
    /// event whose type is not (or no longer) missing is not buffered.
    ///
    /// Exactly one invocation receives a full set, even when the last events
    /// arrive at the same instant.
    ///
    /// `expected` is a slice, array or `Vec` of [`EventType`]s, read in full
    /// on every call, or a shared list, an [`EventList`](crate::EventList) or
    /// an `Arc<[EventType]>`, summarised once: for a large fan-in build one
    /// and share it, so that each call costs O(1) instead of O(K).
    pub fn collect_events<L: ExpectedEvents + ?Sized>(
        &self,
        event: &impl ToAnyEvent,
        expected: &L,
    ) -> Option<Vec<AnyEvent>> {
        self.collect_events_in(DEFAULT_BUFFER, event, expected)
    }

    /// [`Context::collect_events`] with a named buffer, for steps that run
    /// several independent fan-ins.
    pub fn collect_events_in<L: ExpectedEvents + ?Sized>(
        &self,
        buffer: &str,
        event: &impl ToAnyEvent,
        expected: &L,
    ) -> Option<Vec<AnyEvent>> {
        let expect = expected.expectation();
        self.run.collect(self.invocation, buffer, event.to_any_event(), &expect)
    }

    /// Fan-in, typed: waits for one event of each tuple type.
    ///
    /// ```ignore
    /// if let Some((header, body)) = ctx.collect::<(Header, Body)>(&ev) { /* … */ }
    /// ```
    pub fn collect<T: CollectSet>(&self, event: &impl ToAnyEvent) -> Option<T> {
        let expected = T::expected();
        let set = self.collect_events(event, &expected)?;
        T::from_events(set)
    }

    /// Fan-in of `n` events of one type, in arrival order.
    pub fn collect_n<E: Event>(&self, event: &E, n: usize) -> Option<Vec<E>> {
        let expect = Expectation::repeat(EventType::of::<E>(), n);
        let set = self
            .run
            .collect(self.invocation, DEFAULT_BUFFER, AnyEvent::new(event.clone()), &expect)?;
        set.into_iter().map(|e| e.downcast::<E>().ok()).collect()
    }
}

/// Withdraws a waiter whose `wait_for_event` future is dropped unanswered.
struct WithdrawOnDrop<'a> {
    run: &'a dyn StepHost,
    key: Option<u64>,
}

impl Drop for WithdrawOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.run.withdraw_waiter(key);
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("run_id", &self.run.run_id())
            .field("step", &self.step_name())
            .field("worker", &self.worker)
            .finish()
    }
}

/// Returned by [`Context::write_event_to_stream`]: the event is already
/// written; awaiting this waits until the stream's buffer has room (at once
/// when it has, or when nobody reads the stream).
pub struct StreamWrite<'a> {
    run: &'a dyn StepHost,
}

impl std::fmt::Debug for StreamWrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWrite")
            .field("run_id", &self.run.run_id())
            .finish()
    }
}

impl Future for StreamWrite<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        self.run.poll_room(cx)
    }
}
