//! Hostile producers (issue 11, points 6 and 11): what a producer sent is what is posted, or it is
//! rejected with a reason; nothing a producer or TikTok sends makes the daemon keep or repeat an
//! unbounded amount of it. Each test drives the real daemon with its own redis-server and simulator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;

use crate::app::{TestApp, path_str};

const T: Duration = Duration::from_secs(20);

/// Submits a good post and waits until ingest has recorded it: one consumer handles entries in
/// order, so every entry added before it has been handled by then.
async fn sentinel(app: &TestApp, name: &str) -> String {
    let (video, _) = app.video(&format!("{name}.mp4"), 300_000);
    let id = app
        .xadd(&[
            ("id", name),
            ("account", "main"),
            ("video", path_str(&video)),
            ("privacy_level", "SELF_ONLY"),
        ])
        .await;
    assert!(id.contains('-'));
    crate::support::wait_until(T, "the sentinel post to be recorded", || async {
        app.post(name).await.contains_key("state").then_some(())
    })
    .await;
    name.to_string()
}

/// The rejected entries as raw bytes (a rejected value need not be UTF-8).
async fn rejected_raw(app: &TestApp) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut conn = app.redis.conn().await;
    let v: redis::Value = redis::cmd("XRANGE")
        .arg("tiktok-poster:rejected")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let bytes = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => b.clone(),
        other => panic!("not a bulk string: {other:?}"),
    };
    let redis::Value::Array(entries) = v else {
        panic!("XRANGE reply: {v:?}")
    };
    entries
        .iter()
        .map(|e| {
            let redis::Value::Array(parts) = e else {
                panic!("{e:?}")
            };
            let redis::Value::Array(fields) = &parts[1] else {
                panic!("{e:?}")
            };
            fields
                .chunks(2)
                .map(|c| (bytes(&c[0]), bytes(&c[1])))
                .collect()
        })
        .collect()
}

fn reasons(rejected: &[HashMap<String, String>]) -> Vec<&str> {
    rejected.iter().map(|r| r["reason"].as_str()).collect()
}

/// A title that is not UTF-8 is rejected with a reason naming the field; the rejected entry keeps
/// the bytes as sent, and TikTok never gets a title with replacement characters.
#[tokio::test]
async fn a_title_that_is_not_utf8_is_rejected_not_posted_with_replacement_characters() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let (video, sha) = app.video("latin1.mp4", 300_000);
    let mut conn = app.redis.conn().await;
    let title: &[u8] = b"caf\xe9 #cat";
    let entry: String = conn
        .xadd(
            "tiktok-poster:submit",
            "*",
            &[
                (b"account".as_slice(), b"main".as_slice()),
                (b"video", path_str(&video).as_bytes()),
                (b"title", title),
                (b"privacy_level", b"SELF_ONLY"),
            ],
        )
        .await
        .unwrap();
    sentinel(&app, "after-latin1").await;
    assert!(
        app.post(&entry).await.is_empty(),
        "the entry was recorded as a post: {:?}",
        app.post(&entry).await
    );
    let rejected = app.rejected().await;
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert!(
        rejected[0]["reason"].contains("field `title` is not valid UTF-8 (byte 3 (0xe9)"),
        "{}",
        rejected[0]["reason"]
    );
    let raw = rejected_raw(&app).await;
    assert!(
        raw[0].contains(&(b"title".to_vec(), title.to_vec())),
        "the rejected entry keeps the bytes as sent: {:?}",
        raw[0]
    );
    assert!(app.sim_posts_with(&sha).await.is_empty());
}

