//! `posting_blocked` through the real daemon, its Redis and the simulator: a ban met at init holds
//! the account's posts (none failed, no further init) until the simulator lifts it, the app's quota
//! of active creators holds every account's posts and lifts the same way, and `accounts resume NAME`
//! through the binary makes held posts go at once.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::app::TestApp;
use crate::calendar::cli_ok;
use crate::support::wait_until;

const T: Duration = Duration::from_secs(60);

async fn sim_post(app: &TestApp, path: &str, body: Value) {
    app.sim
        .http
        .post(app.sim.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

async fn ban(app: &TestApp, account: &str, banned: bool) {
    let body = json!({"username": format!("{account}_creator"), "banned": banned});
    sim_post(app, "/_sim/creators", body).await;
}

async fn requests(app: &TestApp, endpoint: &str) -> u64 {
    app.sim.stats().await["requests"][endpoint]
        .as_u64()
        .unwrap_or(0)
}

async fn account_hash(app: &TestApp, account: &str) -> HashMap<String, String> {
    let mut conn = app.redis.conn().await;
    conn.hgetall(format!("tiktok-poster:account:{account}"))
        .await
        .unwrap()
}

/// Waits until every post is `deferred` with `posting_blocked`; returns their fields.
async fn all_held(app: &TestApp, ids: &[String]) -> Vec<HashMap<String, String>> {
    wait_until(T, "every post held by the block", || async {
        let mut all = Vec::new();
        for id in ids {
            let p = app.post(id).await;
            if p.get("state").map(String::as_str) != Some("deferred")
                || p.get("error_code").map(String::as_str) != Some("posting_blocked")
            {
                return None;
            }
            all.push(p);
        }
        Some(all)
    })
    .await
}

/// Submits `n` posts for `account`; returns their ids and video hashes.
async fn submit_n(app: &TestApp, account: &str, tag: &str, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            app.submit(account, &format!("{tag}{i}.mp4"), 200_000 + i as u64)
                .await,
        );
    }
    out
}

async fn assert_published_once(app: &TestApp, posts: &[(String, String)]) {
    for (id, sha) in posts {
        let p = app
            .wait_state(id, &["published", "failed", "unconfirmed"], T)
            .await;
        assert_eq!(p["state"], "published", "{p:#?}");
        assert_eq!(
            app.sim_posts_with(sha).await.len(),
            1,
            "post {id} sent once"
        );
    }
}

