//! `cargo bench --bench peers`: our job store against BullMQ 6.7, side by side in one run.
//!
//! Each measurement runs both sides over several rounds, every round on one fresh `redis-server` of
//! its own (flushed and its statistics reset between the sides). The order within a round is
//! counterbalanced, A B B A, A B B A, … (each side first equally often over every two rounds; with an
//! odd count the header says which went first once more). Every figure is printed per round as the
//! ratio of the two sides measured in that round, and the table gives each side's median and the
//! median of the per-round ratios with their min and max. Our side is this crate's job store behind
//! apalis, exactly as the daemon drives it (`queue::backend::RedisBackend`, its ack layer, a no-op
//! handler), in a child process of this benchmark; BullMQ's is `benches/peers/bullmq/bench.mjs`
//! (installed with `npm ci` from its lockfile; skipped with a message when Node.js is absent).
//!
//! - no-op jobs per second at concurrency 1, 10 and 50: 50,000 jobs queued first; both sides time
//!   the same window inside the worker process, from the 1,000th handler entry to the last job
//!   acknowledged in Redis (BullMQ: its `completed` event; ours: the store empty), so neither
//!   includes process start;
//! - 10,000 jobs due at one instant, added 5 s ahead to an idle worker (concurrency 50): lateness of
//!   each handler's entry after the instant, p50 / p99 / max;
//! - a worker SIGKILLed mid-job and started again: time from just before the new process is spawned
//!   (process start included on both sides) until its handler runs the job;
//! - an idle worker (concurrency 50): resident memory and CPU over 30 s, from 5 s after it is ready;
//! - Redis CPU per job (`INFO cpu`, the server's own user + system time) and Redis commands per job
//!   (`INFO commandstats`, calls including those made inside scripts) around the whole worker process
//!   of each throughput run (connection and start-up included on both sides).
//!
//! Options (environment): `TP_PEERS_ROUNDS` (default 5), `TP_PEERS_JOBS` (default 50000),
//! `TP_PEERS_BURST` (default 10000), `TP_PEERS_IDLE_SECS` (default 30); `TP_PEERS_SHORT=1` for a
//! quick look (2 rounds, 5,000 jobs, a burst of 2,000, 5 s idle; any option above still wins).

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
use common::{Ratios, TestRedis, env_num};

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

