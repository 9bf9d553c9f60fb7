//! Redis at start-up: a connection that waits out an outage (and says so once), and the check that
//! Redis is configured so it cannot drop posts. A Redis that refuses the daemon's credentials or may
//! evict posts is a [`Refused`]: a configuration problem for the caller to report, not an outage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Conn;
use backon::{ExponentialBuilder, Retryable};
use tokio_util::sync::CancellationToken;

/// Redis cannot be used as configured; the message says what to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// No usable Redis primary for `[redis] give_up_after_secs`: the daemon exits with status 69
/// (`EX_UNAVAILABLE`) so that systemd starts it again, rather than staying up and idle.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Why the start-up connection did not come.
#[derive(Debug)]
pub enum NotConnected {
    /// A configuration problem.
    Refused(Refused),
    /// Waited `give_up` without a usable primary.
    Unavailable(Unavailable),
}

/// The message of an [`Unavailable`] after `secs` without a usable primary, the last problem seen.
pub fn gave_up(secs: u64, problem: &str) -> Unavailable {
    Unavailable(format!(
        "no usable Redis primary for {secs} s ([redis] give_up_after_secs); the last problem: {problem}. Exiting with status 69 so that systemd starts the daemon again"
    ))
}

/// Connects to Redis, waiting (and saying so once) while it is unreachable, with a backoff from
/// 200 ms doubling to 5 s, for at most `give_up`. Credentials Redis refuses, and a TLS connection
/// that cannot be trusted (a certificate of another CA or host, a client certificate the server
/// wants), are configuration errors, not an outage to wait out. `Ok(None)` when `shutdown` came
/// first.
pub async fn connect_redis(
    redis: &std::sync::Arc<super::Redis>,
    give_up: Duration,
    shutdown: &CancellationToken,
) -> Result<Option<Conn>, NotConnected> {
    let said = AtomicBool::new(false);
    let last = std::sync::Mutex::new(String::from("none yet"));
    let attempt = || async {
        let mut c = redis.connect().await?;
        redis::cmd("PING").query_async::<()>(&mut c).await?;
        Ok::<_, redis::RedisError>(c)
    };
    let target = redis.target();
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times();
    let retried = attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|error| !is_misconfigured(error))
        .notify(|error, _| {
            *last.lock().unwrap_or_else(|p| p.into_inner()) = super::explain(error);
            if !said.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %super::explain(error), "Redis is not usable; waiting for it.");
            }
        });
    let result = tokio::select! {
        _ = shutdown.cancelled() => return Ok(None),
        _ = tokio::time::sleep(give_up) => {
            let problem = last.lock().unwrap_or_else(|p| p.into_inner()).clone();
            return Err(NotConnected::Unavailable(gave_up(give_up.as_secs(), &problem)));
        }
        r = retried => r,
    };
    match result {
        Ok(c) => {
            if said.load(Ordering::Relaxed) {
                tracing::info!("Redis is reachable.");
            }
            Ok(Some(c))
        }
        Err(error) if super::is_auth_error(&error) => Err(NotConnected::Refused(Refused(format!(
            "Redis refused the credentials ({}): put the right user and password in [redis] url (redis://USER:PASSWORD@host:port), then start again",
            error.code().unwrap_or("authentication failed")
        )))),
        Err(error) => Err(NotConnected::Refused(Refused(
            match super::tls_problem(&error) {
                Some(problem) => format!(
                    "cannot connect to Redis at {} over TLS: {problem}; then start again",
                    super::redact_url(&target.url)
                ),
                None => {
                    format!("cannot use the [redis] settings: {error}; fix them, then start again")
                }
            },
        ))),
    }
}

/// An error that waiting will not cure: refused credentials, an untrusted TLS connection, or TLS
/// files that cannot be used.
fn is_misconfigured(e: &redis::RedisError) -> bool {
    // With sentinels, "no primary is known" joins every sentinel's problem: one sentinel's
    // refusal among them is an outage to wait out (and to give up on), not a wrong [redis] url.
    if e.to_string().contains("no Redis primary is known") {
        return false;
    }
    super::is_auth_error(e)
        || super::tls_problem(e).is_some()
        || e.kind() == redis::ErrorKind::InvalidClientConfig
}

/// Refuses an eviction policy that can drop posts (unless allowed) and warns when Redis keeps nothing
/// on disk. Managed Redis services that hide CONFIG get a warning instead.
pub async fn check_redis(mut conn: Conn, allow_eviction: bool) -> Result<(), Refused> {
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
                    return Err(Refused(format!(
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

/// On a Redis Cluster endpoint (`cluster_enabled:1`), refuses a namespace without a hash tag: its
/// keys would spread over slots, and the daemon's multi-key scripts fail with `CROSSSLOT`.
pub async fn check_cluster(mut conn: Conn, namespace: &str) -> Result<(), Refused> {
    let info: redis::RedisResult<String> = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut conn)
        .await;
    let cluster = info.is_ok_and(|i| i.lines().any(|l| l.trim() == "cluster_enabled:1"));
    if cluster && super::hash_tag(namespace).is_none() {
        return Err(Refused(format!(
            "Redis is a Cluster endpoint and [redis] namespace {namespace:?} has no hash tag, so the daemon's keys would spread over slots: set namespace = \"{{{namespace}}}\" (in braces) for a new installation"
        )));
    }
    Ok(())
}
