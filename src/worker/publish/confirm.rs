//! Resolving an `unconfirmed` public post from TikTok's own video list: a job of its own, after the
//! post is settled, driven like `public_id.rs` (one look per claim, the next look through the due
//! index).
//!
//! A look pages `video/list` back to a little before our init (at most [`MAX_PAGES`] pages) and keeps
//! the videos `candidates.rs` says could be the post and no other post of ours claimed. Exactly one:
//! the post becomes `published` with its `post_id` and URL (one ledger step that also claims the video
//! id, so two posts can never take the same video). Several: it stays `unconfirmed`, its message and
//! `candidates` naming every one, and the looks go on (another post of ours may claim one of them).
//! None: look again, the first look [`WorkerConfig::confirm_look`] after the post settled, each next
//! one twice as late up to [`MAX_STEP`] times that, for [`SPAN`] times that in all (72 hours at the
//! default: moderation can take hours). Repeating a look or losing it costs at most one look.
//!
//! Only public Direct Posts show on the list: a private, friends-only or draft post is never looked
//! for, and neither is a post of an account that did not grant `video.list`; their message says so
//! and what to check in the TikTok app.
//!
//! [`WorkerConfig::confirm_look`]: crate::config::WorkerConfig::confirm_look

use std::time::Duration;

use super::super::Ctx;
use super::candidates::{self, SKEW_MS, Wanted};
use crate::db::now_ms;
use crate::posts::{Confirmed, Field, PostRecord, State};
use crate::queue::{Claim, Next};
use crate::tiktok::status::post_url;
use crate::tiktok::{DISPLAY_PAGE_MAX, PrivacyLevel, SCOPE_VIDEO_LIST, VIDEO_LIST_RATE, Video};

/// Looks double up to this many times the first look's delay.
pub(super) const MAX_STEP: i64 = 60;
/// Looks end this many first-look delays after the post settled (72 hours at the default).
pub(super) const SPAN: i64 = 4320;
/// Pages of `video/list` one look reads at most (20 videos each).
pub(super) const MAX_PAGES: usize = 10;
/// Candidates named in a message and in `candidates`, at most.
const MAX_NAMED: usize = 10;

/// A time for a message.
pub(super) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// The first look's delay (ms).
fn unit(ctx: &Ctx) -> i64 {
    ctx.cfg.confirm_look.as_millis().max(1) as i64
}

/// The delay before look `done + 1` once `done` looks are done: doubling, capped.
pub(super) fn delay(unit: i64, done: i64) -> i64 {
    let factor = 1i64 << done.clamp(0, 20);
    unit.saturating_mul(factor.min(MAX_STEP))
}

/// When the look after look number `looks` comes, or `None` when it would come after `until` (the
/// looks are over).
pub(super) fn next_look(now: i64, unit: i64, looks: i64, until: i64) -> Option<i64> {
    let next = now.saturating_add(delay(unit, looks));
    (next <= until).then_some(next)
}

/// Whether a stored post is a public Direct Post (the only kind the list shows).
pub(super) fn is_public(post: &PostRecord) -> bool {
    post.privacy_level() == Some(PrivacyLevel::PublicToEveryone.as_str())
        && post.draft() != Some("true")
}

/// Whether the account granted `video.list` (`None`: the account cannot be read now).
async fn has_list_scope(ctx: &Ctx, account: &str) -> Option<bool> {
    let info = ctx.accounts.info(account).await.ok()?;
    Some(
        info.scopes
            .split([',', ' '])
            .any(|s| s.trim() == SCOPE_VIDEO_LIST),
    )
}

