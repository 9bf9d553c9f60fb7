//! Accounts end to end: the connect flow, tokens never in clear text, proactive single-flight refresh.

use std::time::Duration;

use redis::AsyncCommands;

use crate::app::{TestApp, path_str};
use crate::support::wait_until;

/// A forged or replayed `state` is refused with a 4xx and a page that says what to do.
#[tokio::test]
async fn a_forged_or_replayed_state_is_refused() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Start a real connect, and keep the callback URL the simulator sends back.
    let r = http
        .get(format!("{}/connect?account=main&sim_username=st", app.base))
        .send()
        .await
        .unwrap();
    let authorize = r.headers()["location"].to_str().unwrap().to_string();
    let r = http.get(&authorize).send().await.unwrap();
    let callback = r.headers()["location"].to_str().unwrap().to_string();
    let forged = callback.replace("state=", "state=forged");
    let r = http.get(&forged).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let page = r.text().await.unwrap();
    assert!(page.contains("unknown, expired or already used"), "{page}");
    let r = http.get(&callback).send().await.unwrap();
    assert!(r.status().is_success());
    assert!(r.text().await.unwrap().contains("is connected"));
    let r = http.get(&callback).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "a replayed state is refused");
    let page = http
        .get(format!("{}/", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("main") && page.contains("@st"),
        "the account is listed: {page}"
    );
    assert!(page.contains("Next refresh"), "{page}");
    // A user who declines comes back with TikTok's error, shown in words.
    let r = http
        .get(format!("{}/connect?account=shy&sim_deny=1", app.base))
        .send()
        .await
        .unwrap();
    let authorize = r.headers()["location"].to_str().unwrap().to_string();
    let r = http.get(&authorize).send().await.unwrap();
    let callback = r.headers()["location"].to_str().unwrap().to_string();
    let r = http.get(&callback).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let page = r.text().await.unwrap();
    assert!(page.contains("declined to connect"), "{page}");
}

/// No key or value anywhere in Redis holds a token in clear text, after connects, refreshes and posts.
#[tokio::test]
async fn no_token_is_stored_in_clear_text() {
    let app = TestApp::spawn(|c| c.token_ttl_secs = 2, |_| {}).await;
    app.connect("main", false).await;
    let (id, _) = app.submit("main", "scan.mp4", 200_000).await;
    app.wait_state(&id, &["published"], Duration::from_secs(20))
        .await;
    // Let at least one proactive refresh happen.
    wait_until(Duration::from_secs(10), "a refresh", || async {
        (app.sim.stats().await["refreshes"].as_u64().unwrap_or(0) >= 1).then_some(())
    })
    .await;
    let mut conn = app.redis.conn().await;
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    let mut dump = String::new();
    for k in &keys {
        let t: String = redis::cmd("TYPE")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        let v: redis::Value = match t.as_str() {
            "string" => redis::cmd("GET")
                .arg(k)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "hash" => redis::cmd("HGETALL")
                .arg(k)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(k)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "set" => redis::cmd("SMEMBERS")
                .arg(k)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "stream" => redis::cmd("XRANGE")
                .arg(k)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap(),
            _ => redis::Value::Nil,
        };
        dump.push_str(k);
        dump.push_str(&format!("{v:?}"));
    }
    assert!(keys.len() > 5, "{keys:?}");
    assert!(!dump.contains("act."), "an access token in clear text");
    assert!(!dump.contains("rft."), "a refresh token in clear text");
    assert!(
        !dump.contains("upload_token="),
        "an upload URL in clear text"
    );
}

