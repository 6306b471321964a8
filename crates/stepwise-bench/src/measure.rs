//! Timing, medians, output lines and memory figures.

use std::future::Future;
use std::time::{Duration, Instant};

/// Prints one figure as `name value unit`.
pub fn emit(name: &str, value: f64, unit: &str) {
    println!("{name} {} {unit}", format_value(value));
}

/// Prints a comment line (ignored by whoever parses the figures).
pub fn comment(text: impl AsRef<str>) {
    println!("# {}", text.as_ref());
}

/// Six significant digits, like the anchor's `{:.6g}`, without exponents for
/// the ranges we print.
fn format_value(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (5 - magnitude).clamp(0, 9) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// The median of `samples` (mean of the middle two for an even count).
pub fn median(mut samples: Vec<f64>) -> f64 {
    assert!(!samples.is_empty(), "median of no samples");
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

/// Formats samples for a comment line.
pub fn samples_text(samples: &[f64]) -> String {
    samples.iter().map(|s| format_value(*s)).collect::<Vec<_>>().join(" ")
}

/// A multi-thread tokio runtime with `workers` worker threads.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `body` as a task on the runtime's workers (not on the calling
/// thread), so the benchmark's own awaits happen where the engine runs.
pub fn run_on<F>(rt: &tokio::runtime::Runtime, body: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(rt.spawn(body)).expect("benchmark task panicked")
}

/// Wall time of an async body.
pub async fn time_async<F: Future>(body: F) -> (Duration, F::Output) {
    let t0 = Instant::now();
    let out = body.await;
    (t0.elapsed(), out)
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`), if available.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Peak resident set size of this process, in MiB.
pub fn peak_rss_mib() -> f64 {
    proc_status_kib("VmHWM").map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

/// Current resident set size of this process, in MiB.
pub fn rss_mib() -> f64 {
    proc_status_kib("VmRSS").map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

/// The 1-minute load average, for the caveat next to the figures.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_anchor() {
        assert_eq!(format_value(0.123456789), "0.123457");
        assert_eq!(format_value(1234567.8), "1234568");
        assert_eq!(format_value(2.5), "2.5");
        assert_eq!(format_value(100.0), "100");
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
