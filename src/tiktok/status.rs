//! The Content Posting API after an init: `status/fetch` (where a post is, with TikTok's own
//! spellings of its states and fail reasons) and `cancel`; the public URL of a published post.
//! The same family as the simulator's `sim/api/status.rs`.

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::{AUTH_BASE, Client, TikTokError};

/// The `status` of a status fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusKind {
    /// FILE_UPLOAD in progress (chunks arriving, or processing).
    ProcessingUpload,
    /// PULL_FROM_URL download in progress.
    ProcessingDownload,
    /// Draft delivered to the creator's inbox.
    SendToUserInbox,
    /// Posted.
    PublishComplete,
    /// Failed; see `fail_reason`.
    Failed,
    /// A value the docs do not list.
    Other(String),
}

impl StatusKind {
    fn parse(s: &str) -> Self {
        match s {
            "PROCESSING_UPLOAD" => Self::ProcessingUpload,
            "PROCESSING_DOWNLOAD" => Self::ProcessingDownload,
            "SEND_TO_USER_INBOX" => Self::SendToUserInbox,
            "PUBLISH_COMPLETE" => Self::PublishComplete,
            "FAILED" => Self::Failed,
            other => Self::Other(other.to_string()),
        }
    }

    /// TikTok's spelling of the status (for messages that quote it).
    pub fn as_str(&self) -> &str {
        match self {
            Self::ProcessingUpload => "PROCESSING_UPLOAD",
            Self::ProcessingDownload => "PROCESSING_DOWNLOAD",
            Self::SendToUserInbox => "SEND_TO_USER_INBOX",
            Self::PublishComplete => "PUBLISH_COMPLETE",
            Self::Failed => "FAILED",
            Self::Other(s) => s,
        }
    }
}

/// A status fetch result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishStatus {
    /// Where the post is.
    pub status: StatusKind,
    /// Set on FAILED.
    pub fail_reason: Option<String>,
    /// Public post ids (after moderation; empty for non-public posts).
    pub post_ids: Vec<u64>,
    /// Bytes TikTok has received (FILE_UPLOAD).
    pub uploaded_bytes: Option<u64>,
    /// Bytes TikTok has downloaded (PULL_FROM_URL).
    pub downloaded_bytes: Option<u64>,
}

#[derive(Deserialize)]
struct StatusData {
    status: String,
    #[serde(default)]
    fail_reason: Option<String>,
    #[serde(
        default,
        deserialize_with = "ids",
        alias = "publicly_available_post_id"
    )]
    publicaly_available_post_id: Vec<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    uploaded_bytes: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    downloaded_bytes: Option<u64>,
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Post ids as numbers or strings (19-digit ids do not survive a float).
fn ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(match v {
        Some(Value::Array(items)) => items.iter().filter_map(as_u64).collect(),
        Some(single) => as_u64(&single).into_iter().collect(),
        None => Vec::new(),
    })
}

fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.as_ref().and_then(as_u64))
}

/// Whether a FAILED attempt with this `fail_reason` may be tried again with a new init: TikTok
/// documents `internal` ("can be retried") and `video_pull_failed` (the pull timed out) as passing
/// faults; every other reason is about the video, the caption or the account and fails the same again.
pub fn fail_reason_allows_retry(reason: &str) -> bool {
    matches!(reason, "internal" | "video_pull_failed")
}

/// `fail_reason` in words, for the post ledger and the operator.
pub fn fail_reason_text(reason: &str) -> &'static str {
    match reason {
        "file_format_check_failed" => {
            "TikTok could not read the video format; use MP4 (H.264/AAC), MOV or WebM"
        }
        "duration_check_failed" => "the video is too long or too short for this creator",
        "frame_rate_check_failed" => "TikTok refused the frame rate; use 23 to 60 fps",
        "picture_size_check_failed" => {
            "TikTok refused the picture size; each side must be 360 to 4096 px"
        }
        "internal" => "TikTok had an internal failure; the post can be tried again",
        "video_pull_failed" => "TikTok could not download the video URL within an hour",
        "photo_pull_failed" => "TikTok could not download a photo URL",
        "publish_cancelled" => "the upload was cancelled",
        "auth_removed" => "the creator revoked the app's access while the post was processing",
        "spam_risk_too_many_posts" => "the creator reached TikTok's daily limit of API posts",
        "spam_risk_user_banned_from_posting" => "TikTok has banned this account from posting",
        "spam_risk_text" => "TikTok judged the caption risky or spammy",
        "spam_risk" => "TikTok judged the request risky",
        _ => "TikTok gave no further explanation",
    }
}

impl Client {
    /// `POST /v2/post/publish/status/fetch/`. A FAILED post is a successful call with `status: Failed`.
    pub async fn fetch_status(
        &self,
        token: &SecretString,
        publish_id: &str,
    ) -> Result<PublishStatus, TikTokError> {
        let body = json!({ "publish_id": publish_id });
        let d: StatusData = self
            .post_envelope(
                "status fetch",
                "/v2/post/publish/status/fetch/",
                token,
                Some(&body),
            )
            .await?;
        Ok(PublishStatus {
            status: StatusKind::parse(&d.status),
            fail_reason: d.fail_reason.filter(|r| !r.is_empty()),
            post_ids: d.publicaly_available_post_id,
            uploaded_bytes: d.uploaded_bytes,
            downloaded_bytes: d.downloaded_bytes,
        })
    }

    /// `POST /v2/post/publish/cancel/` (PULL_FROM_URL downloads, best effort).
    pub async fn cancel(&self, token: &SecretString, publish_id: &str) -> Result<(), TikTokError> {
        let body = json!({ "publish_id": publish_id });
        let _: Value = self
            .post_envelope(
                "publish cancel",
                "/v2/post/publish/cancel/",
                token,
                Some(&body),
            )
            .await?;
        Ok(())
    }
}

/// A public post's URL.
pub fn post_url(username: &str, post_id: u64) -> String {
    format!("{AUTH_BASE}/@{username}/video/{post_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_accepts_both_spellings_and_ids_as_numbers_or_strings() {
        let a: StatusData = serde_json::from_str(
            r#"{"status":"PUBLISH_COMPLETE","publicaly_available_post_id":[7663542984343883021],"uploaded_bytes":5}"#,
        )
        .unwrap();
        assert_eq!(a.publicaly_available_post_id, vec![7663542984343883021]);
        let b: StatusData = serde_json::from_str(
            r#"{"status":"PUBLISH_COMPLETE","publicly_available_post_id":["7663542984343883021"]}"#,
        )
        .unwrap();
        assert_eq!(b.publicaly_available_post_id, vec![7663542984343883021]);
        let c: StatusData = serde_json::from_str(
            r#"{"status":"FAILED","fail_reason":"internal","uploaded_bytes":"12"}"#,
        )
        .unwrap();
        assert_eq!(c.uploaded_bytes, Some(12));
    }

    #[test]
    fn status_names_read_back_in_tiktok_spelling() {
        for name in [
            "PROCESSING_UPLOAD",
            "PROCESSING_DOWNLOAD",
            "SEND_TO_USER_INBOX",
            "PUBLISH_COMPLETE",
            "FAILED",
            "SOMETHING_NEW",
        ] {
            assert_eq!(StatusKind::parse(name).as_str(), name);
        }
    }
}
