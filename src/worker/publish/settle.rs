//! Applying a verdict: the few ledger writes that end a step (`failed`, `unconfirmed`, `deferred`, a
//! noted error) and the [`Next`] the claim ends with.
//!
//! What a stop means is decided in `verdict.rs` (pure); this file only turns [`Stop`] into the facts
//! and failure the decision needs and writes its result. Every write is fenced by the claim's lease,
//! so applying a verdict twice, or after another worker took the post over, changes nothing.

use super::super::backoff;
use super::verdict::{self, Facts, Failure, Roll, Verdict};
use super::{Job, Stop};
use crate::accounts::AccountError;
use crate::db::now_ms;
use crate::posts::{Field, State};
use crate::queue::Claim;
use crate::queue::Next;
use crate::tiktok::ErrorKind;

use super::super::Ctx;

/// Fails the post for good, fenced by the claim.
pub(super) async fn fail(
    ctx: &Ctx,
    claim: &Claim,
    code: &str,
    message: &str,
    log_id: Option<&str>,
) -> redis::RedisResult<bool> {
    tracing::warn!(code, message, "Post failed.");
    ctx.ledger
        .transition(
            &claim.id,
            State::Failed,
            &[
                (Field::ErrorCode, code.to_string()),
                (Field::ErrorMessage, message.to_string()),
                (Field::LogId, log_id.unwrap_or("").to_string()),
            ],
            message,
            Some(&claim.token),
        )
        .await
}

/// How soon a post handed back for want of replicas is due again.
const REPLICA_RETRY_MS: i64 = 2_000;

