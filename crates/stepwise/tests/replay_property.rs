//! Property: for random workflows run on random schedules, replaying a run's
//! journal rebuilds exactly the live reducer state — at any point of the run
//! and at its end, from the start of the journal or from a periodic snapshot.
//!
//! Workflows are chains of 1–6 stages. A stage's main step has 1–4 workers,
//! may retry (failing on chosen attempts), may wait for an answer from outside
//! (`wait_for_event`), may send a side event, and either passes its output on
//! (returned or sent with `send_event`) or fans out 1–20 items (returned as a
//! `Vec` or sent one by one) to a worker step that a `collect_n` step gathers.
//! Every invocation sleeps for a duration drawn from the case's seed on
//! tokio's paused clock, which decides the order things complete in.
//!
//! A second property crashes the same random runs at random commits: what a
//! crash leaves is a prefix of the journal's commits, and resuming from it
//! must give the uninterrupted run's result and stored stream.

mod recording;
use recording::Recording;
use std::collections::BTreeSet;

use std::time::Duration;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use stepwise::retry::{Stop, Wait};
use stepwise::store::{JournalStore, MemoryStore, RunStatus};
use stepwise::{
    AnyEvent, Context, Emitted, Event, EventType, HumanResponseEvent, InputRequiredEvent, Journal, JournalConfig,
    RetryPolicy, RunError, RunHandle, RunOptions, StartEvent, StepConfig, StepError, StepOutput, StopEvent, StreamExt,
    WaitFor, Workflow, WorkflowBuilder, WorkflowIdle,
};

const LINK: [&str; 8] = ["Link0", "Link1", "Link2", "Link3", "Link4", "Link5", "Link6", "Link7"];
const FAN: [&str; 8] = ["Fan0", "Fan1", "Fan2", "Fan3", "Fan4", "Fan5", "Fan6", "Fan7"];
const WORK: [&str; 8] = ["Work0", "Work1", "Work2", "Work3", "Work4", "Work5", "Work6", "Work7"];

/// The event passed from stage `N` to stage `N + 1`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Link<const N: usize> {
    v: u64,
}
impl<const N: usize> Event for Link<N> {
    const NAME: &'static str = LINK[N];
}

/// A fanned-out item of stage `N`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Fan<const N: usize> {
    i: u32,
    v: u64,
}
impl<const N: usize> Event for Fan<N> {
    const NAME: &'static str = FAN[N];
}

/// A processed item of stage `N`, gathered by its collector.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Work<const N: usize> {
    i: u32,
    v: u64,
}
impl<const N: usize> Event for Work<N> {
    const NAME: &'static str = WORK[N];
}

/// A side event sent to the sink step.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Note {
    stage: usize,
}
impl Event for Note {
    const NAME: &'static str = "Note";
}

/// Written to the stream by workers.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Progress {
    stage: usize,
    i: u32,
}
impl Event for Progress {
    const NAME: &'static str = "Progress";
}

/// Whatever a step decides at run time; the types are declared with `emits`.
struct Out(Vec<AnyEvent>);