/// A `json` field with the same key twice is rejected, as the flat form rejects a repeated field:
/// `SELF_ONLY` then `PUBLIC_TO_EVERYONE` is never posted publicly.
#[tokio::test]
async fn a_json_field_with_a_repeated_key_is_rejected_and_nothing_is_posted_public() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let (video, sha) = app.video("twice.mp4", 300_000);
    let v = path_str(&video);
    let text = format!(
        r#"{{"account":"main","video":"{v}","privacy_level":"SELF_ONLY","privacy_level":"PUBLIC_TO_EVERYONE"}}"#
    );
    let entry = app.xadd(&[("json", &text)]).await;
    // The same at depth: refused before the nested value is even looked at.
    let nested = format!(
        r#"{{"account":"main","video":"{v}","privacy_level":"SELF_ONLY","title":{{"a":1,"a":2}}}}"#
    );
    app.xadd(&[("json", &nested)]).await;
    sentinel(&app, "after-twice").await;
    assert!(app.post(&entry).await.is_empty(), "recorded: {entry}");
    let rejected = app.rejected().await;
    let reasons = reasons(&rejected);
    assert_eq!(reasons.len(), 2, "{reasons:#?}");
    assert!(
        reasons[0].contains("key `privacy_level` is given twice"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("key `a` is given twice"),
        "{}",
        reasons[1]
    );
    assert_eq!(rejected[0]["json"], text, "the original field is kept");
    assert!(app.sim_posts_with(&sha).await.is_empty());
    let public: Vec<_> = app
        .sim
        .posts()
        .await
        .into_iter()
        .filter(|p| p["post_info"]["privacy_level"] == "PUBLIC_TO_EVERYONE")
        .collect();
    assert!(public.is_empty(), "{public:#?}");
}

/// Control characters are rejected in every field (the reason names the field and the character),
/// except line feeds in a title, which TikTok shows as line breaks and which arrive as sent; a
/// reason stays one line even when a field name holds a line feed.
#[tokio::test]
async fn control_characters_are_rejected_and_a_line_break_in_a_title_is_posted_as_sent() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let (video, sha) = app.video("controls.mp4", 300_000);
    let v = path_str(&video);
    let bell = app
        .xadd(&[
            ("account", "main"),
            ("video", v),
            ("title", "ring \u{7} the bell"),
            ("privacy_level", "SELF_ONLY"),
        ])
        .await;
    let escape = app
        .xadd(&[
            ("account", "main"),
            ("video", v),
            ("title", "clear \u{1b}[2J the screen"),
            ("privacy_level", "SELF_ONLY"),
        ])
        .await;
    let c1 = app
        .xadd(&[
            ("account", "main"),
            ("video", v),
            ("privacy_level", "SELF_ONLY\u{85}"),
        ])
        .await;
    // A reason is one line, whatever the producer put in a name.
    app.xadd(&[("forged\nreason: ok", "x")]).await;
    let lines = app
        .xadd(&[
            ("account", "main"),
            ("video", v),
            ("title", "line one\nline two #cat"),
            ("privacy_level", "SELF_ONLY"),
        ])
        .await;
    let post = app.wait_state(&lines, &["published"], T).await;
    assert_eq!(post["title"], "line one\nline two #cat");
    for id in [&bell, &escape, &c1] {
        assert!(app.post(id).await.is_empty(), "recorded: {id}");
    }
    let rejected = app.rejected().await;
    let reasons = reasons(&rejected);
    assert_eq!(reasons.len(), 4, "{reasons:#?}");
    assert!(
        reasons[3].contains("unknown field `forged\\nreason: ok`"),
        "{}",
        reasons[3]
    );
    assert!(reasons.iter().all(|r| !r.contains('\n')), "{reasons:#?}");
    for (reason, want) in reasons.iter().zip([
        "field `title` holds the control character U+0007",
        "field `title` holds the control character U+001B",
        "field `privacy_level` holds the control character U+0085",
    ]) {
        assert!(reason.contains(want), "{reason}");
    }
    assert!(reasons[0].contains("line breaks"), "{}", reasons[0]);
    let sims = app.sim_posts_with(&sha).await;
    assert_eq!(sims.len(), 1, "only the title with line breaks: {sims:#?}");
    assert_eq!(sims[0]["post_info"]["title"], "line one\nline two #cat");
}

