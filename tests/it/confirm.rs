//! `unconfirmed` posts resolved from TikTok's own video list, and how published posts did, through
//! the daemon against the simulator: a public post whose status answer the simulator loses ends
//! `published` with the simulator's own 19-digit id found on `video/list`; two look-alike videos
//! posted by hand leave it `unconfirmed` naming both; a private post is never looked for and its
//! message says what to check; the stats of a published public post are read with `video/query`.

use std::time::Duration;

use serde_json::{Value, json};
use tiktok_poster::sim::CaptionField;

use crate::app::{TestApp, path_str};
use crate::support::wait_until;

const T: Duration = Duration::from_secs(30);

/// A daemon whose list looks and stats reads come every `look_ms` (the first look, doubling).
async fn app(sim: impl FnOnce(&mut tiktok_poster::sim::SimConfig), look_ms: u64) -> TestApp {
    let app = TestApp::spawn(sim, |s| s.worker.confirm_look_ms = look_ms).await;
    app.connect("main", false).await;
    app
}

/// Submits a post of `privacy` with `title`; returns its id.
async fn submit(app: &TestApp, name: &str, privacy: &str, title: &str) -> String {
    let (video, _) = app.video(name, 300_000);
    app.xadd(&[
        ("account", "main"),
        ("video", path_str(&video)),
        ("privacy_level", privacy),
        ("title", title),
    ])
    .await
}

/// The simulator loses the first status answer: TikTok refuses the follow-up call, so the daemon
/// cannot tell whether the post went live.
async fn lose_the_status(app: &TestApp) {
    app.sim
        .fault(json!({"endpoint": "status", "error": "invalid_params"}))
        .await;
}

async fn requests(app: &TestApp, endpoint: &str) -> u64 {
    app.sim.stats().await["requests"][endpoint]
        .as_u64()
        .unwrap_or(0)
}

/// The acceptance test: the status is lost, the post ends `unconfirmed`, then `published` with the
/// simulator's own id, found through `video/list`, its URL, an event, and the video claimed.
#[tokio::test]
async fn a_public_post_whose_status_was_lost_is_confirmed_from_the_video_list() {
    lost_status_then_confirmed(CaptionField::Title).await;
}

/// The other reading of where TikTok puts a posted title: `video_description`, `title` empty.
#[tokio::test]
async fn the_confirmation_reads_the_caption_from_video_description_too() {
    lost_status_then_confirmed(CaptionField::VideoDescription).await;
}

async fn lost_status_then_confirmed(caption: CaptionField) {
    let app = app(|c| c.display_caption = caption, 200).await;
    lose_the_status(&app).await;
    let id = submit(
        &app,
        "lost.mp4",
        "PUBLIC_TO_EVERYONE",
        "Sunrise over the bay #sea",
    )
    .await;
    let p = app.wait_state(&id, &["unconfirmed", "published"], T).await;
    assert_eq!(
        p["state"], "unconfirmed",
        "the lost status ends in doubt first: {p:?}"
    );
    assert!(
        p["error_message"].contains("looks for it on the account's public video list"),
        "{p:?}"
    );
    assert!(p.contains_key("confirm_until_ms"), "{p:?}");
    assert_eq!(
        p["duration_ms"], "1200",
        "the probe's duration is kept: {p:?}"
    );
    let p = app.wait_state(&id, &["published"], T).await;
    let sim_post = app.sim.post(&p["publish_id"]).await;
    let sim_id = sim_post["post_id"]
        .as_str()
        .expect("the simulator gave an id");
    assert_eq!(sim_id.len(), 19);
    assert_eq!(p["post_id"], sim_id, "{p:?}");
    assert_eq!(p["confirmed_by"], "video_list");
    assert_eq!(
        p["url"],
        format!("https://www.tiktok.com/@main_creator/video/{sim_id}")
    );
    assert_eq!(p.get("error_message").map(String::as_str), Some(""));
    assert!(requests(&app, "video_list").await >= 1);
    // The event stream says so, and the post is no longer in the dead set.
    let mut conn = app.redis.conn().await;
    let events: redis::streams::StreamRangeReply =
        redis::AsyncCommands::xrange_all(&mut conn, "tiktok-poster:events")
            .await
            .unwrap();
    let ours: Vec<(String, String)> = events
        .ids
        .iter()
        .filter(|e| e.get::<String>("id").as_deref() == Some(id.as_str()))
        .map(|e| {
            (
                e.get::<String>("state").unwrap_or_default(),
                e.get::<String>("message").unwrap_or_default(),
            )
        })
        .collect();
    let last = ours.last().expect("events of the post");
    assert_eq!(last.0, "published", "{ours:?}");
    assert!(last.1.contains(sim_id), "{ours:?}");
    let dead: Option<f64> = redis::AsyncCommands::zscore(&mut conn, "tiktok-poster:dead", &id)
        .await
        .unwrap();
    assert_eq!(dead, None);
    let owner: Option<String> =
        redis::AsyncCommands::hget(&mut conn, "tiktok-poster:claimed_videos", sim_id)
            .await
            .unwrap();
    assert_eq!(owner.as_deref(), Some(id.as_str()), "the video is claimed");
    let counts = app.ledger().await.state_counts().await.unwrap();
    assert_eq!(
        counts.get("unconfirmed").copied().unwrap_or(0),
        0,
        "{counts:?}"
    );
    assert_eq!(counts.get("published").copied(), Some(1), "{counts:?}");
}

