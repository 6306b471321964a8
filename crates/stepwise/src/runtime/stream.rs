//! The outbox that carries a run's published events to its [`EventStream`],
//! with the stream's buffer and backpressure.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::task::{Context as TaskContext, Poll, Waker};

use futures_util::stream::Stream;

use crate::core::event::AnyEvent;

use super::error::RunError;
use super::recorder::Recorder;
use super::shared::{lock, RunShared};

/// What the caller side reads: published events and the final result.
pub(super) struct Outbox {
    pub(super) events: VecDeque<AnyEvent>,
    /// Unread events kept at most (see [`RunOptions::stream_buffer`]).
    pub(super) capacity: usize,
    /// Events dropped before the stream was taken (oldest first).
    pub(super) missed: u64,
    /// Steps awaiting room in a full stream buffer.
    pub(super) room: Vec<Waker>,
    pub(super) stream: StreamState,
    pub(super) stream_waker: Option<Waker>,
    /// The error boxed: most runs complete, and every run pays for its outbox.
    pub(super) result: Option<Result<AnyEvent, Box<RunError>>>,
    pub(super) result_waker: Option<Waker>,
    /// Events published so far (the next event's sequence number).
    pub(super) published: u64,
}

#[derive(Default, PartialEq, Eq)]
pub(super) enum StreamState {
    /// Nobody took the stream yet; keep events for a later `stream_events`.
    #[default]
    Waiting,
    Taken,
    /// Nobody will read; drop published events.
    Detached,
}

impl Outbox {
    pub(super) fn new(published: u64, capacity: usize) -> Self {
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
pub(super) fn enqueue(shared: &RunShared, mut outbox: MutexGuard<'_, Outbox>, event: AnyEvent) {
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

/// A run's published events, lossless and in order. Ends after the stop event
/// or a termination event (when the run is over).
pub struct EventStream {
    shared: Arc<RunShared>,
    /// Events already moved out of the outbox (taken in batches, one lock each).
    local: VecDeque<AnyEvent>,
    ended: bool,
}

impl EventStream {
    /// The stream of the run `shared`, starting with `local`.
    pub(super) fn new(shared: Arc<RunShared>, local: VecDeque<AnyEvent>) -> Self {
        EventStream {
            shared,
            local,
            ended: false,
        }
    }
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

impl RunShared {
    /// Numbers `event` and puts it on the stream (unjournaled runs).
    pub(super) fn publish(&self, event: AnyEvent) {
        let mut outbox = lock(&self.outbox);
        outbox.published += 1;
        enqueue(self, outbox, event);
    }

    /// Gives `event` the run's next stream sequence number and records it in
    /// the journal; [`RunShared::deliver`] puts it on the stream later.
    pub(super) fn number(&self, event: &AnyEvent, recorder: &mut dyn Recorder) {
        let mut outbox = lock(&self.outbox);
        let seq = outbox.published;
        outbox.published += 1;
        recorder.published(seq, event);
    }

    /// Puts an already numbered event on the stream.
    pub(super) fn deliver(&self, event: AnyEvent) {
        enqueue(self, lock(&self.outbox), event);
    }

    /// The stream's buffer was emptied: steps paused by a full buffer go on.
    pub(super) fn make_room(&self, outbox: &mut Outbox) {
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
}
