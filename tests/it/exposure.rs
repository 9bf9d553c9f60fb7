//! What a stranger on the network can reach (issue 11, point 5): webhooks on their own listener,
//! a warning for a main listener off loopback, an account never silently rebound to another TikTok
//! user, and pending OAuth states bounded.

use std::time::Duration;

use redis::AsyncCommands;

use crate::app::TestApp;
use crate::support::{free_port, wait_until};

/// With `[http] webhook_listen`, `/webhooks/tiktok` is served there and nowhere else, and nothing
/// else is served there.
#[tokio::test]
async fn webhooks_get_their_own_listener_which_serves_nothing_else() {
    let hook_port = free_port();
    let app = TestApp::spawn(
        |_| {},
        |s| s.http.webhook_listen = format!("127.0.0.1:{hook_port}"),
    )
    .await;
    app.connect("main", false).await;
    let hook = format!("http://127.0.0.1:{hook_port}");
    let http = reqwest::Client::new();
    let mut conn = app.redis.conn().await;
    let open_id: String = conn
        .hget("tiktok-poster:account:main", "open_id")
        .await
        .unwrap();
    let body =
        serde_json::json!({"client_key": "k", "event": "authorization.removed", "create_time": 3,
        "user_openid": open_id, "content": "{\"reason\":1}"})
        .to_string();
    let sig = crate::webhooks::signed("test-secret", &body);
    let main = http
        .post(format!("{}/webhooks/tiktok", app.base))
        .header("TikTok-Signature", &sig)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(main.status().as_u16(), 404, "not on the main listener");
    for path in [
        "/",
        "/connect?account=x",
        "/healthz",
        "/metrics",
        "/oauth/callback?code=a&state=b",
    ] {
        let r = http.get(format!("{hook}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path} on the webhook listener");
    }
    let r = http
        .post(format!("{hook}/webhooks/tiktok"))
        .header("TikTok-Signature", &sig)
        .body(body)
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

/// A main listener that is not on loopback is warned about at start.
#[tokio::test]
async fn a_main_listener_off_loopback_is_warned_about() {
    let redis = crate::support::TestRedis::start(false);
    let sim = crate::support::TestSim::spawn(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, log, port) = crate::flood::write_config(dir.path(), "open", &redis, &sim, "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            &format!("listen = \"127.0.0.1:{port}\""),
            &format!("listen = \"0.0.0.0:{port}\""),
        ),
    )
    .unwrap();
    let mut daemon = crate::flood::start("true", &config, &log);
    wait_until(Duration::from_secs(15), "the daemon to come up", || async {
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    daemon.kill().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("not on loopback"), "{text}");
}

/// The HTML of a page after following redirects, with its status.
async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Reconnecting an account to its TikTok user works; connecting it to another user is refused with a
/// page saying so (nothing changes) and a Replace button whose one-time confirmation replaces it;
/// `accounts connect NAME` refuses another user and `--replace` allows it.
#[tokio::test]
async fn an_account_is_rebound_to_another_tiktok_user_only_when_the_operator_asks() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    app.connect("main", false).await; // the same user again: renews consent
    let mut conn = app.redis.conn().await;
    let key = "tiktok-poster:account:main";
    let first: String = conn.hget(key, "open_id").await.unwrap();

    let (code, page) = get(&format!(
        "{}/connect?account=main&sim_username=intruder",
        app.base
    ))
    .await;
    assert_eq!(code, 409, "{page}");
    assert!(
        page.contains("a different TikTok user") && page.contains("Nothing was changed"),
        "{page}"
    );
    let now: String = conn.hget(key, "open_id").await.unwrap();
    assert_eq!(now, first, "the account keeps its TikTok user");
    let username: String = conn.hget(key, "username").await.unwrap();
    assert_eq!(username, "main_creator");

    // The confirm step: the page's form, with its one-time token.
    let token = page
        .split("name=confirm value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page has a Replace form")
        .to_string();
    let form = [
        ("account", "main"),
        ("confirm", token.as_str()),
        ("sim_username", "intruder"),
    ];
    let forged = [
        ("account", "main"),
        ("confirm", "forged"),
        ("sim_username", "intruder"),
    ];
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/connect/replace", app.base))
        .form(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .post(format!("{}/connect/replace", app.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("is connected to TikTok user @intruder"),
        "{page}"
    );
    let now: String = conn.hget(key, "open_id").await.unwrap();
    assert_ne!(now, first);
    let stale: Option<String> = conn.hget("tiktok-poster:open_ids", &first).await.unwrap();
    assert_eq!(
        stale, None,
        "the replaced user's open_id no longer maps to the account"
    );
    let r = http
        .post(format!("{}/connect/replace", app.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "the confirmation is single-use");

    // The command line: refused without --replace, done with it.
    let cfg = app.cli_config("cli", &[], "");
    for (args, user, ok) in [
        (&["accounts", "connect", "main"][..], "third", false),
        (
            &["accounts", "connect", "main", "--replace"][..],
            "third",
            true,
        ),
    ] {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
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
        let (_, page) = get(&format!("{url}&sim_username={user}")).await;
        let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{args:?} did not end; the page said {page}"))
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{args:?}: {err} / {page}");
        let username: String = conn.hget(key, "username").await.unwrap();
        if ok {
            assert_eq!(username, user);
        } else {
            assert!(err.contains("--replace"), "{err}");
            assert_eq!(username, "intruder", "unchanged");
        }
    }
}

/// A flood of `/connect` creates a bounded number of Redis keys, each expiring within minutes, and
/// says why it refuses the rest.
#[tokio::test]
async fn a_flood_of_connects_creates_a_bounded_number_of_keys() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut conn = app.redis.conn().await;
    // Keys that are not input-driven: the Redis watch's own write probe (one per daemon, expiring),
    // which may appear during the flood.
    let own = |k: &String| k.starts_with("tiktok-poster:probe:");
    let count = |keys: Vec<String>| keys.iter().filter(|k| !own(k)).count();
    let before = count(conn.keys("*").await.unwrap());
    let (mut redirected, mut refused) = (0, 0);
    for batch in 0..40 {
        let answers = futures_util::future::join_all((0..50).map(|i| {
            let http = http.clone();
            let url = format!("{}/connect?account=flood{}", app.base, batch * 50 + i);
            async move { http.get(url).send().await.unwrap() }
        }))
        .await;
        for r in answers {
            match r.status().as_u16() {
                303 | 302 | 307 => redirected += 1,
                429 => {
                    refused += 1;
                    assert!(r.text().await.unwrap().contains("already pending"));
                }
                other => panic!("unexpected {other}"),
            }
        }
    }
    let after = count(conn.keys("*").await.unwrap());
    eprintln!(
        "2000 connects: {redirected} redirected, {refused} refused, {} new keys",
        after - before
    );
    assert_eq!(redirected + refused, 2000);
    assert!((1..=32).contains(&redirected), "{redirected}");
    assert!(
        after - before <= 33,
        "{} keys for 2000 connects",
        after - before
    );
    let keys: Vec<String> = conn.keys("tiktok-poster:oauth:state:*").await.unwrap();
    for k in keys {
        let ttl: i64 = conn.ttl(&k).await.unwrap();
        assert!((1..=300).contains(&ttl), "{k} expires in {ttl} s");
    }
}
