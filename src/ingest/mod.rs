//! Ingest: reads the submit stream with a consumer group, records each valid submission in the ledger
//! (queued for its due time), puts each invalid one in the rejected stream with its reason, and only then
//! acknowledges the entry, so a crash at any point loses nothing (the entry is read again and the
//! idempotency key makes the second recording a no-op).
//!
//! Replies are parsed by hand from raw Redis values, as bytes, so no entry (binary field names, huge
//! values, deleted entries) can make the reply unreadable and stall the group. A name or value that is
//! not UTF-8 is rejected, never decoded lossily (that would post replacement characters).
//!
//! An acknowledged entry is deleted from the submit stream in the same transaction (`XACK` then
//! `XDEL`), so the stream holds only what is not handled yet. `XTRIM MINID` is not used: it would also
//! drop older entries another consumer holds unacknowledged.
//!
//! Ingest sits above the ledger, the token store and the video checks and below the HTTP server and
//! the wiring: submit stream -> ingest -> ledger -> queue -> worker. The loop is here; the checks of a
//! submission in [`check`], the reply parsing in `reply`, the bound on redeliveries in `redelivery`.

use std::time::Duration;

use crate::db::Conn;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use redis::Value;
use tokio_util::sync::CancellationToken;

use crate::accounts::Accounts;
use crate::db::Keys;

use crate::planner::{Assigned, Calendars, PlanError};
use crate::posts::echo;
use crate::posts::submission::fields_from_bytes;
use crate::posts::{Created, Ledger, parse_fields};

mod check;
mod redelivery;
mod reply;
pub use check::{Refusal, check, summary};
pub use redelivery::{MAX_DELIVERIES, crashed_reason};
pub use reply::Entry;
use reply::{items, parse_entries, parse_read, text};

/// The consumer group name.
pub const GROUP: &str = "ingest";
/// Rejected entries kept (each at most 32 KiB, see `posts::echo`): at most about 320 MiB.
const REJECTED_KEPT: u64 = 10_000;
/// Entries read per call.
const BATCH: usize = 100;
/// How long ingest waits before reading again an entry it could not check for a momentary shortage.
const LATER_PAUSE: Duration = Duration::from_secs(1);

/// The ingest loop's state.
pub struct Ingest {
    conn: Conn,
    keys: Keys,
    ledger: Ledger,
    calendars: Calendars,
    accounts: Accounts,
    consumer: String,
    video: crate::config::VideoSettings,
    heartbeats: Option<std::sync::Arc<crate::health::Heartbeats>>,
    /// Deliveries before this run of each pending entry, as first seen by this run (see
    /// `redelivery`): re-reads within one run (after a Redis error) never count as crashes.
    crashes_seen: std::collections::HashMap<String, u64>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded as a new post.
    Accepted(String),
    /// The id existed: nothing changed.
    Duplicate(String),
    /// Put in the rejected stream with this reason.
    Rejected(String),
    /// Left unacknowledged, to be read again shortly (a momentary shortage of the host's resources).
    Later(String),
}

impl Ingest {
    /// An ingest loop. `conn` must be its own connection (it blocks on XREADGROUP); posts are
    /// recorded through the calendars' ledger.
    pub fn new(
        conn: Conn,
        keys: Keys,
        calendars: Calendars,
        accounts: Accounts,
        consumer: String,
        video: crate::config::VideoSettings,
    ) -> Self {
        Self {
            conn,
            keys,
            ledger: calendars.ledger().clone(),
            calendars,
            accounts,
            consumer,
            video,
            heartbeats: None,
            crashes_seen: std::collections::HashMap::new(),
        }
    }

    /// Beats on every round (for the systemd watchdog).
    pub fn with_heartbeats(mut self, h: std::sync::Arc<crate::health::Heartbeats>) -> Self {
        self.heartbeats = Some(h);
        self
    }