/// What settling a post as `unconfirmed` adds: the sentence for its message, the fields of the
/// look schedule, and how the claim ends.
pub(super) async fn on_unconfirmed(
    ctx: &Ctx,
    post: &PostRecord,
    reason: &str,
) -> (String, Vec<(Field, String)>, Next) {
    let account = post.account().unwrap_or_default();
    let mut fields = vec![(Field::UnconfirmedReason, reason.to_string())];
    if !is_public(post) {
        let what = if post.draft() == Some("true") {
            "an inbox draft"
        } else {
            "a post that is not public"
        };
        let msg = format!(
            "{reason}. It cannot be confirmed from TikTok's video list, which shows public posts only ({what}): check the account's posts in the TikTok app (private and friends-only posts on the profile, drafts in the inbox), and submit it again under a new id only if it is not there"
        );
        return (msg, fields, Next::Done);
    }
    if has_list_scope(ctx, account).await == Some(false) {
        let msg = format!(
            "{reason}. It cannot be confirmed from TikTok's video list: account {account:?} did not grant video.list (connect it again and allow it); check the account's public posts in the TikTok app, and submit it again under a new id only if it is not there"
        );
        return (msg, fields, Next::Done);
    }
    let now = now_ms();
    let until = now + unit(ctx).saturating_mul(SPAN);
    fields.push((Field::ConfirmLooks, "0".into()));
    fields.push((Field::ConfirmUntilMs, until.to_string()));
    let msg = format!(
        "{reason}. The daemon looks for it on the account's public video list until {}: it becomes published by itself when found; do not submit it again meanwhile",
        rfc3339(until)
    );
    (msg, fields, Next::At(now + unit(ctx)))
}

/// Why a look found nothing to act on.
pub(super) enum Later {
    /// The rate window is full for this long (ms): the look is not counted.
    Wait(i64),
    /// The account cannot be looked at this way (the scope is gone).
    Cannot(String),
    /// The look failed (TikTok, the token, Redis).
    Failed(String),
}

/// What the list shows that could be the post.
pub(super) fn wanted(post: &PostRecord) -> Option<Wanted<'_>> {
    let init_ms = post.init_started_ms();
    if init_ms <= 0 {
        return None;
    }
    let dur = post.duration_ms();
    let (w, h) = (post.video_width(), post.video_height());
    Some(Wanted {
        title: post.fields.get("title").map_or("", String::as_str),
        init_ms,
        duration_ms: (dur > 0).then_some(dur),
        size: (w > 0 && h > 0).then(|| (w.min(100_000) as u32, h.min(100_000) as u32)),
    })
}

/// One look: the candidates for `post` on its account's list (claimed ones left out).
pub(super) async fn find(ctx: &Ctx, id: &str, post: &PostRecord) -> Result<Vec<Video>, Later> {
    let (Some(account), Some(want)) = (post.account(), wanted(post)) else {
        return Ok(Vec::new());
    };
    if has_list_scope(ctx, account).await == Some(false) {
        return Err(Later::Cannot(format!(
            "account {account:?} did not grant video.list (connect it again and allow it)"
        )));
    }
    let token = ctx
        .accounts
        .access_token(account, Duration::from_secs(60))
        .await
        .map_err(|e| Later::Failed(e.to_string()))?;
    let mut listed: Vec<Video> = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        match ctx
            .rate
            .acquire(account, VIDEO_LIST_RATE, Duration::ZERO)
            .await
        {
            Ok(None) => {}
            Ok(Some(wait)) => return Err(Later::Wait(wait.as_millis() as i64 + 1)),
            Err(e) => return Err(Later::Failed(crate::db::explain(&e))),
        }
        let page = ctx
            .client
            .video_list(&token, cursor, DISPLAY_PAGE_MAX)
            .await
            .map_err(|e| Later::Failed(e.to_string()))?;
        let oldest = page.videos.iter().map(|v| v.create_time).min();
        let n = page.videos.len();
        listed.extend(page.videos.into_iter().take(DISPLAY_PAGE_MAX as usize));
        let reached = oldest.is_none_or(|t| t.saturating_mul(1000) < want.init_ms - SKEW_MS);
        // A cursor that does not move back would page forever.
        let moved = cursor.is_none_or(|c| page.cursor < c) && page.cursor > 0;
        if reached || !page.has_more || n == 0 || !moved {
            break;
        }
        cursor = Some(page.cursor);
    }
    let ids: Vec<u64> = listed.iter().map(|v| v.id).collect();
    let claimed = ctx
        .ledger
        .claimed_by(&ids)
        .await
        .map_err(|e| Later::Failed(crate::db::explain(&e)))?;
    Ok(candidates::candidates(&want, &listed, &claimed, id)
        .into_iter()
        .cloned()
        .collect())
}

