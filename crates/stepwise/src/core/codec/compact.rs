//! Journal entries written as JSON text straight from the run's ticks.
//!
//! A journaled run writes each tick it reduces into its own buffer, on its
//! own thread, and hands the writer finished text: no intermediate tick
//! value, no copy of events, nothing allocated on one thread and freed on
//! another per tick. The common ticks are written by hand in the compact
//! form described in [`journal`](crate::core::codec::journal) (events entering from
//! outside, steps finishing without deferred sends, stream writes); their
//! variants with targets, origins or effects in the full form, by hand too;
//! the rare ticks through serde. The tests below check that every shape
//! reads back as exactly what serde's full form of [`journal::record`] of
//! the tick reads back as.

use crate::core::codec::journal::{self, inv, Entry, TickData};
use crate::core::event::AnyEvent;
use crate::core::reducer::{Effect, RunState, Tick};

/// Appends `tick` as the journal entry `seq` to `out`. On error `out` may
/// hold part of the entry (the caller truncates it).
pub(crate) fn write_tick(
    out: &mut Vec<u8>,
    seq: u64,
    at_us: u64,
    tick: &Tick,
    state: &RunState,
) -> Result<(), serde_json::Error> {
    let workflow = state.workflow();
    let step_name = |step: usize| workflow.steps[step].name();
    match tick {
        Tick::AddEvent {
            event,
            target: None,
            origin: None,
        } => {
            compact_head(out, seq, at_us, b'a');
            event.write_compact_json(out)?;
            out.push(b']');
        }
        Tick::StepDone {
            invocation,
            effects,
            result: Ok(emitted),
            ..
        } if effects.is_empty() => {
            compact_head(out, seq, at_us, b'd');
            let [slot, generation] = inv(*invocation);
            number(out, u64::from(slot));
            out.push(b',');
            number(out, u64::from(generation));
            out.push(b',');
            list(out, emitted.iter(), |out, event| event.write_compact_json(out))?;
            out.push(b']');
        }
        Tick::Publish(event) => {
            compact_head(out, seq, at_us, b'p');
            event.write_compact_json(out)?;
            out.push(b']');
        }
        Tick::AddEvent { event, target, origin } => {
            head(out, seq, at_us);
            out.extend_from_slice(b"{\"tick\":\"add_event\",\"event\":");
            event.write_json(out)?;
            if let Some(target) = target {
                out.extend_from_slice(b",\"target\":");
                serde_json::to_writer(&mut *out, step_name(*target))?;
            }
            if let Some(origin) = origin {
                out.extend_from_slice(b",\"origin\":");
                pair(out, inv(*origin));
            }
            out.extend_from_slice(b"}}");
        }
        Tick::StepDone {
            invocation,
            effects,
            result: Ok(emitted),
            ..
        } => {
            head(out, seq, at_us);
            out.extend_from_slice(b"{\"tick\":\"step_done\",\"invocation\":");
            pair(out, inv(*invocation));
            if !effects.is_empty() {
                out.extend_from_slice(b",\"effects\":");
                list(out, effects, |out, effect| {
                    match effect {
                        Effect::Send { event, target } => {
                            out.extend_from_slice(b"{\"effect\":\"send\",\"event\":");
                            event.write_json(out)?;
                            if let Some(target) = target {
                                out.extend_from_slice(b",\"target\":");
                                serde_json::to_writer(&mut *out, step_name(*target))?;
                            }
                        }
                        Effect::Publish(event) => {
                            out.extend_from_slice(b"{\"effect\":\"publish\",\"event\":");
                            event.write_json(out)?;
                        }
                    }
                    out.push(b'}');
                    Ok(())
                })?;
            }
            out.extend_from_slice(b",\"result\":{\"outcome\":\"ok\",\"events\":");
            list(out, emitted.iter(), |out, event| event.write_json(out))?;
            out.extend_from_slice(b"}}}");
        }
        rare => write_entry(out, seq, at_us, journal::record(rare, state))?,
    }
    Ok(())
}

/// Appends an entry given as data (the rare ticks) through serde.
pub(crate) fn write_entry(
    out: &mut Vec<u8>,
    seq: u64,
    at_us: u64,
    tick: TickData<AnyEvent>,
) -> Result<(), serde_json::Error> {
    serde_json::to_writer(out, &Entry { seq, at_us, tick })
}

/// `[a,b,..]`, each item written by `write`.
fn list<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T) -> Result<(), serde_json::Error>,
) -> Result<(), serde_json::Error> {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item)?;
    }
    out.push(b']');
    Ok(())
}

/// `[N,N,"k",` — a compact entry up to its kind-specific part.
fn compact_head(out: &mut Vec<u8>, seq: u64, at_us: u64, kind: u8) {
    out.push(b'[');
    number(out, seq);
    out.push(b',');
    number(out, at_us);
    out.extend_from_slice(b",\"");
    out.push(kind);
    out.extend_from_slice(b"\",");
}

