//! How the posts did: a published public post with its public id is read back with `video/query` at
//! about 1 hour, 1 day and 7 days after publishing ([`READS`], in units of
//! `[worker] confirm_look_ms`, 60 s by default), writing `view_count`, `like_count`, `comment_count`,
//! `share_count`, `stats_read_ms` and `stats_read` (which read it was) into the post hash.
//!
//! A job of its own, driven through the due index like the list looks; one query per claim, within
//! the Display API's window. A read that fails is tried again a few times ([`RETRIES`]) before it is
//! skipped; a post TikTok no longer shows (deleted, made private) is read no further.

use std::time::Duration;

use super::super::Ctx;
use super::confirm::is_public;
use crate::db::now_ms;
use crate::posts::{Field, PostRecord, State};
use crate::queue::{Claim, Next};
use crate::tiktok::VIDEO_QUERY_RATE;

/// The reads: their name in `stats_read` and when they come, in first-look units after publishing.
pub(super) const READS: [(&str, i64); 3] = [("1h", 60), ("1d", 1440), ("7d", 10080)];

/// Tries of one read before it is skipped.
const RETRIES: i64 = 5;

fn unit(ctx: &Ctx) -> i64 {
    ctx.cfg.confirm_look.as_millis().max(1) as i64
}

/// When read `done` (0-based) of a post published at `published_ms` is due; `Done` after the last.
pub(super) fn next_read(ctx: &Ctx, published_ms: i64, done: i64) -> Next {
    match READS.get(done.max(0) as usize) {
        Some((_, units)) => Next::At(published_ms.max(0) + units * unit(ctx)),
        None => Next::Done,
    }
}

/// The next read of a post just published with its public id (`Done` when it is not public).
pub(super) fn after_publish(ctx: &Ctx, post: &PostRecord, published_ms: i64) -> Next {
    if is_public(post) {
        let published_ms = if published_ms > 0 {
            published_ms
        } else {
            now_ms()
        };
        next_read(ctx, published_ms, post.stats_reads())
    } else {
        Next::Done
    }
}

/// One stats read of a published public post (see the module docs).
pub(super) async fn read(ctx: &Ctx, claim: &Claim, post: &PostRecord) -> Next {
    // When it went live (a post settled by a webhook may lack it: then its last state change).
    let published = match post.published_ms() {
        p if p > 0 => p,
        _ => post.updated_ms(),
    };
    let mut done = post.stats_reads().max(0);
    // Reads whose time passed while the daemon was away are not made late under their own name.
    while (done as usize) + 1 < READS.len()
        && matches!(next_read(ctx, published, done + 1), Next::At(t) if t <= now_ms())
    {
        done += 1;
    }
    let (Some(account), Some(id), true) = (
        post.account(),
        post.post_id().and_then(|p| p.parse::<u64>().ok()),
        is_public(post) && post.current() == Some(State::Published),
    ) else {
        return Next::Done;
    };
    let Some((name, _)) = READS.get(done.max(0) as usize) else {
        return Next::Done;
    };
    let Next::At(due) = next_read(ctx, published, done) else {
        return Next::Done;
    };
    let now = now_ms();
    if now < due {
        return Next::At(due);
    }
    let fence = Some(claim.token.as_str());
    match ctx
        .rate
        .acquire(account, VIDEO_QUERY_RATE, Duration::ZERO)
        .await
    {
        Ok(None) => {}
        Ok(Some(wait)) => return Next::At(now + wait.as_millis() as i64 + 1),
        Err(_) => return Next::At(now + 2000),
    }
    let token = ctx
        .accounts
        .access_token(account, Duration::from_secs(60))
        .await;
    let answer = match token {
        Ok(t) => ctx
            .client
            .video_query(&t, &[id])
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let tries = post.stats_tries() + 1;
    let mut fields: Vec<(Field, String)> = Vec::new();
    let next_done = match answer {
        Ok(videos) => {
            match videos.iter().find(|v| v.id == id) {
                Some(v) => {
                    let n = |c: Option<u64>| c.map(|c| c.to_string()).unwrap_or_default();
                    fields.extend([
                        (Field::ViewCount, n(v.view_count)),
                        (Field::LikeCount, n(v.like_count)),
                        (Field::CommentCount, n(v.comment_count)),
                        (Field::ShareCount, n(v.share_count)),
                        (Field::StatsReadMs, now.to_string()),
                        (Field::StatsRead, name.to_string()),
                    ]);
                    tracing::info!(read = name, "Post stats read.");
                    done + 1
                }
                // TikTok no longer shows it publicly: no later read will either.
                None => READS.len() as i64,
            }
        }
        Err(e) if tries < RETRIES => {
            tracing::info!(error = %e, "A stats read failed; trying again later.");
            let fields = [(Field::StatsTries, tries.to_string())];
            if !matches!(
                ctx.ledger.set_fields(&claim.id, &fields, fence).await,
                Ok(true)
            ) {
                return Next::Done;
            }
            return Next::At(now + unit(ctx) * 5);
        }
        Err(e) => {
            tracing::info!(error = %e, "A stats read failed again; skipping it.");
            done + 1
        }
    };
    fields.push((Field::StatsReads, next_done.to_string()));
    fields.push((Field::StatsTries, "0".into()));
    match ctx.ledger.set_fields(&claim.id, &fields, fence).await {
        Ok(true) => next_read(ctx, published, next_done),
        Ok(false) => Next::Done,
        Err(_) => Next::At(now + 2000),
    }
}