/// Two videos posted by hand that look like the post (same caption start, same duration, created
/// after the init) while the post itself is still in moderation: it stays `unconfirmed`, naming both.
#[tokio::test]
async fn two_look_alikes_leave_the_post_unconfirmed_naming_both() {
    // The post never gets its public id in this test, so it never shows on the list itself.
    let app = app(|c| c.post_id_delay_ms = 3_600_000, 200).await;
    lose_the_status(&app).await;
    let title = "Same words twice #twins";
    let id = submit(&app, "twin.mp4", "PUBLIC_TO_EVERYONE", title).await;
    app.wait_state(&id, &["unconfirmed"], T).await;
    let resp = app
        .sim
        .http
        .post(app.sim.url("/_sim/videos"))
        .json(&json!([
            {"username": "main_creator", "title": title, "duration": 1, "width": 720, "height": 1280},
            {"username": "main_creator", "title": title, "duration": 2, "width": 1080, "height": 1920},
            // Not look-alikes: another caption, another length.
            {"username": "main_creator", "title": "Something else", "duration": 1},
            {"username": "main_creator", "title": title, "duration": 30},
        ]))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let ids: Vec<String> = resp.json::<Value>().await.unwrap()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let p = wait_until(T, "the look-alikes named", || async {
        let p = app.post(&id).await;
        p.get("candidates")
            .is_some_and(|c| !c.is_empty())
            .then_some(p)
    })
    .await;
    assert_eq!(p["state"], "unconfirmed", "{p:?}");
    let mut named: Vec<&str> = p["candidates"].split(',').collect();
    named.sort();
    let mut want = vec![ids[0].as_str(), ids[1].as_str()];
    want.sort();
    assert_eq!(named, want, "{p:?}");
    for v in &ids[..2] {
        assert!(
            p["error_message"].contains(&format!("https://www.tiktok.com/@main_creator/video/{v}")),
            "{p:?}"
        );
    }
    assert!(p["error_message"].contains("2 look-alike videos"), "{p:?}");
    assert!(!p.contains_key("post_id"), "{p:?}");
    // Its next look waits in the due index, but it is no backlog.
    let mut conn = app.redis.conn().await;
    let due: Option<f64> = redis::AsyncCommands::zscore(&mut conn, "tiktok-poster:q:due", &id)
        .await
        .unwrap();
    let leased: Option<f64> = redis::AsyncCommands::zscore(&mut conn, "tiktok-poster:q:lease", &id)
        .await
        .unwrap();
    assert!(due.is_some() || leased.is_some(), "the looks go on");
    let h: Value = reqwest::get(format!("{}/healthz", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["queue"]["due_or_scheduled"], 0, "{h}");
    assert_eq!(h["oldest_due_lag_ms"], 0, "{h}");
}

/// A private post cannot be confirmed from the list: it is never looked for, and its message says so
/// and what to check in the app.
#[tokio::test]
async fn a_private_post_is_not_looked_for_and_says_what_to_check() {
    let app = app(|_| {}, 50).await;
    lose_the_status(&app).await;
    let id = submit(&app, "private.mp4", "SELF_ONLY", "Just for me").await;
    let p = app.wait_state(&id, &["unconfirmed"], T).await;
    let msg = &p["error_message"];
    assert!(
        msg.contains("cannot be confirmed from TikTok's video list"),
        "{msg}"
    );
    assert!(msg.contains("TikTok app"), "{msg}");
    assert!(!p.contains_key("confirm_until_ms"), "{p:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(requests(&app, "video_list").await, 0);
    assert_eq!(app.post(&id).await["state"], "unconfirmed");
}

/// How a published public post did: its counts (set on the simulator) are read at the first read
/// (an hour after publishing, scaled down here) into the post hash, and the calendar page shows them.
#[tokio::test]
async fn a_published_posts_stats_are_read_back() {
    let app = app(|_| {}, 20).await;
    let id = submit(&app, "stats.mp4", "PUBLIC_TO_EVERYONE", "Counting views").await;
    let p = app.wait_state(&id, &["published"], T).await;
    let resp = app
        .sim
        .http
        .post(app.sim.url("/_sim/videos"))
        .json(&json!({"publish_id": p["publish_id"], "view_count": 1234, "like_count": 56, "comment_count": 7, "share_count": 8}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let p = wait_until(T, "the first stats read", || async {
        let p = app.post(&id).await;
        p.get("stats_read").is_some_and(|r| r == "1h").then_some(p)
    })
    .await;
    assert_eq!(p["view_count"], "1234", "{p:?}");
    assert_eq!(p["like_count"], "56");
    assert_eq!(p["comment_count"], "7");
    assert_eq!(p["share_count"], "8");
    assert!(
        p["stats_read_ms"].parse::<i64>().unwrap() >= p["published_ms"].parse::<i64>().unwrap()
    );
    assert!(requests(&app, "video_query").await >= 1);
    // The calendar page shows them next to the post.
    let cfg = app.cli_config("cli", &[], "");
    crate::calendar::cli_ok(
        &cfg,
        &[
            "calendar",
            "set",
            "main",
            "--tz",
            "UTC",
            "--slot",
            "0 9 * * *",
        ],
    )
    .await;
    let html = app.get_text("/calendar?account=main").await;
    assert!(
        html.contains("1234 views · 56 likes · 7 comments · 8 shares"),
        "{html}"
    );
}

/// A published public post whose status never gives its public id (moderation outlasts the test):
/// after five status looks the list is tried, and the one video that fits becomes its id; the state
/// stays `published`.
#[tokio::test]
async fn a_published_post_without_its_id_gets_it_from_the_list() {
    let app = app(|c| c.post_id_delay_ms = 3_600_000, 200).await;
    let title = "Waiting for moderation";
    let id = submit(&app, "noid.mp4", "PUBLIC_TO_EVERYONE", title).await;
    let p = app.wait_state(&id, &["published"], T).await;
    assert!(!p.contains_key("post_id"), "{p:?}");
    // The list shows it (as TikTok's may before the status does): here, as a video posted by hand.
    let resp = app
        .sim
        .http
        .post(app.sim.url("/_sim/videos"))
        .json(&json!({"username": "main_creator", "title": title, "duration": 1}))
        .send()
        .await
        .unwrap();
    let vid = resp.json::<Value>().await.unwrap()["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let p = wait_until(T, "the id from the list", || async {
        let p = app.post(&id).await;
        p.contains_key("post_id").then_some(p)
    })
    .await;
    assert_eq!(p["post_id"], vid, "{p:?}");
    assert_eq!(p["confirmed_by"], "video_list");
    assert_eq!(p["state"], "published");
    assert!(p["post_id_checks"].parse::<i64>().unwrap() > 5, "{p:?}");
}
