//! `tiktok-poster run`: wires ingest, workers, the refresher, the reconciler and the HTTP server
//! together and runs them until SIGTERM. Redis trouble never ends the process: it waits and
//! reconnects. Only wiring lives here: each part is built in the folder its name promises
//! (`db::startup`, `queue::identity`, `queue::reconcile`, `accounts::refresher`), and the settings
//! become token keys and a TikTok client in `settings`.

mod settings;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::accounts::Accounts;
use crate::accounts::refresher::refresh_loop;
use crate::config::{ConfigError, Settings};
use crate::db::Keys;
use crate::db::startup::{check_cluster, check_redis, connect_redis};
use crate::ingest::Ingest;
use crate::planner::Calendars;
use crate::posts::Ledger;
use crate::queue::JobStore;
use crate::queue::identity::{hostname, take_identity};
use crate::queue::reconcile::reconcile_loop;
use crate::tiktok::Client;
use crate::worker::{self, Ctx, rate::RateLimiter};

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (key, previous_key) = settings.token_keys()?;
    let client = Client::new(settings.client_config()?).context("building the TikTok client")?;
    if !settings.has_credentials() {
        tracing::warn!(api_base = %settings.tiktok.api_base, "No TikTok client key and secret configured; only a simulator will accept requests.");
    }
    for problem in crate::media::file::resolve_dirs(&settings.video.allowed_dirs).1 {
        tracing::warn!(%problem, "A directory of [video] allowed_dirs is unusable; videos there are refused.");
    }
    // Bound first and answering from now on: 503 with the reason until the daemon is ready.
    let listeners = crate::http::listeners::Listeners::bind(&settings.http, &shutdown).await?;
    let redis = crate::db::Redis::new(settings.redis_target());
    let give_up = Duration::from_secs(settings.redis.give_up_after_secs);
    let Some(conn) = connect_redis(&redis, give_up, &shutdown)
        .await
        .map_err(not_connected)?
    else {
        return Ok(());
    };
    listeners.starting(true, "starting: taking this daemon's worker identity");
    let Some(ingest_conn) = connect_redis(&redis, give_up, &shutdown)
        .await
        .map_err(not_connected)?
    else {
        return Ok(());
    };
    check_redis(conn.clone(), settings.redis.allow_eviction)
        .await
        .map_err(|e| ConfigError(e.0))?;
    check_cluster(conn.clone(), &settings.redis.namespace)
        .await
        .map_err(|e| ConfigError(e.0))?;
    let keys = Keys::new(&settings.redis.namespace);
    let ledger = Ledger::new(conn.clone(), keys.clone());
    let store = JobStore::new(conn.clone(), keys.clone());
    let accounts =
        Accounts::new(conn.clone(), keys.clone(), key, client.clone()).with_previous(previous_key);
    match accounts.key_mismatches().await {
        Ok(list) => {
            let configured = accounts.key_ids().join(" and ");
            for (account, found) in list {
                tracing::error!(
                    %account,
                    sealed_with = %found,
                    configured = %configured,
                    "The account's tokens were sealed with token key {found}, which is not configured (configured: {configured}); its posts wait. Configure that key as tokens.encryption_key_file (or tokens.previous_key_file and run `tiktok-poster keys rotate`), or connect the account again."
                );
            }
        }
        Err(error) => tracing::warn!(%error, "Could not check the accounts' token keys."),
    }
    let worker_id = if settings.worker.id.is_empty() {
        hostname()
    } else {
        settings.worker.id.clone()
    };
    let held = format!(
        "waiting for worker id {worker_id:?}: another daemon with this [worker] id is running; give each daemon its own [worker] id"
    );
    let on_held = || listeners.starting(true, &held);
    let Some(identity) = take_identity(conn.clone(), &keys, &worker_id, &shutdown, on_held).await
    else {
        return Ok(());
    };
    match crate::queue::identity::reclaim_own(conn.clone(), &keys, &worker_id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            count = n,
            "Took back the posts this daemon's previous run held."
        ),
        Err(error) => {
            tracing::warn!(%error, "Could not take back the previous run's posts; their leases will expire.")
        }
    }
    let heartbeats = Arc::new(crate::health::Heartbeats::default());
    let marker = crate::health::claim_marker(&mut conn.clone(), &keys)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read the namespace's marker: {}",
                crate::db::explain(&e)
            )
        })?;
    let mut watch_task = tokio::spawn(crate::health::watch_redis(
        conn.clone(),
        keys.clone(),
        marker,
        heartbeats.clone(),
        crate::health::WatchLimits {
            worker: worker_id.clone(),
            give_up,
            want_replicas: settings.redis.min_replica_acks,
        },
        shutdown.clone(),
    ));
    let calendars = Calendars::new(
        ledger.clone(),
        accounts.clone(),
        settings.worker.daily_post_budget,
        settings.warmup.clone(),
    );
    match ledger.index_held_once().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            count = n,
            "Indexed the posts recorded before calendars existed."
        ),
        Err(error) => {
            tracing::warn!(%error, "Could not index the earlier posts for the calendar; will try at the next start.")
        }
    }
    match crate::worker::warmup::backfill_once(&ledger, &accounts).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            accounts = n,
            "Read the accounts' first posts for the warm-up from the posts recorded before it."
        ),
        Err(error) => {
            tracing::warn!(%error, "Could not read the accounts' first posts for the warm-up; will try at the next start.")
        }
    }
    let ctx = Arc::new(Ctx {
        calendars: calendars.clone(),
        ledger: ledger.clone(),
        store: store.clone(),
        accounts: accounts.clone(),
        client,
        cfg: settings.worker.worker_config(),
        video: settings.video.clone(),
        warmup: settings.warmup.clone(),
        rate: RateLimiter::new(conn.clone(), keys.clone()),
        shutdown: shutdown.clone(),
        heartbeats: heartbeats.clone(),
        replicas: Arc::new(crate::db::replicas::ReplicaAcks::new(
            redis.clone(),
            &keys,
            &worker_id,
            settings.redis.min_replica_acks,
            settings.redis.replica_ack_timeout_ms,
        )),
    });

    let ingest = Ingest::new(
        ingest_conn,
        keys.clone(),
        calendars.clone(),
        accounts.clone(),
        worker_id.clone(),
        settings.video.clone(),
    )
    .with_heartbeats(heartbeats.clone());
    let ingest_task = tokio::spawn(ingest.run(shutdown.clone()));
    let workers_task = tokio::spawn(worker::run(ctx.clone(), worker_id.clone()));
    let refresher_task = tokio::spawn(refresh_loop(
        accounts.clone(),
        Duration::from_millis(settings.tokens.refresh_check_ms),
        settings.tokens.reconnect_warning_days,
        shutdown.clone(),
    ));
    let reconciler_task = tokio::spawn(reconcile_loop(
        ledger.clone(),
        store.clone(),
        shutdown.clone(),
    ));
    let _ = crate::telemetry::metrics::handle();
    listeners.ready(crate::http::AppState {
        accounts,
        keys: keys.clone(),
        settings: Arc::new(settings.clone()),
        store,
        ledger: ledger.clone(),
        calendars,
        heartbeats: heartbeats.clone(),
    });
    tracing::info!(worker = %worker_id, concurrency = settings.worker.concurrency, "Daemon running.");
    notify_ready_and_watch(heartbeats, shutdown.clone());
    let gave_up = tokio::select! {
        _ = shutdown.cancelled() => None,
        r = &mut watch_task => match r {
            Ok(gave_up) => gave_up,
            // The watch panicked: without it nothing notices a lost Redis; stop and be restarted.
            Err(_) => Some(crate::db::Unavailable(
                "the Redis watch stopped unexpectedly; exiting with status 69 so that systemd starts the daemon again".into(),
            )),
        },
    };
    if let Some(why) = &gave_up {
        tracing::error!(problem = %why.0, "Giving up on Redis: stopping so that systemd starts the daemon again.");
        shutdown.cancel();
    }
    tracing::info!("Shutting down: no new work; posts in flight finish or are handed back.");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if gave_up.is_some() {
        // Without Redis a post cannot be handed back anyway: its lease expires and another daemon
        // (or this one, restarted) takes it; do not wait long for workers stuck on Redis.
        let _ = tokio::time::timeout(Duration::from_secs(30), workers_task).await;
    } else {
        let _ = workers_task.await;
    }
    identity.abort();
    let mut c = conn.clone();
    let _: redis::RedisResult<i32> = redis::cmd("DEL")
        .arg(keys.worker(&worker_id))
        .query_async(&mut c)
        .await;
    let _ = ingest_task.await;
    reconciler_task.abort();
    refresher_task.abort();
    watch_task.abort();
    listeners.stopped().await;
    tracing::info!("Stopped.");
    match gave_up {
        Some(why) => Err(why.into()),
        None => Ok(()),
    }
}

