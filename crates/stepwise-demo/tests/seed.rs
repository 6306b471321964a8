//! The seed's three concurrency examples, on tokio's paused clock: what the
//! LlamaIndex documentation promises for each, asserted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stepwise::{StartEvent, StepStateChanged, StreamExt, WorkflowDefinition};
use stepwise_demo::seed::{ConcurrentFlow, Latency, MultiEventFlow, ParallelFlow, StepThreeEvent};

/// Latencies per query, in seconds.
fn fixed(secs: &[(&str, u64)]) -> Latency {
    let table: HashMap<String, u64> = secs.iter().map(|(q, s)| (q.to_string(), *s)).collect();
    Latency::Fixed(Arc::new(move |q| Duration::from_secs(table[q])))
}

#[tokio::test(start_paused = true)]
async fn parallel_flow_stops_with_the_first_query_to_finish() {
    for (winner, secs) in [
        ("Query 1", [("Query 1", 1), ("Query 2", 4), ("Query 3", 5)]),
        ("Query 2", [("Query 1", 3), ("Query 2", 2), ("Query 3", 5)]),
        ("Query 3", [("Query 1", 5), ("Query 2", 4), ("Query 3", 1)]),
    ] {
        let flow = ParallelFlow { latency: fixed(&secs) }.build().unwrap();
        let started = tokio::time::Instant::now();
        let stop = flow.run(StartEvent::new()).await.unwrap();
        assert_eq!(stop.result, winner);
        // All three ran at once (num_workers = 4): the run took the fastest query's time.
        let fastest = secs.iter().map(|(_, s)| *s).min().unwrap();
        assert_eq!(started.elapsed().as_secs(), fastest);
    }
}

#[tokio::test(start_paused = true)]
async fn parallel_flow_cancels_the_slower_queries() {
    let flow = ParallelFlow {
        latency: fixed(&[("Query 1", 1), ("Query 2", 2), ("Query 3", 3)]),
    }
    .build()
    .unwrap();
    let handle = flow.run_with(StartEvent::new(), stepwise::RunOptions::new().internal_events(true));
    let mut stream = handle.stream_events().unwrap();
    let mut finished = 0;
    while let Some(ev) = stream.next().await {
        if let Some(change) = ev.downcast_ref::<StepStateChanged>() {
            if change.step == "step_two" && change.phase == stepwise::StepPhase::Finished {
                finished += 1;
            }
        }
    }
    assert_eq!(handle.await.unwrap().result, "Query 1");
    assert_eq!(
        finished, 1,
        "only the winning query finished; the others were cancelled"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_flow_collects_all_three_in_arrival_order() {
    let collected = Arc::new(Mutex::new(Vec::new()));
    let flow = ConcurrentFlow {
        latency: fixed(&[("Query 1", 3), ("Query 2", 1), ("Query 3", 2)]),
        collected: Arc::clone(&collected),
    }
    .build()
    .unwrap();
    let started = tokio::time::Instant::now();
    let handle = flow.run(StartEvent::new());
    let mut stream = handle.stream_events().unwrap();
    let mut seen = Vec::new();
    while let Some(ev) = stream.next().await {
        seen.push(ev.name());
    }
    let stop = handle.await.unwrap();
    assert_eq!(stop.result, "Done");
    // "Done" only when all three were in: the slowest query took 3 s.
    assert_eq!(started.elapsed().as_secs(), 3);
    assert_eq!(*collected.lock().unwrap(), ["Query 2", "Query 3", "Query 1"]);
    // Each query's progress is streamed before its result reaches step_three.
    assert_eq!(seen, ["QueryProgress", "QueryProgress", "QueryProgress", "StopEvent"]);
}

#[tokio::test(start_paused = true)]
async fn concurrent_flow_collects_a_result_sent_from_outside_like_any_other() {
    let collected = Arc::new(Mutex::new(Vec::new()));
    let flow = ConcurrentFlow {
        latency: fixed(&[("Query 1", 1), ("Query 2", 1), ("Query 3", 1)]),
        collected: Arc::clone(&collected),
    }
    .build()
    .unwrap();
    let handle = flow.run(StartEvent::new());
    // A fourth result from outside arrives before the others and is collected
    // like any other: the set completes with the first three arrivals.
    handle
        .send_event(StepThreeEvent {
            result: "external".into(),
        })
        .unwrap();
    assert_eq!(handle.await.unwrap().result, "Done");
    let got = collected.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], "external");
}

#[tokio::test(start_paused = true)]
async fn multi_event_flow_returns_the_requested_order_whatever_the_arrival_order() {
    let arrivals = [
        [("Query 1", 1), ("Query 2", 2), ("Query 3", 3)], // A, B, C
        [("Query 1", 3), ("Query 2", 2), ("Query 3", 1)], // C, B, A
        [("Query 1", 2), ("Query 2", 3), ("Query 3", 1)], // C, A, B
        [("Query 1", 1), ("Query 2", 1), ("Query 3", 1)], // all at once
    ];
    for secs in arrivals {
        let order = Arc::new(Mutex::new(Vec::new()));
        let flow = MultiEventFlow {
            latency: fixed(&secs),
            order: Arc::clone(&order),
        }
        .build()
        .unwrap();
        let stop = flow.run(StartEvent::new()).await.unwrap();
        assert_eq!(stop.result, "Done");
        assert_eq!(
            *order.lock().unwrap(),
            ["StepCCompleteEvent", "StepACompleteEvent", "StepBCompleteEvent"],
            "arrival latencies {secs:?}"
        );
    }
}
