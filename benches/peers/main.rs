//! `cargo bench --bench peers`: our job store against BullMQ 6.7, side by side in one run.
//!
//! Each measurement runs both sides in alternating order over several rounds, every round on one fresh
//! `redis-server` of its own (flushed and its statistics reset between the sides), and reports medians
//! and ratios. Our side is this crate's job store behind apalis, exactly as the daemon drives it
//! (`queue::backend::RedisBackend`, its ack layer, a no-op handler), in a child process of this
//! benchmark; BullMQ's is `benches/peers/bullmq/bench.mjs` (installed with `npm ci` from its lockfile;
//! skipped with a message when Node.js is absent).
//!
//! - no-op jobs per second at concurrency 1, 10 and 50: 50,000 jobs queued first, rate from the
//!   1,000th job to the last one finished (BullMQ: its `completed` event; ours: the queue drained);
//! - 10,000 jobs due at one instant, added 5 s ahead to an idle worker (concurrency 50): lateness of
//!   each handler's start after the instant, p50 / p99 / max;
//! - a worker SIGKILLed mid-job and started again: time from the restart until the job runs again;
//! - an idle worker (concurrency 50): resident memory and CPU over 30 s;
//! - Redis CPU per job (`INFO cpu`, the server's own user + system time) and Redis commands per job
//!   (`INFO commandstats`, calls including those made inside scripts) during the throughput runs.
//!
//! Options (environment): `TP_PEERS_ROUNDS` (default 3), `TP_PEERS_JOBS` (default 50000),
//! `TP_PEERS_IDLE_SECS` (default 30).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tiktok_poster::db::Keys;
use tiktok_poster::queue::{BackendSettings, RedisBackend};
use tiktok_poster::queue::{Claim, JobStore, Next};

#[path = "../common/mod.rs"]
mod common;
use common::{TestRedis, env_num};

const NS: &str = "peers";

fn main() {
    if let Ok(mode) = std::env::var("TP_PEERS_MODE") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(child(&mode));
        return;
    }
    if !common::run_by_cargo_bench() {
        println!("peers benchmark: run it with `cargo bench --bench peers`");
        return;
    }
    parent();
}

// ---------------------------------------------------------------------------------------------
// Our side (child process).