/// The acceptance: `spam_risk_user_banned_from_posting` on one post puts the account in
/// `posting_blocked`; its other posts stay waiting (none failed, no init call more), re-checked on
/// the slow schedule (here 1 s) with `creator_info`; when the simulator lifts the ban they are all
/// published, each exactly once.
#[tokio::test]
async fn a_ban_at_init_holds_the_accounts_posts_until_tiktok_lifts_it() {
    let app = TestApp::spawn(
        |_| {},
        |s| {
            s.worker.concurrency = 1;
            s.worker.blocked_recheck_secs = 1;
        },
    )
    .await;
    app.connect("main", false).await;
    app.connect("other", false).await;
    app.sim
        .fault(json!({"endpoint": "video_init", "error": "spam_risk_user_banned_from_posting"}))
        .await;
    let first = submit_n(&app, "main", "first", 1).await;
    let held = all_held(&app, &[first[0].0.clone()]).await;
    let msg = &held[0]["error_message"];
    assert!(
        msg.contains("account \"main\" may not post since")
            && msg.contains("spam_risk_user_banned_from_posting")
            && msg.contains("contact TikTok support"),
        "{msg}"
    );
    assert!(held[0]["deferred_until_ms"].parse::<i64>().unwrap() > 0);
    assert_eq!(held[0]["attempts"], "0", "a block uses up no attempt");
    let acct = account_hash(&app, "main").await;
    assert_eq!(acct["blocked_code"], "spam_risk_user_banned_from_posting");
    assert!(acct["blocked_since_ms"].parse::<i64>().unwrap() > 0);
    // The ban stays at TikTok: every re-check sees it.
    ban(&app, "main", true).await;
    let inits = requests(&app, "video_init").await;
    assert_eq!(inits, 1, "only the post that met the ban reached init");

    let rest = submit_n(&app, "main", "rest", 3).await;
    let mut ids: Vec<String> = rest.iter().map(|(id, _)| id.clone()).collect();
    ids.push(first[0].0.clone());
    all_held(&app, &ids).await;
    // Another account of the app is not held.
    let free = submit_n(&app, "other", "free", 1).await;
    assert_published_once(&app, &free).await;

    // Several re-checks later (1 s apart): still held, none failed, no init call for `main`.
    let checks = requests(&app, "creator_info").await;
    wait_until(T, "two more creator_info re-checks", || async {
        (requests(&app, "creator_info").await >= checks + 2).then_some(())
    })
    .await;
    all_held(&app, &ids).await;
    assert_eq!(
        requests(&app, "video_init").await,
        inits + 1,
        "no init for a held post (the one more is `other`'s)"
    );
    let list = cli_ok(&app.cli_config("list", &[], ""), &["accounts", "list"]).await;
    let line = list.lines().find(|l| l.starts_with("main ")).unwrap();
    assert!(line.contains("posting_blocked"), "{list}");
    assert!(
        list.contains("main: posting_blocked (account) since")
            && list.contains("spam_risk_user_banned_from_posting"),
        "{list}"
    );
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("tiktok_poster_accounts_posting_blocked 1"),
        "{metrics}"
    );
    // /healthz names the blocked account but stays healthy: holding the posts is the right thing.
    let h: Value = serde_json::from_str(&app.get_text("/healthz").await).unwrap();
    assert_eq!(h["ok"], true, "{h}");
    assert_eq!(h["accounts_posting_blocked"], 1, "{h}");
    assert_eq!(h["posting_blocked"], json!(["main"]), "{h}");
    assert!(h["app_posting_blocked"].is_null(), "{h}");
    let page = app.get_text("/").await;
    assert!(page.contains("posting_blocked (account) since"), "{page}");

    // TikTok lifts the ban: the next re-check clears the block and every held post goes.
    ban(&app, "main", false).await;
    let mut all = first.clone();
    all.extend(rest);
    assert_published_once(&app, &all).await;
    let acct = account_hash(&app, "main").await;
    assert!(
        acct.get("blocked_code").is_none_or(String::is_empty),
        "{acct:?}"
    );
    let mut conn = app.redis.conn().await;
    let events: redis::streams::StreamRangeReply =
        conn.xrange_all("tiktok-poster:events").await.unwrap();
    let kinds: Vec<String> = events
        .ids
        .iter()
        .filter(|e| e.get::<String>("account").as_deref() == Some("main"))
        .filter_map(|e| e.get::<String>("event"))
        .collect();
    assert_eq!(kinds, ["posting_blocked", "posting_unblocked"], "{kinds:?}");
}

