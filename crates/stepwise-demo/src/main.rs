//! The stepwise demo.
//!
//! Without arguments it runs the demo: the three concurrency examples of the
//! LlamaIndex docs, then the document pipeline journaled to a SQLite file
//! (`stepwise-demo.db`, or `$STEPWISE_DB`), approved on the terminal (or with a
//! scripted "yes" when standard input is not a terminal), shows the stored
//! run, and writes HTML drawings (every possible flow, and the run's path)
//! next to the database.
//!
//! With arguments it is the stepwise command-line front end over the same
//! workflows: `stepwise-demo list`, `draw`, `run`, `runs`, `show`, `resume`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use stepwise::graph::DrawFormat;
use stepwise::{StartEvent, StreamExt, WorkflowDefinition};
use stepwise_cli::{Cli, Io};
use stepwise_demo::pipeline::DocumentPipeline;
use stepwise_demo::seed::{ConcurrentFlow, Latency, MultiEventFlow, ParallelFlow};

fn database() -> PathBuf {
    std::env::var_os("STEPWISE_DB").map_or_else(|| PathBuf::from("stepwise-demo.db"), PathBuf::from)
}

fn cli() -> Result<Cli, stepwise::BuildError> {
    let latency = Latency::RandomSecs { max_secs: 2 };
    Ok(Cli::new("stepwise-demo")
        .database(database())
        .workflow(DocumentPipeline::default().build()?)
        .workflow(
            ParallelFlow {
                latency: latency.clone(),
            }
            .build()?,
        )
        .workflow(
            ConcurrentFlow {
                latency: latency.clone(),
                collected: Arc::default(),
            }
            .build()?,
        )
        .workflow(
            MultiEventFlow {
                latency,
                order: Arc::default(),
            }
            .build()?,
        ))
}

#[tokio::main]
async fn main() -> ExitCode {
    // Store errors and warnings go to standard error, never nowhere
    // (`RUST_LOG` changes the level; warnings and errors by default).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let cli = match cli() {
        Ok(cli) => cli,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(stepwise_cli::EXIT_USAGE);
        }
    };
    if std::env::args().len() > 1 {
        return cli.run_from_env().await;
    }
    match demo(&cli).await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(stepwise_cli::EXIT_RUN_FAILED)
        }
    }
}

async fn demo(cli: &Cli) -> Result<u8, Box<dyn std::error::Error>> {
    let latency = Latency::RandomSecs { max_secs: 2 };

    println!("== parallel_flow: three slow queries, the first one back wins");
    let parallel = ParallelFlow {
        latency: latency.clone(),
    }
    .builder()
    .verbose(true)
    .build()?;
    let stop = parallel.run(StartEvent::new()).await?;
    println!("winner: {}\n", stop.result);

    println!("== concurrent_flow: three queries, step_three waits for all of them");
    let collected = Arc::new(Mutex::new(Vec::new()));
    let concurrent = ConcurrentFlow {
        latency: latency.clone(),
        collected: Arc::clone(&collected),
    }
    .build()?;
    let handle = concurrent.run(StartEvent::new());
    let mut events = handle.stream_events()?;
    while let Some(event) = events.next().await {
        println!("  stream: {} {}", event.name(), event.to_json()?);
    }
    let stop = handle.await?;
    let order = collected.lock().map(|c| c.clone()).unwrap_or_default();
    println!("result: {} (collected in arrival order: {order:?})\n", stop.result);

    println!("== multi_event_flow: collect_events([C, A, B]) returns that order");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let multi = MultiEventFlow {
        latency,
        order: Arc::clone(&seen),
    }
    .build()?;
    let stop = multi.run(StartEvent::new()).await?;
    let order = seen.lock().map(|c| c.clone()).unwrap_or_default();
    println!("result: {} (collected as {order:?})\n", stop.result);

    let db = database();
    println!(
        "== document_pipeline: split, concurrent LLM calls, collect, human approval — journaled to {}",
        db.display()
    );
    let ask = std::io::stdin().is_terminal();
    let run_id = format!("demo-{}", random_suffix());
    let mut args = vec!["stepwise-demo", "run", "document_pipeline", "--run-id", run_id.as_str()];
    if !ask {
        println!("   (standard input is not a terminal: answering \"yes\" automatically)");
        args.extend(["--answer", "yes"]);
    }
    let code = run_cli(cli, &args).await;
    if code != 0 {
        return Ok(code);
    }

    println!("\n== the run as stored (stepwise-demo show {run_id})");
    let code = run_cli(cli, &["stepwise-demo", "show", run_id.as_str()]).await;
    if code != 0 {
        return Ok(code);
    }

    // Drawings go next to the database.
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let pipeline = DocumentPipeline::default().build()?;
    let flows = dir.join("document_pipeline.html");
    std::fs::write(&flows, pipeline.graph().draw(DrawFormat::Html))?;
    let path = dir.join(format!("document_pipeline-{run_id}.html"));
    println!("\n== drawings");
    println!("every possible flow: {}", flows.display());
    let trace_graph = {
        let journal = stepwise::Journal::new(stepwise_sqlite::SqliteStore::open(&db).await?);
        pipeline.trace(&journal, &run_id).await?.graph()
    };
    std::fs::write(&path, trace_graph.draw(DrawFormat::Html))?;
    println!("this run's path:     {}", path.display());
    println!("\nEvery possible flow of document_pipeline (Mermaid):");
    print!("{}", pipeline.graph().to_mermaid());
    println!(
        "\nMore: stepwise-demo list | draw <workflow> --format mermaid|dot|html|json | run <workflow> --input '{{}}' \
         | runs | show <run-id> [--draw mermaid] | resume <run-id>"
    );
    Ok(0)
}

/// A short random suffix for the demo's run id.
fn random_suffix() -> String {
    let n: u64 = rand::random();
    format!("{:08x}", n as u32)
}

async fn run_cli(cli: &Cli, args: &[&str]) -> u8 {
    let mut out = std::io::stdout();
    let interactive = out.is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let mut err = std::io::stderr();
    let mut input = std::io::BufReader::new(std::io::stdin());
    cli.run_args(
        args.iter().copied(),
        Io {
            out: &mut out,
            err: &mut err,
            input: &mut input,
            interactive,
        },
    )
    .await
}