/// A cover frame at or past the end of the video (its duration is probed at submission) is
/// rejected; one inside it is posted.
#[tokio::test]
async fn a_cover_timestamp_past_the_end_of_the_video_is_rejected() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let (video, sha) = app.video("cover.mp4", 300_000);
    let v = path_str(&video);
    let past = app
        .xadd(&[
            ("account", "main"),
            ("video", v),
            ("privacy_level", "SELF_ONLY"),
            ("video_cover_timestamp_ms", "5000"),
        ])
        .await;
    let inside = app
        .xadd(&[
            ("account", "main"),
            ("video", v),
            ("privacy_level", "SELF_ONLY"),
            ("video_cover_timestamp_ms", "600"),
        ])
        .await;
    app.wait_state(&inside, &["published"], T).await;
    assert!(app.post(&past).await.is_empty(), "recorded: {past}");
    let rejected = app.rejected().await;
    let reasons = reasons(&rejected);
    assert_eq!(reasons.len(), 1, "{reasons:#?}");
    assert!(
        reasons[0]
            .contains("`video_cover_timestamp_ms` is 5000 ms but the video is only 1200 ms long"),
        "{}",
        reasons[0]
    );
    let sims = app.sim_posts_with(&sha).await;
    assert_eq!(sims.len(), 1, "{sims:#?}");
    assert_eq!(sims[0]["post_info"]["video_cover_timestamp_ms"], 600);
}

/// A `publish_at` more than a year ahead is rejected; one within the year is scheduled.
#[tokio::test]
async fn publish_at_more_than_a_year_ahead_is_rejected() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let (video, _) = app.video("far.mp4", 300_000);
    let v = path_str(&video);
    let now = chrono::Utc::now();
    let far = (now + chrono::Duration::days(400)).to_rfc3339();
    let near = (now + chrono::Duration::days(300)).to_rfc3339();
    let far_id = app
        .xadd(&[
            ("account", "main"),
            ("video", v),
            ("privacy_level", "SELF_ONLY"),
            ("publish_at", &far),
        ])
        .await;
    let near_id = app
        .xadd(&[
            ("account", "main"),
            ("video", v),
            ("privacy_level", "SELF_ONLY"),
            ("publish_at", &near),
        ])
        .await;
    app.wait_state(&near_id, &["scheduled"], T).await;
    assert!(app.post(&far_id).await.is_empty(), "recorded: {far_id}");
    let rejected = app.rejected().await;
    let reasons = reasons(&rejected);
    assert_eq!(reasons.len(), 1, "{reasons:#?}");
    assert!(
        reasons[0].contains("is more than a year ahead") && reasons[0].contains("12 months"),
        "{}",
        reasons[0]
    );
}

/// An id that exists with different content is rejected ("id exists with different content") and
/// the post keeps what it was recorded with; the same id with the same content, in either form,
/// stays a silent no-op.
#[tokio::test]
async fn an_id_with_different_content_is_rejected_and_the_same_content_stays_a_no_op() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let (video, sha) = app.video("same-id.mp4", 300_000);
    let v = path_str(&video);
    let first = [
        ("id", "cal-7"),
        ("account", "main"),
        ("video", v),
        ("title", "first caption"),
        ("privacy_level", "SELF_ONLY"),
    ];
    app.xadd(&first).await;
    app.wait_state("cal-7", &["published"], T).await;
    let changed = app
        .xadd(&[
            ("id", "cal-7"),
            ("account", "main"),
            ("video", v),
            ("title", "another caption"),
            ("privacy_level", "SELF_ONLY"),
        ])
        .await;
    let again = json!({"id": "cal-7", "account": "main", "video": v, "title": "first caption",
        "privacy_level": "SELF_ONLY"})
    .to_string();
    app.xadd(&[("json", &again)]).await;
    app.xadd(&first).await;
    sentinel(&app, "after-same-id").await;
    let rejected = app.rejected().await;
    assert_eq!(rejected.len(), 1, "only the changed copy: {rejected:#?}");
    assert!(
        rejected[0]["reason"].starts_with("id exists with different content"),
        "{}",
        rejected[0]["reason"]
    );
    assert_eq!(rejected[0]["entry_id"], changed);
    assert_eq!(rejected[0]["title"], "another caption");
    assert_eq!(app.post("cal-7").await["title"], "first caption");
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);
    app.wait_state("after-same-id", &["published"], T).await;
    assert_eq!(
        app.sim.stats().await["requests"]["video_init"],
        2,
        "cal-7 and the sentinel"
    );
}

