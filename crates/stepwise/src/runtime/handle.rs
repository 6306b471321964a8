//! [`RunHandle`]: the caller's side of a run.

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use crate::core::codec::snapshot::Snapshot;
use crate::core::error::SendError;
use crate::core::event::{AnyEvent, Event};
use crate::core::reducer::Tick;
use crate::core::state::StateStore;

use super::error::{RunError, StreamError};
use super::shared::{lock, RunShared};
use super::stream::{EventStream, StreamState};

/// The caller's side of a run: await it for the typed result, stream its
/// events, send it events, cancel it.
///
/// Dropping the handle does not stop the run.
#[must_use = "a run keeps going without its handle, but its result is lost"]
pub struct RunHandle<O> {
    guard: HandleGuard,
    _out: PhantomData<fn() -> O>,
}

impl<O> RunHandle<O> {
    /// The handle of the run `shared`.
    pub(super) fn new(shared: Arc<RunShared>) -> Self {
        RunHandle {
            guard: HandleGuard { shared },
            _out: PhantomData,
        }
    }
}

/// Owns the handle's reference to the run; dropping it without having taken
/// the stream tells the run nobody will read its events.
pub(super) struct HandleGuard {
    pub(super) shared: Arc<RunShared>,
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
        Ok(EventStream::new(Arc::clone(&self.guard.shared), local))
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
    /// [`RunOptions::state`](crate::RunOptions::state) to carry the state over.
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
