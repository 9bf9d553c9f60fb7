//! What only the benchmark programs share: numbers from the environment, the `cargo bench` guard,
//! `/proc` readings and the bench client. The harness they share with the integration tests (a
//! `redis-server` of their own, the simulator, connected accounts, videos, polling, free ports) is
//! `tests/support/`, included here once and re-exported, so a benchmark writes `common::X` for both.

#![allow(dead_code, reason = "each benchmark uses a part")]

#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::Duration;

pub use support::*;
use tiktok_poster::tiktok::Client;

/// A number from the environment, or the default.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// True when run by `cargo bench` (it passes `--bench`); `cargo test --all-targets` runs harness-less
/// benches without it, and they should then do nothing.
pub fn run_by_cargo_bench() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The benchmarks' client for the simulator at `sim_base`, with a 120 s chunk timeout.
pub fn bench_client(sim_base: &str) -> Client {
    sim_client(sim_base, "bench", "bench", |cfg| {
        cfg.upload_chunk_timeout = Duration::from_secs(120);
    })
}

/// A `kB` field (`VmRSS:`, `VmHWM:`) of `/proc/<pid>/status`; `pid` "self" for this process. 0 when
/// the process is gone.
pub fn proc_status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
