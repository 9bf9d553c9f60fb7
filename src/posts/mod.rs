//! Posts: the submission format, the states, and the ledger (one Redis hash per post, the source of
//! truth) with an event stream entry for every state change.
//!
//! A post is read as a typed [`PostRecord`] and written through [`Field`] (`record`), its state is a
//! [`State`] (`state`); the Lua scripts below take the state names from `state::lua_prelude` rather
//! than restating them, so Rust and Lua cannot disagree about which states are terminal.
//!
//! Knows Redis, not apalis and not TikTok's HTTP.

mod confirm;
pub(crate) mod echo;
pub(crate) mod held;
mod limits;
mod record;
pub(crate) mod state;
mod strict_json;
pub(crate) mod submission;

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::db::Conn;
use redis::AsyncCommands;

use crate::db::{Keys, now_ms};
pub use confirm::Confirmed;
pub use held::{Candidate, Moved, Rules, Slotted};
pub use record::{Field, Fields, PostRecord};
pub use state::State;
pub use submission::{Submission, parse_fields, parse_json};

/// Creates a post unless the id exists; indexes it (KEYS[6], [7]: the account's held and
/// all-posts sets, see `held`) and queues it for its due time.
const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[7], ARGV[3], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1], 'state', ARGV[4], 'at', ARGV[2])
redis.call('HINCRBY', KEYS[5], ARGV[4], 1)
return 1
"#;

/// Changes a post's state (and fields), fenced by the lease owner when a token is given; records an
/// event. A failure that never reached TikTok (no `publish_id`) gives the post's calendar instant
/// back (ARGV[6]: the held sets' prefix). Returns 1 when applied, 0 when the post is gone, -1 when
/// the lease was lost.
const TRANSITION: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'lease_owner') ~= ARGV[4] then return -1 end
local old = redis.call('HGET', KEYS[1], 'state')
if old ~= ARGV[2] then
  if old then redis.call('HINCRBY', KEYS[4], old, -1) end
  redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated_ms', ARGV[3])
if #ARGV > 6 then redis.call('HSET', KEYS[1], unpack(ARGV, 7)); claim_post_id(KEYS[1], KEYS[5], 7) end
if DEAD[ARGV[2]] then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1]) end
if ARGV[2] == S_FAILED and (redis.call('HGET', KEYS[1], 'publish_id') or '') == '' then
  local acct = redis.call('HGET', KEYS[1], 'account')
  if acct then redis.call('ZREM', ARGV[6] .. acct, ARGV[1]) end
end
local ev = {'id', ARGV[1], 'state', ARGV[2], 'at', ARGV[3]}
if ARGV[5] ~= '' then table.insert(ev, 'message'); table.insert(ev, ARGV[5]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', unpack(ev))
return 1
"#;

/// Applies what a webhook says about a post, only when it is about the post's current attempt
/// (`publish_id` equal to ARGV[5]): an event about a superseded attempt changes nothing (returns 3).
/// The state changes only while the post is not settled; the fields are written always (ARGV[6] =
/// 'always', e.g. the public post id) or only with that state change ('with_state', e.g. a failure's
/// error code, never written onto a post that stays published).
const ADVANCE: &str = r#"
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 0 end
if (redis.call('HGET', KEYS[1], 'publish_id') or '') ~= ARGV[5] or ARGV[5] == '' then return 3 end
local terminal = TERMINAL[st]
local change = ARGV[2] ~= '' and not terminal
if #ARGV > 6 and (ARGV[6] == 'always' or change) then
  redis.call('HSET', KEYS[1], unpack(ARGV, 7))
  claim_post_id(KEYS[1], KEYS[5], 7)
end
if change then
  if st ~= ARGV[2] then
    redis.call('HINCRBY', KEYS[4], st, -1)
    redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
  end
  redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated_ms', ARGV[3])
  if ARGV[2] == S_FAILED then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1]) end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1], 'state', ARGV[2], 'at', ARGV[3], 'message', ARGV[4])
  return 2
end
return 1
"#;

/// Sets fields, fenced by the lease owner when a token is given (a `post_id` among them is claimed in
/// KEYS[2], see `confirm`).
const SET_FIELDS: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'lease_owner') ~= ARGV[1] then return -1 end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)); claim_post_id(KEYS[1], KEYS[2], 2) end
return 1
"#;

