//! Entries read again after the daemon died on them. An entry whose check killed the process (out of
//! memory, an abort) stays pending in the group and is read first at every start, so without a bound
//! one submission would take the daemon down forever. Redis counts each delivery of a pending entry
//! (XPENDING); past [`MAX_DELIVERIES`] the entry is rejected unchecked, with a reason saying why.
//!
//! Only the entry being worked on when the daemon died gains deliveries: pending entries are read
//! back one at a time ([`PENDING_BATCH`]), oldest first, and each is acknowledged before the next.
//! An entry left pending on purpose (the host was short of descriptors or memory, `Outcome::Later`)
//! has those deliveries counted in `{ns}:submit:later` and subtracted, so waiting is never a crash.

use redis::Value;

use super::{Ingest, Outcome, items, text};

/// Deliveries an entry gets before it is rejected: the first, and two more after crashes (or lost
/// Redis connections) while it was being checked.
pub const MAX_DELIVERIES: u64 = 3;
/// Pending entries read back per call.
pub(super) const PENDING_BATCH: usize = 1;

/// How many times the group delivered `entry_id` (0 when it is not pending).
async fn deliveries(ingest: &mut Ingest, entry_id: &str) -> redis::RedisResult<u64> {
    let v: Value = redis::cmd("XPENDING")
        .arg(ingest.keys.submit())
        .arg(super::GROUP)
        .arg(entry_id)
        .arg(entry_id)
        .arg(1)
        .query_async(&mut ingest.conn)
        .await?;
    // [[id, consumer, idle ms, deliveries]]
    Ok(items(&v)
        .first()
        .and_then(|e| items(e).get(3).map(|n| text(n)))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// The reason given for an entry delivered `n` times without being settled.
pub fn crashed_reason(n: u64) -> String {
    format!(
        "this submission was read {n} times without being settled: the daemon crashed, was killed (for example for lack of memory) or lost Redis each time while checking it, so it is not checked again; check the video with `tiktok-poster validate FILE` on another machine or under a memory limit, replace it if it is hostile or broken, and submit again"
    )
}

impl Ingest {
    /// Handles an entry read again (our own pending one after a restart, or one claimed from a dead
    /// consumer): rejected unchecked past [`MAX_DELIVERIES`], else handled as usual.
    pub(super) async fn handle_redelivered(
        &mut self,
        entry_id: &str,
        fields: &[(Vec<u8>, Vec<u8>)],
    ) -> redis::RedisResult<Outcome> {
        // Deliveries that ended in "later" (the host was short of descriptors or memory) are not
        // crashes: they do not count against the entry.
        let later: u64 = redis::cmd("HGET")
            .arg(self.keys.ingest_later())
            .arg(entry_id)
            .query_async::<Option<u64>>(&mut self.conn)
            .await?
            .unwrap_or(0);
        // Counted once per run, when this run first reads the entry back: a run that re-reads it
        // after a Redis error (an outage, maxmemory) adds deliveries, but not crashes.
        let n = match self.crashes_seen.get(entry_id) {
            Some(n) => *n,
            None => {
                let n = deliveries(self, entry_id).await?.saturating_sub(later);
                if self.crashes_seen.len() >= 10_000 {
                    self.crashes_seen.clear();
                }
                self.crashes_seen.insert(entry_id.to_string(), n);
                n
            }
        };
        if n > MAX_DELIVERIES {
            tracing::error!(
                entry_id,
                deliveries = n,
                "A submission was read again after the daemon died on it too many times; rejecting it unchecked."
            );
            return self
                .handle_as(entry_id, fields, Some(crashed_reason(n)))
                .await;
        }
        let outcome = self.handle(entry_id, fields).await?;
        if !matches!(outcome, Outcome::Later(_)) {
            self.crashes_seen.remove(entry_id);
        }
        if let Outcome::Later(_) = outcome {
            self.note_later(entry_id).await?;
        }
        Ok(outcome)
    }

    /// Counts a delivery of `entry_id` that was left for later on purpose (not a crash).
    pub(super) async fn note_later(&mut self, entry_id: &str) -> redis::RedisResult<()> {
        redis::cmd("HINCRBY")
            .arg(self.keys.ingest_later())
            .arg(entry_id)
            .arg(1)
            .query_async(&mut self.conn)
            .await
    }
}
