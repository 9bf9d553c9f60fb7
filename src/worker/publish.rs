//! The publish handler: one claim of one post.
//!
//! Safe to run twice and safe to interrupt, because of one rule (DESIGN section 2): `init` is not
//! idempotent, so a post that has a `publish_id` is never initialised again unless TikTok has confirmed
//! that the earlier attempt cannot be published:
//!
//! - no `publish_id` yet: fresh `creator_info`, checks, `init`; the `publish_id` and the (sealed)
//!   `upload_url` are stored before the first byte. For FILE_UPLOAD an init whose answer was lost is
//!   harmless (TikTok never gets the bytes, so it cannot go live) and the post is initialised again; for
//!   PULL_FROM_URL it may go live, so that doubt ends as `unconfirmed`.
//! - a `publish_id`: ask TikTok for its status first. Finished → record it. Upload incomplete and the
//!   `upload_url` still valid → resume the upload. Upload incomplete and the URL expired, or FAILED with a
//!   retryable reason → TikTok cannot publish that attempt, so a new init is allowed. Anything else that
//!   cannot be settled → `unconfirmed`, with a message saying what to check.
//!
//! Handlers return [`Next`]; they never hold the claim past a shutdown: between steps they hand the post
//! back (it resumes from its `publish_id` on the next claim).

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::video::{self, LocalVideo, Refused};
use super::{Ctx, Next, backoff, probe_guard, rate};
use crate::accounts::AccountError;
use crate::db::now_ms;
use crate::posts::{PostRecord, Submission, state};
use crate::queue::Claim;
use crate::tiktok::publish::{fail_reason_allows_retry, fail_reason_text, post_url};
use crate::tiktok::upload::{UploadRequest, content_type_for};
use crate::tiktok::{
    Disposition, ErrorKind, PrivacyLevel, Source, StatusKind, TikTokError, UploadUrl,
};

/// The `upload_url` lives one hour; we stop using it a little earlier.
const UPLOAD_URL_LIFE: Duration = Duration::from_secs(55 * 60);
/// A token must outlive the upload and the status follow started with it.
const TOKEN_MIN_VALID: Duration = Duration::from_secs(90 * 60);
/// How many times a published public post is asked for its public id (every twenty status intervals:
/// a minute by default).
const POST_ID_CHECKS: i64 = 60;

fn post_id_recheck(ctx: &Ctx) -> i64 {
    (ctx.cfg.status_interval * 20).as_millis() as i64
}

/// A published public post without its public id yet: one status look, recording the id and URL when
/// TikTok has them (after moderation). The state stays `published`.
async fn collect_public_id(ctx: &Ctx, claim: &Claim, post: &PostRecord) -> Next {
    let checks = post.num("post_id_checks") + 1;
    let public = post.get("privacy_level") == Some("PUBLIC_TO_EVERYONE")
        && post.get("draft") != Some("true");
    let (Some(account), Some(publish_id)) = (post.get("account"), post.get("publish_id")) else {
        return Next::Done;
    };
    if !public || checks > POST_ID_CHECKS {
        return Next::Done;
    }
    if let Ok(Some(_)) = ctx
        .rate
        .acquire(account, rate::STATUS, Duration::ZERO)
        .await
    {
        return Next::At(now_ms() + post_id_recheck(ctx));
    }
    let Ok(token) = ctx
        .accounts
        .access_token(account, Duration::from_secs(60))
        .await
    else {
        return Next::At(now_ms() + post_id_recheck(ctx));
    };
    let mut fields = vec![("post_id_checks", checks.to_string())];
    if let Ok(s) = ctx.client.fetch_status(&token, publish_id).await
        && let Some(id) = s.post_ids.first()
    {
        fields.push(("post_id", id.to_string()));
        let username = ctx
            .accounts
            .info(account)
            .await
            .map(|i| i.username)
            .unwrap_or_default();
        if !username.is_empty() {
            fields.push(("url", post_url(&username, *id)));
        }
        tracing::info!(post_id = id, "Public post id recorded.");
        let _ = ctx
            .ledger
            .set_fields(&claim.id, &fields, Some(&claim.token))
            .await;
        return Next::Done;
    }
    let _ = ctx
        .ledger
        .set_fields(&claim.id, &fields, Some(&claim.token))
        .await;
    Next::At(now_ms() + post_id_recheck(ctx))
}

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
    /// Settled; return this.
    Settled(Next),
}