/// Collects what the daemon logs on this test's thread (the runtime is single-threaded, so every
/// daemon task logs here).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A 10 MB value is echoed only within bounds: a short reason, a bounded rejected entry (each value
/// cut with a marker, the whole entry capped), a short log line.
#[tokio::test]
async fn a_ten_megabyte_value_is_echoed_only_within_bounds() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    // Tracing caches per call site whether anyone listens. A call site that another test's thread
    // registered while this thread-local subscriber was being installed can keep a stale "nobody
    // listens" (seen once in CI: 4 rejected entries, 0 log lines). Every such registration has
    // finished by now, so rebuilding the cache here makes the capture below see every event.
    tracing::callsite::rebuild_interest_cache();
    let ten_mb = "x".repeat(10 << 20);
    // A nested value inside a small-looking JSON object, a 10 MB JSON field, a 10 MB flat field,
    // and 200 fields of 100 KB.
    let nested = format!(
        r#"{{"account":"main","title":{{"a":"{}"}}}}"#,
        "y".repeat(60_000)
    );
    app.xadd(&[("json", &nested)]).await;
    let big_json = format!(r#"{{"account":"main","title":"{ten_mb}"}}"#);
    app.xadd(&[("json", &big_json)]).await;
    app.xadd(&[("account", "main"), ("title", &ten_mb)]).await;
    let wide: Vec<(String, String)> = (0..200)
        .map(|i| (format!("f{i}"), "z".repeat(100_000)))
        .collect();
    let mut conn = app.redis.conn().await;
    let _: String = conn.xadd("tiktok-poster:submit", "*", &wide).await.unwrap();
    sentinel(&app, "after-big").await;
    let raw = rejected_raw(&app).await;
    assert_eq!(raw.len(), 4);
    for entry in &raw {
        let total: usize = entry.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(
            total <= 32 * 1024 + 4096,
            "a rejected entry of {total} bytes"
        );
        let reason = &entry.iter().find(|(k, _)| k == b"reason").unwrap().1;
        assert!(reason.len() <= 2048, "a reason of {} bytes", reason.len());
    }
    let rejected = app.rejected().await;
    assert!(
        rejected[0]["reason"]
            .contains("`title` must be a string, number or boolean, not an object"),
        "{}",
        rejected[0]["reason"]
    );
    assert!(
        rejected[1]["reason"].contains("at most 65536"),
        "{}",
        rejected[1]["reason"]
    );
    assert!(
        rejected[1]["json"].ends_with(&format!("…[cut: {} bytes in all]", big_json.len())),
        "the cut is marked"
    );
    assert!(rejected[2]["title"].ends_with(&format!("…[cut: {} bytes in all]", 10 << 20)));
    assert!(rejected[3]["fields_dropped"].parse::<usize>().unwrap() > 100);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let said: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Submission rejected."))
        .collect();
    assert_eq!(said.len(), 4, "{text}");
    let longest = text.lines().map(str::len).max().unwrap();
    assert!(longest <= 4096, "a log line of {longest} bytes");
}

/// Every handled submit entry, accepted or rejected, is deleted from the submit stream once it is
/// acknowledged, so the stream does not grow with the number of submissions.
#[tokio::test]
async fn handled_submit_entries_are_deleted_from_the_submit_stream() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    for i in 0..3 {
        app.submit("main", &format!("trim{i}.mp4"), 300_000).await;
        app.xadd(&[("account", "main")]).await;
    }
    sentinel(&app, "after-trim").await;
    assert_eq!(app.rejected().await.len(), 3);
    let mut conn = app.redis.conn().await;
    let len: i64 = conn.xlen("tiktok-poster:submit").await.unwrap();
    assert_eq!(len, 0, "the submit stream keeps handled entries");
}

