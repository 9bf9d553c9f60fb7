//! The calendar's two views end to end, over real HTTP against the daemon: the `.ics` feed read back
//! by Python's `icalendar` and guarded by its token (which never reaches Redis in clear text), the
//! week page (escaped titles, free slots, week links, its errors) agreeing with `calendar week
//! --json`, and the page in headless Chromium with the screenshot `docs/calendar-page.png`.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use redis::AsyncCommands;

use crate::app::{TestApp, path_str};
use crate::calendar::{app_with_account, cli_ok};

const T: Duration = Duration::from_secs(60);

/// Reads a feed from stdin; prints its calendar name, parse errors and events as JSON; exits 3 when
/// the module is missing.
const PY_READER: &str = r#"
import json, sys
try:
    import icalendar
except ImportError:
    sys.stderr.write("the Python module icalendar is missing\n")
    sys.exit(3)
cal = icalendar.Calendar.from_ical(sys.stdin.buffer.read())
events = []
for ev in cal.walk("VEVENT"):
    events.append({
        "uid": str(ev.get("UID")),
        "dtstart": ev.decoded("DTSTART").isoformat(),
        "status": str(ev.get("STATUS")),
        "sequence": int(ev.get("SEQUENCE", -1)),
        "summary": str(ev.get("SUMMARY")),
    })
print(json.dumps({
    "version": str(cal.get("VERSION")),
    "errors": [str(e) for c in cal.walk() for e in getattr(c, "errors", [])],
    "events": events,
}))
"#;

const INSTALL: &str =
    "install it with `python3 -m pip install icalendar==7.3.2` (.ci/run installs the same)";

/// The feed as Python's `icalendar` reads it. A missing python3 or module fails the test with the
/// install line.
fn python_parse(feed: &str) -> serde_json::Value {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(PY_READER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): install Python 3, then {INSTALL}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(feed.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        panic!("{}: {INSTALL}", stderr.trim());
    }
    assert!(
        out.status.success(),
        "Python's icalendar refused the feed: {stderr}\n{feed}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// GET `url`: status, Content-Type and body.
async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ctype, r.text().await.unwrap())
}

/// The token in the feed URL a CLI output prints (`…/calendar/NAME.ics?token=TOKEN`).
fn token_in(out: &str) -> String {
    let at = out
        .find(".ics?token=")
        .unwrap_or_else(|| panic!("no feed URL in {out}"));
    out[at + ".ics?token=".len()..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect()
}

/// Every key, field, member and value in Redis, as text (bulk strings read lossily).
async fn redis_text(app: &TestApp) -> Vec<(String, String)> {
    fn flat(v: &redis::Value, out: &mut String) {
        match v {
            redis::Value::BulkString(b) => out.push_str(&String::from_utf8_lossy(b)),
            redis::Value::SimpleString(s) => out.push_str(s),
            redis::Value::Array(a) | redis::Value::Set(a) => a.iter().for_each(|x| {
                flat(x, out);
                out.push('\n');
            }),
            redis::Value::Map(m) => m.iter().for_each(|(k, x)| {
                flat(k, out);
                out.push('\n');
                flat(x, out);
                out.push('\n');
            }),
            other => out.push_str(&format!("{other:?}")),
        }
    }
    let mut conn = app.redis.conn().await;
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    let mut all = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut cmd = match kind.as_str() {
            "string" => redis::cmd("GET"),
            "hash" => redis::cmd("HGETALL"),
            "set" => redis::cmd("SMEMBERS"),
            "list" => {
                let mut c = redis::cmd("LRANGE");
                c.arg(&key).arg(0).arg(-1);
                c
            }
            "zset" => {
                let mut c = redis::cmd("ZRANGE");
                c.arg(&key).arg(0).arg(-1);
                c
            }
            "stream" => {
                let mut c = redis::cmd("XRANGE");
                c.arg(&key).arg("-").arg("+");
                c
            }
            other => panic!("key {key} of type {other}: read it too"),
        };
        if matches!(kind.as_str(), "string" | "hash" | "set") {
            cmd.arg(&key);
        }
        let v: redis::Value = cmd.query_async(&mut conn).await.unwrap();
        let mut text = String::new();
        flat(&v, &mut text);
        all.push((key, text));
    }
    all
}

