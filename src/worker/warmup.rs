//! The warm-up cap of a Direct Post: which day of its ramp the account is on, after asking TikTok (at
//! most every [`RECHECK`]) whether the account is already active and needs no ramp.
//!
//! "Already active" is what the Display API can show: a public video on `video/list` that we did not
//! post, older than `[warmup] manual_min_age_hours`, or a `video_count` (scope `user.info.stats`)
//! of at least `[warmup] active_video_count` besides our own posts. A scope the account did not
//! grant is never asked for (TikTok fails a whole user-info call that names a field without its
//! scope); what cannot be checked leaves the ramp on and says why in the account's `warmup_note`.
//! The same look finds posts sent through an earlier version (the ledger's `init_started_ms`), so an
//! account that posted through us before the ramp existed starts it at its real first post.

use std::collections::HashSet;
use std::time::Duration;

use secrecy::SecretString;

use super::Ctx;
use crate::accounts::{AccountError, Step};
use crate::db::now_ms;
use crate::posts::Field;
use crate::tiktok::limits::{self, DISPLAY_PAGE_MAX};
use crate::tiktok::{SCOPE_USER_INFO_STATS, SCOPE_VIDEO_LIST, TikTokError, UserField};

/// How often an account on its ramp is checked again (a user may start posting by hand).
pub const RECHECK: Duration = Duration::from_secs(6 * 3600);

/// Pages of `video/list` read in one check (20 videos each): enough to pass a day of anyone's posts.
const MAX_PAGES: usize = 10;

/// The most posts of the account read from the ledger to know which videos are ours.
const MAX_OWN_POSTS: usize = 5_000;

/// How far apart the posts a skipped warm-up held back are made due again.
pub const WAKE_STAGGER_MS: i64 = 60_000;

/// How long a post waits for another worker's first check of its account.
const FIRST_CHECK_WAIT: Duration = Duration::from_secs(20);

/// How long one check may hold its lock.
const LOCK: Duration = Duration::from_secs(60);

/// The warm-up step that applies to a Direct Post of `account` now; `None` when no cap applies
/// (warm-up off, skipped, or over).
pub async fn step_now(ctx: &Ctx, account: &str) -> Result<Option<Step>, AccountError> {
    let w = &ctx.warmup;
    if !w.enabled {
        return Ok(None);
    }
    let budget = ctx.cfg.daily_budget;
    let mut state = ctx.accounts.warmup(account).await?;
    let now = now_ms();
    if state.step(&w.ramp, budget, now).is_none() {
        return Ok(None);
    }
    if now - state.checked_ms >= RECHECK.as_millis() as i64 {
        if state.forced.is_some() {
            // The operator put the account on its ramp: no check may skip it again.
        } else if lock(ctx, account).await? {
            let checked = check(ctx, account).await;
            unlock(ctx, account).await;
            checked?;
            state = ctx.accounts.warmup(account).await?;
        } else if state.checked_ms == 0 {
            // Never checked, and another worker is checking now: its answer decides this post too
            // (an active account must not lose posts to a ramp it does not need).
            let deadline = tokio::time::Instant::now() + FIRST_CHECK_WAIT;
            while state.checked_ms == 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                state = ctx.accounts.warmup(account).await?;
            }
        }
    }
    Ok(state.step(&w.ramp, budget, now))
}

/// Takes the account's check lock; false when another daemon is checking it now.
async fn lock(ctx: &Ctx, account: &str) -> Result<bool, AccountError> {
    let mut conn = ctx.ledger.conn();
    let got: Option<String> = redis::cmd("SET")
        .arg(ctx.ledger.keys().warmup_lock(account))
        .arg(crate::db::random_id())
        .arg("NX")
        .arg("PX")
        .arg(LOCK.as_millis() as u64)
        .query_async(&mut conn)
        .await?;
    Ok(got.is_some())
}

/// Lets the next check go at once (the lock also expires by itself).
async fn unlock(ctx: &Ctx, account: &str) {
    let mut conn = ctx.ledger.conn();
    let _: redis::RedisResult<()> = redis::cmd("DEL")
        .arg(ctx.ledger.keys().warmup_lock(account))
        .query_async(&mut conn)
        .await;
}

