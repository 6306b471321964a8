//! Events: the typed messages that trigger steps.
//!
//! Every event is a plain Rust type implementing [`Event`] (usually through
//! `#[derive(Event)]`). Inside a run, events travel type-erased as [`AnyEvent`]
//! (one `Arc` allocation, no serialisation); routing compares [`TypeId`]s.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A message that can trigger steps.
///
/// Derive it with `#[derive(Event)]` (together with `Clone`, `Debug`, `Serialize`
/// and `Deserialize`), or implement it by hand:
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Serialize, Deserialize)]
/// struct Query { text: String }
///
/// impl stepwise::Event for Query {
///     const NAME: &'static str = "Query";
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a stepwise event",
    label = "not an event",
    note = "add `#[derive(Clone, Debug, Serialize, Deserialize, stepwise::Event)]` to `{Self}`"
)]
pub trait Event: Any + Clone + fmt::Debug + Send + Sync + Serialize + DeserializeOwned {
    /// The stable name used in journals, on the wire and in drawings.
    /// Never derived from the module path, so moving a type does not break stored runs.
    const NAME: &'static str;
    /// What role the event plays in a workflow.
    const KIND: EventKind = EventKind::Regular;

    /// A JSON schema of the event's fields, for drawings, the server and input
    /// forms. `#[derive(Event)]` writes a structural one from the field types.
    fn schema() -> serde_json::Value {
        serde_json::json!({ "title": Self::NAME })
    }
}

/// The role an event type plays in a workflow.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An ordinary event between steps.
    Regular,
    /// The event a run starts with (one type per workflow).
    Start,
    /// The event that completes a run with its result (one type per workflow).
    Stop,
    /// A request for outside (human) input; published to the stream when emitted.
    InputRequired,
    /// An answer from outside, sent with `send_event`.
    HumanResponse,
    /// Published by the engine when a run ends without a stop event
    /// (timed out, cancelled, failed).
    Termination,
    /// Engine bookkeeping (step state changes); hidden from streams unless asked for.
    Internal,
}

/// A runtime description of an event type: its name, kind and [`TypeId`].
///
/// Equality and hashing use the `TypeId` only.
#[derive(Copy, Clone)]
pub struct EventType {
    name: &'static str,
    kind: EventKind,
    type_id: TypeId,
    decode: fn(serde_json::Value) -> Result<AnyEvent, serde_json::Error>,
    schema: fn() -> serde_json::Value,
}

impl EventType {
    /// The descriptor of `E`.
    pub fn of<E: Event>() -> Self {
        EventType {
            name: E::NAME,
            kind: E::KIND,
            type_id: TypeId::of::<E>(),
            decode: decode_as::<E>,
            schema: E::schema,
        }
    }

    /// The event's JSON schema ([`Event::schema`]).
    pub fn schema(&self) -> serde_json::Value {
        (self.schema)()
    }

    /// Rebuilds an event of this type from its JSON fields.
    pub fn decode(&self, value: serde_json::Value) -> Result<AnyEvent, serde_json::Error> {
        (self.decode)(value)
    }

    /// The stable event name ([`Event::NAME`]).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The event's role.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The Rust type id.
    pub fn type_id(&self) -> TypeId {
        self.type_id
    }
}

impl PartialEq for EventType {
    fn eq(&self, other: &Self) -> bool {
        self.type_id == other.type_id
    }
}

impl Eq for EventType {}

impl std::hash::Hash for EventType {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.type_id.hash(state)
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

fn decode_as<E: Event>(value: serde_json::Value) -> Result<AnyEvent, serde_json::Error> {
    E::deserialize(value).map(AnyEvent::new)
}

/// Object-safe view of an [`Event`], used behind [`AnyEvent`].
trait ErasedEvent: Any + Send + Sync {
    fn event_type(&self) -> EventType;
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error>;
    fn to_raw_json(&self) -> Result<Box<serde_json::value::RawValue>, serde_json::Error>;
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error>;
    fn exceeds_depth(&self, limit: usize) -> bool;
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    fn clone_arc(&self) -> Arc<dyn ErasedEvent>;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl<E: Event> ErasedEvent for E {
    fn event_type(&self) -> EventType {
        EventType::of::<E>()
    }
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
    fn to_raw_json(&self) -> Result<Box<serde_json::value::RawValue>, serde_json::Error> {
        serde_json::value::to_raw_value(self)
    }
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(out, self)
    }
    fn exceeds_depth(&self, limit: usize) -> bool {
        crate::core::depth::exceeds(self, limit)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
    fn clone_arc(&self) -> Arc<dyn ErasedEvent> {
        Arc::new(self.clone())
    }
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A type-erased event, cheap to clone (one reference count).
///
/// This is what streams yield and what the untyped APIs take. Get the typed
/// event back with [`AnyEvent::downcast_ref`] or [`AnyEvent::downcast`].
#[derive(Clone)]
pub struct AnyEvent(Arc<dyn ErasedEvent>);

impl AnyEvent {
    /// Erases `event`.
    pub fn new<E: Event>(event: E) -> Self {
        AnyEvent(Arc::new(event))
    }

    /// The descriptor of the concrete event type.
    pub fn event_type(&self) -> EventType {
        self.0.event_type()
    }

    /// The stable name of the concrete event type.
    pub fn name(&self) -> &'static str {
        self.0.event_type().name
    }

    /// The role of the concrete event type.
    pub fn kind(&self) -> EventKind {
        self.0.event_type().kind
    }

    /// True for engine bookkeeping events that streams hide unless asked.
    pub fn is_internal(&self) -> bool {
        self.kind() == EventKind::Internal
    }

    /// True when the concrete type is `E`.
    pub fn is<E: Event>(&self) -> bool {
        self.0.as_any().is::<E>()
    }

    /// Borrows the event as `E`, if that is its type.
    pub fn downcast_ref<E: Event>(&self) -> Option<&E> {
        self.0.as_any().downcast_ref::<E>()
    }

    /// Takes the event out as `E` (without a copy when this is the last
    /// reference), or gives it back unchanged when it is another type.
    pub fn downcast<E: Event>(self) -> Result<E, AnyEvent> {
        if !self.is::<E>() {
            return Err(self);
        }
        match self.0.into_any().downcast::<E>() {
            Ok(arc) => Ok(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone())),
            // Unreachable: the type was checked above. Never panic on it anyway.
            Err(_) => unreachable_downcast(),
        }
    }