fn ms(p: &HashMap<String, String>, field: &str) -> i64 {
    p.get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {p:#?}"))
}

async fn submit(app: &TestApp, video: &Path, fields: &[(&str, &str)]) {
    let mut all = vec![("video", path_str(video)), ("privacy_level", "SELF_ONLY")];
    all.extend_from_slice(fields);
    app.xadd(&all).await;
}

/// The feed over HTTP: 200 `text/calendar`, one event per post (UID, DTSTART = `held_ms` in UTC,
/// STATUS CANCELLED for the cancelled one, SEQUENCE 1 for the moved one), read by Python's
/// `icalendar`; the same 404 for a wrong or missing token, an account without a calendar and a
/// name that is no account; a rotated token ends the old URL; no token in clear text in Redis.
#[tokio::test]
async fn the_feed_is_valid_icalendar_and_only_its_token_opens_it() {
    let (app, cfg, video) = app_with_account("feed").await;
    app.connect("nocal", false).await;
    let set = [
        "calendar",
        "set",
        "feed",
        "--tz",
        "Europe/Berlin",
        "--slot",
        "0 * * * *",
        "--daily-budget",
        "20",
    ];
    cli_ok(&cfg, &set).await;
    for (id, title) in [
        ("feed-q1", "Launch 🚀 day"),
        ("feed-q2", "Second; with, \\ \"q\""),
    ] {
        submit(
            &app,
            &video,
            &[
                ("id", id),
                ("account", "feed"),
                ("title", title),
                ("slot", "next"),
            ],
        )
        .await;
        app.wait_state(id, &["scheduled"], T).await;
    }
    // A fixed-time post off the hour, five hours ahead; then moved to the next free slot.
    let fixed_ms = (Utc::now().timestamp_millis() / 60_000 + 5 * 60 + 7) * 60_000;
    let fixed_at = DateTime::from_timestamp_millis(fixed_ms)
        .unwrap()
        .to_rfc3339();
    submit(
        &app,
        &video,
        &[
            ("id", "feed-fixed"),
            ("account", "feed"),
            ("title", "Fixed <time>"),
            ("publish_at", &fixed_at),
        ],
    )
    .await;
    app.wait_state("feed-fixed", &["scheduled"], T).await;
    let out = cli_ok(&cfg, &["calendar", "reslot", "feed-fixed"]).await;
    assert!(out.contains("feed-fixed moved to"), "{out}");
    cli_ok(&cfg, &["cancel", "feed-q2"]).await;
    app.wait_state("feed-q2", &["cancelled"], T).await;
    let mut posts = HashMap::new();
    for id in ["feed-q1", "feed-q2", "feed-fixed"] {
        posts.insert(id, app.post(id).await);
    }
    assert_ne!(ms(&posts["feed-fixed"], "held_ms"), fixed_ms, "moved");

    let shown = cli_ok(&cfg, &["calendar", "show", "feed"]).await;
    let token = token_in(&shown);
    assert!(token.len() >= 20, "{token:?}");
    assert!(
        token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "URL-safe: {token:?}"
    );
    let url = |name: &str, q: &str| format!("{}/calendar/{name}{q}", app.base);
    let (status, ctype, body) = get(&url("feed.ics", &format!("?token={token}"))).await;
    assert_eq!(status, 200, "{body}");
    assert!(ctype.starts_with("text/calendar"), "{ctype}");
    let v = python_parse(&body);
    assert_eq!(v["version"], "2.0");
    assert_eq!(v["errors"], serde_json::json!([]), "{body}");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "one event per post: {body}");
    for (id, p) in &posts {
        let ev = events
            .iter()
            .find(|e| e["uid"] == format!("{id}@tiktok-poster"))
            .unwrap_or_else(|| panic!("no event for {id}: {body}"));
        let start = DateTime::parse_from_rfc3339(ev["dtstart"].as_str().unwrap()).unwrap();
        assert_eq!(start.offset().local_minus_utc(), 0, "UTC: {ev}");
        assert_eq!(start.timestamp_millis(), ms(p, "held_ms"), "{id}: {ev}");
        let summary = ev["summary"].as_str().unwrap();
        assert!(summary.starts_with("feed: "), "{summary}");
        assert!(summary.contains(p["title"].as_str()), "{summary} vs {p:?}");
        let cancelled = *id == "feed-q2";
        assert_eq!(ev["status"] == "CANCELLED", cancelled, "{id}: {ev}");
        let moved = *id == "feed-fixed";
        assert_eq!(ev["sequence"], if moved { 1 } else { 0 }, "{id}: {ev}");
    }

    // The same 404 for everything that is not this account's token on this account's feed.
    let mut wrong = token.clone();
    let last = if wrong.ends_with('A') { "B" } else { "A" };
    wrong.replace_range(wrong.len() - 1.., last);
    let misses = [
        url("feed.ics", &format!("?token={wrong}")),
        url("feed.ics", "?token=nottheone"),
        url("feed.ics", "?token="),
        url("feed.ics", ""),
        url("nocal.ics", &format!("?token={token}")),
        url("ghost.ics", &format!("?token={token}")),
        url("bad%20name!.ics", &format!("?token={token}")),
        url("feed", &format!("?token={token}")),
    ];
    let mut bodies = Vec::new();
    for u in &misses {
        let (status, _, body) = get(u).await;
        assert_eq!(status, 404, "{u}: {body}");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one answer: {bodies:?}"
    );

    // Rotation: the old URL stops working, the new one works, `calendar show` prints the new one.
    let out = cli_ok(&cfg, &["calendar", "feed-token", "feed", "--rotate"]).await;
    let rotated = token_in(&out);
    assert_ne!(rotated, token);
    let (status, _, _) = get(&url("feed.ics", &format!("?token={token}"))).await;
    assert_eq!(status, 404, "the old token after rotation");
    let (status, ctype, body) = get(&url("feed.ics", &format!("?token={rotated}"))).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/calendar"));
    assert_eq!(python_parse(&body)["events"].as_array().unwrap().len(), 3);
    let shown = cli_ok(&cfg, &["calendar", "show", "feed"]).await;
    assert_eq!(token_in(&shown), rotated);

    // Neither token is anywhere in Redis in clear text; the calendar hash holds it sealed.
    let dump = redis_text(&app).await;
    let cal = dump
        .iter()
        .find(|(k, _)| k == "tiktok-poster:calendar:feed")
        .expect("the calendar hash");
    assert!(cal.1.contains("feed_token_sealed"), "{}", cal.1);
    for (key, text) in &dump {
        for t in [&token, &rotated] {
            assert!(
                !text.contains(t.as_str()),
                "the feed token in clear in {key}"
            );
        }
    }
}

