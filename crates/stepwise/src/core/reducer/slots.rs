//! The bookkeeping a run's state is made of: per-step slots (queue and
//! worker set), the in-flight invocations (a generation-checked slab, so ids
//! are deterministic), retries waiting for their timer, recovery lineage.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::core::error::StepError;
use crate::core::event::AnyEvent;
use crate::core::ids::{InvocationId, StepIdx};

/// Recovery counts per error handler, carried by every event derived from a
/// handler's output. `None` (the common case) costs nothing.
pub(crate) type Lineage = Option<Arc<Vec<(StepIdx, u32)>>>;

pub(super) fn recoveries(lineage: &Lineage, handler: StepIdx) -> u32 {
    lineage
        .as_ref()
        .and_then(|l| l.iter().find(|(h, _)| *h == handler))
        .map_or(0, |(_, n)| *n)
}

pub(super) fn with_recovery(lineage: &Lineage, handler: StepIdx) -> Lineage {
    let mut counts: Vec<(StepIdx, u32)> = lineage.as_deref().cloned().unwrap_or_default();
    match counts.iter_mut().find(|(h, _)| *h == handler) {
        Some((_, n)) => *n += 1,
        None => counts.push((handler, 1)),
    }
    Some(Arc::new(counts))
}

/// Where an event stands in its retry history.
#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    /// 1 for the first try.
    pub(crate) number: u32,
    pub(crate) first_at: Duration,
    pub(crate) last_error: Option<StepError>,
    pub(crate) last_failed_at: Option<Duration>,
    /// How many of this attempt's sends and stream writes were already
    /// applied to the run while it was still running (at a `wait_for_event`
    /// in a journaled run, at once in an unjournaled one). When the attempt
    /// runs again after a resume, that many of its first effects are skipped.
    pub(crate) applied: u32,
    /// The waits of this attempt that were answered: (which wait of the step
    /// body's run it was, waiter id, answer). When the attempt runs again
    /// after a resume, the same waits get the same answers at once instead of
    /// waiting for new ones.
    pub(crate) answers: Vec<(u32, String, AnyEvent)>,
    /// Collect calls this attempt made (that reached the reducer).
    pub(crate) collected: u32,
    /// The full sets those calls returned: (call number, buffer, set). A
    /// failed attempt gives them back to their buffers; a re-run after a
    /// resume gets the same results for its first `collected` calls.
    pub(crate) sets: Vec<(u32, String, Vec<AnyEvent>)>,
}

/// An event waiting for a worker of its step.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) event: AnyEvent,
    /// `None` for a first try.
    pub(crate) attempt: Option<Box<Attempt>>,
    pub(crate) lineage: Lineage,
}

impl Queued {
    pub(super) fn fresh(event: AnyEvent, lineage: Lineage) -> Self {
        Queued {
            event,
            attempt: None,
            lineage,
        }
    }
}

/// One in-flight step invocation.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) step: StepIdx,
    pub(crate) worker: u32,
    /// Kept so a retry (or a snapshot) can re-run the invocation.
    pub(crate) event: AnyEvent,
    pub(crate) attempt: Attempt,
    pub(crate) lineage: Lineage,
    /// Collect calls this run of the step body has made so far (not part of
    /// the run's state: a re-run after a resume starts from 0 and is served
    /// its attempt's earlier results first).
    pub(crate) served: u32,
    /// Sends and stream writes this run of the step body has issued so far
    /// (not part of the run's state, like `served`).
    pub(crate) issued: u32,
    /// `wait_for_event` calls this run of the step body has made so far (part
    /// of the state: the reducer matches remembered answers by it).
    pub(crate) waits: u32,
    /// Open waiters of this invocation.
    pub(crate) waiting: u32,
}

/// A failed event waiting for its retry timer.
#[derive(Debug)]
pub(crate) struct PendingRetry {
    pub(crate) step: StepIdx,
    pub(crate) queued: Queued,
    pub(crate) due: Duration,
}

/// Per-step queue and worker slots.
#[derive(Debug, Default)]
pub(crate) struct StepSlot {
    pub(crate) queue: VecDeque<Queued>,
    /// Bit set of busy worker ids (worker ids are the smallest free integers).
    pub(crate) busy: Vec<u64>,
    pub(crate) active: usize,
}

impl StepSlot {
    pub(super) fn claim_worker(&mut self) -> u32 {
        let word = match self.busy.iter().position(|w| *w != u64::MAX) {
            Some(i) => i,
            None => {
                self.busy.push(0);
                self.busy.len() - 1
            }
        };
        let bit = self.busy[word].trailing_ones();
        self.busy[word] |= 1 << bit;
        self.active += 1;
        (word as u32) * 64 + bit
    }

    pub(super) fn release_worker(&mut self, worker: u32) {
        let (word, bit) = ((worker / 64) as usize, worker % 64);
        if let Some(w) = self.busy.get_mut(word) {
            if *w & (1 << bit) != 0 {
                *w &= !(1 << bit);
                self.active -= 1;
            }
        }
    }
}

/// Slab of in-flight invocations with generation-checked ids.
#[derive(Debug, Default)]
pub(crate) struct Invocations {
    pub(crate) slots: Vec<(u32, Option<InFlight>)>,
    pub(crate) free: Vec<u32>,
    pub(crate) len: usize,
}

impl Invocations {
    pub(super) fn insert(&mut self, entry: InFlight) -> InvocationId {
        self.len += 1;
        match self.free.pop() {
            Some(slot) => {
                let cell = &mut self.slots[slot as usize];
                cell.0 = cell.0.wrapping_add(1);
                cell.1 = Some(entry);
                InvocationId {
                    slot,
                    generation: cell.0,
                }
            }
            None => {
                // Grow 1, 2, 4, … rather than Vec's default first step of 4:
                // most runs never have more than one invocation in flight, and
                // 100,000 concurrent runs feel every slot (an `InFlight` is ~180 B).
                if self.slots.len() == self.slots.capacity() {
                    self.slots.reserve_exact(self.slots.len().max(1));
                }
                self.slots.push((0, Some(entry)));
                InvocationId {
                    slot: (self.slots.len() - 1) as u32,
                    generation: 0,
                }
            }
        }
    }

    pub(super) fn remove(&mut self, id: InvocationId) -> Option<InFlight> {
        let cell = self.slots.get_mut(id.slot as usize)?;
        if cell.0 != id.generation || cell.1.is_none() {
            return None;
        }
        self.free.push(id.slot);
        self.len -= 1;
        cell.1.take()
    }

    pub(super) fn get(&self, id: InvocationId) -> Option<&InFlight> {
        let cell = self.slots.get(id.slot as usize)?;
        (cell.0 == id.generation).then_some(cell.1.as_ref()).flatten()
    }

    pub(super) fn get_mut(&mut self, id: InvocationId) -> Option<&mut InFlight> {
        let cell = self.slots.get_mut(id.slot as usize)?;
        (cell.0 == id.generation).then_some(cell.1.as_mut()).flatten()
    }
}
