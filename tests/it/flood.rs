//! The real binary under the descriptor limit systemd gives a service by default (soft 1,024), with a
//! flood of idle connections on its main listener (issue 11, point 4), and a second daemon with the
//! same worker id (point 12).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use redis::AsyncCommands;

use crate::app::path_str;
use crate::support::{TestRedis, TestSim, wait_until};

/// A configuration for the binary; returns its path, its log's path and the main listener's port.
pub fn write_config(
    dir: &Path,
    name: &str,
    redis: &TestRedis,
    sim: &TestSim,
    http: &str,
) -> (PathBuf, PathBuf, u16) {
    let key = dir.join("token.key");
    if !key.exists() {
        tiktok_poster::accounts::TokenKey::generate_file(&key).unwrap();
    }
    let port = crate::support::free_port();
    let config = dir.join(format!("{name}.toml"));
    let log = dir.join(format!("{name}.log"));
    std::fs::write(
        &config,
        format!(
            r#"
[redis]
url = "{redis}"
[tiktok]
client_key = "k"
client_secret = "test-secret"
api_base = "{sim}"
auth_base = "{sim}"
redirect_uri = "http://127.0.0.1:{port}/oauth/callback"
request_timeout_secs = 5
[http]
listen = "127.0.0.1:{port}"
{http}
[video]
policy = "api"
allowed_dirs = ["{videos}"]
[worker]
id = "{name}"
idle_poll_ms = 50
backoff_base_ms = 100
backoff_max_secs = 2
status_interval_ms = 100
shutdown_grace_secs = 2
[tokens]
encryption_key_file = "{key}"
[warmup]
enabled = false
"#,
            redis = redis.url(),
            sim = sim.sim.base_url,
            key = key.display(),
            videos = dir.display()
        ),
    )
    .unwrap();
    (config, log, port)
}

/// Starts the binary through `bash -c '<limit> && exec …'` (the crate forbids `unsafe`, so no
/// `pre_exec` setrlimit), with its log in `log`.
pub fn start(limit: &str, config: &Path, log: &Path) -> tokio::process::Child {
    tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{limit} && exec \"$0\" --config \"$1\" run"))
        .arg(env!("CARGO_BIN_EXE_tiktok-poster"))
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// `/healthz` on `port` over a new connection each time: its status and body, if it answered.
async fn healthz(port: u16) -> Option<(u16, String)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let r = http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .ok()?;
    let code = r.status().as_u16();
    Some((code, r.text().await.unwrap_or_default()))
}