/// HTML-escapes as the page does.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The text between `from` and the next `to` after it, and the rest.
fn between<'a>(s: &'a str, from: &str, to: &str) -> Option<(&'a str, &'a str)> {
    let start = s.find(from)? + from.len();
    let len = s[start..].find(to)?;
    Some((&s[start..start + len], &s[start + len + to.len()..]))
}

/// One entry as shown: (instant, slot, free, state, title as HTML).
type Shown = (String, bool, bool, Option<String>, Option<String>);

/// The page's days: (heading, entries), read from its markup.
fn page_days(html: &str) -> Vec<(String, Vec<Shown>)> {
    let mut days = Vec::new();
    for section in html.split("<section class=day>").skip(1) {
        let (heading, rest) = between(section, "<h2>", "</h2>").unwrap();
        let mut entries = Vec::new();
        for li in rest.split("<li class=\"").skip(1) {
            let li = &li[..li.find("</li>").unwrap()];
            let (at, _) = between(li, "datetime=\"", "\"").unwrap();
            let state = between(li, "<span class=\"badge state-", "</span>")
                .map(|(b, _)| b[b.find("\">").unwrap() + 2..].to_string());
            let title = state.as_ref().map(|_| {
                let after = &li[li.find("</span>").unwrap() + "</span>".len()..];
                let after = after.split(" <small").next().unwrap();
                match between(after, "\">", "</a>") {
                    Some((t, _)) if after.starts_with("<a ") => t.to_string(),
                    _ => after.to_string(),
                }
            });
            entries.push((
                at.to_string(),
                li.starts_with("entry slot"),
                li.contains("<span class=free>free</span>"),
                state,
                title,
            ));
        }
        days.push((heading.to_string(), entries));
    }
    days
}

