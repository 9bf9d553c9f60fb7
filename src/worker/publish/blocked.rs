//! A post whose account (or the whole app) may not post now: held, never failed, never sent.
//!
//! TikTok's `spam_risk_user_banned_from_posting` (at `creator_info` or init) blocks the account,
//! `reached_active_user_cap` blocks the app (see `accounts::blocked`). The post that met the block
//! was not created at TikTok, so it gives its budget slot back (the init path already does) and waits
//! like the others: `deferred` with `error_code` `posting_blocked`, its claims and attempts reset as
//! for a paused calendar, so a block of any length never fails a post and costs no TikTok call.
//!
//! The re-check: when a held post comes due and the block was last checked `[worker]
//! blocked_recheck_secs` ago or more, the one worker that takes the scope's lock asks `creator_info`.
//! Still blocked: the block counts as checked and the post waits again. Allowed: every block on the
//! account is cleared, the other held posts are brought forward a few seconds apart, and this post
//! goes on at once. A post that finds the lock taken or the check fresh waits for the next check,
//! spread by a jitter. Posts that already hold a `publish_id` are not held: TikTok has them.

use std::time::Duration;

use super::{Job, Stop};
use crate::accounts::blocked::{self, Block, POSTING_BLOCKED, Scope};
use crate::db::now_ms;
use crate::posts::{Field, State};
use crate::queue::Next;
use crate::queue::release::{RELEASE_STAGGER_MS, release_held};
use crate::tiktok::TikTokError;
use crate::tiktok::limits;

/// How long one worker may hold a scope's re-check lock (a check is one `creator_info` call, with
/// at most one token refresh before it).
const RECHECK_LOCK_MS: i64 = 60_000;
/// How long a held post waits at least when a check is overdue but under way elsewhere, and at most
/// after a check that got no answer.
const LOCK_WAIT_MS: i64 = 5_000;
/// How long a held post waits after a check that got no answer (the lock's life: the next check).
const UNANSWERED_WAIT_MS: i64 = RECHECK_LOCK_MS;

/// The block a TikTok error puts on the post's account, if any: only for a post TikTok does not
/// have (no `publish_id`) and an answer that shows no post was created.
pub(super) fn blocks(code: &str, has_publish_id: bool, never_created: bool) -> Option<Scope> {
    if has_publish_id || !never_created {
        return None;
    }
    blocked::scope_of(code)
}

/// What a block records of TikTok's answer: the call, TikTok's message and its `log_id` (which
/// TikTok support asks for).
fn reason(e: &TikTokError) -> String {
    let mut out = format!("{}: {}", e.op, e.message);
    if let Some(log_id) = &e.log_id {
        out.push_str(&format!(" [log_id {log_id}]"));
    }
    out
}

/// What a re-check found.
enum Recheck {
    /// `creator_info` answered: the creator may post.
    Allowed,
    /// Still blocked: by this scope, with TikTok's code and message.
    Blocked(Scope, TikTokError),
    /// No answer worth acting on (a 5xx, a timeout, the rate window): look again soon.
    Unanswered(String),
}

