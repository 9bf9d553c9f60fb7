//! Per-account rate limits shared by every worker through Redis: sliding windows kept in sorted sets,
//! so the daemon rarely meets TikTok's own limits (their numbers are in `tiktok::limits`) or the
//! operator's daily Direct Post budget. Only the window mechanics live here.

use std::time::Duration;

use crate::db::Conn;

use crate::db::{Keys, random_id};

/// Takes a place in a sliding window for ARGV[3]: 0 when taken, else the wait in ms. With ARGV[4] =
/// `hold`, ARGV[3] is a holder (a post id) and a place it already holds is kept, not taken again
/// (-1): a post holds at most one budget slot however many attempts, hand-backs and restarts it goes
/// through.
const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if ARGV[4] == 'hold' and redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return -1
end
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
-- Full: a place frees when the entry that keeps the count at the limit ages out (the oldest when
-- the window holds exactly the limit; a later one when a lower limit than before applies, e.g. a
-- warm-up day's cap).
local i = redis.call('ZCARD', KEYS[1]) - limit
local e = redis.call('ZRANGE', KEYS[1], i, i, 'WITHSCORES')
return math.max(1, tonumber(e[2]) + window - now)
"#;

/// What [`RateLimiter::hold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The holder took a slot now.
    Taken,
    /// The holder already held one (an earlier attempt of the same post): nothing taken.
    Already,
    /// The window is full: nothing taken; it frees in this long.
    Full(Duration),
}

/// A limit: `limit` calls per `window` (TikTok's own are in `tiktok::limits`; the daily budget is
/// the operator's).
pub use crate::tiktok::limits::RateLimit as Limit;

/// The shared limiter.
#[derive(Clone)]
pub struct RateLimiter {
    conn: Conn,
    keys: Keys,
    script: redis::Script,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter over a connection.
    pub fn new(conn: Conn, keys: Keys) -> Self {
        Self {
            conn,
            keys,
            script: redis::Script::new(ACQUIRE),
        }
    }

    /// Takes one call of `limit` for `account`; `Ok(None)` when taken, `Ok(Some(wait))` when the window
    /// is full (nothing taken).
    pub async fn try_acquire(
        &self,
        account: &str,
        limit: Limit,
    ) -> redis::RedisResult<Option<Duration>> {
        let wait = self.take(account, limit, &random_id(), "").await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait as u64)))
    }

    /// Runs the window script for `member` (`mode` as in [`ACQUIRE`]): its raw answer.
    async fn take(
        &self,
        account: &str,
        limit: Limit,
        member: &str,
        mode: &str,
    ) -> redis::RedisResult<i64> {
        let mut conn = self.conn.clone();
        self.script
            .key(self.keys.rate(account, limit.name))
            .arg(limit.limit)
            .arg(limit.window.as_millis() as u64)
            .arg(member)
            .arg(mode)
            .invoke_async(&mut conn)
            .await
    }

    /// Holds one slot of `limit` for `holder` (a post id).
    pub async fn hold(
        &self,
        account: &str,
        limit: Limit,
        holder: &str,
    ) -> redis::RedisResult<Held> {
        Ok(match self.take(account, limit, holder, "hold").await? {
            0 => Held::Taken,
            w if w < 0 => Held::Already,
            w => Held::Full(Duration::from_millis(w as u64)),
        })
    }

    /// Gives back the slot `holder` holds (nothing when it holds none).
    pub async fn release(
        &self,
        account: &str,
        limit: Limit,
        holder: &str,
    ) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("ZREM")
            .arg(self.keys.rate(account, limit.name))
            .arg(holder)
            .query_async(&mut conn)
            .await
    }

    /// Takes one call, waiting up to `max_wait` for the window; `Ok(Some(wait))` if it would wait longer.
    pub async fn acquire(
        &self,
        account: &str,
        limit: Limit,
        max_wait: Duration,
    ) -> redis::RedisResult<Option<Duration>> {
        // Not `backon`: each wait is the window's own answer (when its oldest call ages out), not a
        // growing backoff, and the loop ends as soon as a wait would be longer than `max_wait`.
        loop {
            match self.try_acquire(account, limit).await? {
                None => return Ok(None),
                Some(w) if w <= max_wait => tokio::time::sleep(w).await,
                Some(w) => return Ok(Some(w)),
            }
        }
    }
}
