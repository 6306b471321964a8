//! The port through which a run tells durability what happens to it.
//!
//! A run reduces every change under its lock; a [`Recorder`] is told each
//! change in that order, before it is reduced, and decides what to keep.
//! `durable::RunJournal` implements it over any
//! [`JournalStore`](crate::store::JournalStore); an in-memory run has none.
//! A scale-out runtime whose history is its journal implements it too
//! (ticks cost it nothing, published events go to its event log).
//!
//! The recorder names the run's [`EffectPolicy`]: whether a step's sends and
//! stream writes take effect as it makes them or together with its result.
//! The runtime follows it; nothing else in the runtime asks whether a run is
//! journaled.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::core::context::collect::Expectation;
use crate::core::context::wait::WaiterSpec;
use crate::core::define::workflow::WorkflowCore;
use crate::core::event::AnyEvent;
use crate::core::ids::{InvocationId, RunStatus};
use crate::core::reducer::{Effect, RunState, Tick};

use crate::store::StoreError;

/// A journal failure, reported by [`Journal::flush`](crate::Journal::flush)
/// and, for the runs it hit, by their handles
/// ([`RunError::Journal`](crate::RunError::Journal)).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Commits were given up (the store kept failing past the retry budget,
    /// or failed in a way retrying cannot fix). The runs named stopped: their
    /// stored journals end at their last good commit, so they can be resumed
    /// from there once the store works again.
    #[error("the journal could not commit {}: {source}", runs_text(.runs))]
    Lost {
        /// The runs whose commits were lost.
        runs: Vec<String>,
        /// The last store error.
        #[source]
        source: StoreError,
    },
    /// The store refused a run's commits: another journal claimed it, or its
    /// id was already in use. The run stopped here; nothing of it was merged.
    #[error("run {run_id} is no longer this journal's: {reason}")]
    Fenced {
        /// The run.
        run_id: String,
        /// Why the store refused.
        reason: String,
    },
    /// The journal's writer task has stopped (its runtime shut down).
    #[error("the journal writer has stopped")]
    Stopped,
}

fn runs_text(runs: &[String]) -> String {
    match runs.len() {
        0 => "a batch with no runs".to_owned(),
        1 => format!("run {}", runs[0]),
        n if n <= 5 => format!("runs {}", runs.join(", ")),
        n => format!("{n} runs ({}, …)", runs[..5].join(", ")),
    }
}

/// When a step invocation's sends and stream writes take effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EffectPolicy {
    /// As the step makes them: nothing has to be made atomic (in-memory runs).
    Immediate,
    /// With the step's result (or when it starts to wait), in the same tick:
    /// a recorded run never keeps half a step, so a crash can only lose or
    /// repeat a whole attempt.
    Deferred,
}

/// Answered once a run's claim of its id is durable (`Err`: refused).
pub(crate) type Claimed = tokio::sync::oneshot::Receiver<Result<(), JournalError>>;

/// What to call when the recorder gives the run up (its commits were lost
/// or refused): the run then ends with [`RunError::Journal`](crate::RunError::Journal).
pub(crate) type FaultHook = Box<dyn FnOnce(JournalError) + Send>;

/// Why an entry could not be recorded: an event in it does not serialise.
/// Nothing of it was kept, and the caller must not reduce the tick as it is.
pub(crate) type RecordError = serde_json::Error;

/// What one run tells durability, under the run's lock, in order. Every
/// `tick`, `collect` and `waiter` call comes before the tick is reduced; the
/// calls between two [`Recorder::commit`]s belong to one tick and are kept
/// together or not at all.
pub(crate) trait Recorder: Send {
    /// When the run's step effects take effect.
    fn policy(&self) -> EffectPolicy;
    /// Records `tick`; `Ok(true)` when a snapshot is due.
    fn tick(&mut self, tick: &Tick, state: &RunState, now: Duration) -> Result<bool, RecordError>;
    /// Records an event offered to a collect buffer.
    fn collect(
        &mut self,
        invocation: InvocationId,
        buffer: &str,
        event: &AnyEvent,
        expect: &Expectation<'_>,
        now: Duration,
    ) -> Result<bool, RecordError>;
    /// Records a wait, with the effects its invocation made before it.
    fn waiter(
        &mut self,
        invocation: InvocationId,
        spec: &WaiterSpec,
        effects: &[Effect],
        state: &RunState,
        now: Duration,
    ) -> Result<bool, RecordError>;
    /// Records that `event` went to the stream as number `seq`.
    fn published(&mut self, seq: u64, event: &AnyEvent);
    /// Records the run's final status.
    fn status(&mut self, status: RunStatus, stop: Option<&AnyEvent>, error: Option<String>);
    /// Records the run's state after a change (its JSON).
    fn state_changed(&mut self, json: String);
    /// Records a snapshot of the run if one is worth its cost now.
    fn snapshot(&mut self, workflow: &WorkflowCore, state: &RunState, now: Duration, published: u64);
    /// Ends the current group: what was recorded since the last call is
    /// kept together.
    fn commit(&mut self);
    /// How many entries the run has recorded (the next entry's number).
    fn seq(&self) -> u64;
    /// What to call if the recorder gives the run up.
    fn on_fault(&self, hook: FaultHook);
}

/// Where runs get their [`Recorder`]s: a journal, shared by many runs. Held
/// by [`RunOptions`](crate::RunOptions).
pub(crate) trait RecorderSource: Send + Sync + fmt::Debug {
    /// A fresh run's recorder, with its first group under way (the run's
    /// record, and `state` when the run starts with one). With `confirm`,
    /// the run's claim of its id is answered on the returned receiver before
    /// any step may run. `None`: this source runs a run with that id already.
    fn start(
        &self,
        run_id: &Arc<str>,
        workflow: &Arc<WorkflowCore>,
        state: Option<String>,
        confirm: bool,
    ) -> Option<(Box<dyn Recorder>, Option<Claimed>)>;
    /// A resumed run's recorder, going on from entry `seq` at `epoch`.
    /// `None` as for [`RecorderSource::start`].
    fn resume(&self, run_id: &Arc<str>, seq: u64, epoch: u64) -> Option<Box<dyn Recorder>>;
    /// True while the store is too far behind: the run's driver waits
    /// ([`RecorderSource::drained`]) before it polls its steps again.
    fn backlogged(&self) -> bool;
    /// Resolves once the store has caught up.
    fn drained(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// For the durable layer to find its own type behind the port.
    fn as_any(&self) -> &dyn Any;
}