impl Job<'_> {
    fn recheck_ms(&self) -> i64 {
        self.ctx.cfg.blocked_recheck.as_millis().max(1) as i64
    }

    /// Spreads held posts' next looks: up to a tenth of the re-check interval.
    fn look_jitter(&self) -> i64 {
        rand::random_range(0..(self.recheck_ms() / 10).max(1))
    }

    /// Before a fresh attempt: `Some` when a block holds the post (it is deferred), `None` when it
    /// may go (no block, or the re-check this call made found posting allowed again).
    pub(super) async fn held_by_block(&self) -> Result<Option<Next>, Stop> {
        let account = self.sub.account.clone();
        let mut held = self.ctx.accounts.posting_blocks(&account).await?;
        if held.is_empty() {
            return Ok(None);
        }
        let interval = self.recheck_ms();
        let now = now_ms();
        let stale = held
            .iter()
            .find(|b| blocked::recheck_due(b, now, interval))
            .map(|b| b.scope);
        let mut wait = None;
        if let Some(scope) = stale
            && self
                .ctx
                .accounts
                .take_recheck_lock(scope, &account, RECHECK_LOCK_MS)
                .await?
        {
            let found = self.recheck().await;
            // After a check without an answer the lock stays until it expires: at most one
            // unanswered check per lock period, however many posts are held.
            if !matches!(found, Ok(Recheck::Unanswered(_))) {
                self.ctx.accounts.drop_recheck_lock(scope, &account).await;
            }
            match found? {
                Recheck::Allowed => {
                    self.lift(&held).await?;
                    return Ok(None);
                }
                Recheck::Blocked(by, e) => {
                    self.ctx
                        .accounts
                        .set_block(by, &account, &e.code, &reason(&e))
                        .await?;
                    if by != scope {
                        // The answer said nothing about the block that was checked; it still holds.
                        self.ctx.accounts.touch_block(scope, &account).await?;
                    }
                    held = self.ctx.accounts.posting_blocks(&account).await?;
                }
                Recheck::Unanswered(why) => {
                    tracing::info!(reason = %why, "The posting-block check got no answer; the post waits for the next one.");
                    wait = Some(now_ms() + interval.min(UNANSWERED_WAIT_MS) + self.look_jitter());
                }
            }
        }
        let Some(block) = held.first() else {
            return Ok(None);
        };
        // The soonest of the blocks' next checks: any of them may find posting allowed.
        let until = wait.unwrap_or_else(|| {
            let now = now_ms();
            let jitter = self.look_jitter();
            held.iter()
                .map(|b| blocked::next_look(b, now, interval, jitter, interval.min(LOCK_WAIT_MS)))
                .min()
                .unwrap_or(now + interval)
        });
        self.hold_for_block(block, until).await.map(Some)
    }

    /// Asks `creator_info` whether the creator may post. Only a stop that ends the claim (the lease
    /// lost, shutdown, Redis, the account's tokens) is an error.
    async fn recheck(&self) -> Result<Recheck, Stop> {
        let wait = self
            .ctx
            .rate
            .acquire(
                &self.sub.account,
                limits::CREATOR_INFO,
                Duration::from_secs(5),
            )
            .await?;
        if wait.is_some() {
            return Ok(Recheck::Unanswered(
                "creator_info's per-minute window is full".into(),
            ));
        }
        let client = self.ctx.client.clone();
        let answer = self
            .call(|t| {
                let client = client.clone();
                async move { client.creator_info(&t).await }
            })
            .await;
        match answer {
            Ok(_) => Ok(Recheck::Allowed),
            Err(Stop::TikTok(e)) => Ok(match blocked::scope_of(&e.code) {
                Some(scope) => Recheck::Blocked(scope, *e),
                // The daily cap is not a block: the post goes on and meets today's deferral.
                None if e.code == "spam_risk_too_many_posts" => Recheck::Allowed,
                None => Recheck::Unanswered(e.to_string()),
            }),
            Err(Stop::LocalLater(why)) => Ok(Recheck::Unanswered(why)),
            Err(other) => Err(other),
        }
    }

    /// TikTok allows posting again: clears the blocks that held the post and brings the other held
    /// posts forward, a few seconds apart (every account's for the app's block).
    async fn lift(&self, held: &[Block]) -> Result<(), Stop> {
        let account = &self.sub.account;
        let how = "creator_info allows posting again";
        let mut whom = vec![account.clone()];
        for b in held {
            self.ctx.accounts.clear_block(b.scope, account, how).await?;
            if b.scope == Scope::App {
                whom = self
                    .ctx
                    .accounts
                    .list()
                    .await?
                    .into_iter()
                    .map(|a| a.name)
                    .collect();
            }
        }
        let moved = release_held(
            &self.ctx.ledger,
            &whom,
            POSTING_BLOCKED,
            now_ms() + RELEASE_STAGGER_MS,
            RELEASE_STAGGER_MS,
        )
        .await?;
        tracing::info!(
            released = moved,
            "Posting allowed again; the held posts go a few seconds apart."
        );
        Ok(())
    }

    /// A step met a block (TikTok answered `e`): the block is recorded and the post held.
    pub(super) async fn on_block(&self, scope: Scope, e: &TikTokError) -> Next {
        let account = &self.sub.account;
        let held = async {
            self.ctx
                .accounts
                .set_block(scope, account, &e.code, &reason(e))
                .await?;
            let held = self.ctx.accounts.posting_blocks(account).await?;
            let Some(block) = held.iter().find(|b| b.scope == scope).or(held.first()) else {
                // Cleared meanwhile (an operator's resume): try again shortly.
                return Ok(Next::At(now_ms() + LOCK_WAIT_MS));
            };
            let until =
                blocked::next_look(block, now_ms(), self.recheck_ms(), self.look_jitter(), 0);
            self.hold_for_block(block, until).await
        };
        match held.await {
            Ok(next) | Err(Stop::Settled(next)) => next,
            Err(Stop::LeaseLost) => Next::Done,
            // Redis went meanwhile: the post is due again shortly and meets the block again.
            Err(_) => Next::At(now_ms() + 2_000),
        }
    }

    /// Holds the post for `block` until `until`, without calling TikTok.
    async fn hold_for_block(&self, block: &Block, until: i64) -> Result<Next, Stop> {
        let msg = blocked::held_message(&self.sub.account, block, until);
        let fields = vec![
            (Field::DeferredUntilMs, until.to_string()),
            (Field::ErrorCode, POSTING_BLOCKED.to_string()),
            (Field::ErrorMessage, msg.clone()),
            // A re-check is not a failed try: a block of any length never uses up the post's claims
            // or attempts.
            (Field::Claims, "0".into()),
            (Field::Attempts, "0".into()),
            // TikTok refused the init (or never got one): the next attempt may init again.
            (Field::InitStartedMs, String::new()),
        ];
        if self.post.current() == Some(State::Deferred)
            && self.post.error_code() == Some(POSTING_BLOCKED)
        {
            self.set(&fields).await?;
        } else {
            tracing::info!(message = %msg, code = %block.code, "Post held: its account may not post now.");
            self.transition(State::Deferred, &fields, &msg).await?;
        }
        // A lift that came while this post was held missed it (a post in a worker's hands is not
        // released): look again in a moment instead of at the next check.
        if self
            .ctx
            .accounts
            .posting_blocks(&self.sub.account)
            .await?
            .is_empty()
        {
            return Ok(Next::At(
                now_ms() + RELEASE_STAGGER_MS + rand::random_range(0..RELEASE_STAGGER_MS),
            ));
        }
        Ok(Next::At(until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_or_the_app_quota_blocks_only_a_post_tiktok_does_not_have() {
        let ban = "spam_risk_user_banned_from_posting";
        let cap = "reached_active_user_cap";
        assert_eq!(blocks(ban, false, true), Some(Scope::Account));
        assert_eq!(blocks(cap, false, true), Some(Scope::App));
        // A post with a publish_id goes on as before (TikTok has it).
        assert_eq!(blocks(ban, true, true), None);
        assert_eq!(blocks(cap, true, true), None);
        // An answer that may hide a created post is not read as a block.
        assert_eq!(blocks(ban, false, false), None);
        // The daily cap is deferred as before, never a block.
        assert_eq!(blocks("spam_risk_too_many_posts", false, true), None);
        assert_eq!(blocks("internal_error", false, true), None);
    }

    #[test]
    fn a_blocks_reason_keeps_the_call_tiktoks_message_and_the_log_id() {
        let e = crate::tiktok::TikTokError {
            op: "video init".into(),
            kind: crate::tiktok::ErrorKind::Api,
            http_status: Some(403),
            code: "spam_risk_user_banned_from_posting".into(),
            message: "The user is banned from posting.".into(),
            log_id: Some("2025LOG".into()),
            retry_after: None,
        };
        assert_eq!(
            reason(&e),
            "video init: The user is banned from posting. [log_id 2025LOG]"
        );
    }
}
