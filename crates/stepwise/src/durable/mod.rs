//! Durable runs: the [`Journal`] that writes runs to a
//! [`JournalStore`](crate::store::JournalStore) in
//! batches, and resuming runs from a journal or a snapshot.
//!
//! The journal of a run *is* the run: every tick it reduces is appended (with
//! the time it was reduced at), and replaying those ticks through the reducer
//! rebuilds its state exactly. Writes are group-committed by one writer task
//! per journal; a run copies each tick's entry text into its log, and tells the
//! writer once per commit, not once per tick.
//!
//! Guarantees (the user-facing version is on [`Workflow::resume`](crate::Workflow::resume)): step
//! bodies are at-least-once — an invocation interrupted by a crash runs again
//! on resume; the journal, the published stream and the final outcome are
//! exactly-once — in a journaled run a step's sends and stream writes are
//! applied together with its result (or when it starts to wait), and
//! everything one tick causes (its entry, the events it publishes, the run's
//! final status, a snapshot) is handed to the writer as one group and
//! committed together, so a crash never applies half a tick.
//!
//! - [`writer`]: the [`Journal`], its writer and committer tasks, and how a
//!   batch is encoded for the store;
//! - [`run_log`]: a journaled run's side — its entry text, and the log it
//!   hands each tick's group to;
//! - [`recording`]: the journal behind the runtime's recorder port
//!   (`impl Recorder for RunJournal`, `impl RecorderSource for Journal`) and
//!   [`RunOptions::journal`](crate::RunOptions::journal);
//! - [`resume`]: rebuilding a run from its journal or a snapshot, and the
//!   errors when it cannot.

mod recording;
mod resume;
mod run_log;
pub(crate) mod trace;
mod writer;

pub use crate::runtime::recorder::JournalError;
pub(crate) use resume::parse_entries;
pub use resume::{ResumeError, ResumeOptions};
pub use writer::{CommitLag, Journal, JournalConfig};
