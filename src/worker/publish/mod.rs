//! The publish handler: one claim of one post.
//!
//! Safe to run twice and safe to interrupt, because of one rule (DESIGN section 2): `init` is not
//! idempotent, so a post that has a `publish_id` is never initialised again unless TikTok has confirmed
//! that the earlier attempt cannot be published:
//!
//! - no `publish_id` yet (`fresh.rs`): fresh `creator_info`, checks, `init`; the `publish_id` and the
//!   (sealed) `upload_url` are stored before the first byte. For FILE_UPLOAD an init whose answer was
//!   lost is harmless (TikTok never gets the bytes, so it cannot go live) and the post is initialised
//!   again; for PULL_FROM_URL it may go live, so that doubt ends as `unconfirmed`.
//! - a `publish_id` (`upload.rs`): ask TikTok for its status first. Finished → record it. Upload
//!   incomplete and the `upload_url` still valid → resume the upload. Upload incomplete and the URL
//!   expired, or FAILED with a retryable reason → TikTok cannot publish that attempt, so a new init is
//!   allowed. Anything else that cannot be settled → `unconfirmed`, with a message saying what to check.
//! - processing (`follow.rs`): status polls until the post settles or the claim's slice ends.
//! - the account (or the app) may not post now (`blocked.rs`): the post is held, not failed, until
//!   TikTok allows it again.
//! - a step that stopped: `verdict.rs` decides what it means (a pure function), `settle.rs` applies it.
//! - a published public post without its public id: `public_id.rs`, a job of its own.
//! - an `unconfirmed` public post: `confirm.rs` looks for it on TikTok's video list (matching in
//!   `candidates.rs`), a job of its own; a published public post's stats: `stats.rs`.
//!
//! Handlers return [`Next`]; they never hold the claim past a shutdown: between steps they hand the post
//! back (it resumes from its `publish_id` on the next claim).

mod blocked;
mod candidates;
mod confirm;
mod follow;
mod fresh;
mod public_id;
mod settle;
mod stats;
mod upload;
mod verdict;

use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::Ctx;
use crate::accounts::AccountError;
use crate::db::now_ms;
use crate::posts::{Field, Fields, PostRecord, State, Submission};
use crate::queue::Claim;
use crate::queue::Next;
use crate::tiktok::{Disposition, TikTokError};

/// A token must outlive the upload and the status follow started with it.
const TOKEN_MIN_VALID: Duration = Duration::from_secs(90 * 60);

/// A post claimed this often (crashing or losing its worker each time) is settled, not retried.
const MAX_CLAIMS: i64 = 25;

/// Why a step stopped.
enum Stop {
    /// TikTok said no (or could not be reached).
    TikTok(Box<TikTokError>),
    /// The token store failed.
    Account(Box<AccountError>),
    /// Redis failed: hand the post back and try later.
    Redis(redis::RedisError),
    /// Our own lease was lost: stop touching the post.
    LeaseLost,
    /// Shutting down: hand the post back now.
    Shutdown,
    /// The host was short of descriptors or memory reading the video: try the post again later.
    LocalLater(String),
    /// The account's calendar was paused (since this ms) before the init: hold the post.
    Paused(i64),
    /// Fewer replicas than `[redis] min_replica_acks` acknowledged the post's record before a step
    /// that reaches TikTok (the reason, and whether it was before the init, whose record is then
    /// cleared): hand the post back without spending an attempt.
    Replicas(String, bool),
    /// Settled; return this.
    Settled(Next),
}

impl Stop {
    /// Whether the step that stopped is known not to have created a post at TikTok.
    fn never_created_a_post(&self) -> bool {
        match self {
            Self::TikTok(e) => e.never_created_a_post(),
            Self::Account(_)
            | Self::Redis(_)
            | Self::Shutdown
            | Self::LocalLater(_)
            | Self::Replicas(..)
            | Self::Paused(_) => true,
            // Another worker holds the post now and may be spending the slot at its own init.
            Self::LeaseLost | Self::Settled(_) => false,
        }
    }
}

impl From<redis::RedisError> for Stop {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(e)
    }
}
impl From<TikTokError> for Stop {
    fn from(e: TikTokError) -> Self {
        Self::TikTok(Box::new(e))
    }
}
impl From<AccountError> for Stop {
    fn from(e: AccountError) -> Self {
        Self::Account(Box::new(e))
    }
}

struct Job<'a> {
    ctx: &'a Ctx,
    claim: &'a Claim,
    /// Cancelled when the lease renewer finds the lease lost: stop at once, touch nothing.
    lost: CancellationToken,
    post: PostRecord,
    sub: Submission,
    attempt: u32,
    /// The primary's generation when the post's record this attempt relies on was read or last
    /// written (at the claim, then before the `publish_id` is stored): the replicas' `WAIT` before
    /// the first chunk must cover it on that same primary.
    record_generation: u64,
}

