//! # stepwise-cli
//!
//! A command-line front end for your stepwise workflows, as a library call:
//! register your workflows and hand over the arguments.
//!
//! ```no_run
//! use stepwise::{StartEvent, StopEvent, Workflow};
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let echo = Workflow::builder("echo")
//!         .step("echo", |ev: StartEvent| async move { StopEvent::new(ev.get::<String>("text").unwrap_or_default()) })
//!         .build()
//!         .expect("valid workflow");
//!     stepwise_cli::Cli::new("my-tool").workflow(echo).run_from_env().await
//! }
//! ```
//!
//! Commands: `list`, `draw <workflow> --format mermaid|dot|html|json`,
//! `run <workflow> --input '<json>'` (progress from the event stream as it
//! happens, then the result), `runs`, `show <run-id>`, `resume <run-id>`.
//! Runs are journaled to a SQLite file (`--db`, default `stepwise.db`), so an
//! interrupted run — or one waiting for an answer nobody gave — can be
//! resumed.
//!
//! Exit codes: 0 success, 1 the run failed (or timed out, or was cancelled),
//! 2 bad input or usage, 3 the run waits for an answer and was left
//! unfinished in the database (`resume` it with `--answer`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use serde_json::Value;
use stepwise::graph::{DrawFormat, TraceOutcome};
use stepwise::store::{RunFilter, RunRecord, RunStatus, StoreError};
use stepwise::{
    AnyEvent, EventKind, HumanResponseEvent, Journal, ResumeError, RunHandle, RunOptions, StepPhase, StepStateChanged,
    StreamExt, WorkflowIdle,
};
use stepwise_sqlite::SqliteStore;

mod registry;

use registry::DynWorkflow;

/// Exit code for bad input or usage.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a run that failed, timed out or was cancelled.
pub const EXIT_RUN_FAILED: u8 = 1;
/// Exit code for a journaled run that waits for an answer none was given
/// for: it stays unfinished in the database, to be resumed with `--answer`.
pub const EXIT_WAITING: u8 = 3;

#[derive(Parser, Debug)]
#[command(version, about = "Run, draw and inspect stepwise workflows")]
struct Args {
    /// The SQLite file that journals runs.
    #[arg(long, global = true, value_name = "FILE")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the registered workflows.
    List,
    /// Draw a workflow's every possible flow.
    Draw {
        /// The workflow's name.
        workflow: String,
        /// mermaid, dot, html or json.
        #[arg(long, short, default_value = "mermaid")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Run a workflow, showing progress, and print its result.
    Run {
        /// The workflow's name.
        workflow: String,
        /// The start event as JSON (default `{}`); `-` reads it from standard
        /// input (then answers come only from --answer).
        #[arg(long, short, value_name = "JSON", conflicts_with = "input_file")]
        input: Option<String>,
        /// Read the start event's JSON from this file (for input larger than
        /// the command line allows).
        #[arg(long, value_name = "PATH")]
        input_file: Option<PathBuf>,
        /// Answers to input requests, in order (otherwise asked on the terminal
        /// or read from standard input, one line each).
        #[arg(long, value_name = "TEXT")]
        answer: Vec<String>,
        /// The run's id (default: a random one).
        #[arg(long, value_name = "ID")]
        run_id: Option<String>,
        /// Don't journal the run (it cannot be shown or resumed later).
        #[arg(long)]
        no_journal: bool,
    },
    /// List stored runs, oldest first.
    Runs {
        /// Only runs with this status: running, completed, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
    },
    /// Show a stored run: status, result, published events and the steps it ran.
    Show {
        /// The run's id.
        run_id: String,
        /// Also draw the run's path: mermaid, dot, html or json.
        #[arg(long, value_name = "FORMAT")]
        draw: Option<String>,
        /// Write the drawing to this file.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Resume an unfinished run (interrupted, or waiting for an answer).
    Resume {
        /// The run's id.
        run_id: String,
        /// Answers to input requests, in order.
        #[arg(long, value_name = "TEXT")]
        answer: Vec<String>,
    },
}

/// A failure with its exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}

fn failed(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_RUN_FAILED,
        message: message.into(),
    }
}

/// Where the CLI reads and writes (the process's streams, or buffers in tests).
pub struct Io<'a> {
    /// Standard output.
    pub out: &'a mut (dyn Write + Send),
    /// Standard error.
    pub err: &'a mut (dyn Write + Send),
    /// Standard input (answers to input requests).
    pub input: &'a mut (dyn BufRead + Send),
    /// True when output is a terminal: a live progress line (redrawn with
    /// terminal escape codes) and prompts. When false, output is plain lines
    /// with no escape codes.
    pub interactive: bool,
}

