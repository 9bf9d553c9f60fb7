//! The instants posts hold in their account's calendar, kept by the ledger's own scripts so they can
//! never disagree with the posts: `{ns}:held:{account}` (every post that holds its instant: all
//! states but `cancelled` and a failure that never reached TikTok) and `{ns}:account_posts:{account}`
//! (every post, for the page and the feed), both scored by the instant (ms, the `held_ms` field).
//!
//! "Free" is decided here, inside the script that takes the instant, so two producers or two daemons
//! can never take the same slot: [`FREE_LUA`] is the same rule as `calendar::free::is_free`
//! (tested against each other), read from the live set in the same step as the write.

use std::sync::LazyLock;

use super::{Ledger, Submission, state};
use crate::db::now_ms;

/// `free(key, t, spacing, budget, skip)`: whether instant `t` (ms) is free in the held set `key`
/// for a post, ignoring the members in the table `skip` (the post itself, and posts being moved in
/// the same step): no post within `spacing` (exactly `spacing` apart is fine; with 0, none at `t`
/// itself), and every rolling 24-hour window `[s, s + 24h)` holding `t` has at most `budget` posts
/// counting the new one.
pub(super) const FREE_LUA: &str = r#"
local DAY = 86400000
local function free(key, t, sp, budget, skip)
  local lo, hi = t, t
  if sp > 0 then lo = t - sp + 1; hi = t + sp - 1 end
  local near = redis.call('ZRANGEBYSCORE', key, lo, hi)
  for _, m in ipairs(near) do if not skip[m] then return false end end
  local w = redis.call('ZRANGEBYSCORE', key, '(' .. (t - DAY), '(' .. (t + DAY), 'WITHSCORES')
  local ts = {}
  for i = 1, #w, 2 do
    if not skip[w[i]] then ts[#ts + 1] = tonumber(w[i + 1]) end
  end
  local after = 0
  for _, p in ipairs(ts) do if p >= t then after = after + 1 end end
  if after + 1 > budget then return false end
  local hi_i = 1
  for i = 1, #ts do
    local s = ts[i]
    if s >= t then break end
    if hi_i < i then hi_i = i end
    while hi_i <= #ts and ts[hi_i] < s + DAY do hi_i = hi_i + 1 end
    if (hi_i - i) + 1 > budget then return false end
  end
  return true
end
"#;

/// Records a post in the first free instant of the candidates, unless the id exists. KEYS: post,
/// posts, due, events, state counts, held, account posts, the calendar. ARGV: id, now, spacing ms,
/// the calendar's budget (each candidate brings its own, at most this), n, the calendar's `version` the candidates come from, then n triples (instant ms,
/// `slot_at` text, the budget at that instant: the calendar's, or a warm-up day's lower cap), then
/// the post's fields. Returns {1, i} (taken the i-th), {0, 0} (the id exists), {-1, 0} (none of the
/// candidates is free) or {-2, 0} (the calendar changed or went: the caller's copy is stale).
const SLOT_CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, 0} end
if redis.call('HGET', KEYS[8], 'version') ~= ARGV[6] then return {-2, 0} end
local n = tonumber(ARGV[5])
local sp = tonumber(ARGV[3])
local pick = 0
for i = 1, n do
  if free(KEYS[6], tonumber(ARGV[4 + 3 * i]), sp, tonumber(ARGV[6 + 3 * i]), {}) then pick = i; break end
end
if pick == 0 then return {-1, 0} end
local t, at = ARGV[4 + 3 * pick], ARGV[5 + 3 * pick]
local st = S_QUEUED
if tonumber(t) > tonumber(ARGV[2]) then st = S_SCHEDULED end
redis.call('HSET', KEYS[1], unpack(ARGV, 7 + 3 * n))
redis.call('HSET', KEYS[1], 'state', st, 'due_ms', t, 'held_ms', t, 'slot_at', at)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], t, ARGV[1])
redis.call('ZADD', KEYS[6], t, ARGV[1])
redis.call('ZADD', KEYS[7], t, ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1], 'state', st, 'at', ARGV[2], 'slot_at', at)
redis.call('HINCRBY', KEYS[5], st, 1)
return {1, pick}
"#;

