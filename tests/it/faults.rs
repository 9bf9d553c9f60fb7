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
    crate::helpers::wait_until(
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
    use tiktok_poster::worker::rate::{Limit, RateLimiter};
    let redis = crate::app::TestRedis::start(false);
    let conn = tiktok_poster::db::connect(&redis.url()).await.unwrap();
    let limiter = RateLimiter::new(conn, tiktok_poster::db::Keys::new("tiktok-poster"));
    let daily = Limit {
        name: "daily",
        limit: 2,
        window: Duration::from_secs(86_400),
    };
    for _ in 0..5 {
        assert_eq!(limiter.hold("acct", daily, "post-a").await.unwrap(), None);
    }
    assert_eq!(limiter.hold("acct", daily, "post-b").await.unwrap(), None);
    let wait = limiter.hold("acct", daily, "post-c").await.unwrap();
    assert!(
        wait.is_some_and(|w| w > Duration::from_secs(86_000)),
        "{wait:?}"
    );
    limiter.release("acct", daily, "post-a").await.unwrap();
    assert_eq!(limiter.hold("acct", daily, "post-c").await.unwrap(), None);
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
