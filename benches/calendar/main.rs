//! `cargo bench --bench calendar`: "add to queue" (`slot` = `next`) against plain `publish_at`, and the
//! calendar page of a full week (issue 13).
//!
//! Starts the simulator (`tiktok-poster sim`) once and obtains one grant per account from its OAuth
//! endpoints. Then, for every side of every round, a `redis-server` of its own (so nothing piles up
//! between sides or rounds), the accounts saved by the account store (`Accounts::save_grant`, as
//! `accounts connect` does) with those grants, a calendar per account set through
//! `Calendars::set` (3 slots a day, `0 9,13,18 * * *`, in a few zones whose next slot is hours away,
//! so nothing is published during the run), and the release daemon (`tiktok-poster run`). Then it
//! `XADD`s the side's submissions to the submit stream (10 per account, interleaved over the
//! accounts): side A with `slot` = `next`, side B with `publish_at` 30 days ahead. Rounds alternate
//! which side goes first (A then B in even rounds, B then A in odd ones).
//!
//! Each side is timed from its first `XADD` (the first entry id's ms) to the last post recorded (the
//! largest `created_ms`); both clocks are this machine's. While a side runs the bench reads only the
//! `state_counts` hash and the rejected stream's length, every 200 ms. The per-post latency is the
//! post's `created_ms` minus its entry id's ms. Printed: the CPU model, every side of every round, the
//! per-round ratios A/B and their median, min and max, and the latency percentiles.
//!
//! The page: one account with 500 fixed-time posts spread over next week (recorded through the
//! submit stream), `GET /calendar?account=X&week=DATE` over HTTP: 5 warm-ups, then 50 timed requests
//! one after another; median and p99, and a check that the answer holds all 500 titles.
//!
//! Options (environment): `TP_BENCH_SHORT=1` (1,000 accounts, 5,000 submissions a side, 2 rounds),
//! `TP_CAL_ACCOUNTS`, `TP_CAL_PER_ACCOUNT`, `TP_CAL_ROUNDS` (defaults 10000, 10, 6).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{Datelike, TimeZone, Utc};
use futures_util::StreamExt;
use redis::AsyncCommands;
use tiktok_poster::accounts::{Accounts, TokenKey};
use tiktok_poster::calendar::CalendarSettings;
use tiktok_poster::db::Keys;
use tiktok_poster::planner::Calendars;
use tiktok_poster::posts::Ledger;
use tiktok_poster::tiktok::{Client, TokenSet};

#[path = "../common/mod.rs"]
mod common;
use common::{GOOD_MP4, Proc, TestRedis, bench_client, env_num, free_port, start_sim};

