//! What the benchmarks that run against a cluster share.

use std::time::Duration;

use anyhow::Context;

/// Whether `cargo bench` asked for the benchmark: under `cargo test --all-targets`
/// (no `--bench` argument) it does nothing.
pub fn requested(name: &str) -> bool {
    let requested = std::env::args().any(|a| a == "--bench");
    if !requested {
        eprintln!("{name}: a benchmark; run it with cargo bench");
    }
    requested
}

/// Runs `bench` on a multi-threaded runtime.
pub fn block_on(bench: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench)
}

/// The machine's load averages over 1, 5 and 15 minutes.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The nearest-rank quantile `q` of `sorted`; zero when it is empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or_default()
}

/// A count from the environment variable `name`, `default` when unset or empty.
pub fn var(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(text) if !text.is_empty() => text.parse().with_context(|| format!("{name}={text}")),
        _ => Ok(default),
    }
}
