//! Workers: claim due posts from the job store, run the publish handler, renew leases while it runs,
//! and end each claim with the handler's verdict (done, or due again at a time).
//!
//! A crashed process's claims come back when their leases expire (reaped by any worker's next claim);
//! a handler that panics leaves its lease to expire the same way, and a post whose claims pile up past
//! a limit is settled instead of being retried forever, so one bad post cannot stall a worker.

pub mod publish;
pub mod rate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::accounts::Accounts;
use crate::posts::Ledger;
use crate::queue::{Claim, JobStore};
use crate::tiktok::Client;

/// Worker settings (from `[worker]`).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Posts worked on at once.
    pub concurrency: usize,
    /// Lease of a claim; renewed every third of it while the handler runs.
    pub lease: Duration,
    /// Longest idle sleep between claims.
    pub idle_poll: Duration,
    /// Transient failures of one post before it is settled (failed, or unconfirmed once TikTok has it).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Interval between status fetches while following a post.
    pub status_interval: Duration,
    /// How long one claim follows a post's status before handing it back.
    pub follow_slice: Duration,
    /// How long after the upload a post may stay unsettled before it is marked unconfirmed.
    pub settle_timeout: Duration,
    /// Per-account daily budget of Direct Posts kept by the daemon (TikTok's cap is about 15).
    pub daily_budget: u32,
    /// How long SIGTERM waits for in-flight posts.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease: Duration::from_secs(30),
            idle_poll: Duration::from_millis(250),
            max_attempts: 8,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            status_interval: Duration::from_secs(3),
            follow_slice: Duration::from_secs(300),
            settle_timeout: Duration::from_secs(6 * 3600),
            daily_budget: 15,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Everything a handler needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The post ledger.
    pub ledger: Ledger,
    /// The job store.
    pub store: JobStore,
    /// Tokens.
    pub accounts: Accounts,
    /// TikTok.
    pub client: Client,
    /// Settings.
    pub cfg: WorkerConfig,
    /// Per-account rate limits shared through Redis.
    pub rate: rate::RateLimiter,
    /// Cancelled on SIGTERM: handlers hand their post back between steps.
    pub shutdown: CancellationToken,
}

/// What to do with a claim when the handler returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing more to do (the post is settled, or gone).
    Done,
    /// Work on it again at this time (ms since the epoch).
    At(i64),
}

