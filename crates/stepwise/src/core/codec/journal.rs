//! The journal: every tick a run reduces, in order, as data.
//!
//! Replaying a run's journal through the reducer rebuilds its state exactly,
//! because the reducer is deterministic and each entry carries the time it
//! was reduced at. Entries are written as JSON, in one of two forms:
//!
//! - the full form, an object: `{"seq": 3, "at_us": 120, "tick": {"tick":
//!   "step_done", "invocation": [2, 0], "result": {"outcome": "ok", "events":
//!   [{"type": "B", "value": {..}}]}}}` — what `Entry`'s serde derive
//!   writes, used for every kind of tick;
//! - the compact form, an array, for the three ticks nearly every run is made
//!   of (and a third of the size): `[seq, at_us, "a", ["Name", {..}]]` (an
//!   event entered from outside the run's steps), `[seq, at_us, "d", slot,
//!   generation, [["Name", {..}], ..]]` (a step finished with these events and
//!   no deferred sends), `[seq, at_us, "p", ["Name", {..}]]` (a stream write).
//!
//! Readers accept both, so journals written before the compact form existed
//! still replay. Events are decoded by their stable names through the
//! workflow's event registry when read back.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

use std::borrow::Cow;

use crate::core::context::collect::{Expectation, ListSummary};
use crate::core::define::step::Emitted;
use crate::core::define::workflow::WorkflowCore;
use crate::core::error::StepError;
use crate::core::event::{AnyEvent, EventType};
use crate::core::reducer::{Command, Effect, InvocationId, Outcome, RunState, Tick, Timer, WaiterSpec};

/// An event as stored: its stable name and its JSON fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The event's stable name.
    #[serde(rename = "type")]
    pub name: String,
    /// Its fields.
    pub value: Value,
}

impl StoredEvent {
    /// The stored form of `event`.
    pub fn of(event: &AnyEvent) -> Result<Self, serde_json::Error> {
        Ok(StoredEvent {
            name: event.name().to_owned(),
            value: event.to_json()?,
        })
    }
}

/// A stored entry in either form (see the module docs).
pub(crate) struct StoredEntry(pub(crate) Entry<StoredEvent>);

impl<'de> Deserialize<'de> for StoredEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StoredEntryVisitor)
    }
}

struct StoredEntryVisitor;

impl<'de> serde::de::Visitor<'de> for StoredEntryVisitor {
    type Value = StoredEntry;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a journal entry (an object, or a compact array)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<StoredEntry, A::Error> {
        Entry::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(StoredEntry)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StoredEntry, A::Error> {
        use serde::de::Error;
        let seq_no: u64 = element(&mut seq, 0)?;
        let at_us: u64 = element(&mut seq, 1)?;
        let kind: String = element(&mut seq, 2)?;
        let tick = match kind.as_str() {
            "a" => TickData::AddEvent {
                event: element::<CompactEvent, _>(&mut seq, 3)?.0,
                target: None,
                origin: None,
            },
            "d" => {
                let slot: u32 = element(&mut seq, 3)?;
                let generation: u32 = element(&mut seq, 4)?;
                let events: Vec<CompactEvent> = element(&mut seq, 5)?;
                TickData::StepDone {
                    invocation: [slot, generation],
                    effects: Vec::new(),
                    result: ResultData::Ok {
                        events: events.into_iter().map(|e| e.0).collect(),
                    },
                }
            }
            "p" => TickData::Publish {
                event: element::<CompactEvent, _>(&mut seq, 3)?.0,
            },
            other => return Err(A::Error::unknown_variant(other, &["a", "d", "p"])),
        };
        if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            return Err(A::Error::custom(
                "a compact entry has more elements than its kind takes",
            ));
        }
        Ok(StoredEntry(Entry {
            seq: seq_no,
            at_us,
            tick,
        }))
    }
}

/// The compact entry's element at `index`.
fn element<'de, T: Deserialize<'de>, A: serde::de::SeqAccess<'de>>(seq: &mut A, index: usize) -> Result<T, A::Error> {
    seq.next_element()?
        .ok_or_else(|| serde::de::Error::invalid_length(index, &"a compact journal entry"))
}

