//! Single-flight token refresh: one refresher per account across every process sharing the Redis.
//!
//! A lock (`SET NX PX`) elects the refresher; the others wait for it and read its result. The new
//! access token and the rotated refresh token are written in one Lua step that first checks the stored
//! refresh token is still the one that was used (compare-and-set), so two refreshers can never
//! overwrite each other with a token TikTok has already rotated away. Refresh times are planned from
//! TikTok's own `expires_in`, early enough for any post started with the token, and spread.

use std::time::Duration;

use redis::AsyncCommands;
use secrecy::SecretString;

use super::{AccountError, Accounts, STATE_REAUTH};
use crate::db::now_ms;
use crate::tiktok::Disposition;

/// Writes the refreshed tokens only if the stored refresh token is still the one that was used.
const CAS_TOKENS: &str = r#"
if redis.call('HGET', KEYS[1], 'refresh_sealed') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'access_sealed', ARGV[2], 'refresh_sealed', ARGV[3],
  'access_expires_ms', ARGV[4], 'refresh_expires_ms', ARGV[5], 'key_id', ARGV[6],
  'refreshed_ms', ARGV[7], 'state', 'ok', 'scopes', ARGV[8], 'access_lifetime_ms', ARGV[9], 'last_error', '')
redis.call('ZADD', KEYS[2], ARGV[10], ARGV[11])
return 1
"#;

/// When to refresh a token issued at `issued_ms` that lives `lifetime_ms`: early enough that it outlives
/// any upload and status follow started with it (`margin`), and spread by a random tenth of its life so
/// that thousands of accounts do not refresh in the same minute.
pub fn plan_refresh(issued_ms: i64, lifetime_ms: i64) -> i64 {
    use rand::Rng;
    let margin = refresh_margin_ms(lifetime_ms);
    let jitter = rand::rng().random_range(0..=(lifetime_ms / 10).max(1));
    issued_ms + lifetime_ms - margin - jitter
}

/// How much life a token must have left when a post starts with it: 90 minutes (an upload URL's hour
/// plus the status follow), or 40% of the token's life when that is shorter.
pub fn refresh_margin_ms(lifetime_ms: i64) -> i64 {
    (90 * 60_000).min(lifetime_ms * 2 / 5)
}

/// Deletes a lock only if we still hold it.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