/// `{"seq":N,"at_us":N,"tick":`
fn head(out: &mut Vec<u8>, seq: u64, at_us: u64) {
    out.extend_from_slice(b"{\"seq\":");
    number(out, seq);
    out.extend_from_slice(b",\"at_us\":");
    number(out, at_us);
    out.extend_from_slice(b",\"tick\":");
}

fn number(out: &mut Vec<u8>, mut n: u64) {
    // Digits into a stack buffer, most significant first.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn pair(out: &mut Vec<u8>, [a, b]: [u32; 2]) {
    out.push(b'[');
    number(out, u64::from(a));
    out.push(b',');
    number(out, u64::from(b));
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::core::codec::journal::StoredEntry;
    use crate::core::define::step::Emitted;
    use crate::core::error::StepError;
    use crate::core::reducer::InvocationId;
    use crate::{StartEvent, StopEvent, Workflow};

    fn state() -> RunState {
        let wf: Workflow = Workflow::builder("shapes")
            .step("first", |_: StartEvent| async { StopEvent::new(1) })
            .build()
            .unwrap();
        RunState::new(Arc::clone(&wf.core), "run".into(), false)
    }

    fn events() -> (AnyEvent, AnyEvent) {
        (
            AnyEvent::new(
                StartEvent::new()
                    .with("topic", "quote \" and \\ and \u{e9}")
                    .with("n", 3),
            ),
            AnyEvent::new(StopEvent::new(serde_json::json!({"nested": [1, 2.5, null, true]}))),
        )
    }

    /// What a stored entry reads back as, in serde's full form.
    fn read_back(text: &[u8]) -> serde_json::Value {
        let StoredEntry(entry) = serde_json::from_slice(text).unwrap();
        serde_json::to_value(&entry).unwrap()
    }

    fn same_as_serde(tick: Tick) {
        let state = state();
        for (seq, at_us) in [(0, 0), (7, 1_234_567), (u64::MAX, u64::MAX)] {
            let mut fast = Vec::new();
            write_tick(&mut fast, seq, at_us, &tick, &state).unwrap();
            let derived = serde_json::to_vec(&Entry {
                seq,
                at_us,
                tick: journal::record(&tick, &state),
            })
            .unwrap();
            assert_eq!(
                read_back(&fast),
                read_back(&derived),
                "{}",
                String::from_utf8_lossy(&fast)
            );
            // Full-form text is byte-for-byte serde's.
            if fast.first() == Some(&b'{') {
                assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(derived).unwrap());
            }
        }
    }

    #[test]
    fn the_common_ticks_are_compact() {
        let state = state();
        let (a, _) = events();
        let mut one = Emitted::default();
        one.push(a.clone());
        let done = Tick::StepDone {
            invocation: InvocationId::from_pair([2, 0]),
            effects: vec![],
            result: Ok(one),
            failed_at: 0,
        };
        let mut text = Vec::new();
        write_tick(&mut text, 3, 120, &done, &state).unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            r#"[3,120,"d",2,0,[["StartEvent",{"topic":"quote \" and \\ and é","n":3}]]]"#
        );
    }

    #[test]
    fn malformed_compact_entries_are_errors_not_panics() {
        for text in [
            r#"[1]"#,
            r#"[1,2,"x",[]]"#,
            r#"[1,2,"d",0]"#,
            r#"[1,2,"a",["E",{}],5]"#,
            r#"[1,2,"p",{"type":"E"}]"#,
            r#""entry""#,
        ] {
            assert!(serde_json::from_str::<StoredEntry>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn every_tick_shape_is_written_as_serde_writes_it() {
        let (a, b) = events();
        let invocation = InvocationId::from_pair([3, u32::MAX]);
        same_as_serde(Tick::AddEvent {
            event: a.clone(),
            target: None,
            origin: None,
        });
        same_as_serde(Tick::AddEvent {
            event: a.clone(),
            target: Some(0),
            origin: Some(invocation),
        });
        let two = || {
            let mut two = Emitted::default();
            two.push(a.clone());
            two.push(b.clone());
            two
        };
        for effects in [
            vec![],
            vec![
                Effect::Send {
                    event: a.clone(),
                    target: None,
                },
                Effect::Send {
                    event: b.clone(),
                    target: Some(0),
                },
                Effect::Publish(a.clone()),
            ],
        ] {
            for result in [Ok(Emitted::default()), Ok(two()), Err(StepError::msg("it \"broke\"\n"))] {
                same_as_serde(Tick::StepDone {
                    invocation,
                    effects: effects.clone(),
                    result,
                    failed_at: 1_764_000_000_000,
                });
            }
        }
        same_as_serde(Tick::Publish(b));
        same_as_serde(Tick::Cancel);
        same_as_serde(Tick::Timeout);
        same_as_serde(Tick::Resume);
    }
}