/// An answer from TikTok past the client's 1 MiB body cap (a valid answer padded with 2 MiB of
/// whitespace) is an error naming the cap, not read whole; the next post goes through.
#[tokio::test]
async fn a_tiktok_answer_past_the_body_cap_is_an_error_naming_it() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    app.sim
        .fault(json!({"endpoint": "creator_info", "pad_bytes": 2 << 20}))
        .await;
    let (id, sha) = app.submit("main", "padded.mp4", 300_000).await;
    let post = app.wait_state(&id, &["failed", "published"], T).await;
    assert_eq!(post["state"], "failed", "{post:#?}");
    assert_eq!(post["error_code"], "response_too_large", "{post:#?}");
    assert!(
        post["error_message"].contains("1 MiB"),
        "{}",
        post["error_message"]
    );
    assert!(app.sim_posts_with(&sha).await.is_empty());
    let (id, sha) = app.submit("main", "plain.mp4", 300_000).await;
    app.wait_state(&id, &["published"], T).await;
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);
}

/// The OAuth token endpoint is capped the same way: a padded answer to a code exchange is refused.
#[tokio::test]
async fn a_token_answer_past_the_body_cap_is_refused() {
    let sim = crate::support::TestSim::spawn(|_| {}).await;
    let req = crate::support::auth_request("capped", false);
    let q = sim.authorize(&req).await;
    let code = crate::support::param(&q, "code").unwrap();
    sim.fault(json!({"endpoint": "token", "pad_bytes": 2 << 20}))
        .await;
    let e = sim
        .client
        .exchange_code(&code, crate::support::REDIRECT, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, "response_too_large", "{e}");
    assert!(e.to_string().contains("1048576 bytes"), "{e}");
}

/// `enqueue` applies the same rules: a file with a repeated key or bytes that are not UTF-8 is
/// refused, and an existing id with other content is refused, while the same content again is the
/// usual no-op.
#[tokio::test]
async fn enqueue_refuses_repeated_keys_bad_utf8_and_an_id_with_other_content() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let cfg = app.cli_config("cli", &[], "");
    let run = |args: &[&str]| crate::app::run_cli(&cfg, args);
    let (video, _) = app.video("cli-input.mp4", 300_000);
    let v = path_str(&video);
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let twice = app.dir.path().join("twice.json");
    std::fs::write(
        &twice,
        format!(
            r#"{{"id":"cli-twice","account":"main","video":"{v}","publish_at":"{later}","privacy_level":"SELF_ONLY","privacy_level":"PUBLIC_TO_EVERYONE"}}"#
        ),
    )
    .unwrap();
    let (code, _, err) = run(&["enqueue", "--file", twice.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("`privacy_level` is given twice"), "{err}");
    let latin1 = app.dir.path().join("latin1.json");
    let mut bytes = format!(
        r#"{{"id":"cli-latin1","account":"main","video":"{v}","publish_at":"{later}","privacy_level":"SELF_ONLY","title":"caf"#
    )
    .into_bytes();
    bytes.extend_from_slice(b"\xe9\"}");
    std::fs::write(&latin1, bytes).unwrap();
    let (code, _, err) = run(&["enqueue", "--file", latin1.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not valid UTF-8"), "{err}");
    for id in ["cli-twice", "cli-latin1"] {
        assert!(app.post(id).await.is_empty(), "{id} was recorded");
    }
    let flags = |title: &'static str| {
        vec![
            "enqueue",
            "--id",
            "cli-7",
            "--account",
            "main",
            "--video",
            v,
            "--privacy-level",
            "SELF_ONLY",
            "--publish-at",
            later.as_str(),
            "--title",
            title,
        ]
    };
    let (code, out, err) = run(&flags("first"));
    assert_eq!((code, out.trim()), (Some(0), "cli-7"), "{err}");
    let (code, out, err) = run(&flags("first"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("already recorded; nothing changed"), "{out}");
    let (code, _, err) = run(&flags("second"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("id exists with different content"), "{err}");
    assert_eq!(app.post("cli-7").await["title"], "first");
}