/// The command-line front end. Register workflows, then run it.
pub struct Cli {
    name: String,
    workflows: Vec<Box<dyn DynWorkflow>>,
    default_db: PathBuf,
}

impl Cli {
    /// A CLI called `name` (used in help text and hints) with no workflows yet.
    pub fn new(name: impl Into<String>) -> Self {
        Cli {
            name: name.into(),
            workflows: Vec::new(),
            default_db: PathBuf::from("stepwise.db"),
        }
    }

    /// Registers a workflow under its name.
    pub fn workflow<S: stepwise::Event, O: stepwise::Event>(mut self, workflow: stepwise::Workflow<S, O>) -> Self {
        self.workflows.push(Box::new(workflow));
        self
    }

    /// The database used when `--db` is not given (default `stepwise.db`).
    pub fn database(mut self, path: impl Into<PathBuf>) -> Self {
        self.default_db = path.into();
        self
    }

    /// The names of the registered workflows, in registration order.
    pub fn workflow_names(&self) -> Vec<&str> {
        self.workflows.iter().map(|w| w.name()).collect()
    }

    /// Parses the process's arguments, runs the command on the process's
    /// standard streams and returns the exit code. Output is interactive
    /// (live progress line, prompts) when standard output is a terminal and
    /// `TERM` is not `dumb`.
    pub async fn run_from_env(self) -> ExitCode {
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        let interactive = out.is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        let mut input = std::io::BufReader::new(std::io::stdin());
        let code = self
            .run_args(
                std::env::args_os(),
                Io {
                    out: &mut out,
                    err: &mut err,
                    input: &mut input,
                    interactive,
                },
            )
            .await;
        ExitCode::from(code)
    }

    /// Runs the command given by `args` (the first is the program name) and
    /// returns the exit code: 0 success, 1 run failed, 2 bad input, 3 the
    /// run waits for an answer (left unfinished, resumable).
    pub async fn run_args<I, T>(&self, args: I, io: Io<'_>) -> u8
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = <Args as clap::CommandFactory>::command()
            .name(self.name.clone())
            .bin_name(self.name.clone())
            .after_help(format!(
                "Workflows: {}\nDatabase: {} (change with --db)\nExit codes: 0 ok, 1 the run failed, 2 bad input, \
                 3 the run waits for an answer (saved; `resume` it with --answer)",
                self.workflow_names().join(", "),
                self.default_db.display()
            ));
        let parsed = command
            .try_get_matches_from(args)
            .and_then(|matches| <Args as clap::FromArgMatches>::from_arg_matches(&matches));
        let args = match parsed {
            Ok(args) => args,
            Err(error) => {
                let code = if error.use_stderr() { EXIT_USAGE } else { 0 };
                let text = error.render().to_string();
                let _ = if code == 0 {
                    write!(io.out, "{text}")
                } else {
                    write!(io.err, "{text}")
                };
                return code;
            }
        };
        let Io {
            out,
            err,
            input,
            interactive,
        } = io;
        let result = self.dispatch(args, out, input, interactive).await;
        let _ = out.flush();
        match result {
            Ok(()) => 0,
            Err(failure) => {
                let _ = writeln!(err, "error: {}", failure.message);
                failure.code
            }
        }
    }

