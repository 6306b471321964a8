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
//! resumed. An embedding binary can keep them in any other
//! [`JournalStore`] instead ([`Cli::store`]).
//!
//! Exit codes: 0 success, 1 the run failed (or timed out, or was cancelled),
//! 2 bad input or usage, 3 the run waits for an answer and was left
//! unfinished in the database (`resume` it with `--answer`).
//!
//! # Layout
//!
//! `lib.rs` (this: [`Cli`], [`Io`], exit codes), `args.rs` (the grammar),
//! `commands/` (one file per command), `follow.rs` (a run's progress and
//! its answers), `format.rs` (dates, durations, shortened lines),
//! `store.rs` (opening the store). What a server would share — workflows
//! by name, start events and answers from JSON, run summaries — is
//! [`stepwise::host`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use stepwise::host::{AnyWorkflow, DuplicateWorkflow, WorkflowRegistry};
use stepwise::store::JournalStore;

mod args;
mod commands;
mod follow;
mod format;
mod store;

use args::{Args, Command};
use store::Storage;

/// Exit code for bad input or usage.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a run that failed, timed out or was cancelled.
pub const EXIT_RUN_FAILED: u8 = 1;
/// Exit code for a journaled run that waits for an answer none was given
/// for: it stays unfinished in the database, to be resumed with `--answer`.
pub const EXIT_WAITING: u8 = 3;

/// A failure with its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

pub(crate) fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}

pub(crate) fn failed(message: impl Into<String>) -> Failure {
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
    registry: WorkflowRegistry,
    default_db: PathBuf,
    store: Option<Arc<dyn JournalStore>>,
}

impl Cli {
    /// A CLI called `name` (used in help text and hints) with no workflows yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self::from_registry(name, WorkflowRegistry::new())
    }

    /// A CLI called `name` over workflows already registered (the same
    /// registry can serve another front end).
    pub fn from_registry(name: impl Into<String>, registry: WorkflowRegistry) -> Self {
        Cli {
            name: name.into(),
            registry,
            default_db: PathBuf::from("stepwise.db"),
            store: None,
        }
    }

    /// Registers a workflow under its name.
    ///
    /// # Panics
    ///
    /// When a workflow with that name is already registered (a mistake in
    /// the binary, not in its input); [`try_workflow`](Self::try_workflow)
    /// returns the error instead.
    pub fn workflow<S: stepwise::Event, O: stepwise::Event>(self, workflow: stepwise::Workflow<S, O>) -> Self {
        match self.try_workflow(workflow) {
            Ok(cli) => cli,
            Err(error) => panic!("{error}"),
        }
    }

    /// Registers a workflow under its name, refusing a name already taken.
    pub fn try_workflow<S: stepwise::Event, O: stepwise::Event>(
        mut self,
        workflow: stepwise::Workflow<S, O>,
    ) -> Result<Self, DuplicateWorkflow> {
        self.registry.register(workflow)?;
        Ok(self)
    }

    /// The SQLite file used when `--db` is not given (default `stepwise.db`).
    pub fn database(mut self, path: impl Into<PathBuf>) -> Self {
        self.default_db = path.into();
        self
    }

    /// Keeps runs in `store` instead of a SQLite file: every command
    /// journals to and reads from it, and `--db` is refused. For a store of
    /// your own (Postgres, a [`MemoryStore`](stepwise::store::MemoryStore)
    /// in tests); the SQLite file stays the default.
    ///
    /// ```no_run
    /// # async fn demo(echo: stepwise::Workflow) {
    /// let store = stepwise::store::MemoryStore::new();
    /// stepwise_cli::Cli::new("my-tool").store(store).workflow(echo).run_from_env().await;
    /// # }
    /// ```
    pub fn store(self, store: impl JournalStore) -> Self {
        self.store_arc(Arc::new(store))
    }

    /// [`store`](Self::store) for a store already shared.
    pub fn store_arc(mut self, store: Arc<dyn JournalStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The registered workflows.
    pub fn registry(&self) -> &WorkflowRegistry {
        &self.registry
    }

    /// The names of the registered workflows, in registration order.
    pub fn workflow_names(&self) -> Vec<&str> {
        self.registry.names()
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
        let kept = match self.store {
            None => format!("Database: {} (change with --db)", self.default_db.display()),
            Some(_) => "Runs: kept in the tool's store".to_owned(),
        };
        let command = <Args as clap::CommandFactory>::command()
            .name(self.name.clone())
            .bin_name(self.name.clone())
            .after_help(format!(
                "Workflows: {}\n{kept}\nExit codes: 0 ok, 1 the run failed, 2 bad input, \
                 3 the run waits for an answer (saved; `resume` it with --answer)",
                self.workflow_names().join(", "),
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
        let storage = self.storage(args.db)?;
        match args.command {
            Command::List => commands::list::list(self, out),
            Command::Draw {
                workflow,
                format,
                output,
            } => commands::draw::draw(self, &workflow, &format, output, out),
            Command::Run {
                workflow,
                input: json,
                input_file,
                answer,
                run_id,
                no_journal,
            } => {
                let request = commands::run::RunRequest {
                    workflow,
                    json,
                    input_file,
                    answers: answer,
                    run_id,
                    journaled: !no_journal,
                };
                commands::run::run(self, &storage, request, out, input, interactive).await
            }
            Command::Runs { status, workflow } => commands::runs::runs(&storage, status, workflow, out).await,
            Command::Show { run_id, draw, output } => {
                commands::show::show(self, &storage, &run_id, draw, output, out).await
            }
            Command::Resume { run_id, answer } => {
                commands::resume::resume(self, &storage, &run_id, answer, out, input, interactive).await
            }
        }
    }

    /// Where this command's runs are kept.
    fn storage(&self, db: Option<PathBuf>) -> Result<Storage, Failure> {
        match (&self.store, db) {
            (Some(store), None) => Ok(Storage::Given(Arc::clone(store))),
            (Some(_), Some(_)) => Err(usage(format!(
                "--db does not apply: {} keeps its runs in its own store",
                self.name
            ))),
            (None, db) => Ok(Storage::File(db.unwrap_or_else(|| self.default_db.clone()))),
        }
    }

    fn find(&self, name: &str) -> Result<&dyn AnyWorkflow, Failure> {
        self.registry.find(name).map(|w| &**w).map_err(|e| usage(e.to_string()))
    }
}
