//! `cargo bench --bench soak`: a fault soak that checks the invariant at the end and exits non-zero on
//! any violation.
//!
//! Two daemons (release build, distinct `[worker] id`s) share one `redis-server` with append-only
//! persistence (`appendfsync always`), against `tiktok-poster sim` with background faults: 5xx and
//! dropped connections on a few percent of calls, occasional 429s, access tokens that live 60 s (so
//! refreshes run all along and some calls meet an expired token), and a daily cap of direct posts per
//! creator below the average an account gets (so `spam_risk_too_many_posts` comes back for busy
//! accounts; `TP_SOAK_DAILY_CAP` overrides it). 500 accounts. A producer
//! submits continuously with `XADD` (one in eight submissions malformed in one of ten ways, among
//! them a title that is not UTF-8, a `json` field with a repeated key, a video outside
//! `[video] allowed_dirs` and a crafted fragmented MP4 with millions of samples), and
//! retries an `XADD` whose answer was lost, as a careful producer would (the `id` makes that safe).
//! Daemon B is SIGKILLed and restarted every `TP_SOAK_KILL_SECS`, Redis is SIGKILLed and restarted
//! every `TP_SOAK_REDIS_SECS`; daemon A lives throughout and its memory is watched.
//!
//! At the end the producer stops, the daemons drain, and the run checks, against the simulator's own
//! record:
//! - every accepted submission is published exactly once (the simulator saw one completed post with its
//!   title, and the ledger says `published`), or deferred, or failed with a reason, and nothing the
//!   ledger does not show as published went live;
//! - every malformed submission is in the rejected stream with a reason;
//! - nothing is stuck (queued, uploading, processing) once the queue drained;
//! - daemon A's resident memory grew no more than 10% from the end of warm-up to the end (in a
//!   short run, from the largest reading during warm-up: see `rss_warmup_peak`).
//!
//! Options (environment): `TP_SOAK_SECS` (default 1200; CI runs 120), `TP_SOAK_RATE` (submissions per
//! second, default 4), `TP_SOAK_KILL_SECS` (default 120; 40 when the run is under 5 minutes),
//! `TP_SOAK_REDIS_SECS` (default 300; 60 when under 5 minutes).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use redis::AsyncCommands;

#[path = "../common/mod.rs"]
mod common;
#[path = "../../tests/it/crafted_mp4.rs"]
mod crafted_mp4;
use common::{
    GOOD_MP4, Proc, TestRedis, bench_client, connect_accounts, env_num, free_port, start_sim,
};

const ACCOUNTS: usize = 500;

fn main() {
    if !common::run_by_cargo_bench() {
        println!("soak: run it with `cargo bench --bench soak`");
        return;
    }
    let violations = tokio::runtime::Runtime::new().unwrap().block_on(run());
    if violations > 0 {
        eprintln!("soak: {violations} invariant violation(s)");
        std::process::exit(1);
    }
    println!("soak: no invariant violation");
}

