//! `cargo bench --bench burst`: 10,000 posts for 10,000 accounts due in the same second.
//!
//! Starts its own `redis-server`, `tiktok-poster sim` (status delay 0) and `tiktok-poster run` (release
//! build) as separate processes, connects N simulated accounts (grants obtained from the simulator's own
//! OAuth endpoints and stored sealed, as `accounts connect` would), submits N tiny posts with `XADD`, all
//! with the same `publish_at` a few seconds ahead, and waits until every one is settled. Prints:
//! - availability lag: from the due time until the post is claimable by any worker (in the due index
//!   and due; p50/p99/max), and start lag: until a worker first held it (bounded by throughput);
//! - init lag: from the due time until the simulator received the post's init (p50/p99/max), beside what
//!   the measured throughput allows (`count / rate`);
//! - the time until all are published, posts per second, errors and duplicates.
//!
//! Options (environment): `TP_BURST_POSTS` (default 10000), `TP_BURST_CONCURRENCY` (default 64).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::AsyncCommands;

#[path = "../common/mod.rs"]
mod common;
use common::{
    GOOD_MP4, Proc, TestRedis, bench_client, connect_accounts, env_num, free_port, start_sim,
};

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    if !common::run_by_cargo_bench() {
        println!("burst benchmark: run it with `cargo bench --bench burst`");
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}

async fn run() {
    let n: usize = env_num("TP_BURST_POSTS", 10_000);
    let concurrency: usize = env_num("TP_BURST_CONCURRENCY", 64);
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_tiktok-poster");
    let redis = TestRedis::start(false);
    let redis_url = redis.url();
    let (_sim, sim_base) = start_sim(&["--publish-delay-ms", "0"]);
    let mut conn = redis.conn().await;
    let key_path = dir.path().join("token.key");
    let started = Instant::now();
    connect_accounts(&bench_client(&sim_base), &redis_url, &key_path, n, "burst").await;
    let http = reqwest::Client::new();
    println!(
        "connected {n} accounts in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The daemon.
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[redis]\nurl = \"{redis_url}\"\n[tiktok]\nclient_key = \"bench\"\nclient_secret = \"bench\"\napi_base = \"{sim_base}\"\nauth_base = \"{sim_base}\"\nredirect_uri = \"http://127.0.0.1:{port}/oauth/callback\"\n\
[http]\nlisten = \"127.0.0.1:{port}\"\n[worker]\nconcurrency = {concurrency}\nidle_poll_ms = 20\nstatus_interval_ms = 20\n[video]\nallowed_dirs = [\"{}\"]\n[tokens]\nencryption_key_file = \"{}\"\n[warmup]\nenabled = false\n[log]\nformat = \"text\"\nlevel = \"warn\"\n",
            dir.path().display(),
            key_path.display()
        ),
    )
    .unwrap();
    let _daemon = Proc(
        Command::new(bin)
            .args(["--config", config.to_str().unwrap(), "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("daemon.log")).unwrap(),
            ))
            .spawn()
            .unwrap(),
    );
    // A real video: every submission is probed.
    let video = dir.path().join("tiny.mp4");
    std::fs::copy(GOOD_MP4, &video).unwrap();

    // All due at one instant, far enough ahead that every submission is recorded first.
    let due = chrono::Utc::now() + chrono::Duration::seconds(8 + (n as i64) / 2000);
    let due_ms = due.timestamp_millis();
    let at = due.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut pipe = redis::pipe();
    for i in 0..n {
        let id = format!("b{i}");
        let account = format!("a{i}");
        pipe.xadd(
            "tiktok-poster:submit",
            "*",
            &[
                ("id", id.as_str()),
                ("account", account.as_str()),
                ("video", path(&video)),
                ("title", id.as_str()),
                ("privacy_level", "SELF_ONLY"),
                ("publish_at", at.as_str()),
            ],
        )
        .ignore();
    }
    let _: () = pipe.query_async(&mut conn).await.unwrap();
    println!("submitted {n} posts due at {at}");

    // Wait until every post is settled.
    let ids: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    let states = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut p = redis::pipe();
        for id in &ids {
            p.hget(format!("tiktok-poster:post:{id}"), "state");
        }
        let states: Vec<Option<String>> = p.query_async(&mut conn).await.unwrap();
        let done = states
            .iter()
            .filter(|s| {
                matches!(
                    s.as_deref(),
                    Some("published" | "failed" | "unconfirmed" | "deferred")
                )
            })
            .count();
        if done == n || Instant::now() > deadline {
            break states;
        }
    };
    let mut avail = Vec::new();
    let mut start = Vec::new();
    let mut published_at = Vec::new();
    let mut errors = 0;
    for (id, st) in ids.iter().zip(&states) {
        let h: HashMap<String, String> = conn
            .hgetall(format!("tiktok-poster:post:{id}"))
            .await
            .unwrap();
        if st.as_deref() != Some("published") {
            errors += 1;
            continue;
        }
        let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        // Available to a worker once it is in the due index and due: the job store has no separate
        // "promote" step, a claim takes any entry whose time has come.
        avail.push(num("created_ms").max(due_ms) - due_ms);
        start.push(num("first_claim_ms") - due_ms);
        published_at.push(num("published_ms"));
    }
    let posts = common::sim_posts(&http, &sim_base).await;
    let mut per_id: HashMap<String, usize> = HashMap::new();
    let mut init_lag = Vec::new();
    for p in &posts {
        let title = p["post_info"]["title"].as_str().unwrap_or("").to_string();
        *per_id.entry(title).or_default() += 1;
        init_lag.push(p["created_unix_ms"].as_i64().unwrap_or(0) - due_ms);
    }
    let duplicates: usize = per_id.values().filter(|&&c| c > 1).map(|c| c - 1).sum();
    avail.sort();
    start.sort();
    init_lag.sort();
    let last = published_at.iter().copied().max().unwrap_or(due_ms);
    let total_s = (last - due_ms) as f64 / 1000.0;
    let rate = published_at.len() as f64 / total_s.max(0.001);
    println!();
    println!("| figure | value | target |");
    println!("|---|---|---|");
    println!("| posts / accounts | {n} / {n} | |");
    println!("| worker concurrency | {concurrency} | |");
    println!(
        "| availability lag p50 / p99 / max (ms) | {} / {} / {} | p99 ≤ 1000 |",
        pct(&avail, 0.5),
        pct(&avail, 0.99),
        pct(&avail, 1.0)
    );
    println!(
        "| start lag (a worker holds it) p0 / p50 / p99 / max (ms) | {} / {} / {} / {} | throughput-bound |",
        pct(&start, 0.0),
        pct(&start, 0.5),
        pct(&start, 0.99),
        pct(&start, 1.0)
    );
    println!(
        "| init lag p50 / p99 / max (ms) | {} / {} / {} | within 2 s of count/rate = {:.0} ms |",
        pct(&init_lag, 0.5),
        pct(&init_lag, 0.99),
        pct(&init_lag, 1.0),
        n as f64 / rate * 1000.0
    );
    println!("| time until all published (s) | {total_s:.2} | |");
    println!("| posts per second | {rate:.0} | ≥ 300 |");
    println!("| errors (not published) | {errors} | 0 |");
    println!("| duplicates at TikTok | {duplicates} | 0 |");
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
