//! Workers: apalis runs the publish handler over our Redis job store (`queue::backend`): claims due
//! posts, renews their leases while the handler runs, and ends each claim with the handler's verdict
//! (done, or due again at a time). apalis brings the concurrency limit, panic catching and graceful
//! shutdown.
//!
//! A crashed process's claims come back when their leases expire (reaped by any worker's next claim);
//! a handler that panics leaves its lease to expire the same way, and a post whose claims pile up past
//! a limit is settled instead of being retried forever, so one bad post cannot stall a worker.

mod probe_guard;
mod publish;
pub mod rate;
mod video;
pub mod warmup;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::accounts::Accounts;
use crate::config::WorkerConfig;
use crate::posts::Ledger;
use crate::queue::backend::{BackendSettings, Held, RedisBackend};
use crate::queue::{Claim, JobStore, Next};
use crate::tiktok::Client;

/// Everything a handler needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The post ledger.
    pub ledger: Ledger,
    /// The accounts' calendars (a paused account's posts wait).
    pub calendars: crate::planner::Calendars,
    /// The job store.
    pub store: JobStore,
    /// Tokens.
    pub accounts: Accounts,
    /// TikTok.
    pub client: Client,
    /// Settings.
    pub cfg: WorkerConfig,
    /// The video policy, applied again just before upload.
    pub video: crate::config::VideoSettings,
    /// How new accounts are ramped in.
    pub warmup: crate::config::WarmupSettings,
    /// Per-account rate limits shared through Redis.
    pub rate: rate::RateLimiter,
    /// Cancelled on SIGTERM: handlers hand their post back between steps.
    pub shutdown: CancellationToken,
    /// Liveness of the main loops (for the systemd watchdog).
    pub heartbeats: Arc<crate::health::Heartbeats>,
    /// Waits for `[redis] min_replica_acks` replicas before the init and the first chunk.
    pub replicas: Arc<crate::db::replicas::ReplicaAcks>,
}

/// Runs the apalis worker over our job store until `shutdown`, then waits up to the grace period for
/// posts in flight (they hand themselves back between steps).
pub async fn run(ctx: Arc<Ctx>, worker_id: String) {
    use apalis::layers::WorkerBuilderExt;
    use apalis_core::worker::builder::WorkerBuilder;

    let held: Held = Arc::default();
    let backend = RedisBackend::new(
        ctx.store.clone(),
        BackendSettings {
            worker_id: worker_id.clone(),
            max_inflight: ctx.cfg.concurrency,
            lease: ctx.cfg.lease,
            idle_poll: ctx.cfg.idle_poll,
        },
        held.clone(),
    )
    .with_heartbeats(ctx.heartbeats.clone());
    let worker = WorkerBuilder::new(worker_id)
        .backend(backend)
        .data(ctx.clone())
        .data(held)
        .layer(apalis::layers::catch_panic::CatchPanicLayer::with_panic_handler(on_panic))
        .concurrency(ctx.cfg.concurrency)
        .build(handle_task);
    let shutdown = ctx.shutdown.clone();
    let stop = shutdown.clone();
    let running = worker.run_until(async move {
        stop.cancelled().await;
        Ok::<(), std::io::Error>(())
    });
    let grace = ctx.cfg.shutdown_grace;
    tokio::select! {
        r = running => {
            if let Err(error) = r {
                tracing::error!(%error, "The worker stopped with an error.");
            }
        }
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("Shutdown grace period over with posts still in flight; their leases will expire and another worker resumes them.");
        }
    }
}

/// Turns a handler panic into an error (the ack layer then hands the post back for a later look).
fn on_panic(panic: &Box<dyn std::any::Any + Send>) -> apalis_core::error::AbortError {
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    apalis_core::error::AbortError::new(format!("handler panicked: {msg}"))
}

/// The apalis task function: one claimed post.
async fn handle_task(
    claim: Claim,
    ctx: apalis_core::task::data::Data<Arc<Ctx>>,
    held: apalis_core::task::data::Data<Held>,
) -> Result<Next, apalis_core::error::BoxDynError> {
    let lost = held
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&claim.id)
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    // `account` and `publish_id` are recorded as soon as they are known, so every line of the post's
    // work carries them (JSON logs: in the `span` object).
    let span = tracing::info_span!(
        "post",
        post_id = %claim.id,
        account = tracing::field::Empty,
        publish_id = tracing::field::Empty
    );
    Ok(tracing::Instrument::instrument(publish::handle(&ctx, &claim, lost), span).await)
}

/// Exponential backoff with equal jitter: `base * 2^(attempt-1)`, capped, in `[d/2, d]`.
///
/// Not `backon`: this is the delay before a post's next attempt, which is a new claim (often by another
/// worker, after a hand-back or a restart), with the attempt number kept in the ledger; `backon` drives
/// a retry loop inside one call and cannot span claims.
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