/// The public URL of video `id` on `account` (empty when the account's @handle is unknown).
pub(super) async fn url_of(ctx: &Ctx, account: &str, id: u64) -> String {
    let username = ctx
        .accounts
        .info(account)
        .await
        .map(|i| i.username)
        .unwrap_or_default();
    if username.is_empty() {
        return String::new();
    }
    post_url(&username, id)
}

/// An unconfirmed post's look: see the module docs.
pub(super) async fn look(ctx: &Ctx, claim: &Claim, post: &PostRecord) -> Next {
    let until = post.confirm_until_ms();
    let Some(account) = post.account() else {
        return Next::Done;
    };
    if until <= 0 || !is_public(post) {
        return Next::Done;
    }
    let reason = post
        .unconfirmed_reason()
        .unwrap_or("TikTok did not say whether it published this post")
        .to_string();
    let fence = Some(claim.token.as_str());
    let looks = post.confirm_looks() + 1;
    if let Some(known) = post.post_id().and_then(|p| p.parse::<u64>().ok()) {
        // TikTok told us its public id meanwhile (a webhook): that is the confirmation.
        let video = Video {
            id: known,
            create_time: now_ms() / 1000,
            ..Video::default()
        };
        return confirm_as(ctx, claim, account, &video)
            .await
            .unwrap_or(Next::Done);
    }
    let found = match find(ctx, &claim.id, post).await {
        Err(Later::Wait(ms)) => return Next::At(now_ms() + ms),
        Err(Later::Cannot(why)) => {
            let msg = format!(
                "{reason}. It can no longer be confirmed from TikTok's video list: {why}; check the account's public posts in the TikTok app, and submit it again under a new id only if it is not there"
            );
            let fields = [
                (Field::ErrorMessage, msg),
                (Field::ConfirmUntilMs, "0".into()),
            ];
            let _ = ctx.ledger.set_fields(&claim.id, &fields, fence).await;
            return Next::Done;
        }
        Err(Later::Failed(e)) => {
            tracing::info!(error = %e, "A look at the video list failed; looking again later.");
            Err(e)
        }
        Ok(found) => Ok(found),
    };
    if let Ok([video]) = found.as_deref()
        && let Some(next) = confirm_as(ctx, claim, account, video).await
    {
        return next;
    }
    let now = now_ms();
    let next = next_look(now, unit(ctx), looks, until);
    let last = next.is_none();
    let next = next.unwrap_or(now);
    let (candidates, status) = match &found {
        Ok(v) if v.len() > 1 => {
            let mut named = Vec::new();
            for c in v.iter().take(MAX_NAMED) {
                let url = url_of(ctx, account, c.id).await;
                named.push(if url.is_empty() {
                    c.id.to_string()
                } else {
                    url
                });
            }
            let ids: Vec<String> = v.iter().take(MAX_NAMED).map(|c| c.id.to_string()).collect();
            let status = format!(
                "{} look-alike videos on the account's public list could be it, and the daemon cannot tell which: {}",
                v.len(),
                named.join(", ")
            );
            (ids.join(","), status)
        }
        Ok(_) => (
            String::new(),
            format!("not found on the account's public video list yet ({looks} looks)"),
        ),
        Err(e) => (
            post.candidates().unwrap_or("").to_string(),
            format!("the last look at the video list failed ({e})"),
        ),
    };
    let tail = if last {
        "the daemon no longer looks for it: check the account's public posts in the TikTok app (and the look-alikes named), and submit it again under a new id only if it is not there".to_string()
    } else {
        format!(
            "looking again at {} (until {}); do not submit it again meanwhile",
            rfc3339(next),
            rfc3339(until)
        )
    };
    let fields = [
        (Field::ConfirmLooks, looks.to_string()),
        (Field::Candidates, candidates),
        (Field::ErrorMessage, format!("{reason}. {status}; {tail}")),
        // After the last look `confirm_until_ms` says when the looks ended.
        (
            Field::ConfirmUntilMs,
            if last { now } else { until }.to_string(),
        ),
    ];
    match ctx.ledger.set_fields(&claim.id, &fields, fence).await {
        Ok(true) if last => Next::Done,
        Ok(true) => Next::At(next),
        Ok(false) => Next::Done,
        Err(_) => Next::At(now + 2000),
    }
}

