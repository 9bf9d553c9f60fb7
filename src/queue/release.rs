//! Bringing held posts forward: when a `posting_blocked` account (or the app) may post again, or a
//! warm-up is skipped, its waiting posts are due again, spread apart in the order of their calendar
//! instants so that they do not all reach TikTok in the same second (the daily budget still applies
//! when each is worked on).
//!
//! Only a post that is waiting for that reason is moved: `deferred` with the given `error_code`
//! (`posting_blocked`, `warming_up`), no `publish_id`, not claimed by a worker, and in the due index
//! (checked in one script with the move, so a post a worker holds is never queued twice).

use std::sync::LazyLock;

use crate::posts::{Ledger, State};

/// The gap between two released posts of one release after a posting block.
pub const RELEASE_STAGGER_MS: i64 = 2_000;

/// KEYS: post, due. ARGV: id, at, the held code. Returns 1 when the post was brought forward.
const BRING_FORWARD: &str = r#"
local f = redis.call('HMGET', KEYS[1], 'state', 'error_code', 'publish_id', 'lease_owner')
if f[1] ~= S_DEFERRED or f[2] ~= ARGV[3] then return 0 end
if f[3] and f[3] ~= '' then return 0 end
if f[4] and f[4] ~= '' then return 0 end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[1], 'deferred_until_ms', ARGV[2])
return 1
"#;

static BRING_FORWARD_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| crate::posts::state::lua_script(BRING_FORWARD));

/// Ids read per round trip.
const PAGE: usize = 500;

/// Makes the posts of `accounts` that wait `deferred` with `error_code` = `code` due from
/// `start_ms` on, one every `stagger_ms`; returns how many were moved.
pub async fn release_held(
    ledger: &Ledger,
    accounts: &[String],
    code: &str,
    start_ms: i64,
    stagger_ms: i64,
) -> redis::RedisResult<usize> {
    let keys = ledger.keys().clone();
    let mut conn = ledger.conn();
    let mut held = Vec::new();
    for account in accounts {
        let ids = ledger.held_between(account, i64::MIN, i64::MAX).await?;
        for page in ids.chunks(PAGE) {
            let mut pipe = redis::pipe();
            for (id, _) in page {
                pipe.cmd("HMGET")
                    .arg(keys.post(id))
                    .arg("state")
                    .arg("error_code");
            }
            let rows: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut conn).await?;
            for ((id, at), (state, state_code)) in page.iter().zip(rows) {
                if state.as_deref() == Some(State::Deferred.as_str())
                    && state_code.as_deref() == Some(code)
                {
                    held.push((*at, id.clone()));
                }
            }
        }
    }
    held.sort();
    let mut moved = 0;
    for (_, id) in held {
        let at = start_ms.saturating_add(stagger_ms.saturating_mul(moved as i64));
        let n: i32 = BRING_FORWARD_SCRIPT
            .key(keys.post(&id))
            .key(keys.due())
            .arg(&id)
            .arg(at)
            .arg(code)
            .invoke_async(&mut conn)
            .await?;
        moved += n as usize;
    }
    Ok(moved)
}