/// The app's `reached_active_user_cap` blocks every account (one block for the app, in
/// `{ns}:app_blocked`); posts wait, none fails; when the simulator's quota frees, all are published.
#[tokio::test]
async fn the_apps_active_user_cap_holds_every_account_and_lifts() {
    let app = TestApp::spawn(
        |_| {},
        |s| {
            s.worker.concurrency = 2;
            s.worker.blocked_recheck_secs = 1;
        },
    )
    .await;
    app.connect("a", false).await;
    app.connect("b", false).await;
    // The switch is strict about its input, so a mistyped test fails loudly.
    let typo = app
        .sim
        .http
        .post(app.sim.url("/_sim/app"))
        .json(&json!({"active_user_cap": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(typo.status(), 400);
    sim_post(&app, "/_sim/app", json!({"active_user_cap_reached": true})).await;
    let mut posts = submit_n(&app, "a", "a", 2).await;
    posts.extend(submit_n(&app, "b", "b", 2).await);
    let ids: Vec<String> = posts.iter().map(|(id, _)| id.clone()).collect();
    let held = all_held(&app, &ids).await;
    assert!(
        held.iter()
            .all(|p| p["error_message"].contains("the app may not post for any account")),
        "{held:#?}"
    );
    let mut conn = app.redis.conn().await;
    let blocked: HashMap<String, String> = conn.hgetall("tiktok-poster:app_blocked").await.unwrap();
    assert_eq!(blocked["blocked_code"], "reached_active_user_cap");
    // Held through re-checks: no init was ever accepted.
    let checks = requests(&app, "creator_info").await;
    wait_until(T, "two more creator_info re-checks", || async {
        (requests(&app, "creator_info").await >= checks + 2).then_some(())
    })
    .await;
    all_held(&app, &ids).await;
    assert!(app.sim.posts().await.is_empty());
    let json_list = cli_ok(
        &app.cli_config("list", &[], ""),
        &["accounts", "list", "--json"],
    )
    .await;
    let v: Value = serde_json::from_str(&json_list).unwrap();
    for a in v.as_array().unwrap() {
        assert_eq!(a["posting_blocked"]["scope"], "app", "{a}");
        assert_eq!(
            a["posting_blocked"]["code"], "reached_active_user_cap",
            "{a}"
        );
    }
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("tiktok_poster_app_posting_blocked 1"),
        "{metrics}"
    );
    let h: Value = serde_json::from_str(&app.get_text("/healthz").await).unwrap();
    assert_eq!(
        h["app_posting_blocked"]["code"], "reached_active_user_cap",
        "{h}"
    );

    sim_post(&app, "/_sim/app", json!({"active_user_cap_reached": false})).await;
    assert_published_once(&app, &posts).await;
    let blocked: HashMap<String, String> = conn.hgetall("tiktok-poster:app_blocked").await.unwrap();
    assert!(blocked.get("blocked_code").is_none_or(String::is_empty));
}

/// `accounts resume NAME` through the binary clears the block and makes the held posts due now:
/// with the slow schedule at its default (30 minutes) they go at once, not at the next re-check.
#[tokio::test]
async fn accounts_resume_makes_the_held_posts_go_at_once() {
    let app = TestApp::spawn(|_| {}, |s| s.worker.concurrency = 1).await;
    app.connect("main", false).await;
    app.sim
        .fault(json!({"endpoint": "video_init", "error": "spam_risk_user_banned_from_posting"}))
        .await;
    let mut posts = submit_n(&app, "main", "first", 1).await;
    let first = posts[0].0.clone();
    all_held(&app, std::slice::from_ref(&first)).await;
    posts.extend(submit_n(&app, "main", "rest", 2).await);
    let ids: Vec<String> = posts.iter().map(|(id, _)| id.clone()).collect();
    let held = all_held(&app, &ids).await;
    let now = chrono::Utc::now().timestamp_millis();
    for p in &held {
        let until: i64 = p["deferred_until_ms"].parse().unwrap();
        assert!(
            until > now + 25 * 60_000,
            "held until the next re-check: {p:#?}"
        );
    }
    let cfg = app.cli_config("resume", &[], "");
    let out = cli_ok(&cfg, &["accounts", "resume", "main"]).await;
    assert!(
        out.contains("main: posting resumed (posting_blocked since")
            && out.contains("3 held posts are due now"),
        "{out}"
    );
    assert_published_once(&app, &posts).await;
    let again = cli_ok(&cfg, &["accounts", "resume", "main"]).await;
    assert!(again.contains("main: was not posting_blocked"), "{again}");
    let (code, _, err) = crate::calendar::cli(&cfg, &["accounts", "resume", "nobody"]).await;
    assert_ne!(code, Some(0));
    assert!(err.contains("not connected"), "{err}");
}