fn pct(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn rss_mib(pid: u32) -> f64 {
    common::proc_status_kib(&pid.to_string(), "VmRSS:") as f64 / 1024.0
}

/// One figure measured on both sides every round: the values and the per-round ratios.
struct Figure {
    name: String,
    /// Decimals to print the values with.
    decimals: usize,
    values: [Vec<f64>; 2],
    ratios: Ratios,
}

impl Figure {
    fn new(name: impl Into<String>, decimals: usize) -> Self {
        Self {
            name: name.into(),
            decimals,
            values: Default::default(),
            ratios: Ratios::default(),
        }
    }

    /// Records one round: each side's value (NaN for a side that did not run).
    fn round(&mut self, ours: f64, theirs: f64) {
        self.values[0].push(ours);
        self.values[1].push(theirs);
        self.ratios.push(ours, theirs);
    }

    /// Prints the round's per-round ratios so far, as the run goes.
    fn print_rounds(&self) {
        println!("  {}: per-round ratios {}", self.name, self.ratios.rounds());
    }

    fn row(&self) -> String {
        let d = self.decimals;
        let side = |v: &[f64]| {
            let m = common::median(v);
            if m.is_nan() {
                "-".to_string()
            } else {
                format!("{m:.d$}")
            }
        };
        format!(
            "| {} | {} | {} | {} | {} |",
            self.name,
            side(&self.values[0]),
            side(&self.values[1]),
            self.ratios.summary(),
            self.ratios.rounds()
        )
    }
}

fn parent() {
    common::print_cpu("peers");
    let short = std::env::var("TP_PEERS_SHORT").is_ok_and(|v| v == "1");
    let rounds = env_num("TP_PEERS_ROUNDS", if short { 2 } else { 5usize });
    let jobs = env_num("TP_PEERS_JOBS", if short { 5_000 } else { 50_000u64 });
    let burst_n = env_num("TP_PEERS_BURST", if short { 2_000 } else { 10_000u64 });
    let idle_secs = env_num("TP_PEERS_IDLE_SECS", if short { 5 } else { 30u64 });
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/bullmq");
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut bullmq = false;
    if node {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&node_dir)
            .status();
        if st.is_ok_and(|s| s.success()) {
            bullmq = true;
        } else {
            println!("npm ci failed in {}: BullMQ is skipped", node_dir.display());
        }
    } else {
        println!(
            "Node.js is not installed: BullMQ is skipped (apt-get install nodejs npm to compare)"
        );
    }
    println!("{}", common::order_note(rounds));
    let env = Env {
        me: std::env::current_exe().unwrap(),
        node_dir,
    };
    // The sides of a round, in the counterbalanced order.
    let order = |round: usize| -> Vec<Side> {
        match (bullmq, common::ours_first(round)) {
            (false, _) => vec![Side::Ours],
            (true, true) => vec![Side::Ours, Side::BullMq],
            (true, false) => vec![Side::BullMq, Side::Ours],
        }
    };
    let mut figures: Vec<Figure> = Vec::new();

    // 1. Throughput. Both sides: from the 1,000th handler entry to the last job acknowledged in
    // Redis, inside the worker process (process start and connection excluded on both).
    for conc in [1u64, 10, 50] {
        let mut rate = Figure::new(
            format!(
                "no-op jobs/s, concurrency {conc} ({} jobs after 1,000 of warm-up)",
                jobs - 1000
            ),
            0,
        );
        let mut cpu = Figure::new(format!("Redis CPU per job, concurrency {conc} (µs)"), 1);
        let mut calls = Figure::new(format!("Redis commands per job, concurrency {conc}"), 1);
        for round in 0..rounds {
            let (_redis, mut info) = fresh_redis();
            let mut got = [[f64::NAN; 3]; 2];
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
                got[side as usize] = [
                    v["rate"].as_f64().unwrap(),
                    (cpu1 - cpu0) * 1e6 / jobs as f64,
                    (calls1 - calls0) as f64 / jobs as f64,
                ];
            }
            println!(
                "throughput c={conc} round {} ({:?} first): ours {:.0} jobs/s, BullMQ {:.0}",
                round + 1,
                order(round)[0],
                got[0][0],
                got[1][0]
            );
            rate.round(got[0][0], got[1][0]);
            cpu.round(got[0][1], got[1][1]);
            calls.round(got[0][2], got[1][2]);
        }
        for f in [rate, cpu, calls] {
            f.print_rounds();
            figures.push(f);
        }
    }

    // 2. Delayed burst: each handler's entry against the due instant, on both sides.
    let mut burst = [
        Figure::new(
            format!("{burst_n} jobs due at one instant: lateness p50 (ms)"),
            0,
        ),
        Figure::new(
            format!("{burst_n} jobs due at one instant: lateness p99 (ms)"),
            0,
        ),
        Figure::new(
            format!("{burst_n} jobs due at one instant: lateness max, all started (ms)"),
            0,
        ),
    ];
    for round in 0..rounds {
        let (_redis, mut info) = fresh_redis();
        let mut got = [[f64::NAN; 3]; 2];
        for side in order(round) {
            info.reset();
            let t = (now_ms() + 5000) as u64;
            let mut w = env.spawn(side, "burst-worker", &[50, burst_n, t], info.port);
            assert!(
                line(&mut w, Duration::from_secs(30)).is_some(),
                "worker ready"
            );
            run_to_end(
                env.spawn(side, "burst-produce", &[burst_n, t], info.port),
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
            assert_eq!(l.len() as u64, burst_n);
            println!(
                "burst round {} {side:?}: p50 {} p99 {} max {} ms",
                round + 1,
                pct(&l, 0.5),
                pct(&l, 0.99),
                l.last().unwrap()
            );
            got[side as usize] = [
                pct(&l, 0.5) as f64,
                pct(&l, 0.99) as f64,
                *l.last().unwrap() as f64,
            ];
        }
        for (k, f) in burst.iter_mut().enumerate() {
            f.round(got[0][k], got[1][k]);
        }
    }
    for f in burst {
        f.print_rounds();
        figures.push(f);
    }

    // 3. Kill and restart: both sides from just before the new process is spawned (process start
    // included on both) to its handler's entry.
    let mut back = Figure::new(
        "a worker SIGKILLed mid-job: restart until the job runs again (s)",
        3,
    );
    for round in 0..rounds {
        let (_redis, mut info) = fresh_redis();
        let mut got = [f64::NAN; 2];
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
            println!(
                "kill round {} {side:?}: back in flight {secs:.3} s after the restart",
                round + 1
            );
            got[side as usize] = secs;
        }
        back.round(got[0], got[1]);
    }
    back.print_rounds();
    figures.push(back);

    // 4. Idle: both sides from 5 s after the worker said it was ready, over the same span.
    let mut rss = Figure::new(
        format!("idle worker (concurrency 50) resident memory after {idle_secs} s (MiB)"),
        1,
    );
    let mut cpu = Figure::new(
        format!("idle worker CPU over {idle_secs} s (% of one core)"),
        2,
    );
    for round in 0..rounds {
        let (_redis, mut info) = fresh_redis();
        let mut got = [[f64::NAN; 2]; 2];
        for side in order(round) {
            info.reset();
            let mut w = env.spawn(side, "idle", &[50], info.port);
            line(&mut w, Duration::from_secs(30)).expect("idle worker ready");
            std::thread::sleep(Duration::from_secs(5));
            let c0 = common::proc_cpu_secs(w.id());
            std::thread::sleep(Duration::from_secs(idle_secs));
            let c1 = common::proc_cpu_secs(w.id());
            got[side as usize] = [rss_mib(w.id()), (c1 - c0) / idle_secs as f64 * 100.0];
            let _ = w.kill();
            let _ = w.wait();
        }
        rss.round(got[0][0], got[1][0]);
        cpu.round(got[0][1], got[1][1]);
    }
    for f in [rss, cpu] {
        f.print_rounds();
        figures.push(f);
    }

    println!();
    println!(
        "| figure | tiktok-poster job store (median of {rounds}) | BullMQ 6.7.0 (median of {rounds}) | ratio ours / BullMQ: median of the per-round ratios (min, max) | per-round ratios |"
    );
    println!("|---|---:|---:|---:|---|");
    for f in &figures {
        println!("{}", f.row());
    }
}