impl StepOutput for Out {
    fn emitted_types() -> Vec<EventType> {
        Vec::new()
    }
    fn emit(self, out: &mut Emitted) -> Result<(), StepError> {
        self.0.into_iter().for_each(|e| out.push(e));
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct Retry {
    delay_ms: u64,
    /// A random wait in `[0, delay_ms]` (seeded per run, step and attempt)
    /// instead of a fixed one.
    jitter: bool,
    /// The step fails on attempt `a` (1-based) when `fails[a - 1]`. The policy
    /// allows 3 attempts, so failing all three fails the run.
    fails: [bool; 3],
}

#[derive(Clone, Debug)]
struct Fanout {
    k: u32,
    send_items: bool,
    worker_workers: usize,
    collector_workers: usize,
    /// Items whose index is a multiple of `fail_every` fail their first
    /// `fail_times` attempts (retried with `worker_retry_ms`).
    worker_retry: Option<(u64, u32, u32)>,
}

#[derive(Clone, Debug)]
struct Stage {
    workers: usize,
    retry: Option<Retry>,
    /// Waits for a `HumanResponseEvent`, answered this many ms after its
    /// input request is published.
    wait: Option<u64>,
    /// Waits a second time (same waiter id) once the first is answered.
    wait_twice: bool,
    note: bool,
    send_next: bool,
    fanout: Option<Fanout>,
}

#[derive(Clone, Debug)]
struct Plan {
    seed: u64,
    stages: Vec<Stage>,
    /// When (ms on the run's clock) to compare live and replayed state.
    checks: Vec<u64>,
    /// Also compare right after the stream delivers its n-th event.
    event_checks: Vec<usize>,
    /// Nanoseconds the paused clock is moved by right after the start and
    /// before each answer, so that the run's times are not whole milliseconds.
    skew_ns: u64,
    snapshot_every: u64,
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The schedule: how long one invocation sleeps (0–30 ms).
fn sleep_for(seed: u64, role: u64, stage: usize, item: u32, attempt: u32) -> Duration {
    let h = mix(seed ^ mix(role ^ mix(stage as u64 ^ mix(u64::from(item) ^ mix(u64::from(attempt))))));
    Duration::from_millis(h % 31)
}

fn add_stage<const N: usize, const M: usize>(b: WorkflowBuilder, stage: &Stage, seed: u64) -> WorkflowBuilder {
    let mut config = StepConfig::new(format!("s{N}")).num_workers(stage.workers);
    config = match &stage.fanout {
        Some(_) => config.emits::<Fan<N>>(),
        None => config.emits::<Link<M>>(),
    };
    if stage.note {
        config = config.emits::<Note>();
    }
    if let Some(retry) = &stage.retry {
        let delay = Duration::from_millis(retry.delay_ms);
        config = config.retry(match retry.jitter {
            true => RetryPolicy::new()
                .stop(Stop::after_attempts(3))
                .wait(Wait::random(Duration::ZERO, delay)),
            false => RetryPolicy::fixed(3, delay),
        });
    }
    let st = stage.clone();
    let b = b.step_with(config, move |ctx: Context, ev: Link<N>| {
        let st = st.clone();
        async move {
            let attempt = ctx.retry_info().attempt;
            tokio::time::sleep(sleep_for(seed, 1, N, 0, attempt)).await;
            if st.note {
                ctx.send_event(Note { stage: N });
            }
            if st.wait.is_some() {
                // A stream write before the wait: applied when the step starts
                // to wait, and not again when it runs again after a resume.
                ctx.write_event_to_stream(Progress { stage: N, i: u32::MAX });
                for round in 0..if st.wait_twice { 2 } else { 1 } {
                    let wait = WaitFor::<HumanResponseEvent>::new()
                        .require("data", json!({ "stage": N }))
                        .publish(InputRequiredEvent {
                            prompt: format!("stage {N}, round {round}?"),
                            data: json!({ "stage": N }),
                        });
                    ctx.wait_for_event(wait).await.map_err(StepError::new)?;
                }
            }
            if let Some(retry) = &st.retry {
                if retry.fails[(attempt as usize - 1).min(2)] {
                    return Err(StepError::msg(format!("s{N} fails attempt {attempt}")));
                }
            }
            let mut out = Vec::new();
            match &st.fanout {
                Some(f) => {
                    for i in 0..f.k {
                        let item = Fan::<N> { i, v: ev.v };
                        if f.send_items {
                            ctx.send_event(item);
                        } else {
                            out.push(AnyEvent::new(item));
                        }
                    }
                }
                None if st.send_next => ctx.send_event(Link::<M> { v: ev.v + 1 }),
                None => out.push(AnyEvent::new(Link::<M> { v: ev.v + 1 })),
            }
            Ok::<_, StepError>(Out(out))
        }
    });
    let Some(f) = stage.fanout.clone() else {
        return b;
    };
    let mut worker = StepConfig::new(format!("w{N}")).num_workers(f.worker_workers);
    if let Some((delay_ms, _, _)) = f.worker_retry {
        worker = worker.retry(RetryPolicy::fixed(3, Duration::from_millis(delay_ms)));
    }
    let b = b.step_with(worker, move |ctx: Context, item: Fan<N>| async move {
        let attempt = ctx.retry_info().attempt;
        tokio::time::sleep(sleep_for(seed, 2, N, item.i, attempt)).await;
        if let Some((_, every, times)) = f.worker_retry {
            if item.i % every == 0 && attempt <= times {
                return Err(StepError::msg(format!("w{N} item {} fails attempt {attempt}", item.i)));
            }
        }
        ctx.write_event_to_stream(Progress { stage: N, i: item.i });
        Ok(Work::<N> {
            i: item.i,
            v: item.v + u64::from(item.i),
        })
    });
    let k = f.k as usize;
    b.step_with(
        StepConfig::new(format!("c{N}"))
            .num_workers(f.collector_workers)
            .emits::<Link<M>>(),
        move |ctx: Context, work: Work<N>| async move {
            tokio::time::sleep(sleep_for(seed, 3, N, work.i, 1)).await;
            let out = ctx.collect_n(&work, k).map(|set| {
                AnyEvent::new(Link::<M> {
                    v: set.iter().map(|w| w.v).sum::<u64>() % 1_000_000,
                })
            });
            Out(out.into_iter().collect())
        },
    )
}

fn add_finish<const N: usize>(b: WorkflowBuilder) -> WorkflowBuilder {
    b.step("finish", |ev: Link<N>| async move { StopEvent::new(ev.v) })
}

fn build(plan: &Plan) -> Workflow {
    let mut b = Workflow::builder("replay-property")
        .event::<Progress>()
        .step("start", |_ev: StartEvent| async { Link::<0> { v: 1 } });
    if plan.stages.iter().any(|s| s.note) {
        b = b.step("sink", |_n: Note| async {});
    }
    for (n, stage) in plan.stages.iter().enumerate() {
        b = match n {
            0 => add_stage::<0, 1>(b, stage, plan.seed),
            1 => add_stage::<1, 2>(b, stage, plan.seed),
            2 => add_stage::<2, 3>(b, stage, plan.seed),
            3 => add_stage::<3, 4>(b, stage, plan.seed),
            4 => add_stage::<4, 5>(b, stage, plan.seed),
            5 => add_stage::<5, 6>(b, stage, plan.seed),
            _ => unreachable!("at most 6 stages"),
        };
    }
    b = match plan.stages.len() {
        1 => add_finish::<1>(b),
        2 => add_finish::<2>(b),
        3 => add_finish::<3>(b),
        4 => add_finish::<4>(b),
        5 => add_finish::<5>(b),
        6 => add_finish::<6>(b),
        _ => unreachable!("1 to 6 stages"),
    };
    b.build().expect("generated workflows are valid")
}

/// Takes a live snapshot, then checks that replaying the journal up to the
/// same entry gives the same reducer state.
async fn check(wf: &Workflow, journal: &Journal, handle: &RunHandle<StopEvent>, when: &str) -> Result<(), String> {
    let live = handle.snapshot().await.map_err(|e| e.to_string())?;
    journal.flush().await.map_err(|e| e.to_string())?;
    let rebuilt = wf
        .rebuild(journal, handle.run_id(), Some(live.journal_seq))
        .await
        .map_err(|e| format!("{when}: rebuild failed: {e}"))?;
    if rebuilt.journal_seq != live.journal_seq || rebuilt.reducer_state() != live.reducer_state() {
        return Err(format!(
            "{when}: replay of {} entries differs from the live state\n--- live (seq {}):\n{}\n--- replayed (seq {}):\n{}",
            live.journal_seq,
            live.journal_seq,
            serde_json::to_string_pretty(&live.reducer_state()).unwrap(),
            rebuilt.journal_seq,
            serde_json::to_string_pretty(&rebuilt.reducer_state()).unwrap(),
        ));
    }
    Ok(())
}

async fn run_case(plan: &Plan) -> Result<(), String> {
    let wf = build(plan);
    let store = MemoryStore::new();
    let config = JournalConfig {
        snapshot_every: plan.snapshot_every,
        ..JournalConfig::default()
    };
    let journal = Journal::with_config(store.clone(), config);
    let handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal));
    let started = tokio::time::Instant::now();
    // The paused clock moves by whole milliseconds from wherever it is: moved
    // by a fraction right after the start, the run sees times that are not
    // whole milliseconds (nor microseconds).
    tokio::time::advance(Duration::from_nanos(plan.skew_ns)).await;
    let mut stream = handle.stream_events().map_err(|e| e.to_string())?;
    let mut checks = plan.checks.clone();
    checks.sort_unstable();
    let mut checks = checks.into_iter().peekable();
    let mut answers: tokio::task::JoinSet<usize> = tokio::task::JoinSet::new();
    let mut checked = 0;
    let mut received = 0;
    loop {
        let next_check = checks.peek().map(|ms| started + Duration::from_millis(*ms));
        tokio::select! {
            event = stream.next() => match event {
                Some(event) => {
                    received += 1;
                    if plan.event_checks.contains(&received) {
                        checked += 1;
                        check(&wf, &journal, &handle, &format!("check {checked} after event {received}")).await?;
                    }
                    if let Some(request) = event.downcast_ref::<InputRequiredEvent>() {
                        let stage = request.data["stage"].as_u64().unwrap_or(0) as usize;
                        let delay = plan.stages[stage].wait.unwrap_or(0);
                        let skew = Duration::from_nanos(plan.skew_ns / 3);
                        answers.spawn(async move {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                            tokio::time::advance(skew).await;
                            stage
                        });
                    }
                }
                None => break,
            },
            Some(answered) = answers.join_next(), if !answers.is_empty() => {
                let stage = answered.map_err(|e| e.to_string())?;
                let mut answer = HumanResponseEvent::new("ok");
                answer.data = json!({ "stage": stage });
                let _ = handle.send_event(answer); // the run may have failed meanwhile
            },
            _ = tokio::time::sleep_until(next_check.unwrap_or(started)), if next_check.is_some() => {
                checks.next();
                checked += 1;
                check(&wf, &journal, &handle, &format!("check {checked} at {:?}", started.elapsed())).await?;
            },
        }
    }
    check(&wf, &journal, &handle, "at the end").await?;
    // From the latest periodic snapshot (if any) to the end, too.
    let full = wf
        .rebuild(&journal, handle.run_id(), None)
        .await
        .map_err(|e| e.to_string())?;
    let live = handle.snapshot().await.map_err(|e| e.to_string())?;
    if full.reducer_state() != live.reducer_state() {
        return Err("a rebuild to the end differs from the final live state".into());
    }
    // The stored stream: sequence numbers 0..n, one per published event.
    let events = store.events(handle.run_id(), 0).await.map_err(|e| e.to_string())?;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    if seqs != (0..live.published).collect::<Vec<_>>() {
        return Err(format!("stored stream sequence {seqs:?}, {} published", live.published));
    }
    let fatal = plan
        .stages
        .iter()
        .any(|s| s.retry.as_ref().is_some_and(|r| r.fails.iter().all(|f| *f)));
    let result = handle.await;
    if std::env::var_os("REPLAY_PROPERTY_VERBOSE").is_some() {
        eprintln!(
            "stages {} entries {} published {} checks {checked} ok {} snapshot_every {}",
            plan.stages.len(),
            live.journal_seq,
            live.published,
            result.is_ok(),
            plan.snapshot_every
        );
    }
    if result.is_ok() == fatal {
        return Err(format!("unexpected outcome {result:?}"));
    }
    Ok(())
}

fn retry() -> impl Strategy<Value = Retry> {
    (
        0u64..40,
        any::<bool>(),
        prop::array::uniform3(prop::bool::weighted(0.35)),
    )
        .prop_map(|(delay_ms, jitter, mut fails)| {
            // Failing every attempt (the run fails) should be rare.
            if fails.iter().all(|f| *f) && delay_ms % 4 != 0 {
                fails[2] = false;
            }
            Retry {
                delay_ms,
                jitter,
                fails,
            }
        })
}

fn fanout() -> impl Strategy<Value = Fanout> {
    (
        1u32..=20,
        any::<bool>(),
        1usize..=4,
        1usize..=4,
        prop::option::weighted(0.4, (0u64..30, 1u32..=5, 1u32..=2)),
    )
        .prop_map(
            |(k, send_items, worker_workers, collector_workers, worker_retry)| Fanout {
                k,
                send_items,
                worker_workers,
                collector_workers,
                worker_retry,
            },
        )
}

fn stage() -> impl Strategy<Value = Stage> {
    (
        1usize..=4,
        prop::option::weighted(0.4, retry()),
        prop::option::weighted(0.3, 0u64..50),
        any::<bool>(),
        prop::bool::weighted(0.3),
        any::<bool>(),
        prop::option::weighted(0.5, fanout()),
    )
        .prop_map(|(workers, retry, wait, wait_twice, note, send_next, fanout)| Stage {
            workers,
            retry,
            wait,
            wait_twice,
            note,
            send_next,
            fanout,
        })
}

fn plan(snapshot_every: impl Strategy<Value = u64>) -> impl Strategy<Value = Plan> {
    (
        any::<u64>(),
        prop::collection::vec(stage(), 1..=6),
        prop::collection::vec(0u64..300, 0..5),
        prop::collection::vec(0usize..60, 0..5),
        prop_oneof![Just(0u64), 1u64..1_000_000],
        snapshot_every,
    )
        .prop_map(|(seed, stages, checks, event_checks, skew_ns, snapshot_every)| Plan {
            seed,
            stages,
            checks,
            event_checks,
            skew_ns,
            snapshot_every,
        })
}

fn run_plan(plan: &Plan) -> Result<(), TestCaseError> {
    on_paused_clock(run_case(plan))
}

/// Drives a run to its end, answering every input request: when it is
/// published, and when `WorkflowIdle` lists a stage's waiter (a resumed run
/// does not publish an input request again).
async fn drive(plan: &Plan, handle: RunHandle<StopEvent>) -> Result<Result<StopEvent, RunError>, String> {
    let mut stream = handle.stream_events().map_err(|e| e.to_string())?;
    let mut answers: tokio::task::JoinSet<usize> = tokio::task::JoinSet::new();
    let mut pending: BTreeSet<usize> = BTreeSet::new();
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(event) => {
                    let mut stages = Vec::new();
                    if let Some(request) = event.downcast_ref::<InputRequiredEvent>() {
                        stages.push(request.data["stage"].as_u64().unwrap_or(0) as usize);
                    }
                    if let Some(idle) = event.downcast_ref::<WorkflowIdle>() {
                        for waiter in &idle.waiting {
                            let stage = waiter.strip_prefix('s').and_then(|w| w.split('/').next());
                            stages.extend(stage.and_then(|n| n.parse::<usize>().ok()));
                        }
                    }
                    for stage in stages {
                        if pending.insert(stage) {
                            let delay = plan.stages[stage].wait.unwrap_or(0);
                            answers.spawn(async move {
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                                stage
                            });
                        }
                    }
                }
                None => break,
            },
            Some(answered) = answers.join_next(), if !answers.is_empty() => {
                let stage = answered.map_err(|e| e.to_string())?;
                pending.remove(&stage);
                let mut answer = HumanResponseEvent::new("ok");
                answer.data = json!({ "stage": stage });
                let _ = handle.send_event(answer);
            },
        }
    }
    Ok(handle.await)
}

