//! Snapshots: a run's exact state as versioned JSON.
//!
//! A snapshot holds everything needed to continue a run — queued and in-flight
//! events, collect buffers, waiters, pending retries, the state store, the run
//! id — and resumes in any process that has the same workflow definition.
//! In-flight invocations are kept as they were (so a journal replay can go on
//! from the snapshot exactly); resuming applies a `Resume` tick, which re-queues
//! them to run again.

use std::any::TypeId;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::codec::journal::{DecodeError, Decoder, StoredEvent};
use crate::core::context::collect::CollectBuffer;
use crate::core::define::workflow::WorkflowCore;
use crate::core::error::StepError;
use crate::core::event::AnyEvent;
use crate::core::ids::RunStatus;
use crate::core::reducer::{
    Attempt, InFlight, InvocationId, Invocations, Lineage, PendingRetry, Queued, Recovered, RunState, StepSlot, Waiter,
};

mod check;

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// A run's exact state, serialisable as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// Snapshot format version ([`SNAPSHOT_FORMAT`]).
    pub format: u32,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow definition's fingerprint.
    pub fingerprint: String,
    /// The run's id.
    pub run_id: String,
    /// How many journal entries the snapshot covers.
    pub journal_seq: u64,
    /// The run's clock when the snapshot was taken (µs).
    pub at_us: u64,
    /// How many events the run had published.
    pub published: u64,
    /// The Rust type name of the state.
    pub state_type: String,
    /// The state, as JSON.
    pub state: Value,
    /// Where the run stood: running, or how it had ended. A snapshot of a
    /// cancelled run resumes (the run goes on as if it had not been
    /// cancelled); one of a completed or failed run does not.
    #[serde(default = "running")]
    pub status: RunStatus,
    /// The reducer state.
    pub(crate) run: RunData,
}

fn running() -> RunStatus {
    RunStatus::Running
}

impl Snapshot {
    /// The snapshot as JSON text.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// The reducer part of the snapshot (queues, in-flight invocations,
    /// buffers, waiters, retries) as JSON. Two runs in the same state give
    /// equal values.
    pub fn reducer_state(&self) -> Value {
        serde_json::to_value(&self.run).unwrap_or(Value::Null)
    }

    /// Checks the snapshot as a whole against `workflow` (counts that match
    /// their lists, known steps, workers, invocation ids, waiters, timers,
    /// attempts); the first problem found, as a sentence.
    pub(crate) fn validate(&self, workflow: &WorkflowCore) -> Result<(), String> {
        check::check(workflow, self)
    }

