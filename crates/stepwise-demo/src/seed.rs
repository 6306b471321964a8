//! The three concurrency examples of the LlamaIndex Workflows documentation,
//! written with stepwise.
//!
//! Each flow takes a [`Latency`] so that the demo can use real random sleeps
//! while tests choose the delays (and run them on tokio's paused clock).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::{workflow, Context, Event, EventType, EventUnion, StartEvent, StopEvent};

/// How long a simulated query takes.
#[derive(Clone)]
pub enum Latency {
    /// A random whole number of seconds in `1..=max_secs`, like the Python docs.
    RandomSecs {
        /// The longest sleep.
        max_secs: u64,
    },
    /// Fixed per-query delays, looked up by query text (tests use this).
    Fixed(Arc<dyn Fn(&str) -> Duration + Send + Sync>),
}

impl Latency {
    fn delay(&self, query: &str) -> Duration {
        match self {
            Latency::RandomSecs { max_secs } => Duration::from_secs(rand::random::<u64>() % max_secs.max(&1) + 1),
            Latency::Fixed(f) => f(query),
        }
    }
}

/// A query sent to the second step.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct StepTwoEvent {
    /// The query text.
    pub query: String,
}

/// A query's result, sent to the collecting step.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct StepThreeEvent {
    /// The query it answers.
    pub result: String,
}

/// Published to the stream when a query finishes.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct QueryProgress {
    /// The query.
    pub query: String,
    /// How long it took.
    pub took_ms: u64,
}

fn send_three_queries(ctx: &Context) {
    for query in ["Query 1", "Query 2", "Query 3"] {
        ctx.send_event(StepTwoEvent { query: query.into() });
    }
}

/// Three queries run in parallel (`num_workers = 4`); the first to finish
/// stops the run with its query, and the others are cancelled.
pub struct ParallelFlow {
    /// Query latency.
    pub latency: Latency,
}

/// Three queries in parallel; the first one back stops the run.
#[workflow(name = "parallel_flow")]
impl ParallelFlow {
    /// Sends three queries.
    #[step(emits = [StepTwoEvent])]
    async fn start(&self, ctx: &Context, _ev: StartEvent) {
        send_three_queries(ctx);
    }

    /// Runs a slow query; the first one back wins.
    #[step(num_workers = 4)]
    async fn step_two(&self, ev: StepTwoEvent) -> StopEvent {
        tokio::time::sleep(self.latency.delay(&ev.query)).await;
        StopEvent::new(ev.query)
    }
}

/// Three queries run in parallel; `step_three` waits for all three results and
/// only then returns "Done". `seen` records the collected results in the order
/// they were handed over (arrival order).
pub struct ConcurrentFlow {
    /// Query latency.
    pub latency: Latency,
    /// The results as `step_three` received the full set.
    pub collected: Arc<Mutex<Vec<String>>>,
}

/// Three queries in parallel; step_three waits for all three results.
#[workflow(name = "concurrent_flow")]
impl ConcurrentFlow {
    /// Sends three queries.
    #[step(emits = [StepTwoEvent])]
    async fn start(&self, ctx: &Context, _ev: StartEvent) {
        send_three_queries(ctx);
    }

    /// Runs one query, reporting progress on the stream.
    #[step(num_workers = 4)]
    async fn step_two(&self, ctx: &Context, ev: StepTwoEvent) -> StepThreeEvent {
        let delay = self.latency.delay(&ev.query);
        tokio::time::sleep(delay).await;
        ctx.write_event_to_stream(QueryProgress {
            query: ev.query.clone(),
            took_ms: delay.as_millis() as u64,
        });
        StepThreeEvent { result: ev.query }
    }

    /// Waits until all three results are in.
    #[step]
    async fn step_three(&self, ctx: &Context, ev: StepThreeEvent) -> Option<StopEvent> {
        let results = ctx.collect_n(&ev, 3)?;
        let mut collected = self.collected.lock().unwrap_or_else(|p| p.into_inner());
        collected.extend(results.into_iter().map(|r| r.result));
        Some(StopEvent::new("Done"))
    }
}

/// Query for step A.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct StepAEvent {
    /// The query.
    pub query: String,
}
/// Query for step B.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct StepBEvent {
    /// The query.
    pub query: String,
}
/// Query for step C.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct StepCEvent {
    /// The query.
    pub query: String,
}
/// Step A is done.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct StepACompleteEvent {
    /// Its result.
    pub result: String,
}
/// Step B is done.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct StepBCompleteEvent {
    /// Its result.
    pub result: String,
}
/// Step C is done.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct StepCCompleteEvent {
    /// Its result.
    pub result: String,
}

/// Any of the three completion events.
#[derive(Clone, Debug, EventUnion)]
pub enum StepComplete {
    /// From step A.
    A(StepACompleteEvent),
    /// From step B.
    B(StepBCompleteEvent),
    /// From step C.
    C(StepCCompleteEvent),
}

/// Three different event types fan in; `step_three` collects them with
/// `collect_events([C, A, B])` and gets them in exactly that order, whatever
/// order they arrived in. `order` records the names of the collected events.
pub struct MultiEventFlow {
    /// Latency per query ("Query 1" is A's, "Query 2" B's, "Query 3" C's).
    pub latency: Latency,
    /// Event names in the order `collect_events` returned them.
    pub order: Arc<Mutex<Vec<String>>>,
}

/// Three different events fan in; collect_events returns them in the order asked for.
#[workflow(name = "multi_event_flow")]
impl MultiEventFlow {
    /// Sends one query to each of A, B and C.
    #[step(emits = [StepAEvent, StepBEvent, StepCEvent])]
    async fn start(&self, ctx: &Context, _ev: StartEvent) {
        ctx.send_event(StepAEvent {
            query: "Query 1".into(),
        });
        ctx.send_event(StepBEvent {
            query: "Query 2".into(),
        });
        ctx.send_event(StepCEvent {
            query: "Query 3".into(),
        });
    }

    /// Does something A-ish.
    #[step]
    async fn step_a(&self, ev: StepAEvent) -> StepACompleteEvent {
        tokio::time::sleep(self.latency.delay(&ev.query)).await;
        StepACompleteEvent { result: ev.query }
    }

    /// Does something B-ish.
    #[step]
    async fn step_b(&self, ev: StepBEvent) -> StepBCompleteEvent {
        tokio::time::sleep(self.latency.delay(&ev.query)).await;
        StepBCompleteEvent { result: ev.query }
    }

    /// Does something C-ish.
    #[step]
    async fn step_c(&self, ev: StepCEvent) -> StepCCompleteEvent {
        tokio::time::sleep(self.latency.delay(&ev.query)).await;
        StepCCompleteEvent { result: ev.query }
    }

    /// Waits for all three, then stops.
    #[step]
    async fn step_three(&self, ctx: &Context, ev: StepComplete) -> Option<StopEvent> {
        let expected = [
            EventType::of::<StepCCompleteEvent>(),
            EventType::of::<StepACompleteEvent>(),
            EventType::of::<StepBCompleteEvent>(),
        ];
        let events = ctx.collect_events(&ev, &expected)?;
        let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        order.extend(events.iter().map(|e| e.name().to_owned()));
        Some(StopEvent::new("Done"))
    }
}
