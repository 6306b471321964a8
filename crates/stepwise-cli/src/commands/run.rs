//! `run`: starts a workflow from JSON and follows it.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde_json::Value;
use stepwise::host::StartError;
use stepwise::RunOptions;

use super::{committed, find_run, valid_run_id};
use crate::follow::Follow;
use crate::store::Storage;
use crate::{usage, Cli, Failure};

/// What `run` was asked to do.
pub(crate) struct RunRequest {
    pub workflow: String,
    pub json: Option<String>,
    pub input_file: Option<PathBuf>,
    pub answers: Vec<String>,
    pub run_id: Option<String>,
    pub journaled: bool,
}

pub(crate) async fn run(
    cli: &Cli,
    storage: &Storage,
    request: RunRequest,
    out: &mut (dyn Write + Send),
    input: &mut (dyn BufRead + Send),
    interactive: bool,
) -> Result<(), Failure> {
    let workflow = cli.find(&request.workflow)?;
    if let Some(id) = &request.run_id {
        valid_run_id(id)?;
    }
    let json = read_input(request.json, request.input_file, input)?;
    let value = parse_input(json.as_deref())?;
    // Decoded before the database is opened: bad input saves nothing.
    let start = workflow.decode_start(value).map_err(|e| match e {
        StartError::TooDeep { depth, limit, .. } => usage(format!(
            "--input is nested {depth} levels deep; the limit is {limit} (stepwise::MAX_EVENT_DEPTH): flatten it"
        )),
        other => usage(other.to_string()),
    })?;
    let journal = if request.journaled {
        Some(storage.open().await?)
    } else {
        None
    };
    if let (Some(journal), Some(id)) = (&journal, &request.run_id) {
        if find_run(journal, id).await.is_ok() {
            return Err(usage(format!("a run `{id}` already exists in {}", storage.describe())));
        }
    }
    let mut options = RunOptions::new().internal_events(true);
    if let Some(journal) = &journal {
        options = options.journal(journal);
    }
    if let Some(id) = request.run_id {
        options = options.run_id(id);
    }
    let handle = workflow.run_any(start, options).map_err(|e| usage(e.to_string()))?;
    let _ = writeln!(out, "run {} of {} started", handle.run_id(), workflow.name());
    let follow = Follow::new(
        &cli.name,
        workflow,
        journal.is_some(),
        interactive,
        request.answers,
        None,
    );
    let result = follow.follow(handle, out, input).await;
    match &journal {
        Some(journal) => committed(journal, result).await,
        None => result,
    }
}

/// The start event's JSON text: `--input` itself, standard input for
/// `--input -`, or the file of `--input-file`.
fn read_input(
    json: Option<String>,
    file: Option<PathBuf>,
    stdin: &mut (dyn BufRead + Send),
) -> Result<Option<String>, Failure> {
    if let Some(path) = file {
        return std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|e| usage(format!("--input-file {}: {e}", path.display())));
    }
    if json.as_deref() != Some("-") {
        return Ok(json);
    }
    let mut text = String::new();
    stdin.read_to_string(&mut text).map_err(|e| {
        usage(format!(
            "--input -: cannot read the start event from standard input: {e}"
        ))
    })?;
    Ok(Some(text))
}

fn parse_input(json: Option<&str>) -> Result<Value, Failure> {
    match json {
        None => Ok(Value::Object(Default::default())),
        Some(text) => serde_json::from_str(text).map_err(|e| usage(format!("--input is not valid JSON: {e}"))),
    }
}
