//! The account store: each TikTok account's tokens, sealed in Redis, and their single-flight refresh.
//!
//! An account is a hash `{ns}:account:{name}` holding the sealed access and refresh tokens (never in
//! clear text), their expiry times (from TikTok's own `expires_in`, never assumed), the key id that
//! sealed them, the creator's open_id and username, and a state: `ok` or `reauth_required`.
//!
//! Refresh is single-flight per account across every process sharing the Redis: a lock
//! (`SET NX PX`) elects one refresher; the others wait for it and read its result. The new access token
//! and the rotated refresh token are written in one Lua step that first checks the stored refresh token
//! is still the one that was used (compare-and-set), so two refreshers can never overwrite each other
//! with a token TikTok has already rotated away.

pub mod connect;
pub mod crypto;
pub mod refresher;

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use secrecy::SecretString;
use serde::Serialize;

use crate::db::{Keys, now_ms};
use crate::tiktok::{Client, Disposition, TikTokError, TokenSet};
pub use crypto::{CryptoError, TokenKey};

/// Account state: posts of a `reauth_required` account wait until the user connects it again.
pub const STATE_OK: &str = "ok";
/// See [`STATE_OK`].
pub const STATE_REAUTH: &str = "reauth_required";
/// Shown (never stored) for an account whose tokens were sealed with a key that is not configured:
/// its posts wait until the right key is configured or the account is connected again.
pub const STATE_KEY_MISMATCH: &str = "key_mismatch";

/// What went wrong getting a token.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No such account.
    #[error("account {0:?} is not connected; connect it with `tiktok-poster accounts connect {0}`")]
    NotFound(String),
    /// The grant is gone; the user must connect again.
    #[error(
        "account {0:?} must be connected again (its authorization was revoked or expired): `tiktok-poster accounts connect {0}`"
    )]
    ReauthRequired(String),
    /// TikTok refused or failed the refresh.
    #[error("refreshing the token of account {account:?} failed: {source}")]
    Refresh {
        /// The account.
        account: String,
        /// TikTok's error.
        source: Box<TikTokError>,
    },
    /// Sealing or opening failed.
    #[error("account {account:?}: {source}")]
    Crypto {
        /// The account.
        account: String,
        /// What failed.
        source: CryptoError,
    },
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl AccountError {
    /// The sealed value was sealed with a key that is not configured: `(found, expected)` key ids.
    pub fn wrong_key(&self) -> Option<(&str, &str)> {
        match self {
            Self::Crypto {
                source: CryptoError::WrongKey { found, expected },
                ..
            } => Some((found, expected)),
            _ => None,
        }
    }

    /// True when retrying later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Redis(_) => true,
            Self::Refresh { source, .. } => source.disposition().is_retryable(),
            _ => false,
        }
    }
}

/// What `accounts list` shows; no secrets.
#[derive(Debug, Clone, Serialize)]
pub struct AccountInfo {
    /// The name posts use.
    pub name: String,
    /// TikTok's id of the user for this app.
    pub open_id: String,
    /// The @handle, when known.
    pub username: String,
    /// `ok`, `reauth_required`, or `key_mismatch` (sealed with a key that is not configured).
    pub state: String,
    /// When the access token expires (ms since the epoch).
    pub access_expires_ms: i64,
    /// When the refresh token expires: the user must connect again before then.
    pub refresh_expires_ms: i64,
    /// Granted scopes.
    pub scopes: String,
    /// The key that sealed the tokens.
    pub key_id: String,
    /// Last successful refresh (ms), 0 if never.
    pub refreshed_ms: i64,
    /// When the next refresh is planned (ms), 0 if none (e.g. `reauth_required`).
    pub next_refresh_ms: i64,
}

