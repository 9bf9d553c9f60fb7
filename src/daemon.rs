//! `tiktok-poster run`: wires ingest, workers, the reconciler and the HTTP server together and runs
//! them until SIGTERM. Redis trouble never ends the process: it waits and reconnects.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::accounts::{Accounts, TokenKey};
use crate::config::{ConfigError, Settings};
use crate::db::{Keys, random_id};
use crate::posts::{Ledger, state};
use crate::queue::JobStore;
use crate::queue::ingest::Ingest;
use crate::tiktok::Client;
use crate::worker::{self, Ctx, rate::RateLimiter};

/// Connects to Redis, waiting (and saying so once) while it is unreachable.
pub async fn connect_redis(
    url: &str,
    shutdown: &CancellationToken,
) -> Option<redis::aio::ConnectionManager> {
    let mut delay = Duration::from_millis(200);
    let mut said = false;
    loop {
        match crate::db::connect(url).await {
            Ok(c) => {
                if said {
                    tracing::info!("Redis is reachable.");
                }
                return Some(c);
            }
            Err(error) => {
                if !said {
                    tracing::warn!(%error, "Redis is not reachable; waiting for it.");
                    said = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let key = TokenKey::load(&settings.tokens.encryption_key_file)
        .map_err(|e| ConfigError(format!("tokens.encryption_key_file: {e}")))?;
    let client = Client::new(settings.client_config()?).context("building the TikTok client")?;
    if !settings.has_credentials() {
        tracing::warn!(api_base = %settings.tiktok.api_base, "No TikTok client key and secret configured; only a simulator will accept requests.");
    }
    let listener = tokio::net::TcpListener::bind(&settings.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} ([http] listen)", settings.http.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "HTTP server listening.");
    let Some(conn) = connect_redis(&settings.redis.url, &shutdown).await else {
        return Ok(());
    };
    let Some(ingest_conn) = connect_redis(&settings.redis.url, &shutdown).await else {
        return Ok(());
    };
    let keys = Keys::new(&settings.redis.namespace);
    let ledger = Ledger::new(conn.clone(), keys.clone());
    let store = JobStore::new(conn.clone(), keys.clone());
    let accounts = Accounts::new(conn.clone(), keys.clone(), key, client.clone());
    let worker_id = format!("{}-{}", hostname(), &random_id()[..8]);
    let ctx = Arc::new(Ctx {
        ledger: ledger.clone(),
        store: store.clone(),
        accounts: accounts.clone(),
        client,
        cfg: settings.worker.worker_config(),
        rate: RateLimiter::new(conn.clone(), keys.clone()),
        shutdown: shutdown.clone(),
    });

    let ingest = Ingest::new(
        ingest_conn,
        keys.clone(),
        ledger.clone(),
        accounts.clone(),
        worker_id.clone(),
    );
    let ingest_task = tokio::spawn(ingest.run(shutdown.clone()));
    let workers_task = tokio::spawn(worker::run(ctx.clone(), worker_id.clone()));
    let reconciler_task = tokio::spawn(reconcile_loop(
        ledger.clone(),
        store.clone(),
        shutdown.clone(),
    ));
    let app = crate::http::router(crate::http::AppState {
        accounts,
        keys,
        settings: Arc::new(settings.clone()),
        store,
    });
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await;
    });
    tracing::info!(worker = %worker_id, concurrency = settings.worker.concurrency, "Daemon running.");
    shutdown.cancelled().await;
    tracing::info!("Shutting down: no new work; posts in flight finish or are handed back.");
    let _ = workers_task.await;
    let _ = ingest_task.await;
    reconciler_task.abort();
    let _ = http_task.await;
    tracing::info!("Stopped.");
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// Re-queues every post that is neither settled nor queued nor leased (a lost queue entry never loses a
/// post). Runs once at start and then every 30 seconds.
async fn reconcile_loop(ledger: Ledger, store: JobStore, shutdown: CancellationToken) {
    loop {
        if let Err(error) = reconcile_once(&ledger, &store).await {
            tracing::debug!(%error, "Reconciler pass failed; will try again.");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// One reconciler pass; returns how many posts were re-queued.
pub async fn reconcile_once(ledger: &Ledger, _store: &JobStore) -> redis::RedisResult<usize> {
    const REQUEUE: &str = r#"
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 0 end
if st == 'published' or st == 'inbox' or st == 'failed' or st == 'cancelled' or st == 'unconfirmed' then return 0 end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) or redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
local due = tonumber(redis.call('HGET', KEYS[1], 'deferred_until_ms') or '0') or 0
local d2 = tonumber(redis.call('HGET', KEYS[1], 'due_ms') or '0') or 0
if d2 > due then due = d2 end
redis.call('ZADD', KEYS[2], due, ARGV[1])
return 1
"#;
    let keys = ledger.keys().clone();
    let mut conn = ledger.conn();
    let script = redis::Script::new(REQUEUE);
    let mut cursor: u64 = 0;
    let mut requeued = 0;
    loop {
        let (next, items): (u64, Vec<String>) = redis::cmd("ZSCAN")
            .arg(keys.posts())
            .arg(cursor)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await?;
        for (i, id) in items.iter().enumerate() {
            if i % 2 == 1 {
                continue;
            }
            let n: i32 = script
                .key(keys.post(id))
                .key(keys.due())
                .key(keys.lease())
                .arg(id)
                .invoke_async(&mut conn)
                .await?;
            if n == 1 {
                tracing::info!(post_id = %id, "Reconciler re-queued a post that had no queue entry.");
                requeued += 1;
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let _ = state::ALL;
    Ok(requeued)
}
