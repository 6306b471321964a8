//! Typed state: concurrent steps edit one tally; the tally is then carried
//! into a second run.
//!
//! `cargo run -p stepwise-demo --example state_counter`
use stepwise::{RunOptions, StartEvent, WorkflowDefinition};
use stepwise_demo::agents::{StateCounter, Tally};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flow = StateCounter.build()?;

    let first = flow.run(StartEvent::new().with("increments", 10));
    let state = first.state().clone();
    let stop = first.await?;
    println!("run 1: 10 concurrent increments, total {}", stop.result);

    // Pass the state store on: the second run starts where the first ended.
    let second = flow.run_with(
        StartEvent::new().with("increments", 5),
        RunOptions::new().state(state.clone()),
    );
    let stop = second.await?;
    println!("run 2: 5 more, total {}", stop.result);

    let tally: Tally = state.get().await?;
    println!("runs: {}, by source: {:?}", tally.runs, tally.by_source);
    println!("state as JSON: {}", state.to_json().await?);
    Ok(())
}
