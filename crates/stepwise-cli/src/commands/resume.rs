//! `resume`: continues an unfinished run and follows it.

use std::io::{BufRead, Write};

use stepwise::host::waiting_prompt;
use stepwise::{ResumeError, ResumeOptions};

use super::{committed, find_run, valid_run_id};
use crate::follow::Follow;
use crate::store::Storage;
use crate::{failed, usage, Cli, Failure};

pub(crate) async fn resume(
    cli: &Cli,
    storage: &Storage,
    run_id: &str,
    answers: Vec<String>,
    out: &mut (dyn Write + Send),
    input: &mut (dyn BufRead + Send),
    interactive: bool,
) -> Result<(), Failure> {
    valid_run_id(run_id)?;
    // Without creating an empty database when there is none.
    if !storage.exists() {
        return Err(usage(format!(
            "no run `{run_id}`: {} does not exist",
            storage.describe()
        )));
    }
    let journal = storage.open().await?;
    let record = find_run(&journal, run_id).await?;
    if record.status.is_terminal() {
        return Err(usage(format!(
            "run `{run_id}` has already ended ({}); only unfinished runs can be resumed",
            record.status.as_str()
        )));
    }
    let workflow = cli.find(&record.workflow)?;
    // Asked before this process: the idle notice on resume is about it.
    let last_prompt = waiting_prompt(journal.store(), run_id, workflow).await.ok().flatten();
    let options = ResumeOptions::new().internal_events(true);
    let handle = workflow.resume(&journal, run_id, options).await.map_err(|e| match e {
        ResumeError::NotFound { .. } | ResumeError::Finished { .. } | ResumeError::WrongWorkflow { .. } => {
            usage(e.to_string())
        }
        other => failed(other.to_string()),
    })?;
    let _ = writeln!(out, "run {run_id} of {} resumed", workflow.name());
    let follow = Follow::new(&cli.name, workflow, true, interactive, answers, last_prompt);
    let result = follow.follow(handle, out, input).await;
    committed(&journal, result).await
}
