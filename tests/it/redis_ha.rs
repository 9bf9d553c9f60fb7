//! A daemon without a usable Redis primary gives up after `[redis] give_up_after_secs` with exit
//! status 69 (so systemd restarts it) instead of staying up and idle, at start and while running;
//! and `[redis] min_replica_acks` holds every call to TikTok while too few replicas have the post's
//! record, then lets the posts go, each exactly once.

use std::time::Duration;

use crate::app::{TestApp, path_str};
use crate::support::{TestRedis, free_port, wait_until};

const T: Duration = Duration::from_secs(60);

async fn requests(app: &TestApp, endpoint: &str) -> u64 {
    app.sim.stats().await["requests"][endpoint]
        .as_u64()
        .unwrap_or(0)
}

/// The binary started with no Redis to reach exits 69 after `give_up_after_secs`, saying why.
#[test]
fn run_without_a_reachable_redis_exits_69_after_give_up_after_secs() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("token.key");
    tiktok_poster::accounts::TokenKey::generate_file(&key).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[redis]\nurl = \"redis://127.0.0.1:{}\"\ngive_up_after_secs = 2\n[http]\nlisten = \"127.0.0.1:{}\"\n[tokens]\nencryption_key_file = {:?}\n",
            free_port(),
            free_port(),
            path_str(&key)
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + T;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not give up on an unreachable Redis");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(69), "{err}");
    assert!(
        err.contains("no usable Redis primary for 2 s ([redis] give_up_after_secs)")
            && err.contains("cannot reach Redis"),
        "the message says what it waited for and the last problem: {err}"
    );
}

/// A running daemon whose Redis goes away answers 503 meanwhile, then stops by itself with the
/// give-up error (exit 69 from the binary); a short outage within the limit is waited out.
#[tokio::test]
async fn a_running_daemon_gives_up_on_a_lost_redis_and_waits_out_a_short_outage() {
    let mut app = TestApp::spawn(|_| {}, |s| s.redis.give_up_after_secs = 4).await;
    app.connect("main", false).await;
    let (id, sha) = app.submit("main", "before.mp4", 300_000).await;
    app.wait_state(&id, &["published"], T).await;
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);

    // A short outage (about 1 s) is waited out.
    app.redis.kill();
    wait_until(T, "/healthz to report the outage", || async {
        (app.healthz().await.0 == 503).then_some(())
    })
    .await;
    app.redis.restart();
    let (id, sha) = app.submit("main", "after-short.mp4", 300_000).await;
    app.wait_state(&id, &["published"], T).await;
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);

    // A long one is not.
    app.redis.kill();
    let err = app
        .daemon_stops_by_itself(T)
        .await
        .expect_err("the daemon gives up");
    let gave_up = err
        .downcast_ref::<tiktok_poster::db::Unavailable>()
        .unwrap_or_else(|| panic!("not the give-up error: {err:#}"));
    assert!(
        gave_up.0.contains("give_up_after_secs") && gave_up.0.contains("status 69"),
        "{}",
        gave_up.0
    );
}

/// With `min_replica_acks = 1`, posts go while the replica is connected; with the replica down, no
/// call reaches TikTok's init, `/healthz` says why, the posts spend no attempts; once the replica
/// is back, each is published exactly once.
#[tokio::test]
async fn min_replica_acks_holds_posts_while_the_replica_is_down() {
    let primary = TestRedis::start(true);
    let replica_of = vec![
        "--replicaof".to_string(),
        "127.0.0.1".to_string(),
        primary.port.to_string(),
    ];
    let mut replica = TestRedis::start_with(true, replica_of, "");
    let app = TestApp::spawn_on(
        primary,
        |_| {},
        |s| {
            s.redis.min_replica_acks = 1;
            s.redis.replica_ack_timeout_ms = 200;
        },
    )
    .await;
    app.connect("main", false).await;
    let (id, sha) = app.submit("main", "replicated.mp4", 300_000).await;
    app.wait_state(&id, &["published"], T).await;
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);
    wait_until(T, "/healthz to count the replica", || async {
        (app.healthz().await.1["replicas"]["online"] == 1).then_some(())
    })
    .await;
    let (_, h) = app.healthz().await;
    assert_eq!(h["replicas"]["wanted"], 1, "{h}");
    assert_eq!(h["redis_primary"]["known"], true, "{h}");

    replica.kill();
    wait_until(T, "/healthz to miss the replica", || async {
        (app.healthz().await.0 == 503).then_some(())
    })
    .await;
    let (_, h) = app.healthz().await;
    assert_eq!(h["replicas"]["online"], 0, "{h}");
    let problem = h["problem"].as_str().unwrap_or_default().to_string();
    assert!(
        problem.contains("only 0 of the 1 replicas [redis] min_replica_acks asks for"),
        "{h}"
    );
    let inits = requests(&app, "video_init").await;
    let held: Vec<(String, String)> = {
        let mut v = Vec::new();
        for n in 0..2 {
            v.push(app.submit("main", &format!("held{n}.mp4"), 300_000).await);
        }
        v
    };
    // Each post is tried (and handed back) several times while the replica is down.
    wait_until(T, "the held posts to say why they wait", || async {
        let mut all = true;
        for (id, _) in &held {
            let p = app.post(id).await;
            all &= p
                .get("error_message")
                .is_some_and(|m| m.contains("min_replica_acks"));
        }
        all.then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        requests(&app, "video_init").await,
        inits,
        "no init while the replica is down"
    );
    for (id, _) in &held {
        let p = app.post(id).await;
        assert_ne!(p["state"], "published", "{p:?}");
        // Several claims went by; the one in flight may have counted itself (1), no more.
        let count = |f: &str| p.get(f).map_or(0, |v| v.parse::<i64>().unwrap());
        assert!(
            count("attempts") <= 1 && count("claims") <= 1,
            "waiting for replicas spends neither attempts nor claims: {p:?}"
        );
        assert!(
            p.get("init_started_ms").is_none_or(|v| v.is_empty()),
            "no init is on record: {p:?}"
        );
    }

    replica.restart();
    for (id, sha) in &held {
        app.wait_state(id, &["published"], T).await;
        assert_eq!(app.sim_posts_with(sha).await.len(), 1, "exactly once");
    }
    let (code, h) = app.healthz().await;
    assert_eq!(
        (code, &h["replicas"]["online"]),
        (200, &serde_json::json!(1)),
        "{h}"
    );
}
