//! Hardening against faults (issue 11): the daily budget, Redis faults, a wrong token key, and the
//! smaller operator traps. A real redis-server, the simulator, the daemon in-process or as a binary.

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;

use crate::app::TestApp;

const T: Duration = Duration::from_secs(30);

/// Fills the account's init window (6 calls a minute) as if `age_ms` ago, so the next init waits.
async fn fill_init_window(app: &TestApp, account: &str, age_ms: i64) {
    let mut conn = app.redis.conn().await;
    let at = chrono::Utc::now().timestamp_millis() - age_ms;
    for i in 0..6 {
        let _: () = conn
            .zadd(
                format!("tiktok-poster:rate:{account}:init"),
                format!("earlier-{i}"),
                at,
            )
            .await
            .unwrap();
    }
}

/// Ids of the posts the events stream shows handed back for the init rate window.
async fn handed_back_for_init(app: &TestApp) -> Vec<String> {
    let mut conn = app.redis.conn().await;
    let reply: redis::streams::StreamRangeReply =
        conn.xrange_all("tiktok-poster:events").await.unwrap();
    reply
        .ids
        .iter()
        .filter(|e| {
            e.get::<String>("state").as_deref() == Some("queued")
                && e.get::<String>("message")
                    .is_some_and(|m| m.contains("init calls a minute"))
        })
        .filter_map(|e| e.get::<String>("id"))
        .collect()
}

async fn budget_holders(app: &TestApp, account: &str) -> Vec<String> {
    let mut conn = app.redis.conn().await;
    conn.zrange(format!("tiktok-poster:rate:{account}:daily"), 0, -1)
        .await
        .unwrap()
}

/// Posts handed back for TikTok's init rate window keep no budget slot: three posts against a budget
/// of three, each handed back at least once, are all published, and each holds exactly one slot.
#[tokio::test]
async fn a_post_handed_back_before_init_gives_its_budget_slot_back() {
    let app = TestApp::spawn(|_| {}, |s| s.worker.daily_post_budget = 3).await;
    app.connect("main", false).await;
    // The window frees in about 8 s: longer than a worker waits in place (5 s), so every post is
    // handed back once with its budget already checked.
    fill_init_window(&app, "main", 52_000).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            app.submit("main", &format!("handed-back{i}.mp4"), 300_000)
                .await
                .0,
        );
    }
    crate::support::wait_until(
        T,
        "every post to be handed back for the init window",
        || async {
            let handed_back = handed_back_for_init(&app).await;
            ids.iter().all(|id| handed_back.contains(id)).then_some(())
        },
    )
    .await;
    for id in &ids {
        let post = app.wait_state(id, &["published", "deferred"], T).await;
        assert_eq!(post["state"], "published", "{post:#?}");
    }
    let mut holders = budget_holders(&app, "main").await;
    holders.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(
        holders, expected,
        "one slot per published post, none for the hand-backs"
    );
}

/// An init TikTok refuses creates no post, so the slot comes back; a published post keeps its own.
#[tokio::test]
async fn an_init_tiktok_refused_gives_the_budget_slot_back() {
    let app = TestApp::spawn(|_| {}, |s| s.worker.daily_post_budget = 1).await;
    app.connect("main", false).await;
    app.sim
        .fault(json!({"endpoint": "video_init", "error": "privacy_level_option_mismatch"}))
        .await;
    let (refused, _) = app.submit("main", "refused.mp4", 300_000).await;
    let post = app.wait_state(&refused, &["failed"], T).await;
    assert_eq!(post["error_code"], "privacy_level_option_mismatch");
    assert!(budget_holders(&app, "main").await.is_empty());
    // The budget of one is still free for the next post.
    let (next, _) = app.submit("main", "next.mp4", 300_000).await;
    let post = app.wait_state(&next, &["published", "deferred"], T).await;
    assert_eq!(post["state"], "published", "{post:#?}");
    assert_eq!(budget_holders(&app, "main").await, vec![next]);
}

