//! Routing: who receives an event, what step return values emit, per-step
//! concurrency, and what a stop event does to the rest of the run.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde::{Deserialize, Serialize};
use stepwise::{
    Context, Event, EventType, RunOptions, StartEvent, StepConfig, StepPhase, StepStateChanged, StopEvent,
    UnhandledEvent, Workflow,
};

/// A step that collects `n` `Done` events and stops with their sorted ids.
fn join_done(n: usize) -> impl Fn(Context, Done) -> std::future::Ready<Option<StopEvent>> + Send + Sync + 'static {
    move |ctx: Context, ev: Done| {
        let set = ctx.collect_n(&ev, n).map(|set| {
            let mut ids: Vec<u32> = set.into_iter().map(|d| d.id).collect();
            ids.sort_unstable();
            StopEvent::new(ids)
        });
        std::future::ready(set)
    }
}

fn items(n: u32) -> Vec<Item> {
    (0..n).map(|id| Item { id }).collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, stepwise::Event)]
struct Arrived(String);

#[tokio::test(start_paused = true)]
async fn an_event_goes_to_every_step_accepting_its_type() {
    let wf = Workflow::builder("both")
        .step("start", |_: StartEvent| async { Ping(1) })
        .step("left", |ev: Ping| async move { Arrived(format!("left:{}", ev.0)) })
        .step("right", |ev: Ping| async move { Arrived(format!("right:{}", ev.0)) })
        .step("join", |ctx: Context, ev: Arrived| async move {
            ctx.collect_n(&ev, 2).map(|set| {
                let mut who: Vec<String> = set.into_iter().map(|a| a.0).collect();
                who.sort();
                StopEvent::new(who)
            })
        })
        .build()
        .unwrap();
    let stop = settle(wf.run(StartEvent::new())).await.unwrap();
    assert_eq!(stop.result_as::<Vec<String>>().unwrap(), ["left:1", "right:1"]);
}

/// Same stable name as `Ping`, another type.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PingTwin(u32);
impl Event for PingTwin {
    const NAME: &'static str = "Ping";
}

#[tokio::test(start_paused = true)]
async fn routing_matches_the_exact_type_not_the_name() {
    let pinged = Log::new();
    let log = pinged.clone();
    let wf = Workflow::builder("twin")
        .step("start", |ctx: Context, _: StartEvent| async move {
            ctx.send_event(PingTwin(1)); // undeclared, accepted by nobody
            Ping(2)
        })
        .step("ping", move |ev: Ping| {
            let log = log.clone();
            async move {
                log.push(ev.0);
                StopEvent::new(ev.0)
            }
        })
        .build()
        .unwrap();
    let handle = wf.run(StartEvent::new());
    let stream = handle.stream_events().unwrap();
    assert_eq!(settle(handle).await.unwrap().result, 2);
    assert_eq!(pinged.get(), [2], "the twin must not reach the `Ping` step");
    let unhandled = of_type::<UnhandledEvent>(&drain(stream).await);
    assert_eq!(
        unhandled,
        [UnhandledEvent {
            event: "Ping".into(),
            target_step: None,
            idle: false,
        }]
    );
}

#[derive(stepwise::EventUnion)]
enum AOrB {
    A(A),
    B(B),
}

#[tokio::test(start_paused = true)]
async fn a_step_can_take_a_union_of_event_types() {
    let seen = Log::new();
    let log = seen.clone();
    let wf = Workflow::builder("union")
        .step_with(
            StepConfig::new("start").emits::<A>().emits::<B>(),
            |ctx: Context, _: StartEvent| async move {
                ctx.send_event(A(1));
                ctx.send_event(B(2));
                ctx.send_event(A(3));
            },
        )
        .step_with(StepConfig::new("either").num_workers(1), move |ev: AOrB| {
            let log = log.clone();
            async move {
                let id = match ev {
                    AOrB::A(a) => {
                        log.push(format!("A{}", a.0));
                        a.0
                    }
                    AOrB::B(b) => {
                        log.push(format!("B{}", b.0));
                        b.0
                    }
                };
                Done { id }
            }
        })
        .step("join", join_done(3))
        .build()
        .unwrap();
    let either = wf.steps().into_iter().find(|s| s.name == "either").unwrap();
    assert_eq!(either.accepts, [EventType::of::<A>(), EventType::of::<B>()]);
    let stop = settle(wf.run(StartEvent::new())).await.unwrap();
    assert_eq!(stop.result_as::<Vec<u32>>().unwrap(), [1, 2, 3]);
    assert_eq!(seen.get(), ["A1", "B2", "A3"]);
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, stepwise::Event)]
struct Kept(u32);