/// Moves a post that has not started to instant ARGV[3], when that instant is free for it. KEYS:
/// post, due, events, state counts, held, account posts. ARGV: id, now, instant ms, `slot_at` text
/// ('' leaves it), spacing ms, budget, message, n, then n ids of posts being moved in the same
/// step (ignored by the free check). Returns 'ok', 'taken', 'missing', 'in_flight', 'sent', or the
/// state of a post that has started or ended.
const MOVE: &str = r#"
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 'missing' end
if not CANCELLABLE[st] then return st end
if redis.call('HGET', KEYS[1], 'lease_owner') then return 'in_flight' end
local pid = redis.call('HGET', KEYS[1], 'publish_id')
if pid and pid ~= '' then return 'sent' end
local skip = {[ARGV[1]] = true}
for i = 1, tonumber(ARGV[8]) do skip[ARGV[8 + i]] = true end
local t = tonumber(ARGV[3])
if not free(KEYS[5], t, tonumber(ARGV[5]), tonumber(ARGV[6]), skip) then return 'taken' end
local nst = S_QUEUED
if t > tonumber(ARGV[2]) then nst = S_SCHEDULED end
if nst ~= st then
  redis.call('HINCRBY', KEYS[4], st, -1)
  redis.call('HINCRBY', KEYS[4], nst, 1)
end
redis.call('HSET', KEYS[1], 'state', nst, 'due_ms', ARGV[3], 'held_ms', ARGV[3], 'deferred_until_ms', '',
  'updated_ms', ARGV[2], 'attempts', '0')
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'slot_at', ARGV[4]) end
if redis.call('HGET', KEYS[1], 'error_code') == 'calendar_paused' then
  redis.call('HSET', KEYS[1], 'error_code', '', 'error_message', '')
end
redis.call('HINCRBY', KEYS[1], 'sequence', 1)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1], 'state', nst, 'at', ARGV[2], 'message', ARGV[7], 'held_ms', ARGV[3])
return 'ok'
"#;

/// Puts one post recorded before the calendar existed into its account's sets. KEYS: post. ARGV:
/// id, held prefix, account posts prefix.
const INDEX_ONE: &str = r#"
local f = redis.call('HMGET', KEYS[1], 'account', 'state', 'due_ms', 'held_ms', 'publish_id')
if not f[1] or not f[2] then return 0 end
local at = f[4]
if not at or at == '' then
  at = f[3] or '0'
  redis.call('HSET', KEYS[1], 'held_ms', at)
end
redis.call('ZADD', ARGV[3] .. f[1], at, ARGV[1])
local reached = f[5] and f[5] ~= ''
if f[2] == S_CANCELLED or (f[2] == S_FAILED and not reached) then return 1 end
redis.call('ZADD', ARGV[2] .. f[1], at, ARGV[1])
return 1
"#;

static SLOT_CREATE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| state::lua_script(&format!("{FREE_LUA}{SLOT_CREATE}")));
static MOVE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| state::lua_script(&format!("{FREE_LUA}{MOVE}")));
static INDEX_ONE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| state::lua_script(INDEX_ONE));

/// What the free check needs of a calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Minimum distance between two posts of the account (ms).
    pub spacing_ms: i64,
    /// Posts allowed in any rolling 24 hours.
    pub daily_budget: u32,
}

/// One candidate instant: epoch ms, its RFC 3339 text in the account's zone, and the most posts any
/// rolling 24 hours around it may hold (the calendar's budget, or a warm-up day's lower cap).
pub type Candidate = (i64, String, u32);

/// What [`Ledger::create_in_slot`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slotted {
    /// A new post, at the candidate with this index.
    Taken(usize),
    /// The id exists (the caller compares contents, as for a plain submission).
    Exists,
    /// None of the candidates is free.
    NoneFree,
    /// The calendar changed (or was removed) since the candidates were computed.
    Stale,
}