/// The stored stream as a sorted multiset, without the events whose number
/// depends on timing (idle notices, surplus answers).
async fn stream_multiset(store: &MemoryStore, run_id: &str) -> Result<Vec<String>, String> {
    let events = store.events(run_id, 0).await.map_err(|e| e.to_string())?;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    if seqs != (0..events.len() as u64).collect::<Vec<_>>() {
        return Err(format!("stored stream sequence {seqs:?}"));
    }
    let mut kept: Vec<String> = events
        .into_iter()
        .map(|e| e.event)
        .filter(|e| !e.starts_with(r#"{"type":"WorkflowIdle""#) && !e.starts_with(r#"{"type":"UnhandledEvent""#))
        .map(|e| without_run_time(&e))
        .collect();
    kept.sort();
    Ok(kept)
}

/// `event` without `WorkflowFailed`'s run time: a resumed run's clock goes on
/// from its last journaled tick, so steps it runs again add their time.
fn without_run_time(event: &str) -> String {
    let Ok(mut json) = serde_json::from_str::<serde_json::Value>(event) else {
        return event.to_owned();
    };
    if json["type"] == "WorkflowFailed" {
        if let Some(value) = json["value"].as_object_mut() {
            value.remove("elapsed_secs");
        }
    }
    json.to_string()
}

fn outcome_text(result: &Result<StopEvent, RunError>) -> String {
    match result {
        Ok(stop) => format!("ok {}", stop.result),
        Err(RunError::StepFailed { step, attempts, .. }) => format!("{step} failed after {attempts}"),
        Err(other) => format!("{other}"),
    }
}

async fn crash_case(plan: &Plan, crashes: &[f64]) -> Result<(), String> {
    let wf = build(plan);
    let recording = Recording::default();
    let config = JournalConfig {
        snapshot_every: plan.snapshot_every,
        max_batch: 1, // no gathering delay: the writer commits whatever it has whenever it runs
        ..JournalConfig::default()
    };
    let journal = Journal::with_config(recording.clone(), config.clone());
    let handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal));
    tokio::time::advance(Duration::from_nanos(plan.skew_ns)).await;
    let run_id = handle.run_id().to_owned();
    let expected = outcome_text(&drive(plan, handle).await?);
    // The original process "crashes": its journal lets go of the run.
    journal.shutdown().await.map_err(|e| e.to_string())?;
    let expected_stream = stream_multiset(&recording.inner, &run_id).await?;
    let batches = recording.batches.lock().unwrap().clone();
    for fraction in crashes {
        let k = ((batches.len() as f64) * fraction) as usize;
        let store = MemoryStore::new();
        for batch in &batches[..k] {
            store.write(batch).await.map_err(|e| e.to_string())?;
        }
        let journal = Journal::with_config(store.clone(), config.clone());
        let Some(record) = store.run(&run_id).await.map_err(|e| e.to_string())? else {
            continue; // crashed before the run's first commit: it never started
        };
        if record.status == RunStatus::Running {
            let handle = wf
                .resume(&journal, &run_id)
                .await
                .map_err(|e| format!("crash after commit {k} of {}: {e}", batches.len()))?;
            let outcome = outcome_text(&drive(plan, handle).await?);
            if outcome != expected {
                return Err(format!(
                    "crash after commit {k} of {}: resumed run gave `{outcome}`, uninterrupted `{expected}`",
                    batches.len()
                ));
            }
            journal.flush().await.map_err(|e| e.to_string())?;
        }
        let stream = stream_multiset(&store, &run_id).await?;
        if stream != expected_stream {
            return Err(format!(
                "crash after commit {k} of {}: stored stream differs\n--- uninterrupted:\n{}\n--- resumed:\n{}",
                batches.len(),
                expected_stream.join("\n"),
                stream.join("\n")
            ));
        }
    }
    Ok(())
}

