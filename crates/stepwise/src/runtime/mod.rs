//! The runtime: one run in this process — its shared core, the driver task
//! that executes the reducer's commands, and the outbox that carries the
//! stream and the result to the caller.
//!
//! Step invocations are futures polled by the run's driver task (one tokio task
//! per run, never one per event): starting a step is a push into a
//! `FuturesUnordered`, finishing one is a poll result, and cancelling the rest
//! is dropping them. Calls a step makes on its [`Context`](crate::Context)
//! reduce their tick right away under the run's lock, so fan-in is decided in
//! one place.
//!
//! - [`launch`]: starting a run (fresh or resumed), `Workflow::run`;
//! - [`shared`]: `RunShared`, where ticks are reduced and commands carried out;
//! - [`host`]: what a step's context calls (`impl StepHost for RunShared`);
//! - [`driver`]: the per-run task, and the timeout's own task;
//! - [`timers`], [`stream`] (the outbox and `EventStream`), [`end`] (outcomes,
//!   closing), [`handle`] (`RunHandle`), [`options`] (`RunOptions`), [`run_id`];
//! - [`limits`]: `num_concurrent_runs` and per-step limits across runs;
//! - [`recorder`]: the port a run tells durability through; [`error`].

mod driver;
mod end;
pub(crate) mod error;
mod handle;
mod host;
mod launch;
mod limits;
mod options;
pub(crate) mod recorder;
mod run_id;
mod shared;
mod stream;
mod timers;

pub(crate) use end::{ended_status, outcome_result};
pub use error::{RunError, StreamError};
pub use handle::{RunHandle, StopOutput};
pub(crate) use launch::{launch, Begin};
pub use options::{RunOptions, DEFAULT_STREAM_BUFFER};
pub use stream::EventStream;
