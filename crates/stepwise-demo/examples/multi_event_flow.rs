//! Three event types fan in; `collect_events([C, A, B])` returns them in that order.
//!
//! `cargo run -p stepwise-demo --example multi_event_flow`
use std::sync::{Arc, Mutex};

use stepwise::{StartEvent, WorkflowDefinition};
use stepwise_demo::seed::{Latency, MultiEventFlow};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let order = Arc::new(Mutex::new(Vec::new()));
    let flow = MultiEventFlow {
        latency: Latency::RandomSecs { max_secs: 3 },
        order: Arc::clone(&order),
    }
    .builder()
    .verbose(true)
    .build()?;
    let stop = flow.run(StartEvent::new()).await?;
    println!("{} — collected as {:?}", stop.result, order.lock().unwrap());
    Ok(())
}
