//! Our Redis job store behind apalis: an implementation of apalis-core 1.0's `Backend` and
//! `BackendConfig` (DESIGN section 2; `apalis-custom-backend.md` for the measured prototype).
//!
//! - `poll_next` claims only as many posts as there are free slots (`max_inflight - held`), buffers them,
//!   and when nothing is due sleeps exactly until the next due time or lease expiry (capped by
//!   `idle_poll`). Redis errors are never returned (apalis ends a worker on a backend error): they are
//!   logged once and retried with backoff.
//! - The backend's middleware ([`AckLayer`]) sits outside every user layer, so it sees the handler's final
//!   verdict and ends the claim with it (done, or due again at a time) before the task future completes.
//! - A background task renews every held lease once per third of the lease and cancels the handler of a
//!   lease found lost.
//! - `poll_close` hands buffered claims back at once, so a graceful stop leaves nothing leased.
//!
//! `Kind = Ephemeral`: the job is a post id, decoded here, so no payload can poison the worker.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::{RandomId, TaskId};
use apalis_core::worker::context::WorkerContext;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder, Retryable};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;
use tower_service::Service;

use super::Next;
use super::store::{Claim, Claimed, JobStore};

/// Claims held by this worker, each with the token cancelled when its lease is found lost.
pub type Held = Arc<Mutex<HashMap<String, (Claim, CancellationToken)>>>;

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<String, (Claim, CancellationToken)>> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

/// Settings of the backend.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// The claim-token prefix of this worker.
    pub worker_id: String,
    /// Equal to the worker's concurrency: never claim more than can start.
    pub max_inflight: usize,
    /// Lease of each claim.
    pub lease: Duration,
    /// Longest idle sleep.
    pub idle_poll: Duration,
}

/// The backend (a `Backend` whose tasks are [`Claim`]s).
pub struct RedisBackend {
    store: JobStore,
    cfg: BackendSettings,
    held: Held,
    buffer: VecDeque<Claim>,
    claiming: Option<BoxFuture<'static, redis::RedisResult<Claimed>>>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Delays between claims while Redis is away; rebuilt when it answers again.
    backoff: ExponentialBackoff,
    down: bool,
    renewer: Option<tokio::task::JoinHandle<()>>,
    closing: Option<BoxFuture<'static, ()>>,
    heartbeats: Option<Arc<crate::health::Heartbeats>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("cfg", &self.cfg)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A backend over the store.
    pub fn new(store: JobStore, cfg: BackendSettings, held: Held) -> Self {
        Self {
            store,
            cfg,
            held,
            buffer: VecDeque::new(),
            claiming: None,
            sleep: None,
            backoff: claim_backoff(),
            down: false,
            renewer: None,
            closing: None,
            heartbeats: None,
        }
    }

    /// Beats on every renewal round (for the systemd watchdog).
    pub fn with_heartbeats(mut self, h: Arc<crate::health::Heartbeats>) -> Self {
        self.heartbeats = Some(h);
        self
    }