/// Asks the ledger and TikTok whether the account is already active, and records what was found.
async fn check(ctx: &Ctx, account: &str) -> Result<(), AccountError> {
    let own = own_posts(ctx, account).await?;
    if let Some(first) = own.first_sent_ms {
        ctx.accounts.note_post_sent(account, first).await?;
    }
    let info = ctx.accounts.info(account).await?;
    let granted: Vec<String> = info
        .scopes
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let has = |scope: &str| granted.iter().any(|g| g == scope);
    let token = match ctx
        .accounts
        .access_token(account, Duration::from_secs(60))
        .await
    {
        Ok(t) => t,
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => {
            let note = format!("could not check whether the account is already active: {e}");
            return ctx.accounts.record_warmup_check(account, None, &note).await;
        }
    };
    let mut notes = Vec::new();
    if has(SCOPE_VIDEO_LIST) {
        match manual_video(ctx, account, &token, &own).await {
            Ok(Some(why)) => return record_active(ctx, account, &why).await,
            Ok(None) => notes.push(format!(
                "no public video older than {} h that we did not post",
                ctx.warmup.manual_min_age_hours
            )),
            Err(e) => notes.push(format!("video/list failed: {e}")),
        }
    } else {
        notes.push(format!(
            "the account did not grant {SCOPE_VIDEO_LIST}, so its public videos cannot be read"
        ));
    }
    if has(SCOPE_USER_INFO_STATS) {
        match video_count(ctx, account, &token, &granted).await {
            Ok(Some(n)) => {
                let others = n.saturating_sub(own.published);
                if others >= ctx.warmup.active_video_count {
                    let why = format!(
                        "active: video_count {n}, {others} of them not posted by us (threshold {})",
                        ctx.warmup.active_video_count
                    );
                    return record_active(ctx, account, &why).await;
                }
                notes.push(format!(
                    "video_count {n}, {own} of them ours",
                    own = own.published
                ));
            }
            Ok(None) => notes.push("user/info gave no video_count".into()),
            Err(e) => notes.push(format!("user/info failed: {e}")),
        }
    } else {
        notes.push(format!(
            "{SCOPE_USER_INFO_STATS} not granted, so video_count was not read"
        ));
    }
    let note = format!("ramp applies: {}", notes.join("; "));
    tracing::info!(account, note = %note, "Warm-up check done.");
    ctx.accounts.record_warmup_check(account, None, &note).await
}

/// Records that the ramp does not apply, and makes the posts it held back due again (a minute
/// apart: the daily budget still applies).
async fn record_active(ctx: &Ctx, account: &str, why: &str) -> Result<(), AccountError> {
    tracing::info!(
        account,
        why,
        "Warm-up skipped: TikTok shows the account already active."
    );
    ctx.accounts
        .record_warmup_check(account, Some(why), "the ramp does not apply")
        .await?;
    let woken = crate::queue::release::release_held(
        &ctx.ledger,
        &[account.to_string()],
        "warming_up",
        now_ms(),
        WAKE_STAGGER_MS,
    )
    .await?;
    if woken > 0 {
        tracing::info!(
            account,
            woken,
            "Posts held back by the warm-up are due again."
        );
    }
    Ok(())
}

/// What the ledger knows of the account's own posts.
struct OwnPosts {
    /// Public ids of its posts.
    post_ids: HashSet<u64>,
    /// How many of them are published.
    published: u64,
    /// The earliest init of a Direct Post.
    first_sent_ms: Option<i64>,
}

async fn own_posts(ctx: &Ctx, account: &str) -> Result<OwnPosts, AccountError> {
    let ids: Vec<String> = ctx
        .ledger
        .account_posts_between(account, i64::MIN, i64::MAX, MAX_OWN_POSTS)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut own = OwnPosts {
        post_ids: HashSet::new(),
        published: 0,
        first_sent_ms: None,
    };
    for chunk in ids.chunks(500) {
        for post in ctx.ledger.get_many(chunk).await?.into_iter().flatten() {
            if post.draft() == Some("true") {
                continue;
            }
            if let Some(id) = post.post_id().and_then(|p| p.parse().ok()) {
                own.post_ids.insert(id);
            }
            if post.state_name() == "published" {
                own.published += 1;
            }
            let sent = post.int(Field::InitStartedMs);
            if sent > 0 {
                own.first_sent_ms = Some(own.first_sent_ms.map_or(sent, |f| f.min(sent)));
            }
        }
    }
    Ok(own)
}

