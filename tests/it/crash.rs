//! The real binary SIGKILLed at random points while it publishes, and restarted each time.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::Rng;
use redis::AsyncCommands;

use crate::app::path_str;
use crate::support::{TestRedis, TestSim, wait_until};

pub(crate) fn start(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .args(["--config", config.to_str().unwrap(), "run"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

/// 50 posts over 10 accounts; the daemon is SIGKILLed at random moments and restarted until all are
/// settled. Every post ends published, and TikTok (the simulator) has each video exactly once.
#[tokio::test]
async fn sigkill_at_random_points_of_50_publishes_loses_and_doubles_nothing() {
    let redis = TestRedis::start(true);
    let sim = TestSim::spawn(|c| c.publish_delay_ms = 800).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, log, port) = write_config(&dir, &redis, &sim, 2);
    let base = format!("http://127.0.0.1:{port}");
    let mut daemon = start(&config, &log);
    let http = reqwest::Client::new();
    wait_healthy(port).await;
    for a in 0..10 {
        let body = http
            .get(format!(
                "{base}/connect?account=acct{a}&sim_username=crash{a}"
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("is connected"), "{body}");
    }
    let mut conn = redis.conn().await;
    let mut shas = Vec::new();
    let mut ids = Vec::new();
    for i in 0..50 {
        let path = dir.path().join(format!("v{i}.mp4"));
        shas.push(crate::support::make_video(&path, 300_000 + i * 1000));
        let id = format!("crash-{i}");
        let account = format!("acct{}", i % 10);
        let _: String = conn
            .xadd(
                "tiktok-poster:submit",
                "*",
                &[
                    ("id", id.as_str()),
                    ("account", &account),
                    ("video", path_str(&path)),
                    ("privacy_level", "SELF_ONLY"),
                ],
            )
            .await
            .unwrap();
        ids.push(id);
    }
    let settled = |states: Vec<Option<String>>| {
        states.iter().all(|s| {
            s.as_deref()
                .is_some_and(|s| ["published", "failed", "unconfirmed"].contains(&s))
        })
    };
    let mut kills = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let pause = rand::rng().random_range(100..700);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let mut states = Vec::new();
        for id in &ids {
            let s: Option<String> = conn
                .hget(format!("tiktok-poster:post:{id}"), "state")
                .await
                .unwrap();
            states.push(s);
        }
        if settled(states) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "posts did not settle; see {}",
            log.display()
        );
        if kills < 12 {
            daemon.kill().unwrap();
            daemon.wait().unwrap();
            kills += 1;
            daemon = start(&config, &log);
        }
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(kills >= 5, "the daemon was killed {kills} times");
    eprintln!(
        "crash test: {kills} kills, {} inits at TikTok for 50 posts",
        sim.posts().await.len()
    );
    for id in &ids {
        let p: std::collections::HashMap<String, String> = conn
            .hgetall(format!("tiktok-poster:post:{id}"))
            .await
            .unwrap();
        assert_eq!(
            p.get("state").map(String::as_str),
            Some("published"),
            "post {id}: {:?} {:?}",
            p.get("error_code"),
            p.get("error_message")
        );
    }
    let posts = sim.posts().await;
    for sha in &shas {
        let n = posts.iter().filter(|p| p["sha256"] == *sha).count();
        assert_eq!(n, 1, "video {sha} at TikTok {n} times");
    }
    let live = posts
        .iter()
        .filter(|p| p["status"] == "PUBLISH_COMPLETE")
        .count();
    assert_eq!(
        live,
        50,
        "exactly 50 live posts at TikTok ({} inits in all)",
        posts.len()
    );
}

/// A config file for the binary against this Redis and simulator, with millisecond timings.
pub(crate) fn write_config(
    dir: &tempfile::TempDir,
    redis: &TestRedis,
    sim: &TestSim,
    lease_secs: u64,
) -> (std::path::PathBuf, std::path::PathBuf, u16) {
    write_config_named(dir, "", redis, sim, lease_secs, "")
}

pub(crate) fn write_config_named(
    dir: &tempfile::TempDir,
    name: &str,
    redis: &TestRedis,
    sim: &TestSim,
    lease_secs: u64,
    worker_id: &str,
) -> (std::path::PathBuf, std::path::PathBuf, u16) {
    let key = dir.path().join("token.key");
    if !key.exists() {
        tiktok_poster::accounts::TokenKey::generate_file(&key).unwrap();
    }
    let port = crate::support::free_port();
    let config = dir.path().join(format!("config{name}.toml"));
    let log = dir.path().join(format!("daemon{name}.log"));
    std::fs::write(
        &config,
        format!(
            r#"
[redis]
url = "{redis}"
[tiktok]
client_key = "k"
client_secret = "s"
api_base = "{sim}"
auth_base = "{sim}"
redirect_uri = "http://127.0.0.1:{port}/oauth/callback"
request_timeout_secs = 5
[http]
listen = "127.0.0.1:{port}"
# Padded test videos (support::make_video) are far above the brief's bitrate ceiling.
[video]
policy = "api"
allowed_dirs = ["{dir}"]
[worker]
concurrency = 8
lease_secs = {lease_secs}
idle_poll_ms = 50
backoff_base_ms = 100
backoff_max_secs = 2
status_interval_ms = 100
shutdown_grace_secs = 2
id = "{worker_id}"
[tokens]
encryption_key_file = "{key}"
[warmup]
enabled = false
[log]
format = "json"
"#,
            redis = redis.url(),
            sim = sim.sim.base_url,
            key = key.display(),
            dir = dir.path().display()
        ),
    )
    .unwrap();
    (config, log, port)
}

/// A daemon killed mid-upload: its successor takes the post back at start-up (not after the 60-second
/// lease) and resumes it from its publish_id; TikTok gets one post.
#[tokio::test]
async fn a_killed_daemons_post_is_taken_back_by_its_successor_at_start_up() {
    let redis = TestRedis::start(true);
    let sim = TestSim::spawn(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, log, port) = write_config(&dir, &redis, &sim, 60);
    let mut daemon = start_connected(&config, &log, port, "succ").await;
    let (sha, _) = submit_slow_upload(&sim, &redis, &dir, "succ-1").await;
    let conn = redis.conn().await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let restarted = std::time::Instant::now();
    let mut daemon = start(&config, &log);
    wait_published(&conn, "succ-1", Duration::from_secs(30)).await;
    assert!(
        restarted.elapsed() < Duration::from_secs(20),
        "taken back after {:?}, not at start-up",
        restarted.elapsed()
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let posts = sim.posts().await;
    assert_eq!(posts.iter().filter(|p| p["sha256"] == sha).count(), 1);
    assert_eq!(posts.len(), 1, "one init in all");
    // The daemon logged at debug level throughout: no token or upload URL in clear text.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("Upload complete"), "the log was captured");
    // JSON lines (not a terminal): every line of a post's work carries its span with the post id,
    // the account and, once TikTok gave one, the publish_id.
    let publish_id = &posts[0]["publish_id"].as_str().unwrap().to_string();
    let upload_line = logged
        .lines()
        .find(|l| l.contains("Upload complete"))
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(upload_line).unwrap();
    assert_eq!(line["span"]["name"], "post", "{line}");
    assert_eq!(line["span"]["publish_id"], publish_id.as_str(), "{line}");
    assert_eq!(line["span"]["account"], "main", "{line}");
    assert!(line["span"]["post_id"].is_string(), "{line}");
    for secret in ["act.", "rft.", "upload_token"] {
        assert!(
            !logged.contains(secret),
            "{secret} found in the daemon's log"
        );
    }
}

/// Two daemons share one Redis; the one working on a post is killed and its sibling takes the post over
/// once the lease runs out, resuming from the publish_id: one post at TikTok. The survivor then stops
/// cleanly on SIGTERM.
#[tokio::test]
async fn a_sibling_takes_over_a_killed_daemons_post_and_sigterm_stops_cleanly() {
    let redis = TestRedis::start(true);
    let sim = TestSim::spawn(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg_a, log_a, port_a) = write_config_named(&dir, "a", &redis, &sim, 3, "daemon-a");
    let (cfg_b, log_b, port_b) = write_config_named(&dir, "b", &redis, &sim, 3, "daemon-b");
    let mut a = start(&cfg_a, &log_a);
    let mut b = start(&cfg_b, &log_b);
    let http = reqwest::Client::new();
    for port in [port_a, port_b] {
        wait_healthy(port).await;
    }
    let body = http
        .get(format!(
            "http://127.0.0.1:{port_a}/connect?account=main&sim_username=sib"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("is connected"), "{body}");
    let (sha, owner) = submit_slow_upload(&sim, &redis, &dir, "sib-1").await;
    let conn = redis.conn().await;
    let (victim, survivor) = if owner.starts_with("daemon-a:") {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed = std::time::Instant::now();
    wait_published(&conn, "sib-1", Duration::from_secs(30)).await;
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "taken over after {:?}",
        killed.elapsed()
    );
    let posts = sim.posts().await;
    assert_eq!(posts.iter().filter(|p| p["sha256"] == sha).count(), 1);
    assert_eq!(posts.len(), 1, "one init in all");
    assert!(
        Command::new("kill")
            .args(["-TERM", &survivor.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = survivor.wait().unwrap();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
}

/// SIGTERM while an upload is in flight: the process exits 0 within `[worker] shutdown_grace_secs`
/// (2 s here) plus a margin, the post is handed back, and the next start publishes it exactly once.
#[tokio::test]
async fn sigterm_mid_upload_exits_within_the_grace_period_and_loses_nothing() {
    let redis = TestRedis::start(true);
    let sim = TestSim::spawn(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, log, port) = write_config(&dir, &redis, &sim, 60);
    let mut daemon = start_connected(&config, &log, port, "term").await;
    let (sha, _) = submit_slow_upload(&sim, &redis, &dir, "term-1").await;
    let conn = redis.conn().await;
    let sent = std::time::Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &daemon.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(st) = daemon.try_wait().unwrap() {
            break st;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(2 + 3),
            "still running {:?} after SIGTERM (grace 2 s)",
            sent.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let owner: Option<String> = conn
        .clone()
        .hget("tiktok-poster:post:term-1", "lease_owner")
        .await
        .unwrap();
    assert_eq!(owner, None, "the claim was handed back on the way out");
    let mut daemon = start(&config, &log);
    wait_published(&conn, "term-1", Duration::from_secs(60)).await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let posts = sim.posts().await;
    assert_eq!(posts.iter().filter(|p| p["sha256"] == sha).count(), 1);
    assert_eq!(posts.len(), 1, "one init in all");
}

/// Under systemd (NOTIFY_SOCKET and WATCHDOG_USEC set), the daemon says READY=1 once it runs, pings
/// the watchdog while its loops are alive, and says STOPPING=1 on SIGTERM.
#[tokio::test]
async fn the_daemon_talks_to_systemd_readiness_watchdog_and_stopping() {
    let redis = TestRedis::start(false);
    let sim = TestSim::spawn(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, log, _port) = write_config(&dir, &redis, &sim, 3);
    let sock_path = dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .args(["--config", config.to_str().unwrap(), "run"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !(seen.iter().any(|m: &String| m.contains("READY=1"))
        && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
    {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .expect("READY=1 and two WATCHDOG=1 within 15 s")
            .unwrap();
        seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(
        seen[0].contains("READY=1"),
        "readiness comes first: {seen:?}"
    );
    assert!(
        Command::new("kill")
            .args(["-TERM", &daemon.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let n = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = sock.recv(&mut buf).await.unwrap();
            let m = String::from_utf8_lossy(&buf[..n]).to_string();
            if m.contains("STOPPING=1") {
                return n;
            }
        }
    })
    .await
    .expect("STOPPING=1 on SIGTERM");
    assert!(n > 0);
    assert!(daemon.wait().unwrap().success());
}

/// Submits post `id` with a 90 MB video whose upload the simulator slows down, and waits until it is
/// being uploaded (it has a publish_id). Returns the video's sha256 and the claim holding the post.
/// Waits until the daemon on `port` answers `/healthz` with a success.
pub(crate) async fn wait_healthy(port: u16) {
    crate::support::wait_healthy(
        &format!("http://127.0.0.1:{port}/healthz"),
        Duration::from_secs(15),
        "the daemon to come up",
    )
    .await;
}

/// Waits until post `id` is published.
pub(crate) async fn wait_published(
    conn: &redis::aio::MultiplexedConnection,
    id: &str,
    timeout: Duration,
) {
    wait_until(timeout, &format!("post {id} to be published"), || async {
        let s: Option<String> = conn
            .clone()
            .hget(format!("tiktok-poster:post:{id}"), "state")
            .await
            .unwrap();
        (s.as_deref() == Some("published")).then_some(())
    })
    .await;
}

/// Starts the daemon binary, waits until it answers, and connects account `main` (simulated creator
/// `user`) through its Connect page.
pub(crate) async fn start_connected(
    config: &std::path::Path,
    log: &std::path::Path,
    port: u16,
    user: &str,
) -> std::process::Child {
    let base = format!("http://127.0.0.1:{port}");
    let daemon = start(config, log);
    wait_healthy(port).await;
    crate::support::connect_via_daemon(&base, "main", user, false).await;
    daemon
}

pub(crate) async fn submit_slow_upload(
    sim: &TestSim,
    redis: &TestRedis,
    dir: &tempfile::TempDir,
    id: &str,
) -> (String, String) {
    sim.fault(serde_json::json!({"endpoint": "upload", "delay_ms": 400, "times": 20}))
        .await;
    let path = dir.path().join(format!("{id}.mp4"));
    let sha = crate::support::make_video(&path, 90_000_000);
    let mut conn = redis.conn().await;
    let _: String = conn
        .xadd(
            "tiktok-poster:submit",
            "*",
            &[
                ("id", id),
                ("account", "main"),
                ("video", path_str(&path)),
                ("privacy_level", "SELF_ONLY"),
            ],
        )
        .await
        .unwrap();
    let owner = wait_until(Duration::from_secs(20), "the upload to start", || async {
        let h: std::collections::HashMap<String, String> = conn
            .clone()
            .hgetall(format!("tiktok-poster:post:{id}"))
            .await
            .unwrap();
        h.get("publish_id")
            .filter(|p| !p.is_empty())
            .and(h.get("lease_owner").cloned())
    })
    .await;
    (sha, owner)
}
