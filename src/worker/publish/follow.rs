//! Following an attempt TikTok is processing: status polls until it settles (published, in the inbox,
//! failed) or the claim's slice ends, then the post is handed back.
//!
//! Safe to repeat and to interrupt: polling only reads TikTok's status, every settling write is fenced
//! by the lease, and a webhook that settled the post meanwhile is noticed before each poll. A post that
//! stays unsettled long after its upload ends `unconfirmed`, never `failed`: TikTok may still publish it.

use super::{Job, Stop, public_id, stats};
use crate::db::now_ms;
use crate::posts::{Field, State};
use crate::queue::Next;
use crate::tiktok::PrivacyLevel;
use crate::tiktok::StatusKind;
use crate::tiktok::limits;
use crate::tiktok::status::{fail_reason_allows_retry, fail_reason_text, post_url};

impl Job<'_> {
    /// Polls status within the per-account budget until the post settles, or hands it back.
    pub(super) async fn follow(&mut self) -> Result<Next, Stop> {
        let publish_id = self.post.publish_id().unwrap_or_default().to_string();
        if self.post.current() != Some(State::Processing) {
            self.transition(State::Processing, &[], "").await?;
            self.post.note(Field::State, State::Processing.as_str());
        }
        let slice_end = tokio::time::Instant::now() + self.ctx.cfg.follow_slice;
        let client = self.ctx.client.clone();
        // Polls start at the configured interval and slow down by half each time (up to ten times the
        // interval), so long processing does not spend the account's 30 status fetches a minute.
        // Not `backon`: this is a poll paced by TikTok's status budget, not a retry of a failure; each
        // look that fails is a stop the verdict decides about.
        let mut interval = self.ctx.cfg.status_interval;
        let max_interval = self.ctx.cfg.status_interval * 10;
        loop {
            // TikTok needs time to process: wait before each look, not after it.
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.ctx.shutdown.cancelled() => return Err(Stop::Shutdown),
                _ = self.lost.cancelled() => return Err(Stop::LeaseLost),
            }
            interval = (interval * 3 / 2).min(max_interval);
            // A webhook may have settled the post meanwhile.
            if let Ok(Some(now)) = self.ctx.ledger.state_of(self.id()).await
                && now.is_terminal()
            {
                tracing::info!(
                    state = %now,
                    "Post settled by a webhook ahead of polling."
                );
                // A published public post with its id is read back later (`stats.rs`).
                if now == State::Published
                    && let Ok(Some(p)) = self.ctx.ledger.get(self.id()).await
                    && p.post_id().is_some()
                {
                    return Ok(stats::after_publish(self.ctx, &p, p.published_ms()));
                }
                return Ok(Next::Done);
            }
            self.slot(limits::STATUS).await?;
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
                    let published_ms = now_ms();
                    let mut fields = vec![(Field::PublishedMs, published_ms.to_string())];
                    let mut msg = String::new();
                    if let Some(id) = s.post_ids.first() {
                        fields.push((Field::PostId, id.to_string()));
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
                            fields.push((Field::Url, url));
                        }
                    }
                    let to = if self.sub.draft {
                        State::Inbox
                    } else {
                        State::Published
                    };
                    self.transition(to, &fields, &msg).await?;
                    tracing::info!(publish_id = %publish_id, "Post published.");
                    if self.awaits_public_id(s.post_ids.is_empty()) {
                        // Public posts get their id after moderation (usually a minute, sometimes
                        // hours): look again later, without touching the state.
                        return Ok(Next::At(now_ms() + public_id::recheck_ms(self.ctx)));
                    }
                    if !s.post_ids.is_empty() && !self.sub.draft {
                        // How the post did: read back at about 1 h, 1 d and 7 d.
                        return Ok(stats::after_publish(self.ctx, &self.post, published_ms));
                    }
                    return Ok(Next::Done);
                }
                StatusKind::SendToUserInbox if self.sub.draft => {
                    self.transition(
                        State::Inbox,
                        &[(Field::PublishedMs, now_ms().to_string())],
                        "",
                    )
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
            let uploaded = self.post.uploaded_ms().max(self.post.init_started_ms());
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
}