/// What [`Ledger::move_post`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// Moved.
    Ok,
    /// The instant is not free for it (another post, the spacing or the budget).
    Taken,
    /// It cannot move: the reason, in words.
    Refused(String),
}

impl Ledger {
    /// Records a submission at the first free instant of `candidates` (ascending), atomically: the
    /// check and the write are one script, which also checks that the account's calendar is still
    /// the one (`calendar_version`, its `version` field) the candidates were computed from.
    pub async fn create_in_slot(
        &self,
        id: &str,
        sub: &Submission,
        extra: &[(&str, String)],
        candidates: &[Candidate],
        rules: Rules,
        calendar_version: i64,
    ) -> redis::RedisResult<Slotted> {
        let now = now_ms();
        let keys = self.keys();
        let mut inv = SLOT_CREATE_SCRIPT.prepare_invoke();
        inv.key(keys.post(id))
            .key(keys.posts())
            .key(keys.due())
            .key(keys.events())
            .key(keys.state_counts())
            .key(keys.held(&sub.account))
            .key(keys.account_posts(&sub.account))
            .key(keys.calendar(&sub.account))
            .arg(id)
            .arg(now)
            .arg(rules.spacing_ms)
            .arg(rules.daily_budget)
            .arg(candidates.len())
            .arg(calendar_version);
        for (ms, text, budget) in candidates {
            inv.arg(*ms).arg(text).arg(budget.min(&rules.daily_budget));
        }
        for (k, v) in self.fields_of(id, sub, now, extra) {
            inv.arg(k).arg(v);
        }
        let mut conn = self.conn();
        let (code, pick): (i64, i64) = inv.invoke_async(&mut conn).await?;
        Ok(match code {
            1 => Slotted::Taken(usize::try_from(pick - 1).unwrap_or(0)),
            0 => Slotted::Exists,
            -2 => Slotted::Stale,
            _ => Slotted::NoneFree,
        })
    }

    /// Moves a post that has not started to `at_ms` if that instant is free for it, ignoring the
    /// posts in `moving` (moved in the same step). `slot_at`: the slot's text when it is a slot.
    #[allow(clippy::too_many_arguments)]
    pub async fn move_post(
        &self,
        id: &str,
        account: &str,
        at_ms: i64,
        slot_at: Option<&str>,
        rules: Rules,
        moving: &[String],
        message: &str,
    ) -> redis::RedisResult<Moved> {
        let keys = self.keys();
        let mut inv = MOVE_SCRIPT.prepare_invoke();
        inv.key(keys.post(id))
            .key(keys.due())
            .key(keys.events())
            .key(keys.state_counts())
            .key(keys.held(account))
            .key(keys.account_posts(account))
            .arg(id)
            .arg(now_ms())
            .arg(at_ms)
            .arg(slot_at.unwrap_or(""))
            .arg(rules.spacing_ms)
            .arg(rules.daily_budget)
            .arg(message)
            .arg(moving.len());
        for m in moving {
            inv.arg(m);
        }
        let mut conn = self.conn();
        let r: String = inv.invoke_async(&mut conn).await?;
        Ok(match r.as_str() {
            "ok" => Moved::Ok,
            "taken" => Moved::Taken,
            "missing" => Moved::Refused(format!("no post {id:?}")),
            "in_flight" => Moved::Refused(format!(
                "post {id} is being sent right now; only a post that has not started can move"
            )),
            "sent" => Moved::Refused(format!(
                "post {id} was already sent to TikTok; a post that holds a publish_id never moves"
            )),
            other => Moved::Refused(format!(
                "post {id} is {other}; only scheduled, queued or deferred posts can move"
            )),
        })
    }