    async fn dispatch(
        &self,
        args: Args,
        out: &mut (dyn Write + Send),
        input: &mut (dyn BufRead + Send),
        interactive: bool,
    ) -> Result<(), Failure> {
        let db = args.db.clone().unwrap_or_else(|| self.default_db.clone());
        match args.command {
            Command::List => self.list(out),
            Command::Draw {
                workflow,
                format,
                output,
            } => {
                let workflow = self.find(&workflow)?;
                let format: DrawFormat = format.parse().map_err(usage)?;
                emit(out, output, &workflow.graph().draw(format))
            }
            Command::Run {
                workflow,
                input: json,
                input_file,
                answer,
                run_id,
                no_journal,
            } => {
                let workflow = self.find(&workflow)?;
                if let Some(id) = &run_id {
                    valid_run_id(id)?;
                }
                let json = read_input(json, input_file, input)?;
                let value = parse_input(json.as_deref())?;
                let journal = if no_journal { None } else { Some(open(&db).await?) };
                if let (Some(journal), Some(id)) = (&journal, &run_id) {
                    if find_run(journal, id).await.is_ok() {
                        return Err(usage(format!("a run `{id}` already exists in {}", db.display())));
                    }
                }
                let mut options = RunOptions::new().internal_events(true);
                if let Some(journal) = &journal {
                    options = options.journal(journal);
                }
                if let Some(id) = run_id {
                    options = options.run_id(id);
                }
                let handle = workflow.run_json(value, options).map_err(usage)?;
                let _ = writeln!(out, "run {} of {} started", handle.run_id(), workflow.name());
                let follow = Follow {
                    cli: &self.name,
                    workflow,
                    journaled: journal.is_some(),
                    interactive,
                    answers: answer.into_iter(),
                    last_prompt: None,
                };
                let result = follow.follow(handle, out, input).await;
                match &journal {
                    Some(journal) => committed(journal, result).await,
                    None => result,
                }
            }
            Command::Runs { status, workflow } => {
                let statuses = match status {
                    None => Vec::new(),
                    Some(s) => vec![RunStatus::parse(&s).ok_or_else(|| {
                        usage(format!(
                            "unknown status `{s}`; use running, completed, failed or cancelled"
                        ))
                    })?],
                };
                if !db.exists() {
                    let _ = writeln!(out, "no runs: {} does not exist yet", db.display());
                    return Ok(());
                }
                let journal = open_to_read(&db).await?;
                let runs = journal
                    .store()
                    .runs(RunFilter { statuses, workflow })
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                if runs.is_empty() {
                    let _ = writeln!(out, "no runs in {}", db.display());
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
                        utc(run.created_at_ms),
                        truncate(&summary(&run), 70)
                    );
                }
                Ok(())
            }
            Command::Show { run_id, draw, output } => {
                valid_run_id(&run_id)?;
                let format: Option<DrawFormat> = draw.map(|f| f.parse()).transpose().map_err(usage)?;
                if !db.exists() {
                    return Err(usage(format!("no run `{run_id}`: {} does not exist", db.display())));
                }
                let journal = open_to_read(&db).await?;
                self.show(&journal, &run_id, format, output, out).await
            }
            Command::Resume { run_id, answer } => {
                valid_run_id(&run_id)?;
                let journal = open_existing(&db, &run_id).await?;
                let record = find_run(&journal, &run_id).await?;
                if record.status.is_terminal() {
                    return Err(usage(format!(
                        "run `{run_id}` has already ended ({}); only unfinished runs can be resumed",
                        record.status.as_str()
                    )));
                }
                let workflow = self.find(&record.workflow)?;
                let last_prompt = last_prompt(&journal, &run_id, workflow).await;
                let handle = workflow.resume(&journal, &run_id).await.map_err(|e| match e {
                    ResumeError::NotFound { .. } | ResumeError::Finished { .. } | ResumeError::WrongWorkflow { .. } => {
                        usage(e.to_string())
                    }
                    other => failed(other.to_string()),
                })?;
                let _ = writeln!(out, "run {run_id} of {} resumed", workflow.name());
                let follow = Follow {
                    cli: &self.name,
                    workflow,
                    journaled: true,
                    interactive,
                    answers: answer.into_iter(),
                    last_prompt,
                };
                let result = follow.follow(handle, out, input).await;
                committed(&journal, result).await
            }
        }
    }

    fn find(&self, name: &str) -> Result<&dyn DynWorkflow, Failure> {
        self.workflows
            .iter()
            .find(|w| w.name() == name)
            .map(|w| &**w)
            .ok_or_else(|| {
                let known = self.workflow_names();
                if known.is_empty() {
                    usage(format!("unknown workflow `{name}`; no workflows are registered"))
                } else {
                    usage(format!("unknown workflow `{name}`; registered: {}", known.join(", ")))
                }
            })
    }

    fn list(&self, out: &mut (dyn Write + Send)) -> Result<(), Failure> {
        if self.workflows.is_empty() {
            let _ = writeln!(out, "no workflows are registered");
        }
        for w in &self.workflows {
            let _ = writeln!(
                out,
                "{:<22} {:>2} steps  {} -> {}{}",
                w.name(),
                w.step_count(),
                w.start_type().name(),
                w.stop_type().name(),
                w.doc().map(|d| format!("  {}", one_line(d))).unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn show(
        &self,
        journal: &Journal,
        run_id: &str,
        draw: Option<DrawFormat>,
        output: Option<PathBuf>,
        out: &mut (dyn Write + Send),
    ) -> Result<(), Failure> {
        let record = find_run(journal, run_id).await?;
        let workflow = self.find(&record.workflow)?;
        let trace = workflow
            .trace(journal, run_id)
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
        let _ = writeln!(out, "run       {}", record.run_id);
        let _ = writeln!(out, "workflow  {}", record.workflow);
        let _ = writeln!(out, "status    {}", record.status.as_str());
        let _ = writeln!(out, "started   {} UTC", utc(record.created_at_ms));
        let _ = writeln!(out, "updated   {} UTC", utc(record.updated_at_ms));
        if record.result.is_some() {
            let _ = writeln!(out, "result    {}", summary(&record));
        }
        if let Some(error) = &record.error {
            let _ = writeln!(out, "error     {error}");
        }
        let events = journal
            .store()
            .events(run_id, 0)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut listed = Vec::new();
        let mut hidden = 0;
        for event in &events {
            let json: Value = serde_json::from_str(&event.event).unwrap_or(Value::Null);
            let name = json.get("type").and_then(Value::as_str).unwrap_or("?").to_owned();
            if name == "StepStateChanged" {
                hidden += 1;
                continue;
            }
            let value = json.get("value").cloned().unwrap_or(Value::Null);
            listed.push((event.seq, name, value));
        }
        let hidden = if hidden > 0 {
            format!(" ({hidden} step state changes not listed)")
        } else {
            String::new()
        };
        let _ = writeln!(out, "events    {} published{hidden}", listed.len());
        for (seq, name, value) in &listed {
            let _ = writeln!(out, "  #{seq:<4} {name} {}", truncate(&value.to_string(), 100));
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
        if record.status == RunStatus::Running {
            if let Some(prompt) = last_prompt(journal, run_id, workflow).await {
                let _ = writeln!(out, "waiting   for an answer to \"{prompt}\"");
            }
            let _ = writeln!(
                out,
                "unfinished: continue it with `{} resume {run_id}` (add --answer <text> to answer)",
                self.name
            );
        }
        Ok(())
    }
}

/// Follows a run's stream: progress (a live status line on a terminal, plain
/// lines otherwise), answers input requests, then prints the result.
struct Follow<'a> {
    cli: &'a str,
    workflow: &'a dyn DynWorkflow,
    journaled: bool,
    interactive: bool,
    answers: std::vec::IntoIter<String>,
    /// The latest input request's prompt (from the journal, when resuming).
    last_prompt: Option<String>,
}

impl Follow<'_> {
    async fn follow(
        mut self,
        handle: RunHandle<AnyEvent>,
        out: &mut (dyn Write + Send),
        input: &mut (dyn BufRead + Send),
    ) -> Result<(), Failure> {
        let started = Instant::now();
        let mut stream = handle.stream_events().map_err(|e| failed(e.to_string()))?;
        let (mut running, mut finished) = (0usize, 0usize);
        let mut status_shown = false;
        // An input request was seen (and answered) since the last idle notice:
        // that notice is about it. An idle run with no request seen waits for
        // one asked before this process (a resumed run).
        let mut asked_since_idle = false;
        let waits_for_people = !answer_types(self.workflow).is_empty();
        while let Some(event) = stream.next().await {
            let elapsed = started.elapsed().as_secs_f64();
            if let Some(change) = event.downcast_ref::<StepStateChanged>() {
                match change.phase {
                    StepPhase::Running => running += 1,
                    StepPhase::Finished => {
                        running = running.saturating_sub(1);
                        finished += 1;
                    }
                    StepPhase::Queued => {}
                }
                if let (StepPhase::Finished, Some(error)) = (change.phase, &change.error) {
                    if status_shown {
                        let _ = write!(out, "\r\x1b[K");
                        status_shown = false;
                    }
                    let _ = writeln!(out, "[{elapsed:7.2}s] step {} failed: {error}", change.step);
                }
                if self.interactive {
                    let phase = match change.phase {
                        StepPhase::Queued => "queued",
                        StepPhase::Running => "started",
                        StepPhase::Finished => "finished",
                    };
                    let _ = write!(
                        out,
                        "\r\x1b[K[{elapsed:7.2}s] {running} running, {finished} finished · {} {phase}",
                        change.step
                    );
                    let _ = out.flush();
                    status_shown = true;
                }
                continue;
            }
            if status_shown {
                let _ = write!(out, "\r\x1b[K");
                status_shown = false;
            }
            let json = event.to_json().unwrap_or(Value::Null);
            let _ = writeln!(out, "[{elapsed:7.2}s] {} {json}", event.name());
            let prompt = if event.kind() == EventKind::InputRequired {
                let prompt = json
                    .get("prompt")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{} {json}", event.name()));
                self.last_prompt = Some(prompt.clone());
                asked_since_idle = true;
                Some(prompt)
            } else if event.is::<WorkflowIdle>() {
                if std::mem::take(&mut asked_since_idle) || !waits_for_people {
                    None
                } else {
                    Some(self.last_prompt.clone().unwrap_or_else(|| "input required".into()))
                }
            } else {
                None
            };
            let Some(prompt) = prompt else { continue };
            let answer = match self.answers.next() {
                Some(answer) => answer,
                None => {
                    if self.interactive {
                        let _ = write!(out, "{prompt} > ");
                        let _ = out.flush();
                    }
                    let mut line = String::new();
                    match input.read_line(&mut line) {
                        Ok(n) if n > 0 => line.trim_end_matches(['\r', '\n']).to_owned(),
                        _ => return Err(self.no_answer(&handle, &prompt)),
                    }
                }
            };
            let _ = writeln!(out, "[{elapsed:7.2}s] answering: {answer}");
            let event = answer_event(self.workflow, &answer).map_err(|message| {
                handle.cancel();
                usage(message)
            })?;
            handle.send_any(event).map_err(|e| failed(e.to_string()))?;
        }
        if status_shown {
            let _ = write!(out, "\r\x1b[K");
        }
        match handle.await {
            Ok(stop) => {
                let value = stop.to_json().unwrap_or(Value::Null);
                // The default stop event's one field is `result`: print it bare.
                let shown = match value.as_object() {
                    Some(fields) if fields.len() == 1 && fields.contains_key("result") => fields["result"].clone(),
                    _ => value,
                };
                let _ = writeln!(out, "result: {shown}");
                Ok(())
            }
            Err(error) => Err(failed(error.to_string())),
        }
    }

    /// No answer is available: a journaled run is left waiting (resumable); an
    /// unjournaled one is cancelled.
    fn no_answer(&self, handle: &RunHandle<AnyEvent>, prompt: &str) -> Failure {
        let run_id = handle.run_id();
        if self.journaled {
            Failure {
                code: EXIT_WAITING,
                message: format!(
                    "run {run_id} waits for an answer to \"{prompt}\" and none was given; it is saved unfinished: \
                     answer with `{} resume {run_id} --answer <text>`",
                    self.cli
                ),
            }
        } else {
            handle.cancel();
            usage(format!(
                "the run asks \"{prompt}\" but no answer was given (pass --answer <text>); it was cancelled"
            ))
        }
    }
}

/// The event an answer becomes: a [`HumanResponseEvent`] when the workflow
/// takes those, otherwise the answer must be JSON for its own human-response
/// event type.
fn answer_event(workflow: &dyn DynWorkflow, answer: &str) -> Result<AnyEvent, String> {
    let mut types = answer_types(workflow);
    if types.is_empty() {
        // Nothing declared: any answer type the workflow knows.
        types = workflow
            .events()
            .into_iter()
            .filter(|e| e.kind() == EventKind::HumanResponse)
            .collect();
    }
    if types.is_empty()
        || types
            .iter()
            .any(|t| t.name() == <HumanResponseEvent as stepwise::Event>::NAME)
    {
        return Ok(AnyEvent::new(HumanResponseEvent::new(answer)));
    }
    let json: Value = serde_json::from_str(answer).map_err(|e| {
        format!(
            "workflow `{}` takes answers as JSON for `{}`; `{answer}` is not JSON: {e}",
            workflow.name(),
            types[0].name()
        )
    })?;
    let mut last = String::new();
    for ty in &types {
        match ty.decode(json.clone()) {
            Ok(event) => return Ok(event),
            Err(e) => last = format!("the answer does not fit `{}`: {e}", ty.name()),
        }
    }
    Err(last)
}

/// The answer types the workflow's steps take or wait for (declared with
/// `waits_for`), from its graph.
fn answer_types(workflow: &dyn DynWorkflow) -> Vec<stepwise::EventType> {
    let graph = workflow.graph();
    let names: Vec<&str> = graph
        .nodes
        .iter()
        .filter(|n| n.role == Some(EventKind::HumanResponse))
        .map(|n| n.label.as_str())
        .collect();
    workflow
        .events()
        .into_iter()
        .filter(|e| names.contains(&e.name()))
        .collect()
}

/// The prompt of the latest input request a stored run published.
async fn last_prompt(journal: &Journal, run_id: &str, workflow: &dyn DynWorkflow) -> Option<String> {
    let requests: Vec<&'static str> = workflow
        .events()
        .iter()
        .filter(|e| e.kind() == EventKind::InputRequired)
        .map(|e| e.name())
        .collect();
    let events = journal.store().events(run_id, 0).await.ok()?;
    events.iter().rev().find_map(|record| {
        let json: Value = serde_json::from_str(&record.event).ok()?;
        let name = json.get("type")?.as_str()?;
        if !requests.contains(&name) {
            return None;
        }
        let value = json.get("value")?;
        Some(
            value
                .get("prompt")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{name} {value}")),
        )
    })
}

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
    let value = match json {
        None => return Ok(Value::Object(Default::default())),
        Some(text) => serde_json::from_str(text).map_err(|e| usage(format!("--input is not valid JSON: {e}")))?,
    };
    // What a run accepts must read back: refuse what the engine would.
    let depth = stepwise::json_depth(&value);
    if depth > stepwise::MAX_EVENT_DEPTH {
        return Err(usage(format!(
            "--input is nested {depth} levels deep; the limit is {} (stepwise::MAX_EVENT_DEPTH): flatten it",
            stepwise::MAX_EVENT_DEPTH
        )));
    }
    Ok(value)
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

async fn open(db: &Path) -> Result<Journal, Failure> {
    let store = SqliteStore::open(db).await.map_err(|e| store_failure(db, e))?;
    Ok(Journal::new(store))
}

/// A database that could not be opened: a file that is not one is bad
/// input (exit 2), anything else a failure (exit 1).
fn store_failure(db: &Path, error: StoreError) -> Failure {
    match error {
        StoreError::NotADatabase { .. } => usage(error.to_string()),
        other => failed(format!("{}: {other}", db.display())),
    }
}

/// Opens an existing database for a command that only reads (`runs`,
/// `show`): read-write when it can (so an older schema is upgraded), else
/// read-only — a read-only file or directory can still be inspected.
async fn open_to_read(db: &Path) -> Result<Journal, Failure> {
    match SqliteStore::open(db).await {
        Ok(store) => Ok(Journal::new(store)),
        Err(error @ StoreError::NotADatabase { .. }) => Err(store_failure(db, error)),
        Err(_) => {
            let store = SqliteStore::open_read_only(db)
                .await
                .map_err(|e| store_failure(db, e))?;
            Ok(Journal::new(store))
        }
    }
}

/// Opens the database for a command about one stored run, without creating
/// an empty database when there is none.
async fn open_existing(db: &Path, run_id: &str) -> Result<Journal, Failure> {
    if !db.exists() {
        return Err(usage(format!("no run `{run_id}`: {} does not exist", db.display())));
    }
    open(db).await
}

async fn find_run(journal: &Journal, run_id: &str) -> Result<RunRecord, Failure> {
    journal
        .store()
        .run(run_id)
        .await
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| usage(format!("no run `{run_id}` in this database (see `runs`)")))
}

