//! `posting_blocked`: TikTok says an account (or, for the app's daily quota of active creators, every
//! account) may not post now. Stored in Redis so that every daemon sees it: an account's block in its
//! hash (`blocked_code`, `blocked_message`, `blocked_since_ms`, `blocked_checked_ms`), the app's in
//! `{ns}:app_blocked` with the same fields.
//!
//! While a block holds, the account's posts that TikTok has not got yet wait (`deferred` with
//! `error_code` `posting_blocked`) instead of failing one by one; one worker at a time (a lock per
//! scope) asks `creator_info` on a slow schedule whether the block has lifted. This file reads, sets
//! and clears the block, and holds the pure rules: which TikTok codes block ([`scope_of`]), when a
//! block is due for a re-check ([`recheck_due`]) and what a held post's message says.
//!
//! Every value read back is bounded: a code or a message longer than TikTok ever sends is cut.

use std::collections::HashMap;

use redis::AsyncCommands;
use serde::Serialize;

use super::Accounts;
use crate::db::now_ms;

/// The `error_code` of a post held by a block, and the state `accounts list` shows.
pub const POSTING_BLOCKED: &str = "posting_blocked";

/// The account-hash fields (and the app hash's) that hold a block.
const FIELDS: [&str; 4] = [
    "blocked_code",
    "blocked_message",
    "blocked_since_ms",
    "blocked_checked_ms",
];

/// Bytes kept of a stored code and message (TikTok's are far shorter).
const MAX_CODE: usize = 128;
const MAX_MESSAGE: usize = 1024;

/// Whom a block stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One account (`spam_risk_user_banned_from_posting`).
    Account,
    /// Every account of the app (`reached_active_user_cap`).
    App,
}

impl Scope {
    /// `account` or `app`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::App => "app",
        }
    }
}

/// A block as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    /// Whom it stops.
    pub scope: Scope,
    /// TikTok's code (`spam_risk_user_banned_from_posting`, `reached_active_user_cap`).
    pub code: String,
    /// TikTok's answer in words.
    pub message: String,
    /// Since when (ms).
    pub since_ms: i64,
    /// When `creator_info` last said it still holds (ms; `since_ms` at first).
    pub checked_ms: i64,
}

/// Which block a TikTok error code means, if any: the account's ban, or the app's daily quota of
/// active creators. Not `spam_risk_too_many_posts`: that is the creator's daily cap, which passes
/// with its 24-hour window (the post is deferred, not held).
pub fn scope_of(code: &str) -> Option<Scope> {
    match code {
        "spam_risk_user_banned_from_posting" => Some(Scope::Account),
        "reached_active_user_cap" => Some(Scope::App),
        _ => None,
    }
}

/// Whether the block's last check is at least `interval_ms` old at `now_ms`.
pub fn recheck_due(block: &Block, now_ms: i64, interval_ms: i64) -> bool {
    now_ms.saturating_sub(block.checked_ms) >= interval_ms
}

/// When a post that finds the block checked recently (or the check under way elsewhere) looks again:
/// the next re-check, plus `jitter_ms` so held posts do not all come due in the same second, and
/// never sooner than `now_ms + min_wait_ms`.
pub fn next_look(
    block: &Block,
    now_ms: i64,
    interval_ms: i64,
    jitter_ms: i64,
    min_wait_ms: i64,
) -> i64 {
    block
        .checked_ms
        .saturating_add(interval_ms)
        .max(now_ms.saturating_add(min_wait_ms))
        .saturating_add(jitter_ms)
}

