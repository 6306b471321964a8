//! The driver: one tokio task per run that polls its step invocations, fires
//! its timers, and ends it; plus the task that times a run out.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::core::context::host::StepHost;
use crate::core::context::Context;
use crate::core::define::step::{Emitted, StepFuture};
use crate::core::error::StepError;
use crate::core::event::AnyEvent;
use crate::core::reducer::{InvocationId, StartWorker, StepIdx, Tick, Timer};

use super::end::finish_run;
use super::error::RunError;
use super::launch::arm_timeout;
use super::limits::{gated, limits};
use super::recorder::{Claimed, JournalError};
use super::shared::{lock, RunShared, POLLING_RUN};
use super::timers::Timers;

/// A step invocation being polled by the driver. Catches panics so a failing
/// step fails its run, never the process.
pub(super) struct StepTask {
    pub(super) invocation: InvocationId,
    /// The step's index (a `StepIdx`), kept small: the driver holds one
    /// task inline, and 100,000 live runs feel every byte.
    pub(super) step: u32,
    pub(super) worker: u32,
    pub(super) future: StepFuture,
    /// Boxed, and only when a subscriber listens (see [`step_task`]).
    pub(super) span: Option<Box<tracing::Span>>,
}

impl Future for StepTask {
    type Output = StepFinished;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let _entered = this.span.as_deref().map(tracing::Span::enter);
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.future.as_mut().poll(cx)));
        let result = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(result)) => result,
            Err(payload) => Err(StepError::panic(panic_message(&*payload))),
        };
        Poll::Ready(StepFinished {
            invocation: this.invocation,
            step: this.step as StepIdx,
            worker: this.worker,
            result,
        })
    }
}

pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// A step invocation's outcome, as the driver receives it.
pub(super) struct StepFinished {
    pub(super) invocation: InvocationId,
    pub(super) step: StepIdx,
    pub(super) worker: u32,
    pub(super) result: Result<Emitted, StepError>,
}

/// The run's in-flight step invocations. A run mostly has one at a time (a
/// chain of steps): that one is polled in place with the driver's own waker,
/// with no allocation; only when several run at once do the others go into a
/// `FuturesUnordered` (made on first use: it allocates), which gives each its
/// own waker so that only the ready ones are polled.
#[derive(Default)]
struct Running {
    single: Option<StepTask>,
    many: Option<FuturesUnordered<StepTask>>,
}

impl Running {
    fn push(&mut self, task: StepTask) {
        if self.is_empty() {
            self.single = Some(task);
        } else {
            self.many.get_or_insert_with(FuturesUnordered::new).push(task);
        }
    }

    fn is_empty(&self) -> bool {
        self.single.is_none() && self.many.as_ref().is_none_or(FuturesUnordered::is_empty)
    }

    /// The next finished invocation, if one is ready.
    fn poll_next(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<StepFinished>> {
        if let Some(task) = self.single.as_mut() {
            if let Poll::Ready(finished) = Pin::new(task).poll(cx) {
                self.single = None;
                return Poll::Ready(Some(finished));
            }
        }
        match self.many.as_mut() {
            Some(many) if !many.is_empty() => many.poll_next_unpin(cx),
            _ => Poll::Pending,
        }
    }
}

pub(super) enum Wake {
    StepDone(StepFinished),
    Handoff,
    TimersDue,
}

/// How long a cancel or a timeout leaves the run's end to a driver that is
/// not inside a step body before ending it from outside.
pub(super) const DRIVER_GRACE: Duration = Duration::from_millis(20);

/// Times the run out at `deadline`. A task of its own rather than a timer in
/// the driver, so that a step body that never yields (a CPU loop, a blocking
/// call) cannot hold the timeout back: on a multi-threaded runtime this task
/// runs on another thread and ends the run while the body still runs.
pub(super) async fn time_out(run: std::sync::Weak<RunShared>, deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await;
    if let Some(shared) = run.upgrade() {
        shared.apply(Tick::Timeout);
        shared.finish_soon().await;
    }
}

/// Runs the driver with `POLLING_RUN` set while it is polled, so ticks that
/// steps and the driver itself reduce never wake the driver needlessly.
pub(super) fn as_driver(
    shared: Arc<RunShared>,
    claim: Option<Claimed>,
    run_slot: Option<Arc<Semaphore>>,
) -> impl Future<Output = ()> + Send {
    let address = shared.address();
    let mut driver = Box::pin(drive(shared, claim, run_slot));
    poll_fn(move |cx| {
        let previous = POLLING_RUN.replace(address);
        let polled = driver.as_mut().poll(cx);
        POLLING_RUN.set(previous);
        polled
    })
}

/// How many loop turns the driver makes before yielding to the scheduler, so a
/// busy run cannot starve other tasks on its worker thread.
pub(super) const TURNS_PER_YIELD: u32 = 512;

/// The run's driver: executes worker starts and the finish produced by the
/// reducer, and turns step completions and the timer into ticks.
pub(super) async fn drive(shared: Arc<RunShared>, claim: Option<Claimed>, run_slot: Option<Arc<Semaphore>>) {
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
    // Held until the driver returns, however the run ends.
    let _slot = match run_slot {
        Some(semaphore) => match wait_for_slot(&shared, semaphore).await {
            Some(permit) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    if !shared.is_closed() {
                        arm_timeout(&shared, &runtime, tracing::Span::current());
                    }
                }
                Some(permit)
            }
            // Ended while waiting (cancelled): the loop below ends it.
            None => None,
        },
        None => None,
    };
    let mut running = Running::default();
    let mut starts: Vec<StartWorker> = Vec::with_capacity(1);
    let mut timers = Timers::new(shared.start_clock());
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
                let polled = running.poll_next(cx);
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

