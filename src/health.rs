//! Liveness of the daemon's main loops, for systemd's watchdog: each loop beats as it goes round (even
//! while it waits for Redis); the watchdog is pinged only while every loop has beaten recently. Also
//! the host's passing shortages: [`is_transient`] tells an I/O error that only says the host is short
//! of descriptors or memory for a moment (used by the video checks and the TikTok client's upload).

use std::io;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::db::now_ms;

// Linux's numbers (the daemon runs under systemd). std names none of the descriptor errors, so they
// are matched by number; `WouldBlock` and `OutOfMemory` are matched by kind too.
const EAGAIN: i32 = 11;
const ENOMEM: i32 = 12;
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;

/// True for an error that says the host is short of something for a moment (descriptors, memory,
/// a resource temporarily unavailable), not that the file is bad: the read is tried again later.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(EAGAIN | ENOMEM | ENFILE | EMFILE))
        || matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::OutOfMemory | io::ErrorKind::Interrupted
        )
}

/// Last beat of each main loop (ms since the epoch).
#[derive(Debug, Default)]
pub struct Heartbeats {
    ingest: AtomicI64,
    workers: AtomicI64,
    /// What the Redis watch last saw.
    pub redis: RedisWatch,
}

impl Heartbeats {
    /// The ingest loop went round.
    pub fn ingest(&self) {
        self.ingest.store(now_ms(), Ordering::Relaxed);
    }

    /// The worker machinery (lease renewer) went round.
    pub fn workers(&self) {
        self.workers.store(now_ms(), Ordering::Relaxed);
    }

    /// True when every loop beat within `max_age`.
    pub fn healthy(&self, max_age: Duration) -> bool {
        let oldest = now_ms() - max_age.as_millis() as i64;
        self.ingest.load(Ordering::Relaxed) >= oldest
            && self.workers.load(Ordering::Relaxed) >= oldest
    }
}

/// What the daemon last learnt of Redis, for `/healthz` and the logs.
#[derive(Debug, Default)]
pub struct RedisWatch {
    state: std::sync::Mutex<RedisState>,
}

#[derive(Debug, Default)]
struct RedisState {
    /// Why Redis is not usable now (out of memory, stalled, unreachable); `None` when the last probe
    /// passed.
    problem: Option<String>,
    /// Set when Redis came back without the namespace's marker: kept until the operator acknowledges
    /// the loss with `tiktok-poster redis-loss-ack`.
    data_lost: Option<String>,
    /// Replicas the primary showed connected and streaming at the last probe (only read with
    /// `[redis] min_replica_acks`).
    replicas: Option<u32>,
}

impl RedisWatch {
    /// Why `/healthz` must not say ok, if anything: a data loss first, then the current problem.
    pub fn problem(&self) -> Option<String> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.data_lost.clone().or_else(|| s.problem.clone())
    }

    /// Replicas connected to the primary at the last probe, when `[redis] min_replica_acks` asks.
    pub fn replicas(&self) -> Option<u32> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replicas
    }

    fn set_replicas(&self, n: Option<u32>) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replicas = n;
    }

    fn set_problem(&self, problem: Option<String>) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).problem = problem;
    }

    fn set_lost(&self, lost: Option<String>) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .data_lost = lost;
    }

    fn lost(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .data_lost
            .is_some()
    }
}

/// Reads the namespace's marker id, writing a new one when the namespace has none (its first use).
pub async fn claim_marker(
    conn: &mut crate::db::Conn,
    keys: &crate::db::Keys,
) -> redis::RedisResult<String> {
    const CLAIM: &str = r#"
local id = redis.call('HGET', KEYS[1], 'id')
if id then return id end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'created_ms', ARGV[2])
return ARGV[1]
"#;
    redis::Script::new(CLAIM)
        .key(keys.instance())
        .arg(crate::db::random_id())
        .arg(now_ms())
        .invoke_async(conn)
        .await
}

/// Writes a new marker that says the operator accepted a loss of Redis's data; running daemons adopt
/// it and stop reporting the loss. Returns the new id.
pub async fn acknowledge_loss(
    conn: &mut crate::db::Conn,
    keys: &crate::db::Keys,
) -> redis::RedisResult<String> {
    let id = crate::db::random_id();
    let now = now_ms();
    redis::pipe()
        .atomic()
        .del(keys.instance())
        .hset_multiple(
            keys.instance(),
            &[
                ("id", id.clone()),
                ("created_ms", now.to_string()),
                ("acknowledged_ms", now.to_string()),
            ],
        )
        .query_async::<()>(conn)
        .await?;
    Ok(id)
}

/// What the Redis watch of one daemon is held to.
#[derive(Debug, Clone)]
pub struct WatchLimits {
    /// The daemon's worker id (its probe key).
    pub worker: String,
    /// `[redis] give_up_after_secs`.
    pub give_up: Duration,
    /// `[redis] min_replica_acks`.
    pub want_replicas: u32,
}