/// What the operator can do about a block of this code.
pub fn what_to_do(code: &str) -> &'static str {
    match scope_of(code) {
        Some(Scope::Account) => {
            "TikTok has banned this account from posting: contact TikTok support (give them the log_id); the posts wait and go once TikTok allows it, or after `tiktok-poster accounts resume NAME`"
        }
        Some(Scope::App) => {
            "the app reached TikTok's daily quota of active creators: it frees with TikTok's day, and is raised through the app's audit and usage estimate in the developer portal; the posts wait and go once TikTok allows it, or after `tiktok-poster accounts resume --app`"
        }
        None => "the posts wait until TikTok allows posting again",
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// The `error_message` of a post held by `block` for `account`, looking again at `until_ms`.
pub fn held_message(account: &str, block: &Block, until_ms: i64) -> String {
    let who = match block.scope {
        Scope::Account => format!("account {account:?} may not post"),
        Scope::App => "the app may not post for any account".to_string(),
    };
    format!(
        "posting_blocked: {who} since {} (TikTok answered {}: {}); {}; next check {}",
        rfc3339(block.since_ms),
        block.code,
        block.message,
        what_to_do(&block.code),
        rfc3339(until_ms)
    )
}

/// `s` cut to at most `max` bytes on a character boundary.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[cut]", &s[..end])
}

/// The block in a hash's fields, if one is set.
pub(super) fn from_hash(scope: Scope, h: &HashMap<String, String>) -> Option<Block> {
    let code = h.get("blocked_code").filter(|c| !c.is_empty())?;
    let n = |k: &str| h.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    let since_ms = n("blocked_since_ms");
    Some(Block {
        scope,
        code: bounded(code, MAX_CODE),
        message: bounded(
            h.get("blocked_message").map_or("", String::as_str),
            MAX_MESSAGE,
        ),
        since_ms,
        checked_ms: n("blocked_checked_ms").max(since_ms),
    })
}

/// Sets a block unless one is set: KEYS[1] the hash; ARGV: code, message, now, and `1` when the
/// hash must exist already (an account's: a removed account is not brought back). A block already
/// set keeps its `since`, takes the new code and message, and counts as checked now. Returns 1 when
/// newly set, 0 when it was already set, -1 when the account is gone.
const SET: &str = r#"
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local had = redis.call('HGET', KEYS[1], 'blocked_code')
redis.call('HSET', KEYS[1], 'blocked_code', ARGV[1], 'blocked_message', ARGV[2], 'blocked_checked_ms', ARGV[3])
if had and had ~= '' then return 0 end
redis.call('HSET', KEYS[1], 'blocked_since_ms', ARGV[3])
return 1
"#;

/// Marks a block checked: KEYS[1] the hash; ARGV: now. Only while a block is set.
const TOUCH: &str = r#"
local had = redis.call('HGET', KEYS[1], 'blocked_code')
if not had or had == '' then return 0 end
redis.call('HSET', KEYS[1], 'blocked_checked_ms', ARGV[1])
return 1
"#;

impl Accounts {
    fn block_key(&self, scope: Scope, account: &str) -> String {
        match scope {
            Scope::Account => self.keys.account(account),
            Scope::App => self.keys.app_blocked(),
        }
    }

    /// The blocks that stop `account` from posting now: the app's first, then the account's own.
    /// One round trip.
    pub async fn posting_blocks(&self, account: &str) -> redis::RedisResult<Vec<Block>> {
        let mut conn = self.conn.clone();
        let (app, own): (Vec<Option<String>>, Vec<Option<String>>) = redis::pipe()
            .cmd("HMGET")
            .arg(self.keys.app_blocked())
            .arg(&FIELDS[..])
            .cmd("HMGET")
            .arg(self.keys.account(account))
            .arg(&FIELDS[..])
            .query_async(&mut conn)
            .await?;
        let as_hash = |v: Vec<Option<String>>| -> HashMap<String, String> {
            FIELDS
                .iter()
                .zip(v)
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
                .collect()
        };
        Ok([
            from_hash(Scope::App, &as_hash(app)),
            from_hash(Scope::Account, &as_hash(own)),
        ]
        .into_iter()
        .flatten()
        .collect())
    }

    /// The app-wide block, if set.
    pub async fn app_block(&self) -> redis::RedisResult<Option<Block>> {
        let mut conn = self.conn.clone();
        let h: HashMap<String, String> = conn.hgetall(self.keys.app_blocked()).await?;
        Ok(from_hash(Scope::App, &h))
    }