/// The account store.
#[derive(Clone)]
pub struct Accounts {
    pub(crate) conn: ConnectionManager,
    keys: Keys,
    key: TokenKey,
    /// The key being rotated away from: still opens what it sealed, never seals.
    previous: Option<TokenKey>,
    client: Client,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("keys", &self.keys)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

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
    /// A store over a connection.
    pub fn new(conn: ConnectionManager, keys: Keys, key: TokenKey, client: Client) -> Self {
        Self {
            conn,
            keys,
            key,
            previous: None,
            client,
        }
    }

    /// Also opens values sealed with `previous` (during a key rotation).
    pub fn with_previous(mut self, previous: Option<TokenKey>) -> Self {
        self.previous = previous;
        self
    }

    fn open_any(&self, account: &str, sealed: &str) -> Result<SecretString, AccountError> {
        let err = |source| AccountError::Crypto {
            account: account.to_string(),
            source,
        };
        match self.key.open(account, sealed) {
            Err(CryptoError::WrongKey { found, expected }) => match &self.previous {
                Some(p) if p.id() == found => p.open(account, sealed).map_err(err),
                _ => Err(err(CryptoError::WrongKey { found, expected })),
            },
            other => other.map_err(err),
        }
    }

    /// Re-seals every value sealed with the previous key under the current one: account tokens and
    /// the upload URLs of posts. Each write is a compare-and-set, so a concurrent refresh is never
    /// overwritten. Returns how many values were re-sealed.
    pub async fn rotate_keys(&self) -> Result<usize, AccountError> {
        const CAS_FIELD: &str = "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1 end return 0";
        let script = redis::Script::new(CAS_FIELD);
        let mut conn = self.conn.clone();
        let mut n = 0;
        let names: Vec<String> = conn.smembers(self.keys.accounts()).await?;
        let mut targets: Vec<(String, String, &str)> = Vec::new();
        for name in &names {
            targets.push((self.keys.account(name), name.clone(), "access_sealed"));
            targets.push((self.keys.account(name), name.clone(), "refresh_sealed"));
        }
        let posts: Vec<String> = conn.zrange(self.keys.posts(), 0, -1).await?;
        for id in &posts {
            let account: Option<String> = conn.hget(self.keys.post(id), "account").await?;
            if let Some(account) = account {
                targets.push((self.keys.post(id), account, "upload_url_sealed"));
            }
        }
        for (key, account, field) in targets {
            let value: Option<String> = conn.hget(&key, field).await?;
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                continue;
            };
            if TokenKey::key_id_of(&value) == Some(self.key.id()) {
                continue;
            }
            let secret = self.open_any(&account, &value)?;
            let resealed = self.key.seal(&account, &secret);
            let done: i32 = script
                .key(&key)
                .arg(field)
                .arg(&value)
                .arg(&resealed)
                .invoke_async(&mut conn)
                .await?;
            n += done as usize;
        }
        for name in &names {
            let _: () = conn
                .hset(self.keys.account(name), "key_id", self.key.id())
                .await?;
        }
        Ok(n)
    }

    /// The TikTok client this store refreshes with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Seals another secret of this account (an `upload_url`) for storage in the ledger.
    pub fn seal(&self, account: &str, secret: &SecretString) -> String {
        self.key.seal(account, secret)
    }

    /// Opens a value sealed with [`Accounts::seal`].
    pub fn unseal(&self, account: &str, sealed: &str) -> Result<SecretString, AccountError> {
        self.open_any(account, sealed)
    }

    /// Stores a fresh grant (after `connect`), replacing any earlier one.
    pub async fn save_grant(
        &self,
        name: &str,
        tokens: &TokenSet,
        username: &str,
    ) -> Result<(), AccountError> {
        let now = now_ms();
        let mut conn = self.conn.clone();
        let fields: Vec<(&str, String)> = vec![
            ("name", name.to_string()),
            ("open_id", tokens.open_id.clone()),
            ("username", username.to_string()),
            ("access_sealed", self.key.seal(name, &tokens.access_token)),
            ("refresh_sealed", self.key.seal(name, &tokens.refresh_token)),
            (
                "access_expires_ms",
                (now + tokens.expires_in.as_millis() as i64).to_string(),
            ),
            (
                "refresh_expires_ms",
                (now + tokens.refresh_expires_in.as_millis() as i64).to_string(),
            ),
            ("scopes", tokens.scopes.join(",")),
            ("key_id", self.key.id().to_string()),
            ("state", STATE_OK.to_string()),
            ("connected_ms", now.to_string()),
            ("refreshed_ms", "0".to_string()),
            (
                "access_lifetime_ms",
                (tokens.expires_in.as_millis() as i64).to_string(),
            ),
            ("last_error", String::new()),
        ];
        let refresh_at = plan_refresh(now, tokens.expires_in.as_millis() as i64);
        // A replaced TikTok user no longer maps to this account (its webhooks are not ours any more).
        let old: Option<String> = conn.hget(self.keys.account(name), "open_id").await?;
        let stale = old.filter(|o| *o != tokens.open_id).unwrap_or_default();
        redis::pipe()
            .atomic()
            .hdel(self.keys.open_ids(), &stale)
            .hset_multiple(self.keys.account(name), &fields)
            .sadd(self.keys.accounts(), name)
            .hset(self.keys.open_ids(), &tokens.open_id, name)
            .zadd(self.keys.refresh_due(), name, refresh_at)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn raw(&self, name: &str) -> Result<HashMap<String, String>, AccountError> {
        let mut conn = self.conn.clone();
        let h: HashMap<String, String> = conn.hgetall(self.keys.account(name)).await?;
        if h.is_empty() {
            return Err(AccountError::NotFound(name.to_string()));
        }
        Ok(h)
    }

    /// The ids of the configured token keys: the current one and the one being rotated away from.
    pub fn key_ids(&self) -> Vec<String> {
        std::iter::once(&self.key)
            .chain(self.previous.as_ref())
            .map(|k| k.id().to_string())
            .collect()
    }

    /// The id of the key that sealed the account's tokens when it is not a configured one.
    fn foreign_key(&self, h: &HashMap<String, String>) -> Option<String> {
        let known = self.key_ids();
        ["refresh_sealed", "access_sealed"]
            .iter()
            .filter_map(|f| h.get(*f).and_then(|v| TokenKey::key_id_of(v)))
            .find(|id| !known.iter().any(|k| k == id))
            .map(str::to_string)
    }

    /// Accounts whose tokens no configured key opens, with the id of the key that sealed them.
    pub async fn key_mismatches(&self) -> Result<Vec<(String, String)>, AccountError> {
        let mut conn = self.conn.clone();
        let mut names: Vec<String> = conn.smembers(self.keys.accounts()).await?;
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let h: HashMap<String, String> = conn.hgetall(self.keys.account(&name)).await?;
            if let Some(found) = self.foreign_key(&h) {
                out.push((name, found));
            }
        }
        Ok(out)
    }

    /// One account, without secrets.
    pub async fn info(&self, name: &str) -> Result<AccountInfo, AccountError> {
        let h = self.raw(name).await?;
        let mut info = info_from(name, &h);
        if let Some(found) = self.foreign_key(&h) {
            info.state = STATE_KEY_MISMATCH.to_string();
            info.key_id = found;
        }
        let mut conn = self.conn.clone();
        let next: Option<f64> = conn.zscore(self.keys.refresh_due(), name).await?;
        info.next_refresh_ms = next.map(|v| v as i64).unwrap_or(0);
        Ok(info)
    }

    /// True if the account exists.
    pub async fn exists(&self, name: &str) -> Result<bool, AccountError> {
        let mut conn = self.conn.clone();
        Ok(conn.sismember(self.keys.accounts(), name).await?)
    }

    /// Every account, by name.
    pub async fn list(&self) -> Result<Vec<AccountInfo>, AccountError> {
        let mut conn = self.conn.clone();
        let mut names: Vec<String> = conn.smembers(self.keys.accounts()).await?;
        names.sort();
        let mut out = Vec::new();
        for n in names {
            match self.info(&n).await {
                Ok(i) => out.push(i),
                Err(AccountError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A usable access token that stays valid for at least `min_valid` (refreshing first if needed).
    pub async fn access_token(
        &self,
        name: &str,
        min_valid: Duration,
    ) -> Result<SecretString, AccountError> {
        let h = self.raw(name).await?;
        if h.get("state").map(String::as_str) == Some(STATE_REAUTH) {
            return Err(AccountError::ReauthRequired(name.to_string()));
        }
        let expires: i64 = h
            .get("access_expires_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
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

    fn open(&self, name: &str, sealed: Option<&String>) -> Result<SecretString, AccountError> {
        let sealed = sealed.ok_or_else(|| AccountError::NotFound(name.to_string()))?;
        self.open_any(name, sealed)
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
            // Someone else refreshes; wait for them, then use what they stored.
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
        let h = self.raw(name).await?;
        if h.get("state").map(String::as_str) == Some(STATE_REAUTH) {
            return Err(AccountError::ReauthRequired(name.to_string()));
        }
        let expires: i64 = h
            .get("access_expires_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
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

    /// Marks an account `reauth_required` (its posts wait) and stops planning refreshes for it.
    pub async fn mark_reauth(&self, name: &str, why: &str) -> Result<(), AccountError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .hset_multiple(
                self.keys.account(name),
                &[("state", STATE_REAUTH), ("last_error", why)],
            )
            .zrem(self.keys.refresh_due(), name)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// The account connected to a TikTok open_id.
    pub async fn by_open_id(&self, open_id: &str) -> Result<Option<String>, AccountError> {
        let mut conn = self.conn.clone();
        Ok(conn.hget(self.keys.open_ids(), open_id).await?)
    }

    /// Accounts whose planned refresh time has come (at most `limit`).
    pub async fn due_for_refresh(&self, limit: usize) -> Result<Vec<String>, AccountError> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.refresh_due())
            .arg("-inf")
            .arg(now_ms())
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await?;
        Ok(names)
    }

    /// Plans the next refresh attempt of an account at `at_ms` (after a transient failure).
    pub async fn plan_refresh_at(&self, name: &str, at_ms: i64) -> Result<(), AccountError> {
        let mut conn = self.conn.clone();
        let _: () = conn.zadd(self.keys.refresh_due(), name, at_ms).await?;
        Ok(())
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

    /// Revokes the token at TikTok (best effort when it is already invalid), then deletes the account.
    pub async fn remove(&self, name: &str) -> Result<(), AccountError> {
        let h = self.raw(name).await?;
        if let Ok(token) = self.open(name, h.get("access_sealed"))
            && let Err(e) = self.client.revoke(&token).await
        {
            tracing::warn!(account = name, error = %e, "Revoking the token at TikTok failed; deleting it here anyway.");
        }
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .del(self.keys.account(name))
            .srem(self.keys.accounts(), name)
            .zrem(self.keys.refresh_due(), name)
            .hdel(
                self.keys.open_ids(),
                h.get("open_id").cloned().unwrap_or_default(),
            )
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}

fn info_from(name: &str, h: &HashMap<String, String>) -> AccountInfo {
    let s = |k: &str| h.get(k).cloned().unwrap_or_default();
    let n = |k: &str| h.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    AccountInfo {
        name: name.to_string(),
        open_id: s("open_id"),
        username: s("username"),
        state: s("state"),
        access_expires_ms: n("access_expires_ms"),
        refresh_expires_ms: n("refresh_expires_ms"),
        scopes: s("scopes"),
        key_id: s("key_id"),
        refreshed_ms: n("refreshed_ms"),
        next_refresh_ms: 0,
    }
}