    /// The held instants of an account within `[from_ms, to_ms]`: (post id, ms), ascending.
    pub async fn held_between(
        &self,
        account: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> redis::RedisResult<Vec<(String, i64)>> {
        self.range(&self.keys().held(account), from_ms, to_ms, None)
            .await
    }

    /// Every post of an account (cancelled ones too) within `[from_ms, to_ms]`, at most `limit`:
    /// (post id, ms), ascending.
    pub async fn account_posts_between(
        &self,
        account: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> redis::RedisResult<Vec<(String, i64)>> {
        self.range(
            &self.keys().account_posts(account),
            from_ms,
            to_ms,
            Some(limit),
        )
        .await
    }

    /// The earliest instant held in an account's calendar at or after `from_ms`, if any.
    pub async fn first_held_from(
        &self,
        account: &str,
        from_ms: i64,
    ) -> redis::RedisResult<Option<i64>> {
        let first = self
            .range(&self.keys().held(account), from_ms, i64::MAX, Some(1))
            .await?;
        Ok(first.first().map(|(_, ms)| *ms))
    }

    async fn range(
        &self,
        key: &str,
        from_ms: i64,
        to_ms: i64,
        limit: Option<usize>,
    ) -> redis::RedisResult<Vec<(String, i64)>> {
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(key).arg(from_ms).arg(to_ms).arg("WITHSCORES");
        if let Some(n) = limit {
            cmd.arg("LIMIT").arg(0).arg(n);
        }
        let mut conn = self.conn();
        let v: Vec<(String, f64)> = cmd.query_async(&mut conn).await?;
        Ok(v.into_iter().map(|(id, s)| (id, s as i64)).collect())
    }

    /// Several posts in one round trip, in the order of `ids` (`None` for an id with no post).
    pub async fn get_many(
        &self,
        ids: &[String],
    ) -> redis::RedisResult<Vec<Option<super::PostRecord>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys().post(id));
        }
        let mut conn = self.conn();
        let maps: Vec<std::collections::HashMap<String, String>> =
            pipe.query_async(&mut conn).await?;
        Ok(maps
            .into_iter()
            .map(|m| (!m.is_empty()).then(|| super::PostRecord::from_hash(m)))
            .collect())
    }

    /// Whether a post with this id exists.
    pub async fn exists(&self, id: &str) -> redis::RedisResult<bool> {
        let mut conn = self.conn();
        redis::AsyncCommands::exists(&mut conn, self.keys().post(id)).await
    }

    /// One step of a scan over every post id: the next cursor (0 when done) and up to about 500 ids.
    pub async fn scan_ids(&self, cursor: u64) -> redis::RedisResult<(u64, Vec<String>)> {
        let mut conn = self.conn();
        let (next, items): (u64, Vec<String>) = redis::cmd("ZSCAN")
            .arg(self.keys().posts())
            .arg(cursor)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await?;
        // ZSCAN gives member, score, member, score, …
        Ok((next, items.into_iter().step_by(2).collect()))
    }

    /// Puts every post recorded before this version into its account's sets, once per namespace
    /// (a marker key says it was done). Returns how many posts were indexed.
    pub async fn index_held_once(&self) -> redis::RedisResult<usize> {
        let keys = self.keys().clone();
        let mut conn = self.conn();
        let done: bool = redis::AsyncCommands::exists(&mut conn, keys.calendar_indexed()).await?;
        if done {
            return Ok(0);
        }
        let mut cursor: u64 = 0;
        let mut indexed = 0;
        loop {
            let (next, ids) = self.scan_ids(cursor).await?;
            for id in ids {
                let n: i32 = INDEX_ONE_SCRIPT
                    .key(keys.post(&id))
                    .arg(&id)
                    .arg(keys.held_prefix())
                    .arg(keys.account_posts_prefix())
                    .invoke_async(&mut conn)
                    .await?;
                indexed += usize::try_from(n).unwrap_or(0);
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        redis::AsyncCommands::set::<_, _, ()>(&mut conn, keys.calendar_indexed(), now_ms()).await?;
        Ok(indexed)
    }
}