/// 1,100 idle TCP connections held open to the main listener of a daemon whose soft descriptor limit
/// is 1,024: `/healthz` answers within 10 s and a post submitted meanwhile is published. Run twice:
/// with the hard limit as it is (the daemon raises its soft limit to it) and with the hard limit at
/// 1,024 too (the connection cap and the header timeout must do it alone).
#[tokio::test]
async fn a_flood_of_idle_connections_leaves_healthz_and_posting_working() {
    // The test holds the 1,100 sockets itself.
    let mine = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if mine < 4096 {
        rlimit::Resource::NOFILE
            .set(4096, 4096)
            .expect("the test needs 4,096 descriptors of its own");
    }
    let redis = TestRedis::start(true);
    let sim = TestSim::spawn(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut conn = redis.conn().await;
    for (round, limit) in ["ulimit -Sn 1024", "ulimit -n 1024"]
        .into_iter()
        .enumerate()
    {
        let name = format!("flood{round}");
        let (config, log, port) = write_config(dir.path(), &name, &redis, &sim, "");
        let mut daemon = start(limit, &config, &log);
        wait_until(Duration::from_secs(15), "the daemon to come up", || async {
            healthz(port).await.filter(|(c, _)| *c == 200).map(|_| ())
        })
        .await;
        let account = format!("acct{round}");
        let body = reqwest::get(format!(
            "http://127.0.0.1:{port}/connect?account={account}&sim_username={account}"
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        assert!(body.contains("is connected"), "{body}");

        let mut held = Vec::new();
        for _ in 0..1100 {
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(("127.0.0.1", port)),
            )
            .await
            {
                held.push(s);
            }
        }
        let flooded = tokio::time::Instant::now();
        let video = dir.path().join(format!("{name}.mp4"));
        let sha = crate::support::make_video(&video, 300_000);
        let id = format!("{name}-post");
        let _: String = conn
            .xadd(
                "tiktok-poster:submit",
                "*",
                &[
                    ("id", id.as_str()),
                    ("account", &account),
                    ("video", path_str(&video)),
                    ("privacy_level", "SELF_ONLY"),
                ],
            )
            .await
            .unwrap();
        let what = format!(
            "/healthz during the flood ({limit}; {} connections held; log {})",
            held.len(),
            log.display()
        );
        wait_until(Duration::from_secs(10), &what, || async {
            healthz(port).await.filter(|(c, _)| *c == 200).map(|_| ())
        })
        .await;
        eprintln!(
            "{limit}: {} idle connections held; /healthz answered 200 after {:?}",
            held.len(),
            flooded.elapsed()
        );
        wait_until(
            Duration::from_secs(30),
            &format!("post {id} to be published ({limit})"),
            || async {
                let s: Option<String> = conn
                    .clone()
                    .hget(format!("tiktok-poster:post:{id}"), "state")
                    .await
                    .unwrap();
                (s.as_deref() == Some("published")).then_some(())
            },
        )
        .await;
        assert_eq!(
            sim.posts()
                .await
                .iter()
                .filter(|p| p["sha256"] == sha.as_str())
                .count(),
            1
        );
        drop(held);
        daemon.kill().await.unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains("Too many open files"), "{text}");
    }
    let rejected: usize = conn.xlen("tiktok-poster:rejected").await.unwrap();
    assert_eq!(rejected, 0, "no submission was rejected");
}

/// A second daemon given the same `[worker] id` as a running one answers every request at once with
/// 503 and the reason while it waits for the identity, instead of accepting connections and never
/// answering.
#[tokio::test]
async fn a_second_daemon_with_the_same_worker_id_answers_503_with_the_reason() {
    let redis = TestRedis::start(true);
    let sim = TestSim::spawn(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, log, port) = write_config(dir.path(), "same", &redis, &sim, "");
    let mut first = start("true", &config, &log);
    wait_until(
        Duration::from_secs(15),
        "the first daemon to come up",
        || async { healthz(port).await.filter(|(c, _)| *c == 200).map(|_| ()) },
    )
    .await;
    // The same worker id, another port.
    let text = std::fs::read_to_string(&config).unwrap();
    let port2 = crate::support::free_port();
    let config2 = dir.path().join("same2.toml");
    std::fs::write(
        &config2,
        text.replace(
            &format!("listen = \"127.0.0.1:{port}\""),
            &format!("listen = \"127.0.0.1:{port2}\""),
        ),
    )
    .unwrap();
    let log2 = dir.path().join("same2.log");
    let mut second = start("true", &config2, &log2);
    let (code, body) = wait_until(
        Duration::from_secs(10),
        "the second daemon to say why it waits",
        || async {
            // Not "taking this daemon's worker identity", the step just before.
            healthz(port2)
                .await
                .filter(|(_, b)| b.contains("another daemon with this [worker] id"))
        },
    )
    .await;
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("another daemon with this [worker] id"),
        "{v}"
    );
    // Any path, not only /healthz.
    let r = reqwest::get(format!("http://127.0.0.1:{port2}/"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    // The first one stops: the second takes the identity over and serves.
    first.kill().await.unwrap();
    wait_until(
        Duration::from_secs(20),
        "the second daemon to take the identity over",
        || async { healthz(port2).await.filter(|(c, _)| *c == 200).map(|_| ()) },
    )
    .await;
    second.kill().await.unwrap();
}