/// An event in the compact form: `["Name", {fields}]`.
struct CompactEvent(StoredEvent);

impl<'de> Deserialize<'de> for CompactEvent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (name, value) = <(String, Value)>::deserialize(deserializer)?;
        Ok(CompactEvent(StoredEvent { name, value }))
    }
}

/// One reduced tick and when it was reduced (µs since the run started).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "Ev: Serialize", deserialize = "Ev: Deserialize<'de>"))]
pub(crate) struct Entry<Ev> {
    pub(crate) seq: u64,
    pub(crate) at_us: u64,
    pub(crate) tick: TickData<Ev>,
}

/// A tick as data. `Ev` is `AnyEvent` when writing and `StoredEvent` when reading.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "tick", rename_all = "snake_case")]
#[serde(bound(serialize = "Ev: Serialize", deserialize = "Ev: Deserialize<'de>"))]
pub(crate) enum TickData<Ev> {
    AddEvent {
        event: Ev,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<[u32; 2]>,
    },
    StepDone {
        invocation: [u32; 2],
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        effects: Vec<EffectData<Ev>>,
        result: ResultData<Ev>,
    },
    Collect {
        invocation: [u32; 2],
        buffer: String,
        event: Ev,
        /// The expected list (ordered), or `[type, n]` for `collect_n`.
        expect: ExpectData,
    },
    AddWaiter {
        invocation: [u32; 2],
        id: String,
        event: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        requirements: Vec<(String, Value)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_us: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        publish: Option<Ev>,
        /// The invocation's sends and stream writes so far, applied before it waits.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        effects: Vec<EffectData<Ev>>,
    },
    Publish {
        event: Ev,
    },
    /// An invocation's effects applied before it ended (its stream writes, live).
    Effects {
        invocation: [u32; 2],
        effects: Vec<EffectData<Ev>>,
    },
    FireRetry {
        timer: u64,
    },
    FireWaiterTimeout {
        timer: u64,
    },
    Timeout,
    Cancel,
    Resume,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
#[serde(bound(serialize = "Ev: Serialize", deserialize = "Ev: Deserialize<'de>"))]
pub(crate) enum EffectData<Ev> {
    Send {
        event: Ev,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    Publish {
        event: Ev,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[serde(bound(serialize = "Ev: Serialize", deserialize = "Ev: Deserialize<'de>"))]
pub(crate) enum ResultData<Ev> {
    Ok {
        events: Vec<Ev>,
    },
    Err {
        error: String,
        panicked: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retryable: Option<bool>,
        /// Wall-clock ms since the Unix epoch (absent in older journals).
        #[serde(default, skip_serializing_if = "is_zero")]
        failed_at: u64,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ExpectData {
    /// Every entry's name (lists without repeats; all lists before `runs`).
    List(Vec<String>),
    /// `collect_n`: the type and the count.
    Repeat(String, usize),
    /// The list run-length encoded, so `[T; K]` is one pair, not K names.
    Runs(Vec<(String, usize)>),
}

/// Why a journal or snapshot could not be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// An event name the workflow's registry does not know.
    #[error("event `{event}` is not known to workflow `{workflow}` (register it with WorkflowBuilder::event)")]
    UnknownEvent {
        /// The workflow.
        workflow: String,
        /// The stored name.
        event: String,
    },
    /// An event whose stored fields no longer decode as its type.
    #[error("stored `{event}` no longer decodes: {reason}")]
    BadEvent {
        /// The stored name.
        event: String,
        /// What serde said.
        reason: String,
    },
    /// A step name the workflow does not have.
    #[error("step `{step}` is not part of workflow `{workflow}`")]
    UnknownStep {
        /// The workflow.
        workflow: String,
        /// The stored step name.
        step: String,
    },
    /// A malformed entry.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being read (e.g. "journal entry 17").
        what: String,
        /// What is wrong.
        reason: String,
    },
}

pub use crate::core::builtin::RawEvent;

pub(crate) fn inv(id: InvocationId) -> [u32; 2] {
    id.to_pair()
}

fn step_name(workflow: &WorkflowCore, step: usize) -> String {
    workflow.steps[step].name().to_owned()
}

/// Records `tick` as data, before it is reduced (the retry decision of a
/// failure is recorded with it, so a replay makes the same choice without the
/// original error type).
pub(crate) fn record(tick: &Tick, state: &RunState) -> TickData<AnyEvent> {
    let workflow = state.workflow();
    match tick {
        Tick::AddEvent { event, target, origin } => TickData::AddEvent {
            event: event.clone(),
            target: target.map(|s| step_name(workflow, s)),
            origin: origin.map(inv),
        },
        Tick::StepDone {
            invocation,
            effects,
            result,
            failed_at,
        } => TickData::StepDone {
            invocation: inv(*invocation),
            effects: effects_data(workflow, effects),
            result: match result {
                Ok(emitted) => ResultData::Ok {
                    events: emitted.iter().cloned().collect(),
                },
                Err(error) => ResultData::Err {
                    error: error.to_string(),
                    failed_at: *failed_at,
                    panicked: error.is_panic(),
                    retryable: state
                        .invocation_step(*invocation)
                        .and_then(|s| workflow.steps[s].config.retry.as_ref())
                        .map(|policy| policy.retryable(error)),
                },
            },
        },
        Tick::Publish(event) => TickData::Publish { event: event.clone() },
        Tick::Effects { invocation, effects } => TickData::Effects {
            invocation: inv(*invocation),
            effects: effects_data(workflow, effects),
        },
        Tick::Fire(Timer::Retry(timer)) => TickData::FireRetry { timer: *timer },
        Tick::Fire(Timer::WaiterTimeout(timer)) => TickData::FireWaiterTimeout { timer: *timer },
        Tick::Timeout => TickData::Timeout,
        Tick::Cancel => TickData::Cancel,
        Tick::Resume => TickData::Resume,
    }
}

fn effects_data(workflow: &WorkflowCore, effects: &[Effect]) -> Vec<EffectData<AnyEvent>> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Send { event, target } => EffectData::Send {
                event: event.clone(),
                target: target.map(|s| step_name(workflow, s)),
            },
            Effect::Publish(event) => EffectData::Publish { event: event.clone() },
        })
        .collect()
}

/// The journal form of an expectation: its size follows the list's runs, so
/// a K-event fan-in over `[T; K]` writes O(1) per call, not K names.
fn expect_data(expect: &Expectation<'_>) -> ExpectData {
    match expect {
        Expectation::List(summary) if summary.runs.len() == summary.len => {
            ExpectData::List(summary.runs.iter().map(|(t, _)| t.name().to_owned()).collect())
        }
        Expectation::List(summary) => {
            ExpectData::Runs(summary.runs.iter().map(|(t, n)| (t.name().to_owned(), *n)).collect())
        }
        Expectation::Repeat(ty, n) => ExpectData::Repeat(ty.name().to_owned(), *n),
    }
}

pub(crate) fn record_collect(
    invocation: InvocationId,
    buffer: &str,
    event: &AnyEvent,
    expect: &Expectation<'_>,
) -> TickData<AnyEvent> {
    TickData::Collect {
        invocation: inv(invocation),
        buffer: buffer.to_owned(),
        event: event.clone(),
        expect: expect_data(expect),
    }
}

pub(crate) fn record_waiter(
    invocation: InvocationId,
    spec: &WaiterSpec,
    effects: &[Effect],
    state: &RunState,
) -> TickData<AnyEvent> {
    TickData::AddWaiter {
        effects: effects_data(state.workflow(), effects),
        invocation: inv(invocation),
        id: spec.id.clone(),
        event: spec.ty.name().to_owned(),
        requirements: spec.requirements.clone(),
        timeout_us: spec.timeout.map(|t| t.as_micros() as u64),
        publish: spec.publish.clone(),
    }
}

/// Turns stored data back into what the reducer takes.
pub(crate) struct Decoder<'w> {
    pub(crate) workflow: &'w WorkflowCore,
}

