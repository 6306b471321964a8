//! The stepwise benchmark harness. Mirrors the Python anchor's scripts in
//! `shared/anchor/bench-py/` and prints every figure as one `name value unit`
//! line (comment lines start with `#`).
//!
//! ```text
//! cargo run --release -p stepwise-bench -- all          # every benchmark
//! cargo run --release -p stepwise-bench -- fanout       # one workload
//! cargo run --release -p stepwise-bench -- chain_step_us  # the workload printing this figure
//! cargo run --release -p stepwise-bench -- list         # workloads and their figures
//! ```

use std::process::ExitCode;

use stepwise_bench::{chain, concurrent, fanout, io_fanout, journal, measure, self_loop, stream};

/// A workload: its name, the figures it prints, and how to run it.
struct Workload {
    name: &'static str,
    figures: &'static [&'static str],
    run: fn(),
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "chain",
        figures: &["chain_step_us", "chain_run_us"],
        run: chain::bench,
    },
    Workload {
        name: "loop",
        figures: &["loop_events_per_s"],
        run: self_loop::bench,
    },
    Workload {
        name: "fanout",
        figures: &[
            "fanout_collect_1k_s",
            "fanout_collect_10k_s",
            "fanout_collect_100k_s",
            "fanout_linearity",
            "fanout_collect_100k_events_per_s",
            "fanout_collect_untyped_1k_s",
            "fanout_collect_untyped_10k_s",
            "fanout_collect_untyped_100k_s",
        ],
        // Both call shapes, so `-- fanout` reports the untyped figures too.
        run: fanout::bench_all,
    },
    Workload {
        name: "io_fanout",
        figures: &[
            "io_fanout_s",
            "io_fanout_tokio_baseline_s",
            "io_fanout_ideal_s",
            "io_fanout_efficiency",
            "io_fanout_efficiency_vs_ideal",
        ],
        run: io_fanout::bench,
    },
    Workload {
        name: "concurrent",
        figures: &[
            "concurrent_1k_runs_per_s",
            "concurrent_1k_rss_mib",
            "concurrent_1k_idle_rss_mib",
            "concurrent_100k_runs_per_s",
            "concurrent_100k_rss_mib",
            "concurrent_100k_idle_rss_mib",
        ],
        run: concurrent::bench,
    },
    Workload {
        name: "stream",
        figures: &["stream_10k_events_per_s", "stream_events_per_s"],
        run: stream::bench,
    },
    Workload {
        name: "slow_reader",
        figures: &["slow_reader_memory_rss_mib", "slow_reader_journaled_rss_mib"],
        run: stream::bench_slow_reader,
    },
    Workload {
        name: "journal_chain",
        figures: &[
            "journal_chain_step_us",
            "journal_chain_overhead_x",
            "journal_memory_chain_step_us",
        ],
        run: journal::bench_chain,
    },
    Workload {
        name: "journal_append",
        figures: &["journal_append_ticks_per_s"],
        run: journal::bench_append,
    },
    Workload {
        name: "journal_lag",
        figures: &["journal_lag_burst_p99_ms", "journal_lag_sustained_p99_ms"],
        run: journal::bench_lag,
    },
    Workload {
        name: "journal_fanout",
        figures: &[
            "journal_fanout_memory_s",
            "journal_fanout_journaled_s",
            "journal_fanout_ratio_x",
            "journal_fanout_journaled_peak_rss_mib",
        ],
        run: journal::bench_fanout,
    },
    Workload {
        name: "replay",
        figures: &["replay_100k_ticks_s", "replay_100k_ticks_snapshots_s"],
        run: journal::bench_replay,
    },
];

fn usage() -> ExitCode {
    eprintln!("usage: stepwise-bench all | list | <workload or figure name>...");
    eprintln!(
        "workloads: {}",
        WORKLOADS.iter().map(|w| w.name).collect::<Vec<_>>().join(", ")
    );
    ExitCode::from(2)
}

fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name || w.figures.contains(&name))
}

fn run(workload: &Workload) {
    measure::comment(format!(
        "workload {} (load average {})",
        workload.name,
        measure::load_average()
    ));
    (workload.run)();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(concurrent::CHILD) => {
            let runs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
            let batches = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
            concurrent::child(runs, batches);
            return ExitCode::SUCCESS;
        }
        Some("list") => {
            for w in WORKLOADS {
                println!("{}: {}", w.name, w.figures.join(" "));
            }
            return ExitCode::SUCCESS;
        }
        None => return usage(),
        _ => {}
    }
    let selected: Vec<&Workload> = if args.iter().any(|a| a == "all") {
        WORKLOADS.iter().collect()
    } else {
        let mut selected = Vec::new();
        for arg in &args {
            match find(arg) {
                Some(w) if !selected.iter().any(|s: &&Workload| s.name == w.name) => selected.push(w),
                Some(_) => {}
                None => {
                    eprintln!("unknown workload or figure `{arg}`");
                    return usage();
                }
            }
        }
        selected
    };
    measure::comment(format!(
        "stepwise-bench: release={} nproc={} tokio multi-thread runtime, 2 workers",
        !cfg!(debug_assertions),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    for workload in selected {
        run(workload);
    }
    ExitCode::SUCCESS
}
