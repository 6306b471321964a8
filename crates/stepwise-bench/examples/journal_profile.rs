//! A driver for profiling the journal's write path (what `BENCHMARKS.md`'s
//! "What bounds the figure now" was measured with): the 10-step chain of
//! `journal_chain` (`stepwise_bench::chain`), run one run after another with a flush every 5,000 runs,
//! then the wall time per step, the time spent in flushes, and each thread's
//! CPU time (from `/proc/self/task`, Linux only).
//!
//! ```text
//! cargo run --release -p stepwise-bench --example journal_profile -- sqlite 100000
//! cargo run --release -p stepwise-bench --example journal_profile -- null      # a store that keeps nothing
//! cargo run --release -p stepwise-bench --example journal_profile -- memory
//! cargo run --release -p stepwise-bench --example journal_profile -- none      # unjournaled
//! perf record --call-graph dwarf target/release/examples/journal_profile sqlite 50000
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use stepwise::store::{
    Claim, EntryBatch, JournalStore, MemoryStore, PublishedRecord, RunFilter, RunRecord, StoreFuture, WriteBatch,
};
use stepwise::{Journal, RunOptions, StartEvent};
use stepwise_bench::chain;
use stepwise_sqlite::SqliteStore;

/// A store that keeps nothing: what the journal costs before any store does work.
struct NullStore;

impl JournalStore for NullStore {
    fn write<'a>(&'a self, _batch: &'a WriteBatch) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    fn run(&self, _run_id: &str) -> StoreFuture<'_, Option<RunRecord>> {
        Box::pin(async { Ok(None) })
    }
    fn runs(&self, _filter: RunFilter) -> StoreFuture<'_, Vec<RunRecord>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn entries(&self, _run_id: &str, _from_seq: u64) -> StoreFuture<'_, Vec<EntryBatch>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn events(&self, _run_id: &str, _from_seq: u64) -> StoreFuture<'_, Vec<PublishedRecord>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn state(&self, _run_id: &str) -> StoreFuture<'_, Option<String>> {
        Box::pin(async { Ok(None) })
    }
    fn snapshot(&self, _run_id: &str) -> StoreFuture<'_, Option<String>> {
        Box::pin(async { Ok(None) })
    }
    fn claim<'a>(&'a self, _claim: &'a Claim) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async { Ok(None) })
    }
}

/// CPU seconds per thread name, summed over threads of the same name.
fn cpu_by_thread() -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `pid (name) state ...`: the name may hold spaces, so split at the parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime, in clock ticks (100 per second on Linux).
        let ticks: f64 = fields[11..13].iter().filter_map(|f| f.parse::<f64>().ok()).sum();
        *by_name.entry(stat[open + 1..close].to_owned()).or_insert(0.0) += ticks / 100.0;
    }
    by_name
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "sqlite".into());
    let runs: u64 = args.next().map_or(100_000, |n| n.parse().expect("a run count"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = std::env::temp_dir().join(format!("stepwise-journal-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("profile.db");
    let (elapsed, flushing) = rt
        .block_on(rt.spawn(async move {
            let journal = match mode.as_str() {
                "sqlite" => Some(Journal::new(SqliteStore::open(&path).await.expect("sqlite store"))),
                "memory" => Some(Journal::new(MemoryStore::new())),
                "null" => Some(Journal::new(NullStore)),
                "none" => None,
                other => panic!("unknown mode `{other}`: sqlite, memory, null or none"),
            };
            let wf = chain::workflow();
            let t0 = Instant::now();
            let mut flushing = Duration::ZERO;
            for i in 1..=runs {
                let options = journal
                    .as_ref()
                    .map_or_else(RunOptions::new, |j| RunOptions::new().journal(j));
                wf.run_with(StartEvent::new(), options).await.expect("chain run");
                if let Some(journal) = journal.as_ref().filter(|_| i % 5_000 == 0 || i == runs) {
                    let t = Instant::now();
                    journal.flush().await.expect("journal flush");
                    flushing += t.elapsed();
                }
            }
            (t0.elapsed(), flushing)
        }))
        .expect("profile task");
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{:.3} us/step, of which flushes {:.3} us/step",
        elapsed.as_secs_f64() / (runs * 10) as f64 * 1e6,
        flushing.as_secs_f64() / (runs * 10) as f64 * 1e6
    );
    for (thread, seconds) in cpu_by_thread() {
        println!("cpu {thread}: {seconds:.2} s");
    }
}
