//! Three queries in parallel; `step_three` waits for all three results.
//!
//! `cargo run -p stepwise-demo --example concurrent_flow`
use std::sync::{Arc, Mutex};

use stepwise::{StartEvent, WorkflowDefinition};
use stepwise_demo::seed::{ConcurrentFlow, Latency};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let collected = Arc::new(Mutex::new(Vec::new()));
    let flow = ConcurrentFlow {
        latency: Latency::RandomSecs { max_secs: 5 },
        collected: Arc::clone(&collected),
    }
    .builder()
    .verbose(true)
    .build()?;
    let stop = flow.run(StartEvent::new()).await?;
    println!(
        "{} — results in arrival order: {:?}",
        stop.result,
        collected.lock().unwrap()
    );
    Ok(())
}
