//! `retry ID`: runs a failed post again, but never into a second live post.
//!
//! A post that never reached TikTok (no `publish_id`) is queued again at once. A post that has a
//! `publish_id` may be live at TikTok whatever the ledger says (a late webhook, an operator's edit, an
//! older daemon's bug), and TikTok's `init` is not idempotent: so TikTok is asked for that attempt's
//! status first, and the post is queued again only when TikTok confirms the attempt cannot be
//! published (FAILED, or an upload that never completed and whose upload URL has expired). Anything
//! else, including not being able to ask, refuses the retry and changes nothing.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::CliError;
use super::commands::{accounts, env, report};
use crate::db::now_ms;
use crate::posts::{Ledger, PostRecord, State};
use crate::tiktok::{PublishStatus, StatusKind};

/// `retry ID`.
pub async fn retry(config: Option<&Path>, id: &str, as_json: bool) -> Result<(), CliError> {
    let env = env(config).await?;
    let ledger = Ledger::new(env.conn.clone(), env.keys.clone());
    let post = ledger.get(id).await.context("reading the post")?;
    let publish_id = post
        .as_ref()
        .and_then(PostRecord::publish_id)
        .unwrap_or("")
        .to_string();
    let r = match &post {
        // Missing, or not failed: the ledger's script says why it is refused.
        None => ledger.retry(id).await,
        Some(p) if p.current() != Some(State::Failed) || publish_id.is_empty() => {
            ledger.retry(id).await
        }
        Some(p) => match ask_tiktok(&env, p, &publish_id).await {
            Ok(status) => match may_be_live(p, &status, now_ms()) {
                None => ledger.retry_confirmed(id, &publish_id).await,
                Some(why) => Err(format!(
                    "post {id} is not retried: {why}. Check the account in the TikTok app; submit the video again under a new id only if it is not there"
                )),
            },
            Err(e) => Err(format!(
                "post {id} is not retried: TikTok could not be asked about its attempt {publish_id} ({e}), and it may be live; nothing was changed, try again later"
            )),
        },
    };
    report(id, State::Queued.as_str(), r, as_json)
}

/// TikTok's status of the post's attempt, with the account's token.
async fn ask_tiktok(
    env: &super::commands::Env,
    post: &PostRecord,
    publish_id: &str,
) -> Result<PublishStatus, String> {
    let accounts = accounts(env).map_err(|e| e.to_string())?;
    let account = post.account().unwrap_or("");
    let token = accounts
        .access_token(account, Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())?;
    accounts
        .client()
        .fetch_status(&token, publish_id)
        .await
        .map_err(|e| e.to_string())
}

/// Why the attempt TikTok describes with `status` may be (or become) live, or `None` when TikTok has
/// confirmed it cannot be: FAILED, or an upload that never completed (TikTok has fewer bytes than the
/// file) and whose upload URL has expired, so no byte more can arrive.
pub fn may_be_live(post: &PostRecord, status: &PublishStatus, now_ms: i64) -> Option<String> {
    let publish_id = post.publish_id().unwrap_or("");
    let words = match &status.status {
        StatusKind::Failed => return None,
        StatusKind::ProcessingUpload => {
            let size = post.video_size().max(0) as u64;
            let received = status.uploaded_bytes.unwrap_or(0);
            let expires = post.upload_expires_ms();
            let incomplete = !post.upload_done() && size > 0 && received < size;
            if incomplete && expires > 0 && expires <= now_ms {
                return None;
            }
            return Some(if incomplete {
                format!(
                    "TikTok is still receiving the upload of attempt {publish_id} and its upload URL has not expired"
                )
            } else {
                format!("TikTok has the whole video of attempt {publish_id} and is processing it")
            });
        }
        StatusKind::PublishComplete => format!("published ({})", status.status.as_str()),
        StatusKind::SendToUserInbox => {
            format!("in the creator's inbox ({})", status.status.as_str())
        }
        StatusKind::ProcessingDownload => {
            format!("downloading the video ({})", status.status.as_str())
        }
        StatusKind::Other(s) => format!("in a state this daemon does not know ({s})"),
    };
    Some(format!("TikTok says attempt {publish_id} is {words}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(fields: &[(&str, &str)]) -> PostRecord {
        PostRecord {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn status(kind: StatusKind, uploaded: Option<u64>) -> PublishStatus {
        PublishStatus {
            status: kind,
            fail_reason: None,
            post_ids: Vec::new(),
            uploaded_bytes: uploaded,
            downloaded_bytes: None,
        }
    }

    #[test]
    fn only_a_confirmed_failure_or_a_dead_upload_may_be_retried() {
        let now = 1_000_000;
        let p = post(&[
            ("publish_id", "v_pub_1"),
            ("video_size", "1000"),
            ("upload_expires_ms", "999000"),
        ]);
        assert_eq!(
            may_be_live(&p, &status(StatusKind::Failed, None), now),
            None
        );
        // Upload never finished and its URL expired: nothing more can arrive.
        assert_eq!(
            may_be_live(&p, &status(StatusKind::ProcessingUpload, Some(400)), now),
            None
        );
        // The URL is still valid: bytes may still arrive.
        let fresh = post(&[
            ("publish_id", "v_pub_1"),
            ("video_size", "1000"),
            ("upload_expires_ms", "2000000"),
        ]);
        assert!(
            may_be_live(
                &fresh,
                &status(StatusKind::ProcessingUpload, Some(400)),
                now
            )
            .is_some()
        );
        // TikTok has every byte: it is processing, it may go live.
        assert!(may_be_live(&p, &status(StatusKind::ProcessingUpload, Some(1000)), now).is_some());
        let done = post(&[
            ("publish_id", "v"),
            ("video_size", "1000"),
            ("upload_done", "1"),
        ]);
        assert!(may_be_live(&done, &status(StatusKind::ProcessingUpload, Some(0)), now).is_some());
        for kind in [
            StatusKind::PublishComplete,
            StatusKind::SendToUserInbox,
            StatusKind::ProcessingDownload,
            StatusKind::Other("NEW".into()),
        ] {
            assert!(
                may_be_live(&p, &status(kind.clone(), None), now).is_some(),
                "{kind:?}"
            );
        }
        let why = may_be_live(&p, &status(StatusKind::PublishComplete, None), now).unwrap();
        assert!(
            why.contains("PUBLISH_COMPLETE") && why.contains("v_pub_1"),
            "{why}"
        );
    }
}
