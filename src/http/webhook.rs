//! `POST /webhooks/tiktok`: TikTok's event deliveries, verified by their signature, deduplicated, and
//! applied to the account store and the post ledger.
//!
//! Deliveries are at-least-once, and TikTok sends one again until it gets a 2xx. So a delivery is
//! marked as seen only after what it says has been recorded: when Redis cannot be reached the answer
//! is 503 and the next delivery of the same event is applied then. Applying one twice is harmless (the
//! ledger's script settles a post once; marking an account `reauth_required` again changes nothing).
//!
//! An event about a post acts only on the post's current attempt (its `publish_id`): a late
//! `post.publish.failed` about an attempt that was already superseded must not settle the live one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use redis::AsyncCommands;
use serde_json::Value;

use super::AppState;

/// How long a handled delivery is remembered (TikTok retries for up to 72 hours).
const SEEN_TTL_SECS: u64 = 72 * 3600;

/// Webhook timestamps further than this from now are refused (replays).
const WEBHOOK_TOLERANCE_SECS: i64 = 300;

/// Verifies `TikTok-Signature: t=<unix>,s=<hex>` = HMAC-SHA256(client_secret, "<t>.<body>"), in constant
/// time, and refuses stale timestamps. Returns why not.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<(), &'static str> {
    use hmac::Mac;
    let mut t = None;
    let mut sig = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.trim().parse::<i64>().ok(),
            Some(("s", v)) => sig = hex::decode(v.trim()).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(sig)) = (t, sig) else {
        return Err("malformed TikTok-Signature header");
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).map_err(|_| "bad key")?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| "signature does not match")?;
    if (now_secs - t).abs() > WEBHOOK_TOLERANCE_SECS {
        return Err("stale timestamp");
    }
    Ok(())
}

/// The handler.
pub async fn webhook(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let secret = st
        .settings
        .tiktok
        .client_secret
        .as_ref()
        .map(|s| s.expose().to_string())
        .unwrap_or_default();
    let header = headers
        .get("tiktok-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if secret.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no client secret configured",
        )
            .into_response();
    }
    if let Err(why) = verify_signature(
        secret.as_bytes(),
        header,
        &body,
        chrono::Utc::now().timestamp(),
    ) {
        tracing::warn!(reason = why, "Webhook refused.");
        return (StatusCode::UNAUTHORIZED, why).into_response();
    }
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let seen_key = st.keys.webhook_seen(&digest);
    let mut conn = st.accounts.conn.clone();
    match conn.exists::<_, bool>(&seen_key).await {
        Ok(true) => return (StatusCode::OK, "duplicate").into_response(),
        Ok(false) => {}
        Err(error) => return not_recorded(&error.into()),
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON").into_response();
    };
    if let Err(error) = apply(&st, &event).await {
        return not_recorded(&error);
    }
    // Recorded: now (and only now) remember the delivery, so a resend is not applied twice.
    let marked: redis::RedisResult<()> = conn.set_ex(&seen_key, 1, SEEN_TTL_SECS).await;
    if let Err(error) = marked {
        return not_recorded(&error.into());
    }
    (StatusCode::OK, "ok").into_response()
}

/// 503, so that TikTok delivers the event again.
fn not_recorded(error: &anyhow::Error) -> Response {
    tracing::warn!(error = %format!("{error:#}"), "Webhook could not be recorded; answered 503 so TikTok sends it again.");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the event could not be recorded now; send it again",
    )
        .into_response()
}