/// The slots of every calendar: 3 a day.
const SLOTS: &str = "0 9,13,18 * * *";
/// Zones tried, in order; the first four whose next slot is at least [`MARGIN`] away are used.
const ZONES: &[&str] = &[
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Europe/London",
    "Asia/Singapore",
    "Pacific/Auckland",
    "Africa/Nairobi",
    "America/Chicago",
];
/// How far away the next slot of a zone must be: longer than the whole run.
const MARGIN: chrono::Duration = chrono::Duration::hours(2);
/// The namespace the daemon uses (its default).
const NS: &str = "tiktok-poster";
/// Posts on the page's week.
const PAGE_POSTS: usize = 500;

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn pct_f(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// The median: the mean of the two middle values for an even count.
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn main() {
    if !common::run_by_cargo_bench() {
        println!("calendar benchmark: run it with `cargo bench --bench calendar`");
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}

/// What every side shares: the simulator, the grants, the token key, the video, the zones.
struct Setup {
    dir: tempfile::TempDir,
    key_path: PathBuf,
    video: PathBuf,
    sim_base: String,
    client: Client,
    grants: Vec<TokenSet>,
    zones: Vec<&'static str>,
}

/// One side's figures.
struct SideRun {
    rate: f64,
    window_s: f64,
    latencies: Vec<i64>,
    rejected: u64,
    /// The daemon's CPU (user + system) per submission over the side, µs.
    daemon_cpu_us: f64,
    /// Redis's CPU per submission over the side, µs (the bench's own XADDs and polls included).
    redis_cpu_us: f64,
    /// Time inside the recording script per submission, µs (Redis's `commandstats`).
    script_us: f64,
}

/// A process's user + system CPU so far, in seconds (`/proc/PID/stat`, 100 ticks a second).
fn proc_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// Redis's CPU so far (s) and the time spent in scripts (`evalsha`, µs), from `INFO`.
async fn redis_cpu(conn: &mut redis::aio::MultiplexedConnection) -> (f64, f64) {
    let info: String = redis::cmd("INFO")
        .arg("everything")
        .query_async(conn)
        .await
        .unwrap();
    let mut cpu = 0.0;
    let mut script = 0.0;
    for line in info.lines() {
        if let Some(v) = line
            .strip_prefix("used_cpu_user:")
            .or_else(|| line.strip_prefix("used_cpu_sys:"))
        {
            cpu += v.trim().parse::<f64>().unwrap_or(0.0);
        }
        if let Some(rest) = line.strip_prefix("cmdstat_evalsha:") {
            script += rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("usec="))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    (cpu, script)
}

async fn run() {
    let short = std::env::var("TP_BENCH_SHORT").is_ok_and(|v| v == "1");
    let (d_accounts, d_per, d_rounds) = if short { (1000, 5, 2) } else { (10_000, 10, 6) };
    let n_accounts: usize = env_num("TP_CAL_ACCOUNTS", d_accounts);
    let per_account: usize = env_num("TP_CAL_PER_ACCOUNT", d_per);
    let rounds: usize = env_num("TP_CAL_ROUNDS", d_rounds);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("CPU: {} ({cores} cores)", common::cpu_model());
    println!(
        "accounts {n_accounts}, submissions per side {}, rounds {rounds}{}",
        n_accounts * per_account,
        if short { " (TP_BENCH_SHORT)" } else { "" }
    );

    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("token.key");
    TokenKey::generate_file(&key_path).unwrap();
    let video = dir.path().join("tiny.mp4");
    std::fs::copy(GOOD_MP4, &video).unwrap();
    let (_sim, sim_base) = start_sim(&["--publish-delay-ms", "0"]);
    let client = bench_client(&sim_base);
    let started = Instant::now();
    let grants = grants(&client, n_accounts.max(1)).await;
    println!(
        "obtained {} grants through the simulator's OAuth in {:.1} s",
        grants.len(),
        started.elapsed().as_secs_f64()
    );
    let zones = pick_zones();
    println!("zones (next slot at least {MARGIN} away): {zones:?}");
    let setup = Setup {
        dir,
        key_path,
        video,
        sim_base,
        client,
        grants,
        zones,
    };

    let mut ratios = Vec::new();
    let mut lat_a = Vec::new();
    let mut lat_b = Vec::new();
    println!();
    println!(
        "| round | order | A slot=next / s | B publish_at / s | A/B | A window s | B window s | daemon CPU µs/sub A / B | Redis CPU µs/sub A / B | script µs/sub A / B |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in 0..rounds {
        let a_first = r % 2 == 0;
        let (first, second) = (a_first, !a_first);
        let one = side(&setup, first, n_accounts, per_account).await;
        let two = side(&setup, second, n_accounts, per_account).await;
        let (a, b) = if a_first { (one, two) } else { (two, one) };
        assert_eq!(a.rejected + b.rejected, 0, "submissions were rejected");
        let ratio = a.rate / b.rate;
        ratios.push(ratio);
        println!(
            "| {} | {} | {:.0} | {:.0} | {ratio:.3} | {:.2} | {:.2} | {:.0} / {:.0} | {:.0} / {:.0} | {:.1} / {:.1} |",
            r + 1,
            if a_first { "A, B" } else { "B, A" },
            a.rate,
            b.rate,
            a.window_s,
            b.window_s,
            a.daemon_cpu_us,
            b.daemon_cpu_us,
            a.redis_cpu_us,
            b.redis_cpu_us,
            a.script_us,
            b.script_us
        );
        lat_a.extend(a.latencies);
        lat_b.extend(b.latencies);
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    lat_a.sort_unstable();
    lat_b.sort_unstable();
    println!();
    println!(
        "per-round ratios A/B: {}",
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "ratio A/B median {:.3}, min {:.3}, max {:.3} (target >= 0.8)",
        median(&sorted),
        pct_f(&sorted, 0.0),
        pct_f(&sorted, 1.0)
    );
    println!(
        "XADD to recorded, A slot=next: p50 {} ms, p99 {} ms, max {} ms (all rounds)",
        pct(&lat_a, 0.5),
        pct(&lat_a, 0.99),
        pct(&lat_a, 1.0)
    );
    println!(
        "XADD to recorded, B publish_at: p50 {} ms, p99 {} ms, max {} ms (all rounds)",
        pct(&lat_b, 0.5),
        pct(&lat_b, 0.99),
        pct(&lat_b, 1.0)
    );
    println!();
    page(&setup).await;
}

/// One grant per account, from the simulator's own OAuth (authorize, then the code exchange).
async fn grants(client: &Client, n: usize) -> Vec<TokenSet> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let (client, http) = (client.clone(), http.clone());
            async move {
                common::connect(&client, &http, &format!("cal{i}"), false)
                    .await
                    .unwrap_or_else(|e| panic!("grant {i}: {e}"))
            }
        })
        .buffered(32)
        .collect()
        .await
}

/// Zones whose next slot is at least [`MARGIN`] away, so no post is due during the run.
fn pick_zones() -> Vec<&'static str> {
    let now = Utc::now();
    let zones: Vec<&'static str> = ZONES
        .iter()
        .copied()
        .filter(|z| {
            let s = settings(z).schedule().unwrap();
            s.instants_from(now)
                .next()
                .is_some_and(|t| t - now >= MARGIN)
        })
        .take(4)
        .collect();
    assert!(!zones.is_empty(), "no zone has its next slot {MARGIN} away");
    zones
}