#[tokio::test(start_paused = true)]
async fn returning_none_emits_nothing() {
    let joins = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&joins);
    let wf = Workflow::builder("filter")
        .step("start", |_: StartEvent| async { items(6) })
        .step(
            "filter",
            |ev: Item| async move { (ev.id % 2 == 0).then_some(Kept(ev.id)) },
        )
        .step("join", move |ctx: Context, ev: Kept| {
            count.fetch_add(1, Ordering::SeqCst);
            let set = ctx.collect_n(&ev, 3);
            async move { set.map(|set| StopEvent::new(set.into_iter().map(|k| k.0).collect::<Vec<_>>())) }
        })
        .build()
        .unwrap();
    let handle = wf.run_with(StartEvent::new(), RunOptions::new().internal_events(true));
    let stream = handle.stream_events().unwrap();
    let mut ids = settle(handle).await.unwrap().result_as::<Vec<u32>>().unwrap();
    ids.sort_unstable();
    assert_eq!(ids, [0, 2, 4]);
    assert_eq!(
        joins.load(Ordering::SeqCst),
        3,
        "only the three `Some` results reached `join`"
    );
    let outputs: Vec<Vec<String>> = of_type::<StepStateChanged>(&drain(stream).await)
        .into_iter()
        .filter(|s| s.step == "filter" && s.phase == StepPhase::Finished)
        .map(|s| s.output_events)
        .collect();
    assert_eq!(outputs.len(), 6);
    assert_eq!(outputs.iter().filter(|o| o.is_empty()).count(), 3);
    assert_eq!(outputs.iter().filter(|o| *o == &["Kept"]).count(), 3);
}

#[tokio::test(start_paused = true)]
async fn returning_a_vec_fans_out_one_event_per_element() {
    let processed = Log::new();
    let log = processed.clone();
    let wf = Workflow::builder("fan")
        .step("start", |_: StartEvent| async { items(5) })
        .step("work", move |ev: Item| {
            let log = log.clone();
            async move {
                log.push(ev.id);
                Done { id: ev.id }
            }
        })
        .step("join", join_done(5))
        .build()
        .unwrap();
    let stop = settle(wf.run(StartEvent::new())).await.unwrap();
    assert_eq!(stop.result_as::<Vec<u32>>().unwrap(), [0, 1, 2, 3, 4]);
    let mut seen = processed.get();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3, 4], "each element processed exactly once");
}

