//! Durable runs: what journaling costs. No Python counterpart (the anchor's
//! in-process runtime does not journal).
//!
//! - `journal_chain_step_us`: the 10-step chain of `chain.rs`, every run
//!   journaled to a SQLite file in a temp dir, runs one after another;
//!   wall time (including `journal.flush()` at the end of each repetition, so
//!   everything is committed) ÷ (runs × 10).
//! - `journal_chain_overhead_x`: that ÷ the unjournaled chain measured the
//!   same way in the same process (DESIGN target ≤ 3×).
//! - `journal_memory_chain_step_us`: the same, journaled to a `MemoryStore`.
//! - `journal_append_ticks_per_s`: journal entries committed per second to
//!   SQLite while 10,000 concurrent 3-step runs go (all started, then all
//!   awaited, then a flush).
//! - `replay_100k_ticks_s`: `Workflow::rebuild` of a 100,000-iteration
//!   self-loop run (100,002 entries) from SQLite with snapshots off — a full
//!   replay; `replay_100k_ticks_snapshots_s` with the default snapshot every
//!   10,000 entries (the latest snapshot plus the entries after it).
//! - `journal_fanout_*`: one step sends N = 1,000,000 events (or
//!   `$STEPWISE_BENCH_FANOUT_N`) with `ctx.send_event` to a counting step
//!   that stops the run at the N-th; one run unjournaled
//!   (`journal_fanout_memory_s`) and one journaled to a fresh SQLite file with
//!   the default journal settings, snapshots on, including the final flush
//!   (`journal_fanout_journaled_s`); their ratio (target ≤ 2×) and the
//!   journaled run's peak RSS (`VmHWM`, reset before each phase through
//!   `/proc/self/clear_refs`).

use std::path::PathBuf;

use stepwise::store::{JournalStore, MemoryStore};
use stepwise::{Journal, JournalConfig, RunOptions, StartEvent, Workflow};
use stepwise_sqlite::SqliteStore;

use crate::measure::{self, emit};

const STEPS: u64 = 10;
const RUNS: u64 = 5_000;
const WARMUP_RUNS: u64 = 500;
const REPS: usize = 7;
const CONCURRENT_RUNS: u64 = 10_000;
const LOOP_N: u64 = 100_000;

/// The journal settings of the append, lag and fan-out workloads: the defaults, or
/// `STEPWISE_BENCH_BACKLOG` bytes of backlog (to measure the trade-off
/// between commit lag and throughput).
fn backlog_config() -> JournalConfig {
    let config = JournalConfig::default();
    match std::env::var("STEPWISE_BENCH_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(bytes) => {
            measure::comment(format!("max_backlog_bytes = {bytes} (STEPWISE_BENCH_BACKLOG)"));
            config.max_backlog_bytes(bytes)
        }
        None => config,
    }
}

/// A fresh directory for this benchmark's database files.
fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stepwise-bench-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

async fn chain_runs(wf: &Workflow, journal: Option<&Journal>, n: u64) {
    for _ in 0..n {
        let options = match journal {
            Some(journal) => RunOptions::new().journal(journal),
            None => RunOptions::new(),
        };
        let stop = wf.run_with(StartEvent::new(), options).await.expect("chain run");
        debug_assert_eq!(stop.result, 9);
    }
    if let Some(journal) = journal {
        journal.flush().await.expect("journal flush");
    }
}

/// µs per step transition for `REPS` repetitions of `RUNS` sequential runs.
async fn chain_samples(wf: &Workflow, journal: Option<&Journal>) -> Vec<f64> {
    chain_runs(wf, journal, WARMUP_RUNS).await;
    let mut samples = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let (dt, ()) = measure::time_async(chain_runs(wf, journal, RUNS)).await;
        samples.push(dt.as_secs_f64() / (RUNS * STEPS) as f64 * 1e6);
    }
    samples
}

pub fn bench_chain() {
    let dir = temp_dir();
    let rt = measure::runtime(2);
    let path = dir.join("chain.db");
    let (memory, sqlite, plain) = measure::run_on(&rt, async move {
        let wf = crate::chain::workflow();
        let plain_before = chain_samples(&wf, None).await;
        let journal = Journal::new(MemoryStore::new());
        let memory = chain_samples(&wf, Some(&journal)).await;
        let journal = Journal::new(SqliteStore::open(&path).await.expect("sqlite store"));
        let sqlite = chain_samples(&wf, Some(&journal)).await;
        assert!(journal.last_error().is_none(), "{:?}", journal.last_error());
        let plain_after = chain_samples(&wf, None).await;
        // The in-memory figure before and after, so that drift shows.
        let plain: Vec<f64> = plain_before.into_iter().chain(plain_after).collect();
        (memory, sqlite, plain)
    });
    measure::comment(format!(
        "journal chain: {REPS} reps of {RUNS} sequential journaled runs (+ flush), us/step samples: sqlite {} | memory store {} | unjournaled (before and after) {}",
        measure::samples_text(&sqlite),
        measure::samples_text(&memory),
        measure::samples_text(&plain)
    ));
    let sqlite = measure::median(sqlite);
    let plain = measure::median(plain);
    emit("journal_chain_step_us", sqlite, "us");
    emit("journal_chain_overhead_x", sqlite / plain, "x");
    emit("journal_memory_chain_step_us", measure::median(memory), "us");
    let _ = std::fs::remove_dir_all(&dir);
}

