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
//! interrupted run can be resumed. Bad input gets a clear message and exit
//! code 2; a run that fails exits with 1.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use serde_json::Value;
use stepwise::graph::DrawFormat;
use stepwise::store::{RunFilter, RunRecord, RunStatus, SqliteStore};
use stepwise::{AnyEvent, Event, EventKind, HumanResponseEvent, Journal, RunHandle, RunOptions, StreamExt, Workflow};

mod registry;

use registry::DynWorkflow;

/// Exit code for bad input or usage.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a run that failed, timed out or was cancelled.
pub const EXIT_RUN_FAILED: u8 = 1;

#[derive(Parser, Debug)]
#[command(version, about = "Run, draw and inspect stepwise workflows")]
struct Args {
    /// The SQLite file that journals runs.
    #[arg(long, global = true)]
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
        #[arg(long, default_value = "mermaid")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Run a workflow, showing progress, and print its result.
    Run {
        /// The workflow's name.
        workflow: String,
        /// The start event as JSON (default `{}`).
        #[arg(long, short)]
        input: Option<String>,
        /// Answers to input requests, in order (otherwise asked on the terminal
        /// or read from standard input).
        #[arg(long)]
        answer: Vec<String>,
        /// Don't journal the run.
        #[arg(long)]
        no_journal: bool,
    },
    /// List stored runs.
    Runs {
        /// Only runs with this status (running, completed, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show a stored run: status, result, published events and its path.
    Show {
        /// The run's id.
        run_id: String,
        /// Also draw the run's path: mermaid, dot, html or json.
        #[arg(long)]
        draw: Option<String>,
        /// Write the drawing to this file.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Resume an unfinished run.
    Resume {
        /// The run's id.
        run_id: String,
        /// Answers to input requests, in order.
        #[arg(long)]
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
    /// True when output is a terminal (live progress line, prompts).
    pub interactive: bool,
}

/// The command-line front end. Register workflows, then run it.
pub struct Cli {
    name: String,
    workflows: Vec<Box<dyn DynWorkflow>>,
    default_db: PathBuf,
}

impl Cli {
    /// A CLI called `name` (used in help text) with no workflows yet.
    pub fn new(name: impl Into<String>) -> Self {
        Cli {
            name: name.into(),
            workflows: Vec::new(),
            default_db: PathBuf::from("stepwise.db"),
        }
    }

    /// Registers a workflow under its name.
    pub fn workflow<S: Event, O: Event>(mut self, workflow: Workflow<S, O>) -> Self {
        self.workflows.push(Box::new(workflow));
        self
    }

    /// The database used when `--db` is not given (default `stepwise.db`).
    pub fn database(mut self, path: impl Into<PathBuf>) -> Self {
        self.default_db = path.into();
        self
    }

    /// Parses the process's arguments, runs the command on the process's
    /// standard streams and returns the exit code.
    pub async fn run_from_env(self) -> ExitCode {
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        let interactive = out.is_terminal();
        let mut input = std::io::BufReader::new(std::io::stdin());
        let code = self
            .run_args(
                std::env::args(),
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
    /// returns the exit code: 0 success, 1 run failed, 2 bad input.
    pub async fn run_args<I, T>(&self, args: I, io: Io<'_>) -> u8
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = match Args::try_parse_from(args) {
            Ok(args) => args,
            Err(error) => {
                let code = if error.use_stderr() { EXIT_USAGE } else { 0 };
                let text = error
                    .render()
                    .to_string()
                    .replace("Usage: ", &format!("Usage ({}): ", self.name));
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
        match self.dispatch(args, out, input, interactive).await {
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
                answer,
                no_journal,
            } => {
                let workflow = self.find(&workflow)?;
                let value = parse_input(json.as_deref())?;
                let journal = if no_journal { None } else { Some(open(&db).await?) };
                let mut options = RunOptions::new().internal_events(true);
                if let Some(journal) = &journal {
                    options = options.journal(journal);
                }
                let handle = workflow.run_json(value, options).map_err(usage)?;
                let _ = writeln!(out, "run {} of {} started", handle.run_id(), workflow.name());
                let result = follow(handle, out, input, interactive, answer).await;
                if let Some(journal) = &journal {
                    let _ = journal.flush().await;
                }
                result
            }
            Command::Runs { status } => {
                let statuses = match status {
                    None => Vec::new(),
                    Some(s) => vec![RunStatus::parse(&s).ok_or_else(|| {
                        usage(format!(
                            "unknown status `{s}`; use running, completed, failed or cancelled"
                        ))
                    })?],
                };
                let journal = open(&db).await?;
                let runs = journal
                    .store()
                    .runs(RunFilter {
                        statuses,
                        workflow: None,
                    })
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                if runs.is_empty() {
                    let _ = writeln!(out, "no runs in {}", db.display());
                }
                for run in runs {
                    let _ = writeln!(
                        out,
                        "{}  {:<10} {:<24} {}",
                        run.run_id,
                        run.status.as_str(),
                        run.workflow,
                        summary(&run)
                    );
                }
                Ok(())
            }
            Command::Show { run_id, draw, output } => {
                let journal = open(&db).await?;
                self.show(&journal, &run_id, draw, output, out).await
            }
            Command::Resume { run_id, answer } => {
                let journal = open(&db).await?;
                let record = find_run(&journal, &run_id).await?;
                let workflow = self.find(&record.workflow)?;
                let handle = workflow
                    .resume(&journal, &run_id)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                let _ = writeln!(out, "run {run_id} of {} resumed", workflow.name());
                let result = follow(handle, out, input, interactive, answer).await;
                let _ = journal.flush().await;
                result
            }
        }
    }

    fn find(&self, name: &str) -> Result<&dyn DynWorkflow, Failure> {
        self.workflows
            .iter()
            .find(|w| w.name() == name)
            .map(|w| &**w)
            .ok_or_else(|| {
                let known: Vec<&str> = self.workflows.iter().map(|w| w.name()).collect();
                usage(format!("unknown workflow `{name}`; registered: {}", known.join(", ")))
            })
    }

    fn list(&self, out: &mut (dyn Write + Send)) -> Result<(), Failure> {
        for w in &self.workflows {
            let _ = writeln!(
                out,
                "{:<24} {} steps  {} -> {}{}",
                w.name(),
                w.step_count(),
                w.start_type().name(),
                w.stop_type().name(),
                w.doc().map(|d| format!("  — {d}")).unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn show(
        &self,
        journal: &Journal,
        run_id: &str,
        draw: Option<String>,
        output: Option<PathBuf>,
        out: &mut (dyn Write + Send),
    ) -> Result<(), Failure> {
        let record = find_run(journal, run_id).await?;
        let _ = writeln!(out, "run      {}", record.run_id);
        let _ = writeln!(out, "workflow {}", record.workflow);
        let _ = writeln!(out, "status   {}", record.status.as_str());
        if let Some(result) = &record.result {
            let _ = writeln!(out, "result   {result}");
        }
        if let Some(error) = &record.error {
            let _ = writeln!(out, "error    {error}");
        }
        let events = journal
            .store()
            .events(run_id, 0)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let _ = writeln!(out, "events   {}", events.len());
        for event in &events {
            let _ = writeln!(out, "  #{:<4} {}", event.seq, event.event);
        }
        let workflow = self.find(&record.workflow)?;
        let trace = workflow
            .trace(journal, run_id)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let _ = writeln!(out, "steps    {}", trace.steps.len());
        for step in &trace.steps {
            let took = step
                .finished_us
                .map(|f| format!("{:.1} ms", f.saturating_sub(step.started_us) as f64 / 1000.0))
                .unwrap_or_else(|| "-".into());
            let outcome = serde_json::to_value(&step.outcome).unwrap_or(Value::Null);
            let status = outcome.get("status").and_then(Value::as_str).unwrap_or("?").to_owned();
            let _ = writeln!(
                out,
                "  {:<20} w{:<2} on {:<24} {:>10}  {status}",
                step.step, step.worker, trace.events[step.input].name, took
            );
        }
        if let Some(format) = draw {
            let format: DrawFormat = format.parse().map_err(usage)?;
            emit(out, output, &trace.graph().draw(format))?;
        }
        Ok(())
    }
}

fn parse_input(json: Option<&str>) -> Result<Value, Failure> {
    match json {
        None => Ok(Value::Object(Default::default())),
        Some(text) => serde_json::from_str(text).map_err(|e| usage(format!("--input is not valid JSON: {e}"))),
    }
}

async fn open(db: &std::path::Path) -> Result<Journal, Failure> {
    let store = SqliteStore::open(db)
        .await
        .map_err(|e| failed(format!("{}: {e}", db.display())))?;
    Ok(Journal::new(store))
}

async fn find_run(journal: &Journal, run_id: &str) -> Result<RunRecord, Failure> {
    journal
        .store()
        .run(run_id)
        .await
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| usage(format!("no run `{run_id}` in this database")))
}

fn summary(run: &RunRecord) -> String {
    match (&run.result, &run.error) {
        (Some(result), _) => result.get("value").unwrap_or(result).to_string(),
        (_, Some(error)) => error.clone(),
        _ => String::new(),
    }
}

fn emit(out: &mut (dyn Write + Send), output: Option<PathBuf>, text: &str) -> Result<(), Failure> {
    match output {
        Some(path) => std::fs::write(&path, text).map_err(|e| failed(format!("cannot write {}: {e}", path.display()))),
        None => {
            let _ = out.write_all(text.as_bytes());
            if !text.ends_with('\n') {
                let _ = writeln!(out);
            }
            Ok(())
        }
    }
}

/// Follows a run's stream: progress lines (or a live status line on a
/// terminal), answers input requests, then prints the result.
async fn follow(
    handle: RunHandle<AnyEvent>,
    out: &mut (dyn Write + Send),
    input: &mut (dyn BufRead + Send),
    interactive: bool,
    answers: Vec<String>,
) -> Result<(), Failure> {
    let mut answers = answers.into_iter();
    let started = Instant::now();
    let mut stream = handle.stream_events().map_err(|e| failed(e.to_string()))?;
    let (mut running, mut finished) = (0usize, 0usize);
    while let Some(event) = stream.next().await {
        let elapsed = started.elapsed().as_secs_f64();
        if let Some(change) = event.downcast_ref::<stepwise::StepStateChanged>() {
            match change.phase {
                stepwise::StepPhase::Running => running += 1,
                stepwise::StepPhase::Finished => {
                    running = running.saturating_sub(1);
                    finished += 1;
                }
                stepwise::StepPhase::Queued => {}
            }
            if interactive {
                let _ = write!(
                    out,
                    "\r\x1b[K[{elapsed:7.2}s] {running} running, {finished} finished — {} {:?}",
                    change.step, change.phase
                );
                let _ = out.flush();
            }
            continue;
        }
        if interactive {
            let _ = write!(out, "\r\x1b[K");
        }
        let json = event.to_json().unwrap_or(Value::Null);
        let _ = writeln!(out, "[{elapsed:7.2}s] {} {json}", event.name());
        if event.kind() == EventKind::InputRequired {
            let prompt = json.get("prompt").and_then(Value::as_str).unwrap_or("input required");
            let answer = match answers.next() {
                Some(answer) => answer,
                None => {
                    if interactive {
                        let _ = write!(out, "{prompt} > ");
                        let _ = out.flush();
                    }
                    let mut line = String::new();
                    match input.read_line(&mut line) {
                        Ok(n) if n > 0 => line.trim().to_owned(),
                        _ => {
                            handle.cancel();
                            return Err(usage(format!(
                                "the run asks \"{prompt}\" but no answer was given (pass --answer <text>)"
                            )));
                        }
                    }
                }
            };
            let _ = writeln!(out, "[{elapsed:7.2}s] answering: {answer}");
            if let Err(error) = handle.send_event(HumanResponseEvent::new(answer)) {
                return Err(failed(error.to_string()));
            }
        }
    }
    match handle.await {
        Ok(stop) => {
            let _ = writeln!(out, "result: {}", stop.to_json().unwrap_or(Value::Null));
            Ok(())
        }
        Err(error) => Err(failed(error.to_string())),
    }
}