    /// Reads a snapshot from JSON text, checking its format version.
    pub fn from_json(text: &str) -> Result<Self, DecodeError> {
        let value: Value = serde_json::from_str(text).map_err(|e| DecodeError::Malformed {
            what: "snapshot".into(),
            reason: e.to_string(),
        })?;
        let reason = match value.get("format") {
            Some(format) if format.as_u64() == Some(u64::from(SNAPSHOT_FORMAT)) => None,
            Some(format) => Some(format!(
                "format {format} is not supported (this build reads format {SNAPSHOT_FORMAT})"
            )),
            None => Some(format!(
                "it has no `format` field; is it a stepwise snapshot? (this build reads format {SNAPSHOT_FORMAT})"
            )),
        };
        if let Some(reason) = reason {
            return Err(DecodeError::Malformed {
                what: "snapshot".into(),
                reason,
            });
        }
        serde_json::from_value(value).map_err(|e| DecodeError::Malformed {
            what: "snapshot".into(),
            reason: e.to_string(),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RunData {
    steps: Vec<StepData>,
    invocations: Vec<SlotData>,
    free: Vec<u32>,
    buffers: Vec<BufferData>,
    retries: Vec<RetryData>,
    waiters: Vec<WaiterData>,
    recovered_waiters: Vec<RecoveredData>,
    next_timer: u64,
    idle: bool,
    finished: bool,
}

impl RunData {
    /// True when the run had ended.
    pub(crate) fn finished(&self) -> bool {
        self.finished
    }

    /// Makes an ended (cancelled) run's state resumable again.
    pub(crate) fn reopen(&mut self) {
        self.finished = false;
        self.idle = false;
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StepData {
    name: String,
    queue: Vec<QueuedData>,
    busy: Vec<u64>,
    active: usize,
}

/// A queued or buffered event in a snapshot — the bulk of a large fan-out's
/// snapshot: the live event when a snapshot is taken (written straight to
/// JSON text when the snapshot is, with no `Value` tree per event in
/// between), the stored form when one is read.
#[derive(Clone, Debug)]
enum BulkEvent {
    Live(AnyEvent),
    Stored(StoredEvent),
}

impl Serialize for BulkEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            BulkEvent::Live(event) => event.serialize(serializer),
            BulkEvent::Stored(event) => event.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for BulkEvent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        StoredEvent::deserialize(deserializer).map(BulkEvent::Stored)
    }
}

impl BulkEvent {
    fn decode(self, d: &Decoder<'_>) -> Result<AnyEvent, DecodeError> {
        match self {
            BulkEvent::Live(event) => Ok(event),
            BulkEvent::Stored(event) => d.event(event),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct QueuedData {
    event: BulkEvent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt: Option<AttemptData>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    lineage: Vec<(String, u32)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct AttemptData {
    number: u32,
    first_at_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<ErrorData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_failed_at_us: Option<u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    applied: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    answers: Vec<(u32, String, StoredEvent)>,
    #[serde(default, skip_serializing_if = "is_zero")]
    collected: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sets: Vec<(u32, String, Vec<StoredEvent>)>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ErrorData {
    message: String,
    panicked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retryable: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SlotData {
    generation: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entry: Option<InFlightData>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct InFlightData {
    step: String,
    worker: u32,
    event: StoredEvent,
    attempt: AttemptData,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    lineage: Vec<(String, u32)>,
    waiting: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    waits: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct BufferData {
    step: String,
    buffer: String,
    events: Vec<BulkEvent>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct RetryData {
    timer: u64,
    step: String,
    queued: QueuedData,
    due_us: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct WaiterData {
    key: u64,
    invocation: [u32; 2],
    #[serde(default, skip_serializing_if = "is_zero")]
    call: u32,
    step: String,
    id: String,
    event: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    requirements: Vec<(String, Value)>,
}

/// A waiter whose step has not waited again since a resume.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum RecoveredData {
    Full {
        step: String,
        id: String,
        event: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        requirements: Vec<(String, Value)>,
        /// An answer that arrived before the step waited again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held: Option<StoredEvent>,
    },
    /// Written by builds that kept only (step, waiter id).
    Bare(String, String),
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Writing: live state → data.
struct Writer<'a> {
    workflow: &'a WorkflowCore,
}

impl Writer<'_> {
    fn event(&self, event: &AnyEvent) -> Result<StoredEvent, serde_json::Error> {
        StoredEvent::of(event)
    }

    fn events(&self, events: &[AnyEvent]) -> Result<Vec<StoredEvent>, serde_json::Error> {
        events.iter().map(|e| self.event(e)).collect()
    }

    fn step(&self, step: usize) -> String {
        self.workflow.steps[step].name().to_owned()
    }

    fn lineage(&self, lineage: &Lineage) -> Vec<(String, u32)> {
        lineage
            .iter()
            .flat_map(|l| l.iter())
            .map(|(h, n)| (self.step(*h), *n))
            .collect()
    }

    fn attempt(&self, attempt: &Attempt) -> Result<AttemptData, serde_json::Error> {
        Ok(AttemptData {
            number: attempt.number,
            first_at_us: us(attempt.first_at),
            // The retry decision for this error is already made, so it is not kept.
            last_error: attempt.last_error.as_ref().map(|e| ErrorData {
                message: e.to_string(),
                panicked: e.is_panic(),
                retryable: None,
            }),
            last_failed_at_us: attempt.last_failed_at.map(us),
            applied: attempt.applied,
            answers: attempt
                .answers
                .iter()
                .map(|(call, id, event)| Ok((*call, id.clone(), self.event(event)?)))
                .collect::<Result<_, serde_json::Error>>()?,
            collected: attempt.collected,
            sets: attempt
                .sets
                .iter()
                .map(|(n, buffer, set)| Ok((*n, buffer.clone(), self.events(set)?)))
                .collect::<Result<_, serde_json::Error>>()?,
        })
    }

    fn queued(&self, queued: &Queued) -> Result<QueuedData, serde_json::Error> {
        Ok(QueuedData {
            event: BulkEvent::Live(queued.event.clone()),
            attempt: queued.attempt.as_deref().map(|a| self.attempt(a)).transpose()?,
            lineage: self.lineage(&queued.lineage),
        })
    }
}

impl RunState {
    /// The exact state as data (deterministic: maps are sorted).
    pub(crate) fn to_data(&self) -> Result<RunData, serde_json::Error> {
        let w = Writer {
            workflow: self.workflow(),
        };
        let steps = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                Ok(StepData {
                    name: w.step(i),
                    queue: slot.queue.iter().map(|q| w.queued(q)).collect::<Result<_, _>>()?,
                    busy: slot.busy.clone(),
                    active: slot.active,
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let invocations = self
            .invocations
            .slots
            .iter()
            .map(|(generation, entry)| {
                let entry = match entry {
                    None => None,
                    Some(f) => Some(InFlightData {
                        step: w.step(f.step),
                        worker: f.worker,
                        event: w.event(&f.event)?,
                        attempt: w.attempt(&f.attempt)?,
                        lineage: w.lineage(&f.lineage),
                        waiting: f.waiting,
                        waits: f.waits,
                    }),
                };
                Ok(SlotData {
                    generation: *generation,
                    entry,
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let mut buffers = self
            .buffers
            .iter()
            .map(|((step, buffer), buf)| {
                let events = buf.by_type.iter().flat_map(|(_, q)| q.iter().cloned());
                Ok(BufferData {
                    step: w.step(*step),
                    buffer: buffer.clone(),
                    events: events.map(BulkEvent::Live).collect(),
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        buffers.sort_by(|a, b| (&a.step, &a.buffer).cmp(&(&b.step, &b.buffer)));
        let retries = self
            .retries
            .iter()
            .map(|(timer, r)| {
                Ok(RetryData {
                    timer: *timer,
                    step: w.step(r.step),
                    queued: w.queued(&r.queued)?,
                    due_us: us(r.due),
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let waiters = self
            .waiters
            .iter()
            .map(|wt| WaiterData {
                key: wt.key,
                invocation: wt.invocation.to_pair(),
                call: wt.call,
                step: w.step(wt.step),
                id: wt.id.clone(),
                event: wt.ty.name().to_owned(),
                requirements: wt.requirements.clone(),
            })
            .collect();
        Ok(RunData {
            steps,
            invocations,
            free: self.invocations.free.clone(),
            buffers,
            retries,
            waiters,
            recovered_waiters: self
                .recovered_waiters
                .iter()
                .map(|r| {
                    Ok(match r.ty {
                        Some(ty) => RecoveredData::Full {
                            step: w.step(r.step),
                            id: r.id.clone(),
                            event: ty.name().to_owned(),
                            requirements: r.requirements.clone(),
                            held: r.held.as_ref().map(|e| w.event(e)).transpose()?,
                        },
                        None => RecoveredData::Bare(w.step(r.step), r.id.clone()),
                    })
                })
                .collect::<Result<_, serde_json::Error>>()?,
            next_timer: self.next_timer,
            idle: self.idle,
            finished: self.finished,
        })
    }

    /// Rebuilds the exact state from data.
    pub(crate) fn from_data(
        workflow: Arc<WorkflowCore>,
        run_id: Arc<str>,
        internal_events: bool,
        data: RunData,
    ) -> Result<RunState, DecodeError> {
        let mut state = RunState::new(Arc::clone(&workflow), run_id, internal_events);
        let d = Decoder { workflow: &workflow };
        let step = |name: &str| {
            workflow.step_index(name).ok_or_else(|| DecodeError::UnknownStep {
                workflow: workflow.name.clone(),
                step: name.to_owned(),
            })
        };
        let lineage = |items: Vec<(String, u32)>| -> Result<Lineage, DecodeError> {
            if items.is_empty() {
                return Ok(None);
            }
            let counts = items
                .into_iter()
                .map(|(h, n)| Ok((step(&h)?, n)))
                .collect::<Result<Vec<_>, DecodeError>>()?;
            Ok(Some(Arc::new(counts)))
        };
        let attempt = |a: AttemptData| -> Result<Attempt, DecodeError> {
            Ok(Attempt {
                number: a.number,
                first_at: Duration::from_micros(a.first_at_us),
                last_error: a
                    .last_error
                    .map(|e| StepError::restored(e.message, e.panicked, e.retryable)),
                last_failed_at: a.last_failed_at_us.map(Duration::from_micros),
                applied: a.applied,
                answers: a
                    .answers
                    .into_iter()
                    .map(|(call, id, event)| Ok((call, id, d.event(event)?)))
                    .collect::<Result<_, DecodeError>>()?,
                collected: a.collected,
                sets: a
                    .sets
                    .into_iter()
                    .map(|(n, buffer, set)| {
                        Ok((
                            n,
                            buffer,
                            set.into_iter().map(|e| d.event(e)).collect::<Result<_, _>>()?,
                        ))
                    })
                    .collect::<Result<_, DecodeError>>()?,
            })
        };
        let queued = |q: QueuedData| -> Result<Queued, DecodeError> {
            Ok(Queued {
                event: q.event.decode(&d)?,
                attempt: q.attempt.map(|a| attempt(a).map(Box::new)).transpose()?,
                lineage: lineage(q.lineage)?,
            })
        };
        // Steps are matched by name: a definition that gained steps (resumed
        // with `allow_changed_definition`) gives them empty slots; a step the
        // snapshot names but the workflow lacks is an error.
        for s in data.steps {
            let index = step(&s.name)?;
            let mut slot = StepSlot {
                busy: s.busy,
                active: s.active,
                ..StepSlot::default()
            };
            for q in s.queue {
                slot.queue.push_back(queued(q)?);
            }
            state.steps[index] = slot;
        }
        let mut invocations = Invocations {
            free: data.free,
            ..Invocations::default()
        };
        for slot in data.invocations {
            let entry = match slot.entry {
                None => None,
                Some(f) => {
                    if f.waiting > 0 {
                        state.waiting_invocations += 1;
                    }
                    Some(InFlight {
                        step: step(&f.step)?,
                        worker: f.worker,
                        event: d.event(f.event)?,
                        attempt: attempt(f.attempt)?,
                        lineage: lineage(f.lineage)?,
                        served: 0,
                        issued: 0,
                        waits: f.waits,
                        waiting: f.waiting,
                    })
                }
            };
            if entry.is_some() {
                invocations.len += 1;
            }
            invocations.slots.push((slot.generation, entry));
        }
        state.invocations = invocations;
        for b in data.buffers {
            let mut buffer = CollectBuffer::default();
            for event in b.events {
                let event = event.decode(&d)?;
                let ty: TypeId = event.event_type().type_id();
                match buffer.by_type.iter_mut().find(|(t, _)| *t == ty) {
                    Some((_, q)) => q.push(event),
                    None => buffer.by_type.push((ty, vec![event])),
                }
            }
            state.buffers.insert((step(&b.step)?, b.buffer), buffer);
        }
        for r in data.retries {
            state.retries.insert(
                r.timer,
                PendingRetry {
                    step: step(&r.step)?,
                    queued: queued(r.queued)?,
                    due: Duration::from_micros(r.due_us),
                },
            );
        }
        let event_type = |name: &str| {
            workflow
                .registry
                .get(name)
                .copied()
                .ok_or_else(|| DecodeError::UnknownEvent {
                    workflow: workflow.name.clone(),
                    event: name.to_owned(),
                })
        };
        for wt in data.waiters {
            let ty = event_type(&wt.event)?;
            state.waiters.push(Waiter {
                key: wt.key,
                invocation: InvocationId::from_pair(wt.invocation),
                call: wt.call,
                step: step(&wt.step)?,
                id: wt.id,
                ty,
                requirements: wt.requirements,
            });
        }
        state.recovered_waiters = data
            .recovered_waiters
            .into_iter()
            .map(|r| {
                Ok(match r {
                    RecoveredData::Full {
                        step: s,
                        id,
                        event,
                        requirements,
                        held,
                    } => Recovered {
                        step: step(&s)?,
                        id,
                        ty: Some(event_type(&event)?),
                        requirements,
                        held: held.map(|e| d.event(e)).transpose()?,
                    },
                    RecoveredData::Bare(s, id) => Recovered {
                        step: step(&s)?,
                        id,
                        ty: None,
                        requirements: Vec::new(),
                        held: None,
                    },
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        state.next_timer = data.next_timer;
        state.idle = data.idle;
        state.finished = data.finished;
        Ok(state)
    }
}

/// A snapshot of `state` as the run `run_id` of `workflow` stands at `now`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_snapshot(
    workflow: &WorkflowCore,
    run_id: &str,
    state: &RunState,
    journal_seq: u64,
    now: Duration,
    published: u64,
    user_state: serde_json::Value,
    status: RunStatus,
) -> Result<Snapshot, serde_json::Error> {
    Ok(Snapshot {
        format: SNAPSHOT_FORMAT,
        workflow: workflow.name.clone(),
        fingerprint: workflow.fingerprint.clone(),
        run_id: run_id.to_owned(),
        journal_seq,
        at_us: now.as_micros() as u64,
        published,
        state_type: workflow.state.type_name.to_owned(),
        state: user_state,
        status,
        run: state.to_data()?,
    })
}
