//! Collecting a published public post's id: a job of its own, after the post is settled.
//!
//! TikTok gives a public post its id after moderation (usually a minute, sometimes hours). This job
//! looks once per claim, records the id and URL when TikTok has them and never touches the state, so
//! repeating it or losing it costs at most a status call; it gives up after [`POST_ID_CHECKS`] looks.
//! After [`LIST_AFTER_CHECKS`] looks without the id, each look also tries the account's video list
//! (`confirm.rs`): a single candidate is taken as the post's id.

use std::time::Duration;

use super::super::Ctx;
use crate::db::now_ms;
use crate::posts::{Field, PostRecord};
use crate::queue::Claim;
use crate::queue::Next;
use crate::tiktok::PrivacyLevel;
use crate::tiktok::limits;

/// How many times a published public post is asked for its public id (every twenty status intervals:
/// a minute by default).
const POST_ID_CHECKS: i64 = 60;

/// Status looks without the id after which each look also tries TikTok's video list (`confirm.rs`).
const LIST_AFTER_CHECKS: i64 = 5;

/// When to look for the public id again.
pub(super) fn recheck_ms(ctx: &Ctx) -> i64 {
    (ctx.cfg.status_interval * 20).as_millis() as i64
}

/// A published public post without its public id yet: one status look, recording the id and URL when
/// TikTok has them (after moderation). The state stays `published`.
pub(super) async fn collect(ctx: &Ctx, claim: &Claim, post: &PostRecord) -> Next {
    let checks = post.post_id_checks() + 1;
    let public = post.privacy_level() == Some(PrivacyLevel::PublicToEveryone.as_str())
        && post.draft() != Some("true");
    let (Some(account), Some(publish_id)) = (post.account(), post.publish_id()) else {
        return Next::Done;
    };
    if !public || checks > POST_ID_CHECKS {
        return Next::Done;
    }
    if let Ok(Some(_)) = ctx
        .rate
        .acquire(account, limits::STATUS, Duration::ZERO)
        .await
    {
        return Next::At(now_ms() + recheck_ms(ctx));
    }
    let Ok(token) = ctx
        .accounts
        .access_token(account, Duration::from_secs(60))
        .await
    else {
        return Next::At(now_ms() + recheck_ms(ctx));
    };
    let mut fields = vec![(Field::PostIdChecks, checks.to_string())];
    if let Ok(s) = ctx.client.fetch_status(&token, publish_id).await
        && let Some(id) = s.post_ids.first()
    {
        fields.push((Field::PostId, id.to_string()));
        let url = super::confirm::url_of(ctx, account, *id).await;
        if !url.is_empty() {
            fields.push((Field::Url, url));
        }
        tracing::info!(post_id = id, "Public post id recorded.");
        return match ctx
            .ledger
            .set_fields(&claim.id, &fields, Some(&claim.token))
            .await
        {
            Ok(true) => super::stats::after_publish(ctx, post, post.published_ms()),
            _ => Next::Done,
        };
    }
    if checks > LIST_AFTER_CHECKS
        && let Some(published_ms) = super::confirm::find_missing_id(ctx, claim, post).await
    {
        // Found on the video list instead (one candidate, claimed atomically).
        let _ = ctx
            .ledger
            .set_fields(&claim.id, &fields, Some(&claim.token))
            .await;
        return super::stats::after_publish(ctx, post, published_ms);
    }
    let _ = ctx
        .ledger
        .set_fields(&claim.id, &fields, Some(&claim.token))
        .await;
    Next::At(now_ms() + recheck_ms(ctx))
}
