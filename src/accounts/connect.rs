//! The OAuth connect flow, shared by the daemon's `/connect` and `/oauth/callback` and by
//! `accounts connect`: a single-use `state` (random, expires in 5 minutes, bound to the account name)
//! is kept in Redis, so the callback may arrive at any daemon sharing the Redis.
//!
//! Pending states are bounded: at most [`MAX_PENDING`] at once (a flood of `/connect` creates no more
//! keys), each gone after [`STATE_TTL_SECS`]. Reconnecting an account to the TikTok user it already
//! has renews the grant; connecting it to a different TikTok user is refused (and the new grant
//! revoked) unless the operator asked to replace it.

use redis::AsyncCommands;
use url::Url;

use super::{AccountInfo, Accounts};
use crate::config::{AppType, Settings};
use crate::db::{Keys, now_ms, random_id};
use crate::tiktok::oauth::Callback;
use crate::tiktok::{AuthorizeRequest, Pkce};

/// How long a connect link stays valid.
pub const STATE_TTL_SECS: u64 = 300;
/// How many connects may be pending at once.
pub const MAX_PENDING: u64 = 32;

/// Why a connect did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Too many connects are pending.
    #[error(
        "{MAX_PENDING} connects are already pending; finish one or wait {STATE_TTL_SECS} seconds for them to expire"
    )]
    TooManyPending,
    /// The account is connected to another TikTok user and replacing it was not asked for.
    #[error(
        "account {account:?} is connected to TikTok user @{connected}, and the app was approved as @{approved}, a different TikTok user; nothing was changed. To connect {account:?} to @{approved}, replace it: `tiktok-poster accounts connect {account} --replace`, or the Replace button on the page"
    )]
    OtherUser {
        /// The account name.
        account: String,
        /// The @handle of the TikTok user it is connected to.
        connected: String,
        /// The @handle of the user who approved now.
        approved: String,
    },
    /// Anything else, in words.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for ConnectError {
    fn from(s: String) -> Self {
        Self::Failed(s)
    }
}

/// Takes a pending slot and stores the state, unless [`MAX_PENDING`] are pending already.
const BEGIN: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'account', ARGV[5], 'verifier', ARGV[6], 'replace', ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"#;

/// Starts a connect: stores a fresh state and returns TikTok's authorize URL. `extra` is passed on
/// (the simulator reads `sim_*` parameters to choose the simulated creator). With `replace`, the
/// account may end up connected to another TikTok user than the one it has.
pub async fn begin(
    accounts: &Accounts,
    keys: &Keys,
    settings: &Settings,
    name: &str,
    extra: Vec<(String, String)>,
    replace: bool,
) -> Result<Url, ConnectError> {
    super::check_name(name).map_err(ConnectError::Failed)?;
    let state = random_id();
    let pkce = (settings.tiktok.app_type == AppType::Desktop).then(Pkce::generate);
    let verifier = pkce
        .as_ref()
        .map(|p| accounts.seal("oauth-state", &p.verifier))
        .unwrap_or_default();
    let mut conn = accounts.conn.clone();
    let stored: i32 = redis::Script::new(BEGIN)
        .key(keys.oauth_pending())
        .key(keys.oauth_state(&state))
        .arg(now_ms())
        .arg(STATE_TTL_SECS * 1000)
        .arg(MAX_PENDING)
        .arg(&state)
        .arg(name)
        .arg(verifier.as_str())
        .arg(if replace { "1" } else { "" })
        .invoke_async(&mut conn)
        .await
        .map_err(|e| format!("cannot store the connect state in Redis: {e}"))?;
    if stored == 0 {
        return Err(ConnectError::TooManyPending);
    }
    Ok(accounts.client().authorize_url(&AuthorizeRequest {
        scopes: settings.tiktok.scopes.clone(),
        redirect_uri: settings.tiktok.redirect_uri.clone(),
        state,
        pkce_challenge: pkce.map(|p| p.challenge),
        extra,
    }))
}

/// Finishes a connect from the callback's query; returns the connected account.
pub async fn complete(
    accounts: &Accounts,
    keys: &Keys,
    settings: &Settings,
    query: &[(String, String)],
) -> Result<AccountInfo, ConnectError> {
    let callback = Callback::parse(query);
    if let Some(refusal) = callback.refusal() {
        return Err(refusal.into());
    }
    let Callback::Granted { code, state } = callback else {
        return Err(ConnectError::Failed(
            "the callback has no code or state; start again from the Connect TikTok button".into(),
        ));
    };
    let mut conn = accounts.conn.clone();
    let key = keys.oauth_state(&state);
    let (fields, _, _): (std::collections::HashMap<String, String>, i32, i32) = redis::pipe()
        .atomic()
        .hgetall(&key)
        .del(&key)
        .zrem(keys.oauth_pending(), &state)
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("cannot read the connect state from Redis: {e}"))?;
    let Some(name) = fields.get("account").cloned() else {
        return Err(ConnectError::Failed("this connect link is unknown, expired or already used; start again from the Connect TikTok button".into()));
    };
    let verifier = match fields.get("verifier").filter(|v| !v.is_empty()) {
        Some(sealed) => Some(
            accounts
                .unseal("oauth-state", sealed)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let tokens = accounts
        .client()
        .exchange_code(&code, &settings.tiktok.redirect_uri, verifier.as_ref())
        .await
        .map_err(|e| format!("exchanging the authorization code failed: {e}"))?;
    let username = if tokens.can_publish() {
        accounts
            .client()
            .creator_info(&tokens.access_token)
            .await
            .map(|i| i.creator_username)
            .unwrap_or_default()
    } else {
        String::new()
    };
    let replace = fields.get("replace").is_some_and(|v| v == "1");
    // Only a real "no such account" lets a grant through unchecked: a Redis error must not turn
    // into a silent rebind to another TikTok user.
    let current = match accounts.info(&name).await {
        Ok(current) => Some(current),
        Err(crate::accounts::AccountError::NotFound(_)) => None,
        Err(e) => {
            return Err(ConnectError::Failed(format!(
                "cannot read account {name:?} to check which TikTok user it belongs to ({e}); try again"
            )));
        }
    };
    if let Some(current) = current
        && !current.open_id.is_empty()
        && current.open_id != tokens.open_id
        && !replace
    {
        // Not what the operator asked for: give the new grant back and keep the account as it is.
        if let Err(e) = accounts.client().revoke(&tokens.access_token).await {
            tracing::warn!(account = %name, error = %e, "Revoking the unused grant of another TikTok user failed.");
        }
        tracing::warn!(account = %name, connected = %current.username, approved = %username, "Connect refused: the account is connected to another TikTok user.");
        return Err(ConnectError::OtherUser {
            account: name,
            connected: current.username,
            approved: username,
        });
    }
    accounts
        .save_grant(&name, &tokens, &username)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(account = %name, username = %username, "Account connected.");
    let _ = conn
        .publish::<_, _, i64>(format!("{}:connected", keys.namespace()), &name)
        .await;
    Ok(accounts.info(&name).await.map_err(|e| e.to_string())?)
}
