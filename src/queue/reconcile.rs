//! The reconciler: re-queues any post that is neither settled nor queued nor leased, so a lost queue
//! entry never loses a post. It reads the ledger and writes the due index, so it lives with the job
//! store.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::JobStore;
use crate::posts::Ledger;

/// Re-queues every post that is neither settled nor queued nor leased (a lost queue entry never loses a
/// post). Runs once at start and then every 30 seconds.
pub async fn reconcile_loop(ledger: Ledger, store: JobStore, shutdown: CancellationToken) {
    // A fixed 30 s cadence, not a backoff: a failed pass is simply the next pass.
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
if TERMINAL[st] then return 0 end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) or redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
local due = tonumber(redis.call('HGET', KEYS[1], 'deferred_until_ms') or '0') or 0
local d2 = tonumber(redis.call('HGET', KEYS[1], 'due_ms') or '0') or 0
if d2 > due then due = d2 end
redis.call('ZADD', KEYS[2], due, ARGV[1])
return 1
"#;
    let keys = ledger.keys().clone();
    let mut conn = ledger.conn();
    // The terminal states come from the ledger's one list, not restated here.
    let script = crate::posts::state::lua_script(REQUEUE);
    let mut cursor: u64 = 0;
    let mut requeued = 0;
    loop {
        let (next, ids) = ledger.scan_ids(cursor).await?;
        for id in &ids {
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