/// A start-up connection that did not come, as the error `run` returns: a configuration error
/// (exit 78) or no usable primary (exit 69).
fn not_connected(e: crate::db::startup::NotConnected) -> anyhow::Error {
    match e {
        crate::db::startup::NotConnected::Refused(r) => ConfigError(r.0).into(),
        crate::db::startup::NotConnected::Unavailable(u) => u.into(),
    }
}

/// Tells systemd the daemon is ready (Redis reached, workers running) and, when the unit has a
/// watchdog, pings it at half its interval while every main loop is alive. Outside systemd this does
/// nothing.
fn notify_ready_and_watch(heartbeats: Arc<crate::health::Heartbeats>, shutdown: CancellationToken) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let Some(interval) = sd_notify::watchdog_enabled().filter(|d| !d.is_zero()) else {
        return;
    };
    tokio::spawn(async move {
        let mut silent = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval / 2) => {}
            }
            // The loops beat at least every few seconds (ingest blocks 1 s, the renewer ticks ≤ 5 s).
            if heartbeats.healthy(interval.max(Duration::from_secs(10))) {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                silent = false;
            } else if !silent {
                tracing::error!(
                    "A main loop has stopped going round; the watchdog is no longer pinged, so systemd will restart the daemon."
                );
                silent = true;
            }
        }
    });
}