impl Stop {
    /// Whether the step that stopped is known not to have created a post at TikTok.
    fn never_created_a_post(&self) -> bool {
        match self {
            Self::TikTok(e) => e.never_created_a_post(),
            Self::Account(_) | Self::Redis(_) | Self::Shutdown | Self::LocalLater(_) => true,
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
}

/// Works on one claimed post. See the module docs for why this is safe to repeat and to interrupt.
pub async fn handle(ctx: &Ctx, claim: &Claim, lost: CancellationToken) -> Next {
    let post = match ctx.ledger.get(&claim.id).await {
        Ok(Some(p)) => p,
        Ok(None) => return Next::Done,
        Err(error) => {
            tracing::warn!(%error, "Cannot read the post; trying again shortly.");
            return Next::At(now_ms() + 2000);
        }
    };
    if state::is_terminal(post.state()) {
        if post.state() == state::PUBLISHED && post.get("post_id").is_none() {
            return collect_public_id(ctx, claim, &post).await;
        }
        return Next::Done;
    }
    let sub = match post.submission() {
        Ok(s) => s,
        Err(reason) => {
            let _ = fail(
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
    let attempt = post.num("attempts") as u32 + 1;
    let mut job = Job {
        ctx,
        claim,
        lost,
        post,
        sub,
        attempt,
    };
    if job.post.num("claims") > MAX_CLAIMS {
        let msg = "workers were lost while handling this post too many times";
        return job.settle_doubt(msg).await;
    }
    let mut first = vec![("attempts", attempt.to_string())];
    if job.post.get("first_claim_ms").is_none() {
        // When the post first reached a worker: the scheduler's lag is this minus `due_ms`.
        first.push(("first_claim_ms", now_ms().to_string()));
        let due = job
            .post
            .num("due_ms")
            .max(job.post.num("deferred_until_ms"));
        crate::telemetry_metrics::start_lag((now_ms() - due) as f64 / 1000.0);
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
    if let Some(p) = job.post.get("publish_id") {
        span.record("publish_id", p);
    }
    match job.run().await {
        Ok(next) | Err(Stop::Settled(next)) => next,
        Err(stop) => job.on_stop(stop).await,
    }
}

async fn fail(
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
            state::FAILED,
            &[
                ("error_code", code.to_string()),
                ("error_message", message.to_string()),
                ("log_id", log_id.unwrap_or("").to_string()),
            ],
            message,
            Some(&claim.token),
        )
        .await
}

impl Job<'_> {
    fn id(&self) -> &str {
        &self.claim.id
    }

    async fn transition(
        &self,
        to: &str,
        fields: &[(&str, String)],
        message: &str,
    ) -> Result<(), Stop> {
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

    async fn set(&self, fields: &[(&str, String)]) -> Result<(), Stop> {
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

    /// Takes a rate-limit slot, or hands the post back until the window has room (saying so in the
    /// ledger: a post not yet at TikTok is `queued` again, not left in `uploading`).
    async fn slot(&self, limit: rate::Limit) -> Result<(), Stop> {
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
        if self.post.get("publish_id").is_none() {
            self.transition(state::QUEUED, &[], &msg).await?;
        }
        Err(Stop::Settled(Next::At(now_ms() + wait.as_millis() as i64)))
    }

    /// Takes one post from the account's daily budget (Direct Posts) or pending-draft budget (inbox),
    /// both rolling 24-hour windows kept in Redis for every worker; when it is used up the post is
    /// deferred until a slot frees, instead of meeting TikTok's own cap.
    ///
    /// Returns whether this attempt took the slot now (`false`: an earlier attempt of the post holds
    /// it, and may have reached TikTok's init, so this attempt must never give it back).
    async fn budget(&self) -> Result<bool, Stop> {
        let limit = self.budget_limit();
        match self
            .ctx
            .rate
            .hold(&self.sub.account, limit, self.id())
            .await?
        {
            rate::Held::Taken => Ok(true),
            rate::Held::Already => Ok(false),
            rate::Held::Full(wait) => self.defer_for_budget(limit, wait).await.map(|()| false),
        }
    }

    /// The budget a post of this kind is counted in.
    fn budget_limit(&self) -> rate::Limit {
        if self.sub.draft {
            rate::Limit {
                name: "drafts",
                limit: rate::PENDING_DRAFTS,
                window: Duration::from_secs(24 * 3600),
            }
        } else {
            rate::Limit {
                name: "daily",
                limit: self.ctx.cfg.daily_budget,
                window: Duration::from_secs(24 * 3600),
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
            state::DEFERRED,
            &[
                ("deferred_until_ms", until.to_string()),
                ("error_code", "daily_budget".into()),
                ("error_message", msg.clone()),
                ("attempts", "0".into()),
            ],
            &msg,
        )
        .await?;
        Err(Stop::Settled(Next::At(until)))
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

    async fn run(&mut self) -> Result<Next, Stop> {
        self.check_shutdown()?;
        if self.post.get("publish_id").is_some() {
            return self.resume().await;
        }
        self.fresh().await
    }

    /// No `publish_id`: check with creator_info, init, store the publish_id, upload.
    async fn fresh(&mut self) -> Result<Next, Stop> {
        if self.sub.video_url.is_some() && self.post.get("init_started_ms").is_some() {
            // A pull init was sent and its answer lost: TikTok may be downloading it now.
            return Ok(self
                .settle_doubt("an init for this PULL_FROM_URL post was sent but its answer was lost; TikTok may have published it")
                .await);
        }
        self.transition(state::UPLOADING, &[], "").await?;
        self.slot(rate::CREATOR_INFO).await?;
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
            self.slot(rate::INIT).await?;
            self.check_shutdown()?;
            // Recorded before the call: for a pull, a lost answer must never lead to a second init.
            self.set(&[("init_started_ms", now_ms().to_string())]).await
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
            ("publish_id", init.publish_id.clone()),
            ("upload_done", "0".to_string()),
        ];
        if let Some(url) = &init.upload_url {
            let sealed = self.ctx.accounts.seal(
                &self.sub.account,
                &SecretString::from(url.expose().to_string()),
            );
            fields.push(("upload_url_sealed", sealed));
            fields.push((
                "upload_expires_ms",
                (now_ms() + UPLOAD_URL_LIFE.as_millis() as i64).to_string(),
            ));
        }
        // Fenced: if another worker took the post over meanwhile, this write fails and this attempt (which
        // never gets its bytes) cannot go live.
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
        for (k, v) in fields {
            self.post.fields.insert(k.to_string(), v);
        }
        match (local, init.upload_url) {
            (Some(video), Some(url)) => self.upload(video, &url).await,
            _ => self.follow().await,
        }
    }

    /// The file's plan, after checking it is still inside `[video] allowed_dirs`, did not change since
    /// it was submitted and still meets the video policy, now with the creator's own longest duration.
    async fn plan(&self, path: &Path, creator_max_secs: Option<u32>) -> Result<LocalVideo, Stop> {
        // A probe that never finishes (it took the process down) is counted, so a crafted file cannot
        // crash-loop the daemon through lease reclaims.
        let unfinished = self.post.num(probe_guard::FIELD);
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

    /// Streams the file to the `upload_url`, resuming from TikTok's own progress.
    async fn upload(&mut self, video: LocalVideo, url: &UploadUrl) -> Result<Next, Stop> {
        let Some(submitted) = self.sub.video.clone() else {
            return self.follow().await;
        };
        let plan = video.plan;
        // The type follows the name the producer gave (a symlink's target may have any name).
        let content_type = content_type_for(&submitted).unwrap_or("video/mp4");
        self.transition(state::UPLOADING, &[], "").await?;
        let started = std::time::Instant::now();
        let shutdown = self.ctx.shutdown.clone();
        // Long uploads are logged at every tenth; every chunk at debug level.
        let total = plan.video_size.max(1);
        let mut last_tenth = 0;
        let mut progress = move |n: u64| {
            let tenth = n * 10 / total;
            if plan.total_chunk_count > 1 && tenth > last_tenth && tenth < 10 {
                last_tenth = tenth;
                tracing::info!(bytes = n, total, percent = tenth * 10, "Upload progress.");
            } else {
                tracing::debug!(bytes = n, total, "Upload progress.");
            }
        };
        let upload = self.ctx.client.upload_file(
            UploadRequest {
                url,
                path: &video.path,
                plan,
                content_type,
                start_offset: 0,
                check: Some(video.check()),
            },
            &mut progress,
        );
        let lost = self.lost.clone();
        let out = tokio::select! {
            r = upload => r,
            _ = shutdown.cancelled() => return Err(Stop::Shutdown),
            _ = lost.cancelled() => return Err(Stop::LeaseLost),
        };
        match out {
            Ok(o) => {
                crate::telemetry_metrics::upload(o.bytes_sent, started.elapsed().as_secs_f64());
                tracing::info!(
                    bytes = plan.video_size,
                    secs = started.elapsed().as_secs_f64(),
                    retries = o.retries,
                    "Upload complete."
                );
                self.transition(
                    state::PROCESSING,
                    &[
                        ("upload_done", "1".into()),
                        ("uploaded_ms", now_ms().to_string()),
                    ],
                    "",
                )
                .await?;
                self.post.fields.insert("upload_done".into(), "1".into());
                self.post
                    .fields
                    .insert("uploaded_ms".into(), now_ms().to_string());
                self.follow().await
            }
            Err(e) if e.code == "upload_url_expired" || e.code == "upload_not_found" => {
                // TikTok never got the whole file, and the URL is dead: this attempt cannot be
                // published, so a new init is safe.
                self.restart_attempt(&format!("the upload URL stopped working ({e})"))
                    .await
            }
            Err(e) => Err(Stop::TikTok(Box::new(e))),
        }
    }

    /// A `publish_id` exists: find out where TikTok is before doing anything.
    async fn resume(&mut self) -> Result<Next, Stop> {
        let publish_id = self.post.get("publish_id").unwrap_or_default().to_string();
        self.slot(rate::STATUS).await?;
        let client = self.ctx.client.clone();
        let pid = publish_id.clone();
        let status = match self
            .call(|t| {
                let client = client.clone();
                let pid = pid.clone();
                async move { client.fetch_status(&t, &pid).await }
            })
            .await
        {
            Ok(s) => s,
            Err(Stop::TikTok(e)) if e.disposition() == Disposition::Fail => {
                let msg = format!(
                    "TikTok does not recognise publish_id {publish_id} any more ({e}); check the account's posts in the TikTok app"
                );
                return Ok(self.settle_doubt(&msg).await);
            }
            Err(other) => return Err(other),
        };
        match status.status {
            StatusKind::ProcessingUpload
                if self.post.get("upload_done") != Some("1") && self.sub.video.is_some() =>
            {
                let size = self.post.num("video_size") as u64;
                if status.uploaded_bytes.is_some_and(|b| size > 0 && b >= size) {
                    self.set(&[("upload_done", "1".into())]).await?;
                    self.post.fields.insert("upload_done".into(), "1".into());
                    return self.follow().await;
                }
                let expires = self.post.num("upload_expires_ms");
                let sealed = self.post.get("upload_url_sealed").map(str::to_string);
                match sealed {
                    Some(sealed) if expires > now_ms() + 60_000 => {
                        let url = self.ctx.accounts.unseal(&self.sub.account, &sealed)?;
                        let url =
                            UploadUrl::new(secrecy::ExposeSecret::expose_secret(&url).to_string());
                        let path = self.sub.video.clone().unwrap_or_default();
                        let video = self.plan(&path, None).await?;
                        self.upload(video, &url).await
                    }
                    _ => {
                        self.restart_attempt(
                            "the upload did not finish within the upload URL's hour",
                        )
                        .await
                    }
                }
            }
            _ => self.follow().await,
        }
    }

    /// Clears the `publish_id` of an attempt TikTok cannot publish and queues a fresh one.
    async fn restart_attempt(&mut self, why: &str) -> Result<Next, Stop> {
        let old = self.post.get("publish_id").unwrap_or_default().to_string();
        let mut previous = self
            .post
            .get("previous_publish_ids")
            .unwrap_or_default()
            .to_string();
        if !previous.is_empty() {
            previous.push(',');
        }
        previous.push_str(&old);
        tracing::info!(publish_id = %old, why, "Starting a new attempt; the old one cannot be published.");
        self.transition(
            state::QUEUED,
            &[
                ("publish_id", String::new()),
                ("upload_url_sealed", String::new()),
                ("upload_expires_ms", String::new()),
                ("upload_done", String::new()),
                ("init_started_ms", String::new()),
                ("previous_publish_ids", previous),
            ],
            why,
        )
        .await?;
        if self.attempt >= self.ctx.cfg.max_attempts {
            return Ok(self
                .fail_now(
                    "too_many_attempts",
                    &format!("gave up after {} attempts; last: {why}", self.attempt),
                    None,
                )
                .await);
        }
        Ok(Next::At(
            now_ms() + backoff(&self.ctx.cfg, self.attempt).as_millis() as i64,
        ))
    }

    /// Polls status within the per-account budget until the post settles, or hands it back.
    async fn follow(&mut self) -> Result<Next, Stop> {
        let publish_id = self.post.get("publish_id").unwrap_or_default().to_string();
        if self.post.state() != state::PROCESSING {
            self.transition(state::PROCESSING, &[], "").await?;
            self.post
                .fields
                .insert("state".into(), state::PROCESSING.into());
        }
        let slice_end = tokio::time::Instant::now() + self.ctx.cfg.follow_slice;
        let client = self.ctx.client.clone();
        // Polls start at the configured interval and slow down by half each time (up to ten times the
        // interval), so long processing does not spend the account's 30 status fetches a minute.
        let mut interval = self.ctx.cfg.status_interval;
        let max_interval = self.ctx.cfg.status_interval * 10;
        loop {
            // TikTok needs time to process: wait before each look, not after it.
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.ctx.shutdown.cancelled() => return Err(Stop::Shutdown),
                _ = self.lost.cancelled() => return Err(Stop::LeaseLost),
                _ = self.lost.cancelled() => return Err(Stop::LeaseLost),
            }
            interval = (interval * 3 / 2).min(max_interval);
            // A webhook may have settled the post meanwhile.
            if let Ok(Some(now)) = self.ctx.ledger.state_of(self.id()).await
                && state::is_terminal(&now)
            {
                tracing::info!(
                    state = %now,
                    "Post settled by a webhook ahead of polling."
                );
                return Ok(Next::Done);
            }
            self.slot(rate::STATUS).await?;
            let pid = publish_id.clone();
            let s = self
                .call(|t| {
                    let client = client.clone();
                    let pid = pid.clone();
                    async move { client.fetch_status(&t, &pid).await }
                })
                .await?;
            match s.status {
                StatusKind::PublishComplete => {
                    let mut fields = vec![("published_ms", now_ms().to_string())];
                    let mut msg = String::new();
                    if let Some(id) = s.post_ids.first() {
                        fields.push(("post_id", id.to_string()));
                        let username = self
                            .ctx
                            .accounts
                            .info(&self.sub.account)
                            .await
                            .map(|i| i.username)
                            .unwrap_or_default();
                        if !username.is_empty() {
                            let url = post_url(&username, *id);
                            msg = url.clone();
                            fields.push(("url", url));
                        }
                    }
                    let to = if self.sub.draft {
                        state::INBOX
                    } else {
                        state::PUBLISHED
                    };
                    self.transition(to, &fields, &msg).await?;
                    tracing::info!(publish_id = %publish_id, "Post published.");
                    if self.awaits_public_id(s.post_ids.is_empty()) {
                        // Public posts get their id after moderation (usually a minute, sometimes
                        // hours): look again later, without touching the state.
                        return Ok(Next::At(now_ms() + post_id_recheck(self.ctx)));
                    }
                    return Ok(Next::Done);
                }
                StatusKind::SendToUserInbox if self.sub.draft => {
                    self.transition(state::INBOX, &[("published_ms", now_ms().to_string())], "")
                        .await?;
                    tracing::info!(publish_id = %publish_id, "Draft delivered to the creator's inbox.");
                    return Ok(Next::Done);
                }
                StatusKind::Failed => {
                    let reason = s.fail_reason.clone().unwrap_or_default();
                    if fail_reason_allows_retry(&reason) {
                        // TikTok confirmed this attempt failed and says trying again may work.
                        return self
                            .restart_attempt(&format!("TikTok failed the attempt ({reason})"))
                            .await;
                    }
                    let msg = format!(
                        "TikTok failed the post: {} ({reason})",
                        fail_reason_text(&reason)
                    );
                    return Ok(self.fail_now(&reason, &msg, None).await);
                }
                _ => {}
            }
            let uploaded = self
                .post
                .num("uploaded_ms")
                .max(self.post.num("init_started_ms"));
            if uploaded > 0 && now_ms() - uploaded > self.ctx.cfg.settle_timeout.as_millis() as i64
            {
                let msg = format!(
                    "TikTok still reports {:?} for publish_id {publish_id} long after the upload; check the account in the TikTok app",
                    s.status
                );
                return Ok(self.settle_doubt(&msg).await);
            }
            if tokio::time::Instant::now() > slice_end {
                return Ok(Next::At(
                    now_ms() + self.ctx.cfg.status_interval.as_millis() as i64,
                ));
            }
        }
    }

    /// True for a public Direct Post that TikTok completed without its public id yet.
    fn awaits_public_id(&self, no_id: bool) -> bool {
        no_id && !self.sub.draft && self.sub.post.privacy_level == PrivacyLevel::PublicToEveryone
    }

    async fn fail_now(&self, code: &str, message: &str, log_id: Option<&str>) -> Next {
        let _ = fail(self.ctx, self.claim, code, message, log_id).await;
        Next::Done
    }

    /// Ends a post that may or may not be live: `unconfirmed` when TikTok may have it, else `failed`.
    async fn settle_doubt(&self, message: &str) -> Next {
        let may_be_live =
            self.post.get("publish_id").is_some() || self.post.get("init_started_ms").is_some();
        if !may_be_live {
            return self.fail_now("gave_up", message, None).await;
        }
        tracing::warn!(message, "Post unconfirmed.");
        let _ = self
            .ctx
            .ledger
            .transition(
                self.id(),
                state::UNCONFIRMED,
                &[
                    ("error_code", "unconfirmed".into()),
                    ("error_message", message.to_string()),
                ],
                message,
                Some(&self.claim.token),
            )
            .await;
        Next::Done
    }

    /// What a stop means for the post.
    async fn on_stop(&mut self, stop: Stop) -> Next {
        let now = now_ms();
        match stop {
            Stop::Settled(next) => next,
            Stop::LeaseLost => Next::Done,
            Stop::Shutdown => Next::At(-1),
            Stop::LocalLater(message) => self.retry_later(&message, None).await,
            Stop::Redis(error) => {
                tracing::warn!(%error, "Redis failed mid-post; the post is handed back.");
                Next::At(now + backoff(&self.ctx.cfg, 1).as_millis() as i64)
            }
            Stop::Account(e) if matches!(*e, AccountError::ReauthRequired(_)) => {
                let AccountError::ReauthRequired(name) = *e else {
                    return Next::At(now + 60_000);
                };
                let msg = format!(
                    "account {name:?} must be connected again (`tiktok-poster accounts connect {name}`); the post waits and resumes after that"
                );
                self.wait_for_account("reauth_required", &msg).await
            }
            Stop::Account(e) if e.wrong_key().is_some() => {
                let (found, expected) = e.wrong_key().unwrap_or_default();
                let msg = format!(
                    "the account's tokens were sealed with token key {found}, but the configured key is {expected}; configure the key that sealed them (tokens.encryption_key_file, or tokens.previous_key_file and `tiktok-poster keys rotate`) or connect the account again; the post waits"
                );
                self.wait_for_account("token_key_mismatch", &msg).await
            }
            Stop::Account(e) if e.is_transient() => self.retry_later(&e.to_string(), None).await,
            Stop::Account(e) => self.fail_now("account", &e.to_string(), None).await,
            Stop::TikTok(e) => self.on_tiktok(*e).await,
        }
    }

    /// The account cannot be used until the operator acts: the post waits (`deferred`) and looks
    /// again in five minutes.
    async fn wait_for_account(&self, code: &str, msg: &str) -> Next {
        let until = now_ms() + 5 * 60_000;
        let _ = self
            .transition(
                state::DEFERRED,
                &[
                    ("deferred_until_ms", until.to_string()),
                    ("error_code", code.to_string()),
                    ("error_message", msg.to_string()),
                ],
                msg,
            )
            .await;
        Next::At(until)
    }

    async fn retry_later(&mut self, message: &str, at: Option<i64>) -> Next {
        if self.attempt >= self.ctx.cfg.max_attempts {
            let msg = format!(
                "gave up after {} attempts; last error: {message}",
                self.attempt
            );
            return self.settle_doubt(&msg).await;
        }
        let at = at
            .unwrap_or_else(|| now_ms() + backoff(&self.ctx.cfg, self.attempt).as_millis() as i64);
        tracing::info!(
            message,
            retry_in_ms = at - now_ms(),
            "Post will be retried."
        );
        let _ = self.set(&[("error_message", message.to_string())]).await;
        Next::At(at)
    }

    async fn on_tiktok(&mut self, e: TikTokError) -> Next {
        crate::telemetry_metrics::tiktok_error(&e.code);
        let has_publish_id = self.post.get("publish_id").is_some();
        match e.disposition() {
            Disposition::Retry | Disposition::RefreshToken => {
                if !has_publish_id
                    && self.sub.video_url.is_some()
                    && matches!(e.kind, ErrorKind::Transport { .. })
                {
                    // A pull init whose answer was lost may still go live.
                    return self
                        .settle_doubt(&format!(
                            "the init answer was lost ({e}); TikTok may be downloading the video"
                        ))
                        .await;
                }
                self.retry_later(&e.to_string(), None).await
            }
            Disposition::RetryAfter(d) => {
                let at = now_ms() + d.as_millis() as i64 + rand::random_range(0..2000);
                self.retry_later(&e.to_string(), Some(at)).await
            }
            Disposition::Defer(d) => {
                let until = now_ms() + d.as_millis() as i64 + rand::random_range(0..60_000);
                let msg = format!(
                    "{e}; deferred until {}",
                    chrono::DateTime::from_timestamp_millis(until)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default()
                );
                tracing::info!(code = %e.code, "Post deferred past TikTok's window.");
                let _ = self
                    .transition(
                        state::DEFERRED,
                        &[
                            ("deferred_until_ms", until.to_string()),
                            ("error_code", e.code.clone()),
                            ("error_message", msg.clone()),
                            ("log_id", e.log_id.clone().unwrap_or_default()),
                            // A cap is not a failure of ours: the attempt budget starts again.
                            ("attempts", "0".into()),
                        ],
                        &msg,
                    )
                    .await;
                Next::At(until)
            }
            Disposition::Fail => {
                if has_publish_id && self.post.get("upload_done") == Some("1") {
                    return self
                        .settle_doubt(&format!("TikTok refused a follow-up call: {e}"))
                        .await;
                }
                self.fail_now(&e.code, &e.to_string(), e.log_id.as_deref())
                    .await
            }
        }
    }
}
