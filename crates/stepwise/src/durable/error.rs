//! What a journal reports when it could not keep a run.

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
