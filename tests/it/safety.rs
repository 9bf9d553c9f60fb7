//! The warm-up of new accounts, through the daemon against the simulator with a Redis of its own: a
//! new account gets only its ramp's first-day cap, the rest deferred with `warming_up`; an account
//! TikTok shows active by hand (public videos older than 48 hours, or a high `video_count`) gets the
//! full budget; the user-info call never names a field whose scope was not granted; the operator's
//! `accounts warmup NAME --skip`; and a calendar's free slots keep to the ramp.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::app::{TestApp, path_str};
use crate::calendar::cli_ok;
use crate::support::wait_until;

const DAY_MS: i64 = 86_400_000;

/// A daemon with the warm-up on (the harness turns it off for every other test).
async fn warm_app(tweak: impl FnOnce(&mut tiktok_poster::config::Settings)) -> TestApp {
    TestApp::spawn(
        |_| {},
        |s| {
            s.warmup.enabled = true;
            tweak(s);
        },
    )
    .await
}

/// Submits `n` posts for `account`, all due now.
async fn submit_many(app: &TestApp, account: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            app.submit(account, &format!("{account}-{i}.mp4"), 300_000)
                .await
                .0,
        );
    }
    ids
}

/// Waits until every post is `published` or `deferred`; returns them.
async fn settled(app: &TestApp, ids: &[String]) -> Vec<HashMap<String, String>> {
    // TikTok allows 6 inits a minute per account: ten posts take two windows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let mut all = Vec::new();
        for id in ids {
            all.push(app.post(id).await);
        }
        let rejected = app.rejected().await;
        assert!(rejected.is_empty(), "submissions rejected: {rejected:#?}");
        if all.iter().all(|p| {
            matches!(
                p.get("state").map(String::as_str),
                Some("published" | "deferred")
            )
        }) {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for every post published or deferred: {:#?}",
            all.iter()
                .map(|p| (p.get("state"), p.get("error_code"), p.get("error_message")))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn in_state<'a>(
    posts: &'a [HashMap<String, String>],
    state: &str,
) -> Vec<&'a HashMap<String, String>> {
    posts.iter().filter(|p| p["state"] == state).collect()
}

async fn inits(app: &TestApp) -> u64 {
    app.sim.stats().await["requests"]["video_init"]
        .as_u64()
        .unwrap_or(0)
}

async fn sim_post(app: &TestApp, path: &str, body: Value) -> Value {
    let resp = app
        .sim
        .http
        .post(app.sim.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    resp.json().await.unwrap()
}

fn ms(p: &HashMap<String, String>, f: &str) -> i64 {
    p.get(f).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_new_account_sends_only_its_first_days_cap_and_defers_the_rest_with_warming_up() {
    let app = warm_app(|_| {}).await;
    let cap = app.settings.warmup.ramp[0] as usize;
    assert!(cap <= 3, "the default ramp's first day allows at most 3");
    app.connect("fresh", false).await;
    let ids = submit_many(&app, "fresh", 10).await;
    let posts = settled(&app, &ids).await;

    let published = in_state(&posts, "published");
    let deferred = in_state(&posts, "deferred");
    assert_eq!(published.len(), cap, "only the first day's cap is sent");
    assert_eq!(deferred.len(), 10 - cap);
    assert_eq!(
        inits(&app).await,
        cap as u64,
        "TikTok saw only the sent ones"
    );
    let first_sent = published
        .iter()
        .map(|p| ms(p, "init_started_ms"))
        .min()
        .unwrap();
    for p in &deferred {
        assert_eq!(p["error_code"], "warming_up", "{p:#?}");
        let msg = &p["error_message"];
        assert!(
            msg.contains("day 1 of 5")
                && msg.contains(&format!("allows {cap} Direct Posts"))
                && msg.contains("accounts warmup fresh --skip"),
            "{msg}"
        );
        // It may go when the first day ends (plus a jitter of up to a minute), not before.
        let until = ms(p, "deferred_until_ms");
        assert!(
            until >= first_sent + DAY_MS - 1_000 && until <= first_sent + DAY_MS + 61_000,
            "deferred until {until}, first post sent at {first_sent}"
        );
    }
    // Nothing more goes meanwhile: the deferred posts wait for the next day.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(inits(&app).await, cap as u64);

    // The account shows its warm-up day and today's cap: `accounts list --json`, the page, /metrics.
    let cfg = app.cli_config("cli", &[], "[warmup]\nenabled = true\n");
    let list: Value = serde_json::from_str(&cli_ok(&cfg, &["accounts", "list", "--json"]).await)
        .expect("accounts list --json is JSON");
    let fresh = &list.as_array().unwrap()[0];
    assert_eq!(fresh["name"], "fresh");
    assert_eq!(fresh["warmup_day"], 1);
    assert_eq!(fresh["cap_today"], cap);
    assert_eq!(fresh["warmup_status"], format!("day 1 of 5: {cap} a day"));
    assert!(
        fresh["warmup"]["note"]
            .as_str()
            .unwrap()
            .starts_with("ramp applies: no public video older than 48 h"),
        "{fresh}"
    );
    let page = app.get_text("/").await;
    assert!(page.contains(&format!("day 1 of 5: {cap} a day")), "{page}");
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("tiktok_poster_account_warmup_day{account=\"fresh\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "tiktok_poster_account_warmup_cap{{account=\"fresh\"}} {cap}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("tiktok_poster_accounts_warming_up 1"));

    // The operator skips the ramp: what it held back goes now, a minute apart, the first at once.
    let out = cli_ok(&cfg, &["accounts", "warmup", "fresh", "--skip"]).await;
    assert!(
        out.contains("warm-up skipped (operator")
            && out.contains(&format!("{} post(s) held back", 10 - cap)),
        "{out}"
    );
    wait_until(
        Duration::from_secs(30),
        "the first held-back post published after the skip",
        || async { (inits(&app).await == cap as u64 + 1).then_some(()) },
    )
    .await;
    let mut dues: Vec<i64> = Vec::new();
    for (id, before) in ids.iter().zip(&posts) {
        if before["state"] != "deferred" {
            continue;
        }
        let now = app.post(id).await;
        if now["state"] == "deferred" {
            dues.push(ms(&now, "deferred_until_ms"));
        }
    }
    assert_eq!(dues.len(), 10 - cap - 1, "the others wait their turn");
    dues.sort();
    assert!(
        dues.windows(2).all(|w| w[1] - w[0] >= 59_000),
        "held-back posts a minute apart: {dues:?}"
    );
}

fn now_s() -> i64 {
    tiktok_poster::db::now_ms() / 1000
}

#[tokio::test]
async fn five_manual_public_videos_older_than_48_hours_give_the_full_budget() {
    let app = warm_app(|_| {}).await;
    app.connect("seasoned", false).await;
    let specs: Vec<Value> = (0..5)
        .map(|i| {
            json!({
                "username": "seasoned_creator",
                "create_time": now_s() - 3 * 86_400 - i * 3_600,
                "title": format!("posted by hand {i}"),
                "duration": 12,
            })
        })
        .collect();
    sim_post(&app, "/_sim/videos", Value::Array(specs)).await;
    let ids = submit_many(&app, "seasoned", 10).await;
    let posts = settled(&app, &ids).await;
    assert_eq!(
        in_state(&posts, "published").len(),
        10,
        "the full budget (15) applies: {posts:#?}"
    );
    assert_eq!(app.sim.posts().await.len(), 10, "TikTok has all ten");
    let cfg = app.cli_config("cli", &[], "[warmup]\nenabled = true\n");
    let out = cli_ok(&cfg, &["accounts", "warmup", "seasoned"]).await;
    assert!(
        out.contains("warm-up skipped (active: public video")
            && out.contains("posted by hand on")
            && out.contains("more than 48 h ago"),
        "{out}"
    );

    // Videos by hand younger than 48 hours do not count: that account is ramped.
    app.connect("recent", false).await;
    sim_post(
        &app,
        "/_sim/videos",
        json!({"username": "recent_creator", "create_time": now_s() - 3_600, "title": "new"}),
    )
    .await;
    let ids = submit_many(&app, "recent", 4).await;
    let posts = settled(&app, &ids).await;
    let cap = app.settings.warmup.ramp[0] as usize;
    assert_eq!(in_state(&posts, "published").len(), cap);
    let held = in_state(&posts, "deferred");
    assert_eq!(held.len(), 4 - cap);
    assert!(
        held.iter().all(|p| p["error_code"] == "warming_up"),
        "{held:#?}"
    );
}

/// Connects `account` through the daemon with the user unticking `deny` on TikTok's consent page.
async fn connect_denying(app: &TestApp, account: &str, deny: &str) {
    let url = format!(
        "{}/connect?account={account}&sim_username={account}_creator&sim_private=false&sim_deny_scopes={deny}",
        app.base
    );
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(body.contains("is connected"), "connect page said: {body}");
}

#[tokio::test]
async fn the_user_info_call_never_names_a_field_whose_scope_was_not_granted() {
    let app = warm_app(|s| s.tiktok.scopes.push("user.info.stats".into())).await;
    // Granted: a video_count of 50, none of them ours, is an active account.
    app.connect("counted", false).await;
    sim_post(
        &app,
        "/_sim/creators",
        json!({"username": "counted_creator", "video_count": 50}),
    )
    .await;
    // Not granted: user.info.stats unticked (video.list granted, and the list is empty); the
    // account is ramped and says why. A second one also unticks video.list.
    connect_denying(&app, "unticked", "user.info.stats").await;
    connect_denying(&app, "nolist", "user.info.stats,video.list").await;

    let mut ids = submit_many(&app, "counted", 4).await;
    ids.extend(submit_many(&app, "unticked", 4).await);
    ids.extend(submit_many(&app, "nolist", 4).await);
    let posts = settled(&app, &ids).await;
    let sent = |range: std::ops::Range<usize>| {
        posts[range]
            .iter()
            .filter(|p| p["state"] == "published")
            .count()
    };
    let cap = app.settings.warmup.ramp[0] as usize;
    assert_eq!(sent(0..4), 4, "video_count 50 skips the ramp");
    assert_eq!(sent(4..8), cap);
    assert_eq!(sent(8..12), cap);

    let stats = app.sim.stats().await;
    assert_eq!(
        stats["requests"]["user_info"].as_u64(),
        Some(1),
        "only the account that granted user.info.stats was asked: {stats}"
    );
    assert!(
        stats["errors"].get("scope_permission_missed").is_none(),
        "no call named a field without its scope: {stats}"
    );
    let cfg = app.cli_config("cli", &[], "[warmup]\nenabled = true\n");
    let out = cli_ok(&cfg, &["accounts", "warmup", "counted"]).await;
    assert!(
        out.contains("skipped (active: video_count 50, 50 of them not posted by us"),
        "{out}"
    );
    let out = cli_ok(&cfg, &["accounts", "warmup", "unticked"]).await;
    assert!(
        out.contains("no public video older than 48 h that we did not post")
            && out.contains("user.info.stats not granted, so video_count was not read"),
        "{out}"
    );
    let out = cli_ok(&cfg, &["accounts", "warmup", "nolist"]).await;
    assert!(
        out.contains("did not grant video.list")
            && out.contains("user.info.stats not granted, so video_count was not read"),
        "{out}"
    );
    assert_eq!(
        stats["requests"]["video_list"].as_u64(),
        Some(2),
        "only the accounts that granted video.list were listed: {stats}"
    );
    // `--ramp` undoes a skip.
    let out = cli_ok(&cfg, &["accounts", "warmup", "counted", "--ramp"]).await;
    assert!(out.contains("warm-up day 1 of 5"), "{out}");
}

#[tokio::test]
async fn a_warming_up_accounts_calendar_slots_keep_to_the_ramp() {
    let app = warm_app(|_| {}).await;
    app.connect("cal", false).await;
    let cfg = app.cli_config("cli", &[], "[warmup]\nenabled = true\n");
    // A slot every hour, budget 15: without the ramp the next 6 posts would take the next 6 hours.
    cli_ok(
        &cfg,
        &[
            "calendar",
            "set",
            "cal",
            "--tz",
            "Europe/Berlin",
            "--slot",
            "0 * * * *",
        ],
    )
    .await;
    let (video, _) = app.video("cal.mp4", 300_000);
    let mut at = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..6 {
        let out = cli_ok(
            &cfg,
            &[
                "enqueue",
                "--account",
                "cal",
                "--video",
                path_str(&video),
                "--privacy-level",
                "SELF_ONLY",
                "--slot",
                "next",
            ],
        )
        .await;
        let id = out.split_whitespace().next().unwrap().to_string();
        let p = app.post(&id).await;
        at.push(ms(&p, "held_ms"));
        ids.push(id);
    }
    let ramp = &app.settings.warmup.ramp;
    // Day 1 (from the first post) holds ramp[0] posts, day 2 ramp[1], and no rolling 24 hours
    // holds more than the cap of the day it ends in.
    let first = at[0];
    let day = |t: i64| ((t - first) / DAY_MS) as usize;
    let on_day_1 = at.iter().filter(|t| day(**t) == 0).count();
    assert_eq!(on_day_1, ramp[0] as usize, "slots {at:?}");
    for &t in &at {
        let window = at.iter().filter(|u| **u > t - DAY_MS && **u <= t).count();
        assert!(
            window <= ramp[day(t)] as usize,
            "{window} posts in the 24 hours up to {t} (day {}), cap {}: {at:?}",
            day(t) + 1,
            ramp[day(t)]
        );
    }
    // `calendar reslot` keeps to the ramp too: the last post does not move into day 1's free
    // hours (the calendar's budget of 15 alone would allow them).
    cli_ok(&cfg, &["calendar", "reslot", &ids[5]]).await;
    let moved = ms(&app.post(&ids[5]).await, "held_ms");
    assert!(day(moved) >= 1, "reslotted into day 1 at {moved}: {at:?}");
    // And the week (what the page shows) marks day 1's other hours as not free.
    let week: Value =
        serde_json::from_str(&cli_ok(&cfg, &["calendar", "week", "cal", "--json"]).await)
            .expect("calendar week --json is JSON");
    for e in week["days"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["entries"].as_array().unwrap())
    {
        let t = chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        if t > first && t < first + DAY_MS && e["post"].is_null() {
            assert_eq!(e["free"], false, "day 1 is full under the ramp: {e}");
        }
    }
}

#[tokio::test]
async fn an_account_that_posted_through_an_earlier_version_starts_past_its_ramp() {
    let mut app = warm_app(|_| {}).await;
    app.connect("veteran", false).await;
    let (id, _) = app.submit("veteran", "veteran.mp4", 300_000).await;
    app.wait_state(&id, &["published"], Duration::from_secs(30))
        .await;
    // As an earlier version left it: its first post ten days ago, no warm-up fields, no flag.
    let ten_days_ago = tiktok_poster::db::now_ms() - 10 * DAY_MS;
    let mut conn = app.redis.conn().await;
    let _: () = redis::AsyncCommands::hset(
        &mut conn,
        format!("tiktok-poster:post:{id}"),
        "init_started_ms",
        ten_days_ago,
    )
    .await
    .unwrap();
    let _: () = redis::cmd("HDEL")
        .arg("tiktok-poster:account:veteran")
        .arg(&["warmup_first_post_ms", "warmup_checked_ms", "warmup_note"][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::AsyncCommands::del(&mut conn, "tiktok-poster:warmup_indexed")
        .await
        .unwrap();
    let cfg = app.cli_config("cli", &[], "[warmup]\nenabled = true\n");
    let out = cli_ok(&cfg, &["accounts", "warmup", "veteran"]).await;
    assert!(out.contains("not started: day 1 of 5"), "{out}");
    app.stop_daemon().await;
    app.start_daemon().await;
    let out = cli_ok(&cfg, &["accounts", "warmup", "veteran"]).await;
    assert!(out.contains("veteran: warm-up done"), "{out}");
    let when = chrono::DateTime::from_timestamp_millis(ten_days_ago)
        .unwrap()
        .to_rfc3339();
    assert!(
        out.contains(&format!("first post through the daemon: {when}")),
        "{out}"
    );
}