fn start_daemon(bin: &str, config: &Path, log: &Path) -> Proc {
    Proc(
        Command::new(bin)
            .args(["--config", config.to_str().unwrap(), "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            ))
            .spawn()
            .unwrap(),
    )
}

fn rss_kib(pid: u32) -> u64 {
    common::proc_status_kib(&pid.to_string(), "VmRSS:")
}

/// XADD until Redis answers (it may be restarting); the entry id.
async fn xadd(client: &redis::Client, fields: &[(&str, Vec<u8>)]) -> String {
    loop {
        if let Ok(mut c) = client.get_multiplexed_async_connection().await {
            let r: redis::RedisResult<String> = c.xadd("tiktok-poster:submit", "*", fields).await;
            if let Ok(id) = r {
                return id;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn conn(client: &redis::Client) -> redis::aio::MultiplexedConnection {
    loop {
        if let Ok(c) = client.get_multiplexed_async_connection().await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run() -> usize {
    let secs = env_num("TP_SOAK_SECS", 1200u64);
    let rate = env_num("TP_SOAK_RATE", 4.0f64);
    let short = secs < 300;
    let kill_every = env_num("TP_SOAK_KILL_SECS", if short { 40 } else { 120u64 });
    let redis_every = env_num("TP_SOAK_REDIS_SECS", if short { 60 } else { 300u64 });
    // Memory is compared from the end of warm-up: half the run, at most 5 minutes (the 20-minute run
    // shows RSS flat after that). A daemon's first two minutes still grow its pools, so a short run
    // takes its baseline at two thirds.
    let warmup = if short {
        secs * 2 / 3
    } else {
        (secs / 2).clamp(30, 300)
    };
    // TikTok's per-creator daily cap, set below the posts an account gets on average (about 60% of
    // them), so busy accounts meet `spam_risk_too_many_posts` while most posts go out.
    let per_account = secs as f64 * rate * 7.0 / 8.0 / ACCOUNTS as f64;
    let cap = env_num(
        "TP_SOAK_DAILY_CAP",
        ((per_account * 0.6).ceil() as u64).max(2),
    );
    let cap_arg = cap.to_string();
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_tiktok-poster");
    // Append-only with fsync always: a SIGKILLed Redis comes back with every acknowledged write.
    let mut redis = TestRedis::start(true);
    let (_sim, sim_base) = start_sim(&[
        "--fault-5xx-rate",
        "0.03",
        "--fault-drop-rate",
        "0.02",
        "--fault-429-rate",
        "0.01",
        "--token-ttl",
        "60",
        "--daily-post-cap",
        &cap_arg,
        "--publish-delay-ms",
        "300",
    ]);
    let key_path = dir.path().join("token.key");
    // Connecting talks to the simulator's OAuth endpoints, which fail now and then on purpose.
    connect_accounts(
        &bench_client(&sim_base),
        &redis.url(),
        &key_path,
        ACCOUNTS,
        "soak",
    )
    .await;
    println!(
        "soak: {ACCOUNTS} accounts connected; running {secs} s at {rate}/s, daemon B killed every {kill_every} s, Redis every {redis_every} s, daily cap {cap} per creator"
    );

    let video = dir.path().join("v.mp4");
    std::fs::copy(GOOD_MP4, &video).unwrap();
    // Inside the daemons' allowed directory, so it is refused for its frame rate, not its place.
    let bad_path = dir.path().join("fps15.mp4");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/video/fps15.mp4"
        ),
        &bad_path,
    )
    .unwrap();
    let bad_video = bad_path.to_string_lossy().to_string();
    // A good video, but outside the daemons' allowed directory.
    let outside_dir = tempfile::tempdir().unwrap();
    let outside = outside_dir.path().join("outside.mp4");
    std::fs::copy(&video, &outside).unwrap();
    let outside = outside.to_string_lossy().to_string();
    // A crafted fragmented MP4 (millions of samples in its track runs), inside the allowed directory:
    // it once made the probe hold ten times its size; now it is refused for its claimed duration.
    let crafted = dir.path().join("crafted.mp4");
    crafted_mp4::write_fragmented(&crafted, 16 << 20);
    let crafted = crafted.to_string_lossy().to_string();

    let config = |name: &str| {
        let port = free_port();
        let p = dir.path().join(format!("config-{name}.toml"));
        std::fs::write(
            &p,
            format!(
                "[redis]\nurl = \"{}\"\n[tiktok]\nclient_key = \"soak\"\nclient_secret = \"soak\"\napi_base = \"{sim_base}\"\nauth_base = \"{sim_base}\"\nredirect_uri = \"http://127.0.0.1:{port}/oauth/callback\"\nrequest_timeout_secs = 5\n\
[http]\nlisten = \"127.0.0.1:{port}\"\n[worker]\nid = \"soak-{name}\"\nconcurrency = 16\nlease_secs = 5\nidle_poll_ms = 100\nbackoff_base_ms = 200\nbackoff_max_secs = 5\nstatus_interval_ms = 300\nmax_attempts = 20\ndaily_post_budget = 100\n[video]\nallowed_dirs = [\"{}\"]\n[tokens]\nencryption_key_file = \"{}\"\n[warmup]\nenabled = false\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
                redis.url(),
                dir.path().display(),
                key_path.display()
            ),
        )
        .unwrap();
        p
    };
    let (cfg_a, cfg_b) = (config("a"), config("b"));
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let daemon_a = start_daemon(bin, &cfg_a, &log_a);
    let mut daemon_b = start_daemon(bin, &cfg_b, &log_b);

    let client = redis::Client::open(redis.url()).unwrap();
    let started = Instant::now();
    let mut next_kill = Duration::from_secs(kill_every);
    let mut next_redis = Duration::from_secs(redis_every);
    let mut accepted: Vec<String> = Vec::new();
    let mut malformed: Vec<(String, &'static str)> = Vec::new(); // (entry id, kind)
    let mut kills = 0;
    let mut redis_restarts = 0;
    let mut rss_warm = None;
    // The largest RSS seen before the end of warm-up (sampled once a second), for the short run's
    // baseline: in a 2-minute run the warm-up ends 20 s after a Redis restart, and one reading there
    // varied from 15.0 to 18.7 MiB between runs of the same code (growth +13.6%, -1.0%, +6.5%), more
    // than the 10% bound. A leak still shows as growth past everything warm-up reached.
    let mut rss_warmup_peak = 0u64;
    let mut next_sample = Duration::ZERO;
    let mut n = 0u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let vpath = video.to_string_lossy().to_string();
    while started.elapsed() < Duration::from_secs(secs) {
        let el = started.elapsed();
        if el >= next_kill {
            // SIGKILL B mid-work, start it again at once (same id: it takes back what it held).
            drop(daemon_b);
            daemon_b = start_daemon(bin, &cfg_b, &log_b);
            kills += 1;
            next_kill += Duration::from_secs(kill_every);
        }
        if el >= next_redis {
            redis.restart();
            redis_restarts += 1;
            next_redis += Duration::from_secs(redis_every);
        }
        if rss_warm.is_none() && el >= next_sample {
            rss_warmup_peak = rss_warmup_peak.max(rss_kib(daemon_a.0.id()));
            next_sample = el + Duration::from_secs(1);
        }
        if rss_warm.is_none() && el >= Duration::from_secs(warmup) {
            let now = rss_kib(daemon_a.0.id());
            rss_warm = Some(if short { rss_warmup_peak.max(now) } else { now });
        }
        n += 1;
        let account = format!("a{}", rand::rng().random_range(0..ACCOUNTS));
        let id = format!("soak-{n}");
        let kind = rand::rng().random_range(0..80u32);
        let good = |id: &str| {
            vec![
                ("id", id.to_string()),
                ("account", account.clone()),
                ("video", vpath.clone()),
                ("title", id.to_string()),
                ("privacy_level", "SELF_ONLY".to_string()),
            ]
        };
        let (fields, bad): (Vec<(&str, String)>, Option<&'static str>) = match kind {
            0 => (
                vec![
                    ("id", id.clone()),
                    ("account", account.clone()),
                    ("video", vpath.clone()),
                ],
                Some("no privacy_level"),
            ),
            1 => (vec![("json", "{not json".to_string())], Some("bad json")),
            2 => {
                let mut f = good(&id);
                f[1].1 = "nobody".into();
                (f, Some("unknown account"))
            }
            3 => {
                let mut f = good(&id);
                f[2].1 = "/nonexistent/v.mp4".into();
                (f, Some("missing video"))
            }
            4 => {
                let mut f = good(&id);
                f.push(("publish_at", "tomorrow-ish".into()));
                (f, Some("bad publish_at"))
            }
            5 => {
                let mut f = good(&id);
                f[2].1 = bad_video.to_string();
                (f, Some("video breaks the policy"))
            }
            6 => {
                let json = format!(
                    r#"{{"id":"{id}","account":"{account}","video":"{vpath}","privacy_level":"SELF_ONLY","privacy_level":"PUBLIC_TO_EVERYONE"}}"#
                );
                (vec![("json", json)], Some("repeated json key"))
            }
            // The title's bytes are replaced below with Latin-1, which is not UTF-8.
            7 => (good(&id), Some("title not UTF-8")),
            8 => {
                let mut f = good(&id);
                f[2].1 = outside.clone();
                (f, Some("video outside allowed_dirs"))
            }
            9 => {
                let mut f = good(&id);
                f[2].1 = crafted.clone();
                (f, Some("crafted fragmented MP4"))
            }
            _ => (good(&id), None),
        };
        let mut fields: Vec<(&str, Vec<u8>)> = fields
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        if kind == 7 {
            fields[3].1 = b"caf\xe9".to_vec();
        }
        let entry = xadd(&client, &fields).await;
        match bad {
            Some(k) => malformed.push((entry, k)),
            None => accepted.push(id),
        }
        tokio::time::sleep(interval).await;
    }
    let submitted_secs = started.elapsed().as_secs_f64();
    println!(
        "soak: submitted {} ({} accepted, {} malformed) in {submitted_secs:.0} s; {kills} daemon kills, {redis_restarts} Redis restarts",
        accepted.len() + malformed.len(),
        accepted.len(),
        malformed.len()
    );

    // Drain: every accepted post settles (published, failed, deferred).
    let mut c = conn(&client).await;
    let settled = [
        "published",
        "failed",
        "deferred",
        "cancelled",
        "unconfirmed",
    ];
    let drain_deadline = Instant::now() + Duration::from_secs(180);
    let mut states: HashMap<String, HashMap<String, String>> = HashMap::new();
    loop {
        states.clear();
        let mut pending = 0;
        for id in &accepted {
            let h: HashMap<String, String> = c
                .hgetall(format!("tiktok-poster:post:{id}"))
                .await
                .unwrap_or_default();
            if !h
                .get("state")
                .is_some_and(|s| settled.contains(&s.as_str()))
            {
                pending += 1;
            }
            states.insert(id.clone(), h);
        }
        if pending == 0 || Instant::now() > drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let rss_end = rss_kib(daemon_a.0.id());

    // The simulator's own record.
    let sim_posts = common::sim_posts(&reqwest::Client::new(), &sim_base).await;
    let mut live: HashMap<String, u32> = HashMap::new();
    for p in &sim_posts {
        if p["status"] == "PUBLISH_COMPLETE"
            && let Some(t) = p["post_info"]["title"].as_str()
        {
            *live.entry(t.to_string()).or_default() += 1;
        }
    }

    let mut violations = Vec::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let accepted_set: HashSet<&String> = accepted.iter().collect();
    for id in &accepted {
        let h = &states[id];
        let state = h.get("state").cloned().unwrap_or_else(|| "missing".into());
        *counts.entry(state.clone()).or_default() += 1;
        let at_tiktok = live.get(id).copied().unwrap_or(0);
        match state.as_str() {
            "published" if at_tiktok == 1 => {}
            "published" => violations.push(format!(
                "{id}: published in the ledger, {at_tiktok} completed posts at TikTok"
            )),
            "failed" | "deferred"
                if at_tiktok == 0 && !h.get("error_code").is_none_or(String::is_empty) => {}
            "failed" | "deferred" if at_tiktok > 0 => violations.push(format!(
                "{id}: {state} in the ledger but live at TikTok {at_tiktok} time(s)"
            )),
            "failed" | "deferred" => {
                violations.push(format!("{id}: {state} without a reason: {h:?}"))
            }
            other => violations.push(format!(
                "{id}: stuck or lost in state {other:?} ({at_tiktok} at TikTok): {h:?}"
            )),
        }
    }
    for (title, n) in &live {
        if title.starts_with("soak-") && !accepted_set.contains(title) {
            violations.push(format!(
                "{title}: live at TikTok {n} time(s) but never accepted"
            ));
        }
    }
    // Malformed: each in the rejected stream, with a reason.
    let rejected: redis::streams::StreamRangeReply =
        c.xrange_all("tiktok-poster:rejected").await.unwrap();
    let mut reasons: HashMap<String, String> = HashMap::new();
    for e in &rejected.ids {
        let get = |k: &str| -> String {
            e.map
                .get(k)
                .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
                .unwrap_or_default()
        };
        reasons.insert(get("entry_id"), get("reason"));
    }
    for (entry, kind) in &malformed {
        match reasons.get(entry) {
            Some(r) if !r.is_empty() => {}
            _ => violations.push(format!(
                "malformed submission {entry} ({kind}) is not in the rejected stream with a reason"
            )),
        }
    }
    // Nothing held or due now once drained (deferred posts wait in the future).
    let now_ms = chrono::Utc::now().timestamp_millis();
    let due_now: u64 = c
        .zcount("tiktok-poster:q:due", "-inf", now_ms)
        .await
        .unwrap_or(0);
    let leased: u64 = c.zcard("tiktok-poster:q:lease").await.unwrap_or(0);
    if due_now + leased > 0 {
        violations.push(format!(
            "the queue did not drain: {due_now} due now, {leased} leased"
        ));
    }
    let warm = rss_warm.unwrap_or(rss_end);
    let growth = rss_end as f64 / warm.max(1) as f64 - 1.0;
    if growth > 0.10 {
        violations.push(format!(
            "daemon A's memory grew {:.1}% after warm-up ({warm} KiB to {rss_end} KiB)",
            growth * 100.0
        ));
    }
    let stats = common::sim_stats(&reqwest::Client::new(), &sim_base).await;
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort();
    println!("soak: accepted {} -> {counts:?}", accepted.len());
    println!(
        "soak: malformed {} -> {} in the rejected stream",
        malformed.len(),
        malformed
            .iter()
            .filter(|(e, _)| reasons.contains_key(e))
            .count()
    );
    println!(
        "soak: simulator: {} inits recorded, {} completed posts; errors injected {}",
        sim_posts.len(),
        live.values().sum::<u32>(),
        stats["errors"]
    );
    println!(
        "soak: daemon A RSS {:.1} MiB after warm-up ({warmup} s{}), {:.1} MiB at the end ({:+.1}%)",
        warm as f64 / 1024.0,
        if short {
            "; the largest reading until then"
        } else {
            ""
        },
        rss_end as f64 / 1024.0,
        growth * 100.0
    );
    for v in violations.iter().take(30) {
        println!("VIOLATION {v}");
    }
    drop(daemon_b);
    drop(daemon_a);
    violations.len()
}
