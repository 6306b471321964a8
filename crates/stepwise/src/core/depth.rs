//! The nesting limit for event values, and taking deep values apart safely.
//!
//! A value nested thousands of levels deep (built in code: JSON parsers stop
//! at 128) overflows the stack when it is serialised, converted or dropped,
//! since serde and `serde_json::Value` recurse once per level. Every event
//! that enters a run is therefore checked against [`MAX_EVENT_DEPTH`] first,
//! by a serializer that writes nothing and stops at the limit (so the check
//! recurses at most that deep itself). Refused events are taken apart
//! iteratively ([`dispose`]), never dropped recursively on a small stack.

use std::fmt;

use serde::ser::{self, Serialize};
use serde_json::Value;

use crate::core::builtin::{HumanResponseEvent, InputRequiredEvent, StartEvent, StepFailed, StopEvent};
use crate::core::event::AnyEvent;

/// How deeply an event's value may nest: arrays, objects and structs each
/// count one level (a struct with a string field is depth 1). Deeper events
/// are refused wherever they enter a run — the start event
/// ([`RunError::StartRejected`](crate::RunError::StartRejected)), events sent
/// from outside ([`SendError::Rejected`](crate::SendError::Rejected)), and
/// events a step returns, sends or writes to the stream (the step attempt
/// fails with [`EventError::TooDeep`](crate::EventError::TooDeep)). The limit
/// leaves room below `serde_json`'s parser limit of 128 for the journal's and
/// snapshots' own nesting, so everything a run accepts reads back.
pub const MAX_EVENT_DEPTH: usize = 100;

