//! The command line's grammar (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about = "Run, draw and inspect stepwise workflows")]
pub(crate) struct Args {
    /// The SQLite file that journals runs.
    #[arg(long, global = true, value_name = "FILE")]
    pub db: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
