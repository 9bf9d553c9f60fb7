//! `tiktok-poster run`: wires ingest, workers, the reconciler and the HTTP server together and runs
//! them until SIGTERM. Redis trouble never ends the process: it waits and reconnects.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::accounts::Accounts;
use crate::config::{ConfigError, Settings};
use crate::db::{Keys, random_id};
use crate::posts::Ledger;
use crate::queue::JobStore;
use crate::queue::ingest::Ingest;
use crate::tiktok::Client;
use crate::worker::{self, Ctx, rate::RateLimiter};

/// Connects to Redis, waiting (and saying so once) while it is unreachable. Credentials Redis refuses
/// are a configuration error, not an outage to wait out.
pub async fn connect_redis(
    url: &str,
    shutdown: &CancellationToken,
) -> Result<Option<redis::aio::ConnectionManager>, ConfigError> {
    let mut delay = Duration::from_millis(200);
    let mut said = false;
    loop {
        let attempt = async {
            let mut c = crate::db::connect(url).await?;
            redis::cmd("PING").query_async::<()>(&mut c).await?;
            Ok::<_, redis::RedisError>(c)
        };
        match attempt.await {
            Ok(c) => {
                if said {
                    tracing::info!("Redis is reachable.");
                }
                return Ok(Some(c));
            }
            Err(error) if crate::db::is_auth_error(&error) => {
                return Err(ConfigError(format!(
                    "Redis refused the credentials ({}): put the right user and password in [redis] url (redis://USER:PASSWORD@host:port), then start again",
                    error.code().unwrap_or("authentication failed")
                )));
            }
            Err(error) => {
                if !said {
                    tracing::warn!(error = %crate::db::explain(&error), "Redis is not usable; waiting for it.");
                    said = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

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
    let Some(conn) = connect_redis(&settings.redis.url, &shutdown).await? else {
        return Ok(());
    };
    listeners.starting(true, "starting: taking this daemon's worker identity");
    let Some(ingest_conn) = connect_redis(&settings.redis.url, &shutdown).await? else {
        return Ok(());
    };
    check_redis(conn.clone(), settings.redis.allow_eviction).await?;
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
    match reclaim_own(conn.clone(), &keys, &worker_id).await {
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
    let watch_task = tokio::spawn(crate::health::watch_redis(
        conn.clone(),
        keys.clone(),
        worker_id.clone(),
        marker,
        heartbeats.clone(),
        shutdown.clone(),
    ));
    let ctx = Arc::new(Ctx {
        ledger: ledger.clone(),
        store: store.clone(),
        accounts: accounts.clone(),
        client,
        cfg: settings.worker.worker_config(),
        video: settings.video.clone(),
        rate: RateLimiter::new(conn.clone(), keys.clone()),
        shutdown: shutdown.clone(),
        heartbeats: heartbeats.clone(),
    });

    let ingest = Ingest::new(
        ingest_conn,
        keys.clone(),
        ledger.clone(),
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
    let _ = crate::telemetry_metrics::handle();
    listeners.ready(crate::http::AppState {
        accounts,
        keys: keys.clone(),
        settings: Arc::new(settings.clone()),
        store,
        ledger: ledger.clone(),
        heartbeats: heartbeats.clone(),
    });
    tracing::info!(worker = %worker_id, concurrency = settings.worker.concurrency, "Daemon running.");
    notify_ready_and_watch(heartbeats, shutdown.clone());
    shutdown.cancelled().await;
    tracing::info!("Shutting down: no new work; posts in flight finish or are handed back.");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let _ = workers_task.await;
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
    Ok(())
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

/// Refuses an eviction policy that can drop posts (unless allowed) and warns when Redis keeps nothing
/// on disk. Managed Redis services that hide CONFIG get a warning instead.
async fn check_redis(
    mut conn: redis::aio::ConnectionManager,
    allow_eviction: bool,
) -> Result<(), ConfigError> {
    let policy: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(&mut conn)
        .await;
    match policy {
        Ok(v) if v.len() == 2 => {
            let p = &v[1];
            if p.starts_with("allkeys-") {
                if allow_eviction {
                    tracing::warn!(policy = %p, "Redis may evict keys (allowed by [redis] allow_eviction); an evicted post is lost.");
                } else {
                    return Err(ConfigError(format!(
                        "Redis maxmemory-policy is {p}: it may evict posts and tokens. Set `maxmemory-policy noeviction` in redis.conf (or `CONFIG SET maxmemory-policy noeviction`), or set [redis] allow_eviction = true to accept the risk"
                    )));
                }
            }
        }
        _ => tracing::warn!(
            "Cannot read Redis's maxmemory-policy (CONFIG is disabled?); make sure it is noeviction."
        ),
    }
    let info: redis::RedisResult<String> = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut conn)
        .await;
    let save: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query_async(&mut conn)
        .await;
    if let Ok(info) = info {
        let aof = info.lines().any(|l| l.trim() == "aof_enabled:1");
        let rdb = save
            .map(|v| v.get(1).is_some_and(|s| !s.trim().is_empty()))
            .unwrap_or(true);
        if !aof && !rdb {
            tracing::warn!(
                "Redis keeps nothing on disk (no AOF, no snapshots): a Redis restart loses every post. Enable `appendonly yes`."
            );
        } else if !aof {
            tracing::warn!(
                "Redis has no append-only file: a crash loses the posts since the last snapshot. `appendonly yes` is recommended."
            );
        }
    }
    Ok(())
}

/// How long a daemon's identity outlives its last heartbeat.
const IDENTITY_TTL_MS: u64 = 10_000;

/// Takes this daemon's identity in Redis (waiting while another live daemon holds it, which happens
/// only when two daemons are given the same id) and keeps it alive; returns the heartbeat task.
async fn take_identity(
    mut conn: redis::aio::ConnectionManager,
    keys: &Keys,
    id: &str,
    shutdown: &CancellationToken,
    on_held: impl Fn(),
) -> Option<tokio::task::JoinHandle<()>> {
    let key = keys.worker(id);
    let host = hostname();
    let token = format!("{host}|{}|{}", std::process::id(), random_id());
    let mut said = false;
    loop {
        let got: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(IDENTITY_TTL_MS)
            .query_async(&mut conn)
            .await;
        match got {
            Ok(Some(_)) => break,
            Ok(None) if holder_is_dead(&mut conn, &key, &host).await => {
                // The holder ran on this host and its process is gone (a crash): take over at once.
                const TAKE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0";
                let old: Option<String> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(None);
                if let Some(old) = old {
                    let taken: i32 = redis::Script::new(TAKE)
                        .key(&key)
                        .arg(old)
                        .arg(&token)
                        .arg(IDENTITY_TTL_MS)
                        .invoke_async(&mut conn)
                        .await
                        .unwrap_or(0);
                    if taken == 1 {
                        break;
                    }
                }
            }
            Ok(None) if !said => {
                on_held();
                tracing::warn!(
                    worker = id,
                    "Another daemon with this worker id is alive (or just stopped); waiting for its identity to lapse. Give each daemon its own [worker] id."
                );
                said = true;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "Cannot take the worker identity; retrying."),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    Some(tokio::spawn(async move {
        const BEAT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] or redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end return 0";
        let script = redis::Script::new(BEAT);
        loop {
            tokio::time::sleep(Duration::from_millis(IDENTITY_TTL_MS / 3)).await;
            let r: redis::RedisResult<i32> = script
                .key(&key)
                .arg(&token)
                .arg(IDENTITY_TTL_MS)
                .invoke_async(&mut conn)
                .await;
            if let Ok(0) = r {
                tracing::error!(
                    "Another daemon took this daemon's worker id; give each daemon its own [worker] id."
                );
            }
        }
    }))
}

/// True when the identity's holder ran on this host and its process no longer exists.
async fn holder_is_dead(conn: &mut redis::aio::ConnectionManager, key: &str, host: &str) -> bool {
    let value: Option<String> = redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap_or(None);
    let Some(value) = value else { return false };
    let mut parts = value.split('|');
    match (
        parts.next(),
        parts.next().and_then(|p| p.parse::<u32>().ok()),
    ) {
        (Some(h), Some(pid)) if h == host => {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

/// Hands back every lease held under this worker id by a previous run (which is dead: the identity
/// was free). Returns how many posts were re-queued.
pub async fn reclaim_own(
    mut conn: redis::aio::ConnectionManager,
    keys: &Keys,
    id: &str,
) -> redis::RedisResult<usize> {
    const RECLAIM: &str = r#"
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[1] + 499)
local n = 0
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, pid in ipairs(ids) do
  local owner = redis.call('HGET', ARGV[2] .. pid, 'lease_owner')
  if owner and string.sub(owner, 1, string.len(ARGV[3])) == ARGV[3] then
    redis.call('ZREM', KEYS[1], pid)
    redis.call('HDEL', ARGV[2] .. pid, 'lease_owner')
    redis.call('ZADD', KEYS[2], now, pid)
    n = n + 1
  end
end
return {#ids, n}
"#;
    let script = redis::Script::new(RECLAIM);
    let prefix = format!("{id}:");
    let mut offset = 0i64;
    let mut total = 0usize;
    loop {
        let (seen, n): (i64, i64) = script
            .key(keys.lease())
            .key(keys.due())
            .arg(offset)
            .arg(keys.post_prefix())
            .arg(&prefix)
            .invoke_async(&mut conn)
            .await?;
        total += n as usize;
        // Removed entries shift the range: advance by what stayed.
        offset += seen - n;
        if seen < 500 {
            return Ok(total);
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// Refreshes each account when its planned time comes (several at once, single-flight across
/// processes), retries failed refreshes with backoff, and warns about accounts that must reconnect soon.
async fn refresh_loop(
    accounts: Accounts,
    every: Duration,
    warn_days: u64,
    shutdown: CancellationToken,
) {
    let mut last_warning = tokio::time::Instant::now() - Duration::from_secs(24 * 3600);
    let mut failures: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if last_warning.elapsed() > Duration::from_secs(3600) {
            last_warning = tokio::time::Instant::now();
            if let Ok(list) = accounts.list().await {
                let limit = crate::db::now_ms() + (warn_days as i64) * 86_400_000;
                for a in list
                    .iter()
                    .filter(|a| a.state == "ok" && a.refresh_expires_ms < limit)
                {
                    let until = chrono::DateTime::from_timestamp_millis(a.refresh_expires_ms)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default();
                    tracing::warn!(account = %a.name, until = %until, "The account must be connected again before its authorization expires.");
                }
            }
        }
        let due = match accounts.due_for_refresh(200).await {
            Ok(d) => d,
            Err(error) => {
                tracing::debug!(%error, "Refresher cannot read the plan; retrying.");
                continue;
            }
        };
        let results = futures_util::future::join_all(due.into_iter().map(|name| {
            let accounts = accounts.clone();
            async move {
                let r = accounts.planned_refresh(&name).await;
                (name, r)
            }
        }))
        .await;
        for (name, r) in results {
            match r {
                Ok(()) | Err(crate::accounts::AccountError::ReauthRequired(_)) => {
                    crate::telemetry_metrics::refresh(true);
                    failures.remove(&name);
                }
                Err(error) => {
                    crate::telemetry_metrics::refresh(false);
                    let n = failures.entry(name.clone()).or_default();
                    *n += 1;
                    let delay = (1_000i64 << (*n - 1).min(9)).min(300_000);
                    tracing::warn!(account = %name, %error, retry_in_ms = delay, "Token refresh failed; retrying with backoff.");
                    let _ = accounts
                        .plan_refresh_at(&name, crate::db::now_ms() + delay)
                        .await;
                }
            }
        }
    }
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
    Ok(requeued)
}
