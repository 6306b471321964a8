//! A run's timers: one min-heap and one tokio sleep.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use crate::core::reducer::Timer;

/// The driver's timers: a min-heap of (due, sequence, timer) and one sleep
/// armed for the earliest. The sequence breaks ties in arming order, so two
/// timers due at the same instant fire deterministically.
pub(super) struct Timers {
    pub(super) heap: BinaryHeap<Reverse<(Duration, u64, TimerKey)>>,
    pub(super) next_seq: u64,
    pub(super) sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    pub(super) started: tokio::time::Instant,
}

/// `Timer` with a total order, for the heap.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKey {
    Retry(u64),
    Waiter(u64),
}

impl Timers {
    pub(super) fn new(started: tokio::time::Instant) -> Self {
        Timers {
            heap: BinaryHeap::new(),
            next_seq: 0,
            sleep: None,
            started,
        }
    }

    pub(super) fn arm(&mut self, due: Duration, timer: Timer) {
        let key = match timer {
            Timer::Retry(id) => TimerKey::Retry(id),
            Timer::WaiterTimeout(id) => TimerKey::Waiter(id),
        };
        self.heap.push(Reverse((due, self.next_seq, key)));
        self.next_seq += 1;
        self.rearm();
    }

    /// Points the sleep at the earliest timer.
    pub(super) fn rearm(&mut self) {
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

    pub(super) fn poll(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }

    /// Removes and returns the timers due at `now`, in order.
    pub(super) fn take_due(&mut self, now: Duration) -> Vec<Timer> {
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