fn summary(run: &RunRecord) -> String {
    match (&run.result, &run.error) {
        (Some(result), _) => {
            let value = result.get("value").unwrap_or(result);
            match value.as_object() {
                Some(fields) if fields.len() == 1 && fields.contains_key("result") => fields["result"].to_string(),
                _ => value.to_string(),
            }
        }
        (_, Some(error)) => error.clone(),
        _ => String::new(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(text: &str, max: usize) -> String {
    let text = one_line(text);
    if text.chars().count() <= max {
        text
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Microseconds as milliseconds, e.g. `12.3 ms`.
fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC).
fn utc(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn emit(out: &mut (dyn Write + Send), output: Option<PathBuf>, text: &str) -> Result<(), Failure> {
    match output {
        Some(path) => {
            std::fs::write(&path, text).map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
            let _ = writeln!(out, "wrote {}", path.display());
            Ok(())
        }
        None => {
            let _ = out.write_all(text.as_bytes());
            if !text.ends_with('\n') {
                let _ = writeln!(out);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{truncate, utc};

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_764_321_182_000), "2025-11-28 09:13:02");
    }

    #[test]
    fn truncation_is_by_characters() {
        assert_eq!(truncate("héllo wörld", 5), "héll…");
        assert_eq!(truncate("a\n b", 10), "a b");
    }
}
