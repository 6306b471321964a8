//! `crashtest`: a journaled workflow on a SQLite file, for the multi-process
//! crash-recovery test (`tests/crash_recovery.rs`), which SIGKILLs it mid-step
//! and then resumes the run in a new process.
//!
//! ```text
//! crashtest start  <db> <side-file> <sleep-ms>   # prints `RUN <id>`, then `MIDWAY …` markers
//! crashtest resume <db> <side-file> <sleep-ms>   # resumes unfinished runs, prints their results as JSON
//! ```
//!
//! The workflow: `start` fans out 5 `Work` items; `work` (3 workers) writes a
//! `Progress` event to the stream and sleeps `(i + 1) × sleep-ms` (printing
//! `MIDWAY work <i>` half-way, once everything before is committed); `gather`
//! collects the 5 results and, holding the full set, prints
//! `MIDWAY gather final` and sleeps `sleep-ms` before stopping with the sum of
//! the squares (30). Every step body appends its name to the side file when
//! it starts, so the test can count how often each ran.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use stepwise::{Context, Event, Journal, RunOptions, StartEvent, StepConfig, StopEvent, Workflow};
use stepwise_sqlite::SqliteStore;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Work {
    i: u64,
}
impl Event for Work {
    const NAME: &'static str = "Work";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Done {
    i: u64,
    value: u64,
}
impl Event for Done {
    const NAME: &'static str = "Done";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Progress {
    i: u64,
}
impl Event for Progress {
    const NAME: &'static str = "Progress";
}

/// Appends one line to the side file (one `write` call, so lines from
/// concurrent steps do not mix).
fn log(side: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(side)
        .expect("side file");
    file.write_all(format!("{line}\n").as_bytes()).expect("side file write");
}

/// Prints a marker line for the parent process.
fn mark(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn workflow(side: PathBuf, base: Duration, journal: Journal) -> Workflow {
    let (side1, side2, side3) = (side.clone(), side.clone(), side);
    let journal2 = journal.clone();
    Workflow::builder("crashtest")
        .event::<Progress>()
        .step("start", move |_ev: StartEvent| {
            let side = side1.clone();
            async move {
                log(&side, "start");
                (0..5).map(|i| Work { i }).collect::<Vec<_>>()
            }
        })
        .step_with(
            StepConfig::new("work").num_workers(3),
            move |ctx: Context, work: Work| {
                let side = side2.clone();
                let journal = journal.clone();
                async move {
                    log(&side, &format!("work {}", work.i));
                    // Committed and read at once (live progress); a re-run does not repeat it.
                    ctx.write_event_to_stream(Progress { i: work.i });
                    let total = base * (work.i as u32 + 1);
                    tokio::time::sleep(total / 2).await;
                    // Everything that happened before the marker is on disk.
                    let _ = journal.flush().await;
                    mark(&format!("MIDWAY work {}", work.i));
                    tokio::time::sleep(total - total / 2).await;
                    Done {
                        i: work.i,
                        value: work.i * work.i,
                    }
                }
            },
        )
        .step("gather", move |ctx: Context, done: Done| {
            let side = side3.clone();
            let journal = journal2.clone();
            async move {
                log(&side, "gather");
                let all = ctx.collect_n(&done, 5)?;
                let _ = journal.flush().await;
                mark("MIDWAY gather final");
                tokio::time::sleep(base).await;
                Some(StopEvent::new(all.iter().map(|d| d.value).sum::<u64>()))
            }
        })
        .build()
        .expect("the crashtest workflow is valid")
}

async fn start(db: &Path, side: PathBuf, base: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let journal = Journal::new(SqliteStore::open(db).await?);
    let wf = workflow(side, base, journal.clone());
    let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
    let run_id = handle.run_id().to_owned();
    mark(&format!("RUN {run_id}"));
    let stop = handle.await?;
    journal.flush().await?;
    mark(&json!([{ "run_id": run_id, "result": stop.result }]).to_string());
    Ok(())
}

async fn resume(db: &Path, side: PathBuf, base: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let journal = Journal::new(SqliteStore::open(db).await?);
    let wf = workflow(side, base, journal.clone());
    let mut results = Vec::new();
    for (run_id, handle) in wf.resume_unfinished(&journal).await? {
        let stop = handle?.await?;
        results.push(json!({ "run_id": run_id, "result": stop.result }));
    }
    journal.flush().await?;
    mark(&serde_json::Value::Array(results).to_string());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, db, side, ms] = args.as_slice() else {
        eprintln!("usage: crashtest start|resume <db> <side-file> <sleep-ms>");
        return ExitCode::from(2);
    };
    let Ok(ms) = ms.parse::<u64>() else {
        eprintln!("crashtest: <sleep-ms> must be a number, not `{ms}`");
        return ExitCode::from(2);
    };
    let base = Duration::from_millis(ms);
    let (db, side) = (PathBuf::from(db), PathBuf::from(side));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        match mode.as_str() {
            "start" => start(&db, side, base).await,
            "resume" => resume(&db, side, base).await,
            other => Err(format!("unknown mode `{other}` (start or resume)").into()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("crashtest: {error}");
            ExitCode::FAILURE
        }
    }
}
