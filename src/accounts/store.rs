//! The sealed token hash: how an account's grant is written to, read from and re-sealed in Redis.
//!
//! Tokens are never in clear text in Redis: each is sealed with the configured [`TokenKey`], bound to
//! the account's name, and the hash records which key sealed it. During a key rotation the previous
//! key still opens what it sealed (never seals), and [`Accounts::rotate_keys`] re-seals it all under
//! the current key with compare-and-set writes, so a refresh running at the same time is never lost.

use std::collections::HashMap;

use redis::AsyncCommands;
use secrecy::SecretString;

use super::refresh::plan_refresh;
use super::{AccountError, Accounts, CryptoError, STATE_OK, TokenKey};
use crate::db::now_ms;
use crate::tiktok::TokenSet;

impl Accounts {
    pub(super) fn open_any(
        &self,
        account: &str,
        sealed: &str,
    ) -> Result<SecretString, AccountError> {
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

    pub(super) async fn raw(&self, name: &str) -> Result<HashMap<String, String>, AccountError> {
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
    pub(super) fn foreign_key(&self, h: &HashMap<String, String>) -> Option<String> {
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

    pub(super) fn open(
        &self,
        name: &str,
        sealed: Option<&String>,
    ) -> Result<SecretString, AccountError> {
        let sealed = sealed.ok_or_else(|| AccountError::NotFound(name.to_string()))?;
        self.open_any(name, sealed)
    }
}