/// Cancels a post that has not been sent (no publish_id, not being worked on); its calendar instant
/// is free again (ARGV[3]: the held sets' prefix).
const CANCEL: &str = r#"
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 'missing' end
if not CANCELLABLE[st] then return st end
if redis.call('HGET', KEYS[1], 'lease_owner') then return 'in_flight' end
local pid = redis.call('HGET', KEYS[1], 'publish_id')
if pid and pid ~= '' then return 'sent' end
redis.call('ZREM', KEYS[2], ARGV[1])
local acct = redis.call('HGET', KEYS[1], 'account')
if acct then redis.call('ZREM', ARGV[3] .. acct, ARGV[1]) end
redis.call('HINCRBY', KEYS[5], st, -1)
redis.call('HINCRBY', KEYS[5], S_CANCELLED, 1)
redis.call('HSET', KEYS[1], 'state', S_CANCELLED, 'updated_ms', ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1], 'state', S_CANCELLED, 'at', ARGV[2])
return 'ok'
"#;

/// Re-runs a failed post whose current attempt is ARGV[4]: none (''), or one TikTok confirmed cannot be
/// published (the caller asked it just before), so a new init is safe. A post whose attempt is another
/// one than the caller checked is refused ('changed'), and so is anything but `failed` (notably
/// `unconfirmed`). The post holds its calendar instant (`held_ms`, ARGV[3]: the held sets' prefix)
/// again: a retry's new `due_ms` does not move its slot.
const RETRY: &str = r#"
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 'missing' end
if st ~= S_FAILED then return st end
local prev = redis.call('HGET', KEYS[1], 'previous_publish_ids') or ''
local pid = redis.call('HGET', KEYS[1], 'publish_id') or ''
if pid ~= ARGV[4] then
  if ARGV[4] == '' then return 'sent' end
  return 'changed'
end
local acct = redis.call('HGET', KEYS[1], 'account')
local held = redis.call('HGET', KEYS[1], 'held_ms')
if acct and held and held ~= '' then redis.call('ZADD', ARGV[3] .. acct, held, ARGV[1]) end
if pid ~= '' then
  if prev ~= '' then prev = prev .. ',' end
  prev = prev .. pid
end
redis.call('HINCRBY', KEYS[5], st, -1)
redis.call('HINCRBY', KEYS[5], S_QUEUED, 1)
redis.call('HSET', KEYS[1], 'state', S_QUEUED, 'updated_ms', ARGV[2], 'attempts', '0', 'publish_id', '',
  'upload_url_sealed', '', 'upload_expires_ms', '', 'upload_done', '', 'init_started_ms', '',
  'previous_publish_ids', prev, 'error_code', '', 'error_message', '', 'due_ms', ARGV[2],
  'probes_unfinished', '')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1], 'state', S_QUEUED, 'at', ARGV[2], 'message', 'retry requested')
return 'ok'
"#;

/// The scripts, each built once; those naming a state start with [`state::lua_prelude`].
static CREATE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CREATE));
static TRANSITION_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| state::lua_script(&format!("{}{TRANSITION}", confirm::CLAIM_LUA)));
static ADVANCE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| state::lua_script(&format!("{}{ADVANCE}", confirm::CLAIM_LUA)));
static SET_FIELDS_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{}{SET_FIELDS}", confirm::CLAIM_LUA)));
static CANCEL_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| state::lua_script(CANCEL));
static RETRY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| state::lua_script(RETRY));

/// The post ledger.
#[derive(Clone)]
pub struct Ledger {
    conn: Conn,
    keys: Keys,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The result of recording a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new post.
    New,
    /// The id exists already with the same content: nothing was changed (the same id is never posted
    /// twice, and a producer repeating itself is not an error).
    Duplicate,
    /// The id exists already with different content: nothing was changed, and the caller rejects the
    /// submission ("id exists with different content") instead of dropping it silently.
    Conflict,
}

impl Ledger {
    /// A ledger over a connection.
    pub fn new(conn: Conn, keys: Keys) -> Self {
        Self { conn, keys }
    }