#[tokio::test(start_paused = true)]
async fn an_empty_vec_emits_nothing() {
    let wf = Workflow::builder("empty-fan")
        .step("start", |_: StartEvent| async { Vec::<Item>::new() })
        .step("work", |ev: Item| async move { StopEvent::new(ev.id) })
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = settle(wf.run(StartEvent::new())).await.unwrap_err();
    assert!(matches!(err, stepwise::RunError::TimedOut { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_unit_step_emits_nothing_but_may_send() {
    let observed = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&observed);
    let wf = Workflow::builder("unit")
        .step("start", |_: StartEvent| async { Ping(4) })
        .step("observe", move |ev: Ping| {
            count.fetch_add(ev.0, Ordering::SeqCst);
            async {}
        })
        .step_with(
            StepConfig::new("stop").emits::<StopEvent>(),
            |ctx: Context, ev: Ping| async move {
                // Lets `observe` finish first.
                tokio::time::sleep(Duration::from_millis(10)).await;
                ctx.send_event(StopEvent::new(ev.0 * 10));
            },
        )
        .build()
        .unwrap();
    let handle = wf.run_with(StartEvent::new(), RunOptions::new().internal_events(true));
    let stream = handle.stream_events().unwrap();
    assert_eq!(
        settle(handle).await.unwrap().result,
        40,
        "a sent stop event completes the run"
    );
    assert_eq!(observed.load(Ordering::SeqCst), 4);
    let finished: Vec<StepStateChanged> = of_type::<StepStateChanged>(&drain(stream).await)
        .into_iter()
        .filter(|s| s.step == "observe" && s.phase == StepPhase::Finished)
        .collect();
    assert_eq!(finished.len(), 1);
    assert!(finished[0].output_events.is_empty(), "{finished:?}");
}

#[tokio::test(start_paused = true)]
async fn an_ok_result_emits_its_events() {
    let wf = Workflow::builder("result")
        .step("start", |ev: StartEvent| async move {
            let n: u32 = ev.get("n").map_err(|_| MyError { code: 1 })?;
            Ok::<_, MyError>(items(n))
        })
        .step(
            "work",
            |ev: Item| async move { Ok::<_, MyError>(Some(Done { id: ev.id })) },
        )
        .step("join", join_done(3))
        .build()
        .unwrap();
    let stop = settle(wf.run(StartEvent::new().with("n", 3))).await.unwrap();
    assert_eq!(stop.result_as::<Vec<u32>>().unwrap(), [0, 1, 2]);
}

#[derive(Clone, Debug, Serialize, Deserialize, stepwise::Event)]
struct Orphan;

#[tokio::test(start_paused = true)]
async fn an_event_nobody_accepts_is_published_as_unhandled() {
    let wf = Workflow::builder("orphan")
        .step("start", |ctx: Context, _: StartEvent| async move {
            ctx.send_event(Orphan);
            Ping(0)
        })
        .step("stop", |ev: Ping| async move { StopEvent::new(ev.0) })
        .build()
        .unwrap();
    let handle = wf.run(StartEvent::new());
    let stream = handle.stream_events().unwrap();
    assert_eq!(settle(handle).await.unwrap().result, 0, "the run still completes");
    let events = drain(stream).await;
    assert_eq!(names(&events), ["UnhandledEvent", "StopEvent"]);
    assert_eq!(
        of_type::<UnhandledEvent>(&events),
        [UnhandledEvent {
            event: "Orphan".into(),
            target_step: None,
            idle: false,
        }]
    );
}

/// `n` items through a `num_workers` step: returns the bodies' start order and
/// the maximum number of bodies in flight.
async fn run_limited(num_workers: usize, n: u32) -> (Vec<u32>, usize) {
    let started = Log::new();
    let in_flight = InFlight::new();
    let (log, gauge) = (started.clone(), in_flight.clone());
    let wf = Workflow::builder("limited")
        .step("start", move |_: StartEvent| async move { items(n) })
        .step_with(StepConfig::new("work").num_workers(num_workers), move |ev: Item| {
            let (log, gauge) = (log.clone(), gauge.clone());
            async move {
                let _running = gauge.enter();
                log.push(ev.id);
                // Later items are shorter: with unbounded concurrency they would finish first.
                tokio::time::sleep(Duration::from_millis(u64::from(100 - ev.id))).await;
                Done { id: ev.id }
            }
        })
        .step("join", join_done(n as usize))
        .build()
        .unwrap();
    let stop = settle(wf.run(StartEvent::new())).await.unwrap();
    assert_eq!(stop.result_as::<Vec<u32>>().unwrap(), (0..n).collect::<Vec<_>>());
    assert_eq!(in_flight.now(), 0);
    (started.get(), in_flight.max())
}

#[tokio::test(start_paused = true)]
async fn one_worker_serialises_a_step_in_arrival_order() {
    let (order, max) = run_limited(1, 10).await;
    assert_eq!(order, (0..10).collect::<Vec<_>>());
    assert_eq!(max, 1);
}

#[tokio::test(start_paused = true)]
async fn num_workers_caps_concurrency_and_queues_in_arrival_order() {
    let (order, max) = run_limited(3, 12).await;
    assert_eq!(order, (0..12).collect::<Vec<_>>());
    assert_eq!(max, 3);
}

#[tokio::test(start_paused = true)]
async fn default_num_workers_is_four() {
    let (_, max) = run_limited(stepwise::DEFAULT_NUM_WORKERS, 12).await;
    assert_eq!(max, 4);
    let wf = Workflow::builder("d")
        .step("s", |_: StartEvent| async { StopEvent::default() })
        .build()
        .unwrap();
    assert_eq!(wf.steps()[0].num_workers, 4);
}

#[tokio::test(start_paused = true)]
async fn a_returned_stop_event_cancels_in_flight_workers() {
    let slow = SlowStep::default();
    let wf = Workflow::builder("race")
        .step("start", |_: StartEvent| async { Go })
        .step("slow", slow.body(Duration::from_secs(10)))
        .step("fast", |_: Go| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            StopEvent::new("fast")
        })
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let stop = settle(wf.run(StartEvent::new())).await.unwrap();
    assert_eq!(stop.result, "fast");
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(slow.dropped.load(Ordering::SeqCst), "the in-flight sibling was dropped");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!slow.finished.load(Ordering::SeqCst), "a cancelled step never resumes");
}

#[tokio::test(start_paused = true)]
async fn worker_ids_stay_within_num_workers_and_are_never_shared() {
    let busy: Arc<Mutex<HashSet<u32>>> = Arc::default();
    let used: Arc<Mutex<HashSet<u32>>> = Arc::default();
    let (busy_in, used_in) = (Arc::clone(&busy), Arc::clone(&used));
    let wf = Workflow::builder("ids")
        .step("start", |_: StartEvent| async { items(20) })
        .step_with(StepConfig::new("work").num_workers(3), move |ctx: Context, ev: Item| {
            let (busy, used) = (Arc::clone(&busy_in), Arc::clone(&used_in));
            async move {
                let id = ctx.worker_id();
                assert!(id < 3, "worker id {id} out of range");
                assert!(busy.lock().unwrap().insert(id), "worker {id} used twice at once");
                used.lock().unwrap().insert(id);
                tokio::time::sleep(Duration::from_millis(u64::from(1 + ev.id % 4))).await;
                busy.lock().unwrap().remove(&id);
                Done { id: ev.id }
            }
        })
        .step("join", join_done(20))
        .build()
        .unwrap();
    settle(wf.run(StartEvent::new())).await.unwrap();
    let used = used.lock().unwrap().clone();
    assert_eq!(used, HashSet::from([0, 1, 2]));
}

#[tokio::test(start_paused = true)]
async fn more_than_64_workers_get_distinct_ids() {
    let ids = Log::new();
    let log = ids.clone();
    let wf = Workflow::builder("wide")
        .step("start", |_: StartEvent| async { items(150) })
        .step_with(
            StepConfig::new("work").num_workers(130),
            move |ctx: Context, ev: Item| {
                log.push(ctx.worker_id());
                async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Done { id: ev.id }
                }
            },
        )
        .step("join", join_done(150))
        .build()
        .unwrap();
    settle(wf.run(StartEvent::new())).await.unwrap();
    let ids = ids.get();
    // The first 130 run at once on distinct workers; the other 20 reuse freed ones.
    let first: HashSet<u32> = ids[..130].iter().copied().collect();
    assert_eq!(first, (0..130).collect::<HashSet<_>>());
    assert!(ids[130..].iter().all(|id| *id < 130));
}

#[tokio::test(start_paused = true)]
async fn a_self_loop_runs_until_it_stops() {
    let wf = Workflow::builder("loop")
        .step("begin", |_: StartEvent| async { Ping(0) })
        .step("spin", |ctx: Context, ev: Ping| async move {
            ctx.write_event_to_stream(ev.clone());
            if ev.0 == 1000 {
                PingOrStop::Stop(StopEvent::new(ev.0))
            } else {
                PingOrStop::Ping(Ping(ev.0 + 1))
            }
        })
        .build()
        .unwrap();
    let handle = wf.run(StartEvent::new());
    let stream = handle.stream_events().unwrap();
    assert_eq!(settle(handle).await.unwrap().result, 1000);
    let events = drain(stream).await;
    assert_eq!(of_type::<Ping>(&events), (0..=1000).map(Ping).collect::<Vec<_>>());
    assert_eq!(events.len(), 1002, "1,001 pings then the stop event");
}
