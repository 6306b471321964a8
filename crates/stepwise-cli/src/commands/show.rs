//! `show`: a stored run's status, result, published events and steps, or
//! a drawing of its path.

use std::io::Write;
use std::path::PathBuf;

use stepwise::graph::{DrawFormat, TraceOutcome};
use stepwise::host::{waiting_prompt, PublishedEvent, RunSummary};
use stepwise::store::RunStatus;

use super::{find_run, valid_run_id};
use crate::format::{emit, ms, truncate, utc};
use crate::store::Storage;
use crate::{failed, usage, Cli, Failure};

pub(crate) async fn show(
    cli: &Cli,
    storage: &Storage,
    run_id: &str,
    draw: Option<String>,
    output: Option<PathBuf>,
    out: &mut (dyn Write + Send),
) -> Result<(), Failure> {
    valid_run_id(run_id)?;
    let draw: Option<DrawFormat> = draw.map(|f| f.parse()).transpose().map_err(usage)?;
    if !storage.exists() {
        return Err(usage(format!(
            "no run `{run_id}`: {} does not exist",
            storage.describe()
        )));
    }
    let journal = storage.open_to_read().await?;
    let record = find_run(&journal, run_id).await?;
    let workflow = cli.find(&record.workflow)?;
    let trace = workflow
        .trace(&journal, run_id)
        .await
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(format), Some(path)) = (draw, &output) {
        // Only the drawing goes to the file; the summary still prints.
        emit(out, Some(path.clone()), &trace.graph().draw(format))?;
    }
    if let (Some(format), None) = (draw, &output) {
        // The drawing alone, so it can be piped into a renderer.
        return emit(out, None, &trace.graph().draw(format));
    }
    let summary = RunSummary::from_record(&record);
    let _ = writeln!(out, "run       {}", summary.run_id);
    let _ = writeln!(out, "workflow  {}", summary.workflow);
    let _ = writeln!(out, "status    {}", summary.status.as_str());
    let _ = writeln!(out, "started   {} UTC", utc(summary.started_ms));
    let _ = writeln!(out, "updated   {} UTC", utc(summary.updated_ms));
    if summary.result.is_some() {
        let _ = writeln!(out, "result    {}", summary.result_line());
    }
    if let Some(error) = &summary.error {
        let _ = writeln!(out, "error     {error}");
    }
    let events = PublishedEvent::list(journal.store(), run_id, 0)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let hidden = events.iter().filter(|e| e.is_step_state()).count();
    let listed: Vec<&PublishedEvent> = events.iter().filter(|e| !e.is_step_state()).collect();
    let hidden = if hidden > 0 {
        format!(" ({hidden} step state changes not listed)")
    } else {
        String::new()
    };
    let _ = writeln!(out, "events    {} published{hidden}", listed.len());
    for event in &listed {
        let _ = writeln!(
            out,
            "  #{:<4} {} {}",
            event.seq,
            event.name,
            truncate(&event.value.to_string(), 100)
        );
    }
    let _ = writeln!(
        out,
        "steps     {} invocations, {} events routed",
        trace.steps.len(),
        trace.events.len()
    );
    for step in &trace.steps {
        let took = step
            .finished_us
            .map(|f| ms(f.saturating_sub(step.started_us)))
            .unwrap_or_else(|| "-".into());
        let input = &trace.events[step.input];
        let status = match &step.outcome {
            TraceOutcome::Ok => "ok",
            TraceOutcome::Retried { .. } => "failed, retried",
            TraceOutcome::Failed { .. } => "failed",
            TraceOutcome::Running => "running",
            TraceOutcome::Interrupted => "interrupted, ran again",
            TraceOutcome::Cancelled => "cancelled",
        };
        let _ = writeln!(
            out,
            "  at {:>10}  {:<18} w{:<2} on {:<24} took {:>10}  {status}",
            ms(step.started_us),
            step.step,
            step.worker,
            format!("{} #{}", input.name, step.input),
            took,
        );
        if let TraceOutcome::Retried { error } | TraceOutcome::Failed { error } = &step.outcome {
            let _ = writeln!(out, "      error: {error}");
        }
    }
    if summary.status == RunStatus::Running {
        if let Ok(Some(prompt)) = waiting_prompt(journal.store(), run_id, workflow).await {
            let _ = writeln!(out, "waiting   for an answer to \"{prompt}\"");
        }
        let _ = writeln!(
            out,
            "unfinished: continue it with `{} resume {run_id}` (add --answer <text> to answer)",
            cli.name
        );
    }
    Ok(())
}