    /// The key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A clone of the connection.
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Records a post and queues it for its due time, unless the id exists (then says whether the
    /// existing post has the same content).
    pub async fn create(
        &self,
        id: &str,
        sub: &Submission,
        extra: &[(&str, String)],
    ) -> redis::RedisResult<Created> {
        let now = now_ms();
        let due = sub.publish_at.map(|t| t.timestamp_millis()).unwrap_or(now);
        let st = if due > now {
            State::Scheduled
        } else {
            State::Queued
        };
        let mut script = CREATE_SCRIPT.prepare_invoke();
        script
            .key(self.keys.post(id))
            .key(self.keys.posts())
            .key(self.keys.due())
            .key(self.keys.events())
            .key(self.keys.state_counts())
            .key(self.keys.held(&sub.account))
            .key(self.keys.account_posts(&sub.account))
            .arg(id)
            .arg(now)
            .arg(due)
            .arg(st.as_str());
        let mut fields = self.fields_of(id, sub, now, extra);
        for (f, v) in [
            (Field::State, st.as_str().to_string()),
            (Field::DueMs, due.to_string()),
            (Field::HeldMs, due.to_string()),
        ] {
            fields.push((f.as_str().to_string(), v));
        }
        for (k, v) in &fields {
            script.arg(k).arg(v);
        }
        let mut conn = self.conn.clone();
        let n: i32 = script.invoke_async(&mut conn).await?;
        if n == 1 {
            return Ok(Created::New);
        }
        self.compare(id, sub).await
    }

    /// The fields a new post is recorded with, but its state and times of its own.
    fn fields_of(
        &self,
        id: &str,
        sub: &Submission,
        now: i64,
        extra: &[(&str, String)],
    ) -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = sub.to_fields();
        fields.retain(|(k, _)| k != Field::Id.as_str());
        for (f, v) in [
            (Field::Id, id.to_string()),
            (Field::CreatedMs, now.to_string()),
            (Field::UpdatedMs, now.to_string()),
            (Field::Attempts, "0".to_string()),
        ] {
            fields.push((f.as_str().to_string(), v));
        }
        for (k, v) in extra {
            fields.push((k.to_string(), v.clone()));
        }
        fields
    }

    /// For an id that exists: whether its post has the same content as `sub`.
    pub async fn compare(&self, id: &str, sub: &Submission) -> redis::RedisResult<Created> {
        // Posts are never deleted and their submission fields never change, so reading after the
        // script is as good as reading inside it. A stored record that no longer parses is not the same.
        let same = self
            .get(id)
            .await?
            .is_none_or(|p| p.submission().is_ok_and(|s| s.same_content(sub)));
        Ok(if same {
            Created::Duplicate
        } else {
            Created::Conflict
        })
    }

    /// One post.
    pub async fn get(&self, id: &str) -> redis::RedisResult<Option<PostRecord>> {
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> = conn.hgetall(self.keys.post(id)).await?;
        Ok((!fields.is_empty()).then(|| PostRecord::from_hash(fields)))
    }

    /// Only a post's state (one field, for loops that look often); `None` when the post or its
    /// state is missing, or the state is not one this version knows.
    pub async fn state_of(&self, id: &str) -> redis::RedisResult<Option<State>> {
        let mut conn = self.conn.clone();
        let stored: Option<String> = conn.hget(self.keys.post(id), Field::State.as_str()).await?;
        Ok(stored.as_deref().and_then(State::parse))
    }

    /// Changes a post's state and fields and records an event. With `fence`, applies only while that
    /// claim still holds the post's lease. Returns false when not applied.
    pub async fn transition(
        &self,
        id: &str,
        new_state: State,
        fields: &Fields,
        message: &str,
        fence: Option<&str>,
    ) -> redis::RedisResult<bool> {
        let mut script = TRANSITION_SCRIPT.prepare_invoke();
        script
            .key(self.keys.post(id))
            .key(self.keys.events())
            .key(self.keys.dead())
            .key(self.keys.state_counts())
            .key(self.keys.claimed_videos())
            .arg(id)
            .arg(new_state.as_str())
            .arg(now_ms())
            .arg(fence.unwrap_or(""))
            .arg(message)
            .arg(self.keys.held_prefix());
        for (k, v) in record::names(fields) {
            script.arg(k).arg(v);
        }
        let mut conn = self.conn.clone();
        let n: i32 = script.invoke_async(&mut conn).await?;
        if n == 1 {
            crate::telemetry::metrics::post_state(new_state.as_str());
        }
        Ok(n == 1)
    }

    /// Sets fields without a state change, fenced like [`Ledger::transition`] (checked and written in
    /// one script, so a worker that lost its lease can never overwrite its successor's fields).
    pub async fn set_fields(
        &self,
        id: &str,
        fields: &Fields,
        fence: Option<&str>,
    ) -> redis::RedisResult<bool> {
        let mut inv = SET_FIELDS_SCRIPT.prepare_invoke();
        inv.key(self.keys.post(id))
            .key(self.keys.claimed_videos())
            .arg(fence.unwrap_or(""));
        for (k, v) in record::names(fields) {
            inv.arg(k).arg(v);
        }
        let mut conn = self.conn.clone();
        let n: i32 = inv.invoke_async(&mut conn).await?;
        Ok(n == 1)
    }

