//! The account store: each TikTok account's tokens, sealed in Redis, and their single-flight refresh.
//!
//! An account is a hash `{ns}:account:{name}` holding the sealed access and refresh tokens (never in
//! clear text), their expiry times (from TikTok's own `expires_in`, never assumed), the key id that
//! sealed them, the creator's open_id and username, and a state: `ok` or `reauth_required`.
//!
//! This file is the facade (the store, its errors and what it shows); the parts that need care live
//! beside it: `store` writes, reads and re-seals the sealed hash, `refresh` is the single-flight
//! refresh with its compare-and-set write, `name` is the one rule for account names,
//! `connect` is the OAuth connect flow, and `blocked` is the `posting_blocked` state (an account, or
//! the app, that TikTok says may not post now).

pub mod blocked;
pub(crate) mod connect;
mod crypto;
mod name;
mod refresh;
pub(crate) mod refresher;
mod store;
pub mod warmup;

use std::collections::HashMap;

use crate::db::Conn;
use redis::AsyncCommands;
use secrecy::SecretString;
use serde::Serialize;

use crate::db::{Keys, now_ms};
use crate::tiktok::{Client, TikTokError};
pub use crypto::{CryptoError, TokenKey};
pub use name::{NAME_PATTERN, NAME_RULE, check_name, valid_name};
pub use refresh::{plan_refresh, refresh_margin_ms};
pub use warmup::{Step, Warmup};

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
    /// Where it stands in its warm-up.
    pub warmup: Warmup,
    /// Set when the account may not post now (`posting_blocked`): its own block, else the app's.
    pub posting_blocked: Option<blocked::Block>,
}

/// The account store.
#[derive(Clone)]
pub struct Accounts {
    pub(crate) conn: Conn,
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

impl Accounts {
    /// A store over a connection.
    pub fn new(conn: Conn, keys: Keys, key: TokenKey, client: Client) -> Self {
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
        if info.posting_blocked.is_none() {
            info.posting_blocked = self.app_block().await?;
        }
        Ok(info)
    }

    /// True if the account exists.
    pub async fn exists(&self, name: &str) -> Result<bool, AccountError> {
        let mut conn = self.conn.clone();
        Ok(conn.sismember(self.keys.accounts(), name).await?)
    }

    /// Every account, by name. Read in pipelines of a few hundred accounts (an agency's ten thousand
    /// accounts take a few dozen round trips, not twenty thousand: `/healthz` reads this list).
    pub async fn list(&self) -> Result<Vec<AccountInfo>, AccountError> {
        const PAGE: usize = 500;
        let mut conn = self.conn.clone();
        let mut names: Vec<String> = conn.smembers(self.keys.accounts()).await?;
        names.sort();
        let app_block = self.app_block().await?;
        let mut out = Vec::with_capacity(names.len());
        for page in names.chunks(PAGE) {
            let mut pipe = redis::pipe();
            for n in page {
                pipe.hgetall(self.keys.account(n));
                pipe.zscore(self.keys.refresh_due(), n);
            }
            let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
            let mut replies = replies.into_iter();
            for n in page {
                let (Some(hash), Some(score)) = (replies.next(), replies.next()) else {
                    break;
                };
                let h: HashMap<String, String> =
                    redis::from_redis_value(hash).map_err(redis::RedisError::from)?;
                if h.is_empty() {
                    continue; // removed meanwhile
                }
                let next: Option<f64> =
                    redis::from_redis_value(score).map_err(redis::RedisError::from)?;
                let mut info = info_from(n, &h);
                if let Some(found) = self.foreign_key(&h) {
                    info.state = STATE_KEY_MISMATCH.to_string();
                    info.key_id = found;
                }
                info.next_refresh_ms = next.map(|v| v as i64).unwrap_or(0);
                if info.posting_blocked.is_none() {
                    info.posting_blocked.clone_from(&app_block);
                }
                out.push(info);
            }
        }
        Ok(out)
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
        warmup: Warmup::from_hash(h),
        posting_blocked: blocked::from_hash(blocked::Scope::Account, h),
    }
}
