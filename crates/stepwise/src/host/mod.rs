//! What every front end shares — the command line now, an HTTP server next:
//! workflows of any start and stop types behind one object, found by name;
//! start events and answers decoded from JSON with errors that say what is
//! wrong; the prompt a waiting run waits on; summaries of stored runs.
//!
//! - [`AnyWorkflow`]: a [`Workflow<S, O>`](crate::Workflow) with its types
//!   erased (every workflow implements it), and [`WorkflowRegistry`], the
//!   workflows a front end serves, by name.
//! - [`StartError`], [`EventDecodeError`], [`UnknownWorkflow`],
//!   [`DuplicateWorkflow`]: why a run could not be started, an event sent to
//!   it not decoded, or a workflow not registered or found.
//! - [`answer_event`], [`answer_from_json`], [`answer_types`],
//!   [`input_prompt`], [`waiting_prompt`]: answers to input requests.
//! - [`RunSummary`], [`PublishedEvent`]: stored runs over any
//!   [`JournalStore`](crate::store::JournalStore), for listing and showing.
//!
//! ```
//! use stepwise::host::WorkflowRegistry;
//! use stepwise::{StartEvent, StopEvent, Workflow};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let echo = Workflow::builder("echo")
//!     .step("echo", |ev: StartEvent| async move { StopEvent::new(ev.get::<String>("text").unwrap_or_default()) })
//!     .build()
//!     .unwrap();
//! let mut registry = WorkflowRegistry::new();
//! registry.register(echo).unwrap();
//!
//! // What a front end does with a request: find the workflow by name, start it from JSON.
//! let workflow = registry.find("echo").unwrap();
//! let handle = workflow
//!     .run_json(serde_json::json!({"text": "hi"}), Default::default())
//!     .unwrap();
//! let stop = handle.await.unwrap();
//! assert_eq!(stop.to_json().unwrap(), serde_json::json!({"result": "hi"}));
//! # }
//! ```
//!
//! The host layer uses only the crate's public API, so anything it does a
//! front end could do by hand.

mod answers;
mod decode;
mod registry;
mod runs;

pub use answers::{answer_event, answer_from_json, answer_types, input_prompt, waiting_prompt, AnswerError};
pub use decode::{EventDecodeError, StartError};
pub use registry::{AnyWorkflow, BoxFuture, DuplicateWorkflow, UnknownWorkflow, WorkflowRegistry};
pub use runs::{bare_result, PublishedEvent, RunSummary};
