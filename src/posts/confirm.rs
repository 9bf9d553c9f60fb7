//! Claims of TikTok video ids, and the one ledger step that confirms a post from TikTok's video list.
//!
//! Every public id recorded on a post (by a status look, a webhook, or the list lookup) is claimed in
//! one hash per namespace (`<ns>:claimed_videos`, video id → post id) inside the script that records
//! it, so the list lookup of an `unconfirmed` post can skip videos that are another post's, and two
//! posts can never both be confirmed with the same video: the confirming script claims the id with
//! `HSETNX` and refuses when another post holds it.

use std::sync::LazyLock;

use super::{Ledger, State, state};
use crate::db::now_ms;

/// Lua: `claim_post_id(post_key, claimed_key, from)` claims a `post_id` among the field pairs of ARGV
/// starting at `from` for the post whose hash is `post_key` (first claim wins). Prepended to the
/// ledger's scripts that write fields.
pub(super) const CLAIM_LUA: &str = r#"
local function claim_post_id(post_key, claimed, from)
  for i = from, #ARGV - 1, 2 do
    if ARGV[i] == 'post_id' and ARGV[i + 1] ~= '' then
      local owner = redis.call('HGET', post_key, 'id')
      if owner then redis.call('HSETNX', claimed, ARGV[i + 1], owner) end
    end
  end
end
"#;

/// Confirms post ARGV[1] as video ARGV[4]: only while it is in state ARGV[5] (`unconfirmed`, or
/// `published` without its id), fenced by the lease (ARGV[3]) when given, and only when no other post
/// claimed the video. From `unconfirmed` it becomes `published` (state counts, dead set, an event);
/// from `published` only the id and URL are written. ARGV[6]: the URL, ARGV[7]: the message, ARGV[8]:
/// when it was published (ms). Returns 'ok', 'missing', 'lease', the state it is in, or 'claimed:ID'.
const CONFIRM: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'lease_owner') ~= ARGV[3] then return 'lease' end
local st = redis.call('HGET', KEYS[1], 'state') or ''
if st ~= ARGV[5] then return st end
if st == S_PUBLISHED and (redis.call('HGET', KEYS[1], 'post_id') or '') ~= '' then return 'has_id' end
local owner = redis.call('HGET', KEYS[5], ARGV[4])
if owner and owner ~= ARGV[1] then return 'claimed:' .. owner end
redis.call('HSET', KEYS[5], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[1], 'post_id', ARGV[4], 'url', ARGV[6], 'confirmed_by', 'video_list', 'candidates', '')
if st == S_UNCONFIRMED then
  redis.call('HINCRBY', KEYS[4], st, -1)
  redis.call('HINCRBY', KEYS[4], S_PUBLISHED, 1)
  redis.call('HSET', KEYS[1], 'state', S_PUBLISHED, 'updated_ms', ARGV[2], 'published_ms', ARGV[8],
    'error_code', '', 'error_message', '')
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1], 'state', S_PUBLISHED, 'at', ARGV[2], 'message', ARGV[7])
end
return 'ok'
"#;

static CONFIRM_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| state::lua_script(CONFIRM));

/// What [`Ledger::confirm_video`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// Recorded (and, from `unconfirmed`, moved to `published`).
    Done,
    /// No such post.
    Missing,
    /// The claim's lease was lost.
    LeaseLost,
    /// The post is no longer in the expected state (or already has its id): nothing written.
    Changed(String),
    /// Another post claimed this video first: nothing written.
    ClaimedBy(String),
}

/// Why `retry` refuses an `unconfirmed` post: while the daemon still looks for it on TikTok's video
/// list (until `until_ms`), it must not be submitted again; after that, only once the app does not
/// show it.
pub(super) fn unconfirmed_refusal(id: &str, until_ms: i64, now_ms: i64) -> String {
    if until_ms > now_ms {
        let until = chrono::DateTime::from_timestamp_millis(until_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        format!(
            "post {id} is unconfirmed: TikTok may have published it, and the daemon is still looking for it on the account's public video list (until {until}); it becomes published by itself when found, so do not submit it again meanwhile"
        )
    } else {
        format!(
            "post {id} is unconfirmed: TikTok may have published it, and the daemon no longer looks for it (see its error_message); check the account in the TikTok app, and submit it again under a new id only if it is not there"
        )
    }
}

impl Ledger {
    /// Records `video_id` (and `url`) as post `id`'s public id, found on TikTok's video list: from
    /// `unconfirmed` the post becomes `published`; from `published` (without an id) only the id and
    /// URL are written. Atomic with the claim of the video id, fenced by the lease when given.
    #[allow(clippy::too_many_arguments)]
    pub async fn confirm_video(
        &self,
        id: &str,
        from: State,
        video_id: u64,
        url: &str,
        published_ms: i64,
        message: &str,
        fence: Option<&str>,
    ) -> redis::RedisResult<Confirmed> {
        let mut conn = self.conn.clone();
        let r: String = CONFIRM_SCRIPT
            .key(self.keys.post(id))
            .key(self.keys.events())
            .key(self.keys.dead())
            .key(self.keys.state_counts())
            .key(self.keys.claimed_videos())
            .arg(id)
            .arg(now_ms())
            .arg(fence.unwrap_or(""))
            .arg(video_id.to_string())
            .arg(from.as_str())
            .arg(url)
            .arg(message)
            .arg(published_ms)
            .invoke_async(&mut conn)
            .await?;
        let done = match r.as_str() {
            "ok" => Confirmed::Done,
            "missing" => Confirmed::Missing,
            "lease" => Confirmed::LeaseLost,
            other => match other.strip_prefix("claimed:") {
                Some(owner) => Confirmed::ClaimedBy(owner.to_string()),
                None => Confirmed::Changed(other.to_string()),
            },
        };
        if done == Confirmed::Done && from == State::Unconfirmed {
            crate::telemetry::metrics::post_state(State::Published.as_str());
        }
        Ok(done)
    }

    /// The posts that claimed each of `video_ids` (`None`: unclaimed), in order.
    pub async fn claimed_by(&self, video_ids: &[u64]) -> redis::RedisResult<Vec<Option<String>>> {
        if video_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.claimed_videos());
        for v in video_ids {
            cmd.arg(v.to_string());
        }
        cmd.query_async(&mut conn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_never_advises_resubmitting_while_the_daemon_looks() {
        let looking = unconfirmed_refusal("p1", 2_000, 1_000);
        assert!(looking.contains("do not submit it again"), "{looking}");
        assert!(!looking.contains("new id"), "{looking}");
        let over = unconfirmed_refusal("p1", 0, 1_000);
        assert!(over.contains("only if it is not there"), "{over}");
    }
}
