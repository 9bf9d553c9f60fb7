//! Webhooks against the ledger's current attempt, and `retry` that asks TikTok first (issue 11,
//! point 3): a late event about a superseded attempt settles nothing, a failure never writes error
//! fields onto a published post, an event that could not be recorded is answered 5xx and applied when
//! TikTok sends it again, and `retry` never makes a second live post.

use std::time::Duration;

use redis::AsyncCommands;

use crate::app::{TestApp, path_str};

const T: Duration = Duration::from_secs(30);

/// A TikTok-Signature header for `body`, signed now with `secret`.
pub fn signed(secret: &str, body: &str) -> String {
    use hmac::Mac;
    let t = chrono::Utc::now().timestamp();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},s={}", hex::encode(mac.finalize().into_bytes()))
}

/// A signed `post.publish.*` delivery to `url`; returns the status and body of the answer.
pub(crate) async fn deliver(
    url: &str,
    event: &str,
    publish_id: &str,
    extra: serde_json::Value,
) -> (u16, String) {
    let mut content = serde_json::json!({"publish_id": publish_id, "publish_type": "DIRECT_POST"});
    if let (Some(c), Some(e)) = (content.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let body = serde_json::json!({
        "client_key": "test-client-key", "event": event, "create_time": chrono::Utc::now().timestamp_millis(),
        "user_openid": "u", "content": content.to_string(),
    })
    .to_string();
    deliver_body(url, &body).await
}

async fn deliver_body(url: &str, body: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .header("TikTok-Signature", signed("test-secret", body))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Runs the binary (without blocking the runtime: the simulator it asks runs on it); its exit code,
/// stdout and stderr.
async fn run(cfg: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Live posts at the simulator with this video.
async fn live_with(app: &TestApp, sha: &str) -> usize {
    app.sim_posts_with(sha)
        .await
        .iter()
        .filter(|p| p["status"] == "PUBLISH_COMPLETE")
        .count()
}

/// The first attempt fails at TikTok with `internal` (the daemon starts a second one); while the second
/// one is processing, a signed `post.publish.failed` about the first arrives: the post stays on its way
/// and is published, no error is written onto it (nor by a failure event about the live attempt
/// later), `retry` refuses it, and TikTok has exactly one live post of the video.
#[tokio::test]
async fn a_failure_webhook_about_a_superseded_attempt_settles_nothing_and_retry_refuses() {
    let app = TestApp::spawn(|c| c.publish_delay_ms = 4000, |_| {}).await;
    app.connect("main", false).await;
    app.sim
        .fault(serde_json::json!({"endpoint": "status", "fail_reason": "internal"}))
        .await;
    let (id, sha) = app.submit("main", "superseded.mp4", 200_000).await;
    let post = crate::support::wait_until(T, "a second attempt being processed", || async {
        let p = app.post(&id).await;
        (p.get("state").map(String::as_str) == Some("processing")
            && p.get("previous_publish_ids").is_some_and(|v| !v.is_empty()))
        .then_some(p)
    })
    .await;
    let old = post["previous_publish_ids"].clone();
    let current = post["publish_id"].clone();
    assert_ne!(old, current);
    let url = format!("{}/webhooks/tiktok", app.base);
    let reason = serde_json::json!({"reason": "file_format_check_failed"});
    let (code, _) = deliver(&url, "post.publish.failed", &old, reason.clone()).await;
    assert_eq!(code, 200);
    let p = app.post(&id).await;
    assert_eq!(
        p["state"], "processing",
        "an event about the old attempt settles nothing: {p:?}"
    );
    assert!(!p.contains_key("error_code"), "{p:?}");
    let p = app.wait_state(&id, &["published"], T).await;
    assert!(!p.contains_key("error_code"), "{p:?}");
    // Failure events after publication, about the old and about the live attempt: the post stays
    // published and gets no error fields.
    for pid in [&old, &current] {
        let (code, _) = deliver(&url, "post.publish.failed", pid, reason.clone()).await;
        assert_eq!(code, 200);
    }
    let p = app.post(&id).await;
    assert_eq!(p["state"], "published");
    assert!(
        !p.contains_key("error_code") && !p.contains_key("error_message"),
        "no error written onto a published post: {p:?}"
    );
    let cfg = app.cli_config("cli", &[], "");
    let (code, _, err) = run(&cfg, &["retry", &id]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("only failed posts"), "{err}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        live_with(&app, &sha).await,
        1,
        "exactly one live post at TikTok"
    );
    assert_eq!(app.post(&id).await["state"], "published");
}

/// `retry` of a failed post that has a `publish_id` asks TikTok first: a post the ledger holds as
/// failed but that TikTok has live is refused, with TikTok's word for it; a post whose attempt TikTok
/// confirms FAILED is queued again and published once.
#[tokio::test]
async fn retry_asks_tiktok_and_refuses_a_post_that_may_be_live() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let cfg = app.cli_config("cli", &[], "");

    // Live at TikTok, failed in the ledger (what the superseded-webhook bug left behind).
    let (live, live_sha) = app.submit("main", "live.mp4", 200_000).await;
    app.wait_state(&live, &["published"], T).await;
    let mut conn = app.redis.conn().await;
    let _: () = conn
        .hset(format!("tiktok-poster:post:{live}"), "state", "failed")
        .await
        .unwrap();
    let (code, _, err) = run(&cfg, &["retry", &live]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("PUBLISH_COMPLETE") && err.contains("not retried"),
        "{err}"
    );
    assert_eq!(app.post(&live).await["state"], "failed", "nothing changed");

    // Failed at TikTok: confirmed, so a new attempt is safe.
    app.sim
        .fault(serde_json::json!({"endpoint": "status", "fail_reason": "file_format_check_failed"}))
        .await;
    let (video, sha) = app.video("refused.mp4", 200_000);
    let failed = app
        .xadd(&[
            ("account", "main"),
            ("video", path_str(&video)),
            ("privacy_level", "SELF_ONLY"),
        ])
        .await;
    let p = app.wait_state(&failed, &["failed"], T).await;
    assert!(
        !p["publish_id"].is_empty(),
        "the failure came after init: {p:?}"
    );
    let (code, out, err) = run(&cfg, &["retry", &failed]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("queued"), "{out}");
    app.wait_state(&failed, &["published"], T).await;
    assert_eq!(live_with(&app, &sha).await, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        live_with(&app, &live_sha).await,
        1,
        "the live post was not sent again"
    );
}

/// With Redis stopped, a valid webhook is answered 5xx (so TikTok sends it again) and not marked as
/// seen: the same delivery after Redis is back is applied.
#[tokio::test]
async fn a_webhook_that_cannot_be_recorded_gets_5xx_and_is_applied_when_sent_again() {
    let mut app = TestApp::spawn(|c| c.publish_delay_ms = 600_000, |_| {}).await;
    app.connect("main", false).await;
    let (id, _) = app.submit("main", "down.mp4", 200_000).await;
    let post = app.wait_state(&id, &["processing"], T).await;
    let content =
        serde_json::json!({"publish_id": post["publish_id"], "publish_type": "DIRECT_POST"});
    let body =
        serde_json::json!({"client_key": "k", "event": "post.publish.complete", "create_time": 7,
        "user_openid": "u", "content": content.to_string()})
        .to_string();
    let url = format!("{}/webhooks/tiktok", app.base);
    app.redis.kill();
    let (code, text) = deliver_body(&url, &body).await;
    assert!(
        (500..600).contains(&code),
        "answered {code} {text} with Redis down"
    );
    app.redis.restart();
    let (code, text) = crate::support::wait_until(T, "the webhook to be recorded", || async {
        let (code, text) = deliver_body(&url, &body).await;
        (code == 200).then_some((code, text))
    })
    .await;
    assert_eq!(
        (code, text.as_str()),
        (200, "ok"),
        "applied, not a duplicate"
    );
    app.wait_state(&id, &["published"], Duration::from_secs(5))
        .await;
    let (_, text) = deliver_body(&url, &body).await;
    assert_eq!(text, "duplicate");
}