    fn start_renewer(&mut self) {
        if self.renewer.is_some() {
            return;
        }
        let store = self.store.clone();
        let held = self.held.clone();
        let lease = self.cfg.lease;
        let beats = self.heartbeats.clone();
        self.renewer = Some(tokio::spawn(async move {
            // At most every 5 s, so the watchdog hears from it even with long leases.
            let mut tick = tokio::time::interval((lease / 3).min(Duration::from_secs(5)));
            // A fixed cadence, not a backoff: a failed renewal is retried at the next tick, which
            // must come on time for the leases that still renew.
            loop {
                tick.tick().await;
                if let Some(h) = &beats {
                    h.workers();
                }
                let claims: Vec<Claim> = lock(&held).values().map(|(c, _)| c.clone()).collect();
                match store.renew(&claims, lease.as_millis() as u64).await {
                    Ok(lost) => {
                        for id in lost {
                            tracing::warn!(post_id = %id, "Lease lost; the handler stops and the new owner carries on.");
                            if let Some((_, token)) = lock(&held).get(&id) {
                                token.cancel();
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "Lease renewal failed; retrying."),
                }
            }
        }));
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}

/// Never produced: the backend swallows Redis errors (a backend error would end the apalis worker).
#[derive(Debug, thiserror::Error)]
#[error("job store error")]
pub struct BackendError;

impl Backend for RedisBackend {
    type Task = Task<Claim>;
    type Error = BackendError;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        self.start_renewer();
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        // A hand-written state machine, because `poll_next` is a poll function: backon's retry
        // wraps a future, so only its delay sequence ([`claim_backoff`]) is used here.
        loop {
            if let Some(claim) = self.buffer.pop_front() {
                lock(&self.held)
                    .insert(claim.id.clone(), (claim.clone(), CancellationToken::new()));
                let task = TaskBuilder::new(claim.clone())
                    .task_id(TaskId::from_string(claim.token))
                    .build();
                return Poll::Ready(Some(Ok(task)));
            }
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            if self.claiming.is_none() {
                let free = self
                    .cfg
                    .max_inflight
                    .saturating_sub(lock(&self.held).len())
                    .max(1);
                let store = self.store.clone();
                let worker = self.cfg.worker_id.clone();
                let lease = self.cfg.lease.as_millis() as u64;
                self.claiming = Some(Box::pin(
                    async move { store.claim(&worker, free, lease).await },
                ));
            }
            let Some(fut) = self.claiming.as_mut() else {
                continue;
            };
            let result = match fut.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            };
            self.claiming = None;
            match result {
                Ok(claimed) => {
                    if self.down {
                        tracing::info!("Workers reconnected to Redis.");
                        self.down = false;
                    }
                    self.backoff = claim_backoff();
                    if claimed.jobs.is_empty() {
                        let wait = claimed
                            .next_wake_ms
                            .map(|t| Duration::from_millis((t - claimed.now_ms).max(1) as u64))
                            .unwrap_or(self.cfg.idle_poll)
                            .min(self.cfg.idle_poll);
                        self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
                    } else {
                        self.buffer.extend(claimed.jobs);
                    }
                }
                Err(error) => {
                    if !self.down {
                        tracing::warn!(%error, "Workers cannot reach Redis; retrying with backoff.");
                        self.down = true;
                    }
                    // No max_times: the sequence never ends, 5 s is the fallback all the same.
                    let delay = self.backoff.next().unwrap_or(Duration::from_secs(5));
                    self.sleep = Some(Box::pin(tokio::time::sleep(delay)));
                }
            }
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        if self.closing.is_none() {
            if let Some(r) = self.renewer.take() {
                r.abort();
            }
            let store = self.store.clone();
            let mut release: Vec<Claim> = self.buffer.drain(..).collect();
            let pending_claim = self.claiming.take();
            self.closing = Some(Box::pin(async move {
                // A claim that was in flight when the stop came: take its result and hand it back too.
                if let Some(fut) = pending_claim
                    && let Ok(c) = fut.await
                {
                    release.extend(c.jobs);
                }
                let n = release.len();
                for claim in release {
                    let _ = store.finish(&claim, Some(-1)).await;
                }
                if n > 0 {
                    tracing::info!(released = n, "Buffered claims handed back.");
                }
            }));
        }
        match self.closing.as_mut().map(|f| f.as_mut().poll(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl BackendConfig for RedisBackend {
    type Args = Claim;
    type Id = RandomId;
    type Kind = Ephemeral;
    type Config = BackendSettings;
    type Layer = AckLayer;

    fn config(&self) -> &Self::Config {
        &self.cfg
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        AckLayer {
            store: self.store.clone(),
            held: self.held.clone(),
            lease: self.cfg.lease,
        }
    }
}

/// Ends each claim with the handler's verdict; outermost of the user layers.
#[derive(Clone)]
pub struct AckLayer {
    store: JobStore,
    held: Held,
    lease: Duration,
}

impl std::fmt::Debug for AckLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AckService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`AckLayer`].
#[derive(Clone, Debug)]
pub struct AckService<S> {
    inner: S,
    layer: AckLayer,
}

impl<S> Service<Task<Claim>> for AckService<S>
where
    S: Service<Task<Claim>, Response = Next> + Send,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError> + Send,
{
    type Response = Next;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<Next, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Claim>) -> Self::Future {
        let claim = task.args.clone();
        let fut = self.inner.call(task);
        let layer = self.layer.clone();
        Box::pin(async move {
            let result = fut.await.map_err(Into::into);
            let next = match &result {
                Ok(next) => *next,
                Err(error) => {
                    // A panic (caught by catch_panic) or another failure: look at the post again soon;
                    // the claim counter settles a post that keeps failing this way.
                    tracing::error!(post_id = %claim.id, %error, "Publish handler failed.");
                    Next::At(crate::db::now_ms() + 5_000)
                }
            };
            finish(&layer.store, &claim, next, layer.lease).await;
            lock(&layer.held).remove(&claim.id);
            result
        })
    }
}

/// Delays between claim attempts while Redis is away: 100 ms doubling to 5 s, without end.
fn claim_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .build()
}

/// Ends a claim, retrying the write while Redis is away (up to one lease; 50 ms doubling to 2 s).
pub async fn finish(store: &JobStore, claim: &Claim, next: Next, lease: Duration) {
    let requeue = match next {
        Next::Done => None,
        Next::At(t) => Some(t),
    };
    let deadline = tokio::time::Instant::now() + lease;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .without_max_times();
    let ended = (|| store.finish(claim, requeue))
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|_| tokio::time::Instant::now() < deadline)
        .notify(|error, _| tracing::debug!(%error, "Ending a claim failed; retrying."))
        .await;
    match ended {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(post_id = %claim.id, "Lease was lost before the claim ended; the new owner carries on.");
        }
        Err(error) => {
            tracing::warn!(post_id = %claim.id, %error, "Could not end the claim; its lease will expire and the post is looked at again.");
        }
    }
}