fn on_paused_clock(case: impl std::future::Future<Output = Result<(), String>>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let outcome = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(3600), case)
            .await
            .unwrap_or_else(|_| Err("the run did not finish within an hour of paused time".into()))
    });
    outcome.map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Snapshots off: every rebuild replays the whole journal.
    #[test]
    fn replay_equals_live_full_journal(plan in plan(Just(0u64))) {
        run_plan(&plan)?;
    }

    /// A periodic snapshot every 7 entries: rebuilds start from one when it
    /// is not past the point being compared.
    #[test]
    fn replay_equals_live_from_periodic_snapshots(plan in plan(prop_oneof![Just(7u64), 1u64..20])) {
        run_plan(&plan)?;
    }

    /// A crash at any commit: resuming from what it left gives the
    /// uninterrupted run's outcome and stored stream.
    #[test]
    fn resume_after_a_crash_matches_the_uninterrupted_run(
        plan in plan(prop_oneof![Just(0u64), 1u64..20]),
        crashes in prop::collection::vec(0.0f64..1.0, 1..4),
    ) {
        on_paused_clock(crash_case(&plan, &crashes))?;
    }
}

/// One stage fanning out `k` items sent one by one (4 workers, one
/// collector): a large fan-out whose queue, then collect buffer, holds
/// thousands of events for most of the run.
fn large_fanout(k: u32, snapshot_every: u64) -> Plan {
    Plan {
        seed: 9,
        stages: vec![Stage {
            workers: 1,
            retry: None,
            wait: None,
            wait_twice: false,
            note: false,
            send_next: false,
            fanout: Some(Fanout {
                k,
                send_items: true,
                worker_workers: 4,
                collector_workers: 1,
                worker_retry: None,
            }),
        }],
        checks: Vec::new(),
        event_checks: Vec::new(),
        skew_ns: 0,
        snapshot_every,
    }
}