impl Decoder<'_> {
    pub(crate) fn event(&self, stored: StoredEvent) -> Result<AnyEvent, DecodeError> {
        let ty = self.event_type(&stored.name)?;
        ty.decode(stored.value).map_err(|e| DecodeError::BadEvent {
            event: stored.name,
            reason: e.to_string(),
        })
    }

    fn event_type(&self, name: &str) -> Result<EventType, DecodeError> {
        self.workflow
            .registry
            .get(name)
            .copied()
            .ok_or_else(|| DecodeError::UnknownEvent {
                workflow: self.workflow.name.clone(),
                event: name.to_owned(),
            })
    }

    fn step(&self, name: Option<String>) -> Result<Option<usize>, DecodeError> {
        match name {
            None => Ok(None),
            Some(name) => match self.workflow.step_index(&name) {
                Some(index) => Ok(Some(index)),
                None => Err(DecodeError::UnknownStep {
                    workflow: self.workflow.name.clone(),
                    step: name,
                }),
            },
        }
    }

    /// Applies one stored entry to `state` (commands are discarded: a replay
    /// rebuilds state, it does not redo effects). Returns how the run ended
    /// when this entry ended it.
    pub(crate) fn replay(
        &self,
        state: &mut RunState,
        entry: Entry<StoredEvent>,
    ) -> Result<Option<Outcome>, DecodeError> {
        let mut out = Vec::new();
        self.replay_into(state, entry, &mut out)?;
        Ok(finish_of(out))
    }

    /// Applies one stored entry and keeps the commands the reducer produced
    /// (run traces use them to see which invocations started). Returns the
    /// decoded tick's inputs that a trace needs.
    pub(crate) fn replay_into(
        &self,
        state: &mut RunState,
        entry: Entry<StoredEvent>,
        out: &mut Vec<Command>,
    ) -> Result<Replayed, DecodeError> {
        let now = Duration::from_micros(entry.at_us);
        let tick = match entry.tick {
            TickData::AddEvent { event, target, origin } => Tick::AddEvent {
                event: self.event(event)?,
                target: self.step(target)?,
                origin: origin.map(InvocationId::from_pair),
            },
            TickData::StepDone {
                invocation,
                effects,
                result,
            } => {
                let effects = self.effects(effects)?;
                let mut failed = 0;
                let result = match result {
                    ResultData::Ok { events } => {
                        let mut emitted = Emitted::default();
                        for event in events {
                            emitted.push(self.event(event)?);
                        }
                        Ok(emitted)
                    }
                    ResultData::Err {
                        error,
                        panicked,
                        retryable,
                        failed_at,
                    } => {
                        failed = failed_at;
                        Err(StepError::restored(error, panicked, retryable))
                    }
                };
                Tick::StepDone {
                    invocation: InvocationId::from_pair(invocation),
                    effects,
                    result,
                    failed_at: failed,
                }
            }
            TickData::Collect {
                invocation,
                buffer,
                event,
                expect,
            } => {
                let event = self.event(event)?;
                let expect = match expect {
                    ExpectData::List(names) => Expectation::List(Cow::Owned(ListSummary::of(
                        names
                            .iter()
                            .map(|n| self.event_type(n))
                            .collect::<Result<Vec<_>, _>>()?,
                    ))),
                    ExpectData::Runs(runs) => Expectation::List(Cow::Owned(ListSummary::from_runs(
                        runs.iter()
                            .map(|(name, n)| Ok((self.event_type(name)?, *n)))
                            .collect::<Result<Vec<_>, DecodeError>>()?,
                    ))),
                    ExpectData::Repeat(name, n) => Expectation::repeat(self.event_type(&name)?, n),
                };
                state.collect(InvocationId::from_pair(invocation), &buffer, event, &expect);
                return Ok(Replayed::Other);
            }
            TickData::AddWaiter {
                invocation,
                id,
                event,
                requirements,
                timeout_us,
                publish,
                effects,
            } => {
                let effects = self.effects(effects)?;
                let spec = WaiterSpec {
                    id,
                    ty: self.event_type(&event)?,
                    requirements,
                    timeout: timeout_us.map(Duration::from_micros),
                    publish: publish.map(|e| self.event_or_raw(e)),
                };
                // A refused waiter (duplicate id) was refused live too.
                let invocation = InvocationId::from_pair(invocation);
                let key = state.add_waiter(invocation, spec, effects, now, out).ok();
                return Ok(Replayed::Waiter { invocation, key });
            }
            TickData::Publish { event } => Tick::Publish(self.event_or_raw(event)),
            TickData::Effects { invocation, effects } => Tick::Effects {
                invocation: InvocationId::from_pair(invocation),
                effects: self.effects(effects)?,
            },
            TickData::FireRetry { timer } => Tick::Fire(Timer::Retry(timer)),
            TickData::FireWaiterTimeout { timer } => Tick::Fire(Timer::WaiterTimeout(timer)),
            TickData::Timeout => Tick::Timeout,
            TickData::Cancel => Tick::Cancel,
            TickData::Resume => Tick::Resume,
        };
        let replayed = match &tick {
            Tick::AddEvent {
                event, origin: None, ..
            } => Replayed::External(event.clone()),
            Tick::StepDone {
                invocation,
                effects,
                result,
                ..
            } => Replayed::StepDone {
                invocation: *invocation,
                outputs: effects
                    .iter()
                    .filter_map(|e| match e {
                        Effect::Send { event, .. } => Some(event.clone()),
                        Effect::Publish(_) => None,
                    })
                    .chain(result.iter().flat_map(|emitted| emitted.iter().cloned()))
                    .collect(),
                error: result.as_ref().err().map(|e| e.to_string()),
            },
            _ => Replayed::Other,
        };
        state.reduce(tick, now, out);
        Ok(replayed)
    }

    fn effects(&self, effects: Vec<EffectData<StoredEvent>>) -> Result<Vec<Effect>, DecodeError> {
        effects
            .into_iter()
            .map(|e| match e {
                EffectData::Send { event, target } => Ok(Effect::Send {
                    event: self.event(event)?,
                    target: self.step(target)?,
                }),
                EffectData::Publish { event } => Ok(Effect::Publish(self.event_or_raw(event))),
            })
            .collect()
    }

    /// Published-only events need no type: keep them as raw JSON when the
    /// registry does not know them.
    fn event_or_raw(&self, stored: StoredEvent) -> AnyEvent {
        match self.workflow.registry.get(stored.name.as_str()) {
            Some(ty) => ty
                .decode(stored.value.clone())
                .unwrap_or_else(|_| AnyEvent::new(RawEvent::from(stored))),
            None => AnyEvent::new(RawEvent::from(stored)),
        }
    }
}

/// The outcome in `commands`, if they end the run.
fn finish_of(commands: Vec<Command>) -> Option<Outcome> {
    commands.into_iter().find_map(|command| match command {
        Command::Finish(outcome) => Some(outcome),
        _ => None,
    })
}

/// What a replayed entry meant, for run traces.
pub(crate) enum Replayed {
    /// An event entered from outside (or the start event).
    External(AnyEvent),
    /// An invocation finished with these sends and results, or this error.
    StepDone {
        invocation: InvocationId,
        outputs: Vec<AnyEvent>,
        error: Option<String>,
    },
    /// An invocation started waiting (`wait_for_event`); `key` identifies
    /// the waiter in `ResolveWaiter` commands.
    Waiter {
        invocation: InvocationId,
        key: Option<u64>,
    },
    Other,
}

impl From<StoredEvent> for RawEvent {
    fn from(stored: StoredEvent) -> Self {
        RawEvent {
            name: stored.name,
            value: stored.value,
        }
    }
}