/// Confirms the unconfirmed post as `video`: `Some` with how the claim ends, `None` when another post
/// claimed the video first (the look goes on as if it found nothing).
async fn confirm_as(ctx: &Ctx, claim: &Claim, account: &str, video: &Video) -> Option<Next> {
    let url = url_of(ctx, account, video.id).await;
    let published_ms = video.create_time.saturating_mul(1000);
    let msg = format!("confirmed on TikTok's video list: {url}");
    let done = ctx
        .ledger
        .confirm_video(
            &claim.id,
            State::Unconfirmed,
            video.id,
            &url,
            published_ms,
            &msg,
            Some(&claim.token),
        )
        .await;
    match done {
        Ok(Confirmed::Done) => {
            tracing::info!(
                post_id = video.id,
                "Unconfirmed post found on the video list: published."
            );
            Some(super::stats::next_read(ctx, published_ms, 0))
        }
        Ok(Confirmed::ClaimedBy(other)) => {
            tracing::info!(post_id = video.id, other = %other, "The only look-alike is another post's now.");
            None
        }
        Ok(_) => Some(Next::Done),
        Err(error) => {
            tracing::warn!(%error, "Cannot record the confirmation; looking again shortly.");
            Some(Next::At(now_ms() + 2000))
        }
    }
}

/// A published public post still without its public id after several status looks: one look at the
/// list; a single candidate becomes its `post_id` and URL (the state stays `published`). Returns
/// whether it was recorded.
pub(super) async fn find_missing_id(ctx: &Ctx, claim: &Claim, post: &PostRecord) -> Option<i64> {
    let account = post.account()?;
    let Ok(found) = find(ctx, &claim.id, post).await else {
        return None;
    };
    let [video] = found.as_slice() else {
        return None;
    };
    let url = url_of(ctx, account, video.id).await;
    let published_ms = post.published_ms();
    match ctx
        .ledger
        .confirm_video(
            &claim.id,
            State::Published,
            video.id,
            &url,
            published_ms,
            "",
            Some(&claim.token),
        )
        .await
    {
        Ok(Confirmed::Done) => {
            tracing::info!(
                post_id = video.id,
                "Public post id found on the video list."
            );
            Some(published_ms)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_double_up_to_a_cap_over_the_span() {
        assert_eq!(delay(60_000, 1), 120_000);
        assert_eq!(delay(60_000, 5), 60_000 * 32);
        assert_eq!(delay(60_000, 6), 60_000 * MAX_STEP);
        assert_eq!(delay(60_000, 500), 60_000 * MAX_STEP);
        // From 1 min by doubling to 1 h, then hourly, over 72 hours: about 70 looks.
        let (mut t, mut n) = (60_000i64, 1);
        while t + delay(60_000, n) <= 60_000 * SPAN {
            t += delay(60_000, n);
            n += 1;
        }
        assert!((60..=80).contains(&n), "{n} looks");
    }

    #[test]
    fn the_looks_end_at_their_deadline() {
        assert_eq!(next_look(1_000, 100, 1, 10_000), Some(1_200));
        assert_eq!(next_look(9_900, 100, 1, 10_000), None, "past the deadline");
        assert_eq!(next_look(9_800, 100, 1, 10_000), Some(10_000), "at it");
    }
}
