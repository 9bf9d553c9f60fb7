//! `cargo bench --bench refresh`: 10,000 accounts whose tokens live minutes, kept fresh by one daemon.
//!
//! Starts its own `redis-server`, `tiktok-poster sim --token-ttl SECS` and `tiktok-poster run` (release)
//! as separate processes, connects N accounts (grants from the simulator, stored sealed), and lets the
//! daemon run for at least two token lifetimes. Prints refresh calls per minute (and the largest minute
//! against the mean), the daemon's CPU share over the run, the simulator's count of calls made with an
//! expired token, and how often an account's stored access token was found expired when sampled.
//!
//! Options (environment): `TP_REFRESH_ACCOUNTS` (default 10000), `TP_REFRESH_TTL_SECS` (default 120),
//! `TP_REFRESH_LIFETIMES` (default 2).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../common/mod.rs"]
mod common;
use common::{Proc, TestRedis, bench_client, connect_accounts, env_num, free_port, start_sim};

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

fn main() {
    if !common::run_by_cargo_bench() {
        println!("refresh benchmark: run it with `cargo bench --bench refresh`");
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}

async fn run() {
    let n: usize = env_num("TP_REFRESH_ACCOUNTS", 10_000);
    let ttl: u64 = env_num("TP_REFRESH_TTL_SECS", 120);
    let lifetimes: u64 = env_num("TP_REFRESH_LIFETIMES", 2);
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_tiktok-poster");
    let redis = TestRedis::start(false);
    let redis_url = redis.url();
    let (_sim, sim_base) = start_sim(&["--token-ttl", &ttl.to_string()]);
    let mut conn = redis.conn().await;
    let key_path = dir.path().join("token.key");
    let started = Instant::now();
    connect_accounts(&bench_client(&sim_base), &redis_url, &key_path, n, "r").await;
    let http = reqwest::Client::new();
    println!(
        "connected {n} accounts in {:.1} s; tokens live {ttl} s",
        started.elapsed().as_secs_f64()
    );

    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[redis]\nurl = \"{redis_url}\"\n[tiktok]\nclient_key = \"bench\"\nclient_secret = \"bench\"\napi_base = \"{sim_base}\"\nauth_base = \"{sim_base}\"\nredirect_uri = \"http://127.0.0.1:{port}/oauth/callback\"\n\
[http]\nlisten = \"127.0.0.1:{port}\"\n[video]\nallowed_dirs = [\"{}\"]\n[tokens]\nencryption_key_file = \"{}\"\nrefresh_check_ms = 250\n[log]\nformat = \"text\"\nlevel = \"warn\"\n",
            dir.path().display(),
            key_path.display()
        ),
    )
    .unwrap();
    let daemon = Command::new(bin)
        .args(["--config", config.to_str().unwrap(), "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("daemon.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let pid = daemon.id();
    let _daemon = Proc(daemon);
    let t0 = Instant::now();
    let ticks0 = cpu_ticks(pid);
    let total = Duration::from_secs(ttl * lifetimes);
    let mut per_minute: Vec<u64> = Vec::new();
    let mut last_refreshes = 0u64;
    let mut minute_start = Instant::now();
    let mut expired_seen = 0u64;
    let mut samples = 0u64;
    while t0.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(5)).await;
        // Sample every account's stored expiry.
        let mut p = redis::pipe();
        for i in 0..n {
            p.hget(format!("tiktok-poster:account:a{i}"), "access_expires_ms");
        }
        let exp: Vec<Option<i64>> = p.query_async(&mut conn).await.unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        expired_seen += exp.iter().filter(|e| e.is_some_and(|e| e <= now)).count() as u64;
        samples += 1;
        if minute_start.elapsed() >= Duration::from_secs(60) || t0.elapsed() >= total {
            let stats: Value = common::sim_stats(&http, &sim_base).await;
            let r = stats["refreshes"].as_u64().unwrap_or(0);
            let secs = minute_start.elapsed().as_secs_f64();
            per_minute.push(((r - last_refreshes) as f64 * 60.0 / secs).round() as u64);
            println!(
                "minute {}: {} refreshes/min",
                per_minute.len(),
                per_minute.last().unwrap()
            );
            last_refreshes = r;
            minute_start = Instant::now();
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - ticks0) as f64 / 100.0 / elapsed * 100.0;
    let stats: Value = common::sim_stats(&http, &sim_base).await;
    // The first minute has no refreshes by design (every token is fresh); the spread is judged on the
    // minutes after it.
    let steady: Vec<u64> = per_minute.iter().skip(1).copied().collect();
    let mean = steady.iter().sum::<u64>() as f64 / steady.len().max(1) as f64;
    let max = steady.iter().copied().max().unwrap_or(0);
    println!();
    println!("| figure | value | target |");
    println!("|---|---|---|");
    println!(
        "| accounts / token lifetime / run | {n} / {ttl} s / {elapsed:.0} s | ≥ 2 lifetimes |"
    );
    println!("| refreshes per minute (each minute) | {per_minute:?} | |");
    println!(
        "| largest minute / mean (after the first) | {max} / {mean:.0} = {:.2} | ≤ 2 |",
        max as f64 / mean.max(1.0)
    );
    println!("| total refreshes | {} | |", stats["refreshes"]);
    println!("| daemon CPU, share of one core | {cpu:.1}% | < 10% |");
    println!(
        "| calls with an expired token (simulator) | {} | 0 |",
        stats["expired_token_calls"]
    );
    println!(
        "| expired access tokens seen in {samples} samples of all accounts | {expired_seen} | 0 |"
    );
}