fn settings(zone: &str) -> CalendarSettings {
    CalendarSettings {
        zone: zone.to_string(),
        slots: vec![SLOTS.to_string()],
        min_spacing: Duration::from_secs(15 * 60),
        horizon_days: 60,
        daily_budget: 15,
        paused_ms: None,
        updated_ms: 0,
        version: 0,
    }
}

/// A fresh Redis with accounts `a0`… (grants `0..n`) and their calendars, and a daemon on it.
async fn world(s: &Setup, n: usize) -> (TestRedis, Proc, u16) {
    let started = Instant::now();
    let redis = TestRedis::start(false);
    let manager = tiktok_poster::db::connect(&redis.url()).await.unwrap();
    let keys = Keys::new(NS);
    let key = TokenKey::load(&s.key_path).unwrap();
    let accounts = Accounts::new(manager.clone(), keys.clone(), key, s.client.clone());
    let calendars = Calendars::new(
        Ledger::new(manager, keys),
        accounts.clone(),
        15,
        tiktok_poster::config::WarmupSettings {
            enabled: false,
            ..Default::default()
        },
    );
    futures_util::stream::iter(0..n)
        .map(|i| {
            let (accounts, calendars) = (accounts.clone(), calendars.clone());
            let zone = s.zones[i % s.zones.len()];
            let grant = &s.grants[i];
            async move {
                let name = format!("a{i}");
                accounts
                    .save_grant(&name, grant, &format!("cal{i}"))
                    .await
                    .unwrap();
                calendars.set(&name, settings(zone)).await.unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    let port = free_port();
    let config = s.dir.path().join(format!("config-{port}.toml"));
    std::fs::write(
        &config,
        format!(
            "[redis]\nurl = \"{}\"\n[tiktok]\nclient_key = \"bench\"\nclient_secret = \"bench\"\napi_base = \"{}\"\nauth_base = \"{}\"\nredirect_uri = \"http://127.0.0.1:{port}/oauth/callback\"\n\
[http]\nlisten = \"127.0.0.1:{port}\"\n[video]\nallowed_dirs = [\"{}\"]\n[tokens]\nencryption_key_file = \"{}\"\n[log]\nformat = \"text\"\nlevel = \"warn\"\n",
            redis.url(),
            s.sim_base,
            s.sim_base,
            s.dir.path().display(),
            s.key_path.display()
        ),
    )
    .unwrap();
    let daemon = common::start_daemon(&config, &s.dir.path().join(format!("daemon-{port}.log")));
    // Ready once ingest has made its consumer group (`MKSTREAM` creates the stream). Not
    // `/healthz`: it reads every account one by one within 1 s, which 10,000 accounts exceed.
    let conn = redis.conn().await;
    common::wait_until(Duration::from_secs(60), "the daemon's ingest group", || {
        let mut conn = conn.clone();
        async move {
            let n: i64 = conn.exists(format!("{NS}:submit")).await.ok()?;
            (n == 1).then_some(())
        }
    })
    .await;
    eprintln!(
        "world of {n} accounts ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (redis, daemon, port)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn entry_ms(id: &str) -> i64 {
    id.split('-')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// Waits (reading `state_counts` and the rejected stream's length every 200 ms) until `n` posts are
/// recorded or rejected; returns how many were rejected.
async fn wait_recorded(conn: &mut redis::aio::MultiplexedConnection, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let counts: HashMap<String, i64> =
            conn.hgetall(format!("{NS}:state_counts")).await.unwrap();
        let rejected: u64 = conn.xlen(format!("{NS}:rejected")).await.unwrap();
        let recorded: i64 = counts.values().sum();
        if u64::try_from(recorded).unwrap_or(0) + rejected >= n {
            return rejected;
        }
        assert!(
            Instant::now() < deadline,
            "only {recorded} of {n} recorded after 30 minutes"
        );
    }
}

/// One side: `slot` = `next` (A) or `publish_at` (B), in a world of its own.
async fn side(s: &Setup, slot_next: bool, n_accounts: usize, per_account: usize) -> SideRun {
    let (redis, daemon, _port) = world(s, n_accounts).await;
    let mut conn = redis.conn().await;
    let n = n_accounts * per_account;
    let base = Utc::now() + chrono::Duration::days(30);
    let mut entry_ids: Vec<String> = Vec::with_capacity(n);
    let daemon_pid = daemon.0.id();
    let daemon_cpu0 = proc_cpu_s(daemon_pid);
    let (redis_cpu0, script0) = redis_cpu(&mut conn).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            let id = format!("p{i}");
            let account = format!("a{}", i % n_accounts);
            let mut fields = vec![
                ("id", id.clone()),
                ("account", account),
                ("video", path(&s.video).to_string()),
                ("title", id.clone()),
                ("privacy_level", "SELF_ONLY".to_string()),
            ];
            if slot_next {
                fields.push(("slot", "next".to_string()));
            } else {
                let at = base + chrono::Duration::seconds(i as i64);
                fields.push((
                    "publish_at",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ));
            }
            pipe.xadd(format!("{NS}:submit"), "*", &fields);
        }
        let ids: Vec<String> = pipe.query_async(&mut conn).await.unwrap();
        entry_ids.extend(ids);
    }
    let rejected = wait_recorded(&mut conn, n as u64).await;
    let daemon_cpu = proc_cpu_s(daemon_pid) - daemon_cpu0;
    let (redis_cpu1, script1) = redis_cpu(&mut conn).await;
    let per = |v: f64| v / n.max(1) as f64;
    drop(daemon);
    let first = entry_ids.iter().map(|e| entry_ms(e)).min().unwrap_or(0);
    let mut latencies = Vec::with_capacity(n);
    let mut last = first;
    let mut slotted = 0usize;
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            pipe.cmd("HMGET")
                .arg(format!("{NS}:post:p{i}"))
                .arg("created_ms")
                .arg("slot_at");
        }
        let rows: Vec<(Option<i64>, Option<String>)> = pipe.query_async(&mut conn).await.unwrap();
        for (&i, (created, slot_at)) in chunk.iter().zip(rows) {
            let Some(created) = created else { continue };
            last = last.max(created);
            latencies.push(created - entry_ms(&entry_ids[i]));
            slotted += usize::from(slot_at.is_some_and(|t| !t.is_empty()));
        }
    }
    let expected_slotted = if slot_next { latencies.len() } else { 0 };
    assert_eq!(
        slotted,
        expected_slotted,
        "side {} posts with a slot",
        if slot_next { "A" } else { "B" }
    );
    if slot_next {
        check_distinct_slots(&mut conn, n_accounts, per_account).await;
    }
    let window_s = (last - first) as f64 / 1000.0;
    SideRun {
        rate: latencies.len() as f64 / window_s.max(0.001),
        window_s,
        latencies,
        rejected,
        daemon_cpu_us: per(daemon_cpu * 1e6),
        redis_cpu_us: per((redis_cpu1 - redis_cpu0) * 1e6),
        script_us: per(script1 - script0),
    }
}

