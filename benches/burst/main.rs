//! `cargo bench --bench burst`: 10,000 posts for 10,000 accounts due in the same second, and what each
//! published post costs the daemon and Redis in CPU.
//!
//! Starts its own `redis-server`, `tiktok-poster sim` (publish delay 0) and `tiktok-poster run`
//! (release build) as separate processes, connects N simulated accounts (grants obtained from the
//! simulator's own OAuth endpoints and stored sealed, as `accounts connect` would), submits N tiny
//! posts with `XADD`, all with the same `publish_at` a few seconds ahead, waits until the daemon has
//! recorded every one (before the due time, so ingest and probing fall outside the window), and from
//! the due instant waits until every one is settled. Prints:
//! - the CPU model, and how long before the due time the last submission was recorded;
//! - start lag: from the due time until a worker first held the post (p0 is how soon the daemon acts
//!   at the due instant; the rest is bounded by throughput);
//! - init lag: from the due time until the simulator received the post's init (p50/p99/max), beside what
//!   the measured throughput allows (`count / rate`);
//! - the time until all are published, posts per second, errors and duplicates;
//! - the daemon's own CPU per published post: `utime + stime` of its process (`/proc/PID/stat`, in
//!   ticks of `getconf CLK_TCK`) over the window from the due instant to the poll that saw the last
//!   post settled, divided by the posts published; the same for the simulator, and Redis's CPU per
//!   post (`INFO cpu`, the server's user + system time) over the same window;
//! - the Redis commands run in that window (`INFO commandstats`, calls inside scripts included), and
//!   how many of them were the benchmark's own: it polls one `HGETALL` of the small per-state counter
//!   hash every `TP_BURST_POLL_MS`, and reads the posts' records only after the window closes.
//!
//! There is no "availability lag" row any more: the job store has no promote step (a claim takes any
//! entry whose time has come), so that figure was 0 by construction; start lag p0 is the measured one.
//!
//! Options (environment): `TP_BURST_POSTS` (default 10000), `TP_BURST_CONCURRENCY` (default 64),
//! `TP_BURST_POLL_MS` (default 200), `TP_BURST_COMPARE` (the path of another `tiktok-poster` binary:
//! run the burst `TP_BURST_ROUNDS` times (default 5) against each daemon, alternated A B B A …, and
//! print the per-round ratios of the daemon's CPU per post, Redis's and the posts per second, built
//! here / other), `TP_BURST_PERF` (a path: `perf record` the daemon over the
//! window into it, sampling `cpu-clock` with DWARF call graphs; its CPU figures then include perf's
//! overhead and are not the ones to record).

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

/// The figures of one run that a comparison of two daemon builds puts side by side.
struct Figures {
    /// The daemon's CPU per published post (ms).
    daemon_ms: f64,
    /// Redis's CPU per published post (ms).
    redis_ms: f64,
    /// Posts published per second.
    rate: f64,
    /// Posts not published, and duplicates at TikTok.
    bad: usize,
}

async fn run() {
    common::print_cpu("burst");
    let n: usize = env_num("TP_BURST_POSTS", 10_000);
    let concurrency: usize = env_num("TP_BURST_CONCURRENCY", 64);
    let poll_ms: u64 = env_num("TP_BURST_POLL_MS", 200);
    let built = env!("CARGO_BIN_EXE_tiktok-poster").to_string();
    let Ok(other) = std::env::var("TP_BURST_COMPARE") else {
        run_once(&built, n, concurrency, poll_ms).await;
        return;
    };
    // Two daemon builds, alternated A B B A …, one ratio per round.
    let rounds: usize = env_num("TP_BURST_ROUNDS", 5);
    println!("comparing the daemon built here (A) with {other} (B)");
    println!("{}", common::order_note(rounds));
    let mut cpu = common::Ratios::default();
    let mut redis_cpu = common::Ratios::default();
    let mut rate = common::Ratios::default();
    let mut rows = Vec::new();
    for round in 0..rounds {
        let mut got: [Option<Figures>; 2] = [None, None];
        let order = if common::ours_first(round) {
            [0, 1]
        } else {
            [1, 0]
        };
        for side in order {
            let bin = if side == 0 { &built } else { &other };
            println!();
            println!("round {} of {rounds}: {}", round + 1, ["A", "B"][side]);
            got[side] = Some(run_once(bin, n, concurrency, poll_ms).await);
        }
        let (a, b) = (got[0].take().unwrap(), got[1].take().unwrap());
        cpu.push(a.daemon_ms, b.daemon_ms);
        redis_cpu.push(a.redis_ms, b.redis_ms);
        rate.push(a.rate, b.rate);
        rows.push(format!(
            "| {} ({} first) | {:.3} / {:.3} | {:.3} / {:.3} | {:.0} / {:.0} | {} / {} |",
            round + 1,
            if common::ours_first(round) { "A" } else { "B" },
            a.daemon_ms,
            b.daemon_ms,
            a.redis_ms,
            b.redis_ms,
            a.rate,
            b.rate,
            a.bad,
            b.bad
        ));
    }
    println!();
    println!(
        "| round | daemon CPU per post, A / B (ms) | Redis CPU per post, A / B (ms) | posts/s, A / B | not published + duplicates, A / B |"
    );
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    println!();
    println!("| ratio A / B | median of the per-round ratios (min, max) | per-round ratios |");
    println!("|---|---:|---|");
    for (name, r) in [
        ("daemon CPU per published post", &cpu),
        ("Redis CPU per published post", &redis_cpu),
        ("posts per second", &rate),
    ] {
        println!("| {name} | {} | {} |", r.summary(), r.rounds());
    }
}