/// However often a post asks (attempts, hand-backs, restarts), it holds one slot; a release frees it.
#[tokio::test]
async fn a_post_holds_at_most_one_budget_slot() {
    use tiktok_poster::worker::rate::{Held, Limit, RateLimiter};
    let redis = crate::support::TestRedis::start(false);
    let conn = tiktok_poster::db::connect(&redis.url()).await.unwrap();
    let limiter = RateLimiter::new(conn, tiktok_poster::db::Keys::new("tiktok-poster"));
    let daily = Limit {
        name: "daily",
        limit: 2,
        window: Duration::from_secs(86_400),
    };
    assert_eq!(
        limiter.hold("acct", daily, "post-a").await.unwrap(),
        Held::Taken
    );
    // Later attempts of the same post take nothing, and are told so (they must never give the slot
    // back: the first attempt may have reached TikTok's init).
    for _ in 0..4 {
        assert_eq!(
            limiter.hold("acct", daily, "post-a").await.unwrap(),
            Held::Already
        );
    }
    assert_eq!(
        limiter.hold("acct", daily, "post-b").await.unwrap(),
        Held::Taken
    );
    let full = limiter.hold("acct", daily, "post-c").await.unwrap();
    assert!(
        matches!(full, Held::Full(w) if w > Duration::from_secs(86_000)),
        "{full:?}"
    );
    limiter.release("acct", daily, "post-a").await.unwrap();
    assert_eq!(
        limiter.hold("acct", daily, "post-c").await.unwrap(),
        Held::Taken
    );
}

/// With another token key configured, the account shows `key_mismatch` (not `ok`) and a due post waits
/// (`deferred`, `token_key_mismatch`) instead of failing; with the right key back it is published.
#[tokio::test]
async fn a_wrong_token_key_makes_posts_wait_not_fail() {
    let mut app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    app.stop_daemon().await;
    let key_file = app.settings.tokens.encryption_key_file.clone();
    let right = std::fs::read(&key_file).unwrap();
    let other = key_file.with_file_name("other.key");
    let wrong = tiktok_poster::accounts::TokenKey::generate_file(&other).unwrap();
    std::fs::copy(&other, &key_file).unwrap();
    app.start_daemon().await;

    let conn = tiktok_poster::db::connect(&app.redis.url()).await.unwrap();
    let client = tiktok_poster::tiktok::Client::new(app.settings.client_config().unwrap()).unwrap();
    let accounts = tiktok_poster::accounts::Accounts::new(
        conn,
        tiktok_poster::db::Keys::new("tiktok-poster"),
        wrong.clone(),
        client,
    );
    let list = accounts.list().await.unwrap();
    assert_eq!(list[0].state, "key_mismatch", "{list:?}");
    let mismatches = accounts.key_mismatches().await.unwrap();
    assert_eq!(mismatches.len(), 1);
    assert_ne!(
        mismatches[0].1,
        wrong.id(),
        "names the key that sealed them"
    );

    let (id, sha) = app.submit("main", "waits-for-key.mp4", 300_000).await;
    let post = app.wait_state(&id, &["deferred", "failed"], T).await;
    assert_eq!(post["state"], "deferred", "{post:#?}");
    assert_eq!(post["error_code"], "token_key_mismatch");
    assert!(
        post["error_message"].contains(wrong.id()),
        "{}",
        post["error_message"]
    );

    app.stop_daemon().await;
    std::fs::write(&key_file, &right).unwrap();
    app.start_daemon().await;
    // The post looks again every five minutes; bring that look forward instead of waiting it out.
    let mut conn = app.redis.conn().await;
    let _: () = conn
        .zadd(
            "tiktok-poster:q:due",
            &id,
            chrono::Utc::now().timestamp_millis(),
        )
        .await
        .unwrap();
    let post = app.wait_state(&id, &["published"], T).await;
    assert_eq!(post["state"], "published");
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);
}