impl Accounts {
    /// The account's hash and when its access token expires (ms, 0 when unknown), unless the account
    /// must be connected again.
    async fn usable(
        &self,
        name: &str,
    ) -> Result<(std::collections::HashMap<String, String>, i64), AccountError> {
        let h = self.raw(name).await?;
        if h.get("state").map(String::as_str) == Some(STATE_REAUTH) {
            return Err(AccountError::ReauthRequired(name.to_string()));
        }
        let expires: i64 = h
            .get("access_expires_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((h, expires))
    }

    /// A usable access token that stays valid for at least `min_valid` (refreshing first if needed).
    pub async fn access_token(
        &self,
        name: &str,
        min_valid: Duration,
    ) -> Result<SecretString, AccountError> {
        let (h, expires) = self.usable(name).await?;
        let lifetime: i64 = h
            .get("access_lifetime_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MAX / 4);
        let min_valid = Duration::from_millis(
            (min_valid.as_millis() as i64)
                .min(refresh_margin_ms(lifetime))
                .max(0) as u64,
        );
        if expires - now_ms() > min_valid.as_millis() as i64 {
            return self.open(name, h.get("access_sealed"));
        }
        self.refresh_single_flight(name, min_valid, false).await
    }

    /// Refreshes now (the `accounts refresh` command, or after TikTok refused the token).
    pub async fn force_refresh(&self, name: &str) -> Result<SecretString, AccountError> {
        self.refresh_single_flight(name, Duration::from_millis(1), true)
            .await
    }

    async fn refresh_single_flight(
        &self,
        name: &str,
        min_valid: Duration,
        force: bool,
    ) -> Result<SecretString, AccountError> {
        let mut conn = self.conn.clone();
        let lock = self.keys.refresh_lock(name);
        let me = crate::db::random_id();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let before = self.raw(name).await?.get("refresh_sealed").cloned();
        loop {
            let got: bool = redis::cmd("SET")
                .arg(&lock)
                .arg(&me)
                .arg("NX")
                .arg("PX")
                .arg(30_000)
                .query_async::<Option<String>>(&mut conn)
                .await?
                .is_some();
            if got {
                break;
            }
            // Someone else refreshes; wait for them, then use what they stored. Not a backoff (so not
            // backon): a lock wait polling on a fixed cadence until the holder's result or the deadline.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let h = self.raw(name).await?;
            if h.get("refresh_sealed") != before.as_ref() {
                if h.get("state").map(String::as_str) == Some(STATE_REAUTH) {
                    return Err(AccountError::ReauthRequired(name.to_string()));
                }
                return self.open(name, h.get("access_sealed"));
            }
            if tokio::time::Instant::now() > deadline {
                break;
            }
        }
        let result = self.refresh_locked(name, min_valid, force, before).await;
        let _: i32 = redis::Script::new(UNLOCK)
            .key(&lock)
            .arg(&me)
            .invoke_async(&mut conn)
            .await
            .unwrap_or(0);
        result
    }

    async fn refresh_locked(
        &self,
        name: &str,
        min_valid: Duration,
        force: bool,
        before: Option<String>,
    ) -> Result<SecretString, AccountError> {
        let (h, expires) = self.usable(name).await?;
        let rotated_meanwhile = h.get("refresh_sealed") != before.as_ref();
        if force && min_valid.is_zero() && !rotated_meanwhile {
            // A planned refresh: under the lock, check it is still due (another process may have
            // refreshed and planned the next one since this one read the plan).
            let mut conn = self.conn.clone();
            let at: Option<f64> = conn.zscore(self.keys.refresh_due(), name).await?;
            if at.is_some_and(|t| t as i64 > now_ms()) && expires > now_ms() {
                return self.open(name, h.get("access_sealed"));
            }
        }
        if (rotated_meanwhile || !force) && expires - now_ms() > min_valid.as_millis() as i64 {
            return self.open(name, h.get("access_sealed"));
        }
        let old_sealed = h.get("refresh_sealed").cloned().unwrap_or_default();
        let refresh = self.open(name, Some(&old_sealed))?;
        let tokens = match self.client.refresh(&refresh).await {
            Ok(t) => t,
            Err(e) => {
                if e.disposition() == Disposition::Fail {
                    self.mark_reauth(name, &e.to_string()).await?;
                    tracing::warn!(account = name, error = %e, "Token refresh refused; the account must be connected again.");
                    return Err(AccountError::ReauthRequired(name.to_string()));
                }
                return Err(AccountError::Refresh {
                    account: name.to_string(),
                    source: Box::new(e),
                });
            }
        };
        let now = now_ms();
        let mut conn = self.conn.clone();
        let written: i32 = redis::Script::new(CAS_TOKENS)
            .key(self.keys.account(name))
            .key(self.keys.refresh_due())
            .arg(&old_sealed)
            .arg(self.key.seal(name, &tokens.access_token))
            .arg(self.key.seal(name, &tokens.refresh_token))
            .arg(now + tokens.expires_in.as_millis() as i64)
            .arg(now + tokens.refresh_expires_in.as_millis() as i64)
            .arg(self.key.id())
            .arg(now)
            .arg(tokens.scopes.join(","))
            .arg(tokens.expires_in.as_millis() as i64)
            .arg(plan_refresh(now, tokens.expires_in.as_millis() as i64))
            .arg(name)
            .invoke_async(&mut conn)
            .await?;
        if written == 0 {
            // Another writer replaced the grant (a reconnect); use what is stored now.
            let h = self.raw(name).await?;
            return self.open(name, h.get("access_sealed"));
        }
        tracing::info!(
            account = name,
            expires_in_secs = tokens.expires_in.as_secs(),
            "Token refreshed."
        );
        Ok(tokens.access_token)
    }

    /// The planned refresh, run by the daemon's refresher: refreshes unless another process already did
    /// since the plan was made.
    pub async fn planned_refresh(&self, name: &str) -> Result<(), AccountError> {
        let h = self.raw(name).await?;
        if h.get("state").map(String::as_str) == Some(STATE_REAUTH) {
            let mut conn = self.conn.clone();
            let _: () = conn.zrem(self.keys.refresh_due(), name).await?;
            return Ok(());
        }
        self.refresh_single_flight(name, Duration::ZERO, true)
            .await
            .map(|_| ())
    }
}
