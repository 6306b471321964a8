//! The stepwise demo: runs the example workflows and prints what happens.
//!
//! `cargo run --release -p stepwise-demo`

use std::sync::{Arc, Mutex};

use stepwise::{StartEvent, StreamExt, WorkflowDefinition};
use stepwise_demo::seed::{ConcurrentFlow, Latency, MultiEventFlow, ParallelFlow};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let latency = Latency::RandomSecs { max_secs: 3 };

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
    println!(
        "result: {} (collected in arrival order: {:?})\n",
        stop.result,
        collected.lock().unwrap()
    );

    println!("== MultiEventFlow: collect_events([C, A, B]) returns that order");
    let order = Arc::new(Mutex::new(Vec::new()));
    let multi = MultiEventFlow {
        latency,
        order: Arc::clone(&order),
    }
    .build()?;
    let stop = multi.run(StartEvent::new()).await?;
    println!("result: {} (collected as {:?})", stop.result, order.lock().unwrap());
    Ok(())
}