/// The nesting depth of a JSON value (0 for a scalar, 1 for `[]` or
/// `{"a": 1}`, …), computed without recursion.
pub fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(depth + 1);
                stack.extend(items.iter().map(|v| (v, depth + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(depth + 1);
                stack.extend(map.values().map(|v| (v, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// True when `value` nests deeper than `limit`. Recurses at most `limit + 1`
/// levels, whatever the value. A `Serialize` impl that fails for another
/// reason counts as within the limit (the journal reports that failure).
pub(crate) fn exceeds<T: Serialize + ?Sized>(value: &T, limit: usize) -> bool {
    let mut counter = Counter { depth: 0, limit };
    matches!(value.serialize(&mut counter), Err(CountError::TooDeep))
}

/// `value` as JSON, or — when it nests deeper than [`MAX_EVENT_DEPTH`] — a
/// stand-in one level deeper than the limit, so the run refuses the event
/// that holds it instead of the conversion overflowing the stack. `Null`
/// when it does not convert at all (as before).
pub(crate) fn bounded_value<T: Serialize>(value: &T) -> Value {
    if exceeds(value, MAX_EVENT_DEPTH) {
        let mut marker = Value::String("nested too deep".into());
        for _ in 0..=MAX_EVENT_DEPTH {
            marker = Value::Array(vec![marker]);
        }
        return marker;
    }
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Drops `value` without recursion.
pub(crate) fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// Drops a refused event safely: the built-in events' JSON is taken apart
/// iteratively; any other type is dropped on a thread with a large stack
/// (its own `Drop` may recurse). Other references to the event keep it.
pub(crate) fn dispose(event: AnyEvent) {
    if !event.is_unique() || !event.exceeds_depth(MAX_EVENT_DEPTH) {
        return; // dropped as usual: shallow, or kept by another reference
    }
    let event = match event.take_unique::<StartEvent>() {
        Ok(start) => return drop(start), // its Drop takes it apart
        Err(event) => event,
    };
    let event = match event.take_unique::<StopEvent>() {
        Ok(stop) => return dismantle(stop.result),
        Err(event) => event,
    };
    let event = match event.take_unique::<HumanResponseEvent>() {
        Ok(answer) => return dismantle(answer.data),
        Err(event) => event,
    };
    let event = match event.take_unique::<InputRequiredEvent>() {
        Ok(request) => return dismantle(request.data),
        Err(event) => event,
    };
    let event = match event.take_unique::<StepFailed>() {
        Ok(failed) => return dismantle(failed.input_event),
        Err(event) => event,
    };
    let spawned = std::thread::Builder::new()
        .name("stepwise-drop".into())
        .stack_size(256 << 20)
        .spawn(move || drop(event));
    if let Err(error) = spawned {
        tracing::warn!(%error, "could not start a thread to drop a refused event");
    }
}

/// A serializer that writes nothing and only tracks nesting.
struct Counter {
    depth: usize,
    limit: usize,
}

#[derive(Debug)]
enum CountError {
    TooDeep,
    Other,
}

impl fmt::Display for CountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CountError::TooDeep => f.write_str("nested too deep"),
            CountError::Other => f.write_str("does not serialise"),
        }
    }
}

impl std::error::Error for CountError {}

impl ser::Error for CountError {
    fn custom<T: fmt::Display>(_: T) -> Self {
        CountError::Other
    }
}

impl Counter {
    fn enter(&mut self) -> Result<&mut Self, CountError> {
        self.depth += 1;
        if self.depth > self.limit {
            return Err(CountError::TooDeep);
        }
        Ok(self)
    }

    fn leave(&mut self) -> Result<(), CountError> {
        self.depth -= 1;
        Ok(())
    }
}

macro_rules! scalars {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), CountError> { Ok(()) })*
    };
}

impl ser::Serializer for &mut Counter {
    type Ok = ();
    type Error = CountError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    scalars!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_u128: u128, serialize_f32: f32, serialize_f64: f64, serialize_char: char,
        serialize_str: &str, serialize_bytes: &[u8],
    );

    fn serialize_none(self) -> Result<(), CountError> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CountError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CountError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CountError> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), CountError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), CountError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), CountError> {
        // `{"Variant": value}`: one level.
        let this = self.enter()?;
        value.serialize(&mut *this)?;
        this.leave()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, CountError> {
        self.enter()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, CountError> {
        self.enter()
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, CountError> {
        self.enter()
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self, CountError> {
        // `{"Variant": [..]}`: two levels.
        self.enter()?.enter()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, CountError> {
        self.enter()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, CountError> {
        self.enter()
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self, CountError> {
        self.enter()?.enter()
    }
}

impl ser::SerializeSeq for &mut Counter {
    type Ok = ();
    type Error = CountError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CountError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CountError> {
        self.leave()
    }
}

impl ser::SerializeTuple for &mut Counter {
    type Ok = ();
    type Error = CountError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CountError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CountError> {
        self.leave()
    }
}

impl ser::SerializeTupleStruct for &mut Counter {
    type Ok = ();
    type Error = CountError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CountError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CountError> {
        self.leave()
    }
}

impl ser::SerializeTupleVariant for &mut Counter {
    type Ok = ();
    type Error = CountError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CountError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CountError> {
        self.leave()?;
        self.leave()
    }
}

impl ser::SerializeMap for &mut Counter {
    type Ok = ();
    type Error = CountError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CountError> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CountError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CountError> {
        self.leave()
    }
}

impl ser::SerializeStruct for &mut Counter {
    type Ok = ();
    type Error = CountError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Result<(), CountError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CountError> {
        self.leave()
    }
}

impl ser::SerializeStructVariant for &mut Counter {
    type Ok = ();
    type Error = CountError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Result<(), CountError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CountError> {
        self.leave()?;
        self.leave()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..depth {
            value = Value::Array(vec![value]); // json!([value]) would copy it recursively
        }
        value
    }

    #[test]
    fn the_counter_and_the_walk_agree_with_json_nesting() {
        for depth in [0, 1, 2, 50, 99, 100, 101, 127] {
            let value = nested(depth);
            assert_eq!(json_depth(&value), depth);
            assert_eq!(exceeds(&value, MAX_EVENT_DEPTH), depth > MAX_EVENT_DEPTH, "{depth}");
        }
        assert_eq!(json_depth(&json!({"a": {"b": [1, {"c": 2}]}})), 4);
        assert!(!exceeds(&json!({"a": {"b": [1, {"c": 2}]}}), 4));
        assert!(exceeds(&json!({"a": {"b": [1, {"c": 2}]}}), 3));
    }

    #[test]
    fn deep_values_are_measured_and_dropped_without_recursion() {
        let value = nested(200_000);
        assert_eq!(json_depth(&value), 200_000);
        assert!(exceeds(&value, MAX_EVENT_DEPTH));
        dismantle(value);
        assert_eq!(json_depth(&bounded_value(&nested(5))), 5);
        assert_eq!(json_depth(&bounded_value(&nested(150))), MAX_EVENT_DEPTH + 1);
    }
}