impl Job<'_> {
    /// What the verdict needs to know about the post.
    fn facts(&self) -> Facts {
        Facts {
            has_publish_id: self.post.publish_id().is_some(),
            init_started: self.post.has(Field::InitStartedMs),
            upload_done: self.post.upload_done(),
            pull: self.sub.video_url.is_some(),
            attempt: self.attempt,
            max_attempts: self.ctx.cfg.max_attempts,
        }
    }

    /// The clock and random draws for a verdict.
    fn roll(&self) -> Roll {
        Roll {
            now_ms: now_ms(),
            backoff: backoff(&self.ctx.cfg, self.attempt),
            first_backoff: backoff(&self.ctx.cfg, 1),
            retry_jitter_ms: rand::random_range(0..2000),
            defer_jitter_ms: rand::random_range(0..60_000),
        }
    }

    pub(super) async fn fail_now(&self, code: &str, message: &str, log_id: Option<&str>) -> Next {
        let _ = fail(self.ctx, self.claim, code, message, log_id).await;
        Next::Done
    }

    /// Ends a post that may or may not be live: `unconfirmed` when TikTok may have it, else `failed`.
    pub(super) async fn settle_doubt(&self, message: &str) -> Next {
        self.apply(verdict::doubt(&self.facts(), message.to_string()))
            .await
    }

    /// What a stop means for the post.
    pub(super) async fn on_stop(&mut self, stop: Stop) -> Next {
        let failure = match stop {
            Stop::Settled(next) => return next,
            Stop::Paused(since) => {
                return match self.hold_for_pause(since).await {
                    Ok(next) | Err(Stop::Settled(next)) => next,
                    // The lease or Redis went meanwhile: the post is due again shortly.
                    Err(_) => Next::At(crate::db::now_ms() + 2_000),
                };
            }
            Stop::Replicas(why, before_init) => {
                return self.wait_for_replicas(&why, before_init).await;
            }
            Stop::LeaseLost => Failure::LeaseLost,
            Stop::Shutdown => Failure::Shutdown,
            Stop::LocalLater(message) => Failure::LocalLater(message),
            Stop::Redis(error) => {
                tracing::warn!(%error, "Redis failed mid-post; the post is handed back.");
                Failure::Redis
            }
            Stop::Account(e) => match *e {
                AccountError::ReauthRequired(account) => Failure::Reauth { account },
                e => match e.wrong_key() {
                    Some((found, expected)) => Failure::WrongKey {
                        found: found.to_string(),
                        expected: expected.to_string(),
                    },
                    None if e.is_transient() => Failure::AccountTransient(e.to_string()),
                    None => Failure::Account(e.to_string()),
                },
            },
            Stop::TikTok(e) => {
                crate::telemetry::metrics::tiktok_error(&e.code);
                let has_publish_id = self.post.publish_id().is_some();
                if let Some(scope) =
                    super::blocked::blocks(&e.code, has_publish_id, e.never_created_a_post())
                {
                    return self.on_block(scope, &e).await;
                }
                Failure::TikTok {
                    disposition: e.disposition(),
                    transport: matches!(e.kind, ErrorKind::Transport { .. }),
                    code: e.code.clone(),
                    log_id: e.log_id.clone(),
                    text: e.to_string(),
                }
            }
        };
        let v = verdict::decide(&self.facts(), &failure, &self.roll());
        if let (Failure::TikTok { code, .. }, Verdict::Defer { .. }) = (&failure, &v) {
            tracing::info!(code = %code, "Post deferred past TikTok's window.");
        }
        self.apply(v).await
    }

    /// Too few replicas hold the post's record: the post is due again in [`REPLICA_RETRY_MS`], and
    /// this claim spends neither an attempt nor a claim (a replica down for hours must not fail it).
    async fn wait_for_replicas(&self, why: &str, before_init: bool) -> Next {
        tracing::warn!(problem = %why, "Post handed back: too few Redis replicas hold its record.");
        let mut fields = vec![
            (Field::Attempts, self.attempt.saturating_sub(1).to_string()),
            (Field::Claims, (self.post.claims() - 1).max(0).to_string()),
            (Field::ErrorMessage, why.to_string()),
        ];
        if before_init {
            // No init was sent for this record.
            fields.push((Field::InitStartedMs, String::new()));
        }
        let _ = self.set(&fields).await;
        Next::At(crate::db::now_ms() + REPLICA_RETRY_MS)
    }

    /// Writes a verdict to the ledger (fenced) and says how the claim ends.
    async fn apply(&self, v: Verdict) -> Next {
        let resets_attempts = v.resets_attempts();
        match v {
            Verdict::Done => Next::Done,
            Verdict::HandBack => Next::At(-1),
            Verdict::Retry { at, note: None } => Next::At(at),
            Verdict::Retry {
                at,
                note: Some(message),
            } => {
                tracing::info!(
                    message,
                    retry_in_ms = at - now_ms(),
                    "Post will be retried."
                );
                let _ = self.set(&[(Field::ErrorMessage, message)]).await;
                Next::At(at)
            }
            Verdict::Defer {
                until,
                code,
                message,
                log_id,
            } => {
                let mut fields = vec![
                    (Field::DeferredUntilMs, until.to_string()),
                    (Field::ErrorCode, code),
                    (Field::ErrorMessage, message.clone()),
                    (Field::LogId, log_id.unwrap_or_default()),
                ];
                if resets_attempts {
                    // A cap is not a failure of ours: the attempt budget starts again.
                    fields.push((Field::Attempts, "0".into()));
                }
                let _ = self.transition(State::Deferred, &fields, &message).await;
                Next::At(until)
            }
            Verdict::WaitForAccount {
                until,
                code,
                message,
            } => {
                let _ = self
                    .transition(
                        State::Deferred,
                        &[
                            (Field::DeferredUntilMs, until.to_string()),
                            (Field::ErrorCode, code.to_string()),
                            (Field::ErrorMessage, message.clone()),
                        ],
                        &message,
                    )
                    .await;
                Next::At(until)
            }
            Verdict::Fail {
                code,
                message,
                log_id,
            } => self.fail_now(&code, &message, log_id.as_deref()).await,
            Verdict::Unconfirmed(reason) => {
                // A public post is then looked for on TikTok's video list (`confirm.rs`).
                let (message, mut fields, next) =
                    super::confirm::on_unconfirmed(self.ctx, &self.post, &reason).await;
                tracing::warn!(message, "Post unconfirmed.");
                fields.push((Field::ErrorCode, "unconfirmed".into()));
                fields.push((Field::ErrorMessage, message.clone()));
                match self
                    .ctx
                    .ledger
                    .transition(
                        self.id(),
                        State::Unconfirmed,
                        &fields,
                        &message,
                        Some(&self.claim.token),
                    )
                    .await
                {
                    Ok(true) => next,
                    _ => Next::Done,
                }
            }
        }
    }
}
