//! The posting calendar through the real daemon, its Redis and the simulator: `slot` = `next`
//! submissions through two daemons, the budget and spacing they respect, cancelled slots filled
//! again, rejections, edits that never move posts, pause and resume without a burst, and the slot
//! listing across DST.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use tiktok_poster::calendar::{Schedule, first_free};

use crate::app::{TestApp, path_str, run_cli};
use crate::support::wait_until;

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;

/// Runs the binary off the runtime's thread (the daemon and simulator run in-process).
pub(crate) async fn cli(cfg: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let cfg = cfg.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&cfg, &args)
    })
    .await
    .unwrap()
}

pub(crate) async fn cli_ok(cfg: &Path, args: &[&str]) -> String {
    let (code, out, err) = cli(cfg, args).await;
    assert_eq!(code, Some(0), "{args:?} failed: {out}\n{err}");
    out
}

/// Submits `n` `slot` = `next` posts for `account` at once; returns their ids.
async fn submit_slot_next(app: &TestApp, account: &str, video: &Path, n: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let url = app.redis.url();
        let video = path_str(video).to_string();
        let account = account.to_string();
        tasks.push(tokio::spawn(async move {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let id = format!("{account}-q{i}");
            let _: String = conn
                .xadd(
                    "tiktok-poster:submit",
                    "*",
                    &[
                        ("id", id.as_str()),
                        ("account", account.as_str()),
                        ("video", video.as_str()),
                        ("privacy_level", "SELF_ONLY"),
                        ("slot", "next"),
                    ],
                )
                .await
                .unwrap();
            id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids
}

/// Waits until the rejected stream holds `n` entries; returns them.
async fn rejections(app: &TestApp, n: usize, what: &str) -> Vec<HashMap<String, String>> {
    wait_until(Duration::from_secs(10), what, || async {
        let r = app.rejected().await;
        (r.len() == n).then_some(r)
    })
    .await
}

/// Waits until every post exists; returns each one's fields.
async fn wait_posts(app: &TestApp, ids: &[String]) -> Vec<HashMap<String, String>> {
    wait_until(Duration::from_secs(30), "every post recorded", || async {
        let mut all = Vec::new();
        for id in ids {
            let p = app.post(id).await;
            if p.is_empty() {
                return None;
            }
            all.push(p);
        }
        Some(all)
    })
    .await
}

fn ms(p: &HashMap<String, String>, field: &str) -> i64 {
    p.get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {p:#?}"))
}

/// The first `n` free slots as the pure rule computes them, from `from`.
fn expected_free(
    schedule: &Schedule,
    from: DateTime<Utc>,
    mut taken: Vec<i64>,
    spacing: Duration,
    budget: u32,
    n: usize,
) -> Vec<i64> {
    let horizon = from + chrono::Duration::days(30);
    let mut out = Vec::new();
    for _ in 0..n {
        taken.sort_unstable();
        let t = first_free(
            schedule.instants_from(from),
            &taken,
            spacing,
            |_| budget,
            horizon,
        )
        .expect("a free slot")
        .timestamp_millis();
        out.push(t);
        taken.push(t);
    }
    out
}

fn assert_within_budget_and_spacing(times: &[i64], budget: usize, spacing: i64) {
    let mut t = times.to_vec();
    t.sort_unstable();
    for w in t.windows(2) {
        assert!(
            w[1] - w[0] >= spacing,
            "two posts {} ms apart, less than the spacing",
            w[1] - w[0]
        );
    }
    for (i, s) in t.iter().enumerate() {
        let in_window = t[i..].iter().take_while(|&&x| x < s + DAY).count();
        assert!(
            in_window <= budget,
            "{in_window} posts in the 24 hours from {s}"
        );
    }
}

pub(crate) async fn app_with_account(name: &str) -> (TestApp, PathBuf, PathBuf) {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect(name, false).await;
    let cfg = app.cli_config("cli", &[], "");
    let (video, _) = app.video("v.mp4", 400_000);
    (app, cfg, video)
}

/// Fifty `slot` = `next` submissions at once through two daemons take fifty distinct slots, the first
/// fifty free ones in order (the daily budget and spacing respected, fixed-time posts counted), a
/// cancelled post's slot goes to the next submission, and a full calendar rejects with a reason.
#[tokio::test]
async fn fifty_concurrent_slot_next_posts_through_two_daemons_take_the_first_free_slots() {
    let (app, cfg, video) = app_with_account("cal").await;
    let (sibling, sibling_task) = app.spawn_sibling("sibling").await;
    let out = cli_ok(
        &cfg,
        &[
            "calendar",
            "set",
            "cal",
            "--tz",
            "Europe/Berlin",
            "--slot",
            "0 * * * *",
            "--min-spacing",
            "15m",
            "--daily-budget",
            "15",
            "--horizon-days",
            "30",
        ],
    )
    .await;
    assert!(out.contains("/calendar/cal.ics?token="), "{out}");
    // A fixed-time post at 20 past the hour after next: it holds that time, so the slots 15 minutes
    // around it and its share of the budget are not free.
    let now = Utc::now();
    let fixed_at = (now.timestamp_millis() / H + 2) * H + 20 * 60_000;
    let fixed_text = DateTime::from_timestamp_millis(fixed_at)
        .unwrap()
        .to_rfc3339();
    app.xadd(&[
        ("id", "fixed-1"),
        ("account", "cal"),
        ("video", path_str(&video)),
        ("privacy_level", "SELF_ONLY"),
        ("publish_at", &fixed_text),
    ])
    .await;
    app.wait_state("fixed-1", &["scheduled"], Duration::from_secs(10))
        .await;

    let start = Utc::now();
    let ids = submit_slot_next(&app, "cal", &video, 50).await;
    let posts = wait_posts(&app, &ids).await;
    let mut held: Vec<i64> = posts.iter().map(|p| ms(p, "held_ms")).collect();
    for p in &posts {
        assert_eq!(ms(p, "due_ms"), ms(p, "held_ms"));
        let slot_at = DateTime::parse_from_rfc3339(&p["slot_at"]).unwrap();
        assert_eq!(slot_at.timestamp_millis(), ms(p, "held_ms"));
        assert!(
            p["slot_at"].ends_with("+01:00") || p["slot_at"].ends_with("+02:00"),
            "slot_at is in Berlin's offset: {}",
            p["slot_at"]
        );
        assert_eq!(p["state"], "scheduled");
    }
    held.sort_unstable();
    let distinct: std::collections::BTreeSet<i64> = held.iter().copied().collect();
    assert_eq!(distinct.len(), 50, "fifty distinct slots");
    let schedule = Schedule::parse("Europe/Berlin", &["0 * * * *"]).unwrap();
    let expected = expected_free(
        &schedule,
        start,
        vec![fixed_at],
        Duration::from_secs(900),
        15,
        50,
    );
    assert_eq!(held, expected, "the first fifty free slots, in order");
    let mut all = held.clone();
    all.push(fixed_at);
    assert_within_budget_and_spacing(&all, 15, 15 * 60_000);
    // Both daemons assigned slots (the submit group spreads entries over its consumers).
    let mut conn = app.redis.conn().await;
    let events: redis::streams::StreamRangeReply =
        conn.xrange_all("tiktok-poster:events").await.unwrap();
    let slotted = events
        .ids
        .iter()
        .filter(|e| e.map.contains_key("slot_at"))
        .count();
    assert_eq!(slotted, 50, "each slot is announced on the events stream");

    // Cancel the post in the third slot: the next submission takes exactly that slot.
    let third = posts
        .iter()
        .find(|p| ms(p, "held_ms") == expected[2])
        .unwrap()["id"]
        .clone();
    cli_ok(&cfg, &["cancel", &third]).await;
    app.xadd(&[
        ("id", "after-cancel"),
        ("account", "cal"),
        ("video", path_str(&video)),
        ("privacy_level", "SELF_ONLY"),
        ("slot", "next"),
    ])
    .await;
    let p = app
        .wait_state("after-cancel", &["scheduled"], Duration::from_secs(10))
        .await;
    assert_eq!(ms(&p, "held_ms"), expected[2], "the cancelled post's slot");

    // `calendar slots --json` shows who holds what.
    let out = cli_ok(
        &cfg,
        &["calendar", "slots", "cal", "--count", "5", "--json"],
    )
    .await;
    let slots: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(slots.len(), 5);
    assert!(slots.iter().any(|s| s["post"] == "after-cancel"), "{out}");

    // Editing the calendar moves nothing.
    cli_ok(
        &cfg,
        &[
            "calendar",
            "set",
            "cal",
            "--tz",
            "Asia/Tokyo",
            "--slot",
            "30 9 * * *",
        ],
    )
    .await;
    for p in &posts {
        let now_p = app.post(&p["id"]).await;
        assert_eq!(now_p["held_ms"], p["held_ms"], "an edit never moves a post");
    }
    // Both daemons had the Berlin calendar in memory: the next `slot next` gets a Tokyo slot (the
    // script sees the calendar changed and the daemon reads it again).
    app.xadd(&[
        ("id", "after-edit"),
        ("account", "cal"),
        ("video", path_str(&video)),
        ("privacy_level", "SELF_ONLY"),
        ("slot", "next"),
    ])
    .await;
    let p = app
        .wait_state("after-edit", &["scheduled"], Duration::from_secs(10))
        .await;
    assert!(p["slot_at"].ends_with("T09:30:00+09:00"), "{p:#?}");
    sibling.cancel();
    let _ = sibling_task.await;
}

/// Rejections keep the submission with a reason that names the code: no calendar, `slot` with
/// `publish_at`, a value other than `next`, and a calendar with no free slot within its horizon.
#[tokio::test]
async fn slot_next_is_rejected_with_no_calendar_or_calendar_full() {
    let (app, cfg, video) = app_with_account("rej").await;
    let v = path_str(&video);
    app.xadd(&[
        ("account", "rej"),
        ("video", v),
        ("privacy_level", "SELF_ONLY"),
        ("slot", "next"),
    ])
    .await;
    app.xadd(&[
        ("account", "rej"),
        ("video", v),
        ("privacy_level", "SELF_ONLY"),
        ("slot", "next"),
        ("publish_at", "2030-01-01T10:00:00+01:00"),
    ])
    .await;
    app.xadd(&[
        ("account", "rej"),
        ("video", v),
        ("privacy_level", "SELF_ONLY"),
        ("slot", "soon"),
    ])
    .await;
    let rejected = rejections(&app, 3, "three rejections").await;
    assert!(
        rejected[0]["reason"].starts_with("no_calendar:"),
        "{:?}",
        rejected[0]
    );
    assert!(rejected[0]["reason"].contains("calendar set rej"));
    assert!(
        rejected[1]["reason"].contains("not both"),
        "{:?}",
        rejected[1]
    );
    assert!(
        rejected[2]["reason"].contains("only value is `next`"),
        "{:?}",
        rejected[2]
    );
    assert_eq!(rejected[0]["slot"], "next", "the original fields are kept");

    // One slot a day, one post a day, a one-day horizon: the second post finds no free slot.
    cli_ok(
        &cfg,
        &[
            "calendar",
            "set",
            "rej",
            "--tz",
            "America/New_York",
            "--slot",
            "0 12 * * *",
            "--daily-budget",
            "1",
            "--horizon-days",
            "1",
        ],
    )
    .await;
    for id in ["full-1", "full-2"] {
        app.xadd(&[
            ("id", id),
            ("account", "rej"),
            ("video", v),
            ("privacy_level", "SELF_ONLY"),
            ("slot", "next"),
        ])
        .await;
    }
    app.wait_state("full-1", &["scheduled"], Duration::from_secs(10))
        .await;
    let rejected = rejections(&app, 4, "the full calendar's rejection").await;
    assert!(
        rejected[3]["reason"].starts_with("calendar_full:"),
        "{:?}",
        rejected[3]
    );
    assert!(app.post("full-2").await.is_empty(), "never created");
    // The daemon has the calendar in memory; once it is removed, `slot next` is `no_calendar` again.
    cli_ok(&cfg, &["calendar", "remove", "rej"]).await;
    app.xadd(&[
        ("id", "after-remove"),
        ("account", "rej"),
        ("video", v),
        ("privacy_level", "SELF_ONLY"),
        ("slot", "next"),
    ])
    .await;
    let rejected = rejections(&app, 5, "the removed calendar's rejection").await;
    assert!(
        rejected[4]["reason"].starts_with("no_calendar:"),
        "{:?}",
        rejected[4]
    );
    // Re-reading an entry whose post exists is a duplicate, whatever the calendar is now.
    let mut conn = app.redis.conn().await;
    let _: String = conn
        .xadd(
            "tiktok-poster:submit",
            "*",
            &[
                ("id", "full-1"),
                ("account", "rej"),
                ("video", v),
                ("privacy_level", "SELF_ONLY"),
                ("slot", "next"),
            ],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_until(Duration::from_secs(10), "the repeat handled", || async {
        let n: usize = redis::cmd("XLEN")
            .arg("tiktok-poster:submit")
            .query_async(&mut app.redis.conn().await)
            .await
            .unwrap();
        (n == 0).then_some(())
    })
    .await;
    assert_eq!(
        app.rejected().await.len(),
        5,
        "a repeat of a recorded post is not rejected"
    );
}

/// A pause holds every post, fixed-time ones too (deferred `calendar_paused`, nothing sent); the
/// resume moves what came due to instants at least `min-spacing` apart (queue posts to free slots),
/// and they are then posted.
#[tokio::test]
async fn pause_holds_every_post_and_resume_spreads_them_by_min_spacing() {
    let (app, cfg, video) = app_with_account("pz").await;
    let v = path_str(&video);
    cli_ok(
        &cfg,
        &[
            "calendar",
            "set",
            "pz",
            "--tz",
            "Europe/Berlin",
            "--slot",
            "* * * * *",
            "--min-spacing",
            "20s",
            "--daily-budget",
            "100",
        ],
    )
    .await;
    cli_ok(&cfg, &["calendar", "pause", "pz"]).await;
    // One queue post (the next minute), three fixed-time posts one second apart.
    app.xadd(&[
        ("id", "q1"),
        ("account", "pz"),
        ("video", v),
        ("privacy_level", "SELF_ONLY"),
        ("slot", "next"),
    ])
    .await;
    let soon = Utc::now();
    for (i, id) in ["f1", "f2", "f3"].iter().enumerate() {
        let at = (soon + chrono::Duration::seconds(1 + i as i64)).to_rfc3339();
        app.xadd(&[
            ("id", id),
            ("account", "pz"),
            ("video", v),
            ("privacy_level", "SELF_ONLY"),
            ("publish_at", &at),
        ])
        .await;
    }
    let q1 = app
        .wait_state("q1", &["scheduled"], Duration::from_secs(10))
        .await;
    let q1_slot = ms(&q1, "held_ms");
    // Everything comes due during the pause and is held.
    for id in ["f1", "f2", "f3"] {
        let p = app
            .wait_state(id, &["deferred"], Duration::from_secs(15))
            .await;
        assert_eq!(p["error_code"], "calendar_paused", "{p:#?}");
    }
    let wait = (q1_slot - Utc::now().timestamp_millis()).max(0) as u64 + 2_000;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let p = app
        .wait_state("q1", &["deferred"], Duration::from_secs(15))
        .await;
    assert_eq!(p["error_code"], "calendar_paused");
    assert!(
        app.sim.posts().await.is_empty(),
        "nothing was sent while paused"
    );

    let resumed_at = Utc::now().timestamp_millis();
    let out = cli_ok(&cfg, &["calendar", "resume", "pz"]).await;
    assert!(out.contains("4 post(s) moved"), "{out}");
    let mut times = Vec::new();
    for id in ["q1", "f1", "f2", "f3"] {
        let p = app.post(id).await;
        let t = ms(&p, "held_ms");
        assert!(t >= resumed_at - 1_000, "{id} moved to the future: {p:#?}");
        assert_eq!(p["sequence"], "1", "{id} moved once");
        times.push(t);
    }
    assert_within_budget_and_spacing(&times, 100, 20_000);
    // The queue post moved to a slot (a whole minute), and says so.
    let q1 = app.post("q1").await;
    assert_eq!(ms(&q1, "held_ms") % 60_000, 0, "{q1:#?}");
    assert!(q1["slot_at"].contains(":00+0"), "{q1:#?}");
    // The first of them is posted: the pause is over.
    let first =
        ["q1", "f1", "f2", "f3"][times.iter().enumerate().min_by_key(|(_, t)| **t).unwrap().0];
    app.wait_state(first, &["inbox", "published"], Duration::from_secs(30))
        .await;
}

/// `calendar slots` lists instants in the zone's offset across a spring-forward night: 02:30 does
/// not exist in Berlin on 28 March 2027 and moves to 03:30; `calendar set` refuses a bad zone with a
/// suggestion and a cron field crontab would refuse.
#[tokio::test]
async fn calendar_slots_follow_the_dst_rules_and_bad_input_is_refused() {
    let (_app, cfg, _video) = app_with_account("dst").await;
    cli_ok(
        &cfg,
        &[
            "calendar",
            "set",
            "dst",
            "--tz",
            "Europe/Berlin",
            "--slot",
            "30 2 * * *",
        ],
    )
    .await;
    let out = cli_ok(
        &cfg,
        &[
            "calendar",
            "slots",
            "dst",
            "--from",
            "2027-03-27T00:00:00Z",
            "--count",
            "3",
            "--json",
        ],
    )
    .await;
    let slots: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let at: Vec<&str> = slots.iter().map(|s| s["at"].as_str().unwrap()).collect();
    assert_eq!(
        at,
        [
            "2027-03-27T02:30:00+01:00",
            "2027-03-28T03:30:00+02:00",
            "2027-03-29T02:30:00+02:00"
        ]
    );
    // (account, zone, slot, exit code, what the message must name)
    for (account, tz, slot, want_code, needle) in [
        ("dst", "Europe/Berln", "0 9 * * *", 2, "Europe/Berlin"),
        ("dst", "UTC", "0 25 * * *", 2, "0 25 * * *"),
        ("nobody", "UTC", "0 9 * * *", 1, "accounts connect nobody"),
    ] {
        let args = ["calendar", "set", account, "--tz", tz, "--slot", slot];
        let (code, _, err) = cli(&cfg, &args).await;
        assert_eq!(code, Some(want_code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?} names {needle:?}: {err}");
    }
}

/// The free rule inside Redis (the ledger's script) and the pure one (`calendar::is_free`) agree on
/// thousands of random cases: posts scattered over three days, random spacings and budgets.
#[tokio::test]
async fn the_free_rule_in_redis_agrees_with_the_pure_rule() {
    use tiktok_poster::posts::{Ledger, Rules, Slotted, parse_fields};
    let redis = crate::support::TestRedis::start(false);
    let conn = tiktok_poster::db::connect(&redis.url()).await.unwrap();
    let ledger = Ledger::new(conn, tiktok_poster::db::Keys::new("tiktok-poster"));
    let sub_at = |at: Option<i64>| {
        let mut f = vec![
            ("account".to_string(), "rule".to_string()),
            ("video".to_string(), "/v.mp4".to_string()),
            ("privacy_level".to_string(), "SELF_ONLY".to_string()),
        ];
        if let Some(at) = at {
            let t = DateTime::from_timestamp_millis(at).unwrap().to_rfc3339();
            f.push(("publish_at".to_string(), t));
        }
        parse_fields(&f).unwrap()
    };
    // The script checks the calendar's version; this one has only that field (the slots are the
    // candidates given here).
    let _: () = redis
        .conn()
        .await
        .hset("tiktok-poster:calendar:rule", "version", 7)
        .await
        .unwrap();
    let base = Utc::now().timestamp_millis() + DAY;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut taken = Vec::new();
    for i in 0..40 {
        let at = base + (rnd(72) as i64) * H + (rnd(4) as i64) * 15 * 60_000;
        ledger
            .create(&format!("fixed-{i}"), &sub_at(Some(at)), &[])
            .await
            .unwrap();
        taken.push(at);
    }
    taken.sort_unstable();
    let (mut agreed_free, mut agreed_taken) = (0, 0);
    for trial in 0..2000 {
        let rules = Rules {
            spacing_ms: [0, 60_000, 15 * 60_000, 2 * H][rnd(4) as usize],
            daily_budget: [1, 3, 8, 15, 40][rnd(5) as usize] as u32,
        };
        let t = base - DAY + (rnd(100 * 4) as i64) * 15 * 60_000 + [0, 1, 59_999][rnd(3) as usize];
        let want =
            tiktok_poster::calendar::is_free(t, &taken, rules.spacing_ms, rules.daily_budget);
        let id = format!("probe-{trial}");
        let text = DateTime::from_timestamp_millis(t).unwrap().to_rfc3339();
        let got = ledger
            .create_in_slot(
                &id,
                &sub_at(None),
                &[],
                &[(t, text, rules.daily_budget)],
                rules,
                7,
            )
            .await
            .unwrap();
        match got {
            Slotted::Taken(0) => {
                assert!(
                    want,
                    "Redis took {t} but the pure rule says it is not free ({rules:?})"
                );
                agreed_free += 1;
                // Give it back, so the set stays the fixed posts only.
                ledger.cancel(&id).await.unwrap();
            }
            Slotted::NoneFree => {
                assert!(
                    !want,
                    "the pure rule says {t} is free but Redis refused it ({rules:?})"
                );
                agreed_taken += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        agreed_free > 20 && agreed_taken > 20,
        "both outcomes seen: {agreed_free} free, {agreed_taken} not"
    );
}