/// Applies one verified event. `Err` only when it could not be recorded (Redis).
async fn apply(st: &AppState, v: &Value) -> anyhow::Result<()> {
    let event = v["event"].as_str().unwrap_or("");
    let open_id = v["user_openid"].as_str().unwrap_or("");
    let content: Value = v["content"]
        .as_str()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_else(|| v["content"].clone());
    match event {
        "authorization.removed" => {
            if let Some(name) = st.accounts.by_open_id(open_id).await? {
                let reason = content["reason"].as_i64().unwrap_or(0);
                let why = format!(
                    "TikTok reported the authorization removed (reason {reason}); connect the account again"
                );
                st.accounts.mark_reauth(&name, &why).await?;
                tracing::warn!(account = %name, reason, "Authorization removed at TikTok; the account must be connected again.");
            }
        }
        "post.publish.complete"
        | "post.publish.publicly_available"
        | "post.publish.inbox_delivered"
        | "post.publish.failed" => {
            let publish_id = content["publish_id"].as_str().unwrap_or("");
            if publish_id.is_empty() {
                return Ok(());
            }
            let mut conn = st.accounts.conn.clone();
            let post: Option<String> = conn.hget(st.keys.publish_ids(), publish_id).await?;
            let Some(post) = post else { return Ok(()) };
            let draft = st
                .ledger
                .get(&post)
                .await?
                .is_some_and(|p| p.get("draft") == Some("true"));
            let (to, fields, always, msg) = post_event(event, &content, draft);
            let n = st
                .ledger
                .advance(&post, publish_id, to, &fields, always, &msg)
                .await?;
            if n == 3 {
                tracing::info!(post_id = %post, publish_id, event, "Webhook about an earlier attempt of the post ignored.");
            }
        }
        _ => {}
    }
    Ok(())
}

/// What a post event means for the post: the state (empty: none), the fields, whether the fields are
/// written even when the state does not change, and the event message.
fn post_event(
    event: &str,
    content: &Value,
    draft: bool,
) -> (&'static str, Vec<(&'static str, String)>, bool, String) {
    match event {
        "post.publish.complete" => (
            if draft { "inbox" } else { "published" },
            Vec::new(),
            true,
            "webhook: publish complete".into(),
        ),
        "post.publish.inbox_delivered" => (
            "inbox",
            Vec::new(),
            true,
            "webhook: delivered to the inbox".into(),
        ),
        "post.publish.publicly_available" => {
            let id = content["post_id"]
                .as_u64()
                .or_else(|| content["post_id"].as_str().and_then(|s| s.parse().ok()));
            let fields = id
                .map(|id| ("post_id", id.to_string()))
                .into_iter()
                .collect();
            (
                "published",
                fields,
                true,
                "webhook: publicly available".into(),
            )
        }
        _ => {
            let reason = content["reason"].as_str().unwrap_or("").to_string();
            if crate::tiktok::publish::fail_reason_allows_retry(&reason) {
                // Retryable: the worker's own status follow decides on a new attempt.
                return ("", Vec::new(), false, String::new());
            }
            let text = crate::tiktok::publish::fail_reason_text(&reason);
            let fields = vec![
                ("error_code", reason.clone()),
                (
                    "error_message",
                    format!("TikTok failed the post: {text} ({reason})"),
                ),
            ];
            // The error fields go only with the `failed` state: a post that stays published keeps
            // its record clean.
            ("failed", fields, false, format!("webhook: {reason}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use hmac::Mac;

    use super::verify_signature;

    fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        format!("t={t},s={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_are_checked_in_full_and_stale_ones_refused() {
        let body = br#"{"event":"authorization.removed"}"#;
        let now = 1_800_000_000;
        assert_eq!(
            verify_signature(b"secret", &sign(b"secret", now, body), body, now),
            Ok(())
        );
        assert_eq!(
            verify_signature(b"secret", &sign(b"other", now, body), body, now),
            Err("signature does not match")
        );
        assert_eq!(
            verify_signature(b"secret", &sign(b"secret", now, body), b"{}", now),
            Err("signature does not match")
        );
        assert_eq!(
            verify_signature(b"secret", &sign(b"secret", now - 301, body), body, now),
            Err("stale timestamp")
        );
        assert_eq!(
            verify_signature(b"secret", "garbage", body, now),
            Err("malformed TikTok-Signature header")
        );
    }
}
