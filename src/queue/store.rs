//! The job store: which post a worker should work on now, with leases.
//!
//! A job is a post id. `{ns}:q:due` holds ids scored by the time they are due (ms); `{ns}:q:lease` holds
//! claimed ids scored by lease expiry; the claim token lives in the post hash (`lease_owner`), so every
//! ledger write of a worker can be fenced by it. Every step is one Lua script, so it is atomic, and every
//! loop in a script is bounded, so a large backlog never wedges Redis. Times are Redis server time.
//!
//! - `claim` first reaps up to 100 expired leases (a crashed worker's posts go back to `due`), then takes
//!   up to `n` due ids, and returns the earliest next due time or lease expiry so an idle worker sleeps
//!   exactly until then.
//! - `renew` extends the leases a worker still owns and reports the ones it lost.
//! - `finish` removes a lease (fenced by the token) and optionally re-queues the id at a time.

use crate::db::Conn;

use crate::db::Keys;

const CLAIM: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local prefix = ARGV[4]
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', prefix .. id, 'lease_owner')
  redis.call('ZADD', KEYS[1], now, id)
end
local out = {now, -1}
if n > 0 then
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, n)
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[1], id)
    if redis.call('EXISTS', prefix .. id) == 1 then
      local c = redis.call('HINCRBY', prefix .. id, 'claims', 1)
      local token = ARGV[3] .. ':' .. c
      redis.call('HSET', prefix .. id, 'lease_owner', token)
      redis.call('ZADD', KEYS[2], now + lease, id)
      table.insert(out, id)
      table.insert(out, token)
    end
  end
end
local nd = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local nl = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local nxt = -1
if nd[2] then nxt = tonumber(nd[2]) end
if nl[2] and (nxt < 0 or tonumber(nl[2]) < nxt) then nxt = tonumber(nl[2]) end
out[2] = nxt
return out
"#;

const RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local prefix = ARGV[2]
local lost = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', prefix .. id, 'lease_owner') == token then
    redis.call('ZADD', KEYS[1], 'XX', now + lease, id)
  else
    table.insert(lost, id)
  end
end
return lost
"#;

const FINISH: &str = r#"
local prefix = ARGV[3]
local id = ARGV[1]
if redis.call('HGET', prefix .. id, 'lease_owner') ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[2], id)
redis.call('HDEL', prefix .. id, 'lease_owner')
if ARGV[4] ~= '' then
  local at = tonumber(ARGV[4])
  if at < 0 then
    local t = redis.call('TIME')
    at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  redis.call('ZADD', KEYS[1], at, id)
end
return 1
"#;

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The post id.
    pub id: String,
    /// The fencing token (`<worker>:<claim count>`).
    pub token: String,
}

/// What a claim returned.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Redis server time (ms).
    pub now_ms: i64,
    /// Earliest next due time or lease expiry (ms), if any.
    pub next_wake_ms: Option<i64>,
    /// The jobs.
    pub jobs: Vec<Claim>,
}

/// The job store.
#[derive(Clone)]
pub struct JobStore {
    conn: Conn,
    keys: Keys,
    claim: redis::Script,
    renew: redis::Script,
    finish: redis::Script,
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl JobStore {
    /// A store over a connection.
    pub fn new(conn: Conn, keys: Keys) -> Self {
        Self {
            conn,
            keys,
            claim: redis::Script::new(CLAIM),
            renew: redis::Script::new(RENEW),
            finish: redis::Script::new(FINISH),
        }
    }

    /// Claims up to `n` due jobs for `worker` with a lease of `lease_ms`.
    pub async fn claim(
        &self,
        worker: &str,
        n: usize,
        lease_ms: u64,
    ) -> redis::RedisResult<Claimed> {
        let mut conn = self.conn.clone();
        let raw: Vec<redis::Value> = self
            .claim
            .key(self.keys.due())
            .key(self.keys.lease())
            .arg(n)
            .arg(lease_ms)
            .arg(worker)
            .arg(self.keys.post_prefix())
            .invoke_async(&mut conn)
            .await?;
        let as_i64 =
            |v: &redis::Value| -> i64 { redis::from_redis_value::<i64>(v.clone()).unwrap_or(-1) };
        let as_str = |v: &redis::Value| -> String {
            redis::from_redis_value::<String>(v.clone()).unwrap_or_default()
        };
        let now_ms = raw.first().map(as_i64).unwrap_or(0);
        let next = raw.get(1).map(as_i64).unwrap_or(-1);
        let jobs = raw[2.min(raw.len())..]
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| Claim {
                id: as_str(&c[0]),
                token: as_str(&c[1]),
            })
            .collect();
        Ok(Claimed {
            now_ms,
            next_wake_ms: (next >= 0).then_some(next),
            jobs,
        })
    }