/// A public video not posted by us and older than the threshold, in words; `None` if there is none.
///
/// A video counts as posted by hand only when it is not one of our posts' public ids and it was
/// created before the account's first init through us (less a minute of clock skew): one of our
/// public posts whose id TikTok has not given yet (it may take hours) must never end the ramp.
async fn manual_video(
    ctx: &Ctx,
    account: &str,
    token: &SecretString,
    own: &OwnPosts,
) -> Result<Option<String>, TikTokError> {
    let mut old_before_s = (now_ms() / 1000) - i64::from(ctx.warmup.manual_min_age_hours) * 3600;
    if let Some(first) = own.first_sent_ms {
        old_before_s = old_before_s.min(first / 1000 - 60);
    }
    let ours = &own.post_ids;
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        wait_for(ctx, account, limits::VIDEO_LIST_RATE).await;
        let page = ctx
            .client
            .video_list(token, cursor, DISPLAY_PAGE_MAX)
            .await?;
        if let Some(v) = page
            .videos
            .iter()
            .find(|v| !ours.contains(&v.id) && v.create_time > 0 && v.create_time <= old_before_s)
        {
            let when = chrono::DateTime::from_timestamp(v.create_time, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            return Ok(Some(format!(
                "active: public video {} posted by hand on {when}, more than {} h ago",
                v.id, ctx.warmup.manual_min_age_hours
            )));
        }
        if !page.has_more || page.videos.is_empty() || Some(page.cursor) == cursor {
            return Ok(None);
        }
        cursor = Some(page.cursor);
    }
    Ok(None)
}

async fn video_count(
    ctx: &Ctx,
    account: &str,
    token: &SecretString,
    granted: &[String],
) -> Result<Option<u64>, TikTokError> {
    let fields = UserField::allowed(&[UserField::VideoCount], granted);
    if fields.is_empty() {
        return Ok(None);
    }
    wait_for(ctx, account, limits::USER_INFO_RATE).await;
    Ok(ctx.client.user_info(token, &fields).await?.video_count)
}

/// Waits (at most a few seconds) for a place in the account's window of a Display API endpoint; then,
/// or on a Redis error, the call goes anyway: a check makes a dozen calls at most, far below
/// TikTok's 600 a minute, so a full window means something else is spending it.
async fn wait_for(ctx: &Ctx, account: &str, limit: limits::RateLimit) {
    if let Ok(Some(wait)) = ctx
        .rate
        .acquire(account, limit, Duration::from_secs(5))
        .await
    {
        tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
    }
}

/// Once per Redis (a flag key): records each account's first Direct Post from the posts recorded
/// before the warm-up existed (their `init_started_ms`), so an account that already posted through
/// the daemon is shown and planned at its real ramp day from the first start of this version, not
/// as new. Returns how many accounts got a first post.
pub async fn backfill_once(
    ledger: &crate::posts::Ledger,
    accounts: &crate::accounts::Accounts,
) -> Result<usize, AccountError> {
    let flag = ledger.keys().warmup_indexed();
    let mut conn = ledger.conn();
    if redis::AsyncCommands::exists(&mut conn, &flag).await? {
        return Ok(0);
    }
    let mut first: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut cursor = 0;
    loop {
        let (next, ids) = ledger.scan_ids(cursor).await?;
        for post in ledger.get_many(&ids).await?.into_iter().flatten() {
            let sent = post.int(Field::InitStartedMs);
            if sent <= 0 || post.draft() == Some("true") {
                continue;
            }
            if let Some(account) = post.account() {
                let e = first.entry(account.to_string()).or_insert(sent);
                *e = (*e).min(sent);
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    for (account, at) in &first {
        accounts.note_post_sent(account, *at).await?;
    }
    redis::AsyncCommands::set::<_, _, ()>(&mut conn, &flag, now_ms()).await?;
    Ok(first.len())
}
