//! Events and helpers shared by the behaviour tests.
#![allow(dead_code)]

pub mod durable;

use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::{AnyEvent, EventStream, StepPhase, StepStateChanged, StopEvent, StreamExt};

/// A numbered ping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, stepwise::Event)]
pub struct Ping(pub u32);

/// A numbered pong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, stepwise::Event)]
pub struct Pong(pub u32);

/// One unit of fanned-out work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, stepwise::Event)]
pub struct Item {
    pub id: u32,
}

/// The result of one unit of work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, stepwise::Event)]
pub struct Done {
    pub id: u32,
}

/// A trigger carrying nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, stepwise::Event)]
pub struct Go;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, stepwise::Event)]
pub struct A(pub u32);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, stepwise::Event)]
pub struct B(pub u32);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, stepwise::Event)]
pub struct C(pub u32);

/// Progress written to the stream by steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, stepwise::Event)]
pub struct Progress(pub String);

/// A question for a human (an input request: published when emitted, may be terminal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, stepwise::Event)]
#[event(input_required)]
pub struct AskHuman {
    pub question: String,
}

/// A human's answer, sent from outside with `handle.send_event`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, stepwise::Event)]
#[event(human_response)]
pub struct HumanAnswer {
    pub text: String,
}

/// `Ping` or `StopEvent`, for steps that loop or stop.
#[derive(stepwise::EventUnion)]
pub enum PingOrStop {
    Ping(Ping),
    Stop(StopEvent),
}

/// An error a step returns.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("my error with code {code}")]
pub struct MyError {
    pub code: u32,
}

/// Sets its flag when dropped: proves a step future was dropped (cancelled).
pub struct DropFlag(pub Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A step that sleeps, then stops the run with "slow" — unless it is
/// cancelled first: `dropped` is set when its future is dropped, `finished`
/// only if it got past its sleep.
#[derive(Clone, Default)]
pub struct SlowStep {
    pub dropped: Arc<AtomicBool>,
    pub finished: Arc<AtomicBool>,
}

impl SlowStep {
    /// The step's body for `Go`, sleeping `sleep`.
    #[allow(dead_code)] // not every test binary uses it
    pub fn body(
        &self,
        sleep: Duration,
    ) -> impl Fn(Go) -> std::pin::Pin<Box<dyn std::future::Future<Output = StopEvent> + Send>> + Clone + Send + Sync + 'static
    {
        let flags = self.clone();
        move |_: Go| {
            let guard = DropFlag(Arc::clone(&flags.dropped));
            let finished = Arc::clone(&flags.finished);
            Box::pin(async move {
                let _guard = guard;
                tokio::time::sleep(sleep).await;
                finished.store(true, Ordering::SeqCst);
                StopEvent::new("slow")
            })
        }
    }
}

/// A shared, ordered log.
#[derive(Clone, Default)]
pub struct Log<T>(pub Arc<Mutex<Vec<T>>>);

impl<T: Clone> Log<T> {
    pub fn new() -> Self {
        Log(Arc::new(Mutex::new(Vec::new())))
    }
    pub fn push(&self, item: T) {
        self.0.lock().unwrap().push(item);
    }
    pub fn get(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Counts invocations in flight and remembers the maximum.
#[derive(Clone, Default)]
pub struct InFlight {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl InFlight {
    pub fn new() -> Self {
        Self::default()
    }
    /// Marks one invocation as running until the guard is dropped.
    pub fn enter(&self) -> InFlightGuard {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        InFlightGuard(Arc::clone(&self.now))
    }
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }
}

pub struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long [`settle`] waits. Tests run on tokio's paused clock wherever they
/// can, so a run that hangs fails at once instead of blocking the suite.
pub const HANG: Duration = Duration::from_secs(60);

/// Awaits `fut` (a run handle, a stream drain…), failing the test if it is
/// still pending after [`HANG`].
pub async fn settle<F: IntoFuture>(fut: F) -> F::Output {
    settle_within(HANG, fut).await
}

/// [`settle`] with an explicit limit.
pub async fn settle_within<F: IntoFuture>(limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(output) => output,
        Err(_) => panic!("still pending after {limit:?}: the run hangs"),
    }
}

/// Drains a stream to its end (within [`HANG`]).
pub async fn drain(mut stream: EventStream) -> Vec<AnyEvent> {
    settle(async move {
        let mut out = Vec::new();
        while let Some(event) = stream.next().await {
            out.push(event);
        }
        out
    })
    .await
}

/// The stable names of `events`, in order.
pub fn names(events: &[AnyEvent]) -> Vec<&'static str> {
    events.iter().map(AnyEvent::name).collect()
}

/// The typed events of type `E` among `events`, in order.
pub fn of_type<E: stepwise::Event>(events: &[AnyEvent]) -> Vec<E> {
    events.iter().filter_map(|e| e.downcast_ref::<E>().cloned()).collect()
}

/// `(step, phase)` of every `StepStateChanged` among `events`, in order.
pub fn phases(events: &[AnyEvent]) -> Vec<(String, StepPhase)> {
    of_type::<StepStateChanged>(events)
        .into_iter()
        .map(|s| (s.step, s.phase))
        .collect()
}

/// Position of the first event matching `pred`.
pub fn position(events: &[AnyEvent], pred: impl Fn(&AnyEvent) -> bool) -> usize {
    events
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no matching event in {events:?}"))
}