    /// Extends the leases still owned; returns the ids whose lease was lost.
    pub async fn renew(&self, held: &[Claim], lease_ms: u64) -> redis::RedisResult<Vec<String>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut inv = self.renew.prepare_invoke();
        inv.key(self.keys.lease())
            .arg(lease_ms)
            .arg(self.keys.post_prefix());
        for c in held {
            inv.arg(&c.id).arg(&c.token);
        }
        inv.invoke_async(&mut conn).await
    }

    /// Ends a claim. `requeue_at_ms`: `None` = done, `Some(-1)` = due now, `Some(t)` = due at `t`.
    /// Returns false when the lease had been lost (another worker owns the post now).
    pub async fn finish(
        &self,
        claim: &Claim,
        requeue_at_ms: Option<i64>,
    ) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let n: i32 = self
            .finish
            .key(self.keys.due())
            .key(self.keys.lease())
            .arg(&claim.id)
            .arg(&claim.token)
            .arg(self.keys.post_prefix())
            .arg(requeue_at_ms.map(|t| t.to_string()).unwrap_or_default())
            .invoke_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// Queues a post id (no claim involved): for `retry`, the reconciler and tests.
    pub async fn schedule(&self, id: &str, at_ms: i64) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("ZADD")
            .arg(self.keys.due())
            .arg(at_ms)
            .arg(id)
            .query_async::<()>(&mut conn)
            .await
    }

    /// Removes a post id from the due queue (cancel). Returns true if it was queued.
    pub async fn unschedule(&self, id: &str) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let n: i32 = redis::cmd("ZREM")
            .arg(self.keys.due())
            .arg(id)
            .query_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// Number of posts due or scheduled that are still to be sent, and number leased. A settled
    /// post's entry (a follow-up: a look for an `unconfirmed` post on TikTok's list, a public id
    /// check, a stats read) is no backlog and is not counted.
    pub async fn depth(&self) -> redis::RedisResult<(u64, u64)> {
        let b = self.backlog().await?;
        Ok((b.waiting, b.leased))
    }

    /// The backlog: posts still to be sent in the due index (follow-ups of settled posts left out),
    /// the earliest due time among them, and the leased count.
    pub async fn backlog(&self) -> redis::RedisResult<Backlog> {
        let mut conn = self.conn.clone();
        let (waiting, oldest, leased): (u64, i64, u64) = BACKLOG_SCRIPT
            .key(self.keys.due())
            .key(self.keys.lease())
            .arg(self.keys.post_prefix())
            .arg(BACKLOG_SCAN)
            .invoke_async(&mut conn)
            .await?;
        Ok(Backlog {
            waiting,
            oldest_due_ms: (oldest >= 0).then_some(oldest),
            leased,
        })
    }
}

/// What [`JobStore::backlog`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Posts due or scheduled that are still to be sent.
    pub waiting: u64,
    /// The earliest due time among them (ms).
    pub oldest_due_ms: Option<i64>,
    /// Posts leased by a worker now.
    pub leased: u64,
}

/// Due entries the backlog script looks at, earliest first; any beyond are counted as backlog.
const BACKLOG_SCAN: usize = 10_000;

/// Counts the earliest ARGV[2] due entries whose post is not settled (ARGV[1]: the post hashes'
/// prefix) and returns that count (plus every entry beyond them), the earliest such due time (-1:
/// none) and the number of leases.
const BACKLOG: &str = r#"
local limit = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', KEYS[1], 0, limit - 1, 'WITHSCORES')
local n, oldest = 0, -1
for i = 1, #ids, 2 do
  local st = redis.call('HGET', ARGV[1] .. ids[i], 'state')
  if not (st and TERMINAL[st]) then
    n = n + 1
    if oldest < 0 then oldest = math.floor(tonumber(ids[i + 1])) end
  end
end
local total = redis.call('ZCARD', KEYS[1])
if total > limit then n = n + total - limit end
return {n, oldest, redis.call('ZCARD', KEYS[2])}
"#;

static BACKLOG_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| crate::posts::state::lua_script(BACKLOG));
