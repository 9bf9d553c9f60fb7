//! This daemon's worker identity: the key `{ns}:worker:{id}` that one live daemon holds per
//! `[worker] id`, kept alive by a heartbeat, and the hand-back of the leases a previous run of the same
//! id still holds. It lives with the job store because it exists to keep lease owners unique: a claim
//! token starts with the worker id, and [`reclaim_own`] works on the lease and due indexes.

use std::time::Duration;

use crate::db::Conn;
use tokio_util::sync::CancellationToken;

use crate::db::{Keys, random_id};

/// How long a daemon's identity outlives its last heartbeat.
const IDENTITY_TTL_MS: u64 = 10_000;

/// Takes this daemon's identity in Redis (waiting while another live daemon holds it, which happens
/// only when two daemons are given the same id) and keeps it alive; returns the heartbeat task.
pub async fn take_identity(
    mut conn: Conn,
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
        // A fixed 500 ms poll, not a backoff: the wait is for the other holder's key to lapse, which
        // happens at a known time, and a Redis error here is retried on the same cadence.
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
async fn holder_is_dead(conn: &mut Conn, key: &str, host: &str) -> bool {
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
pub async fn reclaim_own(mut conn: Conn, keys: &Keys, id: &str) -> redis::RedisResult<usize> {
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

/// This host's name (the default `[worker] id`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}
