//! `wait_for_event`: suspend a step until a matching event arrives.
//!
//! In the in-memory runtime the step really suspends: the call is an `await`
//! on a channel that the reducer completes when a matching event is routed,
//! so the code before the wait never runs twice. (The anchor re-runs the whole
//! step from the top instead.) After a resume the waiting step does run again
//! from its start, without repeating its effects or its wait's event; see
//! [`Workflow::resume`](crate::Workflow::resume).

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::core::event::{AnyEvent, Event, EventType};

/// What to wait for: an event of type `E`, optionally with required field
/// values, a timeout, an event to publish while waiting, and a waiter id.
///
/// ```ignore
/// let answer = ctx
///     .wait_for_event(
///         WaitFor::<HumanResponseEvent>::new()
///             .publish(InputRequiredEvent::new("Approve the draft?"))
///             .require("data", json!({"draft": 3}))
///             .timeout(Duration::from_secs(3600)),
///     )
///     .await?;
/// ```
#[must_use = "a WaitFor does nothing until passed to ctx.wait_for_event"]
pub struct WaitFor<E> {
    publish: Option<AnyEvent>,
    id: Option<String>,
    requirements: Vec<(String, Value)>,
    timeout: Option<Duration>,
    _event: PhantomData<fn() -> E>,
}

impl<E: Event> Default for WaitFor<E> {
    fn default() -> Self {
        WaitFor {
            publish: None,
            id: None,
            requirements: Vec::new(),
            timeout: None,
            _event: PhantomData,
        }
    }
}

impl<E: Event> WaitFor<E> {
    /// Waits for any `E`, with no timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `event` to the stream when the wait begins (typically an
    /// input request telling a person what to answer).
    pub fn publish(mut self, event: impl Event) -> Self {
        self.publish = Some(AnyEvent::new(event));
        self
    }

    /// Names the waiter (default: the event name plus the requirements).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Only an event whose field `field` equals `value` (compared as JSON)
    /// satisfies the wait; other events of type `E` are routed as usual.
    pub fn require(mut self, field: impl Into<String>, value: impl Serialize) -> Self {
        let value = crate::core::depth::bounded_value(&value);
        self.requirements.push((field.into(), value));
        self
    }

    /// Gives up after `timeout` with [`WaitError::TimedOut`](crate::WaitError::TimedOut).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub(crate) fn into_spec(self) -> WaiterSpec {
        let id = self.id.unwrap_or_else(|| {
            if self.requirements.is_empty() {
                E::NAME.to_owned()
            } else {
                let fields: Vec<String> = self.requirements.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}[{}]", E::NAME, fields.join(","))
            }
        });
        WaiterSpec {
            id,
            ty: EventType::of::<E>(),
            requirements: self.requirements,
            timeout: self.timeout,
            publish: self.publish,
        }
    }
}

/// A waiter as `wait_for_event` asks for it.
#[derive(Debug)]
pub(crate) struct WaiterSpec {
    pub(crate) id: String,
    pub(crate) ty: EventType,
    pub(crate) requirements: Vec<(String, Value)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) publish: Option<AnyEvent>,
}