/// With tokens living 5 s, posts spread over a minute are all published and TikTok never sees a call made
/// with an expired token: refreshes happen ahead of time.
#[tokio::test]
async fn short_lived_tokens_are_refreshed_ahead_so_no_call_uses_an_expired_one() {
    let app = TestApp::spawn(|c| c.token_ttl_secs = 5, |_| {}).await;
    // Three accounts, so TikTok's 6 inits a minute per account are not what this test meets.
    for a in ["a0", "a1", "a2"] {
        app.connect(a, false).await;
    }
    let mut ids = Vec::new();
    for i in 0..15 {
        let (video, _) = app.video(&format!("spread{i}.mp4"), 200_000);
        let account = format!("a{}", i % 3);
        ids.push(
            app.xadd(&[
                ("account", &account),
                ("video", path_str(&video)),
                ("privacy_level", "SELF_ONLY"),
            ])
            .await,
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    for id in &ids {
        app.wait_state(id, &["published"], Duration::from_secs(20))
            .await;
    }
    let stats = app.sim.stats().await;
    assert_eq!(stats["expired_token_calls"], 0, "{stats}");
    let refreshes = stats["refreshes"].as_u64().unwrap();
    assert!(
        refreshes >= 3 * 15,
        "each account refreshed ahead of each expiry over a minute: {stats}"
    );
}

/// Four daemons share one Redis and one account with 3-second tokens: refreshes stay one per cycle (a
/// second concurrent refresh would use a rotated token and break the account), and the account stays ok.
#[tokio::test]
async fn four_daemons_refresh_one_account_single_flight() {
    let app = TestApp::spawn(|c| c.token_ttl_secs = 3, |_| {}).await;
    app.connect("main", false).await;
    let started = std::time::Instant::now();
    let mut siblings = Vec::new();
    for i in 0..3 {
        siblings.push(app.spawn_sibling(&format!("sib{i}")).await);
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    let elapsed = started.elapsed().as_secs_f64();
    for (token, task) in siblings {
        token.cancel();
        task.await.unwrap().unwrap();
    }
    let stats = app.sim.stats().await;
    let refreshes = stats["refreshes"].as_f64().unwrap();
    // A 3 s token is refreshed 1.2 to 1.5 s before it expires: one refresh every 1.5 to 1.8 s.
    let most = elapsed / 1.5 + 1.0;
    assert!(
        refreshes >= elapsed / 1.8 - 1.0 && refreshes <= most,
        "{refreshes} refreshes in {elapsed:.1} s: {stats}"
    );
    assert!(
        stats["errors"].get("invalid_grant").is_none(),
        "no refresh used a rotated token: {stats}"
    );
    let mut conn = app.redis.conn().await;
    let state: String = conn
        .hget("tiktok-poster:account:main", "state")
        .await
        .unwrap();
    assert_eq!(state, "ok");
    let (id, sha) = app.submit("main", "after.mp4", 200_000).await;
    app.wait_state(&id, &["published"], Duration::from_secs(20))
        .await;
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);
}

fn signed(secret: &str, body: &str) -> String {
    use hmac::Mac;
    let t = chrono::Utc::now().timestamp();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},s={}", hex::encode(mac.finalize().into_bytes()))
}

/// Webhooks: a bad signature gets 401; `authorization.removed` flags the account at once; a repeated
/// delivery is ignored; `post.publish.complete` settles a post ahead of polling.
#[tokio::test]
async fn webhooks_are_verified_and_act_on_accounts_and_posts() {
    let app = TestApp::spawn(|c| c.publish_delay_ms = 600_000, |_| {}).await;
    app.connect("main", false).await;
    let http = reqwest::Client::new();
    let url = format!("{}/webhooks/tiktok", app.base);
    let mut conn = app.redis.conn().await;
    let open_id: String = conn
        .hget("tiktok-poster:account:main", "open_id")
        .await
        .unwrap();

    // A post that TikTok keeps processing (the simulator's delay is ten minutes).
    let (id, _) = app.submit("main", "hook.mp4", 200_000).await;
    let post = app
        .wait_state(&id, &["processing"], Duration::from_secs(20))
        .await;
    let content =
        serde_json::json!({"publish_id": post["publish_id"], "publish_type": "DIRECT_POST"})
            .to_string();
    let body = serde_json::json!({"client_key": "k", "event": "post.publish.complete", "create_time": 1, "user_openid": open_id, "content": content}).to_string();
    let bad = http
        .post(&url)
        .header("TikTok-Signature", signed("wrong-secret", &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    let ok = http
        .post(&url)
        .header("TikTok-Signature", signed("test-secret", &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    app.wait_state(&id, &["published"], Duration::from_secs(10))
        .await;
    let again = http
        .post(&url)
        .header("Tiktok-Signature", signed("test-secret", &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.text().await.unwrap(), "duplicate");

    let removed = serde_json::json!({"client_key": "k", "event": "authorization.removed", "create_time": 2, "user_openid": open_id, "content": "{\"reason\":1}"}).to_string();
    let r = http
        .post(&url)
        .header("TikTok-Signature", signed("test-secret", &removed))
        .body(removed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let state: String = conn
        .hget("tiktok-poster:account:main", "state")
        .await
        .unwrap();
    assert_eq!(state, "reauth_required");
}

/// `keys rotate` re-seals every token and upload URL under the new key; the daemon then runs with the
/// new key alone.
#[tokio::test]
async fn keys_rotate_reseals_everything_under_the_new_key() {
    let mut app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let (video, _) = app.video("rot.mp4", 200_000);
    let id = app
        .xadd(&[
            ("account", "main"),
            ("video", path_str(&video)),
            ("privacy_level", "SELF_ONLY"),
        ])
        .await;
    app.wait_state(&id, &["published"], Duration::from_secs(20))
        .await;
    app.stop_daemon().await;
    let old = app.settings.tokens.encryption_key_file.clone();
    let new = app.dir.path().join("new.key");
    let new_key = tiktok_poster::accounts::TokenKey::generate_file(&new).unwrap();
    let cfg = app.dir.path().join("rotate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[redis]\nurl = \"{}\"\n[tokens]\nencryption_key_file = \"{}\"\nprevious_key_file = \"{}\"\n",
            app.redis.url(),
            new.display(),
            old.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .arg("--config")
        .arg(&cfg)
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("re-sealed 3 values"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut conn = app.redis.conn().await;
    for (key, field) in [
        ("tiktok-poster:account:main", "access_sealed"),
        ("tiktok-poster:account:main", "refresh_sealed"),
        (&*format!("tiktok-poster:post:{id}"), "upload_url_sealed"),
    ] {
        let v: String = conn.hget(key, field).await.unwrap();
        assert!(
            v.starts_with(&format!("v1.{}.", new_key.id())),
            "{key} {field} still under the old key"
        );
    }
    // The daemon with only the new key: refreshes and posts work.
    app.settings.tokens.encryption_key_file = new;
    app.start_daemon().await;
    // Async, so the in-process simulator keeps serving while the command runs.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .arg("--config")
        .arg(&cfg)
        .args(["accounts", "refresh", "main"])
        .env("TIKTOK_POSTER__TIKTOK__API_BASE", &app.sim.sim.base_url)
        .env("TIKTOK_POSTER__TIKTOK__CLIENT_KEY", "k")
        .env("TIKTOK_POSTER__TIKTOK__CLIENT_SECRET", "s")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (id2, sha2) = app.submit("main", "rot2.mp4", 200_000).await;
    app.wait_state(&id2, &["published"], Duration::from_secs(20))
        .await;
    assert_eq!(app.sim_posts_with(&sha2).await.len(), 1);
}

/// An account whose authorization ends within 7 days is flagged: the metric, `accounts list` and the
/// page; /metrics also carries the post and queue figures.
#[tokio::test]
async fn reconnect_warnings_show_in_metrics_list_and_page() {
    let app = TestApp::spawn(|c| c.refresh_ttl_secs = 3 * 86_400, |_| {}).await;
    app.connect("soon", false).await;
    let (id, _) = app.submit("soon", "m.mp4", 200_000).await;
    app.wait_state(&id, &["published"], Duration::from_secs(20))
        .await;
    let text = app.get_text("/metrics").await;
    assert!(
        text.contains("tiktok_poster_accounts_reconnect_soon 1"),
        "{text}"
    );
    assert!(
        text.contains("tiktok_poster_post_transitions_total{state=\"published\"}"),
        "{text}"
    );
    assert!(
        text.contains("tiktok_poster_uploaded_bytes_total"),
        "{text}"
    );
    assert!(text.contains("tiktok_poster_queue_leased"), "{text}");
    let page = reqwest::get(format!("{}/", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<td class=bad>"),
        "the reconnect date is flagged on the page: {page}"
    );
    let cfg = app.dir.path().join("list.toml");
    std::fs::write(
        &cfg,
        format!(
            "[redis]\nurl = \"{}\"\n[tokens]\nencryption_key_file = \"{}\"\n",
            app.redis.url(),
            app.settings.tokens.encryption_key_file.display()
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .arg("--config")
        .arg(&cfg)
        .args(["accounts", "list"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("soon") && stdout.contains("(soon!)"),
        "{stdout}"
    );
}

fn cli_config(app: &TestApp, redirect: &str) -> std::path::PathBuf {
    let cfg = app.dir.path().join(format!("cli-{}.toml", redirect.len()));
    std::fs::write(
        &cfg,
        format!(
            "[redis]\nurl = \"{}\"\n[tiktok]\nclient_key = \"k\"\nclient_secret = \"s\"\napi_base = \"{sim}\"\nauth_base = \"{sim}\"\nredirect_uri = \"{redirect}\"\n[tokens]\nencryption_key_file = \"{}\"\n",
            app.redis.url(),
            app.settings.tokens.encryption_key_file.display(),
            sim = app.sim.sim.base_url,
        ),
    )
    .unwrap();
    cfg
}

/// `accounts connect NAME` on a headless server prints the URL and waits for the callback: served by
/// itself when nothing listens on the redirect address, or by the daemon when it does. `accounts
/// remove` then revokes the token at TikTok and forgets the account.
#[tokio::test]
async fn accounts_connect_waits_for_the_callback_and_remove_revokes() {
    use tokio::io::AsyncBufReadExt;
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    let port = crate::support::free_port();
    for (name, redirect) in [
        ("headless", format!("http://127.0.0.1:{port}/cb")),
        ("viadaemon", app.settings.tiktok.redirect_uri.clone()),
    ] {
        let cfg = cli_config(&app, &redirect);
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
            .arg("--config")
            .arg(&cfg)
            .args(["accounts", "connect", name])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the command prints the URL");
            if line.trim().starts_with("http") {
                break line.trim().to_string();
            }
        };
        assert!(
            url.contains("client_key=k") && url.contains("state="),
            "{url}"
        );
        // The user opens the URL; the simulator approves and redirects to the callback.
        let mut opened = None;
        for _ in 0..50 {
            match reqwest::get(&url).await {
                Ok(r) => {
                    opened = Some(r.text().await.unwrap());
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let page = opened.expect("the callback answered");
        assert!(page.contains("onnected"), "{page}");
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{name}: {status:?}");
        let mut rest = String::new();
        while let Ok(Some(l)) = lines.next_line().await {
            rest.push_str(&l);
        }
        assert!(rest.contains(&format!("{name}: connected")), "{rest}");
    }
    let cfg = cli_config(&app, &app.settings.tiktok.redirect_uri);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .arg("--config")
        .arg(&cfg)
        .args(["accounts", "remove", "headless"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        app.sim.stats().await["requests"]["revoke"],
        1,
        "revoked at TikTok"
    );
    let mut conn = app.redis.conn().await;
    let gone: bool = conn.exists("tiktok-poster:account:headless").await.unwrap();
    assert!(!gone);
}

/// A token endpoint outage does not break an account: refreshes are retried with backoff and posts
/// still go through once TikTok answers again.
#[tokio::test]
async fn transient_refresh_failures_are_retried() {
    let app = TestApp::spawn(|c| c.token_ttl_secs = 3, |_| {}).await;
    app.connect("main", false).await;
    app.sim
        .fault(serde_json::json!({"endpoint": "token", "status": 503, "times": 3}))
        .await;
    wait_until(
        Duration::from_secs(30),
        "the outage to pass and a refresh to succeed",
        || async { (app.sim.stats().await["refreshes"].as_u64().unwrap_or(0) >= 1).then_some(()) },
    )
    .await;
    let mut conn = app.redis.conn().await;
    let state: String = conn
        .hget("tiktok-poster:account:main", "state")
        .await
        .unwrap();
    assert_eq!(state, "ok");
    assert!(
        app.sim.stats().await["errors"]["server_error"]
            .as_u64()
            .unwrap()
            >= 3
    );
    let (id, sha) = app.submit("main", "after-outage.mp4", 200_000).await;
    app.wait_state(&id, &["published"], Duration::from_secs(20))
        .await;
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);
}
