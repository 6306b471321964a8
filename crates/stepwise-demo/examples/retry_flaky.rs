//! Retries: a flaky call fails twice and succeeds on the third attempt; then
//! a call that never succeeds is handed to its error handler.
//!
//! `cargo run -p stepwise-demo --example retry_flaky`
use stepwise::{StartEvent, StreamExt, WorkflowDefinition};
use stepwise_demo::agents::{AttemptReport, FlakyApi};

async fn run(failures: u32) -> Result<(), Box<dyn std::error::Error>> {
    println!("== a service that fails {failures} time(s)");
    let flow = FlakyApi { failures }.build()?;
    let handle = flow.run(StartEvent::new());
    let mut events = handle.stream_events()?;
    while let Some(event) = events.next().await {
        if let Some(report) = event.downcast_ref::<AttemptReport>() {
            let after = match &report.last_error {
                Some(error) => format!(", after: {error}"),
                None => String::new(),
            };
            println!("  attempt {} at +{} ms{after}", report.attempt, report.elapsed_ms);
        }
    }
    let outcome = handle.await?;
    let verdict = if outcome.ok { "ok" } else { "failed" };
    println!("  {verdict}: {}\n", outcome.message);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run(2).await?;
    run(10).await
}
