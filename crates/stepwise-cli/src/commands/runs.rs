//! `runs`: stored runs, oldest first.

use std::io::Write;

use stepwise::host::RunSummary;
use stepwise::store::{RunFilter, RunStatus};

use crate::format::{truncate, utc};
use crate::store::Storage;
use crate::{failed, usage, Failure};

pub(crate) async fn runs(
    storage: &Storage,
    status: Option<String>,
    workflow: Option<String>,
    out: &mut (dyn Write + Send),
) -> Result<(), Failure> {
    let statuses = match status {
        None => Vec::new(),
        Some(s) => vec![RunStatus::parse(&s).ok_or_else(|| {
            usage(format!(
                "unknown status `{s}`; use running, completed, failed or cancelled"
            ))
        })?],
    };
    if !storage.exists() {
        let _ = writeln!(out, "no runs: {} does not exist yet", storage.describe());
        return Ok(());
    }
    let journal = storage.open_to_read().await?;
    let runs = RunSummary::list(journal.store(), RunFilter { statuses, workflow })
        .await
        .map_err(|e| failed(e.to_string()))?;
    if runs.is_empty() {
        let _ = writeln!(out, "no runs in {}", storage.describe());
        return Ok(());
    }
    let _ = writeln!(
        out,
        "{:<14} {:<10} {:<22} {:<20} RESULT",
        "RUN", "STATUS", "WORKFLOW", "STARTED (UTC)"
    );
    for run in runs {
        let _ = writeln!(
            out,
            "{:<14} {:<10} {:<22} {:<20} {}",
            run.run_id,
            run.status.as_str(),
            run.workflow,
            utc(run.started_ms),
            truncate(&run.result_line(), 70)
        );
    }
    Ok(())
}