/// Runs the claim loop until `shutdown`, then waits up to the grace period for in-flight posts.
pub async fn run(ctx: Arc<Ctx>, worker_id: String) {
    let cfg = ctx.cfg.clone();
    let sem = Arc::new(Semaphore::new(cfg.concurrency));
    // Held claims, each with a token the renewer cancels when the lease is found lost.
    let held: Arc<Mutex<HashMap<String, (Claim, CancellationToken)>>> = Arc::default();
    let lease_ms = cfg.lease.as_millis() as u64;

    // Lease renewer: one call per interval for every held claim.
    let renewer = {
        let ctx = ctx.clone();
        let held = held.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ctx.cfg.lease / 3);
            loop {
                tick.tick().await;
                let claims: Vec<Claim> = held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .map(|(c, _)| c.clone())
                    .collect();
                match ctx.store.renew(&claims, lease_ms).await {
                    Ok(lost) => {
                        for id in lost {
                            tracing::warn!(post_id = %id, "Lease lost; the handler stops and the new owner carries on.");
                            if let Some((_, token)) =
                                held.lock().unwrap_or_else(|p| p.into_inner()).get(&id)
                            {
                                token.cancel();
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "Lease renewal failed; retrying."),
                }
            }
        })
    };

    let mut backoff = Duration::from_millis(100);
    let mut down = false;
    loop {
        let permit = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let free = 1 + sem.available_permits();
        let claimed = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            c = ctx.store.claim(&worker_id, free, lease_ms) => c,
        };
        let claimed = match claimed {
            Ok(c) => {
                if down {
                    tracing::info!("Workers reconnected to Redis.");
                    down = false;
                }
                backoff = Duration::from_millis(100);
                c
            }
            Err(error) => {
                if !down {
                    tracing::warn!(%error, "Workers cannot reach Redis; retrying with backoff.");
                    down = true;
                }
                drop(permit);
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if claimed.jobs.is_empty() {
            drop(permit);
            let wait = claimed
                .next_wake_ms
                .map(|t| Duration::from_millis((t - claimed.now_ms).max(1) as u64))
                .unwrap_or(cfg.idle_poll)
                .min(cfg.idle_poll);
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let mut permits = vec![permit];
        for _ in 1..claimed.jobs.len() {
            match sem.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let mut jobs = claimed.jobs.into_iter();
        for permit in permits {
            let Some(claim) = jobs.next() else { break };
            let lost = CancellationToken::new();
            held.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(claim.id.clone(), (claim.clone(), lost.clone()));
            let ctx = ctx.clone();
            let held = held.clone();
            tokio::spawn(async move {
                let span = tracing::info_span!("post", post_id = %claim.id, account = tracing::field::Empty);
                let inner = {
                    let ctx = ctx.clone();
                    let claim = claim.clone();
                    tokio::spawn(tracing::Instrument::instrument(
                        async move { publish::handle(&ctx, &claim, lost).await },
                        span,
                    ))
                };
                match inner.await {
                    Ok(next) => finish(&ctx, &claim, next).await,
                    Err(e) => {
                        // A panic: leave the lease to expire so the post is looked at again; the claim
                        // counter settles a post that keeps crashing workers.
                        tracing::error!(post_id = %claim.id, error = %e, "Publish handler panicked.");
                    }
                }
                held.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&claim.id);
                drop(permit);
            });
        }
        // Claims we had no permit for (should not happen: n = free permits) go back at once.
        for claim in jobs {
            finish(&ctx, &claim, Next::At(-1)).await;
        }
    }
    // Shutdown: wait for in-flight handlers (they hand their posts back between steps).
    let all = cfg.concurrency as u32;
    if tokio::time::timeout(cfg.shutdown_grace, sem.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "Shutdown grace period over with posts still in flight; their leases will expire and another worker resumes them."
        );
    }
    renewer.abort();
}

/// Ends a claim, retrying the write while Redis is away (up to one lease).
async fn finish(ctx: &Ctx, claim: &Claim, next: Next) {
    let requeue = match next {
        Next::Done => None,
        Next::At(t) => Some(t),
    };
    let deadline = tokio::time::Instant::now() + ctx.cfg.lease;
    let mut delay = Duration::from_millis(50);
    loop {
        match ctx.store.finish(claim, requeue).await {
            Ok(true) => return,
            Ok(false) => {
                tracing::warn!(post_id = %claim.id, "Lease was lost before the claim ended; the new owner carries on.");
                return;
            }
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%error, "Ending a claim failed; retrying.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(error) => {
                tracing::warn!(post_id = %claim.id, %error, "Could not end the claim; its lease will expire and the post is looked at again.");
                return;
            }
        }
    }
}

/// Exponential backoff with equal jitter: `base * 2^(attempt-1)`, capped, in `[d/2, d]`.
pub fn backoff(cfg: &WorkerConfig, attempt: u32) -> Duration {
    use rand::Rng;
    let exp = cfg
        .backoff_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let d = exp.min(cfg.backoff_max).as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(d / 2..=d.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let cfg = WorkerConfig {
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(60),
            ..Default::default()
        };
        for _ in 0..100 {
            let a1 = backoff(&cfg, 1);
            assert!(
                a1 >= Duration::from_secs(1) && a1 <= Duration::from_secs(2),
                "{a1:?}"
            );
            let a3 = backoff(&cfg, 3);
            assert!(
                a3 >= Duration::from_secs(4) && a3 <= Duration::from_secs(8),
                "{a3:?}"
            );
            let big = backoff(&cfg, 40);
            assert!(
                big >= Duration::from_secs(30) && big <= Duration::from_secs(60),
                "{big:?}"
            );
        }
    }
}