/// Snapshots of a large fan-out: a snapshot is due only once the journal has
/// grown by a multiple (8×) of the snapshot's size since the last one, so every
/// snapshot written for the run together is bounded by the journal's size —
/// not one snapshot of the whole queue every `snapshot_every` entries (which
/// made such runs quadratic). The store sees every batch (`max_batch: 1`, so
/// the writer does not merge snapshots of one run); a rebuild from the
/// latest snapshot still equals the live run.
#[test]
fn snapshots_of_a_large_fan_out_cost_at_most_a_fraction_of_the_journal() {
    let plan = large_fanout(2_000, 10);
    on_paused_clock(async {
        let wf = build(&plan);
        let recording = Recording::default();
        let config = JournalConfig {
            snapshot_every: plan.snapshot_every,
            max_batch: 1,
            ..JournalConfig::default()
        };
        let journal = Journal::with_config(recording.clone(), config);
        let handle = wf.run_with(StartEvent::new(), RunOptions::new().journal(&journal));
        let run_id = handle.run_id().to_owned();
        let outcome = drive(&plan, handle).await?;
        if outcome.is_err() {
            return Err(format!("the fan-out failed: {outcome:?}"));
        }
        journal.flush().await.map_err(|e| e.to_string())?;
        let batches = recording.batches.lock().unwrap().clone();
        let entries: u64 = batches
            .iter()
            .flat_map(|b| &b.entries)
            .map(|e| e.last_seq - e.first_seq + 1)
            .sum();
        let entry_bytes: usize = batches.iter().flat_map(|b| &b.entries).map(|e| e.data.len()).sum();
        let snapshots: Vec<usize> = batches.iter().flat_map(|b| &b.snapshots).map(|(_, s)| s.len()).collect();
        let snapshot_bytes: usize = snapshots.iter().sum();
        let largest = snapshots.iter().copied().max().unwrap_or(0);
        eprintln!(
            "{entries} entries, {entry_bytes} bytes; {} snapshots, {snapshot_bytes} bytes (largest {largest})",
            snapshots.len()
        );
        if snapshots.is_empty() {
            return Err("no snapshot was written".into());
        }
        if snapshot_bytes > entry_bytes / 8 + largest {
            return Err(format!(
                "{} snapshots of {snapshot_bytes} bytes in all for a journal of {entry_bytes} bytes ({entries} entries): \
                 more than an eighth of the journal plus the largest snapshot ({largest})",
                snapshots.len()
            ));
        }
        if snapshots.len() > 20 {
            return Err(format!("{} snapshots for {entries} entries", snapshots.len()));
        }
        let live = wf.rebuild(&journal, &run_id, None).await.map_err(|e| e.to_string())?;
        if live.journal_seq != entries {
            return Err(format!("rebuilt to entry {}, journal has {entries}", live.journal_seq));
        }
        // The same state replayed from the start (snapshots off for the
        // rebuild's store: only the entries are copied).
        let bare = MemoryStore::new();
        for batch in &batches {
            let mut batch = batch.clone();
            batch.snapshots.clear();
            bare.write(&batch).await.map_err(|e| e.to_string())?;
        }
        let full = wf
            .rebuild(&Journal::new(bare), &run_id, None)
            .await
            .map_err(|e| e.to_string())?;
        if full.reducer_state() != live.reducer_state() {
            return Err("a rebuild from the latest snapshot differs from a full replay".into());
        }
        Ok(())
    })
    .unwrap();
}

/// A crash in the middle of a large fan-out, at commits before, between and
/// after the (rarer) snapshots: resuming from what the crash left gives the
/// uninterrupted run's outcome and stored stream.
#[test]
fn resume_after_a_crash_mid_fan_out_matches_the_uninterrupted_run() {
    let plan = large_fanout(600, 10);
    on_paused_clock(crash_case(&plan, &[0.05, 0.2, 0.45, 0.7, 0.95])).unwrap();
}
