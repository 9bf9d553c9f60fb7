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

/// The CPU the figures come from: the first `model name` line of `/proc/cpuinfo` ("unknown" when
/// there is none).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The line a benchmark opens with: its name, the CPU model and the number of cores, so that
/// figures from different machines are never read as one.
pub fn print_cpu(bench: &str) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("{bench}: CPU {} ({cores} cores)", cpu_model());
}

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times (`getconf CLK_TCK`; 100 when `getconf`
/// cannot say, the Linux value on every common architecture).
pub fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds a process has used so far (`utime` + `stime` of `/proc/<pid>/stat`),
/// in steps of 1 / [`clk_tck`]; 0 when the process is gone.
pub fn proc_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let Some(i) = stat.rfind(')') else { return 0.0 };
    let f: Vec<&str> = stat[i + 1..].split_whitespace().collect();
    let ticks = |k: usize| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / clk_tck()
}

/// The median (the mean of the middle two for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Whether our side goes first in round `round` (from 0), in the order A B B A, A B B A, …: each side
/// goes first equally often over every two rounds, and a drift over the run (a warming cache, a
/// throttling CPU) falls on both sides alike over every four.
pub fn ours_first(round: usize) -> bool {
    matches!(round % 4, 0 | 3)
}

/// How often our side went first over `rounds` rounds, for the bench's header.
pub fn order_note(rounds: usize) -> String {
    let ours = (0..rounds).filter(|&r| ours_first(r)).count();
    let note = if ours * 2 == rounds {
        "each side first equally often"
    } else if ours * 2 > rounds {
        "ours first once more"
    } else {
        "the baseline first once more"
    };
    format!(
        "{rounds} rounds, order A B B A …: ours went first in {ours}, the baseline in {} ({note})",
        rounds - ours
    )
}

/// A ratio with two decimals, or enough digits to tell a very small one from 0.
fn ratio(r: f64) -> String {
    if r.abs() >= 0.1 || r == 0.0 {
        format!("{r:.2}")
    } else if r.abs() >= 0.001 {
        format!("{r:.4}")
    } else {
        format!("{r:.1e}")
    }
}

/// The ratios of one figure, one per round (ours / baseline, both measured in that round).
#[derive(Default, Clone, Debug)]
pub struct Ratios(pub Vec<f64>);

impl Ratios {
    /// Records one round's ratio (skipped when the baseline is 0 or missing).
    pub fn push(&mut self, ours: f64, baseline: f64) {
        if baseline.is_finite() && baseline != 0.0 && ours.is_finite() {
            self.0.push(ours / baseline);
        }
    }

    /// The per-round ratios, as printed beside each figure: "1.61 / 2.02 / 1.84".
    pub fn rounds(&self) -> String {
        if self.0.is_empty() {
            return "-".into();
        }
        self.0
            .iter()
            .map(|&r| ratio(r))
            .collect::<Vec<_>>()
            .join(" / ")
    }

    /// The median of the per-round ratios with their range: "1.84 (min 1.61, max 2.02)".
    pub fn summary(&self) -> String {
        if self.0.is_empty() {
            return "-".into();
        }
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!(
            "{} (min {}, max {})",
            ratio(median(&self.0)),
            ratio(min),
            ratio(max)
        )
    }
}

/// `tiktok-poster run` (this build) with `config`, its stderr into `log`; killed when dropped.
pub fn start_daemon(config: &std::path::Path, log: &std::path::Path) -> Proc {
    Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
            .arg("--config")
            .arg(config)
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).expect("the daemon's log file"))
            .spawn()
            .expect("start the daemon"),
    )
}