/// One burst against the daemon binary `bin`: prints its table and returns the figures a comparison
/// needs.
async fn run_once(bin: &str, n: usize, concurrency: usize, poll_ms: u64) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let redis = TestRedis::start(false);
    let redis_url = redis.url();
    let (sim, sim_base) = start_sim(&["--publish-delay-ms", "0"]);
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
    let daemon = Proc(
        Command::new(bin)
            .args(["--config", config.to_str().unwrap(), "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("daemon.log")).unwrap(),
            ))
            .spawn()
            .unwrap(),
    );
    let (daemon_pid, sim_pid) = (daemon.0.id(), sim.0.id());
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

    // Recorded before the due time: the window below holds the publishing alone.
    loop {
        let counts = state_counts(&mut conn).await;
        if counts.values().sum::<i64>() >= n as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(poll_ms)).await;
    }
    let ahead_ms = due_ms - chrono::Utc::now().timestamp_millis();
    println!("all {n} recorded {ahead_ms} ms before the due time");
    if ahead_ms <= 0 {
        println!("WARNING: recorded after the due time, so the window below includes ingest");
    }

    // The daemon's idle CPU while it waits (from now to the due instant), to bound what the last poll
    // interval adds to the window.
    let idle0 = (Instant::now(), common::proc_cpu_secs(daemon_pid));
    tokio::time::sleep(Duration::from_millis(
        (due_ms - chrono::Utc::now().timestamp_millis()).max(0) as u64,
    ))
    .await;
    let idle_rate =
        (common::proc_cpu_secs(daemon_pid) - idle0.1) / idle0.0.elapsed().as_secs_f64().max(0.001);

    // The window: from the due instant until the poll that sees every post settled.
    let mut info_conn = redis.conn().await;
    let before = Usage::take(&mut info_conn, daemon_pid, sim_pid).await;
    let perf = std::env::var("TP_BURST_PERF").ok().map(|out| {
        Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "499",
                "--call-graph",
                "dwarf,16384",
            ])
            .args(["-p", &daemon_pid.to_string(), "-o", &out])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf record")
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut polls = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(poll_ms)).await;
        let counts = state_counts(&mut conn).await;
        polls += 1;
        let settled: i64 = SETTLED
            .iter()
            .map(|s| counts.get(*s).copied().unwrap_or(0))
            .sum();
        if settled >= n as i64 || Instant::now() > deadline {
            break;
        }
    }
    let after = Usage::take(&mut info_conn, daemon_pid, sim_pid).await;
    let window_s = after.at.duration_since(before.at).as_secs_f64();
    if let Some(mut p) = perf {
        let _ = Command::new("kill")
            .args(["-INT", &p.id().to_string()])
            .status();
        let _ = p.wait();
    }

    // The posts' records, read after the window.
    let ids: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    let mut start = Vec::new();
    let mut published_at = Vec::new();
    let mut errors = 0;
    for id in &ids {
        let h: HashMap<String, String> = conn
            .hgetall(format!("tiktok-poster:post:{id}"))
            .await
            .unwrap();
        if h.get("state").map(String::as_str) != Some("published") {
            errors += 1;
            continue;
        }
        let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
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
    start.sort();
    init_lag.sort();
    let published = published_at.len();
    let last = published_at.iter().copied().max().unwrap_or(due_ms);
    let total_s = (last - due_ms) as f64 / 1000.0;
    let rate = published as f64 / total_s.max(0.001);
    let per_post = |secs: f64| secs * 1000.0 / (published.max(1) as f64);
    let daemon_cpu = after.daemon_cpu - before.daemon_cpu;
    let sim_cpu = after.sim_cpu - before.sim_cpu;
    let redis_cpu = after.redis_cpu - before.redis_cpu;
    let commands = after.commands - before.commands;
    // The benchmark's own commands in the window: its polls and the first INFO (a command is
    // counted once it has run, so the closing INFO is not in its own figures).
    let own = polls + 1;
    let tail_s = (window_s - total_s).max(0.0);
    println!();
    println!("| figure | value | target |");
    println!("|---|---|---|");
    println!("| posts / accounts | {n} / {n} | |");
    println!("| worker concurrency | {concurrency} | |");
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
    println!(
        "| daemon CPU per published post (ms, user + system) | {:.3} | |",
        per_post(daemon_cpu)
    );
    println!(
        "| Redis CPU per published post (ms, user + system) | {:.3} | |",
        per_post(redis_cpu)
    );
    println!(
        "| simulator CPU per published post (ms, user + system) | {:.3} | |",
        per_post(sim_cpu)
    );
    println!(
        "| Redis commands per published post (the daemon's) | {:.1} | |",
        (commands.saturating_sub(own)) as f64 / published.max(1) as f64
    );
    println!(
        "| the bench's own share of Redis commands in the window | {own} of {commands} ({:.2}%) | small |",
        own as f64 * 100.0 / commands.max(1) as f64
    );
    let mut top: Vec<(&String, u64)> = after
        .by_command
        .iter()
        .map(|(k, &v)| (k, v - before.by_command.get(k).copied().unwrap_or(0)))
        .filter(|&(_, v)| v > 0)
        .collect();
    top.sort_by_key(|b| std::cmp::Reverse(b.1));
    println!();
    println!(
        "Redis commands per published post in the window, by command: {}",
        top.iter()
            .take(12)
            .map(|(k, v)| format!("{k} {:.1}", *v as f64 / published.max(1) as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "window: {window_s:.2} s from the due instant to the poll that saw all settled ({total_s:.2} s to the last published, polled every {poll_ms} ms); daemon CPU {daemon_cpu:.2} s in it, idle CPU before the due time {:.1} ms/s, so the {tail_s:.2} s tail adds about {:.1} ms ({} ms CPU-time steps)",
        idle_rate * 1000.0,
        idle_rate * tail_s * 1000.0,
        1000.0 / common::clk_tck()
    );
    Figures {
        daemon_ms: per_post(daemon_cpu),
        redis_ms: per_post(redis_cpu),
        rate,
        bad: errors + duplicates,
    }
}

/// The states a post of this benchmark ends in (published, or stopped for a reason to report).
const SETTLED: &[&str] = &[
    "published",
    "inbox",
    "failed",
    "cancelled",
    "unconfirmed",
    "deferred",
];

/// The daemon's per-state counts: one `HGETALL` of a hash of at most ten fields, the bench's only
/// command while it waits.
async fn state_counts(conn: &mut redis::aio::MultiplexedConnection) -> HashMap<String, i64> {
    conn.hgetall("tiktok-poster:state_counts").await.unwrap()
}

/// CPU used so far by the daemon, the simulator and Redis, and the commands Redis has run.
struct Usage {
    at: Instant,
    daemon_cpu: f64,
    sim_cpu: f64,
    redis_cpu: f64,
    commands: u64,
    /// Calls per command name (`cmdstat_<name>`).
    by_command: HashMap<String, u64>,
}

impl Usage {
    async fn take(
        conn: &mut redis::aio::MultiplexedConnection,
        daemon_pid: u32,
        sim_pid: u32,
    ) -> Self {
        let info: String = redis::cmd("INFO")
            .arg("everything")
            .query_async(conn)
            .await
            .unwrap();
        let mut redis_cpu = 0.0;
        let mut commands = 0u64;
        let mut by_command = HashMap::new();
        for l in info.lines() {
            if let Some(v) = l
                .strip_prefix("used_cpu_sys:")
                .or_else(|| l.strip_prefix("used_cpu_user:"))
            {
                redis_cpu += v.trim().parse::<f64>().unwrap_or(0.0);
            }
            if let Some(rest) = l.strip_prefix("cmdstat_")
                && let Some((name, stats)) = rest.split_once(':')
                && let Some(c) = stats
                    .split("calls=")
                    .nth(1)
                    .and_then(|r| r.split(',').next())
            {
                let c = c.parse::<u64>().unwrap_or(0);
                commands += c;
                by_command.insert(name.to_string(), c);
            }
        }
        Self {
            at: Instant::now(),
            daemon_cpu: common::proc_cpu_secs(daemon_pid),
            sim_cpu: common::proc_cpu_secs(sim_pid),
            redis_cpu,
            commands,
            by_command,
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