/// How long a probe of Redis may take before Redis counts as stalled.
pub const REDIS_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Probes Redis every second until `shutdown`: a small write (so `maxmemory` shows as out of memory, not
/// as an outage), bounded by [`REDIS_PROBE_TIMEOUT`] (so a stall shows within about a second), and the
/// namespace's marker (so a Redis that came back empty is told as a data loss, not as "reconnected").
/// Returns the reason to give up after `give_up` of probes that found no usable primary (anything
/// but a Redis out of memory, which a restart would not cure); `None` at shutdown.
pub async fn watch_redis(
    mut conn: crate::db::Conn,
    keys: crate::db::Keys,
    mut known: String,
    beats: std::sync::Arc<Heartbeats>,
    limits: WatchLimits,
    shutdown: tokio_util::sync::CancellationToken,
) -> Option<crate::db::startup::Unavailable> {
    let WatchLimits {
        worker,
        give_up,
        want_replicas,
    } = limits;
    let watch = &beats.redis;
    let mut last_problem: Option<String> = None;
    let mut unusable_since: Option<std::time::Instant> = None;
    // A probe every second, not a backoff: it measures Redis, so it must keep its cadence.
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let probe = async {
            redis::cmd("SET")
                .arg(keys.write_probe(&worker))
                .arg(now_ms())
                .arg("PX")
                .arg(60_000)
                .query_async::<()>(&mut conn)
                .await?;
            let marker = redis::cmd("HGETALL")
                .arg(keys.instance())
                .query_async::<std::collections::HashMap<String, String>>(&mut conn)
                .await?;
            if want_replicas > 0 {
                // An ACL without INFO must not count as an unusable primary (a restart would not
                // cure it): the replicas are then unknown, and WAIT alone holds the posts.
                let info: redis::RedisResult<String> = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut conn)
                    .await;
                watch.set_replicas(info.ok().map(|i| crate::db::replicas::online_replicas(&i)));
            }
            Ok::<_, redis::RedisError>(marker)
        };
        let mut no_primary = true;
        let problem = match tokio::time::timeout(REDIS_PROBE_TIMEOUT, probe).await {
            Err(_) => Some(format!(
                "Redis does not answer within {} s (stalled or overloaded)",
                REDIS_PROBE_TIMEOUT.as_secs()
            )),
            Ok(Err(e)) => {
                no_primary = !crate::db::is_out_of_memory(&e);
                Some(crate::db::explain(&e))
            }
            Ok(Ok(marker)) => {
                let id = marker.get("id").cloned().unwrap_or_default();
                if id == known {
                    None
                } else if marker.contains_key("acknowledged_ms") && !id.is_empty() {
                    tracing::info!(
                        "The loss of Redis's data was acknowledged; this daemon goes on with the new namespace."
                    );
                    known = id;
                    watch.set_lost(None);
                    None
                } else {
                    if !watch.lost() {
                        let what = if id.is_empty() {
                            format!("the marker {} is gone", keys.instance())
                        } else {
                            format!("the marker {} holds another id", keys.instance())
                        };
                        let reason = format!(
                            "Redis lost this daemon's data ({what}: it restarted empty, was flushed, or is another server); accounts, posts and queues it held are gone. Restore Redis from its backup and restart the daemon, or accept the loss with `tiktok-poster redis-loss-ack` and connect the accounts again"
                        );
                        tracing::error!(message = %reason, "Redis data loss detected.");
                        watch.set_lost(Some(reason));
                    }
                    None
                }
            }
        };
        let problem = problem.or_else(|| match watch.replicas() {
            Some(online) if online < want_replicas => {
                no_primary = false;
                Some(format!(
                    "only {online} of the {want_replicas} replicas [redis] min_replica_acks asks for are connected to the primary: posts wait before each call to TikTok until enough replicas are back"
                ))
            }
            _ => None,
        });
        // Logged when the kind of problem changes, not each time its details do (the sentinel
        // that answered, an address): once per outage.
        let kind = |p: &Option<String>| {
            p.as_ref()
                .map(|p| p.split(" (").next().unwrap_or("").to_string())
        };
        if kind(&problem) != kind(&last_problem) {
            match &problem {
                Some(p) => tracing::warn!(problem = %p, "Redis is not usable."),
                None if last_problem.is_some() => tracing::info!("Redis is usable again."),
                None => {}
            }
            last_problem = problem.clone();
        }
        match (&problem, no_primary) {
            (Some(p), true) => {
                let since = *unusable_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= give_up {
                    watch.set_problem(problem.clone());
                    return Some(crate::db::startup::gave_up(give_up.as_secs(), p));
                }
            }
            _ => unusable_since = None,
        }
        watch.set_problem(problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_and_memory_shortages_are_transient_and_the_rest_is_not() {
        for n in [EAGAIN, ENOMEM, ENFILE, EMFILE] {
            assert!(is_transient(&io::Error::from_raw_os_error(n)), "errno {n}");
        }
        for n in [2, 13, 21, 5] {
            // ENOENT, EACCES, EISDIR, EIO
            assert!(!is_transient(&io::Error::from_raw_os_error(n)), "errno {n}");
        }
        assert!(is_transient(&io::Error::from(io::ErrorKind::WouldBlock)));
        assert!(!is_transient(&io::Error::from(io::ErrorKind::NotFound)));
    }
}
