//! `cargo bench --bench failover`: posts through Redis failovers (issue #15).
//!
//! One primary, `TP_FAILOVER_REPLICAS` (default 2) replicas and three sentinels (`TestSentinels`: `redis-server` processes of its
//! own, append-only with fsync always), `tiktok-poster sim`, and two daemons (`tiktok-poster run`,
//! release build, worker ids `fo-a` and `fo-b`) that find the primary through the sentinels. A
//! producer submits one post every `TP_FAILOVER_SUBMIT_MS` (default 2000) for 40 accounts in turn,
//! each with a video of its own (≥ 300,000 bytes, so the simulator's sha256 tells posts apart), with
//! `XADD` through a connection that follows the primary (`db::Redis` on the sentinels, with its
//! follower), and sends an `XADD` again, with the same `id`, until one is answered and a replica
//! confirmed it (`WAIT`). The daemons' timings are the defaults
//! (`[worker]` as shipped), except `daily_post_budget` and the simulator's daily cap, raised so that
//! no post is deferred, and `[warmup] enabled = false`.
//!
//! Every `TP_FAILOVER_EVERY_SECS` (default 60), half an interval after the start, a failover, of
//! the two kinds in turn: `SENTINEL FAILOVER` (both nodes alive), then a SIGKILL of the primary
//! (the sentinels promote the replica; the killed node is restarted as a replica so the next
//! failover has one). Submissions stop after `TP_FAILOVER_MINUTES` (default 10) minutes; the run
//! then waits up to `TP_FAILOVER_GRACE_SECS` (default 180) for every submitted post to settle.
//!
//! Prints, for each failover: the promotion instant (the first `+switch-master` any sentinel
//! announced) and the time from it to
//! - the first post the ledger records as published after it (`published_ms` in the post's hash:
//!   the daemon writes it when it sees `PUBLISH_COMPLETE`, through the primary it is connected to;
//!   one written after the promotion and still there at the end went to the new primary, since
//!   what a demoted primary took is discarded when it resynchronises): the figure with the target
//!   (p99 under 10 s);
//! - the first post initiated at the simulator after it that completed (`created_unix_ms` and
//!   `completed_unix_ms` of the simulator's record): a whole post done after the failover. This
//!   one includes the producer's own pauses: after `SENTINEL FAILOVER` the new primary has no
//!   replica until the sentinels demote the old one (8 s or more), and the producer resends until
//!   `WAIT` confirms, so fewer new posts arrive meanwhile.
//!
//! Then p50/p99/max, and: submitted (an `XADD` answered), in the ledger, published exactly once,
//! lost (submitted but not published once the grace period ended, by what the ledger says, and
//! whether the entry is still in the submit stream), duplicated (one video completed twice or more
//! at the simulator, by sha256), and every WARN or ERROR line of the daemons' logs (JSON, kept in
//! `TP_FAILOVER_LOG_DIR` when set). Exits 1 when a post was lost or duplicated.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;

#[path = "../common/mod.rs"]
mod common;
use common::{
    Proc, TestSentinels, bench_client, connect_accounts, env_num, free_port, make_video, start_sim,
};

const ACCOUNTS: usize = 40;
/// Every video is at least this large (and one byte larger than the one before).
const VIDEO_BYTES: u64 = 300_000;