/// Waits for the run's slot under `num_concurrent_runs` (FIFO). Ticks reduced
/// meanwhile (events sent to the run) leave their step starts queued for the
/// loop; a finish (a cancel) or a journal fault ends the wait without a slot.
async fn wait_for_slot(shared: &RunShared, semaphore: Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    let mut acquire = Box::pin(semaphore.acquire_owned());
    poll_fn(|cx| {
        shared.driver.register(cx.waker());
        if shared.pending.swap(false, Ordering::AcqRel) {
            let core = lock(&shared.core);
            if core.finish.is_some() || core.ended.is_some() || core.fault.is_some() {
                // Set again so that the loop looks at the finish at once.
                shared.pending.store(true, Ordering::Release);
                return Poll::Ready(None);
            }
        }
        match acquire.as_mut().poll(cx) {
            Poll::Ready(permit) => Poll::Ready(permit.ok()),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Ends a run its journal refused before any step ran.
pub(super) fn end_by_journal(shared: &RunShared, error: JournalError) {
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
pub(super) fn report_step(shared: &RunShared, finished: &StepFinished) {
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
pub(super) struct AbortOnDrop(Arc<RunShared>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.0.is_closed() {
            self.0.close(Err(RunError::Aborted {
                run_id: self.0.run_id.to_string(),
            }));
        }
    }
}

pub(super) fn step_task(shared: &Arc<RunShared>, start: StartWorker) -> StepTask {
    let step = &shared.workflow.steps[start.step];
    // Made only when a subscriber listens at INFO: otherwise (and with
    // tracing's `log` feature, which a dependency may turn on) even a
    // disabled span costs several calls per step.
    let span = tracing::level_enabled!(tracing::Level::INFO).then(|| {
        Box::new(tracing::info_span!(
            "stepwise.step",
            run_id = %shared.run_id,
            step = %step.name(),
            worker = start.worker,
            event = start.event.name()
        ))
    });
    let ctx = Context::new(
        Arc::clone(shared) as Arc<dyn StepHost>,
        start.step,
        start.worker,
        start.invocation,
    );
    // A handler may panic before it returns its future (a plain closure doing
    // work before its `async` block): that fails the step like a panic inside it.
    let slot = limits(&shared.workflow).and_then(|limits| limits.step_slot(start.step));
    let future = match slot {
        Some(semaphore) => {
            let workflow = Arc::clone(&shared.workflow);
            let (index, event) = (start.step, start.event);
            // Polled under the task's `catch_unwind`, so a panicking handler
            // fails the step here too.
            gated(semaphore, move || (workflow.steps[index].handler)(ctx, event))
        }
        None => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (step.handler)(ctx, start.event))) {
            Ok(future) => future,
            Err(payload) => Box::pin(std::future::ready(Err(StepError::panic(panic_message(&*payload))))),
        },
    };
    StepTask {
        invocation: start.invocation,
        step: start.step as u32,
        worker: start.worker,
        future,
        span,
    }
}
