//! # stepwise
//!
//! An event-driven, async workflow engine. Describe an application as *steps*
//! triggered by typed *events*; stepwise routes each event to every step that
//! accepts its type, runs steps concurrently (at most `num_workers` invocations
//! per step), collects fan-ins, streams progress and checks the whole graph
//! when the workflow is built, before anything runs.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use stepwise::{workflow, Context, Event, StartEvent, StopEvent, WorkflowDefinition};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize, Event)]
//! struct Greeting {
//!     text: String,
//! }
//!
//! struct Hello;
//!
//! #[workflow]
//! impl Hello {
//!     /// Turns the start event into a greeting.
//!     #[step]
//!     async fn greet(&self, ev: StartEvent) -> Greeting {
//!         let name: String = ev.get("name").unwrap_or_else(|_| "world".into());
//!         Greeting { text: format!("hello, {name}") }
//!     }
//!
//!     #[step]
//!     async fn finish(&self, ctx: &Context, ev: Greeting) -> StopEvent {
//!         ctx.write_event_to_stream(ev.clone());
//!         StopEvent::new(ev.text)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let workflow = Hello.build().expect("a valid workflow");
//! let stop = workflow.run(StartEvent::new().with("name", "stepwise")).await.unwrap();
//! assert_eq!(stop.result, "hello, stepwise");
//! # }
//! ```
//!
//! The macros are thin sugar over [`WorkflowBuilder`]; see its docs for the
//! same workflow written by hand.
//!
//! ## How a run works
//!
//! All of a run's state lives in one reducer (`reducer.rs`): every change is a
//! *tick* reduced in place, O(1) per tick, with no I/O and no clock. One tokio
//! task per run (the driver) polls the step invocations and executes what the
//! reducer decides. See `ARCHITECTURE.md` in the repository.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate self as stepwise;

mod core;
mod durable;
pub mod graph;
pub mod host;
mod runtime;
pub mod store;
pub mod testing;

pub use crate::core::codec::journal;
pub use crate::core::{retry, state};

pub use crate::core::builtin::{
    FieldError, HumanResponseEvent, InputRequiredEvent, StartEvent, StepFailed, StepPhase, StepStateChanged, StopEvent,
    StreamLagged, UnhandledEvent, WorkflowCancelled, WorkflowFailed, WorkflowIdle, WorkflowTimedOut,
};
pub use crate::core::codec::snapshot::{Snapshot, SNAPSHOT_FORMAT};
pub use crate::core::context::collect::{CollectSet, EventList, ExpectedEvents};
pub use crate::core::context::wait::WaitFor;
pub use crate::core::context::{Context, StreamWrite};
pub use crate::core::define::step::{
    CatchErrors, Emitted, GraphCheck, Handler, StepConfig, StepInfo, StepInput, StepOutput, DEFAULT_NUM_WORKERS,
};
pub use crate::core::define::validate::{BuildError, ValidationIssue};
pub use crate::core::define::workflow::{Workflow, WorkflowBuilder, WorkflowDefinition};
pub use crate::core::depth::{json_depth, MAX_EVENT_DEPTH};
pub use crate::core::error::{check_run_id, EventError, SendError, StepError, StepResult, WaitError, MAX_RUN_ID_BYTES};
pub use crate::core::event::{AnyEvent, Event, EventKind, EventType, ToAnyEvent};
pub use crate::core::ids::RetryInfo;
pub use crate::core::retry::RetryPolicy;
pub use crate::core::state::{StateError, StateStore};
pub use crate::runtime::{
    EventStream, RunError, RunHandle, RunOptions, StopOutput, StreamError, DEFAULT_STREAM_BUFFER,
};
pub use durable::{CommitLag, Journal, JournalConfig, JournalError, ResumeError, ResumeOptions};
pub use stepwise_macros::{step, workflow, Event, EventUnion};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// Used by the macros' generated code; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;
}

/// Re-exported so generated code and users can name the stream trait.
pub use futures_util::stream::{Stream, StreamExt};