    /// What a webhook learned about attempt `publish_id`: nothing changes unless it is the post's
    /// current attempt; then `new_state` (if any) only while the post is unsettled, and `fields` always
    /// (`fields_always`) or only with that state change. Returns 3 when the event is about another
    /// attempt, 2 when the state changed, 1 when at most fields were written, 0 when there is no such
    /// post.
    pub async fn advance(
        &self,
        id: &str,
        publish_id: &str,
        new_state: Option<State>,
        fields: &Fields,
        fields_always: bool,
        message: &str,
    ) -> redis::RedisResult<i32> {
        let mut inv = ADVANCE_SCRIPT.prepare_invoke();
        inv.key(self.keys.post(id))
            .key(self.keys.events())
            .key(self.keys.dead())
            .key(self.keys.state_counts())
            .key(self.keys.claimed_videos())
            .arg(id)
            .arg(new_state.map_or("", State::as_str))
            .arg(now_ms())
            .arg(message)
            .arg(publish_id)
            .arg(if fields_always {
                "always"
            } else {
                "with_state"
            });
        for (k, v) in record::names(fields) {
            inv.arg(k).arg(v);
        }
        let mut conn = self.conn.clone();
        let n: i32 = inv.invoke_async(&mut conn).await?;
        if n == 2
            && let Some(st) = new_state
        {
            crate::telemetry::metrics::post_state(st.as_str());
        }
        Ok(n)
    }

    /// How many posts are in each state now (kept by the ledger's scripts).
    pub async fn state_counts(&self) -> redis::RedisResult<std::collections::HashMap<String, i64>> {
        let mut conn = self.conn.clone();
        redis::AsyncCommands::hgetall(&mut conn, self.keys.state_counts()).await
    }

    /// Cancels a post not yet sent. `Err` says why it cannot be cancelled.
    pub async fn cancel(&self, id: &str) -> Result<(), String> {
        self.guarded(&CANCEL_SCRIPT, id, &[]).await.and_then(|r| match r.as_str() {
            "ok" => Ok(()),
            "missing" => Err(format!("no post {id:?}")),
            "in_flight" => Err(format!("post {id} is being sent right now; it can no longer be cancelled")),
            "sent" => Err(format!("post {id} was already sent to TikTok; it can no longer be cancelled")),
            other => Err(format!("post {id} is {other}; only scheduled, queued or deferred posts can be cancelled")),
        })
    }

    /// Re-runs a failed post that never reached TikTok (no `publish_id`). `Err` says why it is refused;
    /// a post that has a `publish_id` needs [`Ledger::retry_confirmed`] after asking TikTok.
    pub async fn retry(&self, id: &str) -> Result<(), String> {
        self.retry_confirmed(id, "").await
    }

    /// Re-runs a failed post whose current attempt is `publish_id`, which TikTok has just confirmed
    /// cannot be published (empty: the post has no attempt). Refused when the post's attempt is
    /// another one by now. `Err` says why it is refused.
    pub async fn retry_confirmed(&self, id: &str, publish_id: &str) -> Result<(), String> {
        let r = self.guarded(&RETRY_SCRIPT, id, &[publish_id]).await?;
        if r == State::Unconfirmed.as_str() {
            let until = self
                .get(id)
                .await
                .ok()
                .flatten()
                .map_or(0, |p| p.confirm_until_ms());
            return Err(confirm::unconfirmed_refusal(id, until, now_ms()));
        }
        match r.as_str() {
            "ok" => Ok(()),
            "missing" => Err(format!("no post {id:?}")),
            "sent" => Err(format!(
                "post {id} has an attempt at TikTok; `tiktok-poster retry {id}` asks TikTok for its status first"
            )),
            "changed" => Err(format!(
                "post {id} changed while TikTok was asked about it; nothing was done, run the command again"
            )),
            other => Err(format!(
                "post {id} is {other}; only failed posts can be retried"
            )),
        }
    }

    async fn guarded(
        &self,
        script: &redis::Script,
        id: &str,
        extra: &[&str],
    ) -> Result<String, String> {
        let mut conn = self.conn.clone();
        let mut inv = script.prepare_invoke();
        inv.key(self.keys.post(id))
            .key(self.keys.due())
            .key(self.keys.events())
            .key(self.keys.dead())
            .key(self.keys.state_counts())
            .arg(id)
            .arg(now_ms())
            .arg(self.keys.held_prefix());
        for a in extra {
            inv.arg(*a);
        }
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| format!("redis: {e}"))
    }

    /// Posts, newest first, optionally in one state.
    pub async fn list(
        &self,
        only: Option<State>,
        limit: usize,
    ) -> redis::RedisResult<Vec<PostRecord>> {
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        let mut offset = 0isize;
        let page = 500isize;
        while out.len() < limit {
            let ids: Vec<String> = conn
                .zrevrange(self.keys.posts(), offset, offset + page - 1)
                .await?;
            if ids.is_empty() {
                break;
            }
            offset += page;
            for id in ids {
                if let Some(p) = self.get(&id).await?
                    && only.is_none_or(|s| p.current() == Some(s))
                {
                    out.push(p);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}
