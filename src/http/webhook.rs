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

use super::AppState;
use crate::posts::{Field, State as PostState};
use crate::tiktok::status::{fail_reason_allows_retry, fail_reason_text};
use crate::tiktok::webhook::{SIGNATURE_HEADER, WebhookEvent, parse_event, verify_signature};

/// How long a handled delivery is remembered (TikTok retries for up to 72 hours).
const SEEN_TTL_SECS: u64 = 72 * 3600;

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
        .get(SIGNATURE_HEADER)
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
    let event = match parse_event(&body) {
        Ok(event) => event,
        Err(not_json) => return (StatusCode::BAD_REQUEST, not_json.to_string()).into_response(),
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
async fn apply(st: &AppState, event: &WebhookEvent) -> anyhow::Result<()> {
    if let WebhookEvent::AuthorizationRemoved { open_id, reason } = event {
        if let Some(name) = st.accounts.by_open_id(open_id).await? {
            let why = format!(
                "TikTok reported the authorization removed (reason {reason}); connect the account again"
            );
            st.accounts.mark_reauth(&name, &why).await?;
            tracing::warn!(account = %name, reason, "Authorization removed at TikTok; the account must be connected again.");
        }
        return Ok(());
    }
    let Some(publish_id) = event.publish_id() else {
        return Ok(());
    };
    let mut conn = st.accounts.conn.clone();
    let post: Option<String> = conn.hget(st.keys.publish_ids(), publish_id).await?;
    let Some(post) = post else { return Ok(()) };
    let draft = st
        .ledger
        .get(&post)
        .await?
        .is_some_and(|p| p.draft() == Some("true"));
    let (to, fields, always, msg) = post_event(event, draft);
    let n = st
        .ledger
        .advance(&post, publish_id, to, &fields, always, &msg)
        .await?;
    if n == 3 {
        tracing::info!(post_id = %post, publish_id, event = event.name(), "Webhook about an earlier attempt of the post ignored.");
    }
    Ok(())
}

/// What a post event means for the post: the state (if any), the fields, whether the fields are
/// written even when the state does not change, and the event message.
fn post_event(
    event: &WebhookEvent,
    draft: bool,
) -> (Option<PostState>, Vec<(Field, String)>, bool, String) {
    match event {
        WebhookEvent::PublishComplete { .. } => (
            Some(if draft {
                PostState::Inbox
            } else {
                PostState::Published
            }),
            Vec::new(),
            true,
            "webhook: publish complete".into(),
        ),
        WebhookEvent::InboxDelivered { .. } => (
            Some(PostState::Inbox),
            Vec::new(),
            true,
            "webhook: delivered to the inbox".into(),
        ),
        WebhookEvent::PubliclyAvailable { post_id, .. } => {
            let fields = post_id
                .map(|id| (Field::PostId, id.to_string()))
                .into_iter()
                .collect();
            (
                Some(PostState::Published),
                fields,
                true,
                "webhook: publicly available".into(),
            )
        }
        WebhookEvent::Failed { reason, .. } => {
            if fail_reason_allows_retry(reason) {
                // Retryable: the worker's own status follow decides on a new attempt.
                return (None, Vec::new(), false, String::new());
            }
            let text = fail_reason_text(reason);
            let fields = vec![
                (Field::ErrorCode, reason.clone()),
                (
                    Field::ErrorMessage,
                    format!("TikTok failed the post: {text} ({reason})"),
                ),
            ];
            // The error fields go only with the `failed` state: a post that stays published keeps
            // its record clean.
            (
                Some(PostState::Failed),
                fields,
                false,
                format!("webhook: {reason}"),
            )
        }
        WebhookEvent::AuthorizationRemoved { .. } | WebhookEvent::Ignored => {
            (None, Vec::new(), false, String::new())
        }
    }
}
