//! An attempt with a `publish_id`: resuming it from TikTok's own view, streaming the file, and
//! starting a new attempt when TikTok confirms the old one cannot be published.
//!
//! Safe to repeat: every claim asks TikTok for the attempt's status before doing anything, and the
//! upload resumes from the bytes TikTok reports, not from what this process remembers. A new init is
//! allowed only when the old attempt can never go live (its upload URL is dead with the file
//! incomplete, or TikTok failed it with a retryable reason); the old `publish_id` is kept in
//! `previous_publish_ids`.

use super::super::backoff;
use super::super::video::LocalVideo;
use super::{Job, Stop};
use crate::db::now_ms;
use crate::posts::{Field, State};
use crate::queue::Next;
use crate::tiktok::limits;
use crate::tiktok::upload::{UploadRequest, content_type_or_default};
use crate::tiktok::{Disposition, StatusKind, UploadUrl};

impl Job<'_> {
    /// Streams the file to the `upload_url`, resuming from TikTok's own progress.
    pub(super) async fn upload(
        &mut self,
        video: LocalVideo,
        url: &UploadUrl,
    ) -> Result<Next, Stop> {
        let Some(submitted) = self.sub.video.clone() else {
            return self.follow().await;
        };
        let plan = video.plan;
        // The type follows the name the producer gave (a symlink's target may have any name).
        let content_type = content_type_or_default(&submitted);
        self.replicas_online()?;
        self.transition(State::Uploading, &[], "").await?;
        // The `publish_id` and this attempt's record are held by the replicas before TikTok gets a
        // byte: a failover that lost them would start a second attempt, whose video would go live
        // too. The generation is the one the `publish_id` was written (or read) under, so a primary
        // that changed since fails the wait instead of vouching for a record it may not have.
        self.ctx
            .replicas
            .wait(self.record_generation)
            .await
            .map_err(|why| Stop::Replicas(why, false))?;
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
                crate::telemetry::metrics::upload(o.bytes_sent, started.elapsed().as_secs_f64());
                tracing::info!(
                    bytes = plan.video_size,
                    secs = started.elapsed().as_secs_f64(),
                    retries = o.retries,
                    "Upload complete."
                );
                self.transition(
                    State::Processing,
                    &[
                        (Field::UploadDone, "1".into()),
                        (Field::UploadedMs, now_ms().to_string()),
                    ],
                    "",
                )
                .await?;
                self.post.note(Field::UploadDone, "1");
                self.post.note(Field::UploadedMs, now_ms().to_string());
                self.follow().await
            }
            Err(e) if e.is_upload_url_gone() => {
                // TikTok never got the whole file, and the URL is dead: this attempt cannot be
                // published, so a new init is safe.
                self.restart_attempt(&format!("the upload URL stopped working ({e})"))
                    .await
            }
            Err(e) => Err(Stop::TikTok(Box::new(e))),
        }
    }

    /// A `publish_id` exists: find out where TikTok is before doing anything.
    pub(super) async fn resume(&mut self) -> Result<Next, Stop> {
        let publish_id = self.post.publish_id().unwrap_or_default().to_string();
        self.slot(limits::STATUS).await?;
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
                if !self.post.upload_done() && self.sub.video.is_some() =>
            {
                let size = self.post.video_size() as u64;
                if status.uploaded_bytes.is_some_and(|b| size > 0 && b >= size) {
                    self.set(&[(Field::UploadDone, "1".into())]).await?;
                    self.post.note(Field::UploadDone, "1");
                    return self.follow().await;
                }
                let expires = self.post.upload_expires_ms();
                let sealed = self.post.upload_url_sealed().map(str::to_string);
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
    pub(super) async fn restart_attempt(&mut self, why: &str) -> Result<Next, Stop> {
        let old = self.post.publish_id().unwrap_or_default().to_string();
        let mut previous = self
            .post
            .previous_publish_ids()
            .unwrap_or_default()
            .to_string();
        if !previous.is_empty() {
            previous.push(',');
        }
        previous.push_str(&old);
        tracing::info!(publish_id = %old, why, "Starting a new attempt; the old one cannot be published.");
        self.transition(
            State::Queued,
            &[
                (Field::PublishId, String::new()),
                (Field::UploadUrlSealed, String::new()),
                (Field::UploadExpiresMs, String::new()),
                (Field::UploadDone, String::new()),
                (Field::InitStartedMs, String::new()),
                (Field::PreviousPublishIds, previous),
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
}
