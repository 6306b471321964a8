//! Concurrency invariants under a multi-threaded runtime: the worker cap,
//! exactly-once processing of fanned-out events, and fan-in races.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rand::Rng;
use serde::{Deserialize, Serialize};
use stepwise::{Context, StartEvent, StepConfig, StopEvent, Workflow};

/// Random awaits: a few yields, sometimes a short sleep.
async fn jitter() {
    let (yields, sleep_us) = {
        let mut rng = rand::thread_rng();
        (rng.gen_range(0..4), rng.gen_bool(0.2).then(|| rng.gen_range(50..500)))
    };
    for _ in 0..yields {
        tokio::task::yield_now().await;
    }
    if let Some(us) = sleep_us {
        tokio::time::sleep(Duration::from_micros(us)).await;
    }
}

async fn check_worker_cap(num_workers: usize, n: u32) {
    let in_flight = InFlight::new();
    let counts: Arc<Vec<AtomicU32>> = Arc::new((0..n).map(|_| AtomicU32::new(0)).collect());
    let (gauge, seen) = (in_flight.clone(), Arc::clone(&counts));
    let wf = Workflow::builder("capped")
        .step("start", move |_: StartEvent| async move {
            (0..n).map(|id| Item { id }).collect::<Vec<_>>()
        })
        .step_with(StepConfig::new("work").num_workers(num_workers), move |ev: Item| {
            let (gauge, seen) = (gauge.clone(), Arc::clone(&seen));
            async move {
                let _running = gauge.enter();
                jitter().await;
                seen[ev.id as usize].fetch_add(1, Ordering::SeqCst);
                jitter().await;
                Done { id: ev.id }
            }
        })
        .step("join", move |ctx: Context, ev: Done| async move {
            ctx.collect_n(&ev, n as usize).map(|set| StopEvent::new(set.len()))
        })
        .build()
        .unwrap();
    let stop = settle(wf.run(StartEvent::new())).await.unwrap();
    assert_eq!(stop.result, n);
    assert!(
        counts.iter().all(|c| c.load(Ordering::SeqCst) == 1),
        "every event processed once"
    );
    assert_eq!(
        in_flight.max(),
        num_workers,
        "num_workers = {num_workers}: the cap is reached and never exceeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_num_workers_invocations_at_once() {
    // Several runs at once, so that runs compete for the two threads.
    let runs: Vec<_> = [1, 3, 8, 1, 3, 8]
        .into_iter()
        .map(|n| tokio::spawn(check_worker_cap(n, 300)))
        .collect();
    for run in runs {
        run.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_fanned_out_events_are_each_processed_exactly_once() {
    const N: u32 = 10_000;
    let counts: Arc<Vec<AtomicU32>> = Arc::new((0..N).map(|_| AtomicU32::new(0)).collect());
    let complete_sets = Arc::new(AtomicU32::new(0));
    let (seen, sets) = (Arc::clone(&counts), Arc::clone(&complete_sets));
    let wf = Workflow::builder("fan-10k")
        .step("start", |_: StartEvent| async {
            (0..N).map(|id| Item { id }).collect::<Vec<_>>()
        })
        .step_with(StepConfig::new("work").num_workers(8), move |ev: Item| {
            let seen = Arc::clone(&seen);
            async move {
                if ev.id % 64 == 0 {
                    tokio::task::yield_now().await;
                }
                seen[ev.id as usize].fetch_add(1, Ordering::SeqCst);
                Done { id: ev.id }
            }
        })
        .step("join", move |ctx: Context, ev: Done| {
            let set = ctx.collect_n(&ev, N as usize);
            if set.is_some() {
                sets.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                set.map(|set| {
                    let mut ids: Vec<u32> = set.into_iter().map(|d| d.id).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    StopEvent::new(ids.len())
                })
            }
        })
        .build()
        .unwrap();
    let stop = settle(wf.run(StartEvent::new())).await.unwrap();
    assert_eq!(stop.result, N, "the collected set holds every id once");
    let wrong: Vec<(usize, u32)> = counts
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .enumerate()
        .filter(|(_, c)| *c != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "ids not processed exactly once: {:?}",
        &wrong[..wrong.len().min(10)]
    );
    assert_eq!(complete_sets.load(Ordering::SeqCst), 1);
}

#[derive(Clone, Debug, Serialize, Deserialize, stepwise::Event)]
struct Part(u32);

#[derive(Clone, Debug, Serialize, Deserialize, stepwise::Event)]
struct Joined;

/// Spins until `parties` threads arrived (or a few seconds passed), so that
/// they leave at the same instant. Unlike `std::sync::Barrier`, it cannot hang
/// a blocking thread (and with it the runtime's shutdown) if a party never comes.
fn rendezvous(arrived: &AtomicUsize, parties: usize) {
    arrived.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while arrived.load(Ordering::SeqCst) < parties && Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

/// Per run: how many collect calls returned the full set, and how many were made.
type Tally = Arc<Mutex<HashMap<String, (u32, u32)>>>;

fn record(tally: &Tally, run_id: &str, complete: bool) {
    let mut tally = tally.lock().unwrap();
    let entry = tally.entry(run_id.to_owned()).or_default();
    entry.0 += u32::from(complete);
    entry.1 += 1;
}

/// Waits until every run made its `calls` collect calls, then checks exactly
/// one call per run got the full set.
async fn assert_one_winner_per_run(tally: &Tally, runs: usize, calls: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let done = {
            let tally = tally.lock().unwrap();
            tally.len() == runs && tally.values().all(|(_, made)| *made == calls)
        };
        if done {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "collect calls still missing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (run_id, (complete, _)) in tally.lock().unwrap().iter() {
        assert_eq!(
            *complete, 1,
            "run {run_id}: the full set went to {complete} invocations"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_race_between_concurrently_finishing_workers() {
    const RUNS: usize = 400;
    const BATCH: usize = 8;
    let tally: Tally = Arc::default();
    let recorded = Arc::clone(&tally);
    // One two-party rendezvous per run, shared by that run's two `join` invocations.
    let meetings: Arc<Mutex<HashMap<String, Arc<AtomicUsize>>>> = Arc::default();
    // Two workers finish together and each emits a `Part`; the two `join`
    // invocations then collect at the same instant from two blocking threads,
    // through cloned contexts.
    let wf = Workflow::builder("race")
        .step("start", |_: StartEvent| async { vec![Go, Go] })
        .step_with(
            StepConfig::new("work").num_workers(2),
            |ctx: Context, _: Go| async move { Part(ctx.worker_id()) },
        )
        .step_with(StepConfig::new("join").num_workers(2), move |ctx: Context, ev: Part| {
            let tally = Arc::clone(&recorded);
            let meeting = Arc::clone(meetings.lock().unwrap().entry(ctx.run_id().to_owned()).or_default());
            async move {
                let collect = tokio::task::spawn_blocking(move || {
                    rendezvous(&meeting, 2);
                    let set = ctx.collect_n(&ev, 2);
                    record(&tally, ctx.run_id(), set.is_some());
                    set
                });
                collect.await.unwrap().map(|_| Joined)
            }
        })
        .step("finish", |_: Joined| async { StopEvent::new("joined") })
        .build()
        .unwrap();
    for _ in 0..RUNS / BATCH {
        let handles: Vec<_> = (0..BATCH).map(|_| wf.run(StartEvent::new())).collect();
        for handle in handles {
            assert_eq!(settle(handle).await.unwrap().result, "joined");
        }
    }
    assert_one_winner_per_run(&tally, RUNS, 2).await;
}

/// An answer sent from outside (so validation knows it is produced).
#[derive(Clone, Debug, Serialize, Deserialize, stepwise::Event)]
#[event(human_response)]
struct Answer(u32);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_race_between_two_outside_threads() {
    const RUNS: usize = 1000;
    let tally: Tally = Arc::default();
    let recorded = Arc::clone(&tally);
    let wf = Workflow::builder("outside-race")
        .step("start", |_: StartEvent| async {})
        .step("join", move |ctx: Context, ev: Answer| {
            let set = ctx.collect_n(&ev, 2);
            record(&recorded, ctx.run_id(), set.is_some());
            async move { set.map(|set| StopEvent::new(set.iter().map(|a| a.0).sum::<u32>())) }
        })
        .build()
        .unwrap();
    for _ in 0..RUNS {
        let handle = wf.run(StartEvent::new());
        let barrier = Barrier::new(2);
        std::thread::scope(|scope| {
            for value in [1, 2] {
                let (handle, barrier) = (&handle, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    handle.send_event(Answer(value)).unwrap();
                });
            }
        });
        assert_eq!(settle(handle).await.unwrap().result, 3);
    }
    assert_one_winner_per_run(&tally, RUNS, 2).await;
}