/// Runs the binary with a config file of its own for this app (Redis URL and key file as given).
fn cli(
    app: &TestApp,
    redis_url: &str,
    extra: &str,
    args: &[&str],
) -> (Option<i32>, String, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cfg = app.dir.path().join(format!("cli-{n}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[redis]\nurl = \"{redis_url}\"\n[tiktok]\napi_base = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[tokens]\nencryption_key_file = \"{}\"\n{extra}",
            app.sim.sim.base_url,
            app.settings.tokens.encryption_key_file.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn healthz(app: &TestApp) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", app.base))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .expect("/healthz answers within 3 s");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// A Redis that came back empty is told as a data loss (an ERROR, `/healthz` 503 with the reason) and
/// stays so, reconnected or not, until the operator runs `tiktok-poster redis-loss-ack`.
#[tokio::test]
async fn a_redis_restarted_empty_is_reported_until_acknowledged() {
    let mut app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let (id, _) = app.submit("main", "before-loss.mp4", 300_000).await;
    app.wait_state(&id, &["published"], T).await;
    app.redis.restart_empty();
    let (_, body) = crate::support::wait_until(T, "/healthz to report the loss", || async {
        let (status, body) = healthz(&app).await;
        (status == 503
            && body["problem"]
                .as_str()
                .is_some_and(|p| p.contains("lost this daemon's data")))
        .then_some((status, body))
    })
    .await;
    assert!(
        body["problem"].as_str().unwrap().contains("redis-loss-ack"),
        "names the command: {body}"
    );
    // Redis answers again, and the daemon still does not call itself healthy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = healthz(&app).await;
    assert_eq!(status, 503, "{body}");
    let (code, out, err) = cli(&app, &app.redis.url(), "", &["redis-loss-ack"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("acknowledged"), "{out}");
    crate::support::wait_until(T, "/healthz to be ok after the acknowledgement", || async {
        (healthz(&app).await.0 == 200).then_some(())
    })
    .await;
}

/// Redis at `maxmemory` is reported as out of memory (health not ok), not as unreachable.
#[tokio::test]
async fn a_redis_out_of_memory_is_told_as_such() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    let mut conn = app.redis.conn().await;
    config_set(&mut conn, "maxmemory", "1").await;
    let body = crate::support::wait_until(T, "/healthz to say out of memory", || async {
        let (status, body) = healthz(&app).await;
        (status == 503
            && body["problem"]
                .as_str()
                .is_some_and(|p| p.contains("out of memory")))
        .then_some(body)
    })
    .await;
    assert_eq!(body["ok"], false);
    config_set(&mut conn, "maxmemory", "0").await;
    crate::support::wait_until(T, "/healthz to be ok again", || async {
        (healthz(&app).await.0 == 200).then_some(())
    })
    .await;
}

/// A stalled Redis gets a 503 from `/healthz` within about a second, not silence.
#[tokio::test]
async fn a_stalled_redis_gets_a_prompt_503() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    assert_eq!(healthz(&app).await.0, 200);
    let url = app.redis.url();
    let sleeper = tokio::task::spawn_blocking(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        redis::cmd("DEBUG").arg("SLEEP").arg(6).query::<()>(&mut c)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let (status, body) = healthz(&app).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["problem"]
            .as_str()
            .is_some_and(|p| p.contains("does not answer")),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    sleeper.await.unwrap().unwrap();
}

/// A password Redis refuses is a configuration error (exit 78, the password never printed), not a
/// wait for Redis that never ends.
#[tokio::test]
async fn a_wrong_redis_password_is_a_configuration_error() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    let mut conn = app.redis.conn().await;
    config_set(&mut conn, "requirepass", "the-right-one").await;
    let port = app.redis.port;
    for url in [
        format!("redis://:hunter2-wrong@127.0.0.1:{port}"),
        format!("redis://127.0.0.1:{port}"),
    ] {
        let (code, out, err) = cli(&app, &url, "", &["run"]);
        assert_eq!(code, Some(78), "{url}: {out}{err}");
        assert!(err.contains("refused the credentials"), "{err}");
        assert!(
            !err.contains("hunter2") && !out.contains("hunter2"),
            "{out}{err}"
        );
    }
}

/// `check-config` masks the Redis password and refuses what `run` refuses: a missing key file and a
/// client secret file other users may read.
#[tokio::test]
async fn check_config_masks_the_redis_password_and_refuses_what_run_refuses() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    let url = format!("redis://:hunter2-secret@127.0.0.1:{}", app.redis.port);
    let (code, out, err) = cli(&app, &url, "", &["check-config"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("***"), "{out}");
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );

    let secret = app.dir.path().join("client_secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg_secret = format!(
        "[redis]\nurl = \"{}\"\n[tiktok]\nclient_secret_file = \"{}\"\n[tokens]\nencryption_key_file = \"{}\"\n",
        app.redis.url(),
        secret.display(),
        app.settings.tokens.encryption_key_file.display()
    );
    let cfg = app.dir.path().join("secret-mode.toml");
    std::fs::write(&cfg, cfg_secret).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");

    let missing = format!(
        "[redis]\nurl = \"{}\"\n[tokens]\nencryption_key_file = \"{}\"\n",
        app.redis.url(),
        app.dir.path().join("no-such.key").display()
    );
    std::fs::write(&cfg, missing).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("no-such.key") && err.contains("keys generate"),
        "{err}"
    );
}