fn main() {
    if !common::run_by_cargo_bench() {
        println!("failover: run it with `cargo bench --bench failover`");
        return;
    }
    let bad = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
    if bad > 0 {
        eprintln!("failover: {bad} post(s) lost or duplicated");
        std::process::exit(1);
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// One post the producer submitted.
struct Submitted {
    id: String,
    sha: String,
    /// The `XADD` answered (epoch ms) and the entry id it gave; `None` if none was answered.
    acked: Option<(i64, String)>,
    /// `XADD`s sent for it (more than one when an answer was lost in a failover, or no replica
    /// confirmed it).
    tries: u32,
    /// A replica confirmed the last answered `XADD` (`WAIT 1 1000`).
    replicated: bool,
}

/// One failover the run caused.
struct Failover {
    kind: &'static str,
    /// When it was caused (the command sent, the process killed), epoch ms.
    caused_ms: i64,
    /// The first `+switch-master`, epoch ms.
    promoted_ms: i64,
    /// When the topology had a healthy replica again, epoch ms.
    settled_ms: i64,
    from: u16,
    to: u16,
}

async fn run() -> usize {
    let minutes: u64 = env_num("TP_FAILOVER_MINUTES", 10);
    let every = Duration::from_secs(env_num("TP_FAILOVER_EVERY_SECS", 60));
    let submit_every = Duration::from_millis(env_num("TP_FAILOVER_SUBMIT_MS", 2000));
    let grace = Duration::from_secs(env_num("TP_FAILOVER_GRACE_SECS", 180));
    let run_for = Duration::from_secs(minutes * 60);
    let failovers = (run_for.as_secs_f64() / every.as_secs_f64()).round() as usize;
    println!("failover: CPU {}", common::cpu_model());
    println!(
        "failover: {minutes} min of submissions (one every {} ms, {ACCOUNTS} accounts), {failovers} failovers every {} s, alternating SENTINEL FAILOVER and SIGKILL of the primary",
        submit_every.as_millis(),
        every.as_secs()
    );

    let dir = tempfile::tempdir().unwrap();
    let log_dir = std::env::var("TP_FAILOVER_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.path().to_path_buf());
    std::fs::create_dir_all(&log_dir).unwrap();
    let bin = env!("CARGO_BIN_EXE_tiktok-poster");

    let replicas = env_num("TP_FAILOVER_REPLICAS", 2) as usize;
    let acks = env_num("TP_FAILOVER_ACKS", 1);
    println!(
        "topology: 1 primary, {replicas} replica(s), 3 sentinels; [redis] min_replica_acks = {acks}"
    );
    let t = TestSentinels::start_with_replicas(replicas).await;
    let first = t.master_port().await;
    let (_sim, sim_base) = start_sim(&["--daily-post-cap", "100000"]);
    let key_path = dir.path().join("token.key");
    connect_accounts(
        &bench_client(&sim_base),
        &t.url(first),
        &key_path,
        ACCOUNTS,
        "fo",
    )
    .await;

    let sentinels: Vec<String> = t
        .sentinel_addrs()
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    let config = |name: &str| {
        let port = free_port();
        let p = dir.path().join(format!("config-{name}.toml"));
        std::fs::write(
            &p,
            format!(
                "[redis]\nurl = \"redis://127.0.0.1:1\"\nsentinels = [{}]\nsentinel_master = \"{}\"\nmin_replica_acks = {acks}\n\
[tiktok]\nclient_key = \"fo\"\nclient_secret = \"fo\"\napi_base = \"{sim_base}\"\nauth_base = \"{sim_base}\"\nredirect_uri = \"http://127.0.0.1:{port}/oauth/callback\"\n\
[http]\nlisten = \"127.0.0.1:{port}\"\n[worker]\nid = \"fo-{name}\"\ndaily_post_budget = 1000\n\
[video]\nallowed_dirs = [\"{}\"]\n[tokens]\nencryption_key_file = \"{}\"\n[warmup]\nenabled = false\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
                sentinels.join(", "),
                t.master_name(),
                dir.path().display(),
                key_path.display()
            ),
        )
        .unwrap();
        (p, port)
    };
    let mut daemons = Vec::new();
    for name in ["a", "b"] {
        let (cfg, port) = config(name);
        let log = log_dir.join(format!("daemon-{name}.log"));
        let child = Command::new(bin)
            .args(["--config", cfg.to_str().unwrap(), "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        daemons.push((name, Proc(child), log, port));
    }
    for (name, proc, log, port) in &mut daemons {
        let url = format!("http://127.0.0.1:{port}/healthz");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = proc.0.try_wait().unwrap() {
                panic!(
                    "daemon {name} exited ({status}) before it was healthy; its log:\n{}",
                    std::fs::read_to_string(&*log).unwrap_or_default()
                );
            }
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "daemon {name}'s /healthz did not answer within 60 s (log: {})",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!("failover: topology, simulator and two daemons ready");

    let started = Instant::now();
    let submitted: Arc<Mutex<Vec<Submitted>>> = Arc::default();
    let producer = tokio::spawn(produce(
        t.target(),
        dir.path().to_path_buf(),
        run_for,
        submit_every,
        submitted.clone(),
    ));
    let chaos = tokio::spawn(cause_failovers(t, failovers, every));
    producer.await.unwrap();
    let (t, done) = chaos.await.unwrap();
    println!(
        "failover: submissions stopped after {:.0} s; waiting up to {} s for every post to settle",
        started.elapsed().as_secs_f64(),
        grace.as_secs()
    );
    let submitted = std::mem::take(&mut *submitted.lock().unwrap());

    // Grace: until every submitted post is settled in the ledger, or the grace period ends.
    let mut c = tiktok_poster::db::connect(t.target()).await.unwrap();
    let settled = [
        "published",
        "failed",
        "deferred",
        "cancelled",
        "unconfirmed",
    ];
    let deadline = Instant::now() + grace;
    let hashes = loop {
        let hashes = post_hashes(&mut c, &submitted).await;
        let pending = hashes
            .iter()
            .filter(|h| {
                !h.get("state")
                    .is_some_and(|s| settled.contains(&s.as_str()))
            })
            .count();
        if pending == 0 || Instant::now() > deadline {
            break hashes;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let in_stream: std::collections::HashSet<String> = {
        let reply: redis::streams::StreamRangeReply = c
            .xrange_all("tiktok-poster:submit")
            .await
            .unwrap_or_default();
        reply.ids.into_iter().map(|e| e.id).collect()
    };

    // The simulator's record, by video.
    let sim_posts = common::sim_posts(&reqwest::Client::new(), &sim_base).await;
    let mut inits: HashMap<String, usize> = HashMap::new();
    let mut completed: HashMap<String, usize> = HashMap::new();
    for p in &sim_posts {
        let sha = p["sha256"].as_str().unwrap_or("").to_string();
        *inits.entry(sha.clone()).or_default() += 1;
        if p["status"] == "PUBLISH_COMPLETE" {
            *completed.entry(sha).or_default() += 1;
        }
    }

    // Per failover.
    let published_ms: Vec<i64> = hashes
        .iter()
        .filter(|h| h.get("state").map(String::as_str) == Some("published"))
        .filter_map(|h| h.get("published_ms").and_then(|v| v.parse().ok()))
        .collect();
    println!();
    println!(
        "| # | kind | from → to | caused → promotion (ms) | promotion → first published in the ledger (ms) | promotion → first post initiated after it completed at the simulator (ms) | until a replica again (ms) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut to_ledger = Vec::new();
    let mut to_sim = Vec::new();
    for (i, f) in done.iter().enumerate() {
        let ledger = published_ms
            .iter()
            .filter(|&&p| p > f.promoted_ms)
            .min()
            .map(|p| p - f.promoted_ms);
        let sim = sim_posts
            .iter()
            .filter(|p| p["status"] == "PUBLISH_COMPLETE")
            .filter(|p| p["created_unix_ms"].as_i64().unwrap_or(0) > f.promoted_ms)
            .filter_map(|p| p["completed_unix_ms"].as_i64())
            .min()
            .map(|c| c - f.promoted_ms);
        let show = |v: Option<i64>| v.map_or("none".to_string(), |v| v.to_string());
        println!(
            "| {} | {} | {} → {} | {} | {} | {} | {} |",
            i + 1,
            f.kind,
            f.from,
            f.to,
            f.promoted_ms - f.caused_ms,
            show(ledger),
            show(sim),
            f.settled_ms - f.promoted_ms
        );
        to_ledger.extend(ledger);
        to_sim.extend(sim);
    }
    to_ledger.sort();
    to_sim.sort();

    // Totals.
    let mut states: HashMap<String, usize> = HashMap::new();
    let mut exactly_once = 0;
    let mut lost = Vec::new();
    let mut mismatched = Vec::new();
    let acked: Vec<(&Submitted, &HashMap<String, String>)> = submitted
        .iter()
        .zip(&hashes)
        .filter(|(s, _)| s.acked.is_some())
        .collect();
    for (s, h) in &acked {
        let state = h
            .get("state")
            .cloned()
            .unwrap_or_else(|| "no record".into());
        *states.entry(state.clone()).or_default() += 1;
        let live = completed.get(&s.sha).copied().unwrap_or(0);
        if state == "published" && live == 1 {
            exactly_once += 1;
        } else if state != "published" && live == 0 {
            let (at, entry) = s.acked.as_ref().unwrap();
            let near = done
                .iter()
                .enumerate()
                .min_by_key(|(_, f)| (at - f.promoted_ms).abs())
                .map_or(String::new(), |(i, f)| {
                    format!(
                        ", answered {} ms after promotion {}",
                        at - f.promoted_ms,
                        i + 1
                    )
                });
            lost.push(format!(
                "{}: {state}, {} XADD(s){near}, entry {entry} {} the submit stream, error {:?}",
                s.id,
                s.tries,
                if in_stream.contains(entry) {
                    "still in"
                } else {
                    "not in"
                },
                h.get("error_code").cloned().unwrap_or_default()
            ));
        } else if live <= 1 {
            mismatched.push(format!(
                "{}: ledger {state}, {live} completed at the simulator",
                s.id
            ));
        }
    }
    let duplicated: Vec<String> = acked
        .iter()
        .filter(|(s, _)| completed.get(&s.sha).copied().unwrap_or(0) > 1)
        .map(|(s, h)| {
            format!(
                "{}: completed {} times at the simulator ({} inits), ledger {}",
                s.id,
                completed[&s.sha],
                inits.get(&s.sha).copied().unwrap_or(0),
                h.get("state").map_or("no record", String::as_str)
            )
        })
        .collect();
    let extra_inits: usize = acked
        .iter()
        .map(|(s, _)| inits.get(&s.sha).copied().unwrap_or(0).saturating_sub(1))
        .sum();
    let not_acked = submitted.len() - acked.len();
    let retried = acked.iter().filter(|(s, _)| s.tries > 1).count();
    let unreplicated = acked.iter().filter(|(s, _)| !s.replicated).count();
    let mut states: Vec<_> = states.into_iter().collect();
    states.sort();

    println!();
    println!("| figure | value | target |");
    println!("|---|---|---|");
    println!("| failovers | {} | |", done.len());
    println!(
        "| promotion → first published (ledger) p50 / p99 / max (ms) | {} / {} / {} | p99 < 10000 |",
        pct(&to_ledger, 0.5),
        pct(&to_ledger, 0.99),
        pct(&to_ledger, 1.0)
    );
    println!(
        "| promotion → first post initiated after it completed (simulator) p50 / p99 / max (ms) | {} / {} / {} | |",
        pct(&to_sim, 0.5),
        pct(&to_sim, 0.99),
        pct(&to_sim, 1.0)
    );
    println!(
        "| submitted (XADD answered) | {} ({retried} sent more than once; {unreplicated} never confirmed by a replica; {not_acked} never answered) | |",
        acked.len()
    );
    println!("| ledger states of those | {states:?} | |");
    println!("| published exactly once | {exactly_once} | all |");
    println!("| lost | {} | 0 |", lost.len());
    println!(
        "| duplicated at the simulator (by sha256) | {} | 0 |",
        duplicated.len()
    );
    println!("| inits beyond one per post at the simulator | {extra_inits} | |");
    println!(
        "| ledger and simulator disagree | {} | 0 |",
        mismatched.len()
    );
    for l in lost.iter().take(30) {
        println!("LOST {l}");
    }
    for d in duplicated.iter().take(30) {
        println!("DUPLICATED {d}");
    }
    for m in mismatched.iter().take(30) {
        println!("MISMATCH {m}");
    }
    for (name, _, log, _) in &daemons {
        print_warnings(name, log);
    }
    println!("failover: daemon logs in {}", log_dir.display());
    drop(daemons);
    drop(t);
    lost.len() + duplicated.len()
}

/// Submits one post every `every` until `run_for` has passed, round-robin over the accounts, each
/// with a new video, as a careful producer on replicated Redis would: an `XADD` without an answer,
/// or that no replica confirmed within a second (`WAIT 1 1000`), is sent again with the same `id`
/// (the daemons keep one post per id), for up to a minute. So a submission is not lost with a
/// demoted primary's writes, and while the topology has no replica (after a SIGKILL, until the
/// killed node is back) the producer retries.
async fn produce(
    target: tiktok_poster::db::Target,
    dir: PathBuf,
    run_for: Duration,
    every: Duration,
    out: Arc<Mutex<Vec<Submitted>>>,
) {
    // As the daemon does: a `Redis` whose follower asks the sentinels every second. A connection
    // without it (`db::connect`) moves only when a command fails, and after `SENTINEL FAILOVER`
    // the old primary takes writes until the sentinels demote it (8 s or more), which then drops
    // them.
    let redis = tiktok_poster::db::Redis::new(target);
    let mut conn = redis.connect().await.unwrap();
    let started = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while started.elapsed() < run_for {
        tick.tick().await;
        let id = format!("fo-{n}");
        let video = dir.join(format!("{id}.mp4"));
        let sha = make_video(&video, VIDEO_BYTES + n);
        let account = format!("a{}", n as usize % ACCOUNTS);
        let fields = [
            ("id", id.as_str()),
            ("account", account.as_str()),
            ("video", path(&video)),
            ("title", id.as_str()),
            ("privacy_level", "SELF_ONLY"),
        ];
        let mut s = Submitted {
            id: id.clone(),
            sha,
            acked: None,
            tries: 0,
            replicated: false,
        };
        let give_up = Instant::now() + Duration::from_secs(60);
        while Instant::now() < give_up {
            s.tries += 1;
            let generation = redis.generation();
            let sent = tokio::time::timeout(
                Duration::from_secs(5),
                conn.xadd::<_, _, _, _, String>("tiktok-poster:submit", "*", &fields),
            )
            .await;
            if let Ok(Ok(entry)) = sent {
                s.acked = Some((now_ms(), entry));
                // Kept by a replica too, so a failover cannot drop it; otherwise sent again.
                // Every connected replica (at least one), as the daemon waits: the sentinels may
                // promote any of them.
                let kept = tiktok_poster::db::replicas::wait_connected(&mut conn, 1, 1000).await;
                // And the sentinels still name the primary it went to (a replaced primary keeps
                // taking writes, and a replica not yet moved keeps acknowledging them).
                if kept.is_ok_and(|(k, need)| k >= need)
                    && redis.confirm_primary(generation).await.is_ok()
                {
                    s.replicated = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        out.lock().unwrap().push(s);
        n += 1;
    }
}

/// `count` failovers, the first half an interval after the start and then every `every`,
/// alternating `SENTINEL FAILOVER` and a SIGKILL of the primary (then restarted as a replica).
async fn cause_failovers(
    mut t: TestSentinels,
    count: usize,
    every: Duration,
) -> (TestSentinels, Vec<Failover>) {
    let started = tokio::time::Instant::now();
    let mut done = Vec::new();
    for i in 0..count {
        tokio::time::sleep_until(started + every / 2 + every * i as u32).await;
        let from = t.master_port().await;
        let caused_ms = now_ms();
        let (kind, promoted_ms) = if i % 2 == 0 {
            ("SENTINEL FAILOVER", t.failover().await)
        } else {
            let (killed, at) = t.kill_master_and_wait_promotion().await;
            t.restart_as_replica(killed).await;
            ("SIGKILL", at)
        };
        let to = t.master_port().await;
        let f = Failover {
            kind,
            caused_ms,
            promoted_ms,
            settled_ms: now_ms(),
            from,
            to,
        };
        println!(
            "failover {}: {kind} {from} → {to}, promoted {} ms after it was caused, a replica again {} ms after the promotion",
            i + 1,
            f.promoted_ms - f.caused_ms,
            f.settled_ms - f.promoted_ms
        );
        done.push(f);
    }
    (t, done)
}

/// Every submitted post's hash (empty when the ledger has none).
async fn post_hashes(
    c: &mut tiktok_poster::db::Conn,
    submitted: &[Submitted],
) -> Vec<HashMap<String, String>> {
    let mut out = Vec::with_capacity(submitted.len());
    for chunk in submitted.chunks(200) {
        let mut p = redis::pipe();
        for s in chunk {
            p.hgetall(format!("tiktok-poster:post:{}", s.id));
        }
        let got: Vec<HashMap<String, String>> = loop {
            match p.query_async(c).await {
                Ok(v) => break v,
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        out.extend(got);
    }
    out
}

/// The WARN and ERROR lines of a daemon's JSON log, at most 40, each at most 400 characters.
fn print_warnings(name: &str, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut count = 0;
    let mut shown = 0;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let level = v["level"].as_str().unwrap_or("");
        if level != "WARN" && level != "ERROR" {
            continue;
        }
        count += 1;
        if shown < 40 {
            shown += 1;
            let mut s = line.to_string();
            if s.len() > 400 {
                let mut cut = 400;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push('…');
            }
            println!("daemon {name}: {s}");
        }
    }
    println!("failover: daemon {name} logged {count} WARN/ERROR line(s)");
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
