//! Mirrors `bench_concurrent.py R`: R runs of a 3-step workflow
//! (StartEvent → A → B → StopEvent) started at once on one workflow (all
//! `wf.run(..)` first, then every handle awaited), runs/s and peak RSS.
//!
//! Each measurement happens in a fresh child process (this binary re-executed
//! with a hidden subcommand) so that other benchmarks do not pollute its peak
//! RSS; the child reads `VmHWM` from `/proc/self/status` at the end.

use std::process::Command;
use std::time::Instant;

use stepwise::{StartEvent, StopEvent, Workflow};

use crate::events::{A, B};
use crate::measure::{self, emit};

/// The hidden subcommand that runs one measurement in a child process.
pub const CHILD: &str = "__concurrent_child";

pub(crate) fn workflow() -> Workflow {
    Workflow::builder("three")
        .step("s1", |ev: StartEvent| async move {
            A {
                x: ev.get("x").unwrap_or(0),
            }
        })
        .step("s2", |ev: A| async move { B { x: ev.x + 1 } })
        .step("s3", |ev: B| async move { StopEvent::new(ev.x + 1) })
        .build()
        .expect("3-step workflow is valid")
}

async fn batch(wf: &Workflow, runs: u64) -> f64 {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..runs).map(|i| wf.run(StartEvent::new().with("x", i))).collect();
    for (i, handle) in (0..runs).zip(handles) {
        let stop = handle.await.expect("3-step run");
        assert_eq!(stop.result, i + 2);
    }
    runs as f64 / t0.elapsed().as_secs_f64()
}

/// In the child: `batches` batches of `runs` concurrent runs; prints the
/// median runs/s, the idle RSS before the first batch and the peak RSS.
pub fn child(runs: u64, batches: usize) {
    let rt = measure::runtime(2);
    let (idle, rates) = measure::run_on(&rt, async move {
        let wf = workflow();
        for _ in 0..5 {
            assert_eq!(wf.run(StartEvent::new().with("x", 0)).await.expect("warm-up").result, 2);
        }
        let idle = measure::rss_mib();
        let mut rates = Vec::with_capacity(batches);
        for _ in 0..batches {
            rates.push(batch(&wf, runs).await);
        }
        (idle, rates)
    });
    println!("runs_per_s {}", measure::median(rates));
    println!("idle_rss_mib {idle}");
    println!("peak_rss_mib {}", measure::peak_rss_mib());
}

struct ChildFigures {
    runs_per_s: f64,
    idle_rss_mib: f64,
    peak_rss_mib: f64,
}

fn spawn_child(runs: u64, batches: usize) -> ChildFigures {
    let exe = std::env::current_exe().expect("path of the bench binary");
    let output = Command::new(exe)
        .args([CHILD, &runs.to_string(), &batches.to_string()])
        .output()
        .expect("re-exec the bench binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "concurrent child failed: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |name: &str| -> f64 {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("child did not report {name}:\n{stdout}"))
    };
    ChildFigures {
        runs_per_s: field("runs_per_s"),
        idle_rss_mib: field("idle_rss_mib"),
        peak_rss_mib: field("peak_rss_mib"),
    }
}

pub fn bench() {
    // (runs, batches per child, children, figure prefix)
    for (runs, batches, children, prefix) in [
        (1_000u64, 21usize, 3usize, "concurrent_1k"),
        (100_000, 1, 5, "concurrent_100k"),
    ] {
        let figures: Vec<ChildFigures> = (0..children).map(|_| spawn_child(runs, batches)).collect();
        let rates: Vec<f64> = figures.iter().map(|f| f.runs_per_s).collect();
        let peaks: Vec<f64> = figures.iter().map(|f| f.peak_rss_mib).collect();
        measure::comment(format!(
            "{prefix}: {children} fresh processes x {batches} batch(es) of {runs} runs; runs/s: {}; peak RSS MiB: {}",
            measure::samples_text(&rates),
            measure::samples_text(&peaks)
        ));
        emit(&format!("{prefix}_runs_per_s"), measure::median(rates), "runs/s");
        emit(&format!("{prefix}_rss_mib"), measure::median(peaks), "MiB");
        let idle = measure::median(figures.iter().map(|f| f.idle_rss_mib).collect());
        emit(&format!("{prefix}_idle_rss_mib"), idle, "MiB");
    }
}
