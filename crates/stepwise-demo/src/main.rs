//! The stepwise demo.
//!
//! Without arguments it runs the demo: the three concurrency examples of the
//! LlamaIndex docs, then the document pipeline journaled to a SQLite file
//! (`stepwise-demo.db`, or `$STEPWISE_DB`), approved on the terminal (or with a
//! scripted "yes" when not on a terminal), and writes drawings.
//!
//! With arguments it is the stepwise command-line front end over the same
//! workflows: `stepwise-demo list`, `draw`, `run`, `runs`, `show`, `resume`.

use std::io::IsTerminal;
use std::path::PathBuf;
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

    println!("== ParallelFlow: three slow queries, the first one back wins");
    let parallel = ParallelFlow {
        latency: latency.clone(),
    }
    .builder()
    .verbose(true)
    .build()?;
    let stop = parallel.run(StartEvent::new()).await?;
    println!("winner: {}\n", stop.result);

    println!("== ConcurrentFlow: three queries, step_three waits for all of them");
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

    println!("== MultiEventFlow: collect_events([C, A, B]) returns that order");
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
    let interactive = std::io::stdin().is_terminal();
    let mut args = vec!["stepwise-demo", "run", "document_pipeline"];
    if !interactive {
        println!("   (standard input is not a terminal: answering \"yes\" automatically)");
        args.extend(["--answer", "yes"]);
    }
    let code = run_cli(cli, &args, interactive).await;
    if code != 0 {
        return Ok(code);
    }

    println!("\n== stored runs");
    run_cli(cli, &["stepwise-demo", "runs"], false).await;

    let html = PathBuf::from("document_pipeline.html");
    let pipeline = DocumentPipeline::default().build()?;
    std::fs::write(&html, pipeline.graph().draw(DrawFormat::Html))?;
    println!(
        "\n== drawing of every possible flow (Mermaid); HTML page written to {}",
        html.display()
    );
    print!("{}", pipeline.graph().to_mermaid());
    println!("\nInspect a run: cargo run -p stepwise-demo -- show <run-id> --draw mermaid");
    Ok(0)
}

async fn run_cli(cli: &Cli, args: &[&str], interactive: bool) -> u8 {
    let mut out = std::io::stdout();
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