/// With no configuration file anywhere, the CLI says which defaults it uses instead of silently
/// talking to redis://127.0.0.1:6379.
#[test]
fn the_cli_without_a_config_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"));
    cmd.current_dir(dir.path()).arg("check-config");
    for (k, _) in std::env::vars() {
        if k.starts_with("TIKTOK_POSTER") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if std::path::Path::new("/etc/tiktok-poster/config.toml").exists() {
        panic!(
            "this machine has /etc/tiktok-poster/config.toml; the test needs a machine without one"
        );
    }
    assert!(err.contains("no configuration file found"), "{err}");
    assert!(err.contains("redis://127.0.0.1:6379"), "{err}");
}

/// The shipped ACL file, loaded whole by a real redis-server: no passwordless default user, the daemon
/// runs and publishes as its own user, and the producer can add a post and read back what the README
/// says it can (the post hash, events, rejected), but not the account store or any write but XADD.
#[tokio::test]
async fn the_shipped_acl_file_runs_the_daemon_and_confines_the_producer() {
    let dir = tempfile::tempdir().unwrap();
    let acl = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/redis-producer.acl"
    ))
    .unwrap()
    .replace("CHANGE-ME-DAEMON", "daemon-pw")
    .replace("CHANGE-ME", "producer-pw");
    let acl_file = dir.path().join("users.acl");
    std::fs::write(&acl_file, acl).unwrap();
    let redis = crate::support::TestRedis::start_with(
        true,
        vec!["--aclfile".into(), acl_file.display().to_string()],
        "tiktok-poster:daemon-pw@",
    );
    let port = redis.port;
    let anonymous = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await;
    let refused = match anonymous {
        Err(e) => e.to_string(),
        Ok(mut c) => redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .unwrap_err()
            .to_string(),
    };
    assert!(
        refused.contains("NOAUTH")
            || refused.contains("WRONGPASS")
            || refused.to_lowercase().contains("auth"),
        "{refused}"
    );

    let app = TestApp::spawn_on(redis, |_| {}, |_| {}).await;
    app.connect("main", false).await;
    let (video, sha) = app.video("acl.mp4", 300_000);
    let mut producer =
        redis::Client::open(format!("redis://producer:producer-pw@127.0.0.1:{port}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
    let id: String = producer
        .xadd(
            "tiktok-poster:submit",
            "*",
            &[
                ("account", "main"),
                ("video", crate::app::path_str(&video)),
                ("privacy_level", "SELF_ONLY"),
            ],
        )
        .await
        .unwrap();
    app.wait_state(&id, &["published"], T).await;
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);
    let post: std::collections::HashMap<String, String> = producer
        .hgetall(format!("tiktok-poster:post:{id}"))
        .await
        .unwrap();
    assert_eq!(post["state"], "published");
    let events: redis::streams::StreamRangeReply =
        producer.xrange_all("tiktok-poster:events").await.unwrap();
    assert!(!events.ids.is_empty());
    let _: redis::streams::StreamRangeReply =
        producer.xrange_all("tiktok-poster:rejected").await.unwrap();
    for denied in [
        redis::cmd("HGETALL")
            .arg("tiktok-poster:account:main")
            .clone(),
        redis::cmd("HSET")
            .arg(format!("tiktok-poster:post:{id}"))
            .arg("state")
            .arg("failed")
            .clone(),
        redis::cmd("XADD")
            .arg("tiktok-poster:rejected")
            .arg("*")
            .arg("a")
            .arg("b")
            .clone(),
        redis::cmd("GET").arg("other-app:key").clone(),
    ] {
        let e = denied
            .query_async::<redis::Value>(&mut producer)
            .await
            .unwrap_err();
        assert!(
            format!("{e}").contains("NOPERM") || format!("{e:?}").contains("NoPerm"),
            "{e:?}"
        );
    }
}

/// The README's `XPENDING` recipe names the consumer group ingest really uses.
#[test]
fn the_readme_xpending_recipe_names_the_real_group() {
    let readme = include_str!("../../README.md");
    let line = readme
        .lines()
        .find(|l| l.contains("XPENDING tiktok-poster:submit"))
        .expect("README has an XPENDING recipe");
    let group = line.split_whitespace().last().unwrap();
    assert_eq!(group, tiktok_poster::ingest::GROUP, "{line}");
}

/// `CONFIG SET key value` on the test's own Redis.
async fn config_set(conn: &mut redis::aio::MultiplexedConnection, key: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query_async(conn)
        .await
        .unwrap();
}