    /// True when the event's value nests deeper than `limit` (checked
    /// without deep recursion).
    pub(crate) fn exceeds_depth(&self, limit: usize) -> bool {
        self.0.exceeds_depth(limit)
    }

    /// True when this is the only reference to the event.
    pub(crate) fn is_unique(&self) -> bool {
        Arc::strong_count(&self.0) == 1 && Arc::weak_count(&self.0) == 0
    }

    /// Takes the event out as `E` when it is one and this is its only
    /// reference (never a copy); otherwise gives it back.
    pub(crate) fn take_unique<E: Event>(self) -> Result<E, AnyEvent> {
        if !self.is::<E>() || !self.is_unique() {
            return Err(self);
        }
        match self.0.into_any().downcast::<E>() {
            Ok(arc) => Arc::try_unwrap(arc).map_err(|arc| AnyEvent(arc as Arc<dyn ErasedEvent>)),
            Err(_) => unreachable_downcast(),
        }
    }

    /// Serialises the event's fields to JSON.
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        self.0.to_json()
    }

    /// Appends `{"type": <stable name>, "value": <fields>}` to `out` (what
    /// `Serialize` writes, without going through a generic serializer).
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        self.write_name_and_fields(out, b"{\"type\":", b",\"value\":", b'}')
    }

    /// Appends `["<stable name>", <fields>]` to `out` (the journal's compact
    /// form).
    pub(crate) fn write_compact_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        self.write_name_and_fields(out, b"[", b",", b']')
    }

    /// `open`, the name as a JSON string, `between`, the fields, `close`.
    fn write_name_and_fields(
        &self,
        out: &mut Vec<u8>,
        open: &[u8],
        between: &[u8],
        close: u8,
    ) -> Result<(), serde_json::Error> {
        out.extend_from_slice(open);
        serde_json::to_writer(&mut *out, self.name())?;
        out.extend_from_slice(between);
        self.0.write_json(out)?;
        out.push(close);
        Ok(())
    }

    /// A deep copy that shares nothing with `self`.
    pub fn deep_clone(&self) -> AnyEvent {
        AnyEvent(self.0.clone_arc())
    }

    /// The address of the shared event (identifies an instance within a run).
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as *const () as usize
    }

    /// True when both handles point at the same event instance.
    pub fn ptr_eq(&self, other: &AnyEvent) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cold]
fn unreachable_downcast<T>() -> T {
    unreachable!("AnyEvent::downcast: type was checked before the downcast")
}

impl fmt::Debug for AnyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug(f)
    }
}

impl<E: Event> From<E> for AnyEvent {
    fn from(event: E) -> Self {
        AnyEvent::new(event)
    }
}

impl serde::Serialize for AnyEvent {
    /// `{"type": <stable name>, "value": <fields>}`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeStruct};
        // The fields are written by the concrete type straight to JSON text:
        // no `serde_json::Value` tree on the journal's hot path.
        let value = self.0.to_raw_json().map_err(S::Error::custom)?;
        let mut s = serializer.serialize_struct("AnyEvent", 2)?;
        s.serialize_field("type", self.name())?;
        s.serialize_field("value", &value)?;
        s.end()
    }
}

/// Anything that can be copied into an [`AnyEvent`] by reference: every event,
/// and every `#[derive(EventUnion)]` enum (the variant's event). Collect calls
/// take it, so a step with a union input can pass its input as it is.
pub trait ToAnyEvent {
    /// A type-erased copy of the event.
    fn to_any_event(&self) -> AnyEvent;
}

impl<E: Event> ToAnyEvent for E {
    fn to_any_event(&self) -> AnyEvent {
        AnyEvent::new(self.clone())
    }
}
