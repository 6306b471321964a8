//! One file per command; what several share is here.

use stepwise::store::RunRecord;
use stepwise::Journal;

use crate::{failed, usage, Failure};

pub(crate) mod draw;
pub(crate) mod list;
pub(crate) mod resume;
pub(crate) mod run;
pub(crate) mod runs;
pub(crate) mod show;

/// A run id given on the command line must be one a run can have (exit 2
/// otherwise).
fn valid_run_id(run_id: &str) -> Result<(), Failure> {
    stepwise::check_run_id(run_id).map_err(|reason| {
        usage(
            stepwise::RunError::InvalidRunId {
                run_id: run_id.to_owned(),
                reason,
            }
            .to_string(),
        )
    })
}

async fn find_run(journal: &Journal, run_id: &str) -> Result<RunRecord, Failure> {
    journal
        .store()
        .run(run_id)
        .await
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| usage(format!("no run `{run_id}` in this database (see `runs`)")))
}

/// `result`, unless the journal lost writes: then that failure (exit 1),
/// because a run reported done whose journal is incomplete is a lie.
async fn committed(journal: &Journal, result: Result<(), Failure>) -> Result<(), Failure> {
    match journal.flush().await {
        Ok(()) => result,
        Err(error) => Err(failed(format!(
            "the journal could not commit everything: {error}; what is stored may be incomplete"
        ))),
    }
}