/// Works on one claimed post. See the module docs for why this is safe to repeat and to interrupt.
pub async fn handle(ctx: &Ctx, claim: &Claim, lost: CancellationToken) -> Next {
    let record_generation = ctx.replicas.generation();
    let post = match ctx.ledger.get(&claim.id).await {
        Ok(Some(p)) => p,
        Ok(None) => return Next::Done,
        Err(error) => {
            tracing::warn!(%error, "Cannot read the post; trying again shortly.");
            return Next::At(now_ms() + 2000);
        }
    };
    if post.current().is_some_and(State::is_terminal) {
        return match post.current() {
            Some(State::Published) if post.post_id().is_none() => {
                public_id::collect(ctx, claim, &post).await
            }
            Some(State::Published) => stats::read(ctx, claim, &post).await,
            Some(State::Unconfirmed) => confirm::look(ctx, claim, &post).await,
            _ => Next::Done,
        };
    }
    let sub = match post.submission() {
        Ok(s) => s,
        Err(reason) => {
            let _ = settle::fail(
                ctx,
                claim,
                "invalid_post",
                &format!("the stored post is unreadable: {reason}"),
                None,
            )
            .await;
            return Next::Done;
        }
    };
    let attempt = post.attempts() as u32 + 1;
    let mut job = Job {
        ctx,
        claim,
        lost,
        post,
        sub,
        attempt,
        record_generation,
    };
    if job.post.claims() > MAX_CLAIMS {
        let msg = "workers were lost while handling this post too many times";
        return job.settle_doubt(msg).await;
    }
    let mut first = vec![(Field::Attempts, attempt.to_string())];
    if !job.post.has(Field::FirstClaimMs) {
        // When the post first reached a worker: the scheduler's lag is this minus `due_ms`.
        first.push((Field::FirstClaimMs, now_ms().to_string()));
        let due = job.post.due_ms().max(job.post.deferred_until_ms());
        crate::telemetry::metrics::start_lag((now_ms() - due) as f64 / 1000.0);
    }
    match job
        .ctx
        .ledger
        .set_fields(&claim.id, &first, Some(&claim.token))
        .await
    {
        Ok(true) => {}
        Ok(false) => return Next::Done,
        Err(_) => return Next::At(now_ms() + 2000),
    }
    let span = tracing::Span::current();
    span.record("account", job.sub.account.as_str());
    if let Some(p) = job.post.publish_id() {
        span.record("publish_id", p);
    }
    match job.run().await {
        Ok(next) | Err(Stop::Settled(next)) => next,
        Err(stop) => job.on_stop(stop).await,
    }
}

impl Job<'_> {
    fn id(&self) -> &str {
        &self.claim.id
    }

    async fn run(&mut self) -> Result<Next, Stop> {
        self.check_shutdown()?;
        if self.post.publish_id().is_some() {
            return self.resume().await;
        }
        if !self.post.has(Field::InitStartedMs)
            && let Some(since) = self.ctx.calendars.paused_since(&self.sub.account).await?
        {
            return self.hold_for_pause(since).await;
        }
        if !self.post.has(Field::InitStartedMs)
            && let Some(next) = self.held_by_block().await?
        {
            return Ok(next);
        }
        self.fresh().await
    }

    /// The account's calendar is paused: the post waits, deferred, without calling TikTok. A resume
    /// moves it at once; the re-check is only a safety net.
    pub(super) async fn hold_for_pause(&self, since: i64) -> Result<Next, Stop> {
        let until = now_ms() + crate::planner::PAUSED_RECHECK_MS;
        let mut fields = crate::planner::paused_fields(&self.sub.account, since, until);
        // A re-check is not a failed try: a pause of any length never uses up the post's claims or
        // attempts.
        fields.push((Field::Claims, "0".into()));
        fields.push((Field::Attempts, "0".into()));
        if self.post.current() == Some(State::Deferred)
            && self.post.error_code() == Some("calendar_paused")
        {
            self.set(&fields).await?;
        } else {
            let msg = crate::planner::paused_message(&fields);
            tracing::info!(message = %msg, "Post held: its account's calendar is paused.");
            self.transition(State::Deferred, &fields, &msg).await?;
        }
        Ok(Next::At(until))
    }

    /// Changes the post's state, fenced by this claim's lease.
    async fn transition(&self, to: State, fields: &Fields, message: &str) -> Result<(), Stop> {
        if self
            .ctx
            .ledger
            .transition(self.id(), to, fields, message, Some(&self.claim.token))
            .await?
        {
            Ok(())
        } else {
            Err(Stop::LeaseLost)
        }
    }

    /// Sets fields, fenced by this claim's lease.
    async fn set(&self, fields: &Fields) -> Result<(), Stop> {
        if self
            .ctx
            .ledger
            .set_fields(self.id(), fields, Some(&self.claim.token))
            .await?
        {
            Ok(())
        } else {
            Err(Stop::LeaseLost)
        }
    }

    fn check_shutdown(&self) -> Result<(), Stop> {
        if self.lost.is_cancelled() {
            return Err(Stop::LeaseLost);
        }
        if self.ctx.shutdown.is_cancelled() {
            Err(Stop::Shutdown)
        } else {
            Ok(())
        }
    }

    async fn token(&self) -> Result<SecretString, Stop> {
        Ok(self
            .ctx
            .accounts
            .access_token(&self.sub.account, TOKEN_MIN_VALID)
            .await?)
    }

    /// Calls TikTok; on `access_token_invalid` refreshes once and replays.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, Stop>
    where
        F: Fn(SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<T, TikTokError>>,
    {
        let token = self.token().await?;
        match f(token).await {
            Err(e) if e.disposition() == Disposition::RefreshToken => {
                tracing::info!(error = %e, "TikTok refused the access token; refreshing once and replaying.");
                let token = self.ctx.accounts.force_refresh(&self.sub.account).await?;
                Ok(f(token).await?)
            }
            other => Ok(other?),
        }
    }
}