fn local(zone: Tz, d: NaiveDate, h: u32, m: u32) -> DateTime<Utc> {
    zone.from_local_datetime(&d.and_hms_opt(h, m, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

/// The page of a week two weeks ahead: 200 with the posts' titles escaped (a hostile one too), the
/// free slots marked, the previous and next weeks linked; the same days, slots and posts as
/// `calendar week --json`; 400 for a bad date or no account, 404 without a calendar; the accounts
/// page links to it.
#[tokio::test]
async fn the_week_page_shows_the_posts_escaped_and_agrees_with_calendar_week() {
    let (app, cfg, video) = app_with_account("pg").await;
    app.connect("nocal", false).await;
    let set = [
        "calendar",
        "set",
        "pg",
        "--tz",
        "Europe/Berlin",
        "--slot",
        "0 9 * * *",
        "--slot",
        "0 18 * * *",
        "--daily-budget",
        "20",
    ];
    cli_ok(&cfg, &set).await;
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let today = Utc::now().with_timezone(&berlin).date_naive();
    let monday = today + Days::days(14 - i64::from(today.weekday().num_days_from_monday()));
    let wednesday = monday + Days::days(2);
    let hostile = "<script>alert(\"x\")</script> & 'co' 😀";
    let posts = [
        ("pg-hostile", hostile, local(berlin, monday, 9, 0)),
        (
            "pg-emoji",
            "Café ☕ tour 🌍",
            local(berlin, wednesday, 18, 0),
        ),
        (
            "pg-off",
            "Off-slot <b>note</b>",
            local(berlin, monday + Days::days(3), 12, 30),
        ),
    ];
    for (id, title, at) in &posts {
        let at = at.to_rfc3339();
        submit(
            &app,
            &video,
            &[
                ("id", id),
                ("account", "pg"),
                ("title", title),
                ("publish_at", &at),
            ],
        )
        .await;
        app.wait_state(id, &["scheduled"], T).await;
    }

    let page_url = |q: &str| format!("{}/calendar{q}", app.base);
    let (status, ctype, html) = get(&page_url(&format!("?account=pg&week={wednesday}"))).await;
    assert_eq!(status, 200, "{html}");
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(!html.contains("<script>alert"), "a title became markup");
    assert!(!html.contains("<b>note"), "a title became markup");
    for (_, title, _) in &posts {
        assert!(html.contains(&esc(title)), "{title} escaped in the page");
    }
    let sunday = monday + Days::days(6);
    assert!(
        html.contains(&format!("week of {monday} to {sunday}")),
        "{html}"
    );
    let prev = monday - Days::days(7);
    let next = monday + Days::days(7);
    assert!(html.contains(&format!(
        "<a rel=prev href=\"/calendar?account=pg&amp;week={prev}\">"
    )));
    assert!(html.contains(&format!(
        "<a rel=next href=\"/calendar?account=pg&amp;week={next}\">"
    )));

    let days = page_days(&html);
    assert_eq!(days.len(), 7);
    assert_eq!(days[0].0, format!("Mon {monday}"));
    assert_eq!(days[6].0, format!("Sun {sunday}"));
    let entries: Vec<&Shown> = days.iter().flat_map(|(_, e)| e).collect();
    // Fourteen slots (two held) and one post off any slot.
    assert_eq!(entries.len(), 15, "{days:#?}");
    assert_eq!(entries.iter().filter(|e| e.1).count(), 14);
    assert_eq!(entries.iter().filter(|e| e.2).count(), 12, "free slots");
    for (id, title, at) in &posts {
        let shown = entries
            .iter()
            .find(|e| {
                DateTime::parse_from_rfc3339(&e.0)
                    .unwrap()
                    .timestamp_millis()
                    == at.timestamp_millis()
            })
            .unwrap_or_else(|| panic!("{id} not on the page"));
        assert_eq!(shown.3.as_deref(), Some("scheduled"), "{id}");
        assert_eq!(shown.4.as_deref(), Some(esc(title).as_str()), "{id}");
        assert!(!shown.2, "{id}'s instant is not free");
    }

    // `calendar week --json` shows the same days, slots and posts.
    let out = cli_ok(
        &cfg,
        &[
            "calendar",
            "week",
            "pg",
            "--week",
            &wednesday.to_string(),
            "--json",
        ],
    )
    .await;
    let week: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(week["week"], monday.to_string());
    assert_eq!(week["prev"], prev.to_string());
    assert_eq!(week["next"], next.to_string());
    let from_json: Vec<(String, Vec<Shown>)> = week["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let heading = format!(
                "{} {}",
                d["weekday"].as_str().unwrap(),
                d["date"].as_str().unwrap()
            );
            let entries = d["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["at"].as_str().unwrap().to_string(),
                        e["slot"].as_bool().unwrap(),
                        e["free"].as_bool().unwrap(),
                        e["post"]["state"].as_str().map(esc),
                        e["post"]["title"].as_str().map(esc),
                    )
                })
                .collect();
            (heading, entries)
        })
        .collect();
    assert_eq!(from_json, days, "the page and `calendar week --json` agree");

    // Errors: a bad date or no account is 400, an account without a calendar 404.
    for q in [
        "?account=pg&week=2026-02-30",
        "?account=pg&week=01/12/2026",
        // Years chrono reads but whose week arithmetic would overflow.
        "?account=pg&week=%2B262143-12-31",
        "?account=pg&week=-262143-01-05",
        "",
        "?account=",
        "?week=2026-12-01",
        "?account=no%20such!",
    ] {
        let (status, _, body) = get(&page_url(q)).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body.contains("class=bad"), "{q}: {body}");
    }
    for q in ["?account=nocal", "?account=ghost"] {
        let (status, _, body) = get(&page_url(q)).await;
        assert_eq!(status, 404, "{q}: {body}");
    }
    let (status, _, home) = get(&format!("{}/", app.base)).await;
    assert_eq!(status, 200);
    assert!(home.contains("<a href=\"/calendar?account=pg\">"), "{home}");
    assert!(
        home.contains("<a href=\"/calendar?account=nocal\">"),
        "{home}"
    );
}