pub fn bench_append() {
    let dir = temp_dir();
    let rt = measure::runtime(2);
    let path = dir.join("append.db");
    let samples = measure::run_on(&rt, async move {
        let wf = crate::concurrent::workflow();
        let mut samples = Vec::new();
        for rep in 0..5 {
            // A fresh file per repetition, so every one appends to the same size.
            let file = path.with_extension(format!("{rep}.db"));
            let journal = Journal::with_config(SqliteStore::open(&file).await.expect("sqlite store"), backlog_config());
            let (dt, ()) = measure::time_async(async {
                let handles: Vec<_> = (0..CONCURRENT_RUNS)
                    .map(|i| wf.run_journaled(StartEvent::new().with("x", i), &journal, RunOptions::new()))
                    .collect();
                for handle in handles {
                    handle.await.expect("3-step run");
                }
                journal.flush().await.expect("journal flush");
            })
            .await;
            assert!(journal.last_error().is_none(), "{:?}", journal.last_error());
            samples.push(journal.entries_appended() as f64 / dt.as_secs_f64());
        }
        samples
    });
    measure::comment(format!(
        "journal append: 5 reps of {CONCURRENT_RUNS} concurrent journaled 3-step runs (4 entries each) + flush, entries/s samples: {}",
        measure::samples_text(&samples)
    ));
    emit("journal_append_ticks_per_s", measure::median(samples), "entries/s");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Commit lag (a run's end → its status committed) on SQLite with the
/// default journal settings: a burst of 2,000 concurrent runs, then
/// sustained load (20 waves of 500 runs, a new wave every 10 ms).
pub fn bench_lag() {
    let dir = temp_dir();
    let rt = measure::runtime(2);
    let path = dir.join("lag.db");
    let (burst, sustained) =
        measure::run_on(&rt, async move {
            let wf = crate::concurrent::workflow();
            let journal = Journal::with_config(SqliteStore::open(&path).await.expect("sqlite store"), backlog_config());
            let handles: Vec<_> = (0..2_000)
                .map(|i| wf.run_journaled(StartEvent::new().with("x", i), &journal, RunOptions::new()))
                .collect();
            for handle in handles {
                handle.await.expect("3-step run");
            }
            journal.flush().await.expect("journal flush");
            let burst = journal.commit_lag();
            let mut handles = Vec::new();
            for wave in 0..20 {
                handles.extend((0..500).map(|i| {
                    wf.run_journaled(StartEvent::new().with("x", wave * 500 + i), &journal, RunOptions::new())
                }));
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            for handle in handles {
                handle.await.expect("3-step run");
            }
            journal.flush().await.expect("journal flush");
            (burst, journal.commit_lag())
        });
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    measure::comment(format!(
        "commit lag: burst of 2,000 runs p50 {:.2} ms p99 {:.2} ms max {:.2} ms; sustained 10,000 runs in waves of 500 every 10 ms p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        ms(burst.p50), ms(burst.p99), ms(burst.max), ms(sustained.p50), ms(sustained.p99), ms(sustained.max)
    ));
    emit("journal_lag_burst_p99_ms", ms(burst.p99), "ms");
    emit("journal_lag_sustained_p99_ms", ms(sustained.p99), "ms");
    let _ = std::fs::remove_dir_all(&dir);
}

pub fn bench_replay() {
    let dir = temp_dir();
    let rt = measure::runtime(2);
    let files = dir.clone();
    let (full, snapshots, entries, record_s) = measure::run_on(&rt, async move {
        let dir = files;
        let wf = crate::self_loop::workflow(LOOP_N);
        let mut out = Vec::new();
        for snapshot_every in [0, JournalConfig::default().snapshot_every] {
            let path = dir.join(format!("loop-{snapshot_every}.db"));
            let config = JournalConfig {
                snapshot_every,
                ..JournalConfig::default()
            };
            let journal = Journal::with_config(SqliteStore::open(&path).await.expect("sqlite store"), config);
            let (record_dt, run_id) = measure::time_async(async {
                let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
                let run_id = handle.run_id().to_owned();
                assert_eq!(handle.await.expect("loop run").result, LOOP_N);
                journal.flush().await.expect("journal flush");
                run_id
            })
            .await;
            let entries = journal.entries_appended();
            let mut samples = Vec::new();
            for _ in 0..5 {
                let (dt, rebuilt) = measure::time_async(wf.rebuild(&journal, &run_id, None)).await;
                let rebuilt = rebuilt.expect("rebuild");
                assert_eq!(rebuilt.journal_seq, entries);
                samples.push(dt.as_secs_f64());
            }
            out.push((samples, entries, record_dt.as_secs_f64()));
        }
        let (snapshots, _, _) = out.pop().expect("two configurations");
        let (full, entries, record_s) = out.pop().expect("two configurations");
        (full, snapshots, entries, record_s)
    });
    measure::comment(format!(
        "replay: rebuild of a {LOOP_N}-iteration self-loop run ({entries} entries, journaled in {record_s:.3} s), 5 reps, s samples: full {} | from snapshots {}",
        measure::samples_text(&full),
        measure::samples_text(&snapshots)
    ));
    emit("replay_100k_ticks_s", measure::median(full), "s");
    emit("replay_100k_ticks_snapshots_s", measure::median(snapshots), "s");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Events the `journal_fanout` start step sends (`STEPWISE_BENCH_FANOUT_N`
/// overrides it).
const FANOUT_N: u64 = 1_000_000;

/// One step sends `n` `WorkEvent`s; a counting step stops the run when it
/// has seen them all.
fn fanout_workflow(n: u64) -> Workflow {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use stepwise::{Context, StepConfig, StopEvent};

    use crate::events::WorkEvent;

    let seen = Arc::new(AtomicU64::new(0));
    Workflow::builder("journal_fanout")
        .step_with(
            StepConfig::new("start").emits::<WorkEvent>(),
            move |ctx: Context, _ev: StartEvent| async move {
                for i in 0..n {
                    ctx.send_event(WorkEvent { i });
                }
            },
        )
        .step("count", move |_ev: WorkEvent| {
            let seen = Arc::clone(&seen);
            async move { (seen.fetch_add(1, Ordering::Relaxed) + 1 == n).then(|| StopEvent::new(n)) }
        })
        .build()
        .expect("fan-out workflow is valid")
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS, so that
/// phases measured one after another each get their own peak.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// One step sending N events to a counting step, unjournaled and journaled
/// to a fresh SQLite file (default journal settings, snapshots on), one run
/// of each after a small warm-up: wall time to the stop event (plus the
/// flush, journaled), the ratio, and each phase's peak RSS.
pub fn bench_fanout() {
    let n = std::env::var("STEPWISE_BENCH_FANOUT_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(FANOUT_N);
    let dir = temp_dir();
    let rt = measure::runtime(2);
    let path = dir.join("fanout.db");
    let (memory, journaled, snapshot, rss) = measure::run_on(&rt, async move {
        let stop = fanout_workflow(1_000)
            .run(StartEvent::new())
            .await
            .expect("warm-up run");
        assert_eq!(stop.result, 1_000);
        let mut rss = Vec::new();
        reset_peak_rss();
        let (memory, stop) = measure::time_async(fanout_workflow(n).run(StartEvent::new())).await;
        assert_eq!(stop.expect("fan-out run").result, n);
        rss.push(measure::peak_rss_mib());
        let store = SqliteStore::open(&path).await.expect("sqlite store");
        let snapshot_every = std::env::var("STEPWISE_BENCH_SNAPSHOT_EVERY")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(JournalConfig::default().snapshot_every);
        let journal = Journal::with_config(store.clone(), backlog_config().snapshot_every(snapshot_every));
        reset_peak_rss();
        let (journaled, (run_id, stop)) = measure::time_async(async {
            let handle = fanout_workflow(n).run_journaled(StartEvent::new(), &journal, RunOptions::new());
            let run_id = handle.run_id().to_owned();
            let stop = handle.await;
            journal.flush().await.expect("journal flush");
            (run_id, stop)
        })
        .await;
        assert_eq!(stop.expect("journaled fan-out run").result, n);
        assert!(journal.last_error().is_none(), "{:?}", journal.last_error());
        rss.push(measure::peak_rss_mib());
        let snapshot = store.snapshot(&run_id).await.expect("read the snapshot");
        let snapshot = snapshot.map_or(0, |s| s.len());
        (memory.as_secs_f64(), journaled.as_secs_f64(), snapshot, rss)
    });
    measure::comment(format!(
        "journal fan-out: one step sends {n} events to a counting step; in memory {memory:.3} s (peak RSS {:.0} MiB), journaled to SQLite {journaled:.3} s incl. flush (peak RSS {:.0} MiB, latest snapshot {snapshot} bytes)",
        rss[0], rss[1]
    ));
    emit("journal_fanout_memory_s", memory, "s");
    emit("journal_fanout_journaled_s", journaled, "s");
    emit("journal_fanout_ratio_x", journaled / memory, "x");
    emit("journal_fanout_journaled_peak_rss_mib", rss[1], "MiB");
    let _ = std::fs::remove_dir_all(&dir);
}