    async fn ensure_group(&mut self) -> redis::RedisResult<()> {
        // From 0: entries added before the group existed (daemon never started yet) are not lost.
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.submit())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn)
            .await;
        match r {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Runs until `shutdown`; never returns early on a Redis error (it waits and retries).
    pub async fn run(mut self, shutdown: CancellationToken) {
        // The loop goes on for the daemon's life, so backon's retry (which wraps one operation) does
        // not fit; its delay sequence does: 100 ms doubling to 5 s while Redis is away.
        let mut backoff = redis_backoff();
        let mut last_autoclaim = tokio::time::Instant::now() - Duration::from_secs(3600);
        let mut logged_down = false;
        while !shutdown.is_cancelled() {
            if let Some(h) = &self.heartbeats {
                h.ingest();
            }
            let step = async {
                self.ensure_group().await?;
                // Entries another consumer took and never acknowledged (it crashed) come back here.
                if last_autoclaim.elapsed() > Duration::from_secs(5) {
                    last_autoclaim = tokio::time::Instant::now();
                    let v: Value = redis::cmd("XAUTOCLAIM")
                        .arg(self.keys.submit())
                        .arg(GROUP)
                        .arg(&self.consumer)
                        .arg(30_000)
                        .arg("0-0")
                        .arg("COUNT")
                        .arg(BATCH)
                        .query_async(&mut self.conn)
                        .await?;
                    let parts = items(&v);
                    if let Some(entries) = parts.get(1) {
                        for (id, fields) in parse_entries(entries) {
                            if let Outcome::Later(_) = self.handle_redelivered(&id, &fields).await?
                            {
                                return Ok(true);
                            }
                        }
                    }
                }
                // Our own pending entries first (a restart after a crash), then new ones.
                let pending = self.read("0", None).await?;
                if !pending.is_empty() {
                    for (id, fields) in pending {
                        if let Outcome::Later(_) = self.handle_redelivered(&id, &fields).await? {
                            return Ok(true);
                        }
                    }
                    return Ok::<_, redis::RedisError>(false);
                }
                for (id, fields) in self.read(">", Some(1000)).await? {
                    if let Outcome::Later(_) = self.handle(&id, &fields).await? {
                        self.note_later(&id).await?;
                        return Ok(true);
                    }
                }
                Ok(false)
            };
            let result = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = step => r,
            };
            match result {
                Ok(later) => {
                    if logged_down {
                        tracing::info!("Ingest reconnected to Redis.");
                        logged_down = false;
                    }
                    backoff = redis_backoff();
                    if later {
                        // An entry waits for the host to recover (it stays pending and is read
                        // first next round); give it a moment instead of spinning on it.
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(LATER_PAUSE) => {}
                        }
                    }
                }
                Err(error) => {
                    if !logged_down {
                        tracing::warn!(%error, "Ingest cannot reach Redis; retrying with backoff.");
                        logged_down = true;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(5))) => {}
                    }
                }
            }
        }
    }

    async fn read(&mut self, from: &str, block_ms: Option<u64>) -> redis::RedisResult<Vec<Entry>> {
        // Pending entries one at a time: each read counts a delivery (see `redelivery`).
        let count = if from == "0" {
            redelivery::PENDING_BATCH
        } else {
            BATCH
        };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(ms) = block_ms {
            cmd.arg("BLOCK").arg(ms);
        }
        cmd.arg("STREAMS").arg(self.keys.submit()).arg(from);
        let v: Value = cmd.query_async(&mut self.conn).await?;
        Ok(parse_read(&v))
    }

    /// Records or rejects one entry, then acknowledges and deletes it. A Redis error leaves it
    /// unacknowledged (it is read again); nothing about the entry's content can make this fail.
    pub async fn handle(
        &mut self,
        entry_id: &str,
        fields: &[(Vec<u8>, Vec<u8>)],
    ) -> redis::RedisResult<Outcome> {
        self.handle_as(entry_id, fields, None).await
    }

    /// [`Ingest::handle`], or a rejection with `reason` without looking at the entry.
    async fn handle_as(
        &mut self,
        entry_id: &str,
        fields: &[(Vec<u8>, Vec<u8>)],
        reason: Option<String>,
    ) -> redis::RedisResult<Outcome> {
        let parsed = match reason {
            Some(reason) => Err(reason),
            None => fields_from_bytes(fields).and_then(|f| parse_fields(&f)),
        };
        let outcome = match parsed {
            Err(reason) => Outcome::Rejected(reason),
            Ok(sub) => match check(&sub, &self.accounts, &self.video).await {
                Err(Refusal::Later(reason)) => {
                    tracing::warn!(entry_id, reason = %reason, "Submission cannot be checked now; it is read again shortly.");
                    return Ok(Outcome::Later(reason));
                }
                Err(Refusal::Rejected(reason)) => Outcome::Rejected(reason),
                Ok(extra) => {
                    let id = sub.id.clone().unwrap_or_else(|| entry_id.to_string());
                    let mut extra: Vec<(&str, String)> = extra;
                    extra.push(("entry_id", entry_id.to_string()));
                    let created = if sub.slot_next {
                        match self.calendars.assign(&id, &sub, &extra).await {
                            Ok(Assigned::Slot(at)) => {
                                tracing::info!(post_id = %id, account = %sub.account, slot_at = %at.to_rfc3339(), "Post recorded in the next free calendar slot.");
                                return self.settle(entry_id, fields, Outcome::Accepted(id)).await;
                            }
                            Ok(Assigned::Existing(c)) => c,
                            Ok(Assigned::NoCalendar(why) | Assigned::Full(why)) => {
                                return self.settle(entry_id, fields, Outcome::Rejected(why)).await;
                            }
                            Err(PlanError::Redis(e)) => return Err(e),
                            Err(other) => {
                                return self
                                    .settle(entry_id, fields, Outcome::Rejected(other.to_string()))
                                    .await;
                            }
                        }
                    } else {
                        self.ledger.create(&id, &sub, &extra).await?
                    };
                    match created {
                        Created::New => {
                            tracing::info!(post_id = %id, account = %sub.account, "Post recorded.");
                            Outcome::Accepted(id)
                        }
                        Created::Duplicate => {
                            tracing::info!(post_id = %id, entry_id, "Submission repeats an existing post id; ignored.");
                            Outcome::Duplicate(id)
                        }
                        Created::Conflict => Outcome::Rejected(conflict_reason(&id)),
                    }
                }
            },
        };
        self.settle(entry_id, fields, outcome).await
    }

    /// Puts a rejected entry in the rejected stream with its reason, then acknowledges and deletes
    /// the entry, in one transaction.
    async fn settle(
        &mut self,
        entry_id: &str,
        fields: &[(Vec<u8>, Vec<u8>)],
        outcome: Outcome,
    ) -> redis::RedisResult<Outcome> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Outcome::Rejected(reason) = &outcome {
            let reason = echo::reason(reason);
            tracing::warn!(entry_id, reason = %reason, "Submission rejected.");
            pipe.cmd("XADD")
                .arg(self.keys.rejected())
                .arg("MAXLEN")
                .arg("~")
                .arg(REJECTED_KEPT)
                .arg("*");
            if fields.is_empty() {
                pipe.arg("empty").arg("true");
            }
            // The original fields as sent (bytes, not text), each cut to a bound: see `posts::echo`.
            for (k, v) in echo::bounded_fields(fields) {
                pipe.arg(k).arg(v);
            }
            pipe.arg("reason").arg(&reason);
            pipe.arg("entry_id").arg(entry_id);
            pipe.ignore();
        }
        pipe.cmd("XACK")
            .arg(self.keys.submit())
            .arg(GROUP)
            .arg(entry_id)
            .ignore();
        pipe.cmd("XDEL")
            .arg(self.keys.submit())
            .arg(entry_id)
            .ignore();
        // Settled: its count of deliveries left for later goes too (see `redelivery`).
        pipe.cmd("HDEL")
            .arg(self.keys.ingest_later())
            .arg(entry_id)
            .ignore();
        pipe.query_async::<()>(&mut self.conn).await?;
        Ok(outcome)
    }
}

/// Delays between rounds while Redis is away: 100 ms doubling to 5 s, without end.
fn redis_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .build()
}

/// The reason for a submission whose id names an existing post with other content.
pub fn conflict_reason(id: &str) -> String {
    format!(
        "id exists with different content: post {id:?} was recorded earlier with other fields, and an id is never posted twice; give this post a new id"
    )
}