/// Of a few zones, Berlin when its current week has a day left, else the one with the most left:
/// between UTC+14 and UTC-11 one always has more than 24 hours, enough for the three slots after
/// now that the page test fills (at most 15 hours away with slots at 9, 12, 15, 18 and 21).
fn roomy_zone() -> Tz {
    let now = Utc::now();
    let left = |z: &str| {
        let zone: Tz = z.parse().unwrap();
        let d = now.with_timezone(&zone).date_naive();
        let next_monday = d + Days::days(7 - i64::from(d.weekday().num_days_from_monday()));
        (zone, (local(zone, next_monday, 0, 0) - now).num_hours())
    };
    let berlin = left("Europe/Berlin");
    let (zone, hours) = if berlin.1 >= 24 {
        berlin
    } else {
        [left("Pacific/Kiritimati"), left("Pacific/Pago_Pago")]
            .into_iter()
            .max_by_key(|(_, h)| *h)
            .unwrap()
    };
    assert!(hours >= 20, "{hours} hours left in the week of {zone}");
    zone
}

/// This week's page in headless Chromium (JavaScript off) at 1400x900: seven columns side by side,
/// published, scheduled and cancelled posts with emoji titles where they belong, free slots marked;
/// the screenshot is copied to `$TP_SCREENSHOTS/calendar-page.png` (docs/ keeps one).
#[tokio::test]
async fn the_calendar_page_in_headless_chromium() {
    let Some(dir) = crate::browser::browser_dir() else {
        return;
    };
    let (app, cfg, video) = app_with_account("studio").await;
    let zone = roomy_zone();
    let set = [
        "calendar",
        "set",
        "studio",
        "--tz",
        zone.name(),
        "--slot",
        "0 9,12,15,18,21 * * *",
        "--daily-budget",
        "20",
    ];
    cli_ok(&cfg, &set).await;
    // Two posts now (published by the simulator), two queued into the next slots, one fixed-time
    // post later, cancelled.
    let published = [
        ("st-pub1", "Morning coffee ☕ #latte"),
        ("st-pub2", "Sunset 🌅 over the bay"),
    ];
    for (id, title) in published {
        submit(
            &app,
            &video,
            &[("id", id), ("account", "studio"), ("title", title)],
        )
        .await;
    }
    let queued = [
        ("st-q1", "Launch day 🚀 new drop"),
        ("st-q2", "<b>bold</b> & \"quotes\" 😀"),
    ];
    for (id, title) in queued {
        submit(
            &app,
            &video,
            &[
                ("id", id),
                ("account", "studio"),
                ("title", title),
                ("slot", "next"),
            ],
        )
        .await;
        app.wait_state(id, &["scheduled"], T).await;
    }
    let mut later = (Utc::now().timestamp_millis() / 60_000 + 100) * 60_000;
    if later % 3_600_000 == 0 {
        later += 7 * 60_000;
    }
    let later = DateTime::from_timestamp_millis(later).unwrap().to_rfc3339();
    let cancelled = ("st-gone", "Teaser 🎬 (cancelled)");
    submit(
        &app,
        &video,
        &[
            ("id", cancelled.0),
            ("account", "studio"),
            ("title", cancelled.1),
            ("publish_at", &later),
        ],
    )
    .await;
    app.wait_state(cancelled.0, &["scheduled"], T).await;
    cli_ok(&cfg, &["cancel", cancelled.0]).await;
    for (id, _) in published {
        app.wait_state(id, &["published"], T).await;
    }

    let shots = app.dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("calendar-page.png");
    let out = tokio::process::Command::new("node")
        .arg(dir.join("calendar.mjs"))
        .arg(format!("{}/calendar?account=studio", app.base))
        .arg(&png)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["heading"], "Calendar of studio");
    let monday = {
        let d = Utc::now().with_timezone(&zone).date_naive();
        d - Days::days(i64::from(d.weekday().num_days_from_monday()))
    };
    let header = seen["header"].as_str().unwrap();
    assert!(
        header.contains(&format!("studio · {} · week of {monday}", zone.name())),
        "{header}"
    );
    let days = seen["days"].as_array().unwrap();
    assert_eq!(days.len(), 7, "{seen}");
    // Seven columns side by side in a 1400-pixel window, none wider than the window allows.
    for w in days.windows(2) {
        assert_eq!(w[0]["top"], w[1]["top"], "one row: {seen}");
        assert!(w[1]["left"].as_f64() > w[0]["left"].as_f64(), "{seen}");
    }
    for d in days {
        assert!(d["width"].as_f64().unwrap() > 120.0, "{d}");
    }
    assert!(
        seen["scrollWidth"].as_f64().unwrap() <= 1400.0,
        "no sideways scroll: {seen}"
    );
    let entries: Vec<&serde_json::Value> = days
        .iter()
        .flat_map(|d| d["entries"].as_array().unwrap())
        .collect();
    let find = |title: &str| {
        entries
            .iter()
            .find(|e| e["title"] == title)
            .unwrap_or_else(|| panic!("{title} not shown: {seen}"))
    };
    for (_, title) in published {
        assert_eq!(find(title)["state"], "published");
    }
    for (id, title) in queued {
        let e = find(title);
        assert_eq!(e["state"], "scheduled");
        assert!(e["slot"].as_bool().unwrap(), "{id} sits in a slot: {e}");
        let held = ms(&app.post(id).await, "held_ms");
        let at = DateTime::parse_from_rfc3339(e["datetime"].as_str().unwrap()).unwrap();
        assert_eq!(at.timestamp_millis(), held, "{id}");
    }
    let gone = find(cancelled.1);
    assert_eq!(gone["state"], "cancelled");
    assert_eq!(gone["struck"], "line-through");
    let free = entries.iter().filter(|e| e["free"] == true).count();
    assert!(free >= 1, "free slots marked: {seen}");
    assert!(
        entries
            .iter()
            .all(|e| e["time"].as_str().is_some_and(|t| t.len() == 5)),
        "every entry has its HH:MM: {seen}"
    );
    let meta = std::fs::metadata(&png).unwrap();
    assert!(meta.len() > 10_000, "a screenshot of {} bytes", meta.len());
    if let Ok(dest) = std::env::var("TP_SCREENSHOTS") {
        std::fs::copy(&png, Path::new(&dest).join("calendar-page.png")).unwrap();
    }
}
