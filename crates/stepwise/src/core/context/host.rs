//! The port a step's [`Context`](crate::Context) talks to: the run its
//! invocation belongs to.
//!
//! Today the run's own driver implements it in this process
//! (`runtime::RunShared`): every call takes the run's lock and reduces its
//! tick on the spot. A step may also run on another machine than its
//! run's reducer (the scale-out runtime); the methods are shaped so that a
//! host there can keep each promise:
//!
//! - **Sends and stream writes** carry the invocation they come from, so a
//!   host may hold them and hand them over with the step's result (what a
//!   journaled run does already: its recorder's effect policy is "deferred").
//!   A remote host always does; its stream writes then reach readers when the
//!   step ends.
//! - **Waits** hand back a receiver, not an answer: a remote host ends the
//!   step's activity with the wait, and runs the step again from its start
//!   once the answer is in, where the wait returns it at once (what a resumed
//!   run does already). No worker slot is held while a person thinks.
//! - **State** is a [`StateStore`]: a remote host gives one whose edits are
//!   compare-and-set round trips to the run (apply the closure to the
//!   dispatched copy, commit if the version is still current, else retry on
//!   the current value), so no edit is lost across machines.
//! - **Collects** are answered at once, under the reducer's lock: exactly one
//!   invocation may receive a full set, so only the run's owner can decide.
//!   A runtime that runs steps elsewhere runs steps that collect on the run's
//!   owner; steps that join declaratively (their parameters name the set) need
//!   no call at all, since the reducer decides the join before it dispatches.

use std::task::{Context as TaskContext, Poll};

use crate::core::context::collect::Expectation;
use crate::core::context::wait::WaiterSpec;
use crate::core::error::{SendError, WaitError};
use crate::core::event::{AnyEvent, EventType};
use crate::core::ids::{InvocationId, RetryInfo};
use crate::core::state::StateStore;

/// Where the answer to a registered wait arrives.
pub(crate) type WaitAnswer = tokio::sync::oneshot::Receiver<Result<AnyEvent, WaitError>>;

/// What a step invocation's [`Context`](crate::Context) can ask of its run.
pub(crate) trait StepHost: Send + Sync {
    /// The run's id.
    fn run_id(&self) -> &str;
    /// The name of the workflow the run runs.
    fn workflow_name(&self) -> &str;
    /// The name of step `step` (its index in definition order).
    fn step_name(&self, step: usize) -> &str;
    /// True when the workflow's event registry holds `ty` (so a journal or
    /// snapshot naming it can be read back).
    fn knows_event(&self, ty: EventType) -> bool;
    /// Sends `event` from invocation `from` (to `target` only, if given).
    fn send(&self, event: AnyEvent, target: Option<&str>, from: InvocationId) -> Result<(), SendError>;
    /// Writes `event` to the run's stream for invocation `from`.
    fn write_to_stream(&self, from: InvocationId, event: AnyEvent);
    /// Ready once the stream's reader has room again.
    fn poll_room(&self, cx: &mut TaskContext<'_>) -> Poll<()>;
    /// The run's state.
    fn state(&self) -> &StateStore;
    /// Where `invocation` stands in its retries (`None` once it ended).
    fn retry_info(&self, invocation: InvocationId) -> Option<RetryInfo>;
    /// Registers a wait of `invocation`: its key (to withdraw it) and where
    /// the answer arrives.
    fn add_waiter(&self, invocation: InvocationId, spec: WaiterSpec) -> Result<(u64, WaitAnswer), WaitError>;
    /// Withdraws wait `key`, whose future was dropped unanswered.
    fn withdraw_waiter(&self, key: u64);
    /// Offers `event` to the invocation's step's collect buffer `buffer`; the
    /// whole set once `expect` is met, for exactly one invocation.
    fn collect(
        &self,
        invocation: InvocationId,
        buffer: &str,
        event: AnyEvent,
        expect: &Expectation<'_>,
    ) -> Option<Vec<AnyEvent>>;
}
