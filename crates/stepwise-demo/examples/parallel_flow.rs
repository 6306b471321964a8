//! Three queries in parallel; the first one back stops the run.
//!
//! `cargo run -p stepwise-demo --example parallel_flow`
use stepwise::{StartEvent, WorkflowDefinition};
use stepwise_demo::seed::{Latency, ParallelFlow};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flow = ParallelFlow {
        latency: Latency::RandomSecs { max_secs: 5 },
    }
    .builder()
    .verbose(true)
    .build()?;
    let stop = flow.run(StartEvent::new()).await?;
    println!("first query back: {}", stop.result);
    Ok(())
}
