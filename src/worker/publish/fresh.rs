//! A fresh attempt (no `publish_id` yet): `creator_info`, the checks against the creator's options
//! and the video policy, the budget slot, the rate window, then `init`.
//!
//! Safe to repeat: nothing here has reached TikTok until the init, and the init is recorded before it
//! is sent (`init_started_ms`), so a repeat after a lost answer knows. A FILE_UPLOAD attempt whose init
//! answer was lost is started again (TikTok never gets its bytes, so it cannot go live); a
//! PULL_FROM_URL one ends `unconfirmed`. The `publish_id` and the sealed `upload_url` are stored,
//! fenced by the lease, before the first byte is sent.

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

use super::super::video::{self, LocalVideo, Refused};
use super::super::{probe_guard, rate};
use super::{Job, Stop};
use crate::db::now_ms;
use crate::posts::{Field, State};
use crate::queue::Next;
use crate::tiktok::limits::{self, UPLOAD_URL_LIFE};
use crate::tiktok::{PrivacyLevel, Source};

impl Job<'_> {
    /// No `publish_id`: check with creator_info, init, store the publish_id, upload.
    pub(super) async fn fresh(&mut self) -> Result<Next, Stop> {
        if self.sub.video_url.is_some() && self.post.has(Field::InitStartedMs) {
            // A pull init was sent and its answer lost: TikTok may be downloading it now.
            return Ok(self
                .settle_doubt("an init for this PULL_FROM_URL post was sent but its answer was lost; TikTok may have published it")
                .await);
        }
        // Too few replicas now: no TikTok call at all until they are back (the WAIT below would fail).
        self.replicas_online()?;
        self.transition(State::Uploading, &[], "").await?;
        self.slot(limits::CREATOR_INFO).await?;
        let client = self.ctx.client.clone();
        let info = self
            .call(|t| {
                let client = client.clone();
                async move { client.creator_info(&t).await }
            })
            .await?;
        let privacy = self.sub.post.privacy_level;
        if !self.sub.draft && !info.allows(privacy) {
            let msg = format!(
                "privacy level {privacy} is not among the creator's options now ({}); submit the post again with one of them",
                info.privacy_level_options.join(", ")
            );
            return Err(Stop::Settled(
                self.fail_now("privacy_level_option_mismatch", &msg, None)
                    .await,
            ));
        }
        if !self.sub.draft
            && privacy == PrivacyLevel::PublicToEveryone
            && info.privacy_level_options.len() == 1
        {
            tracing::debug!("Creator offers a single privacy level.");
        }
        let mut local = None;
        let source = match (&self.sub.video, &self.sub.video_url) {
            (Some(path), _) => {
                let video = self.plan(path, info.max_video_post_duration_sec).await?;
                let plan = video.plan;
                local = Some(video);
                Source::FileUpload(plan)
            }
            (None, Some(url)) => Source::PullFromUrl(url.clone()),
            (None, None) => {
                return Err(Stop::Settled(
                    self.fail_now("invalid_post", "the post has no video", None)
                        .await,
                ));
            }
        };
        // The budget is checked before any wait for the init rate window, and the slot it holds is
        // given back whenever this attempt stops before TikTok could have created a post.
        let took_budget = self.budget().await?;
        let before_init = async {
            self.slot(limits::INIT).await?;
            self.check_shutdown()?;
            // Checked again last thing: a pause that came while this attempt waited stops it here.
            if let Some(since) = self.ctx.calendars.paused_since(&self.sub.account).await? {
                return Err(Stop::Paused(since));
            }
            // Recorded before the call: for a pull, a lost answer must never lead to a second init.
            let generation = self.ctx.replicas.generation();
            let sent = now_ms();
            self.set(&[(Field::InitStartedMs, sent.to_string())])
                .await?;
            // And held by the replicas first, so that a failover cannot lose it.
            if let Err(why) = self.ctx.replicas.wait(generation).await {
                // No init was sent: a later claim must not take this record for one (cleared
                // again with the hand-back should Redis fail now).
                let _ = self.set(&[(Field::InitStartedMs, String::new())]).await;
                return Err(Stop::Replicas(why, true));
            }
            if !self.sub.draft
                && let Err(error) = self
                    .ctx
                    .accounts
                    .note_post_sent(&self.sub.account, sent)
                    .await
            {
                // Best effort: the warm-up's next activity check finds the first post from the
                // ledger's `init_started_ms` anyway, and this post must not stop over it.
                tracing::warn!(%error, "Could not record the account's first post for its warm-up.");
            }
            Ok(())
        };
        if let Err(stop) = before_init.await {
            if took_budget && stop.never_created_a_post() {
                self.release_budget().await;
            }
            return Err(stop);
        }
        let post = self.sub.post.clone();
        let draft = self.sub.draft;
        let init = self
            .call(|t| {
                let client = client.clone();
                let post = post.clone();
                let source = source.clone();
                async move {
                    if draft {
                        client.init_inbox(&t, &source).await
                    } else {
                        client.init_direct(&t, &post, &source).await
                    }
                }
            })
            .await;
        let init = match init {
            Ok(init) => init,
            Err(stop) => {
                if took_budget && stop.never_created_a_post() {
                    self.release_budget().await;
                }
                return Err(stop);
            }
        };
        let mut fields = vec![
            (Field::PublishId, init.publish_id.clone()),
            (Field::UploadDone, "0".to_string()),
        ];
        if let Some(v) = &local {
            // What the video list is matched against should the outcome be unknown.
            if let Some(ms) = v.duration_ms {
                fields.push((Field::DurationMs, ms.to_string()));
            }
            if let Some((w, h)) = v.size {
                fields.push((Field::VideoWidth, w.to_string()));
                fields.push((Field::VideoHeight, h.to_string()));
            }
        }
        if let Some(url) = &init.upload_url {
            let sealed = self.ctx.accounts.seal(
                &self.sub.account,
                &SecretString::from(url.expose().to_string()),
            );
            fields.push((Field::UploadUrlSealed, sealed));
            fields.push((
                Field::UploadExpiresMs,
                (now_ms() + UPLOAD_URL_LIFE.as_millis() as i64).to_string(),
            ));
        }
        // Fenced: if another worker took the post over meanwhile, this write fails and this attempt (which
        // never gets its bytes) cannot go live.
        self.record_generation = self.ctx.replicas.generation();
        self.set(&fields).await?;
        tracing::Span::current().record("publish_id", init.publish_id.as_str());
        tracing::info!("Post initialised at TikTok.");
        // For webhooks, which name posts by publish_id only.
        let mut conn = self.ctx.ledger.conn();
        let _: redis::RedisResult<()> = redis::AsyncCommands::hset(
            &mut conn,
            self.ctx.ledger.keys().publish_ids(),
            &init.publish_id,
            self.id(),
        )
        .await;
        for (f, v) in fields {
            self.post.note(f, v);
        }
        match (local, init.upload_url) {
            (Some(video), Some(url)) => self.upload(video, &url).await,
            _ => self.follow().await,
        }
    }

    /// `Err(Stop::Replicas)` when the Redis watch saw fewer replicas connected than `[redis]
    /// min_replica_acks` asks for at its last probe.
    pub(super) fn replicas_online(&self) -> Result<(), Stop> {
        let want = self.ctx.replicas.wanted();
        match self.ctx.heartbeats.redis.replicas() {
            Some(online) if want > 0 && online < want => Err(Stop::Replicas(
                format!(
                    "only {online} of the {want} replicas [redis] min_replica_acks asks for are connected to the primary; the post waits until enough replicas are back (or lower min_replica_acks)"
                ),
                false,
            )),
            _ => Ok(()),
        }
    }

    /// The file's plan, after checking it is still inside `[video] allowed_dirs`, did not change since
    /// it was submitted and still meets the video policy, now with the creator's own longest duration.
    pub(super) async fn plan(
        &self,
        path: &Path,
        creator_max_secs: Option<u32>,
    ) -> Result<LocalVideo, Stop> {
        // A probe that never finishes (it took the process down) is counted, so a crafted file cannot
        // crash-loop the daemon through lease reclaims.
        let unfinished = self.post.int(probe_guard::FIELD);
        if unfinished >= probe_guard::MAX_UNFINISHED_PROBES {
            let msg = probe_guard::reason(path, unfinished);
            return Err(Stop::Settled(
                self.fail_now("video_probe_crashed", &msg, None).await,
            ));
        }
        self.set(&[(probe_guard::FIELD, (unfinished + 1).to_string())])
            .await?;
        let prepared = video::prepare(&self.ctx.video, &self.post, path, creator_max_secs).await;
        self.set(&[(probe_guard::FIELD, "0".into())]).await?;
        match prepared {
            Ok(v) => Ok(v),
            Err(Refused::Later(message)) => Err(Stop::LocalLater(message)),
            Err(Refused::Fail { code, message }) => {
                Err(Stop::Settled(self.fail_now(code, &message, None).await))
            }
        }
    }

    /// Takes a rate-limit slot, or hands the post back until the window has room (saying so in the
    /// ledger: a post not yet at TikTok is `queued` again, not left in `uploading`).
    pub(super) async fn slot(&self, limit: rate::Limit) -> Result<(), Stop> {
        let wait = self
            .ctx
            .rate
            .acquire(&self.sub.account, limit, Duration::from_secs(5))
            .await?;
        let Some(wait) = wait else { return Ok(()) };
        let msg = format!(
            "waiting {} s for TikTok's limit of {} {} calls a minute for account {:?}",
            wait.as_secs() + 1,
            limit.limit,
            limit.name,
            self.sub.account
        );
        tracing::info!(message = %msg, "Post handed back for a rate window.");
        if self.post.publish_id().is_none() {
            self.transition(State::Queued, &[], &msg).await?;
        }
        Err(Stop::Settled(Next::At(now_ms() + wait.as_millis() as i64)))
    }

    /// Takes one post from the account's daily budget (Direct Posts) or pending-draft budget (inbox),
    /// both rolling 24-hour windows kept in Redis for every worker; when it is used up the post is
    /// deferred until a slot frees, instead of meeting TikTok's own cap. While the account warms up,
    /// the day's cap of its ramp is the budget (`warming_up` when it is used up).
    ///
    /// Returns whether this attempt took the slot now (`false`: an earlier attempt of the post holds
    /// it, and may have reached TikTok's init, so this attempt must never give it back).
    async fn budget(&self) -> Result<bool, Stop> {
        let mut limit = self.budget_limit();
        let warm = if self.sub.draft {
            None
        } else {
            super::super::warmup::step_now(self.ctx, &self.sub.account)
                .await?
                .filter(|s| s.cap < limit.limit)
        };
        if let Some(step) = warm {
            limit.limit = step.cap;
        }
        match self
            .ctx
            .rate
            .hold(&self.sub.account, limit, self.id())
            .await?
        {
            rate::Held::Taken => Ok(true),
            rate::Held::Already => Ok(false),
            rate::Held::Full(wait) => match warm {
                Some(step) => self.defer_for_warmup(step, wait).await.map(|()| false),
                None => self.defer_for_budget(limit, wait).await.map(|()| false),
            },
        }
    }

    /// Defers the post until its account's warm-up allows another post: when the window frees a
    /// place or the next day of the ramp begins, whichever comes first.
    async fn defer_for_warmup(
        &self,
        step: crate::accounts::Step,
        wait: Duration,
    ) -> Result<(), Stop> {
        let frees = now_ms() + wait.as_millis() as i64;
        let until = frees.min(step.ends_ms.max(now_ms())) + rand::random_range(0..60_000);
        let account = &self.sub.account;
        let msg = format!(
            "account {account:?} is warming up: day {} of {} of its ramp allows {} Direct Posts in any 24 hours, and they are used; deferred until {}. The ramp is the daemon's safeguard for new accounts ([warmup] in the config); if this account is not new, skip it with `tiktok-poster accounts warmup {account} --skip`",
            step.day,
            step.days,
            step.cap,
            chrono::DateTime::from_timestamp_millis(until)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        );
        tracing::info!(message = %msg, "Post deferred by the account's warm-up.");
        self.transition(
            State::Deferred,
            &[
                (Field::DeferredUntilMs, until.to_string()),
                (Field::ErrorCode, "warming_up".into()),
                (Field::ErrorMessage, msg.clone()),
                (Field::Attempts, "0".into()),
            ],
            &msg,
        )
        .await?;
        Err(Stop::Settled(Next::At(until)))
    }

    /// The budget a post of this kind is counted in.
    fn budget_limit(&self) -> rate::Limit {
        if self.sub.draft {
            rate::Limit {
                name: "drafts",
                limit: limits::PENDING_DRAFTS,
                window: limits::DAILY_WINDOW,
            }
        } else {
            rate::Limit {
                name: "daily",
                limit: self.ctx.cfg.daily_budget,
                window: limits::DAILY_WINDOW,
            }
        }
    }

    /// Gives the post's budget slot back: the attempt is known not to have reached TikTok (handed back
    /// before the init, or refused by TikTok without a post being created). Best effort: a slot that
    /// cannot be returned now ages out with its window.
    async fn release_budget(&self) {
        let limit = self.budget_limit();
        if let Err(error) = self
            .ctx
            .rate
            .release(&self.sub.account, limit, self.id())
            .await
        {
            tracing::warn!(%error, "Could not give the post's budget slot back; it ages out in 24 hours.");
        }
    }

    /// Defers the post until the budget has room.
    async fn defer_for_budget(&self, limit: rate::Limit, wait: Duration) -> Result<(), Stop> {
        let until = now_ms() + wait.as_millis() as i64 + rand::random_range(0..60_000);
        let what = if self.sub.draft {
            "pending inbox drafts"
        } else {
            "Direct Posts"
        };
        let msg = format!(
            "account {:?} used its budget of {} {what} in 24 hours; deferred until {}",
            self.sub.account,
            limit.limit,
            chrono::DateTime::from_timestamp_millis(until)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        );
        tracing::info!(message = %msg, "Post deferred by the daily budget.");
        self.transition(
            State::Deferred,
            &[
                (Field::DeferredUntilMs, until.to_string()),
                (Field::ErrorCode, "daily_budget".into()),
                (Field::ErrorMessage, msg.clone()),
                (Field::Attempts, "0".into()),
            ],
            &msg,
        )
        .await?;
        Err(Stop::Settled(Next::At(until)))
    }
}