fn out(v: Value) {
    println!("{v}");
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

static COUNT: AtomicU64 = AtomicU64::new(0);
static T1000: OnceLock<Instant> = OnceLock::new();
static DUE_AT: AtomicU64 = AtomicU64::new(0);
static LATE: OnceLock<Mutex<Vec<i64>>> = OnceLock::new();

async fn noop(_c: Claim) -> Result<Next, apalis_core::error::BoxDynError> {
    if COUNT.fetch_add(1, Ordering::Relaxed) + 1 == 1000 {
        let _ = T1000.set(Instant::now());
    }
    Ok(Next::Done)
}

async fn late(_c: Claim) -> Result<Next, apalis_core::error::BoxDynError> {
    let l = now_ms() - DUE_AT.load(Ordering::Relaxed) as i64;
    LATE.get_or_init(Default::default).lock().unwrap().push(l);
    COUNT.fetch_add(1, Ordering::Relaxed);
    Ok(Next::Done)
}

async fn sleeper(_c: Claim) -> Result<Next, apalis_core::error::BoxDynError> {
    out(json!({"started": now_ms()}));
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(Next::Done)
}

async fn announce(_c: Claim) -> Result<Next, apalis_core::error::BoxDynError> {
    out(json!({"ran": now_ms()}));
    Ok(Next::Done)
}

async fn store(url: &str) -> (JobStore, tiktok_poster::db::Conn) {
    let conn = tiktok_poster::db::connect(url).await.unwrap();
    (JobStore::new(conn.clone(), Keys::new(NS)), conn)
}

/// Queues `n` jobs due at `at_ms` (a post hash each: the store claims only ids whose post exists).
async fn fill(conn: &mut tiktok_poster::db::Conn, n: u64, at_ms: i64) {
    let keys = Keys::new(NS);
    for start in (0..n).step_by(1000) {
        let mut p = redis::pipe();
        for i in start..(start + 1000).min(n) {
            p.cmd("HSET")
                .arg(format!("{}j{i}", keys.post_prefix()))
                .arg("i")
                .arg(i)
                .ignore();
            p.cmd("ZADD")
                .arg(keys.due())
                .arg(at_ms)
                .arg(format!("j{i}"))
                .ignore();
        }
        let _: () = p.query_async(conn).await.unwrap();
    }
}

/// Runs the daemon's apalis worker over our store with `handler` until the process exits.
fn spawn_worker<F, Fut>(st: JobStore, id: &str, concurrency: usize, handler: F)
where
    F: Fn(Claim) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Next, apalis_core::error::BoxDynError>>
        + Send
        + 'static,
{
    use apalis::layers::WorkerBuilderExt;
    use apalis_core::worker::builder::WorkerBuilder;
    let backend = RedisBackend::new(
        st,
        BackendSettings {
            worker_id: id.to_string(),
            max_inflight: concurrency,
            lease: Duration::from_secs(30),
            idle_poll: Duration::from_millis(250),
        },
        Arc::default(),
    );
    let worker = WorkerBuilder::new(id)
        .backend(backend)
        .concurrency(concurrency)
        .build(handler);
    tokio::spawn(async move {
        let _ = worker.run().await;
    });
}

async fn child(mode: &str) {
    let url = std::env::var("TP_PEERS_REDIS").unwrap();
    let args: Vec<u64> = std::env::var("TP_PEERS_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(|a| a.parse().unwrap())
        .collect();
    let (st, mut conn) = store(&url).await;
    match mode {
        "fill" => {
            fill(&mut conn, args[0], now_ms()).await;
            out(json!({"filled": args[0]}));
        }
        "work" => {
            let (c, n) = (args[0] as usize, args[1]);
            spawn_worker(st.clone(), "bench", c, noop);
            while COUNT.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // Finished = acknowledged: until the store holds nothing.
            while st.depth().await.unwrap() != (0, 0) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let secs = T1000.get().unwrap().elapsed().as_secs_f64();
            out(json!({"jobs": n - 1000, "secs": secs, "rate": (n - 1000) as f64 / secs}));
        }
        "burst-worker" => {
            let (c, n, t) = (args[0] as usize, args[1], args[2]);
            DUE_AT.store(t, Ordering::Relaxed);
            spawn_worker(st, "bench", c, late);
            out(json!({"ready": true}));
            while COUNT.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let l = LATE.get().unwrap().lock().unwrap().clone();
            out(json!({"late": l}));
        }
        "burst-produce" => {
            fill(&mut conn, args[0], args[1] as i64).await;
            out(json!({"produced": args[0]}));
        }
        "idle" => {
            spawn_worker(st, "bench", args[0] as usize, noop);
            out(json!({"ready": true}));
            std::future::pending::<()>().await;
        }
        "victim" => {
            spawn_worker(st, "victim", 1, sleeper);
            std::future::pending::<()>().await;
        }
        "rescuer" => {
            // What the daemon does at start-up with its stable id: take back what its crashed
            // predecessor held, then work.
            tiktok_poster::queue::reclaim_own(conn.clone(), &Keys::new(NS), "victim")
                .await
                .unwrap();
            spawn_worker(st, "victim", 1, announce);
            out(json!({"ready": true}));
            std::future::pending::<()>().await;
        }
        other => panic!("unknown mode {other}"),
    }
    std::process::exit(0);
}

// ---------------------------------------------------------------------------------------------
// The runner.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Ours,
    BullMq,
}

struct Env {
    me: PathBuf,
    node_dir: PathBuf,
    node: bool,
}

impl Env {
    fn spawn(&self, side: Side, mode: &str, args: &[u64], redis_port: u16) -> Child {
        let mut cmd = match side {
            Side::Ours => {
                let mut c = Command::new(&self.me);
                c.env("TP_PEERS_MODE", mode)
                    .env(
                        "TP_PEERS_ARGS",
                        args.iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                    .env("TP_PEERS_REDIS", format!("redis://127.0.0.1:{redis_port}"));
                c
            }
            Side::BullMq => {
                let mut c = Command::new("node");
                c.current_dir(&self.node_dir)
                    .arg("bench.mjs")
                    .arg(mode)
                    .args(args.iter().map(u64::to_string))
                    .env("REDIS_PORT", redis_port.to_string());
                c
            }
        };
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

/// The next JSON line of a child, with a timeout.
fn line(child: &mut Child, timeout: Duration) -> Option<Value> {
    let stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut l = String::new();
            match r.read_line(&mut l) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&l)
                        && tx.send(v).is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    // Keep the receiver reachable for later lines.
    let v = rx.recv_timeout(timeout).ok();
    LINES.with(|l| l.borrow_mut().insert(child.id(), rx));
    v
}

thread_local! {
    static LINES: std::cell::RefCell<std::collections::HashMap<u32, std::sync::mpsc::Receiver<Value>>> = Default::default();
}

fn next_line(child: &Child, timeout: Duration) -> Option<Value> {
    LINES.with(|l| {
        l.borrow()
            .get(&child.id())
            .and_then(|rx| rx.recv_timeout(timeout).ok())
    })
}

fn run_to_end(mut child: Child, timeout: Duration) -> Value {
    let v = line(&mut child, timeout).expect("a result line");
    let _ = child.wait();
    v
}

struct RedisInfo {
    port: u16,
    conn: redis::Connection,
}

impl RedisInfo {
    fn reset(&mut self) {
        let _: () = redis::cmd("FLUSHALL").query(&mut self.conn).unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut self.conn)
            .unwrap();
    }
    /// (CPU seconds used by the server, commands executed).
    fn usage(&mut self) -> (f64, u64) {
        let info: String = redis::cmd("INFO").arg("all").query(&mut self.conn).unwrap();
        let mut cpu = 0.0;
        let mut calls = 0u64;
        for l in info.lines() {
            if let Some(v) = l
                .strip_prefix("used_cpu_sys:")
                .or_else(|| l.strip_prefix("used_cpu_user:"))
            {
                cpu += v.trim().parse::<f64>().unwrap_or(0.0);
            }
            if l.starts_with("cmdstat_")
                && !l.starts_with("cmdstat_info:")
                && !l.starts_with("cmdstat_config")
                && !l.starts_with("cmdstat_flushall")
                && let Some(c) = l.split("calls=").nth(1).and_then(|r| r.split(',').next())
            {
                calls += c.parse::<u64>().unwrap_or(0);
            }
        }
        (cpu, calls)
    }
}

fn fresh_redis() -> (TestRedis, RedisInfo) {
    let redis = TestRedis::start(false);
    let conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let port = redis.port;
    (redis, RedisInfo { port, conn })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn proc_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(i) = stat.rfind(')') else { return 0.0 };
    let f: Vec<&str> = stat[i + 2..].split_whitespace().collect();
    (f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)) as f64 / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    common::proc_status_kib(&pid.to_string(), "VmRSS:") as f64 / 1024.0
}

fn parent() {
    let rounds = env_num("TP_PEERS_ROUNDS", 3usize);
    let jobs = env_num("TP_PEERS_JOBS", 50_000u64);
    let idle_secs = env_num("TP_PEERS_IDLE_SECS", 30u64);
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/bullmq");
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut sides = vec![Side::Ours];
    if node {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&node_dir)
            .status();
        if st.is_ok_and(|s| s.success()) {
            sides.push(Side::BullMq);
        } else {
            println!("npm ci failed in {}: BullMQ is skipped", node_dir.display());
        }
    } else {
        println!(
            "Node.js is not installed: BullMQ is skipped (apt-get install nodejs npm to compare)"
        );
    }
    let env = Env {
        me: std::env::current_exe().unwrap(),
        node_dir,
        node,
    };
    let order = |round: usize| -> Vec<Side> {
        let mut s = sides.clone();
        if round % 2 == 1 {
            s.reverse();
        }
        s
    };
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let fmt_ratio = |ours: f64, theirs: f64| {
        if theirs.is_nan() || theirs == 0.0 {
            "-".to_string()
        } else {
            format!("{:.2}", ours / theirs)
        }
    };

    // 1. Throughput.
    for conc in [1u64, 10, 50] {
        let mut rate: [Vec<f64>; 2] = Default::default();
        let mut cpu_per_job: [Vec<f64>; 2] = Default::default();
        let mut calls_per_job: [Vec<f64>; 2] = Default::default();
        for round in 0..rounds {
            let (_redis, mut info) = fresh_redis();
            for side in order(round) {
                info.reset();
                run_to_end(
                    env.spawn(side, "fill", &[jobs], info.port),
                    Duration::from_secs(120),
                );
                let (cpu0, calls0) = info.usage();
                let v = run_to_end(
                    env.spawn(side, "work", &[conc, jobs], info.port),
                    Duration::from_secs(600),
                );
                let (cpu1, calls1) = info.usage();
                let i = side as usize;
                rate[i].push(v["rate"].as_f64().unwrap());
                cpu_per_job[i].push((cpu1 - cpu0) * 1e6 / jobs as f64);
                calls_per_job[i].push((calls1 - calls0) as f64 / jobs as f64);
            }
        }
        let (o, b) = (median(&mut rate[0]), median(&mut rate[1]));
        println!(
            "throughput c={conc}: ours {:?} bullmq {:?}",
            rate[0], rate[1]
        );
        rows.push((
            format!("no-op jobs/s, concurrency {conc} (median of {rounds})"),
            format!("{o:.0}"),
            format!("{b:.0}"),
            fmt_ratio(o, b),
        ));
        let (oc, bc) = (median(&mut cpu_per_job[0]), median(&mut cpu_per_job[1]));
        rows.push((
            format!("Redis CPU per job, concurrency {conc} (µs)"),
            format!("{oc:.1}"),
            format!("{bc:.1}"),
            fmt_ratio(oc, bc),
        ));
        let (ok, bk) = (median(&mut calls_per_job[0]), median(&mut calls_per_job[1]));
        rows.push((
            format!("Redis commands per job, concurrency {conc}"),
            format!("{ok:.1}"),
            format!("{bk:.1}"),
            fmt_ratio(ok, bk),
        ));
    }

    // 2. Delayed burst.
    let n = 10_000u64;
    let mut p50: [Vec<f64>; 2] = Default::default();
    let mut p99: [Vec<f64>; 2] = Default::default();
    let mut max: [Vec<f64>; 2] = Default::default();
    for round in 0..rounds {
        let (_redis, mut info) = fresh_redis();
        for side in order(round) {
            info.reset();
            let t = (now_ms() + 5000) as u64;
            let mut w = env.spawn(side, "burst-worker", &[50, n, t], info.port);
            assert!(
                line(&mut w, Duration::from_secs(30)).is_some(),
                "worker ready"
            );
            run_to_end(
                env.spawn(side, "burst-produce", &[n, t], info.port),
                Duration::from_secs(60),
            );
            let v = next_line(&w, Duration::from_secs(120)).expect("burst result");
            let _ = w.wait();
            let mut l: Vec<i64> = v["late"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            l.sort();
            assert_eq!(l.len() as u64, n);
            let i = side as usize;
            p50[i].push(pct(&l, 0.5) as f64);
            p99[i].push(pct(&l, 0.99) as f64);
            max[i].push(*l.last().unwrap() as f64);
            println!(
                "burst {side:?}: p50 {} p99 {} max {} ms",
                pct(&l, 0.5),
                pct(&l, 0.99),
                l.last().unwrap()
            );
        }
    }
    for (name, v) in [
        ("p50", &mut p50),
        ("p99", &mut p99),
        ("max (all started)", &mut max),
    ] {
        let (o, b) = (median(&mut v[0]), median(&mut v[1]));
        rows.push((
            format!("10,000 jobs due at one instant: lateness {name} (ms)"),
            format!("{o:.0}"),
            format!("{b:.0}"),
            fmt_ratio(o, b),
        ));
    }

    // 3. Kill and restart.
    let mut back: [Vec<f64>; 2] = Default::default();
    for round in 0..rounds.min(2) {
        let (_redis, mut info) = fresh_redis();
        for side in order(round) {
            info.reset();
            let mut victim = env.spawn(side, "victim", &[], info.port);
            run_to_end(
                env.spawn(side, "fill", &[1], info.port),
                Duration::from_secs(30),
            );
            line(&mut victim, Duration::from_secs(30)).expect("the victim started the job");
            std::thread::sleep(Duration::from_millis(500));
            let _ = victim.kill();
            let _ = victim.wait();
            let restarted = now_ms();
            let mut rescuer = env.spawn(side, "rescuer", &[], info.port);
            let _ready = line(&mut rescuer, Duration::from_secs(30));
            let ran = next_line(&rescuer, Duration::from_secs(120));
            let _ = rescuer.kill();
            let _ = rescuer.wait();
            let secs = ran.map_or(f64::NAN, |v| {
                (v["ran"].as_i64().unwrap() - restarted) as f64 / 1000.0
            });
            println!("kill {side:?}: back in flight {secs:.3} s after the restart");
            back[side as usize].push(secs);
        }
    }
    let (o, b) = (median(&mut back[0]), median(&mut back[1]));
    rows.push((
        "a worker SIGKILLed mid-job: restart until the job runs again (s)".into(),
        format!("{o:.3}"),
        format!("{b:.1}"),
        fmt_ratio(o, b),
    ));

    // 4. Idle.
    let mut rss: [Vec<f64>; 2] = Default::default();
    let mut cpu: [Vec<f64>; 2] = Default::default();
    for round in 0..rounds.min(2) {
        let (_redis, mut info) = fresh_redis();
        for side in order(round) {
            info.reset();
            let mut w = env.spawn(side, "idle", &[50], info.port);
            line(&mut w, Duration::from_secs(30)).expect("idle worker ready");
            std::thread::sleep(Duration::from_secs(5));
            let c0 = proc_cpu_secs(w.id());
            std::thread::sleep(Duration::from_secs(idle_secs));
            let c1 = proc_cpu_secs(w.id());
            rss[side as usize].push(rss_mib(w.id()));
            cpu[side as usize].push((c1 - c0) / idle_secs as f64 * 100.0);
            let _ = w.kill();
            let _ = w.wait();
        }
    }
    let (o, b) = (median(&mut rss[0]), median(&mut rss[1]));
    rows.push((
        format!("idle worker (concurrency 50) resident memory after {idle_secs} s (MiB)"),
        format!("{o:.1}"),
        format!("{b:.1}"),
        fmt_ratio(o, b),
    ));
    let (o, b) = (median(&mut cpu[0]), median(&mut cpu[1]));
    rows.push((
        format!("idle worker CPU over {idle_secs} s (% of one core)"),
        format!("{o:.2}"),
        format!("{b:.2}"),
        fmt_ratio(o, b),
    ));

    println!();
    println!("| figure | tiktok-poster job store | BullMQ 6.7.0 | ratio (ours / BullMQ) |");
    println!("|---|---:|---:|---:|");
    for (a, b, c, d) in rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
    let _ = env.node;
}