/// Every account holds `per_account` distinct instants (the ledger's held sets), a sanity check
/// that side A did assign slots.
async fn check_distinct_slots(
    conn: &mut redis::aio::MultiplexedConnection,
    n_accounts: usize,
    per_account: usize,
) {
    let mut pipe = redis::pipe();
    for a in 0..n_accounts.min(100) {
        pipe.cmd("ZRANGE")
            .arg(format!("{NS}:held:a{a}"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
    }
    let sets: Vec<Vec<(String, i64)>> = pipe.query_async(conn).await.unwrap();
    for (a, set) in sets.iter().enumerate() {
        let mut at: Vec<i64> = set.iter().map(|(_, t)| *t).collect();
        at.dedup();
        assert_eq!(at.len(), per_account, "account a{a} holds distinct slots");
    }
}

/// The calendar page of a week holding [`PAGE_POSTS`] fixed-time posts.
async fn page(s: &Setup) {
    let (redis, _daemon, port) = world(s, 1).await;
    let mut conn = redis.conn().await;
    let zone: chrono_tz::Tz = s.zones[0].parse().unwrap();
    let day = (Utc::now() + chrono::Duration::days(7))
        .with_timezone(&zone)
        .date_naive();
    let monday = day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday()));
    let start = zone
        .from_local_datetime(&monday.and_hms_opt(0, 30, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc);
    // 500 posts 19 minutes apart: 158 hours, inside the week even when it is 167 hours long.
    let mut pipe = redis::pipe();
    for i in 0..PAGE_POSTS {
        let at = start + chrono::Duration::minutes(19 * i as i64);
        let id = format!("w{i}");
        let title = format!("weekpost-{i:04}-t");
        pipe.xadd(
            format!("{NS}:submit"),
            "*",
            &[
                ("id", id.as_str()),
                ("account", "a0"),
                ("video", path(&s.video)),
                ("title", title.as_str()),
                ("privacy_level", "SELF_ONLY"),
                (
                    "publish_at",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        .as_str(),
                ),
            ],
        )
        .ignore();
    }
    let _: () = pipe.query_async(&mut conn).await.unwrap();
    let rejected = wait_recorded(&mut conn, PAGE_POSTS as u64).await;
    assert_eq!(rejected, 0, "the page's posts were rejected");
    let url = format!("http://127.0.0.1:{port}/calendar?account=a0&week={monday}");
    let http = reqwest::Client::new();
    let mut body = String::new();
    let mut times = Vec::new();
    for i in 0..55 {
        let t = Instant::now();
        let resp = http.get(&url).send().await.unwrap();
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        body = resp.text().await.unwrap();
        if i >= 5 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let missing = (0..PAGE_POSTS)
        .filter(|i| !body.contains(&format!("weekpost-{i:04}-t")))
        .count();
    assert_eq!(missing, 0, "titles missing from the page");
    times.sort_by(f64::total_cmp);
    println!(
        "calendar page, week of {monday} in {} with {PAGE_POSTS} posts ({} bytes, all {PAGE_POSTS} titles present): median {:.2} ms, p99 {:.2} ms, max {:.2} ms over 50 requests after 5 warm-ups (target < 50 ms)",
        s.zones[0],
        body.len(),
        median(&times),
        pct_f(&times, 0.99),
        pct_f(&times, 1.0)
    );
}
