//! TikTok's webhook format: the `TikTok-Signature` scheme and the event JSON, read into a typed
//! [`WebhookEvent`].
//!
//! This is the only place that knows how TikTok signs a delivery (`t=<unix>,s=<hex>` over
//! `"<t>.<body>"`, HMAC-SHA256 with the client secret), which event names exist and where their
//! fields sit (`content` arrives as a JSON string, sometimes as an object). What an event means for the
//! account store and the post ledger is decided by the HTTP layer that receives it; this module only
//! says what TikTok said, so a change of TikTok's format changes one file.

use serde_json::Value;

/// The request header carrying the signature (HTTP header names are case-insensitive; this is the
/// lowercase form axum looks up).
pub const SIGNATURE_HEADER: &str = "tiktok-signature";

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

/// One delivery, as TikTok meant it. Post events name the attempt they are about by its
/// `publish_id`; a post event without one, and every event this daemon does not act on, is
/// [`WebhookEvent::Ignored`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// `authorization.removed`: the user (or TikTok) withdrew the app's access.
    AuthorizationRemoved {
        /// `user_openid` of the delivery (may be empty when TikTok sent none).
        open_id: String,
        /// TikTok's numeric reason (0 when absent).
        reason: i64,
    },
    /// `post.publish.complete`.
    PublishComplete {
        /// The attempt.
        publish_id: String,
    },
    /// `post.publish.inbox_delivered`: a draft reached the creator's inbox.
    InboxDelivered {
        /// The attempt.
        publish_id: String,
    },
    /// `post.publish.publicly_available`: the post passed moderation and is public.
    PubliclyAvailable {
        /// The attempt.
        publish_id: String,
        /// The public post id, when TikTok sent one (as a number or a string).
        post_id: Option<u64>,
    },
    /// `post.publish.failed`.
    Failed {
        /// The attempt.
        publish_id: String,
        /// TikTok's `reason` (a `fail_reason`; empty when absent).
        reason: String,
    },
    /// Any other event, or a post event without a `publish_id`: nothing to do.
    Ignored,
}

impl WebhookEvent {
    /// TikTok's name of the event, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AuthorizationRemoved { .. } => "authorization.removed",
            Self::PublishComplete { .. } => "post.publish.complete",
            Self::InboxDelivered { .. } => "post.publish.inbox_delivered",
            Self::PubliclyAvailable { .. } => "post.publish.publicly_available",
            Self::Failed { .. } => "post.publish.failed",
            Self::Ignored => "ignored",
        }
    }

    /// The attempt a post event is about.
    pub fn publish_id(&self) -> Option<&str> {
        match self {
            Self::PublishComplete { publish_id }
            | Self::InboxDelivered { publish_id }
            | Self::PubliclyAvailable { publish_id, .. }
            | Self::Failed { publish_id, .. } => Some(publish_id),
            Self::AuthorizationRemoved { .. } | Self::Ignored => None,
        }
    }
}

/// The body is not JSON (answered 400: TikTok's deliveries always are).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("body is not JSON")]
pub struct NotJson;

/// Reads a (verified) delivery body. Missing or mistyped fields read as absent, the way TikTok's
/// documentation treats them: only a body that is not JSON at all is an error.
pub fn parse_event(body: &[u8]) -> Result<WebhookEvent, NotJson> {
    let v: Value = serde_json::from_slice(body).map_err(|_| NotJson)?;
    let event = v["event"].as_str().unwrap_or("");
    let content: Value = v["content"]
        .as_str()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_else(|| v["content"].clone());
    if event == "authorization.removed" {
        return Ok(WebhookEvent::AuthorizationRemoved {
            open_id: v["user_openid"].as_str().unwrap_or("").to_string(),
            reason: content["reason"].as_i64().unwrap_or(0),
        });
    }
    let publish_id = content["publish_id"].as_str().unwrap_or("").to_string();
    let is_post_event = matches!(
        event,
        "post.publish.complete"
            | "post.publish.publicly_available"
            | "post.publish.inbox_delivered"
            | "post.publish.failed"
    );
    if !is_post_event || publish_id.is_empty() {
        return Ok(WebhookEvent::Ignored);
    }
    Ok(match event {
        "post.publish.complete" => WebhookEvent::PublishComplete { publish_id },
        "post.publish.inbox_delivered" => WebhookEvent::InboxDelivered { publish_id },
        "post.publish.publicly_available" => WebhookEvent::PubliclyAvailable {
            publish_id,
            post_id: content["post_id"]
                .as_u64()
                .or_else(|| content["post_id"].as_str().and_then(|s| s.parse().ok())),
        },
        _ => WebhookEvent::Failed {
            publish_id,
            reason: content["reason"].as_str().unwrap_or("").to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use hmac::Mac;

    use super::*;

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

    #[test]
    fn content_is_read_as_a_json_string_or_an_object() {
        let as_string = br#"{"event":"post.publish.failed","content":"{\"publish_id\":\"p1\",\"reason\":\"spam_risk\"}"}"#;
        let as_object =
            br#"{"event":"post.publish.failed","content":{"publish_id":"p1","reason":"spam_risk"}}"#;
        let want = WebhookEvent::Failed {
            publish_id: "p1".into(),
            reason: "spam_risk".into(),
        };
        assert_eq!(parse_event(as_string), Ok(want.clone()));
        assert_eq!(parse_event(as_object), Ok(want));
    }

    #[test]
    fn post_ids_arrive_as_numbers_or_strings() {
        let n = br#"{"event":"post.publish.publicly_available","content":{"publish_id":"p","post_id":7663542984343883021}}"#;
        let s = br#"{"event":"post.publish.publicly_available","content":{"publish_id":"p","post_id":"7663542984343883021"}}"#;
        for body in [&n[..], &s[..]] {
            assert_eq!(
                parse_event(body),
                Ok(WebhookEvent::PubliclyAvailable {
                    publish_id: "p".into(),
                    post_id: Some(7663542984343883021)
                })
            );
        }
    }

    #[test]
    fn removal_unknown_events_and_events_without_an_attempt() {
        assert_eq!(
            parse_event(
                br#"{"event":"authorization.removed","user_openid":"u1","content":"{\"reason\":2}"}"#
            ),
            Ok(WebhookEvent::AuthorizationRemoved {
                open_id: "u1".into(),
                reason: 2
            })
        );
        assert_eq!(
            parse_event(br#"{"event":"post.publish.complete","content":"{}"}"#),
            Ok(WebhookEvent::Ignored)
        );
        assert_eq!(
            parse_event(br#"{"event":"video.upload.failed","content":{"publish_id":"p"}}"#),
            Ok(WebhookEvent::Ignored)
        );
        assert_eq!(parse_event(b"not json"), Err(NotJson));
    }
}
