//! `[redis] min_replica_acks`: before the daemon calls TikTok's init, and before the first chunk of
//! an upload, it waits until that many replicas, and every replica connected at the time, hold the
//! post's record (`WAIT`). Replication is
//! asynchronous: a record the primary acknowledged just before it died may never reach the replica
//! that takes over, and a vanished `init_started_ms` or `publish_id` would mean a second init, so a
//! second post. `WAIT` narrows that window to nearly nothing (it is not consensus: see Redis's
//! documentation of WAIT); it costs a round trip to the replicas per step, and while fewer replicas
//! are connected than asked for, posts wait.
//!
//! `WAIT` blocks the connection it is sent on, and counts the writes of that connection only; so it
//! runs on a connection of its own, after a small write of its own, made after the record: replicas
//! apply the primary's writes in order, so a replica that has the later write has the record too, as
//! long as both went to the same primary (the primary's generation did not change in between). With
//! sentinels, a majority of them must also still name that primary afterwards
//! ([`super::Redis::confirm_primary`]): a primary they just replaced keeps taking writes, and a
//! replica they have not moved yet keeps acknowledging them, until both are reconfigured.

use std::sync::Arc;

use super::{Conn, Keys, Redis, now_ms};

/// Waits for replicas, one `WAIT` at a time on a connection of its own.
#[derive(Debug)]
pub struct ReplicaAcks {
    redis: Option<Arc<Redis>>,
    conn: tokio::sync::Mutex<Option<Conn>>,
    key: String,
    want: u32,
    timeout_ms: u64,
}

impl ReplicaAcks {
    /// No waiting (`min_replica_acks = 0`).
    pub fn off() -> Self {
        Self {
            redis: None,
            conn: tokio::sync::Mutex::new(None),
            key: String::new(),
            want: 0,
            timeout_ms: 0,
        }
    }

    /// Waits for `want` replicas for at most `timeout_ms` each time; its connection is opened at
    /// the first wait.
    pub fn new(redis: Arc<Redis>, keys: &Keys, worker: &str, want: u32, timeout_ms: u64) -> Self {
        Self {
            redis: (want > 0).then_some(redis),
            conn: tokio::sync::Mutex::new(None),
            key: keys.replica_ack(worker),
            want,
            timeout_ms,
        }
    }

    /// How many replicas must acknowledge (0: none).
    pub fn wanted(&self) -> u32 {
        self.want
    }

    /// The primary's generation now: taken before the record is written and given to
    /// [`ReplicaAcks::wait`].
    pub fn generation(&self) -> u64 {
        self.redis.as_ref().map_or(0, |r| r.generation())
    }

    /// Returns once [`wanted`](Self::wanted) replicas hold every write made before this call, on
    /// the primary of `generation`. `Err` says why not, in the operator's words: too few replicas
    /// acknowledged in time, the primary changed, or Redis failed.
    pub async fn wait(&self, generation: u64) -> Result<(), String> {
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        let mut held = self.conn.lock().await;
        if held.is_none() {
            *held = Some(redis.connect().await.map_err(|e| {
                format!(
                    "cannot open the connection for WAIT: {}",
                    super::explain(&e)
                )
            })?);
        }
        let Some(conn) = held.as_mut() else {
            return Err("no connection for WAIT".into());
        };
        let (acked, need) = async {
            redis::cmd("SET")
                .arg(&self.key)
                .arg(now_ms())
                .arg("PX")
                .arg(60_000)
                .query_async::<()>(conn)
                .await?;
            // Every replica connected now, and at least `want`: whichever replica the sentinels
            // promote must hold the record, and they do not always pick the most advanced one
            // (their view of the offsets can be seconds old). A replica that connects later
            // synchronises from a primary that has it.
            wait_connected(conn, self.want, self.timeout_ms).await
        }
        .await
        .map_err(|e| format!("WAIT for replicas failed: {}", super::explain(&e)))?;
        if acked < need {
            return Err(format!(
                "only {acked} of the {need} connected replicas ([redis] min_replica_acks = {}) acknowledged the post's record within {} ms; the post waits until enough replicas are connected and keep up (or lower min_replica_acks)",
                self.want, self.timeout_ms
            ));
        }
        // A replaced primary can still be acknowledged by a replica the sentinels have not moved
        // yet: the sentinels must still name this one (and the generation must be the same).
        redis.confirm_primary(generation).await?;
        if redis.generation() != generation {
            return Err("the Redis primary changed while the post's record was written; the step is tried again on the new primary".into());
        }
        Ok(())
    }
}

/// `WAIT` on `conn` for every replica connected now (from `INFO replication`), and at least
/// `at_least`, for up to `timeout_ms`: (acknowledged, asked for). A producer that must know its
/// `XADD` survives a failover calls this after it, then [`super::Redis::confirm_primary`].
pub async fn wait_connected(
    conn: &mut Conn,
    at_least: u32,
    timeout_ms: u64,
) -> redis::RedisResult<(u32, u32)> {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await
        .unwrap_or_default();
    let need = at_least.max(online_replicas(&info));
    let acked = redis::cmd("WAIT")
        .arg(need)
        .arg(timeout_ms)
        .query_async::<u32>(conn)
        .await?;
    Ok((acked, need))
}

/// How many replicas `INFO replication` shows connected and streaming (`state=online`).
pub fn online_replicas(info: &str) -> u32 {
    info.lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .count() as u32
}

#[cfg(test)]
mod tests {
    #[test]
    fn online_replicas_are_counted_from_info_replication() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=127.0.0.1,port=7001,state=online,offset=42,lag=0\r\nslave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\nmaster_replid:abc\r\n";
        assert_eq!(super::online_replicas(info), 1);
        assert_eq!(
            super::online_replicas("role:master\r\nconnected_slaves:0\r\n"),
            0
        );
    }
}