    /// Blocks `account` (or, with [`Scope::App`], every account) after TikTok answered `code`.
    /// Returns true when the block is new (the caller logs it and records the event); a block set
    /// already only counts as checked now.
    pub async fn set_block(
        &self,
        scope: Scope,
        account: &str,
        code: &str,
        message: &str,
    ) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let n: i32 = redis::Script::new(SET)
            .key(self.block_key(scope, account))
            .arg(bounded(code, MAX_CODE))
            .arg(bounded(message, MAX_MESSAGE))
            .arg(now_ms())
            .arg(if scope == Scope::Account { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await?;
        if n == 1 {
            self.block_event(scope, account, POSTING_BLOCKED, code, message)
                .await;
        }
        Ok(n == 1)
    }

    /// Notes that `creator_info` was asked now and the block still holds.
    pub async fn touch_block(&self, scope: Scope, account: &str) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let _: i32 = redis::Script::new(TOUCH)
            .key(self.block_key(scope, account))
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Clears a block; returns it when one was set (the caller says why in `how`, for the log and
    /// the event).
    pub async fn clear_block(
        &self,
        scope: Scope,
        account: &str,
        how: &str,
    ) -> redis::RedisResult<Option<Block>> {
        let key = self.block_key(scope, account);
        let mut conn = self.conn.clone();
        let h: HashMap<String, String> = conn.hgetall(&key).await?;
        let Some(block) = from_hash(scope, &h) else {
            return Ok(None);
        };
        let n: i32 = conn.hdel(&key, &FIELDS[..]).await?;
        if n > 0 {
            self.block_event(scope, account, "posting_unblocked", &block.code, how)
                .await;
        }
        Ok(Some(block))
    }

    /// Takes the re-check lock of a scope for `ttl_ms` (SET NX PX): true when this caller is the one
    /// worker that asks `creator_info` now.
    pub async fn take_recheck_lock(
        &self,
        scope: Scope,
        account: &str,
        ttl_ms: i64,
    ) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.recheck_lock_key(scope, account))
            .arg(now_ms())
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut conn)
            .await?;
        Ok(taken.is_some())
    }

    /// Gives the re-check lock back (the check ended).
    pub async fn drop_recheck_lock(&self, scope: Scope, account: &str) {
        let mut conn = self.conn.clone();
        let _: redis::RedisResult<i32> = conn.del(self.recheck_lock_key(scope, account)).await;
    }

    fn recheck_lock_key(&self, scope: Scope, account: &str) -> String {
        match scope {
            Scope::Account => self.keys.blocked_check_lock(&format!("account:{account}")),
            Scope::App => self.keys.blocked_check_lock("app"),
        }
    }

    /// Logs a block or unblock and records it on the events stream (`scope`, `account` when it is
    /// an account's, `event`, `code`, `at`, `message`). Best effort: the block itself is in Redis.
    async fn block_event(&self, scope: Scope, account: &str, event: &str, code: &str, why: &str) {
        let who = match scope {
            Scope::Account => account,
            Scope::App => "",
        };
        if event == POSTING_BLOCKED {
            tracing::warn!(
                account = who,
                scope = scope.as_str(),
                code,
                message = why,
                "Posting blocked: TikTok says this {} may not post now; its posts wait.",
                scope.as_str()
            );
        } else {
            tracing::info!(
                account = who,
                scope = scope.as_str(),
                code,
                message = why,
                "Posting allowed again: the {} block is cleared.",
                scope.as_str()
            );
        }
        let mut fields: Vec<(&str, String)> = vec![("scope", scope.as_str().to_string())];
        if scope == Scope::Account {
            fields.push(("account", account.to_string()));
        }
        fields.extend([
            ("event", event.to_string()),
            ("code", code.to_string()),
            ("at", now_ms().to_string()),
            ("message", bounded(why, MAX_MESSAGE)),
        ]);
        let mut conn = self.conn.clone();
        let _: redis::RedisResult<String> = redis::cmd("XADD")
            .arg(self.keys.events())
            .arg("MAXLEN")
            .arg("~")
            .arg(100_000)
            .arg("*")
            .arg(&fields)
            .query_async(&mut conn)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(scope: Scope, since: i64, checked: i64) -> Block {
        Block {
            scope,
            code: "spam_risk_user_banned_from_posting".into(),
            message: "The user is banned from posting.".into(),
            since_ms: since,
            checked_ms: checked,
        }
    }

    #[test]
    fn only_the_ban_and_the_app_quota_block_and_the_daily_cap_does_not() {
        assert_eq!(
            scope_of("spam_risk_user_banned_from_posting"),
            Some(Scope::Account)
        );
        assert_eq!(scope_of("reached_active_user_cap"), Some(Scope::App));
        for code in [
            "spam_risk_too_many_posts",
            "spam_risk_too_many_pending_share",
            "internal_error",
            "privacy_level_option_mismatch",
            "",
        ] {
            assert_eq!(scope_of(code), None, "{code}");
        }
    }

    #[test]
    fn a_recheck_is_due_once_the_interval_passed_since_the_last_check() {
        let b = block(Scope::Account, 1_000, 5_000);
        assert!(!recheck_due(&b, 5_999, 1_000));
        assert!(recheck_due(&b, 6_000, 1_000));
        assert!(recheck_due(&b, i64::MAX, 1_000));
    }

    #[test]
    fn a_held_post_looks_again_after_the_next_check_spread_by_its_jitter() {
        let b = block(Scope::App, 0, 10_000);
        assert_eq!(next_look(&b, 10_500, 1_800_000, 0, 1_000), 1_810_000);
        assert_eq!(next_look(&b, 10_500, 1_800_000, 7_000, 1_000), 1_817_000);
        // A check that is overdue (another worker holds the lock): not before the minimum wait.
        assert_eq!(next_look(&b, 5_000_000, 1_000, 0, 2_000), 5_002_000);
        assert_eq!(next_look(&b, i64::MAX - 5, i64::MAX, 9, 9), i64::MAX);
    }

    #[test]
    fn a_stored_block_is_read_bounded_and_absent_without_a_code() {
        let mut h = HashMap::new();
        assert_eq!(from_hash(Scope::Account, &h), None);
        h.insert("blocked_code".to_string(), String::new());
        assert_eq!(from_hash(Scope::Account, &h), None);
        h.insert("blocked_code".to_string(), "c".repeat(10_000));
        h.insert("blocked_message".to_string(), "é".repeat(10_000));
        h.insert("blocked_since_ms".to_string(), "42".into());
        h.insert("blocked_checked_ms".to_string(), "junk".into());
        let b = from_hash(Scope::Account, &h).unwrap();
        assert!(b.code.len() < 200 && b.message.len() < 1100);
        assert_eq!((b.since_ms, b.checked_ms), (42, 42));
    }

    #[test]
    fn the_held_message_names_the_code_reason_since_and_what_to_do() {
        let b = block(Scope::Account, 1_764_000_000_000, 1_764_000_000_000);
        let m = held_message("main", &b, 1_764_000_060_000);
        assert!(
            m.starts_with("posting_blocked: account \"main\" may not post since 2025-11-24T"),
            "{m}"
        );
        assert!(
            m.contains("spam_risk_user_banned_from_posting: The user is banned"),
            "{m}"
        );
        assert!(m.contains("contact TikTok support"), "{m}");
        assert!(m.contains("accounts resume NAME"), "{m}");
        let app = Block {
            scope: Scope::App,
            code: "reached_active_user_cap".into(),
            ..b
        };
        let m = held_message("main", &app, 0);
        assert!(m.contains("the app may not post for any account"), "{m}");
        assert!(m.contains("audit and usage estimate"), "{m}");
    }
}
